/* gst-phone-agent: OpenAI Realtime protocol, GA and beta dialects */
#include "rt-protocol.h"

#include <json-glib/json-glib.h>

#include <string_view>
#include <unordered_map>

#include "pa-audio.h"
#include "twilio-protocol.h"

namespace pa::rt {

const char *dialect_name(Dialect d) { return d == Dialect::GA ? "ga" : "beta"; }

const char *audio_format_name(AudioFormat f) { return f == AudioFormat::PCMU ? "pcmu" : "pcm16"; }

unsigned bytes_per_ms(AudioFormat f) { return f == AudioFormat::PCMU ? 8 : 48; }

namespace {

/* ---- building ---- */

struct Builder {
  JsonBuilder *b = json_builder_new();
  ~Builder() { g_object_unref(b); }
  Builder &obj() { json_builder_begin_object(b); return *this; }
  Builder &end_obj() { json_builder_end_object(b); return *this; }
  Builder &arr(const char *k) { json_builder_set_member_name(b, k); json_builder_begin_array(b); return *this; }
  Builder &end_arr() { json_builder_end_array(b); return *this; }
  Builder &key(const char *k) { json_builder_set_member_name(b, k); return *this; }
  Builder &str(const char *k, const std::string &v) {
    json_builder_set_member_name(b, k);
    json_builder_add_string_value(b, v.c_str());
    return *this;
  }
  Builder &num(const char *k, int64_t v) {
    json_builder_set_member_name(b, k);
    json_builder_add_int_value(b, v);
    return *this;
  }
  Builder &dbl(const char *k, double v) {
    json_builder_set_member_name(b, k);
    json_builder_add_double_value(b, v);
    return *this;
  }
  Builder &boolean(const char *k, bool v) {
    json_builder_set_member_name(b, k);
    json_builder_add_boolean_value(b, v);
    return *this;
  }
  Builder &null(const char *k) {
    json_builder_set_member_name(b, k);
    json_builder_add_null_value(b);
    return *this;
  }
  Builder &type(const char *t) { return str("type", t); }
  Builder &event_id(const std::string &id) { return id.empty() ? *this : str("event_id", id); }
  /* adds a parsed JSON value (owned by the builder afterwards) */
  Builder &raw(const char *k, JsonNode *node) {
    json_builder_set_member_name(b, k);
    json_builder_add_value(b, node);
    return *this;
  }
  std::string text() {
    JsonNode *root = json_builder_get_root(b);
    JsonGenerator *gen = json_generator_new();
    json_generator_set_root(gen, root);
    gchar *s = json_generator_to_data(gen, nullptr);
    std::string out(s);
    g_free(s);
    g_object_unref(gen);
    json_node_unref(root);
    return out;
  }
};

JsonNode *parse_node(const std::string &text) {
  JsonParser *p = json_parser_new();
  JsonNode *node = nullptr;
  if (json_parser_load_from_data(p, text.data(), static_cast<gssize>(text.size()), nullptr))
    node = json_node_copy(json_parser_get_root(p));
  g_object_unref(p);
  return node;
}

void add_format(Builder &b, AudioFormat f, Dialect d) {
  if (d == Dialect::GA) {
    b.key("format").obj();
    if (f == AudioFormat::PCMU) {
      b.type("audio/pcmu");
    } else {
      b.type("audio/pcm");
      b.num("rate", 24000);
    }
    b.end_obj();
  }
}

const char *beta_format(AudioFormat f) { return f == AudioFormat::PCMU ? "g711_ulaw" : "pcm16"; }

void add_turn_detection(Builder &b, const SessionConfig &c, Dialect d) {
  if (c.turn_detection == TurnDetection::None) {
    b.null("turn_detection");
    return;
  }
  b.key("turn_detection").obj();
  if (c.turn_detection == TurnDetection::ServerVad) {
    b.type("server_vad");
    b.dbl("threshold", c.threshold);
    b.num("prefix_padding_ms", c.prefix_padding_ms);
    b.num("silence_duration_ms", c.silence_duration_ms);
    if (d == Dialect::GA && c.idle_timeout_ms > 0)
      b.num("idle_timeout_ms", c.idle_timeout_ms);
  } else {
    b.type("semantic_vad");
    b.str("eagerness", c.eagerness.empty() ? "auto" : c.eagerness);
  }
  b.boolean("create_response", c.create_response);
  b.boolean("interrupt_response", c.interrupt_response);
  b.end_obj();
}

void add_transcription(Builder &b, const SessionConfig &c, const char *key) {
  if (c.transcription_model.empty())
    return;
  b.key(key).obj();
  b.str("model", c.transcription_model);
  if (!c.transcription_language.empty())
    b.str("language", c.transcription_language);
  b.end_obj();
}

void add_noise_reduction(Builder &b, const SessionConfig &c, const char *key) {
  if (c.noise_reduction.empty())
    return;
  b.key(key).obj().type(c.noise_reduction.c_str()).end_obj();
}

void add_tools(Builder &b, const SessionConfig &c) {
  if (c.tools_json.empty())
    return;
  JsonNode *tools = parse_node(c.tools_json);
  if (!tools || !JSON_NODE_HOLDS_ARRAY(tools)) {
    if (tools)
      json_node_unref(tools);
    return;
  }
  if (json_array_get_length(json_node_get_array(tools)) == 0) {
    json_node_unref(tools);
    return;
  }
  b.raw("tools", tools);
  b.str("tool_choice", c.tool_choice.empty() ? "auto" : c.tool_choice);
}

} // namespace

std::string build_session_update(const SessionConfig &c, Dialect d, const std::string &event_id) {
  Builder b;
  b.obj().type("session.update").event_id(event_id);
  b.key("session").obj();
  if (d == Dialect::GA) {
    b.type("realtime");
    if (!c.model.empty())
      b.str("model", c.model);
    if (!c.instructions.empty())
      b.str("instructions", c.instructions);
    b.arr("output_modalities");
    json_builder_add_string_value(b.b, "audio");
    b.end_arr();
    b.key("audio").obj();
    b.key("input").obj();
    add_format(b, c.input_format, d);
    add_noise_reduction(b, c, "noise_reduction");
    add_transcription(b, c, "transcription");
    add_turn_detection(b, c, d);
    b.end_obj();
    b.key("output").obj();
    add_format(b, c.output_format, d);
    if (!c.voice.empty())
      b.str("voice", c.voice);
    if (c.speed != 1.0)
      b.dbl("speed", c.speed);
    b.end_obj();
    b.end_obj(); /* audio */
    add_tools(b, c);
    if (c.max_output_tokens > 0)
      b.num("max_output_tokens", c.max_output_tokens);
  } else {
    b.arr("modalities");
    json_builder_add_string_value(b.b, "text");
    json_builder_add_string_value(b.b, "audio");
    b.end_arr();
    if (!c.instructions.empty())
      b.str("instructions", c.instructions);
    if (!c.voice.empty())
      b.str("voice", c.voice);
    b.str("input_audio_format", beta_format(c.input_format));
    b.str("output_audio_format", beta_format(c.output_format));
    add_transcription(b, c, "input_audio_transcription");
    add_noise_reduction(b, c, "input_audio_noise_reduction");
    add_turn_detection(b, c, d);
    add_tools(b, c);
    if (c.temperature >= 0)
      b.dbl("temperature", c.temperature);
    if (c.max_output_tokens > 0)
      b.num("max_response_output_tokens", c.max_output_tokens);
    if (c.speed != 1.0)
      b.dbl("speed", c.speed);
  }
  b.end_obj(); /* session */
  b.end_obj();
  return b.text();
}

std::string build_format_update(Dialect d, AudioFormat input, AudioFormat output, const std::string &event_id) {
  Builder b;
  b.obj().type("session.update").event_id(event_id).key("session").obj();
  if (d == Dialect::GA) {
    b.type("realtime");
    b.key("audio").obj();
    b.key("input").obj();
    add_format(b, input, d);
    b.end_obj();
    b.key("output").obj();
    add_format(b, output, d);
    b.end_obj();
    b.end_obj();
  } else {
    b.str("input_audio_format", beta_format(input));
    b.str("output_audio_format", beta_format(output));
  }
  return b.end_obj().end_obj().text();
}

std::string build_instructions_update(Dialect d, const std::string &instructions, const std::string &event_id) {
  Builder b;
  b.obj().type("session.update").event_id(event_id).key("session").obj();
  if (d == Dialect::GA)
    b.type("realtime");
  b.str("instructions", instructions);
  return b.end_obj().end_obj().text();
}

std::string build_input_audio_append(const uint8_t *data, size_t len) {
  /* hot path (50 events a second per call): base64 needs no JSON escaping */
  static constexpr std::string_view head = "{\"type\":\"input_audio_buffer.append\",\"audio\":\"";
  std::string out;
  out.reserve(head.size() + (len + 2) / 3 * 4 + 2); /* one allocation */
  out += head;
  pa::base64_encode_append(out, data, len);
  out += "\"}";
  return out;
}

std::string build_input_audio_commit(const std::string &event_id) {
  Builder b;
  return b.obj().type("input_audio_buffer.commit").event_id(event_id).end_obj().text();
}

std::string build_input_audio_clear(const std::string &event_id) {
  Builder b;
  return b.obj().type("input_audio_buffer.clear").event_id(event_id).end_obj().text();
}

std::string build_response_create(Dialect d, const std::string &instructions, const std::string &event_id,
                                  const std::string &purpose) {
  Builder b;
  b.obj().type("response.create").event_id(event_id);
  if (!instructions.empty() || !purpose.empty()) {
    b.key("response").obj();
    if (!instructions.empty())
      b.str("instructions", instructions);
    if (!purpose.empty())
      b.key("metadata").obj().str("purpose", purpose).end_obj();
    (void)d; /* the same shape in both dialects for these fields */
    b.end_obj();
  }
  return b.end_obj().text();
}

std::string build_response_cancel(const std::string &response_id, const std::string &event_id) {
  Builder b;
  b.obj().type("response.cancel").event_id(event_id);
  if (!response_id.empty())
    b.str("response_id", response_id);
  return b.end_obj().text();
}

std::string build_truncate(const std::string &item_id, int content_index, int64_t audio_end_ms,
                           const std::string &event_id) {
  Builder b;
  return b.obj()
      .type("conversation.item.truncate")
      .event_id(event_id)
      .str("item_id", item_id)
      .num("content_index", content_index)
      .num("audio_end_ms", audio_end_ms < 0 ? 0 : audio_end_ms)
      .end_obj()
      .text();
}

std::string build_function_call_output(const std::string &call_id, const std::string &output,
                                       const std::string &event_id) {
  Builder b;
  return b.obj()
      .type("conversation.item.create")
      .event_id(event_id)
      .key("item")
      .obj()
      .type("function_call_output")
      .str("call_id", call_id)
      .str("output", output)
      .end_obj()
      .end_obj()
      .text();
}

std::string build_text_item(Dialect d, const std::string &role, const std::string &text,
                            const std::string &event_id) {
  const char *part = "input_text";
  if (role == "assistant")
    part = d == Dialect::GA ? "output_text" : "text";
  Builder b;
  b.obj().type("conversation.item.create").event_id(event_id);
  b.key("item").obj().type("message").str("role", role);
  b.arr("content");
  b.obj().type(part).str("text", text).end_obj();
  b.end_arr();
  b.end_obj();
  return b.end_obj().text();
}

/* ---- tools ---- */

bool normalize_tools(const std::string &json_text, std::string &out_json, std::vector<std::string> &names,
                     std::string &error) {
  names.clear();
  JsonParser *p = json_parser_new();
  GError *err = nullptr;
  if (!json_parser_load_from_data(p, json_text.data(), static_cast<gssize>(json_text.size()), &err)) {
    error = std::string("not JSON: ") + err->message;
    g_error_free(err);
    g_object_unref(p);
    return false;
  }
  JsonNode *root = json_parser_get_root(p);
  JsonArray *in = nullptr;
  if (root && JSON_NODE_HOLDS_ARRAY(root)) {
    in = json_node_get_array(root);
  } else if (root && JSON_NODE_HOLDS_OBJECT(root)) {
    JsonObject *o = json_node_get_object(root);
    if (json_object_has_member(o, "tools") && JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "tools")))
      in = json_object_get_array_member(o, "tools");
  }
  if (!in) {
    error = "expected a JSON array of tools, or an object with a \"tools\" array";
    g_object_unref(p);
    return false;
  }
  JsonArray *out = json_array_new();
  bool ok = true;
  for (guint i = 0; i < json_array_get_length(in) && ok; i++) {
    JsonNode *n = json_array_get_element(in, i);
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
      error = "tool " + std::to_string(i) + " is not an object";
      ok = false;
      break;
    }
    JsonObject *t = json_node_get_object(n);
    const char *type = json_object_get_string_member_with_default(t, "type", "function");
    JsonObject *flat = json_object_new();
    if (g_strcmp0(type, "function") == 0 && json_object_has_member(t, "function") &&
        JSON_NODE_HOLDS_OBJECT(json_object_get_member(t, "function"))) {
      /* Chat Completions shape: lift the nested function object */
      JsonObject *f = json_object_get_object_member(t, "function");
      json_object_set_string_member(flat, "type", "function");
      GList *members = json_object_get_members(f);
      for (GList *l = members; l; l = l->next) {
        const char *k = static_cast<const char *>(l->data);
        if (g_strcmp0(k, "strict") != 0)
          json_object_set_member(flat, k, json_node_copy(json_object_get_member(f, k)));
      }
      g_list_free(members);
    } else {
      GList *members = json_object_get_members(t);
      for (GList *l = members; l; l = l->next) {
        const char *k = static_cast<const char *>(l->data);
        json_object_set_member(flat, k, json_node_copy(json_object_get_member(t, k)));
      }
      g_list_free(members);
      if (!json_object_has_member(flat, "type"))
        json_object_set_string_member(flat, "type", "function");
    }
    if (g_strcmp0(json_object_get_string_member_with_default(flat, "type", ""), "function") == 0) {
      const char *name = json_object_get_string_member_with_default(flat, "name", nullptr);
      if (!name || !*name) {
        error = "tool " + std::to_string(i) + " has no name";
        ok = false;
      } else {
        names.emplace_back(name);
      }
    }
    JsonNode *fn = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(fn, flat);
    json_array_add_element(out, fn);
  }
  if (ok) {
    JsonNode *arr = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(arr, out);
    gchar *s = json_to_string(arr, FALSE);
    out_json = s;
    g_free(s);
    json_node_unref(arr);
  } else {
    json_array_unref(out);
  }
  g_object_unref(p);
  return ok;
}

