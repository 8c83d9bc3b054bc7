/* gst-phone-agent: one Realtime session of the local model.
 *
 * Protocol: PROTOCOLS.md E (GA and beta names). Everything here runs on the
 * engine thread; transcription and synthesis run on worker threads and come
 * back through Services callbacks, guarded by a liveness token. */
#include "local-session.h"

#include <json-glib/json-glib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "local-stt.h"
#include "local-vad.h"
#include "pa-audio.h"

GST_DEBUG_CATEGORY_EXTERN(pa_local_debug);
#define GST_CAT_DEFAULT pa_local_debug

namespace pa::local {

namespace {

constexpr int kChunkMs = 100;              /* audio per delta */
constexpr uint64_t kMaxManualBufferMs = 120000;
constexpr int kEspeakDefaultWpm = 175;

/* ---------------------------------------------------------- JSON helpers */

/* An owned JsonNode. */
class Node {
public:
  Node() = default;
  explicit Node(JsonNode *adopt) : n_(adopt) {}
  Node(const Node &o) : n_(o.n_ ? json_node_copy(o.n_) : nullptr) {}
  Node &operator=(const Node &o) {
    if (this != &o)
      reset(o.n_ ? json_node_copy(o.n_) : nullptr);
    return *this;
  }
  Node(Node &&o) noexcept : n_(o.n_) { o.n_ = nullptr; }
  Node &operator=(Node &&o) noexcept {
    if (this != &o) {
      reset(o.n_);
      o.n_ = nullptr;
    }
    return *this;
  }
  ~Node() { reset(); }
  void reset(JsonNode *n = nullptr) {
    if (n_)
      json_node_unref(n_);
    n_ = n;
  }
  JsonNode *get() const { return n_; }
  /* A new reference-free copy; JSON null when empty. */
  JsonNode *copy() const { return n_ ? json_node_copy(n_) : json_node_init_null(json_node_alloc()); }
  bool is_null() const { return !n_ || JSON_NODE_HOLDS_NULL(n_); }

private:
  JsonNode *n_ = nullptr;
};

/* A JSON object under construction (members keep insertion order). */
class J {
public:
  J() : o_(json_object_new()) {}
  J(const J &) = delete;
  J &operator=(const J &) = delete;
  J(J &&other) noexcept : o_(other.o_) { other.o_ = nullptr; }
  ~J() {
    if (o_)
      json_object_unref(o_);
  }
  J &s(const char *k, const std::string &v) {
    json_object_set_string_member(o_, k, v.c_str());
    return *this;
  }
  J &i(const char *k, gint64 v) {
    json_object_set_int_member(o_, k, v);
    return *this;
  }
  J &d(const char *k, double v) {
    json_object_set_double_member(o_, k, v);
    return *this;
  }
  J &b(const char *k, bool v) {
    json_object_set_boolean_member(o_, k, v);
    return *this;
  }
  J &null(const char *k) {
    json_object_set_null_member(o_, k);
    return *this;
  }
  J &o(const char *k, J &&v) {
    json_object_set_object_member(o_, k, v.release());
    return *this;
  }
  J &n(const char *k, JsonNode *adopt) {
    json_object_set_member(o_, k, adopt);
    return *this;
  }
  J &a(const char *k, JsonArray *adopt) {
    json_object_set_array_member(o_, k, adopt);
    return *this;
  }
  J &s_or_null(const char *k, const std::string &v) { return v.empty() ? null(k) : s(k, v); }
  JsonObject *release() {
    JsonObject *r = o_;
    o_ = nullptr;
    return r;
  }
  JsonNode *take_node() {
    JsonNode *n = json_node_init_object(json_node_alloc(), o_);
    json_object_unref(o_);
    o_ = nullptr;
    return n;
  }
  std::string str() const {
    JsonNode *n = json_node_init_object(json_node_alloc(), o_);
    gchar *t = json_to_string(n, FALSE);
    std::string s(t);
    g_free(t);
    json_node_unref(n);
    return s;
  }

private:
  JsonObject *o_;
};

JsonArray *string_array(std::initializer_list<const char *> items) {
  JsonArray *a = json_array_new();
  for (const char *s : items)
    json_array_add_string_element(a, s);
  return a;
}

JsonArray *node_array(const std::vector<Node> &items) {
  JsonArray *a = json_array_new();
  for (const auto &n : items)
    json_array_add_element(a, n.copy());
  return a;
}

bool holds_string(JsonNode *n) { return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING; }
bool holds_number(JsonNode *n) {
  GType t = n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
}
bool holds_bool(JsonNode *n) { return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_BOOLEAN; }

JsonNode *member(JsonObject *o, const char *k) {
  return o && json_object_has_member(o, k) ? json_object_get_member(o, k) : nullptr;
}
std::string str_member(JsonObject *o, const char *k, const std::string &def = "") {
  JsonNode *n = member(o, k);
  return holds_string(n) ? json_node_get_string(n) : def;
}
JsonObject *obj_member(JsonObject *o, const char *k) {
  JsonNode *n = member(o, k);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : nullptr;
}

/* -------------------------------------------------------------- config */

enum class Fmt { PCM24, PCMU };

struct Turn {
  enum class Type { None, Server, Semantic } type = Type::Server;
  TurnParams params;
  bool create_response = true;
  bool interrupt_response = true;
  std::string eagerness = "auto";
};

struct Config {
  std::string model;
  std::string instructions;
  bool out_audio = true;
  Fmt in_fmt = Fmt::PCM24;
  Fmt out_fmt = Fmt::PCM24;
  Node transcription; /* null: off */
  Node noise_reduction;
  Turn turn;
  std::string voice = "alloy";
  double speed = 1.0;
  double temperature = 0.8;
  Node tools;         /* array */
  std::vector<std::string> tool_names;
  Node tool_choice;   /* "auto" | "none" | "required" | {type:function,name} */
};

struct Err {
  std::string code, message, param;
};

int fmt_rate(Fmt f) { return f == Fmt::PCMU ? kMulawRate : 24000; }
size_t fmt_bytes_per_ms(Fmt f) { return f == Fmt::PCMU ? 8 : 48; }

bool parse_format(JsonNode *n, Fmt &out, Err &err, const std::string &param) {
  std::string type;
  if (holds_string(n)) {
    type = json_node_get_string(n);
  } else if (n && JSON_NODE_HOLDS_OBJECT(n)) {
    JsonObject *o = json_node_get_object(n);
    type = str_member(o, "type");
    JsonNode *rate = member(o, "rate");
    if (rate && (!holds_number(rate) || json_node_get_int(rate) != 24000) && type == "audio/pcm") {
      err = {"invalid_value", "Only 24000 Hz is supported for audio/pcm.", param + ".rate"};
      return false;
    }
  } else {
    err = {"invalid_type", "The audio format must be a string or an object.", param};
    return false;
  }
  if (type == "audio/pcm" || type == "pcm16") {
    out = Fmt::PCM24;
    return true;
  }
  if (type == "audio/pcmu" || type == "g711_ulaw") {
    out = Fmt::PCMU;
    return true;
  }
  err = {"invalid_value",
         "Invalid value: '" + type +
             "'. The local model supports 'audio/pcmu' (g711_ulaw) and 'audio/pcm' (pcm16, 24 kHz).",
         param + (holds_string(n) ? "" : ".type")};
  return false;
}

bool parse_turn(JsonNode *n, Turn &turn, Err &err, const std::string &param) {
  if (!n || JSON_NODE_HOLDS_NULL(n)) {
    turn.type = Turn::Type::None;
    return true;
  }
  if (!JSON_NODE_HOLDS_OBJECT(n)) {
    err = {"invalid_type", "turn_detection must be an object or null.", param};
    return false;
  }
  JsonObject *o = json_node_get_object(n);
  std::string type = str_member(o, "type");
  Turn t = turn;
  if (!type.empty()) {
    Turn::Type want;
    if (type == "server_vad")
      want = Turn::Type::Server;
    else if (type == "semantic_vad")
      want = Turn::Type::Semantic;
    else {
      err = {"invalid_value", "Invalid value: '" + type + "'. Supported values are: 'server_vad' and 'semantic_vad'.",
             param + ".type"};
      return false;
    }
    if (want != turn.type)
      t = Turn(); /* defaults of the new type */
    t.type = want;
  } else if (t.type == Turn::Type::None) {
    t = Turn(); /* a partial object enables server_vad with defaults */
  }
  if (JsonNode *v = member(o, "threshold")) {
    double th = holds_number(v) ? json_node_get_double(v) : -1;
    if (th < 0 || th > 1) {
      err = {"invalid_value", "threshold must be a number between 0 and 1.", param + ".threshold"};
      return false;
    }
    t.params.threshold = th;
  }
  for (auto [key, field] : {std::pair<const char *, int *>{"prefix_padding_ms", &t.params.prefix_padding_ms},
                            std::pair<const char *, int *>{"silence_duration_ms", &t.params.silence_duration_ms}}) {
    if (JsonNode *v = member(o, key)) {
      gint64 ms = holds_number(v) ? json_node_get_int(v) : -1;
      if (ms < 0 || ms > 10000) {
        err = {"invalid_value", std::string(key) + " must be between 0 and 10000.", param + "." + key};
        return false;
      }
      *field = static_cast<int>(ms);
    }
  }
  if (JsonNode *v = member(o, "create_response"))
    t.create_response = holds_bool(v) ? json_node_get_boolean(v) : t.create_response;
  if (JsonNode *v = member(o, "interrupt_response"))
    t.interrupt_response = holds_bool(v) ? json_node_get_boolean(v) : t.interrupt_response;
  if (t.type == Turn::Type::Semantic) {
    /* No semantic model here: semantic_vad is server_vad whose end-of-turn
     * silence follows the eagerness. */
    t.eagerness = str_member(o, "eagerness", t.eagerness);
    t.params.silence_duration_ms = t.eagerness == "high" ? 300 : t.eagerness == "low" ? 1200 : 700;
  }
  turn = t;
  return true;
}

bool parse_tools(JsonNode *n, Config &c, Err &err, const std::string &param) {
  if (!n || JSON_NODE_HOLDS_NULL(n)) {
    c.tools.reset();
    c.tool_names.clear();
    return true;
  }
  if (!JSON_NODE_HOLDS_ARRAY(n)) {
    err = {"invalid_type", "tools must be an array.", param};
    return false;
  }
  std::vector<std::string> names;
  JsonArray *a = json_node_get_array(n);
  for (guint i = 0; i < json_array_get_length(a); i++) {
    JsonNode *e = json_array_get_element(a, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : nullptr;
    std::string name = str_member(o, "name");
    if (name.empty()) {
      err = {"missing_required_parameter", "Missing required parameter: '" + param + "[" + std::to_string(i) + "].name'.",
             param + "[" + std::to_string(i) + "].name"};
      return false;
    }
    names.push_back(name);
  }
  c.tools.reset(json_node_copy(n));
  c.tool_names = names;
  return true;
}

/* Beta-shaped session objects have flat audio fields. */
bool is_beta_shape(JsonObject *s) {
  for (const char *k : {"input_audio_format", "output_audio_format", "input_audio_transcription", "modalities",
                        "voice", "turn_detection", "temperature", "max_response_output_tokens",
                        "input_audio_noise_reduction"})
    if (json_object_has_member(s, k))
      return true;
  return false;
}

bool parse_modalities(JsonNode *n, bool &out_audio, Err &err, const std::string &param) {
  if (!n || !JSON_NODE_HOLDS_ARRAY(n)) {
    err = {"invalid_type", "Expected an array of modalities.", param};
    return false;
  }
  bool audio = false, text = false;
  JsonArray *a = json_node_get_array(n);
  for (guint i = 0; i < json_array_get_length(a); i++) {
    const char *m = holds_string(json_array_get_element(a, i)) ? json_array_get_string_element(a, i) : "";
    if (g_strcmp0(m, "audio") == 0)
      audio = true;
    else if (g_strcmp0(m, "text") == 0)
      text = true;
    else {
      err = {"invalid_value", std::string("Invalid modality '") + m + "'.", param};
      return false;
    }
  }
  if (!audio && !text) {
    err = {"invalid_value", "At least one modality is required.", param};
    return false;
  }
  out_audio = audio;
  return true;
}

/* Applies a session.update (either shape) to @c. */
bool parse_session(JsonObject *s, Config &c, Err &err) {
  if (JsonNode *t = member(s, "type")) {
    std::string type = holds_string(t) ? json_node_get_string(t) : "";
    if (type != "realtime") {
      err = {"invalid_value", "Invalid value: '" + type + "'. The local model supports session.type 'realtime' only.",
             "session.type"};
      return false;
    }
  }
  if (JsonNode *v = member(s, "model"); holds_string(v))
    c.model = json_node_get_string(v);
  if (JsonNode *v = member(s, "instructions")) {
    if (!holds_string(v) && !JSON_NODE_HOLDS_NULL(v)) {
      err = {"invalid_type", "instructions must be a string.", "session.instructions"};
      return false;
    }
    c.instructions = holds_string(v) ? json_node_get_string(v) : "";
  }
  if (JsonNode *v = member(s, "output_modalities"))
    if (!parse_modalities(v, c.out_audio, err, "session.output_modalities"))
      return false;
  if (JsonNode *v = member(s, "modalities"))
    if (!parse_modalities(v, c.out_audio, err, "session.modalities"))
      return false;
  /* GA nested audio config */
  if (JsonObject *audio = obj_member(s, "audio")) {
    if (JsonObject *in = obj_member(audio, "input")) {
      if (JsonNode *f = member(in, "format"))
        if (!parse_format(f, c.in_fmt, err, "session.audio.input.format"))
          return false;
      if (JsonNode *t = member(in, "transcription"))
        c.transcription.reset(json_node_copy(t));
      if (JsonNode *t = member(in, "noise_reduction"))
        c.noise_reduction.reset(json_node_copy(t));
      if (json_object_has_member(in, "turn_detection"))
        if (!parse_turn(member(in, "turn_detection"), c.turn, err, "session.audio.input.turn_detection"))
          return false;
    }
    if (JsonObject *out = obj_member(audio, "output")) {
      if (JsonNode *f = member(out, "format"))
        if (!parse_format(f, c.out_fmt, err, "session.audio.output.format"))
          return false;
      if (JsonNode *v = member(out, "voice"); holds_string(v))
        c.voice = json_node_get_string(v);
      if (JsonNode *v = member(out, "speed"); holds_number(v))
        c.speed = std::clamp(json_node_get_double(v), 0.25, 1.5);
    }
  }
  /* beta flat fields (also accepted from hybrid servers' clients) */
  if (JsonNode *f = member(s, "input_audio_format"))
    if (!parse_format(f, c.in_fmt, err, "session.input_audio_format"))
      return false;
  if (JsonNode *f = member(s, "output_audio_format"))
    if (!parse_format(f, c.out_fmt, err, "session.output_audio_format"))
      return false;
  if (JsonNode *t = member(s, "input_audio_transcription"))
    c.transcription.reset(json_node_copy(t));
  if (JsonNode *t = member(s, "input_audio_noise_reduction"))
    c.noise_reduction.reset(json_node_copy(t));
  if (json_object_has_member(s, "turn_detection"))
    if (!parse_turn(member(s, "turn_detection"), c.turn, err, "session.turn_detection"))
      return false;
  if (JsonNode *v = member(s, "voice"); holds_string(v))
    c.voice = json_node_get_string(v);
  if (JsonNode *v = member(s, "speed"); holds_number(v))
    c.speed = std::clamp(json_node_get_double(v), 0.25, 1.5);
  if (JsonNode *v = member(s, "temperature"); holds_number(v))
    c.temperature = json_node_get_double(v);
  if (json_object_has_member(s, "tools"))
    if (!parse_tools(member(s, "tools"), c, err, "session.tools"))
      return false;
  if (JsonNode *v = member(s, "tool_choice"))
    c.tool_choice.reset(json_node_copy(v));
  return true;
}

/* ------------------------------------------------------- conversation */

struct Item {
  std::string id;
  std::string type;   /* message | function_call | function_call_output */
  std::string role;   /* message: user | assistant | system */
  std::string status = "completed";
  std::string part;   /* content part type: input_audio, input_text, output_audio/audio, output_text/text */
  std::string text;   /* input_text / output_text */
  std::string transcript;
  bool transcript_known = false;
  double audio_ms = 0;
  std::string name, call_id, arguments, output;
};

/* "Say: ..." at the start of response instructions speaks the rest. */
std::string say_from_instructions(const std::string &instr) {
  std::string s = instr;
  size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos)
    return "";
  s = s.substr(b);
  if (g_ascii_strncasecmp(s.c_str(), "say", 3) != 0)
    return "";
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon > 16)
    return "";
  std::string rest = s.substr(colon + 1);
  rest.erase(0, rest.find_first_not_of(" \t\n"));
  while (!rest.empty() && g_ascii_isspace(rest.back()))
    rest.pop_back();
  if (rest.size() >= 2 && (rest.front() == '"' || rest.front() == '\'') && rest.back() == rest.front())
    rest = rest.substr(1, rest.size() - 2);
  return rest;
}

size_t count_words(const std::string &s) { return normalize_words(s).size(); }

} // namespace

