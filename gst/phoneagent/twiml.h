/* gst-phone-agent
 * TwiML: what our webhook answers (PROTOCOLS.md A.3), and a small reader of
 * it for the emulator.
 */
#pragma once

#include <string>
#include <string_view>

#include "pa-api.h"
#include "twilio-protocol.h"

namespace pa::twilio {

PA_API std::string xml_escape(std::string_view s);

struct ConnectStream {
  std::string url;           /* wss://host/path, no query string (Twilio drops it) */
  std::string name;          /* optional stream name */
  std::string status_callback;
  Params parameters;         /* <Parameter name= value=/> children */
  std::string say_before;    /* optional <Say> before <Connect> */
  std::string say_after;     /* optional <Say> after </Connect> (runs when we close the socket) */
  bool hangup_after = true;  /* <Hangup/> as the final verb */
};

/* <Response>[<Say>][<Connect><Stream url=..>(<Parameter/>)*</Stream></Connect>][<Say>][<Hangup/>]</Response> */
PA_API std::string build_connect_stream(const ConnectStream &c);

/* A polite refusal: <Say>message</Say><Hangup/>. */
PA_API std::string build_say_hangup(std::string_view message);

/* The wss:// URL of the stream: from the configured public URL (https:// or
 * http:// become wss:// or ws://; a path prefix is kept) when set, else from
 * the request's Host header (wss://, Twilio requires TLS). @stream_path
 * starts with '/'. */
PA_API std::string stream_url(std::string_view public_url, std::string_view host_header,
                              std::string_view stream_path);

/* The public URL of a request for signature checks: the configured public
 * base URL + path + raw query, else scheme://Host header + path + query. */
PA_API std::string request_url(std::string_view public_url, std::string_view scheme, std::string_view host_header,
                               std::string_view path, std::string_view raw_query);

/* What the emulator needs from a TwiML answer. */
struct TwimlDocument {
  bool has_stream = false;
  ConnectStream stream;  /* url, name, parameters; say_* filled from <Say> around <Connect> */
  bool hangup = false;   /* a <Hangup/> verb was present */
  std::string says;      /* all <Say> texts, joined with " | " */
};
PA_API bool parse_twiml(std::string_view xml, TwimlDocument &out, std::string &error);

} // namespace pa::twilio