std::string append_tools(const std::string &tools_json, const std::vector<std::string> &extra) {
  JsonNode *arr = tools_json.empty() ? nullptr : parse_node(tools_json);
  if (!arr || !JSON_NODE_HOLDS_ARRAY(arr)) {
    if (arr)
      json_node_unref(arr);
    arr = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(arr, json_array_new());
  }
  JsonArray *a = json_node_get_array(arr);
  for (const auto &t : extra)
    if (JsonNode *n = parse_node(t))
      json_array_add_element(a, n);
  gchar *s = json_to_string(arr, FALSE);
  std::string out(s);
  g_free(s);
  json_node_unref(arr);
  return out;
}

std::string builtin_end_call_tool() {
  return R"({"type":"function","name":"end_call","description":"End the phone call. Call this only after you have said goodbye to the caller; the call hangs up once the caller has heard your goodbye.","parameters":{"type":"object","properties":{"reason":{"type":"string","description":"Why the call ends"}}}})";
}

std::string builtin_transfer_tool() {
  return R"({"type":"function","name":"transfer_to_human","description":"Transfer the caller to a human agent. First tell the caller you are transferring them; the transfer starts once they have heard it.","parameters":{"type":"object","properties":{"reason":{"type":"string","description":"Why the caller needs a human"}},"required":["reason"]}})";
}