/* -------------------------------------------------------------- Impl */

struct Session::Impl {
  struct ResponseOpts {
    std::string instructions;
    bool out_of_band = false;
    std::optional<bool> audio;
    std::optional<Fmt> fmt;
    std::string voice;
    Node metadata;
  };

  struct Response {
    std::string id;
    enum class Phase { Waiting, Synth, Streaming, Done } phase = Phase::Waiting;
    ResponseOpts opts;
    bool audio = true;
    Fmt fmt = Fmt::PCM24;
    std::string voice;
    Plan plan;
    bool canned = false;
    std::vector<Node> output;
    int next_index = 0;
    /* the message being spoken */
    std::string msg_id;
    int msg_index = 0;
    std::string part_type;
    std::vector<uint8_t> audio_bytes;
    size_t sent = 0;
    std::vector<std::pair<size_t, double>> words; /* (byte offset in say, start ms) */
    size_t words_sent = 0;
    std::string transcript_sent;
    GSource *timer = nullptr;
    gint64 t0 = 0;
    double out_audio_ms = 0;
  };

  Impl(Services &s, Session *owner, SoupWebsocketConnection *socket, Dialect d, std::string model)
      : svc(s), self(owner), ws(socket), dialect(d), dialog(s.agent) {
    session_id = make_id("sess_");
    conversation_id = make_id("conv_");
    cfg.model = model.empty() ? "local-scripted" : model;
    espeak_voice = svc.config.voice;
    turns.set_params(cfg.turn.params);
    reset_resampler();
    expires_at = g_get_real_time() / G_USEC_PER_SEC + 3600;
  }

