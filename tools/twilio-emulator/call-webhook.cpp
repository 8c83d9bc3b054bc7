/* twilio-emulator: one call, first half: the voice webhook, its TwiML and
 * where the stream goes (the WebSocket URL, what is signed). */
#include <algorithm>

#include "call.h"
#include "capture.h"
#include "twilio-protocol.h"
#include "twilio-signature.h"

namespace emu {

namespace tw = pa::twilio;

namespace {

struct UrlParts {
  std::string scheme, authority, path, query;
};

bool split_url(const std::string &url, UrlParts &p) {
  size_t se = url.find("://");
  if (se == std::string::npos)
    return false;
  p.scheme = url.substr(0, se);
  std::transform(p.scheme.begin(), p.scheme.end(), p.scheme.begin(), [](char c) { return g_ascii_tolower(c); });
  std::string rest = url.substr(se + 3);
  size_t hash = rest.find('#');
  if (hash != std::string::npos)
    rest.resize(hash);
  size_t pe = rest.find_first_of("/?");
  p.authority = rest.substr(0, pe);
  rest = pe == std::string::npos ? std::string() : rest.substr(pe);
  size_t q = rest.find('?');
  if (q != std::string::npos) {
    p.query = rest.substr(q + 1);
    rest.resize(q);
  }
  p.path = rest.empty() ? "/" : rest;
  return !p.authority.empty();
}

/* "host:port" / "[::1]:80" -> "host" / "::1" */
std::string host_of(const std::string &authority) {
  std::string a = authority;
  size_t at = a.rfind('@');
  if (at != std::string::npos)
    a = a.substr(at + 1);
  if (!a.empty() && a[0] == '[') {
    size_t close = a.find(']');
    return a.substr(1, close == std::string::npos ? std::string::npos : close - 1);
  }
  size_t colon = a.rfind(':');
  return colon == std::string::npos ? a : a.substr(0, colon);
}

bool same_host(const std::string &a, const std::string &b) {
  if (g_ascii_strcasecmp(a.c_str(), b.c_str()) == 0)
    return true;
  return is_loopback_host(a) && is_loopback_host(b);
}

double ms_between(int64_t from_us, int64_t to_us) { return static_cast<double>(to_us - from_us) / 1000.0; }

} // namespace

/* ------------------------------------------------------------ webhook */

void Call::start() {
  state_ = State::Webhook;
  webhook_start_us_ = g_get_monotonic_time();
  report_.started_ms = ms_between(host_.run_start_us(), webhook_start_us_);

  auto country = [](const std::string &number) { return number.rfind("+1", 0) == 0 ? "US" : ""; };
  bool from_us = std::string(country(opt_.from)) == "US";
  params_ = {
      {"AccountSid", account_sid_},
      {"ApiVersion", "2010-04-01"},
      {"CallSid", report_.call_sid},
      {"CallStatus", "ringing"},
      {"Called", opt_.to},
      {"CalledCity", ""},
      {"CalledCountry", country(opt_.to)},
      {"CalledState", ""},
      {"CalledZip", ""},
      {"Caller", opt_.from},
      {"CallerCity", from_us ? "SAN FRANCISCO" : ""},
      {"CallerCountry", country(opt_.from)},
      {"CallerState", from_us ? "CA" : ""},
      {"CallerZip", from_us ? "94103" : ""},
      {"Direction", "inbound"},
      {"From", opt_.from},
      {"FromCity", from_us ? "SAN FRANCISCO" : ""},
      {"FromCountry", country(opt_.from)},
      {"FromState", from_us ? "CA" : ""},
      {"FromZip", from_us ? "94103" : ""},
      {"To", opt_.to},
      {"ToCity", ""},
      {"ToCountry", country(opt_.to)},
      {"ToState", ""},
      {"ToZip", ""},
  };
  for (const auto &[k, v] : opt_.extra_params) {
    auto it = std::find_if(params_.begin(), params_.end(), [&](const auto &p) { return p.first == k; });
    if (it != params_.end())
      it->second = v;
    else
      params_.emplace_back(k, v);
  }

  webhook_msg_ = soup_message_new(SOUP_METHOD_POST, opt_.url.c_str());
  if (!webhook_msg_) {
    finish("webhook-error", "invalid webhook URL " + opt_.url);
    return;
  }
  std::string body = tw::form_encode(params_);
  GBytes *bytes = g_bytes_new(body.data(), body.size());
  soup_message_set_request_body_from_bytes(webhook_msg_, "application/x-www-form-urlencoded", bytes);
  g_bytes_unref(bytes);
  SoupMessageHeaders *hdrs = soup_message_get_request_headers(webhook_msg_);
  soup_message_headers_replace(hdrs, "Accept", "*/*");
  if (!opt_.auth_token.empty())
    soup_message_headers_replace(hdrs, "X-Twilio-Signature",
                                 tw::compute_signature(opt_.auth_token, opt_.url, params_).c_str());
  /* Talk only to the given URL: never follow a redirect elsewhere. */
  soup_message_add_flags(webhook_msg_, SOUP_MESSAGE_NO_REDIRECT);

  if (host_.capture()) {
    int idx = report_.index;
    std::string url = opt_.url;
    tw::Params params = params_;
    pre_stream_.push_back({webhook_start_us_, [idx, url, params](int64_t t) {
                             return CaptureWriter::webhook_line(idx, t, url, params);
                           }});
  }
  soup_session_send_and_read_async(host_.session(), webhook_msg_, G_PRIORITY_DEFAULT, cancel_, on_webhook_reply,
                                   this);
}

void Call::on_webhook_reply(GObject *source, GAsyncResult *res, gpointer data) {
  GError *err = nullptr;
  GBytes *body = soup_session_send_and_read_finish(SOUP_SESSION(source), res, &err);
  if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
    g_error_free(err);
    return; /* shut down: the call may be gone */
  }
  auto *self = static_cast<Call *>(data);
  self->report_.webhook_ms = ms_between(self->webhook_start_us_, g_get_monotonic_time());
  if (!body) {
    std::string m = err ? err->message : "no answer";
    g_clear_error(&err);
    self->finish("webhook-error", "POST " + self->opt_.url + " failed: " + m);
    return;
  }
  gsize len = 0;
  const char *p = static_cast<const char *>(g_bytes_get_data(body, &len));
  std::string text(p ? p : "", len);
  g_bytes_unref(body);
  int status = static_cast<int>(soup_message_get_status(self->webhook_msg_));
  self->handle_twiml(status, text);
}

