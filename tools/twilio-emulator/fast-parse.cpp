/* twilio-emulator: canonical-form fast path for media and mark */
#include "fast-parse.h"

#include "pa-audio.h"

namespace emu {

namespace {

bool consume(std::string_view &s, std::string_view lit) {
  if (s.substr(0, lit.size()) != lit)
    return false;
  s.remove_prefix(lit.size());
  return true;
}

/* A JSON string body of printable ASCII without escapes, up to the closing
 * quote (which is consumed). Anything else (escapes, control characters,
 * non-ASCII that needs UTF-8 validation) is left to the full parser. */
bool plain_string(std::string_view &s, std::string_view &value) {
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      value = s.substr(0, i);
      s.remove_prefix(i + 1);
      return true;
    }
    if (c == '\\' || c < 0x20 || c >= 0x80)
      return false;
  }
  return false;
}

bool sid_chars(std::string_view sid) {
  if (sid.empty())
    return false;
  for (char c : sid)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
      return false;
  return true;
}

} // namespace

bool parse_outbound_fast(std::string_view s, pa::twilio::OutboundMessage &out) {
  std::string_view sid, value;
  if (consume(s, "{\"event\":\"media\",\"streamSid\":\"")) {
    if (!plain_string(s, sid) || !sid_chars(sid) || !consume(s, ",\"media\":{\"payload\":\"") ||
        !plain_string(s, value) || s != "}}")
      return false;
    if (!pa::base64_decode(value, out.payload))
      return false;
    out.event = pa::twilio::Event::Media;
    out.mark_name.clear();
  } else if (consume(s, "{\"event\":\"mark\",\"streamSid\":\"")) {
    if (!plain_string(s, sid) || !sid_chars(sid) || !consume(s, ",\"mark\":{\"name\":\"") ||
        !plain_string(s, value) || s != "}}")
      return false;
    out.event = pa::twilio::Event::Mark;
    out.payload.clear();
    out.mark_name.assign(value.data(), value.size());
  } else {
    return false;
  }
  out.stream_sid.assign(sid.data(), sid.size());
  return true;
}

} // namespace emu