  ~Impl() {
    if (resp && resp->timer) {
      g_source_destroy(resp->timer);
      g_source_unref(resp->timer);
      resp->timer = nullptr;
    }
  }

  Services &svc;
  Session *self;
  SoupWebsocketConnection *ws;
  Dialect dialect;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  std::string session_id, conversation_id;
  gint64 expires_at = 0;
  Config cfg;
  std::string espeak_voice;
  Dialog dialog;
  bool greeted = false;

  /* conversation */
  std::vector<Item> items;
  std::vector<std::string> unanswered_user;
  std::vector<std::pair<std::string, std::string>> unanswered_outputs;
  std::vector<std::string> pending_stt; /* user items awaiting a transcript */
  std::vector<std::string> auto_items;  /* ... whose transcript starts a response */
  bool auto_pending = false;

  /* input audio */
  std::unique_ptr<StreamResampler> resampler;
  int resampler_in_rate = 0;
  bool odd_byte = false;
  uint8_t carry = 0;
  TurnDetector turns;
  std::vector<int16_t> buf;   /* 16 kHz audio not yet committed */
  uint64_t buf_start = 0;     /* absolute 16 kHz position of buf[0] */
  std::string speech_item;
  uint64_t speech_start = 0;
  std::unique_ptr<SttStream> stream; /* decoding the turn while it is spoken */
  uint64_t fed_upto = 0;             /* absolute 16 kHz position fed to @stream */
  uint64_t user_audio_ms = 0;

  std::unique_ptr<Response> resp;

  /* ------------------------------------------------------------ output */

  bool ga() const { return dialect == Dialect::GA; }

  /* GA event name, or its beta spelling */
  const char *nm(const char *ga_name) const {
    if (ga())
      return ga_name;
    static const std::pair<const char *, const char *> map[] = {
        {"response.output_audio.delta", "response.audio.delta"},
        {"response.output_audio.done", "response.audio.done"},
        {"response.output_audio_transcript.delta", "response.audio_transcript.delta"},
        {"response.output_audio_transcript.done", "response.audio_transcript.done"},
        {"response.output_text.delta", "response.text.delta"},
        {"response.output_text.done", "response.text.done"},
    };
    for (const auto &[g, b] : map)
      if (strcmp(g, ga_name) == 0)
        return b;
    return ga_name;
  }

  J event(const char *type) const {
    J e;
    e.s("type", type).s("event_id", make_id("event_"));
    return e;
  }

  void send(J &&e) {
    if (soup_websocket_connection_get_state(ws) != SOUP_WEBSOCKET_STATE_OPEN)
      return;
    std::string s = e.str();
    soup_websocket_connection_send_text(ws, s.c_str());
    svc.stats.events_sent++;
  }

  void send_error(const std::string &code, const std::string &message, const std::string &param,
                  const std::string &client_event_id, const char *type = "invalid_request_error") {
    GST_INFO("session %s: error %s: %s", session_id.c_str(), code.c_str(), message.c_str());
    J err;
    err.s("type", type).s("code", code).s("message", message).s_or_null("param", param).s_or_null(
        "event_id", client_event_id);
    J e = event("error");
    e.o("error", std::move(err));
    send(std::move(e));
    svc.stats.errors_sent++;
  }
  void send_error(const Err &e, const std::string &client_event_id) {
    send_error(e.code, e.message, e.param, client_event_id);
  }

  /* --------------------------------------------------------- JSON shapes */

  J format_json(Fmt f) const {
    J j;
    if (f == Fmt::PCMU)
      j.s("type", "audio/pcmu");
    else
      j.s("type", "audio/pcm").i("rate", 24000);
    return j;
  }
  const char *format_beta(Fmt f) const { return f == Fmt::PCMU ? "g711_ulaw" : "pcm16"; }

  JsonNode *turn_json() const {
    const Turn &t = cfg.turn;
    if (t.type == Turn::Type::None)
      return json_node_init_null(json_node_alloc());
    J j;
    if (t.type == Turn::Type::Semantic) {
      j.s("type", "semantic_vad").s("eagerness", t.eagerness);
    } else {
      j.s("type", "server_vad")
          .d("threshold", t.params.threshold)
          .i("prefix_padding_ms", t.params.prefix_padding_ms)
          .i("silence_duration_ms", t.params.silence_duration_ms);
      if (ga())
        j.null("idle_timeout_ms");
    }
    j.b("create_response", t.create_response).b("interrupt_response", t.interrupt_response);
    return j.take_node();
  }

  JsonNode *tools_json() const {
    return cfg.tools.get() ? cfg.tools.copy() : json_node_init_array(json_node_alloc(), json_array_new());
  }
  JsonNode *tool_choice_json() const {
    return cfg.tool_choice.get() ? cfg.tool_choice.copy() : json_node_init_string(json_node_alloc(), "auto");
  }

  J session_json() const {
    J s;
    if (ga()) {
      J in, out;
      in.o("format", format_json(cfg.in_fmt))
          .n("transcription", cfg.transcription.copy())
          .n("noise_reduction", cfg.noise_reduction.copy())
          .n("turn_detection", turn_json());
      out.o("format", format_json(cfg.out_fmt)).s("voice", cfg.voice).d("speed", cfg.speed);
      J audio;
      audio.o("input", std::move(in)).o("output", std::move(out));
      s.s("type", "realtime")
          .s("object", "realtime.session")
          .s("id", session_id)
          .s("model", cfg.model)
          .i("expires_at", expires_at)
          .a("output_modalities", cfg.out_audio ? string_array({"audio"}) : string_array({"text"}))
          .s("instructions", cfg.instructions)
          .o("audio", std::move(audio))
          .n("tools", tools_json())
          .n("tool_choice", tool_choice_json())
          .s("max_output_tokens", "inf")
          .null("tracing")
          .s("truncation", "auto")
          .null("prompt")
          .null("include");
    } else {
      s.s("id", session_id)
          .s("object", "realtime.session")
          .s("model", cfg.model)
          .i("expires_at", expires_at)
          .a("modalities", cfg.out_audio ? string_array({"text", "audio"}) : string_array({"text"}))
          .s("instructions", cfg.instructions)
          .s("voice", cfg.voice)
          .s("input_audio_format", format_beta(cfg.in_fmt))
          .s("output_audio_format", format_beta(cfg.out_fmt))
          .n("input_audio_transcription", cfg.transcription.copy())
          .n("input_audio_noise_reduction", cfg.noise_reduction.copy())
          .n("turn_detection", turn_json())
          .n("tools", tools_json())
          .n("tool_choice", tool_choice_json())
          .d("temperature", cfg.temperature)
          .s("max_response_output_tokens", "inf")
          .d("speed", cfg.speed)
          .null("tracing");
    }
    return s;
  }

