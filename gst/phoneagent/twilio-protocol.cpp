/* gst-phone-agent: Twilio Media Streams messages */
#include "twilio-protocol.h"

#include <json-glib/json-glib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "pa-audio.h"

namespace pa::twilio {

namespace {
/* Printable ASCII but '"' and '\\': what a string may hold on the parser's
 * fast path, and what json_escape_append() copies as it is. */
struct PlainBytes {
  bool ok[256];
  PlainBytes() {
    for (int c = 0; c < 256; c++)
      ok[c] = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
  }
};
const PlainBytes kPlain;

} // namespace

/* Sixteen bytes at a time where SSE2 is there: the payload of every media
 * message, and every string of a model event, passes here. */
const char *json_skip_plain(const char *p, const char *end) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
  while (end - p >= 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    /* signed: bytes from 0x80 up compare below 0x20 too */
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                                _mm_cmplt_epi8(x, space));
    if (int m = _mm_movemask_epi8(stop))
      return p + __builtin_ctz(static_cast<unsigned>(m));
    p += 16;
  }
#endif
  while (p < end && kPlain.ok[static_cast<unsigned char>(*p)])
    p++;
  return p;
}

const char *event_name(Event e) {
  switch (e) {
  case Event::Connected: return "connected";
  case Event::Start: return "start";
  case Event::Media: return "media";
  case Event::Dtmf: return "dtmf";
  case Event::Mark: return "mark";
  case Event::Stop: return "stop";
  case Event::Clear: return "clear";
  case Event::Unknown: break;
  }
  return "unknown";
}

const char *parse_result_name(ParseResult r) {
  switch (r) {
  case ParseResult::Ok: return "ok";
  case ParseResult::MalformedJson: return "malformed-json";
  case ParseResult::MissingField: return "missing-field";
  case ParseResult::InvalidBase64: return "invalid-base64";
  case ParseResult::UnknownEvent: return "unknown-event";
  }
  return "?";
}

namespace {

Event event_from_name(std::string_view n) {
  if (n == "media") return Event::Media;
  if (n == "mark") return Event::Mark;
  if (n == "start") return Event::Start;
  if (n == "connected") return Event::Connected;
  if (n == "dtmf") return Event::Dtmf;
  if (n == "stop") return Event::Stop;
  if (n == "clear") return Event::Clear;
  return Event::Unknown;
}

struct ParserDeleter {
  void operator()(JsonParser *p) const { g_object_unref(p); }
};

/* Parses @text into an object; nullptr on malformed JSON. The parser owns it. */
JsonObject *parse_object(std::unique_ptr<JsonParser, ParserDeleter> &parser, std::string_view text,
                         std::string &error) {
  parser.reset(json_parser_new_immutable());
  GError *err = nullptr;
  if (!json_parser_load_from_data(parser.get(), text.data(), static_cast<gssize>(text.size()), &err)) {
    error = std::string("not valid JSON: ") + (err ? err->message : "?");
    g_clear_error(&err);
    return nullptr;
  }
  JsonNode *root = json_parser_get_root(parser.get());
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    error = "not a JSON object";
    return nullptr;
  }
  return json_node_get_object(root);
}

bool get_string(JsonObject *o, const char *name, std::string &out) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    return false;
  out = json_node_get_string(n);
  return true;
}

/* Twilio numbers: strings in most messages, JSON numbers in mediaFormat.
 * Accept either; a string must be all digits (optionally signed). */
bool get_int(JsonObject *o, const char *name, int64_t &out) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || !JSON_NODE_HOLDS_VALUE(n))
    return false;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_INT64) {
    out = json_node_get_int(n);
    return true;
  }
  if (t == G_TYPE_DOUBLE) {
    out = static_cast<int64_t>(json_node_get_double(n));
    return true;
  }
  if (t == G_TYPE_STRING) {
    const char *s = json_node_get_string(n);
    if (!s || !*s)
      return false;
    char *end = nullptr;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
      return false;
    out = v;
    return true;
  }
  return false;
}

JsonObject *get_object(JsonObject *o, const char *name) {
  JsonNode *n = json_object_get_member(o, name);
  if (!n || !JSON_NODE_HOLDS_OBJECT(n))
    return nullptr;
  return json_node_get_object(n);
}