/* ---- parsing ---- */

namespace {

struct NameEntry {
  EventKind kind;
  NameFamily family;
};

const std::unordered_map<std::string, NameEntry> &name_table() {
  static const std::unordered_map<std::string, NameEntry> table = {
      {"error", {EventKind::Error, NameFamily::Common}},
      {"session.created", {EventKind::SessionCreated, NameFamily::Common}},
      {"session.updated", {EventKind::SessionUpdated, NameFamily::Common}},
      {"conversation.created", {EventKind::ConversationCreated, NameFamily::Common}},
      {"input_audio_buffer.speech_started", {EventKind::SpeechStarted, NameFamily::Common}},
      {"input_audio_buffer.speech_stopped", {EventKind::SpeechStopped, NameFamily::Common}},
      {"input_audio_buffer.committed", {EventKind::InputCommitted, NameFamily::Common}},
      {"input_audio_buffer.cleared", {EventKind::InputCleared, NameFamily::Common}},
      {"input_audio_buffer.timeout_triggered", {EventKind::InputTimeout, NameFamily::GAOnly}},
      {"input_audio_buffer.dtmf_event_received", {EventKind::Ignored, NameFamily::GAOnly}},
      {"conversation.item.input_audio_transcription.delta",
       {EventKind::InputTranscriptionDelta, NameFamily::Common}},
      {"conversation.item.input_audio_transcription.completed",
       {EventKind::InputTranscriptionCompleted, NameFamily::Common}},
      {"conversation.item.input_audio_transcription.failed",
       {EventKind::InputTranscriptionFailed, NameFamily::Common}},
      {"conversation.item.input_audio_transcription.segment",
       {EventKind::InputTranscriptionSegment, NameFamily::GAOnly}},
      /* item.created is beta's name and still in the GA union: no hint */
      {"conversation.item.created", {EventKind::ItemAdded, NameFamily::Common}},
      {"conversation.item.added", {EventKind::ItemAdded, NameFamily::GAOnly}},
      {"conversation.item.done", {EventKind::ItemDone, NameFamily::GAOnly}},
      {"conversation.item.truncated", {EventKind::ItemTruncated, NameFamily::Common}},
      {"conversation.item.deleted", {EventKind::ItemDeleted, NameFamily::Common}},
      {"conversation.item.retrieved", {EventKind::ItemRetrieved, NameFamily::Common}},
      {"response.created", {EventKind::ResponseCreated, NameFamily::Common}},
      {"response.done", {EventKind::ResponseDone, NameFamily::Common}},
      {"response.output_item.added", {EventKind::OutputItemAdded, NameFamily::Common}},
      {"response.output_item.done", {EventKind::OutputItemDone, NameFamily::Common}},
      {"response.content_part.added", {EventKind::ContentPartAdded, NameFamily::Common}},
      {"response.content_part.done", {EventKind::ContentPartDone, NameFamily::Common}},
      {"response.output_audio.delta", {EventKind::AudioDelta, NameFamily::GAOnly}},
      {"response.audio.delta", {EventKind::AudioDelta, NameFamily::BetaOnly}},
      {"response.output_audio.done", {EventKind::AudioDone, NameFamily::GAOnly}},
      {"response.audio.done", {EventKind::AudioDone, NameFamily::BetaOnly}},
      {"response.output_audio_transcript.delta", {EventKind::AudioTranscriptDelta, NameFamily::GAOnly}},
      {"response.audio_transcript.delta", {EventKind::AudioTranscriptDelta, NameFamily::BetaOnly}},
      {"response.output_audio_transcript.done", {EventKind::AudioTranscriptDone, NameFamily::GAOnly}},
      {"response.audio_transcript.done", {EventKind::AudioTranscriptDone, NameFamily::BetaOnly}},
      {"response.output_text.delta", {EventKind::TextDelta, NameFamily::GAOnly}},
      {"response.text.delta", {EventKind::TextDelta, NameFamily::BetaOnly}},
      {"response.output_text.done", {EventKind::TextDone, NameFamily::GAOnly}},
      {"response.text.done", {EventKind::TextDone, NameFamily::BetaOnly}},
      {"response.function_call_arguments.delta", {EventKind::FunctionCallArgumentsDelta, NameFamily::Common}},
      {"response.function_call_arguments.done", {EventKind::FunctionCallArgumentsDone, NameFamily::Common}},
      {"rate_limits.updated", {EventKind::RateLimitsUpdated, NameFamily::Common}},
      {"output_audio_buffer.started", {EventKind::OutputAudioBufferEvent, NameFamily::Common}},
      {"output_audio_buffer.stopped", {EventKind::OutputAudioBufferEvent, NameFamily::Common}},
      {"output_audio_buffer.cleared", {EventKind::OutputAudioBufferEvent, NameFamily::Common}},
  };
  return table;
}

std::string get_str(JsonObject *o, const char *k) {
  if (!o || !json_object_has_member(o, k))
    return {};
  JsonNode *n = json_object_get_member(o, k);
  if (!JSON_NODE_HOLDS_VALUE(n))
    return {};
  if (json_node_get_value_type(n) == G_TYPE_STRING)
    return json_node_get_string(n);
  if (json_node_get_value_type(n) == G_TYPE_INT64)
    return std::to_string(json_node_get_int(n));
  return {};
}

int64_t get_int(JsonObject *o, const char *k, int64_t dflt) {
  if (!o || !json_object_has_member(o, k))
    return dflt;
  JsonNode *n = json_object_get_member(o, k);
  if (!JSON_NODE_HOLDS_VALUE(n))
    return dflt;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_INT64)
    return json_node_get_int(n);
  if (t == G_TYPE_DOUBLE)
    return static_cast<int64_t>(json_node_get_double(n));
  return dflt;
}