  JsonNode *item_json(const Item &it) const {
    J j;
    j.s("id", it.id).s("object", "realtime.item").s("type", it.type);
    if (it.type == "message") {
      j.s("status", it.status).s("role", it.role);
      JsonArray *content = json_array_new();
      if (!it.part.empty()) {
        J p;
        p.s("type", it.part);
        if (it.part == "input_text" || it.part == "output_text" || it.part == "text")
          p.s("text", it.text);
        else if (it.transcript_known)
          p.s("transcript", it.transcript);
        else
          p.null("transcript");
        json_array_add_element(content, p.take_node());
      }
      j.a("content", content);
    } else if (it.type == "function_call") {
      j.s("status", it.status).s("name", it.name).s("call_id", it.call_id).s("arguments", it.arguments);
    } else if (it.type == "function_call_output") {
      j.s("status", it.status).s("call_id", it.call_id).s("output", it.output);
    }
    return j.take_node();
  }

  Item *find_item(const std::string &id) {
    for (auto &it : items)
      if (it.id == id)
        return &it;
    return nullptr;
  }

  std::string last_item_id() const { return items.empty() ? "" : items.back().id; }

  /* conversation.item.added + .done (GA) or conversation.item.created (beta) */
  void announce_item(const Item &it, const std::string &previous, bool added, bool done) {
    if (ga()) {
      if (added) {
        J e = event("conversation.item.added");
        e.s_or_null("previous_item_id", previous).n("item", item_json(it));
        send(std::move(e));
      }
      if (done) {
        J e = event("conversation.item.done");
        e.s_or_null("previous_item_id", previous).n("item", item_json(it));
        send(std::move(e));
      }
    } else if (added) {
      J e = event("conversation.item.created");
      e.s_or_null("previous_item_id", previous).n("item", item_json(it));
      send(std::move(e));
    }
  }

  /* ---------------------------------------------------------- session */

  void start() {
    J e = event("session.created");
    e.o("session", session_json());
    send(std::move(e));
  }

  void reset_resampler() {
    int rate = fmt_rate(cfg.in_fmt);
    if (!resampler || resampler_in_rate != rate) {
      resampler = std::make_unique<StreamResampler>(rate, kVadRate);
      resampler_in_rate = rate;
      odd_byte = false;
    }
  }

  void on_session_update(JsonObject *ev, const std::string &eid) {
    JsonObject *s = obj_member(ev, "session");
    if (!s) {
      send_error("missing_required_parameter", "Missing required parameter: 'session'.", "session", eid);
      return;
    }
    if (dialect == Dialect::GA && is_beta_shape(s)) {
      GST_INFO("session %s: beta-shaped session.update, answering with beta event names", session_id.c_str());
      dialect = Dialect::Beta;
    }
    Config next = cfg;
    Err err;
    if (!parse_session(s, next, err)) {
      send_error(err, eid);
      return;
    }
    bool turn_changed = next.turn.type != cfg.turn.type;
    cfg = std::move(next);
    turns.set_params(cfg.turn.params);
    if (turn_changed && turns.in_speech()) {
      turns.reset_turn();
      speech_item.clear();
      drop_stream();
    }
    reset_resampler();
    /* an espeak-ng voice name is used as the voice; OpenAI's names are not */
    std::string verr;
    espeak_voice = svc.config.voice;
    if (!svc.config.canned && (cfg.voice.find('-') != std::string::npos || cfg.voice.find('+') != std::string::npos) &&
        tts_check_voice(cfg.voice, verr))
      espeak_voice = cfg.voice;
    J e = event("session.updated");
    e.o("session", session_json());
    send(std::move(e));
  }

  /* -------------------------------------------------------------- input */

  void on_append(JsonObject *ev, const std::string &eid) {
    JsonNode *a = member(ev, "audio");
    if (!holds_string(a)) {
      send_error("missing_required_parameter", "Missing required parameter: 'audio'.", "audio", eid);
      return;
    }
    std::vector<uint8_t> bytes;
    if (!base64_decode(json_node_get_string(a), bytes)) {
      send_error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", "audio", eid);
      return;
    }
    append_audio(bytes);
  }

  void append_audio(const std::vector<uint8_t> &bytes) {
    std::vector<int16_t> pcm;
    if (cfg.in_fmt == Fmt::PCMU) {
      pcm.resize(bytes.size());
      mulaw_decode_block(bytes.data(), pcm.data(), bytes.size());
    } else {
      size_t i = 0;
      if (odd_byte && !bytes.empty()) {
        pcm.push_back(static_cast<int16_t>(carry | (bytes[0] << 8)));
        odd_byte = false;
        i = 1;
      }
      for (; i + 1 < bytes.size(); i += 2)
        pcm.push_back(static_cast<int16_t>(bytes[i] | (bytes[i + 1] << 8)));
      if (i < bytes.size()) {
        carry = bytes[i];
        odd_byte = true;
      }
    }
    svc.stats.audio_in_ms += pcm.size() * 1000 / static_cast<uint64_t>(fmt_rate(cfg.in_fmt));
    std::vector<int16_t> s16;
    resampler->process(pcm.data(), pcm.size(), s16);
    buf.insert(buf.end(), s16.begin(), s16.end());

    /* the detector always runs, so its clock stays the buffer's clock */
    std::vector<TurnEvent> events;
    turns.process(s16.data(), s16.size(), events);
    if (cfg.turn.type != Turn::Type::None) {
      for (const auto &te : events) {
        if (te.kind == TurnEvent::Kind::Started)
          speech_started(te.sample);
        else
          speech_stopped(te.sample);
      }
      if (turns.in_speech())
        feed_stream(buf_end());
      if (!turns.in_speech()) {
        /* keep what a speech start may reach back to */
        uint64_t keep = static_cast<uint64_t>(cfg.turn.params.prefix_padding_ms + 400) * (kVadRate / 1000);
        if (buf.size() > keep) {
          size_t drop = buf.size() - keep;
          buf.erase(buf.begin(), buf.begin() + static_cast<long>(drop));
          buf_start += drop;
        }
      }
    } else {
      /* manual turns: keep the (bounded) buffer until commit */
      turns.reset_turn();
      uint64_t cap = kMaxManualBufferMs * (kVadRate / 1000);
      if (buf.size() > cap) {
        size_t drop = buf.size() - cap;
        buf.erase(buf.begin(), buf.begin() + static_cast<long>(drop));
        buf_start += drop;
      }
    }
  }

  uint64_t buf_end() const { return buf_start + buf.size(); }

  void feed_stream(uint64_t upto) {
    if (!stream)
      return;
    uint64_t from = std::max(fed_upto, buf_start);
    upto = std::min(upto, buf_end());
    if (upto <= from)
      return;
    stream->feed(std::vector<int16_t>(buf.begin() + static_cast<long>(from - buf_start),
                                      buf.begin() + static_cast<long>(upto - buf_start)));
    fed_upto = upto;
  }

  void drop_stream() { stream.reset(); }

  void speech_started(uint64_t sample) {
    svc.stats.turns++;
    speech_item = make_id("item_");
    speech_start = std::max(sample, buf_start);
    /* decode while the caller speaks (falls back to one batch at the end
     * when every decoder is busy streaming) */
    stream.reset();
    if (svc.open_stream && !svc.config.canned)
      stream = svc.open_stream();
    fed_upto = speech_start;
    J e = event("input_audio_buffer.speech_started");
    e.i("audio_start_ms", static_cast<gint64>(sample / (kVadRate / 1000))).s("item_id", speech_item);
    send(std::move(e));
    if (resp && cfg.turn.interrupt_response)
      cancel_response("turn_detected");
  }

  void speech_stopped(uint64_t sample) {
    std::string id = speech_item;
    speech_item.clear();
    J e = event("input_audio_buffer.speech_stopped");
    e.i("audio_end_ms", static_cast<gint64>(sample / (kVadRate / 1000))).s("item_id", id);
    send(std::move(e));
    commit(speech_start, std::min(sample, buf_end()), id, cfg.turn.create_response);
  }

