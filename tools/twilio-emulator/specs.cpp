/* twilio-emulator: command-line spec parsers */
#include "specs.h"

#include <cmath>

#include <gio/gio.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace emu {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    size_t e = s.find(sep, pos);
    out.push_back(s.substr(pos, e == std::string_view::npos ? std::string_view::npos : e - pos));
    if (e == std::string_view::npos)
      break;
    pos = e + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && g_ascii_isspace(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && g_ascii_isspace(s.back()))
    s.remove_suffix(1);
  return s;
}

bool parse_ms(std::string_view s, int64_t &out) {
  s = trim(s);
  if (s.empty() || s.size() > 12)
    return false;
  for (char c : s)
    if (!g_ascii_isdigit(c))
      return false;
  out = std::strtoll(std::string(s).c_str(), nullptr, 10);
  return true;
}

struct InjectName {
  InjectKind kind;
  const char *name;
};
constexpr InjectName kInjectNames[] = {
    {InjectKind::MalformedJson, "malformed-json"},
    {InjectKind::Binary, "binary"},
    {InjectKind::Oversized, "oversized"},
    {InjectKind::MediaBeforeStart, "media-before-start"},
    {InjectKind::WrongStreamSid, "wrong-stream-sid"},
    {InjectKind::InvalidBase64, "invalid-base64"},
    {InjectKind::UnknownEvent, "unknown-event"},
    {InjectKind::AbruptClose, "abrupt-close"},
    {InjectKind::StopReading, "stop-reading"},
};

} // namespace

bool parse_dtmf_spec(std::string_view spec, std::vector<DtmfSpec> &out, std::string &error) {
  out.clear();
  if (trim(spec).empty())
    return true;
  for (std::string_view item : split(spec, ',')) {
    item = trim(item);
    size_t colon = item.find(':');
    DtmfSpec d;
    if (colon == std::string_view::npos || !parse_ms(item.substr(0, colon), d.at_ms)) {
      error = "--dtmf: expected MS:DIGIT, got '" + std::string(item) + "'";
      return false;
    }
    std::string_view digit = trim(item.substr(colon + 1));
    static const std::string_view kDigits = "0123456789*#ABCD";
    if (digit.size() != 1 || kDigits.find(digit[0]) == std::string_view::npos) {
      error = "--dtmf: '" + std::string(digit) + "' is not a DTMF digit (0-9, *, #, A-D)";
      return false;
    }
    d.digit = std::string(digit);
    out.push_back(d);
  }
  std::stable_sort(out.begin(), out.end(), [](const DtmfSpec &a, const DtmfSpec &b) { return a.at_ms < b.at_ms; });
  return true;
}

bool parse_ranges(std::string_view spec, std::vector<Range> &out, std::string &error) {
  out.clear();
  if (trim(spec).empty())
    return true;
  for (std::string_view item : split(spec, ',')) {
    item = trim(item);
    size_t dash = item.find('-');
    Range r;
    if (dash == std::string_view::npos || !parse_ms(item.substr(0, dash), r.begin_ms) ||
        !parse_ms(item.substr(dash + 1), r.end_ms) || r.end_ms <= r.begin_ms) {
      error = "--silence-gaps: expected BEGIN-END in ms with END > BEGIN, got '" + std::string(item) + "'";
      return false;
    }
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const Range &a, const Range &b) { return a.begin_ms < b.begin_ms; });
  return true;
}

const char *inject_name(InjectKind k) {
  for (const auto &n : kInjectNames)
    if (n.kind == k)
      return n.name;
  return "?";
}

std::string inject_kinds_list() {
  std::string s;
  for (const auto &n : kInjectNames) {
    if (!s.empty())
      s += ", ";
    s += n.name;
  }
  return s;
}

bool parse_inject(std::string_view spec, InjectSpec &out, std::string &error) {
  spec = trim(spec);
  size_t at = spec.rfind('@');
  std::string_view name = at == std::string_view::npos ? spec : spec.substr(0, at);
  bool found = false;
  for (const auto &n : kInjectNames) {
    if (name == n.name) {
      out.kind = n.kind;
      found = true;
    }
  }
  if (!found) {
    error = "--inject: unknown kind '" + std::string(name) + "' (one of " + inject_kinds_list() + ")";
    return false;
  }
  if (at == std::string_view::npos || !parse_ms(spec.substr(at + 1), out.at_ms)) {
    error = "--inject: expected KIND@MS, got '" + std::string(spec) + "'";
    return false;
  }
  if (out.kind == InjectKind::MediaBeforeStart && out.at_ms != 0) {
    error = "--inject: media-before-start only makes sense at @0 (it is sent between 'connected' and 'start')";
    return false;
  }
  return true;
}

bool parse_host_port(std::string_view spec, std::string &host, int &port, std::string &error) {
  spec = trim(spec);
  size_t colon = spec.rfind(':');
  size_t bracket = spec.rfind(']');
  int64_t p = 0;
  if (colon == std::string_view::npos || (bracket != std::string_view::npos && colon < bracket) ||
      !parse_ms(spec.substr(colon + 1), p) || p < 1 || p > 65535) {
    error = "expected HOST:PORT, got '" + std::string(spec) + "'";
    return false;
  }
  std::string_view h = spec.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  if (h.empty()) {
    error = "expected HOST:PORT, got '" + std::string(spec) + "'";
    return false;
  }
  host = std::string(h);
  port = static_cast<int>(p);
  return true;
}

bool is_loopback_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(), [](char c) { return g_ascii_tolower(c); });
  if (h == "localhost" || (h.size() > 10 && h.compare(h.size() - 10, 10, ".localhost") == 0))
    return true;
  GInetAddress *addr = g_inet_address_new_from_string(h.c_str());
  if (!addr)
    return false;
  bool loop = g_inet_address_get_is_loopback(addr);
  g_object_unref(addr);
  return loop;
}

bool parse_echo(std::string_view spec, EchoSpec &out, std::string &error) {
  std::string s(spec);
  std::string db = s, delay;
  size_t colon = s.find(':');
  if (colon != std::string::npos) {
    db = s.substr(0, colon);
    delay = s.substr(colon + 1);
  }
  char *end = nullptr;
  double gain = g_ascii_strtod(db.c_str(), &end);
  if (db.empty() || *end || !std::isfinite(gain) || gain > 0 || gain < -120) {
    error = "--echo: '" + s + "' needs a gain in dB between -120 and 0, e.g. -20 or -20:40";
    return false;
  }
  int64_t d = 40;
  if (colon != std::string::npos) {
    d = g_ascii_strtoll(delay.c_str(), &end, 10);
    if (delay.empty() || *end || d < 0 || d > 1000) {
      error = "--echo: the delay in '" + s + "' must be 0..1000 ms";
      return false;
    }
  }
  out.enabled = true;
  out.gain_db = gain;
  out.delay_ms = d / 20 * 20;
  return true;
}

} // namespace emu