JsonObject *get_obj(JsonObject *o, const char *k) {
  if (!o || !json_object_has_member(o, k))
    return nullptr;
  JsonNode *n = json_object_get_member(o, k);
  return JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : nullptr;
}

JsonArray *get_arr(JsonObject *o, const char *k) {
  if (!o || !json_object_has_member(o, k))
    return nullptr;
  JsonNode *n = json_object_get_member(o, k);
  return JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : nullptr;
}

/* Read access to a parsed event for the extraction below: json-glib's tree
 * (the reference), or the fast path's own (TreeView, further down). Both
 * read members as get_str() and get_int() do. */
class GlibView {
public:
  using Obj = JsonObject *;
  using Arr = JsonArray *;
  std::string str(Obj o, const char *k) { return get_str(o, k); }
  int64_t integer(Obj o, const char *k, int64_t dflt) { return get_int(o, k, dflt); }
  Obj obj(Obj o, const char *k) { return get_obj(o, k); }
  Arr arr(Obj o, const char *k) { return get_arr(o, k); }
  /* @fn on every element of @a that is an object, in order */
  template <typename F> void each_obj(Arr a, F fn) {
    for (guint i = 0; a && i < json_array_get_length(a); i++) {
      JsonNode *n = json_array_get_element(a, i);
      if (JSON_NODE_HOLDS_OBJECT(n))
        fn(json_node_get_object(n));
    }
  }
};