  void on_commit(const std::string &eid) {
    uint64_t from = turns.in_speech() ? std::max(speech_start, buf_start) : buf_start;
    uint64_t end = buf_end();
    double ms = static_cast<double>(end - from) / (kVadRate / 1000);
    if (ms < 100) {
      char buf_ms[32];
      g_snprintf(buf_ms, sizeof buf_ms, "%.2f", ms);
      send_error("input_audio_buffer_commit_empty",
                 std::string("Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                             "audio, but buffer only has ") +
                     buf_ms + "ms of audio.",
                 "", eid);
      return;
    }
    std::string id = turns.in_speech() && !speech_item.empty() ? speech_item : make_id("item_");
    turns.reset_turn();
    speech_item.clear();
    commit(from, end, id, false);
  }

  void on_clear() {
    buf_start = buf_end();
    buf.clear();
    turns.reset_turn();
    speech_item.clear();
    drop_stream();
    send(event("input_audio_buffer.cleared"));
  }

  void commit(uint64_t from, uint64_t to, const std::string &item_id, bool auto_response) {
    svc.stats.commits++;
    from = std::max(from, buf_start);
    to = std::max(from, std::min(to, buf_end()));
    feed_stream(to);
    std::unique_ptr<SttStream> turn_stream = std::move(stream);
    std::vector<int16_t> pcm(buf.begin() + static_cast<long>(from - buf_start),
                             buf.begin() + static_cast<long>(to - buf_start));
    buf.erase(buf.begin(), buf.begin() + static_cast<long>(to - buf_start));
    buf_start = to;

    std::string previous = last_item_id();
    Item it;
    it.id = item_id;
    it.type = "message";
    it.role = "user";
    it.part = "input_audio";
    it.audio_ms = static_cast<double>(pcm.size()) / (kVadRate / 1000);
    user_audio_ms += static_cast<uint64_t>(it.audio_ms);
    items.push_back(it);

    J c = event("input_audio_buffer.committed");
    c.s_or_null("previous_item_id", previous).s("item_id", item_id);
    send(std::move(c));
    announce_item(it, previous, true, true);

    if (svc.config.canned) {
      /* no transcription: the turn end alone triggers the canned reply */
      unanswered_user.push_back("");
      if (auto_response)
        request_auto_response();
      return;
    }
    if (turn_stream) {
      pending_stt.push_back(item_id);
      if (auto_response)
        auto_items.push_back(item_id);
      double seconds = static_cast<double>(pcm.size()) / kSttRate;
      std::weak_ptr<bool> weak = alive;
      turn_stream->finish([this, weak, item_id, seconds](std::string text, double decode_ms) {
        if (weak.expired())
          return;
        on_transcript(item_id, text, seconds, decode_ms);
      });
      return;
    }
    transcribe(item_id, std::move(pcm), auto_response);
  }

  void transcribe(const std::string &item_id, std::vector<int16_t> pcm, bool auto_response) {
    pending_stt.push_back(item_id);
    if (auto_response)
      auto_items.push_back(item_id);
    double seconds = static_cast<double>(pcm.size()) / kSttRate;
    std::weak_ptr<bool> weak = alive;
    svc.transcribe(std::move(pcm), [this, weak, item_id, seconds](std::string text, double decode_ms) {
      if (weak.expired())
        return;
      on_transcript(item_id, text, seconds, decode_ms);
    });
  }

  void on_transcript(const std::string &item_id, const std::string &text, double seconds, double decode_ms) {
    GST_DEBUG("session %s: item %s transcript '%s' (%.0f ms of decoding)", session_id.c_str(), item_id.c_str(),
              text.c_str(), decode_ms);
    pending_stt.erase(std::remove(pending_stt.begin(), pending_stt.end(), item_id), pending_stt.end());
    bool auto_response = std::find(auto_items.begin(), auto_items.end(), item_id) != auto_items.end();
    auto_items.erase(std::remove(auto_items.begin(), auto_items.end(), item_id), auto_items.end());
    Item *it = find_item(item_id);
    if (it) {
      it->transcript = text;
      it->transcript_known = true;
    }
    if (!cfg.transcription.is_null() && it) {
      /* Decoding is per turn, so the deltas arrive together, word by word. */
      std::vector<std::string> words;
      gchar **parts = g_strsplit(text.c_str(), " ", -1);
      for (int i = 0; parts[i]; i++)
        if (*parts[i])
          words.push_back(parts[i]);
      g_strfreev(parts);
      for (size_t i = 0; i < words.size(); i++) {
        J d = event("conversation.item.input_audio_transcription.delta");
        d.s("item_id", item_id).i("content_index", 0).s("delta", (i ? " " : "") + words[i]);
        send(std::move(d));
      }
      J usage;
      usage.s("type", "duration").d("seconds", std::round(seconds * 100) / 100);
      J c = event("conversation.item.input_audio_transcription.completed");
      c.s("item_id", item_id).i("content_index", 0).s("transcript", text).o("usage", std::move(usage));
      send(std::move(c));
    }
    if (it)
      unanswered_user.push_back(text);
    if (resp && resp->phase == Response::Phase::Waiting) {
      if (pending_stt.empty())
        plan_and_run();
    } else if (auto_response || auto_pending) {
      auto_pending = false;
      request_auto_response();
    }
  }

  void request_auto_response() {
    if (resp || !pending_stt.empty()) {
      auto_pending = true;
      return;
    }
    start_response(ResponseOpts());
  }

  /* ------------------------------------------------------ conversation */

  void on_item_create(JsonObject *ev, const std::string &eid) {
    JsonObject *io = obj_member(ev, "item");
    if (!io) {
      send_error("missing_required_parameter", "Missing required parameter: 'item'.", "item", eid);
      return;
    }
    std::string previous = str_member(ev, "previous_item_id", last_item_id());
    size_t pos = items.size();
    if (member(ev, "previous_item_id")) {
      if (previous == "root") {
        pos = 0;
        previous.clear();
      } else {
        pos = items.size() + 1;
        for (size_t i = 0; i < items.size(); i++)
          if (items[i].id == previous)
            pos = i + 1;
        if (pos > items.size()) {
          send_error("invalid_value", "Item with id '" + previous + "' not found.", "previous_item_id", eid);
          return;
        }
      }
    }
    Item it;
    it.id = str_member(io, "id");
    if (it.id.empty())
      it.id = make_id("item_");
    else if (find_item(it.id)) {
      send_error("invalid_value", "Item with id '" + it.id + "' already exists.", "item.id", eid);
      return;
    }
    it.type = str_member(io, "type", "message");
    std::vector<int16_t> audio16;
    if (it.type == "message") {
      it.role = str_member(io, "role");
      if (it.role != "user" && it.role != "assistant" && it.role != "system") {
        send_error("invalid_value", "Invalid value: '" + it.role + "'. Supported values are: 'user', 'assistant' and 'system'.",
                   "item.role", eid);
        return;
      }
      JsonNode *cn = member(io, "content");
      JsonArray *content = cn && JSON_NODE_HOLDS_ARRAY(cn) ? json_node_get_array(cn) : nullptr;
      if (!content || json_array_get_length(content) == 0) {
        send_error("missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content", eid);
        return;
      }
      JsonNode *first = json_array_get_element(content, 0);
      JsonObject *part = JSON_NODE_HOLDS_OBJECT(first) ? json_node_get_object(first) : nullptr;
      it.part = str_member(part, "type");
      if (it.part == "input_text" || it.part == "text" || it.part == "output_text") {
        for (guint i = 0; i < json_array_get_length(content); i++) {
          JsonNode *pn = json_array_get_element(content, i);
          if (JSON_NODE_HOLDS_OBJECT(pn))
            it.text += (it.text.empty() ? "" : " ") + str_member(json_node_get_object(pn), "text");
        }
      } else if (it.part == "input_audio") {
        std::vector<uint8_t> bytes;
        std::string b64 = str_member(part, "audio");
        it.transcript = str_member(part, "transcript");
        it.transcript_known = member(part, "transcript") && holds_string(member(part, "transcript"));
        if (!b64.empty()) {
          if (!base64_decode(b64, bytes)) {
            send_error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", "item.content[0].audio", eid);
            return;
          }
          if (cfg.in_fmt == Fmt::PCMU) {
            audio16 = mulaw8k_to_16k(bytes.data(), bytes.size());
          } else {
            std::vector<int16_t> pcm(bytes.size() / 2);
            for (size_t i = 0; i < pcm.size(); i++)
              pcm[i] = static_cast<int16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
            audio16 = resample_to_mono(pcm, 24000, 1, kSttRate);
          }
          it.audio_ms = static_cast<double>(audio16.size()) / (kSttRate / 1000);
        }
      } else if (it.part == "audio" || it.part == "output_audio") {
        it.transcript = str_member(part, "transcript");
        it.transcript_known = true;
      } else {
        send_error("invalid_value", "Invalid content type '" + it.part + "'.", "item.content[0].type", eid);
        return;
      }
    } else if (it.type == "function_call_output") {
      it.call_id = str_member(io, "call_id");
      it.output = str_member(io, "output");
      bool known = false;
      for (const auto &x : items)
        if (x.type == "function_call" && x.call_id == it.call_id)
          known = true;
      if (it.call_id.empty() || !known) {
        send_error("invalid_value", "Tool call ID '" + it.call_id + "' not found in conversation.", "item.call_id", eid);
        return;
      }
    } else if (it.type == "function_call") {
      it.name = str_member(io, "name");
      it.call_id = str_member(io, "call_id");
      it.arguments = str_member(io, "arguments");
    } else {
      send_error("invalid_value",
                 "Invalid value: '" + it.type +
                     "'. Supported values are: 'message', 'function_call' and 'function_call_output'.",
                 "item.type", eid);
      return;
    }
    items.insert(items.begin() + static_cast<long>(pos), it);
    announce_item(it, previous, true, true);

    if (it.type == "function_call_output") {
      unanswered_outputs.emplace_back(it.call_id, it.output);
    } else if (it.type == "message" && it.role == "user") {
      if (!it.text.empty())
        unanswered_user.push_back(it.text);
      else if (it.part == "input_audio" && it.transcript_known)
        unanswered_user.push_back(it.transcript);
      else if (it.part == "input_audio" && !audio16.empty() && !svc.config.canned)
        transcribe(it.id, std::move(audio16), false);
    }
  }

  void on_truncate(JsonObject *ev, const std::string &eid) {
    std::string item_id = str_member(ev, "item_id");
    JsonNode *end = member(ev, "audio_end_ms");
    if (item_id.empty()) {
      send_error("missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id", eid);
      return;
    }
    if (!holds_number(end)) {
      send_error("missing_required_parameter", "Missing required parameter: 'audio_end_ms'.", "audio_end_ms", eid);
      return;
    }
    gint64 end_ms = json_node_get_int(end);
    gint64 content_index = holds_number(member(ev, "content_index")) ? json_node_get_int(member(ev, "content_index")) : 0;
    Item *it = find_item(item_id);
    if (!it) {
      send_error("invalid_value", "Item with item_id '" + item_id + "' not found.", "item_id", eid);
      return;
    }
    if (it->type != "message" || it->role != "assistant" || (it->part != "output_audio" && it->part != "audio")) {
      send_error("invalid_value", "Only assistant messages with audio can be truncated.", "item_id", eid);
      return;
    }
    if (content_index != 0) {
      send_error("invalid_value", "Invalid content_index: the item has one content part (0).", "content_index", eid);
      return;
    }
    /* a truncated item stops where the caller stopped hearing it */
    if (resp && resp->msg_id == item_id && resp->phase != Response::Phase::Done)
      cancel_response("client_cancelled");
    it = find_item(item_id);
    gint64 have = static_cast<gint64>(std::floor(it->audio_ms));
    if (end_ms < 0 || end_ms > have) {
      send_error("invalid_value",
                 "Audio content of " + std::to_string(have) + "ms is already shorter than " + std::to_string(end_ms) +
                     "ms",
                 "audio_end_ms", eid);
      return;
    }
    it->audio_ms = static_cast<double>(end_ms);
    it->transcript.clear(); /* the server forgets the unheard transcript */
    svc.stats.truncations++;
    J e = event("conversation.item.truncated");
    e.s("item_id", item_id).i("content_index", 0).i("audio_end_ms", end_ms);
    send(std::move(e));
  }

  void on_item_delete(JsonObject *ev, const std::string &eid) {
    std::string id = str_member(ev, "item_id");
    auto i = std::find_if(items.begin(), items.end(), [&](const Item &x) { return x.id == id; });
    if (i == items.end()) {
      send_error("invalid_value", "Item with item_id '" + id + "' not found.", "item_id", eid);
      return;
    }
    items.erase(i);
    J e = event("conversation.item.deleted");
    e.s("item_id", id);
    send(std::move(e));
  }

  void on_item_retrieve(JsonObject *ev, const std::string &eid) {
    std::string id = str_member(ev, "item_id");
    Item *it = find_item(id);
    if (!it) {
      send_error("invalid_value", "Item with item_id '" + id + "' not found.", "item_id", eid);
      return;
    }
    J e = event("conversation.item.retrieved");
    e.n("item", item_json(*it));
    send(std::move(e));
  }

  /* ---------------------------------------------------------- responses */

  void on_response_create(JsonObject *ev, const std::string &eid) {
    if (resp) {
      send_error("conversation_already_has_active_response",
                 "Conversation already has an active response in progress: " + resp->id +
                     ". Wait until the response is finished before creating a new one.",
                 "", eid);
      return;
    }
    ResponseOpts o;
    if (JsonObject *r = obj_member(ev, "response")) {
      o.instructions = str_member(r, "instructions");
      o.out_of_band = str_member(r, "conversation", "auto") == "none";
      bool audio = true;
      Err err;
      for (const char *k : {"output_modalities", "modalities"})
        if (JsonNode *m = member(r, k)) {
          if (!parse_modalities(m, audio, err, std::string("response.") + k)) {
            send_error(err, eid);
            return;
          }
          o.audio = audio;
        }
      Fmt f = cfg.out_fmt;
      if (JsonObject *a = obj_member(r, "audio"))
        if (JsonObject *out = obj_member(a, "output")) {
          if (JsonNode *fn = member(out, "format")) {
            if (!parse_format(fn, f, err, "response.audio.output.format")) {
              send_error(err, eid);
              return;
            }
            o.fmt = f;
          }
        }
      if (JsonNode *fn = member(r, "output_audio_format")) {
        if (!parse_format(fn, f, err, "response.output_audio_format")) {
          send_error(err, eid);
          return;
        }
        o.fmt = f;
      }
      if (JsonNode *m = member(r, "metadata"))
        o.metadata.reset(json_node_copy(m));
    }
    start_response(std::move(o));
  }

  void on_response_cancel(JsonObject *ev, const std::string &eid) {
    std::string rid = str_member(ev, "response_id");
    if (!resp || (!rid.empty() && rid != resp->id)) {
      send_error("response_cancel_not_active", "Cancellation failed: no active response found", "", eid);
      return;
    }
    cancel_response("client_cancelled");
  }

  J usage_json() const {
    size_t in_text = count_words(cfg.instructions) * 4 / 3;
    for (const auto &it : items)
      in_text += (count_words(it.text) + count_words(it.transcript) + count_words(it.output)) * 4 / 3;
    size_t in_audio = user_audio_ms / 100; /* ~10 tokens per second of input audio */
    size_t out_text = count_words(resp->plan.say) * 4 / 3;
    for (const auto &c : resp->plan.calls)
      out_text += c.arguments.size() / 4;
    size_t out_audio = static_cast<size_t>(resp->out_audio_ms / 50); /* ~20 tokens per second */
    J cached;
    cached.i("text_tokens", 0).i("audio_tokens", 0).i("image_tokens", 0);
    J in;
    in.i("text_tokens", static_cast<gint64>(in_text))
        .i("audio_tokens", static_cast<gint64>(in_audio))
        .i("image_tokens", 0)
        .i("cached_tokens", 0)
        .o("cached_tokens_details", std::move(cached));
    J out;
    out.i("text_tokens", static_cast<gint64>(out_text)).i("audio_tokens", static_cast<gint64>(out_audio));
    J u;
    u.i("total_tokens", static_cast<gint64>(in_text + in_audio + out_text + out_audio))
        .i("input_tokens", static_cast<gint64>(in_text + in_audio))
        .i("output_tokens", static_cast<gint64>(out_text + out_audio))
        .o("input_token_details", std::move(in))
        .o("output_token_details", std::move(out));
    return u;
  }

  J response_json(const std::string &status, const std::string &reason, bool with_usage) const {
    const Response &r = *resp;
    J j;
    j.s("object", "realtime.response").s("id", r.id).s("status", status);
    if (status == "cancelled" || status == "incomplete") {
      J d;
      d.s("type", status).s("reason", reason);
      j.o("status_details", std::move(d));
    } else if (status == "failed") {
      J e;
      e.s("type", "server_error").s("code", "synthesis_failed").s("message", reason);
      J d;
      d.s("type", "failed").o("error", std::move(e));
      j.o("status_details", std::move(d));
    } else {
      j.null("status_details");
    }
    j.a("output", node_array(r.output));
    if (r.opts.out_of_band)
      j.null("conversation_id");
    else
      j.s("conversation_id", conversation_id);
    if (ga()) {
      J fmt = format_json(r.fmt);
      J out;
      out.o("format", std::move(fmt)).s("voice", cfg.voice);
      J audio;
      audio.o("output", std::move(out));
      j.a("output_modalities", r.audio ? string_array({"audio"}) : string_array({"text"}))
          .s("max_output_tokens", "inf")
          .o("audio", std::move(audio));
    } else {
      j.a("modalities", r.audio ? string_array({"text", "audio"}) : string_array({"text"}))
          .s("voice", cfg.voice)
          .s("output_audio_format", format_beta(r.fmt))
          .d("temperature", cfg.temperature)
          .s("max_output_tokens", "inf");
    }
    if (with_usage)
      j.o("usage", usage_json());
    else
      j.null("usage");
    j.n("metadata", r.opts.metadata.copy());
    return j;
  }

  void start_response(ResponseOpts o) {
    resp = std::make_unique<Response>();
    resp->id = make_id("resp_");
    resp->audio = o.audio.value_or(cfg.out_audio);
    resp->fmt = o.fmt.value_or(cfg.out_fmt);
    resp->voice = espeak_voice;
    resp->opts = std::move(o);
    svc.stats.responses++;
    J c = event("response.created");
    c.o("response", response_json("in_progress", "", false));
    send(std::move(c));
    send_rate_limits();
    if (!pending_stt.empty()) {
      resp->phase = Response::Phase::Waiting; /* planned when the transcript arrives */
      return;
    }
    plan_and_run();
  }

  void send_rate_limits() {
    J req, tok;
    req.s("name", "requests").i("limit", 5000).i("remaining", 4999).d("reset_seconds", 0.012);
    tok.s("name", "tokens").i("limit", 400000).i("remaining", 398000).d("reset_seconds", 0.3);
    JsonArray *a = json_array_new();
    json_array_add_element(a, req.take_node());
    json_array_add_element(a, tok.take_node());
    J e = event("rate_limits.updated");
    e.a("rate_limits", a);
    send(std::move(e));
  }

  Plan make_plan() {
    Plan p;
    if (svc.config.canned) {
      unanswered_user.clear();
      unanswered_outputs.clear();
      p.say = svc.canned_text;
      p.intent = "canned";
      resp->canned = true;
      return p;
    }
    auto tool_ok = [this](const std::string &name) {
      std::string choice = cfg.tool_choice.get() && holds_string(cfg.tool_choice.get())
                               ? json_node_get_string(cfg.tool_choice.get())
                               : "auto";
      if (choice == "none")
        return false;
      return std::find(cfg.tool_names.begin(), cfg.tool_names.end(), name) != cfg.tool_names.end();
    };
    if (!unanswered_outputs.empty()) {
      p = dialog.tool_outputs(unanswered_outputs);
      unanswered_outputs.clear();
      if (!p.say.empty() || !p.calls.empty())
        return p;
    }
    if (!unanswered_user.empty()) {
      std::string text;
      for (const auto &t : unanswered_user)
        if (!t.empty())
          text += (text.empty() ? "" : " ") + t;
      unanswered_user.clear();
      greeted = true;
      return dialog.user_said(text, tool_ok);
    }
    std::string say = say_from_instructions(resp->opts.instructions);
    if (!say.empty()) {
      p.say = say;
      p.intent = "instructions";
      greeted = true;
      return p;
    }
    if (!p.intent.empty())
      return p; /* answered tool outputs that need no words (end_call, transfer) */
    if (!greeted) {
      greeted = true;
      return dialog.greeting();
    }
    return dialog.reprompt();
  }

  void plan_and_run() {
    resp->plan = make_plan();
    GST_DEBUG("session %s: response %s intent '%s' says '%s' with %zu calls", session_id.c_str(), resp->id.c_str(),
              resp->plan.intent.c_str(), resp->plan.say.c_str(), resp->plan.calls.size());
    if (!resp->plan.say.empty())
      begin_message();
    else
      run_calls();
  }

  void begin_message() {
    Response &r = *resp;
    r.msg_id = make_id("item_");
    r.msg_index = r.next_index++;
    r.part_type = r.audio ? (ga() ? "output_audio" : "audio") : (ga() ? "output_text" : "text");
    Item it;
    it.id = r.msg_id;
    it.type = "message";
    it.role = "assistant";
    it.status = "in_progress";
    std::string previous = last_item_id();
    J added = event("response.output_item.added");
    added.s("response_id", r.id).i("output_index", r.msg_index).n("item", item_json(it));
    send(std::move(added));
    it.part = r.part_type;
    if (!r.opts.out_of_band) {
      items.push_back(it);
      Item shown = it;
      shown.part.clear(); /* no content yet */
      announce_item(shown, previous, true, false);
    }
    J part;
    part.s("type", r.part_type);
    if (r.audio)
      part.s("transcript", "");
    else
      part.s("text", "");
    J cp = event("response.content_part.added");
    cp.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).o(
        "part", std::move(part));
    send(std::move(cp));

    if (!r.audio) {
      J d = event(nm("response.output_text.delta"));
      d.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).s(
          "delta", r.plan.say);
      send(std::move(d));
      J dn = event(nm("response.output_text.done"));
      dn.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).s(
          "text", r.plan.say);
      send(std::move(dn));
      r.transcript_sent = r.plan.say;
      finish_message("completed");
      run_calls();
      return;
    }
    if (r.canned) {
      if (r.fmt == Fmt::PCMU) {
        r.audio_bytes = svc.canned_pcmu;
      } else {
        r.audio_bytes.resize(svc.canned_pcm24.size() * 2);
        memcpy(r.audio_bytes.data(), svc.canned_pcm24.data(), r.audio_bytes.size());
      }
      r.words = svc.canned_words;
      start_stream();
      return;
    }
    r.phase = Response::Phase::Synth;
    std::weak_ptr<bool> weak = alive;
    std::string rid = r.id;
    double speed = cfg.speed;
    svc.synthesize(r.plan.say, r.voice, fmt_rate(r.fmt), static_cast<int>(kEspeakDefaultWpm * speed),
                   [this, weak, rid](bool ok, Speech speech, std::string error) {
                     if (weak.expired() || !resp || resp->id != rid || resp->phase != Response::Phase::Synth)
                       return;
                     on_speech(ok, std::move(speech), error);
                   });
  }

  void on_speech(bool ok, Speech speech, const std::string &error) {
    Response &r = *resp;
    if (!ok) {
      GST_WARNING("session %s: synthesis failed: %s", session_id.c_str(), error.c_str());
      finish_message("incomplete");
      finish_response("failed", error);
      return;
    }
    if (r.fmt == Fmt::PCMU) {
      r.audio_bytes.resize(speech.pcm.size());
      mulaw_encode_block(speech.pcm.data(), r.audio_bytes.data(), speech.pcm.size());
    } else {
      r.audio_bytes.resize(speech.pcm.size() * 2);
      for (size_t i = 0; i < speech.pcm.size(); i++) {
        r.audio_bytes[2 * i] = static_cast<uint8_t>(speech.pcm[i] & 0xFF);
        r.audio_bytes[2 * i + 1] = static_cast<uint8_t>((speech.pcm[i] >> 8) & 0xFF);
      }
    }
    r.words.clear();
    for (const auto &w : speech.words)
      r.words.emplace_back(w.begin, w.start_ms);
    start_stream();
  }

  void start_stream() {
    Response &r = *resp;
    r.phase = Response::Phase::Streaming;
    r.t0 = g_get_monotonic_time();
    if (svc.config.realtime_factor <= 0) {
      while (resp && resp->phase == Response::Phase::Streaming)
        stream_chunk();
      return;
    }
    stream_chunk();
  }

  static gboolean on_tick(gpointer data) {
    auto *self = static_cast<Impl *>(data);
    if (self->resp && self->resp->timer) {
      g_source_unref(self->resp->timer);
      self->resp->timer = nullptr;
    }
    if (self->resp && self->resp->phase == Response::Phase::Streaming)
      self->stream_chunk();
    return G_SOURCE_REMOVE;
  }

  void stream_chunk() {
    Response &r = *resp;
    const size_t bpm = fmt_bytes_per_ms(r.fmt);
    size_t n = std::min(bpm * kChunkMs, r.audio_bytes.size() - r.sent);
    if (n > 0) {
      std::string b64 = base64_encode(r.audio_bytes.data() + r.sent, n);
      J d = event(nm("response.output_audio.delta"));
      d.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).s(
          "delta", b64);
      send(std::move(d));
      r.sent += n;
    }
    double sent_ms = static_cast<double>(r.sent) / static_cast<double>(bpm);
    r.out_audio_ms = sent_ms;
    if (Item *it = find_item(r.msg_id))
      it->audio_ms = sent_ms;
    bool done = r.sent >= r.audio_bytes.size();
    send_transcript_upto(done ? 1e12 : sent_ms);
    if (done) {
      finish_message("completed");
      run_calls();
      return;
    }
    if (svc.config.realtime_factor <= 0)
      return; /* start_stream() loops */
    gint64 due = r.t0 + static_cast<gint64>(sent_ms * 1000.0 / svc.config.realtime_factor);
    gint64 delay_ms = std::max<gint64>(0, (due - g_get_monotonic_time()) / 1000);
    r.timer = g_timeout_source_new(static_cast<guint>(delay_ms));
    g_source_set_callback(r.timer, on_tick, this, nullptr);
    g_source_attach(r.timer, svc.context);
  }

  void send_transcript_upto(double ms) {
    Response &r = *resp;
    const std::string &say = r.plan.say;
    std::string delta;
    while (r.words_sent < r.words.size() && r.words[r.words_sent].second <= ms) {
      size_t begin = r.words[r.words_sent].first;
      size_t end = r.words_sent + 1 < r.words.size() ? r.words[r.words_sent + 1].first : say.size();
      if (r.words_sent == 0)
        begin = 0;
      if (begin < say.size())
        delta += say.substr(begin, end - begin);
      r.words_sent++;
    }
    if (r.words.empty() && ms >= 1e12)
      delta = say;
    if (delta.empty())
      return;
    r.transcript_sent += delta;
    J d = event(nm("response.output_audio_transcript.delta"));
    d.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).s("delta",
                                                                                                        delta);
    send(std::move(d));
  }

  /* Ends the message item: audio/transcript/part/item done events. */
  void finish_message(const std::string &status) {
    Response &r = *resp;
    if (r.msg_id.empty())
      return;
    if (r.timer) {
      g_source_destroy(r.timer);
      g_source_unref(r.timer);
      r.timer = nullptr;
    }
    std::string transcript = r.transcript_sent;
    if (r.audio) {
      J ad = event(nm("response.output_audio.done"));
      ad.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0);
      send(std::move(ad));
      J td = event(nm("response.output_audio_transcript.done"));
      td.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).s(
          "transcript", transcript);
      send(std::move(td));
    }
    J part;
    part.s("type", r.part_type);
    if (r.audio)
      part.s("transcript", transcript);
    else
      part.s("text", transcript);
    J pd = event("response.content_part.done");
    pd.s("response_id", r.id).s("item_id", r.msg_id).i("output_index", r.msg_index).i("content_index", 0).o(
        "part", std::move(part));
    send(std::move(pd));

    Item done;
    done.id = r.msg_id;
    done.type = "message";
    done.role = "assistant";
    done.status = status;
    done.part = r.part_type;
    done.text = r.audio ? "" : transcript;
    done.transcript = r.audio ? transcript : "";
    done.transcript_known = r.audio;
    done.audio_ms = r.out_audio_ms;
    if (Item *it = find_item(r.msg_id))
      *it = done;
    J od = event("response.output_item.done");
    od.s("response_id", r.id).i("output_index", r.msg_index).n("item", item_json(done));
    send(std::move(od));
    if (!r.opts.out_of_band) {
      std::string previous;
      for (size_t i = 1; i < items.size(); i++)
        if (items[i].id == r.msg_id)
          previous = items[i - 1].id;
      announce_item(done, previous, false, true);
    }
    r.output.emplace_back(item_json(done));
    svc.stats.audio_out_ms += static_cast<uint64_t>(r.out_audio_ms);
    r.msg_id.clear();
  }

  void run_calls() {
    Response &r = *resp;
    for (const auto &c : r.plan.calls) {
      Item it;
      it.id = make_id("item_");
      it.type = "function_call";
      it.status = "in_progress";
      it.name = c.name;
      it.call_id = c.call_id;
      int index = r.next_index++;
      std::string previous = last_item_id();
      J added = event("response.output_item.added");
      added.s("response_id", r.id).i("output_index", index).n("item", item_json(it));
      send(std::move(added));
      if (!r.opts.out_of_band) {
        items.push_back(it);
        announce_item(it, previous, true, false);
      }
      /* arguments in two deltas, as streaming models send them */
      size_t half = c.arguments.size() / 2;
      for (const std::string &piece : {c.arguments.substr(0, half), c.arguments.substr(half)}) {
        if (piece.empty())
          continue;
        J d = event("response.function_call_arguments.delta");
        d.s("response_id", r.id).s("item_id", it.id).i("output_index", index).s("call_id", c.call_id).s("delta", piece);
        send(std::move(d));
      }
      J dn = event("response.function_call_arguments.done");
      dn.s("response_id", r.id).s("item_id", it.id).i("output_index", index).s("call_id", c.call_id);
      if (ga())
        dn.s("name", c.name);
      dn.s("arguments", c.arguments);
      send(std::move(dn));
      it.status = "completed";
      it.arguments = c.arguments;
      if (Item *stored = find_item(it.id))
        *stored = it;
      J od = event("response.output_item.done");
      od.s("response_id", r.id).i("output_index", index).n("item", item_json(it));
      send(std::move(od));
      if (!r.opts.out_of_band)
        announce_item(it, previous, false, true);
      r.output.emplace_back(item_json(it));
      svc.stats.tool_calls++;
    }
    finish_response("completed", "");
  }

  void finish_response(const std::string &status, const std::string &reason) {
    resp->phase = Response::Phase::Done;
    J e = event("response.done");
    e.o("response", response_json(status, reason, true));
    send(std::move(e));
    resp.reset();
    if (auto_pending && pending_stt.empty()) {
      auto_pending = false;
      start_response(ResponseOpts());
    }
  }

  void cancel_response(const std::string &reason) {
    if (!resp)
      return;
    svc.stats.responses_cancelled++;
    if (!resp->msg_id.empty())
      finish_message("incomplete");
    finish_response("cancelled", reason);
  }

  /* ------------------------------------------------------------ dispatch */

  void on_message(const char *data, size_t len) {
    svc.stats.events_received++;
    JsonParser *parser = json_parser_new_immutable();
    GError *err = nullptr;
    if (!json_parser_load_from_data(parser, data, static_cast<gssize>(len), &err) || !json_parser_get_root(parser) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
      svc.stats.malformed_json++;
      std::string detail = err ? err->message : "not a JSON object";
      g_clear_error(&err);
      g_object_unref(parser);
      send_error("invalid_json", "The server could not parse the event as a JSON object: " + detail, "", "");
      return;
    }
    JsonObject *ev = json_node_get_object(json_parser_get_root(parser));
    std::string type = str_member(ev, "type");
    std::string eid = str_member(ev, "event_id");
    GST_LOG("session %s: <- %s", session_id.c_str(), type.c_str());
    if (type == "session.update")
      on_session_update(ev, eid);
    else if (type == "input_audio_buffer.append")
      on_append(ev, eid);
    else if (type == "input_audio_buffer.commit")
      on_commit(eid);
    else if (type == "input_audio_buffer.clear")
      on_clear();
    else if (type == "conversation.item.create")
      on_item_create(ev, eid);
    else if (type == "conversation.item.truncate")
      on_truncate(ev, eid);
    else if (type == "conversation.item.delete")
      on_item_delete(ev, eid);
    else if (type == "conversation.item.retrieve")
      on_item_retrieve(ev, eid);
    else if (type == "response.create")
      on_response_create(ev, eid);
    else if (type == "response.cancel")
      on_response_cancel(ev, eid);
    else if (type.empty()) {
      svc.stats.unknown_events++;
      send_error("missing_required_parameter", "Missing required parameter: 'type'.", "type", eid);
    } else {
      svc.stats.unknown_events++;
      send_error("invalid_value",
                 "Invalid value: '" + type +
                     "'. Supported values are: 'session.update', 'input_audio_buffer.append', "
                     "'input_audio_buffer.commit', 'input_audio_buffer.clear', 'conversation.item.create', "
                     "'conversation.item.truncate', 'conversation.item.delete', 'conversation.item.retrieve', "
                     "'response.create', and 'response.cancel'.",
                 "type", eid);
    }
    g_object_unref(parser);
  }
};