ParseResult missing(std::string &error, const char *event, const char *field) {
  error = std::string("'") + event + "' message without a valid '" + field + "'";
  return ParseResult::MissingField;
}

/* ---- the fast path: media and mark messages without json-glib ----
 * Accepts only a strict subset of JSON: one object whose member values are
 * strings or (for "media" and "mark") objects of string members; strings
 * without escapes, control characters or non-ASCII bytes; no duplicate
 * members among those read. Anything else, and every message that is not a
 * valid media or mark, goes to parse_inbound_reference(), so the results
 * are the reference's. */
struct Field {
  std::string_view v;
  int count = 0;
};

struct InnerFields {
  Field payload, timestamp, chunk, track, name;
};

struct TopFields {
  Field event, stream_sid, sequence;
  int media_count = 0, mark_count = 0;
  InnerFields media, mark;
};


class Scanner {
public:
  explicit Scanner(std::string_view t) : p_(t.data()), end_(t.data() + t.size()) {}
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      p_++;
  }
  bool lit(char c) {
    ws();
    if (p_ < end_ && *p_ == c) {
      p_++;
      return true;
    }
    return false;
  }
  bool peek(char c) {
    ws();
    return p_ < end_ && *p_ == c;
  }
  bool string(std::string_view &out) {
    if (!lit('"'))
      return false;
    const char *s = p_;
    p_ = json_skip_plain(p_, end_);
    if (p_ == end_ || *p_ != '"')
      return false; /* an escape, a control or non-ASCII byte, or no end */
    out = std::string_view(s, static_cast<size_t>(p_ - s));
    p_++;
    return true;
  }
  bool at_end() {
    ws();
    return p_ == end_;
  }

private:
  const char *p_, *end_;
};

void take(Field &f, std::string_view v) {
  f.v = v;
  f.count++;
}

bool scan_inner(Scanner &sc, InnerFields &in) {
  if (!sc.lit('{'))
    return false;
  if (sc.lit('}'))
    return true;
  for (;;) {
    std::string_view k, v;
    if (!sc.string(k) || !sc.lit(':') || !sc.string(v))
      return false;
    if (k == "payload")
      take(in.payload, v);
    else if (k == "timestamp")
      take(in.timestamp, v);
    else if (k == "chunk")
      take(in.chunk, v);
    else if (k == "track")
      take(in.track, v);
    else if (k == "name")
      take(in.name, v);
    if (sc.lit(','))
      continue;
    return sc.lit('}');
  }
}

bool scan_top(Scanner &sc, TopFields &t) {
  if (!sc.lit('{'))
    return false;
  if (sc.lit('}'))
    return sc.at_end();
  for (;;) {
    std::string_view k;
    if (!sc.string(k) || !sc.lit(':'))
      return false;
    if (sc.peek('{')) {
      if (k == "media") {
        t.media_count++;
        if (!scan_inner(sc, t.media))
          return false;
      } else if (k == "mark") {
        t.mark_count++;
        if (!scan_inner(sc, t.mark))
          return false;
      } else {
        return false;
      }
    } else {
      std::string_view v;
      if (!sc.string(v))
        return false;
      if (k == "event")
        take(t.event, v);
      else if (k == "streamSid")
        take(t.stream_sid, v);
      else if (k == "sequenceNumber")
        take(t.sequence, v);
      else if (k == "media" || k == "mark")
        return false; /* the reference decides what a non-object means */
    }
    if (sc.lit(','))
      continue;
    return sc.lit('}') && sc.at_end();
  }
}

/* get_int()'s rule for a string value. Twilio's numbers are plain digits:
 * those are read here, anything else as strtoll() reads it. */
bool string_to_int(std::string_view s, int64_t &out) {
  if (!s.empty() && s.size() <= 18) {
    int64_t v = 0;
    size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++)
      v = v * 10 + (s[i] - '0');
    if (i == s.size()) {
      out = v;
      return true;
    }
  }
  char buf[32];
  if (s.empty() || s.size() >= sizeof(buf))
    return false;
  memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  char *end = nullptr;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  if (errno || *end)
    return false;
  out = v;
  return true;
}

