/* gst-phone-agent
 * Twilio Media Streams messages (PROTOCOLS.md section C): parse what Twilio
 * sends, build what we send, and the reverse pair for the emulator.
 *
 * Twilio sends numeric-looking fields as strings (sequenceNumber, chunk,
 * timestamp) and mediaFormat.sampleRate/channels as numbers; the parser
 * accepts both spellings for every numeric field. What we send carries
 * exactly the fields Twilio accepts: extra fields risk warning 31951.
 */
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pa-api.h"

namespace pa::twilio {

using Params = std::vector<std::pair<std::string, std::string>>;

enum class Event { Connected, Start, Media, Dtmf, Mark, Stop, Clear, Unknown };

PA_API const char *event_name(Event e);

struct StartInfo {
  std::string account_sid;
  std::string stream_sid;
  std::string call_sid;
  std::vector<std::string> tracks;
  Params custom_parameters;
  std::string encoding = "audio/x-mulaw";
  int sample_rate = 8000;
  int channels = 1;
};

/* One message as Twilio sends it to us. A field added here also needs its
 * line in reset() (twilio-protocol.cpp: the fast path reuses messages) and
 * in used_message() of tests/server/test-inbound-parser.cpp. */
struct InboundMessage {
  Event event = Event::Unknown;
  std::string event_name;     /* as received, also for unknown events */
  std::string stream_sid;     /* top-level streamSid (empty on connected) */
  int64_t sequence_number = -1;
  /* connected */
  std::string protocol, version;
  /* start */
  StartInfo start;
  /* media */
  std::string track;
  int64_t chunk = -1;
  int64_t timestamp_ms = -1;
  std::vector<uint8_t> payload; /* decoded μ-law bytes */
  /* dtmf */
  std::string digit;
  /* mark */
  std::string mark_name;
  /* stop */
  std::string stop_account_sid, stop_call_sid;
};

/* Outcome of parsing one text frame. */
enum class ParseResult {
  Ok,
  MalformedJson,   /* not JSON, or not an object */
  MissingField,    /* a required field is absent or has the wrong type */
  InvalidBase64,   /* media.payload is not valid base64 */
  UnknownEvent,    /* well-formed but an event we do not know: ignore it */
};

PA_API const char *parse_result_name(ParseResult r);

/* Parses a message Twilio sends (connected/start/media/dtmf/mark/stop). On
 * failure @error says what was wrong in words a user can act on. */
PA_API ParseResult parse_inbound(std::string_view text, InboundMessage &out, std::string &error);
/* The same with json-glib only. parse_inbound() reads media and mark
 * messages (the hot path: ~100 a second per call) on strict hand-written
 * paths, one for Twilio's exact layout and one for any member order, and
 * falls back to this for everything else; tests check that all agree. */
PA_API ParseResult parse_inbound_reference(std::string_view text, InboundMessage &out, std::string &error);

/* What we send to Twilio. */
PA_API std::string build_media(std::string_view stream_sid, const uint8_t *mulaw, size_t len);
PA_API std::string build_mark(std::string_view stream_sid, std::string_view name);
/* The same two appended to @out: a caller that keeps one string for its
 * messages allocates nothing per frame. */
PA_API void append_media(std::string &out, std::string_view stream_sid, const uint8_t *mulaw, size_t len);
PA_API void append_mark(std::string &out, std::string_view stream_sid, std::string_view name);
PA_API std::string build_clear(std::string_view stream_sid);

/* One message as we send it to Twilio (parsed by the emulator, strictly:
 * unknown or extra fields are protocol errors, as Twilio's 31951 is). */
struct OutboundMessage {
  Event event = Event::Unknown;
  std::string stream_sid;
  std::vector<uint8_t> payload;
  std::string mark_name;
};
PA_API ParseResult parse_outbound(std::string_view text, OutboundMessage &out, std::string &error);

/* What Twilio sends, built by the emulator. */
PA_API std::string build_connected();
PA_API std::string build_start(int64_t seq, const StartInfo &info);
PA_API std::string build_inbound_media(int64_t seq, std::string_view stream_sid, int64_t chunk, int64_t timestamp_ms,
                                       const uint8_t *mulaw, size_t len);
PA_API std::string build_dtmf(int64_t seq, std::string_view stream_sid, std::string_view digit);
PA_API std::string build_mark_echo(int64_t seq, std::string_view stream_sid, std::string_view name);
PA_API std::string build_stop(int64_t seq, std::string_view stream_sid, std::string_view account_sid,
                              std::string_view call_sid);

/* JSON string escaping (RFC 8259), for the builders above and for tools. */
PA_API void json_escape_append(std::string &out, std::string_view s);
/* The first byte from @p that a JSON string cannot hold as it is (a quote,
 * a backslash, a control or a non-ASCII byte), or @end: where a fast path
 * that reads strings without escapes stops. */
PA_API const char *json_skip_plain(const char *p, const char *end);

/* Random Twilio-looking SIDs: prefix + 32 lowercase hex digits. */
PA_API std::string make_sid(const char *prefix);

} // namespace pa::twilio