template <typename V> void parse_usage(V &v, typename V::Obj u, Usage &out) {
  if (!u)
    return;
  out.present = true;
  out.total_tokens = v.integer(u, "total_tokens", 0);
  out.input_tokens = v.integer(u, "input_tokens", 0);
  out.output_tokens = v.integer(u, "output_tokens", 0);
  typename V::Obj in = v.obj(u, "input_token_details");
  out.input_text_tokens = v.integer(in, "text_tokens", 0);
  out.input_audio_tokens = v.integer(in, "audio_tokens", 0);
  out.input_cached_tokens = v.integer(in, "cached_tokens", 0);
  typename V::Obj outd = v.obj(u, "output_token_details");
  out.output_text_tokens = v.integer(outd, "text_tokens", 0);
  out.output_audio_tokens = v.integer(outd, "audio_tokens", 0);
}

template <typename V> void parse_item(V &v, typename V::Obj o, ItemInfo &it) {
  if (!o)
    return;
  it.id = v.str(o, "id");
  it.type = v.str(o, "type");
  it.role = v.str(o, "role");
  it.status = v.str(o, "status");
  it.name = v.str(o, "name");
  it.call_id = v.str(o, "call_id");
  it.arguments = v.str(o, "arguments");
  v.each_obj(v.arr(o, "content"), [&](typename V::Obj c) {
    std::string t = v.str(c, "type");
    if (t == "audio" || t == "output_audio") {
      if (!it.has_audio)
        it.transcript = v.str(c, "transcript");
      it.has_audio = true;
    }
  });
}

template <typename V> void parse_error(V &v, typename V::Obj e, ErrorInfo &out, bool full) {
  out.type = v.str(e, "type");
  out.code = v.str(e, "code");
  out.message = v.str(e, "message");
  if (full) {
    out.param = v.str(e, "param");
    out.event_id = v.str(e, "event_id");
  }
}

/* The members every event may have */
template <typename V> void parse_common(V &v, typename V::Obj o, ServerEvent &ev) {
  ev.event_id = v.str(o, "event_id");
  ev.response_id = v.str(o, "response_id");
  ev.item_id = v.str(o, "item_id");
  ev.output_index = static_cast<int>(v.integer(o, "output_index", -1));
  ev.content_index = static_cast<int>(v.integer(o, "content_index", 0));
}

/* The fields of an event of any kind but a session's and an audio delta
 * (which the reference reads with json-glib's own types) */