/* reset() but for the four strings the exact path sets (below). */
void reset_but_names(InboundMessage &out) {
  out.event = Event::Unknown;
  out.sequence_number = -1;
  out.protocol.clear();
  out.version.clear();
  StartInfo &si = out.start;
  si.account_sid.clear();
  si.stream_sid.clear();
  si.call_sid.clear();
  si.tracks.clear();
  si.custom_parameters.clear();
  si.encoding = "audio/x-mulaw";
  si.sample_rate = 8000;
  si.channels = 1;
  out.chunk = -1;
  out.timestamp_ms = -1;
  out.payload.clear();
  out.digit.clear();
  out.stop_account_sid.clear();
  out.stop_call_sid.clear();
}

/* out = InboundMessage(), keeping the strings' storage: a message parsed
 * into the same object as the last one allocates nothing. */
void reset(InboundMessage &out) {
  reset_but_names(out);
  out.event_name.clear();
  out.stream_sid.clear();
  out.track.clear();
  out.mark_name.clear();
}

/* dst = v, leaving @dst alone when it holds @v already: one call's messages
 * repeat their event, stream and track. */
void set_str(std::string &dst, std::string_view v) {
  if (dst.size() != v.size() || memcmp(dst.data(), v.data(), v.size()) != 0)
    dst.assign(v.data(), v.size());
}

/* ---- the exact path: Twilio's own layout, byte for byte ----
 * Twilio (and the emulator) write media and mark messages with the same
 * members in the same order and no spaces (PROTOCOLS.md, section C):
 *   {"event":"media","sequenceNumber":"3","streamSid":"MZ…","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"…"}}
 *   {"event":"mark","sequenceNumber":"4","streamSid":"MZ…","mark":{"name":"…"}}
 * Such a message is read here by matching that text, without looking up
 * members: about half the fast path's cost. Any other spelling, even one
 * space, goes on to the fast path, so what this accepts is a subset of
 * what that accepts, with the same result (tests/server/test-inbound-parser). */
class Exact {
public:
  explicit Exact(std::string_view t) : p_(t.data()), end_(t.data() + t.size()) {}
  bool lit(std::string_view s) {
    if (static_cast<size_t>(end_ - p_) < s.size() || memcmp(p_, s.data(), s.size()) != 0)
      return false;
    p_ += s.size();
    return true;
  }
  /* "digits": 1 to 18 of them, then the closing quote (string_to_int()'s
   * plain case) */
  bool digits(int64_t &out) {
    int64_t v = 0;
    const char *s = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9' && p_ - s < 19)
      v = v * 10 + (*p_++ - '0');
    if (p_ == s || p_ - s > 18 || p_ == end_ || *p_ != '"')
      return false;
    p_++;
    out = v;
    return true;
  }
  /* a string without escapes, control or non-ASCII bytes, then its quote */
  bool plain(std::string_view &out) {
    const char *s = p_;
    p_ = json_skip_plain(p_, end_);
    if (p_ == end_ || *p_ != '"')
      return false;
    out = std::string_view(s, static_cast<size_t>(p_ - s));
    p_++;
    return true;
  }
  /* up to the next quote, unchecked: base64_decode() checks every character */
  bool until_quote(std::string_view &out) {
    const void *q = memchr(p_, '"', static_cast<size_t>(end_ - p_));
    if (!q)
      return false;
    out = std::string_view(p_, static_cast<size_t>(static_cast<const char *>(q) - p_));
    p_ = static_cast<const char *>(q) + 1;
    return true;
  }
  bool at_end() const { return p_ == end_; }

private:
  const char *p_, *end_;
};

/* TRUE when @text is a media or mark message in Twilio's exact layout, read
 * into @out (always a valid message). */