void Call::handle_twiml(int status, const std::string &body) {
  report_.http_status = status;
  if (host_.capture()) {
    int idx = report_.index;
    pre_stream_.push_back({g_get_monotonic_time(), [idx, status, body](int64_t t) {
                             return CaptureWriter::twiml_line(idx, t, status, body);
                           }});
  }
  if (status != 200) {
    const char *reason = soup_message_get_reason_phrase(webhook_msg_);
    finish("http-" + std::to_string(status),
           "POST " + opt_.url + " answered HTTP " + std::to_string(status) + (reason ? std::string(" ") + reason : ""));
    return;
  }
  std::string err;
  if (!tw::parse_twiml(body, twiml_, err)) {
    finish("twiml-invalid", "POST " + opt_.url + ": " + err);
    return;
  }
  report_.has_stream = twiml_.has_stream;
  report_.says = twiml_.says;
  report_.hangup = twiml_.hangup;
  report_.parameters = twiml_.stream.parameters;
  if (!twiml_.has_stream) {
    /* The server turned the caller away (<Say>..<Hangup/>, <Reject/>, ...) */
    finish("busy");
    return;
  }
  report_.stream_url = twiml_.stream.url;
  ConnectParams cp;
  std::string signed_url;
  if (!stream_target(twiml_.stream.url, cp.url, signed_url, cp.host_header)) {
    finish("stream-url-rejected", report_.error);
    return;
  }
  if (!opt_.auth_token.empty())
    cp.signature = tw::compute_signature(opt_.auth_token, signed_url, {});
  cp.session = host_.session();
  state_ = State::Connecting;
  connect_start_us_ = g_get_monotonic_time();
  report_.stream_url = cp.url;
  transport_->connect(cp);
}

bool Call::stream_target(const std::string &twiml_url, std::string &connect_url, std::string &signed_url,
                         std::string &host_header) {
  UrlParts hook;
  split_url(opt_.url, hook);
  UrlParts s;
  if (!twiml_url.empty() && twiml_url[0] == '/') {
    /* relative: resolved against the webhook URL */
    s.scheme = "wss";
    s.authority = hook.authority;
    s.path = twiml_url;
    size_t q = s.path.find('?');
    if (q != std::string::npos) {
      s.query = s.path.substr(q + 1);
      s.path.resize(q);
    }
  } else if (!split_url(twiml_url, s)) {
    report_.error = "<Stream url=\"" + twiml_url + "\"> is not a URL";
    return false;
  }
  if (s.scheme == "ws") {
    report_.warnings.push_back("<Stream url> uses ws://; Twilio only accepts wss:// (error 31922)");
  } else if (s.scheme != "wss") {
    report_.error = "<Stream url=\"" + twiml_url + "\">: Twilio only accepts wss:// (error 31922)";
    return false;
  }
  if (!s.query.empty())
    report_.warnings.push_back("<Stream url> has a query string; Twilio drops it (use <Parameter>)");

  std::string host = host_of(s.authority);
  if (opt_.connect_host.empty() && !same_host(host, host_of(hook.authority))) {
    report_.error = "<Stream url> host '" + host + "' is not the webhook's host '" + host_of(hook.authority) +
                    "'; the emulator only talks to the given URL (use --connect-to HOST:PORT to redirect it)";
    return false;
  }
  /* What Twilio signs: wss://host[:port]/path, no query, no params. */
  signed_url = "wss://" + s.authority + s.path;
  std::string target = s.authority;
  std::string target_host = host;
  if (!opt_.connect_host.empty()) {
    target_host = opt_.connect_host;
    target = (opt_.connect_host.find(':') != std::string::npos ? "[" + opt_.connect_host + "]" : opt_.connect_host) +
             ":" + std::to_string(opt_.connect_port);
    host_header = s.authority;
  }
  bool plain = opt_.plain_ws || is_loopback_host(target_host);
  connect_url = (plain ? "ws://" : "wss://") + target + s.path;
  return true;
}

} // namespace emu