template <typename V> void parse_fields(V &v, typename V::Obj o, ServerEvent &ev) {
  switch (ev.kind) {
  case EventKind::SpeechStarted:
    ev.audio_start_ms = v.integer(o, "audio_start_ms", -1);
    break;
  case EventKind::SpeechStopped:
  case EventKind::ItemTruncated:
    ev.audio_end_ms = v.integer(o, "audio_end_ms", -1);
    break;
  case EventKind::InputTranscriptionDelta:
  case EventKind::AudioTranscriptDelta:
  case EventKind::TextDelta:
  case EventKind::FunctionCallArgumentsDelta:
    ev.delta = v.str(o, "delta");
    break;
  case EventKind::AudioTranscriptDone:
    ev.text = v.str(o, "transcript");
    break;
  case EventKind::InputTranscriptionSegment:
  case EventKind::TextDone:
    ev.text = v.str(o, "text");
    break;
  case EventKind::FunctionCallArgumentsDone:
    ev.text = v.str(o, "arguments");
    ev.call_id = v.str(o, "call_id");
    ev.name = v.str(o, "name"); /* GA only; beta leaves it out */
    break;
  case EventKind::Error:
    parse_error(v, v.obj(o, "error"), ev.error, true);
    break;
  case EventKind::InputTranscriptionCompleted:
    ev.text = v.str(o, "transcript");
    parse_usage(v, v.obj(o, "usage"), ev.response.usage);
    break;
  case EventKind::InputTranscriptionFailed:
    parse_error(v, v.obj(o, "error"), ev.error, false);
    break;
  case EventKind::ResponseCreated:
  case EventKind::ResponseDone: {
    typename V::Obj r = v.obj(o, "response");
    ev.response.id = v.str(r, "id");
    ev.response.status = v.str(r, "status");
    if (typename V::Obj sd = v.obj(r, "status_details")) {
      ev.response.reason = v.str(sd, "reason");
      if (typename V::Obj e = v.obj(sd, "error")) {
        std::string code = v.str(e, "code");
        if (ev.response.reason.empty())
          ev.response.reason = code.empty() ? v.str(e, "type") : code;
      }
    }
    parse_usage(v, v.obj(r, "usage"), ev.response.usage);
    v.each_obj(v.arr(r, "output"), [&](typename V::Obj n) {
      ItemInfo it;
      parse_item(v, n, it);
      ev.response.output.push_back(std::move(it));
    });
    if (ev.response_id.empty())
      ev.response_id = ev.response.id;
    break;
  }
  case EventKind::OutputItemAdded:
  case EventKind::OutputItemDone:
  case EventKind::ItemAdded:
  case EventKind::ItemDone:
  case EventKind::ItemRetrieved:
    parse_item(v, v.obj(o, "item"), ev.item);
    if (ev.item_id.empty())
      ev.item_id = ev.item.id;
    break;
  default:
    break;
  }
}

void parse_session(JsonObject *s, SessionInfo &si) {
  if (!s)
    return;
  si.id = get_str(s, "id");
  si.model = get_str(s, "model");
  if (get_str(s, "type") == "realtime" || get_obj(s, "audio") || json_object_has_member(s, "output_modalities")) {
    si.shape_known = true;
    si.shape = Dialect::GA;
  } else if (json_object_has_member(s, "input_audio_format") || json_object_has_member(s, "modalities") ||
             json_object_has_member(s, "output_audio_format")) {
    si.shape_known = true;
    si.shape = Dialect::Beta;
  }
}

} // namespace

EventKind event_kind(const std::string &type, NameFamily *family) {
  const auto &t = name_table();
  auto it = t.find(type);
  if (it == t.end()) {
    if (family)
      *family = NameFamily::Common;
    /* GA's MCP events: known, not ours to act on */
    if (type.rfind("mcp_list_tools.", 0) == 0 || type.rfind("response.mcp_call", 0) == 0)
      return EventKind::Ignored;
    return EventKind::Unknown;
  }
  if (family)
    *family = it->second.family;
  return it->second.kind;
}