bool parse_inbound_exact(std::string_view text, InboundMessage &out) {
  Exact x(text);
  Event ev;
  if (x.lit("{\"event\":\"media\",\"sequenceNumber\":\""))
    ev = Event::Media;
  else if (x.lit("{\"event\":\"mark\",\"sequenceNumber\":\""))
    ev = Event::Mark;
  else
    return false;
  int64_t seq;
  std::string_view sid;
  if (!x.digits(seq) || !x.lit(",\"streamSid\":\"") || !x.plain(sid))
    return false;
  if (ev == Event::Media) {
    int64_t chunk, ts;
    std::string_view track, payload;
    if (!x.lit(",\"media\":{\"track\":\"") || !x.plain(track) || !x.lit(",\"chunk\":\"") || !x.digits(chunk) ||
        !x.lit(",\"timestamp\":\"") || !x.digits(ts) || !x.lit(",\"payload\":\"") || !x.until_quote(payload) ||
        !x.lit("}}") || !x.at_end())
      return false;
    reset_but_names(out);
    if (!base64_decode(payload, out.payload)) {
      reset(out);
      return false; /* the reference says what is wrong with it */
    }
    out.event = ev;
    set_str(out.event_name, "media");
    set_str(out.stream_sid, sid);
    out.sequence_number = seq;
    set_str(out.track, track);
    out.mark_name.clear();
    out.chunk = chunk;
    out.timestamp_ms = ts;
    return true;
  }
  std::string_view name;
  if (!x.lit(",\"mark\":{\"name\":\"") || !x.plain(name) || !x.lit("}}") || !x.at_end())
    return false;
  reset_but_names(out);
  out.event = ev;
  set_str(out.event_name, "mark");
  set_str(out.stream_sid, sid);
  out.sequence_number = seq;
  out.track.clear();
  set_str(out.mark_name, name);
  return true;
}

/* TRUE when the fast path fully handled @text (always a valid message). */
bool parse_inbound_fast(std::string_view text, InboundMessage &out) {
  Scanner sc(text);
  TopFields t;
  if (!scan_top(sc, t))
    return false;
  if (t.event.count != 1 || t.stream_sid.count > 1 || t.sequence.count > 1 || t.media_count > 1 || t.mark_count > 1)
    return false;
  Event ev = event_from_name(t.event.v);
  int64_t seq = -1;
  if (t.sequence.count && !string_to_int(t.sequence.v, seq))
    return false;
  if (ev == Event::Media) {
    const InnerFields &m = t.media;
    if (t.media_count != 1 || m.payload.count != 1 || m.timestamp.count != 1 || m.chunk.count > 1 ||
        m.track.count > 1)
      return false;
    int64_t ts = -1, chunk = -1;
    if (!string_to_int(m.timestamp.v, ts) || (m.chunk.count && !string_to_int(m.chunk.v, chunk)))
      return false;
    reset(out);
    if (!base64_decode(m.payload.v, out.payload))
      return false;
    out.event = ev;
    out.event_name.assign(t.event.v);
    out.stream_sid.assign(t.stream_sid.v);
    out.sequence_number = seq;
    out.timestamp_ms = ts;
    out.chunk = chunk;
    out.track.assign(m.track.v);
    return true;
  }
  if (ev == Event::Mark) {
    if (t.mark_count != 1 || t.mark.name.count != 1)
      return false;
    reset(out);
    out.event = ev;
    out.event_name.assign(t.event.v);
    out.stream_sid.assign(t.stream_sid.v);
    out.sequence_number = seq;
    out.mark_name.assign(t.mark.name.v);
    return true;
  }
  return false;
}

} // namespace

ParseResult parse_inbound(std::string_view text, InboundMessage &out, std::string &error) {
  if (parse_inbound_exact(text, out) || parse_inbound_fast(text, out))
    return ParseResult::Ok;
  return parse_inbound_reference(text, out, error);
}