/* ---------------------------------------------------------------- Session */

namespace {
void on_ws_message(SoupWebsocketConnection *, gint type, GBytes *message, gpointer user_data) {
  auto *impl = static_cast<Session::Impl *>(user_data);
  if (type != SOUP_WEBSOCKET_DATA_TEXT) {
    impl->svc.stats.binary_frames++;
    impl->send_error("invalid_value", "Binary frames are not supported: send JSON text frames.", "", "");
    return;
  }
  gsize len = 0;
  const char *data = static_cast<const char *>(g_bytes_get_data(message, &len));
  impl->on_message(data, len);
}
} // namespace

Session::Session(Services &svc, SoupWebsocketConnection *ws, Dialect dialect, std::string model)
    : ws_(static_cast<SoupWebsocketConnection *>(g_object_ref(ws))) {
  impl_ = std::make_unique<Impl>(svc, this, ws_, dialect, std::move(model));
  /* clients append large chunks (OpenAI accepts 15 MiB per append) */
  soup_websocket_connection_set_max_incoming_payload_size(ws_, 16 * 1024 * 1024);
  soup_websocket_connection_set_keepalive_interval(ws_, 0);
  g_signal_connect(ws_, "message", G_CALLBACK(on_ws_message), impl_.get());
}

Session::~Session() {
  g_signal_handlers_disconnect_by_data(ws_, impl_.get());
  impl_.reset();
  if (soup_websocket_connection_get_state(ws_) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close(ws_, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, nullptr);
  g_object_unref(ws_);
}

void Session::start() { impl_->start(); }

void Session::close(gushort code, const char *reason) {
  if (soup_websocket_connection_get_state(ws_) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close(ws_, code, reason);
}

} // namespace pa::local