namespace {

/* true, false, null, or a number as RFC 8259 spells it */
bool json_literal(std::string_view v) {
  if (v == "true" || v == "false" || v == "null")
    return true;
  size_t i = 0, n = v.size();
  auto digits = [&] {
    size_t s = i;
    while (i < n && v[i] >= '0' && v[i] <= '9')
      i++;
    return i > s;
  };
  if (i < n && v[i] == '-')
    i++;
  if (i < n && v[i] == '0')
    i++;
  else if (!digits())
    return false;
  if (i < n && v[i] == '.') {
    i++;
    if (!digits())
      return false;
  }
  if (i < n && (v[i] == 'e' || v[i] == 'E')) {
    i++;
    if (i < n && (v[i] == '+' || v[i] == '-'))
      i++;
    if (!digits())
      return false;
  }
  return i == n;
}

/* A string of the strict subset at @p (printable ASCII, no escapes): its
 * contents in @out, @p moved past it. */
bool strict_string(const char *&p, const char *end, std::string_view &out) {
  if (p >= end || *p != '"')
    return false;
  const char *start = p + 1;
  const char *q = pa::twilio::json_skip_plain(start, end);
  if (q == end || *q != '"')
    return false; /* an escape, a control or a non-ASCII byte: json-glib's to read */
  out = std::string_view(start, static_cast<size_t>(q - start));
  p = q + 1;
  return true;
}

/* A plain integer literal (no fraction, no exponent) of at most 16 digits:
 * what json-glib reads as an int64 for sure. */
bool plain_integer(std::string_view v, int64_t &out) {
  size_t i = !v.empty() && v[0] == '-' ? 1 : 0;
  if (i == v.size() || v.size() - i > 16)
    return false;
  int64_t r = 0;
  for (; i < v.size(); i++) {
    if (v[i] < '0' || v[i] > '9')
      return false;
    r = r * 10 + (v[i] - '0');
  }
  out = v[0] == '-' ? -r : r;
  return true;
}

/* The fast path, for every event but a session's (rare): a strict subset
 * of JSON (strings of printable ASCII without escapes, numbers and literals
 * in JSON's own grammar, no member twice, at most 16 levels and 512 values)
 * read into one vector of nodes in document order, no allocation once the
 * vector has grown. The fields are extracted by the reference's own code
 * (parse_fields()) through TreeView. Anything outside the subset, or a
 * member of a type the extraction would read differently from json-glib (a
 * double or a big integer where an integer is read, an audio delta that is
 * not a string), and json-glib decides; tests check on a corpus and on
 * thousands of random edits of it that both give the same. Most events by
 * count are audio and transcript deltas; the nested ones (responses, items)
 * are a few per response, but a json-glib parse of one costs as much as ten
 * audio deltas. */
struct TreeNode {
  enum class Kind : uint8_t { Object, Array, String, Literal } kind;
  std::string_view key;   /* its name, for an object's member */
  std::string_view value; /* String, Literal */
  uint32_t end = 0;       /* the index after its subtree */
};

class TreeScanner {
public:
  static constexpr size_t kMaxNodes = 512;
  static constexpr int kMaxDepth = 16;
  /* One object, and nothing but white space after it. */
  bool scan(const char *p, const char *end, std::vector<TreeNode> &out) {
    p_ = p;
    end_ = end;
    nodes_ = &out;
    out.clear();
    ws();
    if (p_ >= end_ || *p_ != '{' || !value({}, 0))
      return false;
    ws();
    return p_ == end_;
  }

private:
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t'))
      p_++;
  }
  bool string(std::string_view &out) { return strict_string(p_, end_, out); }
  bool value(std::string_view key, int depth) {
    std::vector<TreeNode> &n = *nodes_;
    if (n.size() == kMaxNodes || depth > kMaxDepth || p_ >= end_)
      return false;
    size_t self = n.size();
    n.push_back(TreeNode{TreeNode::Kind::Literal, key, {}, 0});
    char c = *p_;
    if (c == '"') {
      n[self].kind = TreeNode::Kind::String;
      if (!string(n[self].value))
        return false;
    } else if (c == '{' || c == '[') {
      bool object = c == '{';
      n[self].kind = object ? TreeNode::Kind::Object : TreeNode::Kind::Array;
      p_++;
      ws();
      if (p_ < end_ && *p_ == (object ? '}' : ']')) {
        p_++;
      } else {
        for (;;) {
          std::string_view k;
          if (object) {
            if (!string(k))
              return false;
            for (size_t i = self + 1; i < n.size(); i = n[i].end)
              if (n[i].key == k)
                return false; /* a member twice */
            ws();
            if (p_ >= end_ || *p_++ != ':')
              return false;
            ws();
          }
          if (!value(k, depth + 1))
            return false;
          ws();
          if (p_ < end_ && *p_ == ',') {
            p_++;
            ws();
            continue;
          }
          if (p_ < end_ && *p_ == (object ? '}' : ']')) {
            p_++;
            break;
          }
          return false;
        }
      }
    } else {
      const char *start = p_;
      while (p_ < end_ && (g_ascii_isalnum(*p_) || *p_ == '-' || *p_ == '.' || *p_ == '+'))
        p_++;
      n[self].value = std::string_view(start, static_cast<size_t>(p_ - start));
      if (!json_literal(n[self].value))
        return false;
    }
    n[self].end = static_cast<uint32_t>(n.size());
    return true;
  }
  const char *p_ = nullptr, *end_ = nullptr;
  std::vector<TreeNode> *nodes_ = nullptr;
};

/* GlibView's reading of a TreeScanner's nodes. ok turns false where json-glib
 * might read a member otherwise (a big integer, a double read as an integer). */
class TreeView {
public:
  struct Ref {
    int i = -1;
    explicit operator bool() const { return i >= 0; }
  };
  using Obj = Ref;
  using Arr = Ref;
  explicit TreeView(const std::vector<TreeNode> &n) : n_(n) {}
  bool ok = true;