ParseResult parse_inbound_reference(std::string_view text, InboundMessage &out, std::string &error) {
  std::unique_ptr<JsonParser, ParserDeleter> parser;
  JsonObject *o = parse_object(parser, text, error);
  if (!o)
    return ParseResult::MalformedJson;

  out = InboundMessage();
  if (!get_string(o, "event", out.event_name)) {
    error = "message without an 'event' string";
    return ParseResult::MissingField;
  }
  out.event = event_from_name(out.event_name);
  get_string(o, "streamSid", out.stream_sid);
  get_int(o, "sequenceNumber", out.sequence_number);

  switch (out.event) {
  case Event::Connected:
    get_string(o, "protocol", out.protocol);
    get_string(o, "version", out.version);
    return ParseResult::Ok;
  case Event::Start: {
    JsonObject *s = get_object(o, "start");
    if (!s)
      return missing(error, "start", "start");
    StartInfo &si = out.start;
    get_string(s, "accountSid", si.account_sid);
    get_string(s, "callSid", si.call_sid);
    if (!get_string(s, "streamSid", si.stream_sid))
      si.stream_sid = out.stream_sid;
    if (out.stream_sid.empty())
      out.stream_sid = si.stream_sid;
    if (out.stream_sid.empty())
      return missing(error, "start", "streamSid");
    JsonNode *tracks = json_object_get_member(s, "tracks");
    if (tracks && JSON_NODE_HOLDS_ARRAY(tracks)) {
      JsonArray *a = json_node_get_array(tracks);
      for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING)
          si.tracks.emplace_back(json_node_get_string(e));
      }
    }
    if (JsonObject *cp = get_object(s, "customParameters")) {
      JsonObjectIter it;
      const gchar *name;
      JsonNode *val;
      json_object_iter_init(&it, cp);
      while (json_object_iter_next(&it, &name, &val)) {
        if (JSON_NODE_HOLDS_VALUE(val) && json_node_get_value_type(val) == G_TYPE_STRING)
          si.custom_parameters.emplace_back(name, json_node_get_string(val));
      }
    }
    if (JsonObject *mf = get_object(s, "mediaFormat")) {
      int64_t v;
      get_string(mf, "encoding", si.encoding);
      if (get_int(mf, "sampleRate", v))
        si.sample_rate = static_cast<int>(v);
      if (get_int(mf, "channels", v))
        si.channels = static_cast<int>(v);
    }
    return ParseResult::Ok;
  }
  case Event::Media: {
    JsonObject *m = get_object(o, "media");
    if (!m)
      return missing(error, "media", "media");
    std::string payload;
    if (!get_string(m, "payload", payload))
      return missing(error, "media", "media.payload");
    if (!get_int(m, "timestamp", out.timestamp_ms))
      return missing(error, "media", "media.timestamp");
    get_int(m, "chunk", out.chunk);
    get_string(m, "track", out.track);
    if (!base64_decode(payload, out.payload)) {
      error = "media.payload is not valid base64";
      return ParseResult::InvalidBase64;
    }
    return ParseResult::Ok;
  }
  case Event::Dtmf: {
    JsonObject *d = get_object(o, "dtmf");
    if (!d || !get_string(d, "digit", out.digit) || out.digit.empty())
      return missing(error, "dtmf", "dtmf.digit");
    get_string(d, "track", out.track);
    return ParseResult::Ok;
  }
  case Event::Mark: {
    JsonObject *mk = get_object(o, "mark");
    if (!mk || !get_string(mk, "name", out.mark_name))
      return missing(error, "mark", "mark.name");
    return ParseResult::Ok;
  }
  case Event::Stop: {
    if (JsonObject *st = get_object(o, "stop")) {
      get_string(st, "accountSid", out.stop_account_sid);
      get_string(st, "callSid", out.stop_call_sid);
    }
    return ParseResult::Ok;
  }
  case Event::Clear:
  case Event::Unknown:
    break;
  }
  error = "unknown event '" + out.event_name + "'";
  return ParseResult::UnknownEvent;
}

/* ------------------------------------------------------------ builders */

void json_escape_append(std::string &out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  /* the usual case (SIDs, mark names): nothing to escape */
  size_t plain = static_cast<size_t>(json_skip_plain(s.data(), s.data() + s.size()) - s.data());
  out.append(s.data(), plain);
  s.remove_prefix(plain);
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20) {
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
      } else {
        out.push_back(ch);
      }
    }
  }
}

namespace {
void append_quoted(std::string &out, std::string_view s) {
  out.push_back('"');
  json_escape_append(out, s);
  out.push_back('"');
}
} // namespace

namespace {
bool is_plain(std::string_view s) { return json_skip_plain(s.data(), s.data() + s.size()) == s.data() + s.size(); }

/* Appends @parts to @out with one resize: the builders below run for every
 * frame sent, and one append each costs more than the copying. */
void append_parts(std::string &out, std::initializer_list<std::string_view> parts) {
  size_t at = out.size(), n = 0;
  for (std::string_view v : parts)
    n += v.size();
  out.resize(at + n);
  char *d = out.data() + at;
  for (std::string_view v : parts) {
    memcpy(d, v.data(), v.size());
    d += v.size();
  }
}
} // namespace

void append_media(std::string &out, std::string_view stream_sid, const uint8_t *mulaw, size_t len) {
  static constexpr std::string_view head = "{\"event\":\"media\",\"streamSid\":\"", mid = "\",\"media\":{\"payload\":\"";
  out.reserve(out.size() + 64 + stream_sid.size() + (len + 2) / 3 * 4);
  if (is_plain(stream_sid)) {
    out.append(head.data(), head.size());
    out.append(stream_sid.data(), stream_sid.size());
    out.append(mid.data(), mid.size());
  } else {
    out += "{\"event\":\"media\",\"streamSid\":";
    append_quoted(out, stream_sid);
    out += ",\"media\":{\"payload\":\"";
  }
  base64_encode_append(out, mulaw, len);
  out.append("\"}}", 3);
}

std::string build_media(std::string_view stream_sid, const uint8_t *mulaw, size_t len) {
  std::string out;
  append_media(out, stream_sid, mulaw, len);
  return out;
}

void append_mark(std::string &out, std::string_view stream_sid, std::string_view name) {
  if (is_plain(stream_sid) && is_plain(name)) {
    append_parts(out, {"{\"event\":\"mark\",\"streamSid\":\"", stream_sid, "\",\"mark\":{\"name\":\"", name, "\"}}"});
    return;
  }
  out.reserve(out.size() + 48 + stream_sid.size() + name.size()); /* one allocation, not four */
  out += "{\"event\":\"mark\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += ",\"mark\":{\"name\":";
  append_quoted(out, name);
  out += "}}";
}

std::string build_mark(std::string_view stream_sid, std::string_view name) {
  std::string out;
  append_mark(out, stream_sid, name);
  return out;
}

std::string build_clear(std::string_view stream_sid) {
  std::string out = "{\"event\":\"clear\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += "}";
  return out;
}

ParseResult parse_outbound(std::string_view text, OutboundMessage &out, std::string &error) {
  std::unique_ptr<JsonParser, ParserDeleter> parser;
  JsonObject *o = parse_object(parser, text, error);
  if (!o)
    return ParseResult::MalformedJson;
  out = OutboundMessage();
  std::string ev;
  if (!get_string(o, "event", ev)) {
    error = "message without an 'event' string";
    return ParseResult::MissingField;
  }
  out.event = event_from_name(ev);
  if (!get_string(o, "streamSid", out.stream_sid)) {
    error = "'" + ev + "' message without 'streamSid'";
    return ParseResult::MissingField;
  }
  auto expect_members = [&](JsonObject *obj, std::initializer_list<const char *> allowed, const char *where) {
    GList *members = json_object_get_members(obj);
    bool ok = true;
    for (GList *l = members; l; l = l->next) {
      bool found = false;
      for (const char *a : allowed)
        found = found || g_strcmp0(a, static_cast<const char *>(l->data)) == 0;
      if (!found) {
        error = std::string("unexpected field '") + static_cast<const char *>(l->data) + "' in " + where;
        ok = false;
        break;
      }
    }
    g_list_free(members);
    return ok;
  };
  switch (out.event) {
  case Event::Media: {
    if (!expect_members(o, {"event", "streamSid", "media"}, "media message"))
      return ParseResult::MissingField;
    JsonObject *m = get_object(o, "media");
    std::string payload;
    if (!m || !get_string(m, "payload", payload))
      return missing(error, "media", "media.payload");
    if (!expect_members(m, {"payload"}, "media object"))
      return ParseResult::MissingField;
    if (!base64_decode(payload, out.payload)) {
      error = "media.payload is not valid base64";
      return ParseResult::InvalidBase64;
    }
    return ParseResult::Ok;
  }
  case Event::Mark: {
    if (!expect_members(o, {"event", "streamSid", "mark"}, "mark message"))
      return ParseResult::MissingField;
    JsonObject *mk = get_object(o, "mark");
    if (!mk || !get_string(mk, "name", out.mark_name))
      return missing(error, "mark", "mark.name");
    if (!expect_members(mk, {"name"}, "mark object"))
      return ParseResult::MissingField;
    return ParseResult::Ok;
  }
  case Event::Clear:
    if (!expect_members(o, {"event", "streamSid"}, "clear message"))
      return ParseResult::MissingField;
    return ParseResult::Ok;
  default:
    break;
  }
  error = "event '" + ev + "' cannot be sent to Twilio";
  return ParseResult::UnknownEvent;
}