  std::string str(Obj o, const char *k) {
    const TreeNode *x = member(o, k);
    if (!x)
      return {};
    if (x->kind == TreeNode::Kind::String)
      return std::string(x->value);
    if (x->kind != TreeNode::Kind::Literal || is_word(x->value) || !integer_like(x->value))
      return {}; /* an object, an array, true, false, null, a double */
    int64_t i = 0;
    if (!plain_integer(x->value, i)) {
      ok = false;
      return {};
    }
    return std::to_string(i);
  }
  int64_t integer(Obj o, const char *k, int64_t dflt) {
    const TreeNode *x = member(o, k);
    if (!x || x->kind != TreeNode::Kind::Literal || is_word(x->value))
      return dflt;
    int64_t i = 0;
    if (!plain_integer(x->value, i))
      ok = false; /* json-glib would truncate a double, or a big integer */
    return i;
  }
  Obj obj(Obj o, const char *k) { return ref(member(o, k), TreeNode::Kind::Object); }
  Arr arr(Obj o, const char *k) { return ref(member(o, k), TreeNode::Kind::Array); }
  template <typename F> void each_obj(Arr a, F fn) {
    if (!a)
      return;
    for (size_t i = static_cast<size_t>(a.i) + 1; i < n_[a.i].end; i = n_[i].end)
      if (n_[i].kind == TreeNode::Kind::Object)
        fn(Ref{static_cast<int>(i)});
  }
  const TreeNode *member(Obj o, std::string_view k) const {
    if (!o)
      return nullptr;
    for (size_t i = static_cast<size_t>(o.i) + 1; i < n_[o.i].end; i = n_[i].end)
      if (n_[i].key == k)
        return &n_[i];
    return nullptr;
  }

private:
  static bool is_word(std::string_view v) { return v == "true" || v == "false" || v == "null"; }
  /* no fraction or exponent: json-glib reads it as an integer */
  static bool integer_like(std::string_view v) { return v.find_first_of(".eE") == std::string_view::npos; }
  Ref ref(const TreeNode *x, TreeNode::Kind kind) const {
    return x && x->kind == kind ? Ref{static_cast<int>(x - n_.data())} : Ref{};
  }
  const std::vector<TreeNode> &n_;
};

bool parse_fast(const char *text, size_t len, ServerEvent &ev, ParseStatus &status, std::string &error) {
  thread_local std::vector<TreeNode> nodes; /* kept: no allocation per event */
  if (!TreeScanner().scan(text, text + len, nodes))
    return false;
  TreeView v(nodes);
  TreeView::Obj root{0};
  const TreeNode *type = v.member(root, "type");
  if (!type || type->kind != TreeNode::Kind::String || type->value.empty())
    return false;
  ev.type.assign(type->value);
  ev.kind = event_kind(ev.type, &ev.family);
  if (ev.kind == EventKind::SessionCreated || ev.kind == EventKind::SessionUpdated)
    return false;
  parse_common(v, root, ev);
  status = ParseStatus::Ok;
  if (ev.kind == EventKind::AudioDelta) {
    const TreeNode *d = v.member(root, "delta");
    if (d && d->kind != TreeNode::Kind::String)
      return false;
    if (!d || !pa::base64_decode(d->value, ev.audio)) {
      ev.audio.clear();
      error = "audio delta is not valid base64";
      status = ParseStatus::BadAudio;
    }
  } else {
    parse_fields(v, root, ev);
  }
  return v.ok;
}

} // namespace

ParseStatus parse_server_event(const char *text, size_t len, ServerEvent &ev, std::string &error) {
  ev = ServerEvent();
  ParseStatus fast;
  if (parse_fast(text, len, ev, fast, error))
    return fast;
  return parse_server_event_reference(text, len, ev, error);
}

ParseStatus parse_server_event_reference(const char *text, size_t len, ServerEvent &ev, std::string &error) {
  ev = ServerEvent();
  JsonParser *p = json_parser_new();
  GError *err = nullptr;
  if (!json_parser_load_from_data(p, text, static_cast<gssize>(len), &err)) {
    error = err ? err->message : "not JSON";
    g_clear_error(&err);
    g_object_unref(p);
    return ParseStatus::NotJson;
  }
  JsonNode *root = json_parser_get_root(p);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    error = "not a JSON object";
    g_object_unref(p);
    return ParseStatus::NotObject;
  }
  JsonObject *o = json_node_get_object(root);
  ev.type = get_str(o, "type");
  if (ev.type.empty()) {
    error = "no \"type\"";
    g_object_unref(p);
    return ParseStatus::NoType;
  }
  ev.kind = event_kind(ev.type, &ev.family);
  GlibView v;
  parse_common(v, o, ev);
  ParseStatus status = ParseStatus::Ok;

  switch (ev.kind) {
  case EventKind::SessionCreated:
  case EventKind::SessionUpdated:
    parse_session(get_obj(o, "session"), ev.session);
    break;
  case EventKind::AudioDelta: {
    /* a delta that is missing, or not a string, is bad audio too */
    JsonNode *d = json_object_get_member(o, "delta");
    bool is_string = d && JSON_NODE_HOLDS_VALUE(d) && json_node_get_value_type(d) == G_TYPE_STRING;
    if (!is_string || !pa::base64_decode(json_node_get_string(d), ev.audio)) {
      ev.audio.clear();
      error = "audio delta is not valid base64";
      status = ParseStatus::BadAudio;
    }
    break;
  }
  default:
    parse_fields(v, o, ev);
    break;
  }
  g_object_unref(p);
  return status;
}

} // namespace pa::rt