std::string build_connected() { return "{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}"; }

std::string build_start(int64_t seq, const StartInfo &info) {
  std::string out = "{\"event\":\"start\",\"sequenceNumber\":\"" + std::to_string(seq) + "\",\"streamSid\":";
  append_quoted(out, info.stream_sid);
  out += ",\"start\":{\"accountSid\":";
  append_quoted(out, info.account_sid);
  out += ",\"streamSid\":";
  append_quoted(out, info.stream_sid);
  out += ",\"callSid\":";
  append_quoted(out, info.call_sid);
  out += ",\"tracks\":[";
  for (size_t i = 0; i < info.tracks.size(); i++) {
    if (i)
      out += ",";
    append_quoted(out, info.tracks[i]);
  }
  out += "],\"customParameters\":{";
  for (size_t i = 0; i < info.custom_parameters.size(); i++) {
    if (i)
      out += ",";
    append_quoted(out, info.custom_parameters[i].first);
    out += ":";
    append_quoted(out, info.custom_parameters[i].second);
  }
  out += "},\"mediaFormat\":{\"encoding\":";
  append_quoted(out, info.encoding);
  out += ",\"sampleRate\":" + std::to_string(info.sample_rate) + ",\"channels\":" + std::to_string(info.channels) +
         "}}}";
  return out;
}

std::string build_inbound_media(int64_t seq, std::string_view stream_sid, int64_t chunk, int64_t timestamp_ms,
                                const uint8_t *mulaw, size_t len) {
  std::string out;
  out.reserve(160 + (len + 2) / 3 * 4);
  out += "{\"event\":\"media\",\"sequenceNumber\":\"" + std::to_string(seq) + "\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += ",\"media\":{\"track\":\"inbound\",\"chunk\":\"" + std::to_string(chunk) + "\",\"timestamp\":\"" +
         std::to_string(timestamp_ms) + "\",\"payload\":\"";
  out += base64_encode(mulaw, len);
  out += "\"}}";
  return out;
}

std::string build_dtmf(int64_t seq, std::string_view stream_sid, std::string_view digit) {
  std::string out = "{\"event\":\"dtmf\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += ",\"sequenceNumber\":\"" + std::to_string(seq) + "\",\"dtmf\":{\"track\":\"inbound_track\",\"digit\":";
  append_quoted(out, digit);
  out += "}}";
  return out;
}

std::string build_mark_echo(int64_t seq, std::string_view stream_sid, std::string_view name) {
  std::string out = "{\"event\":\"mark\",\"sequenceNumber\":\"" + std::to_string(seq) + "\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += ",\"mark\":{\"name\":";
  append_quoted(out, name);
  out += "}}";
  return out;
}

std::string build_stop(int64_t seq, std::string_view stream_sid, std::string_view account_sid,
                       std::string_view call_sid) {
  std::string out = "{\"event\":\"stop\",\"sequenceNumber\":\"" + std::to_string(seq) + "\",\"streamSid\":";
  append_quoted(out, stream_sid);
  out += ",\"stop\":{\"accountSid\":";
  append_quoted(out, account_sid);
  out += ",\"callSid\":";
  append_quoted(out, call_sid);
  out += "}}";
  return out;
}

std::string make_sid(const char *prefix) {
  static const char hex[] = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 32; i++)
    s.push_back(hex[g_random_int_range(0, 16)]);
  return s;
}

} // namespace pa::twilio
