/* gst-phone-agent: OpenAI Realtime protocol, GA and beta dialects */
#include "rt-protocol.h"

#include <json-glib/json-glib.h>

#include <cstring>
#include <string_view>
#include <unordered_map>

#include "pa-audio.h"

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
  std::string out = "{\"type\":\"input_audio_buffer.append\",\"audio\":\"";
  out += pa::base64_encode(data, len);
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

void parse_usage(JsonObject *u, Usage &out) {
  if (!u)
    return;
  out.present = true;
  out.total_tokens = get_int(u, "total_tokens", 0);
  out.input_tokens = get_int(u, "input_tokens", 0);
  out.output_tokens = get_int(u, "output_tokens", 0);
  JsonObject *in = get_obj(u, "input_token_details");
  out.input_text_tokens = get_int(in, "text_tokens", 0);
  out.input_audio_tokens = get_int(in, "audio_tokens", 0);
  out.input_cached_tokens = get_int(in, "cached_tokens", 0);
  JsonObject *outd = get_obj(u, "output_token_details");
  out.output_text_tokens = get_int(outd, "text_tokens", 0);
  out.output_audio_tokens = get_int(outd, "audio_tokens", 0);
}

void parse_item(JsonObject *o, ItemInfo &it) {
  if (!o)
    return;
  it.id = get_str(o, "id");
  it.type = get_str(o, "type");
  it.role = get_str(o, "role");
  it.status = get_str(o, "status");
  it.name = get_str(o, "name");
  it.call_id = get_str(o, "call_id");
  it.arguments = get_str(o, "arguments");
  if (JsonArray *content = get_arr(o, "content")) {
    for (guint i = 0; i < json_array_get_length(content); i++) {
      JsonNode *n = json_array_get_element(content, i);
      if (!JSON_NODE_HOLDS_OBJECT(n))
        continue;
      JsonObject *c = json_node_get_object(n);
      std::string t = get_str(c, "type");
      if (t == "audio" || t == "output_audio") {
        if (!it.has_audio)
          it.transcript = get_str(c, "transcript");
        it.has_audio = true;
      }
    }
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

/* The fast path: events that are one flat object of strings and numbers,
 * which is nearly all of them by count (audio and transcript deltas, speech
 * started/stopped, committed, done events). The scanner accepts only a
 * strict subset of JSON: string keys and values of printable ASCII without
 * escapes, numbers and literals in JSON's own grammar, no member twice. It
 * gives up on anything else, and on every event whose fields are nested
 * objects, and json-glib decides; tests check that both give the same. */
struct FlatField {
  std::string_view key, value;
  bool is_string = false;
};

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

bool scan_flat(const char *p, const char *end, FlatField *fields, size_t max, size_t &n) {
  n = 0;
  auto ws = [&] {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
      p++;
  };
  auto string = [&](std::string_view &out) {
    if (p >= end || *p != '"')
      return false;
    const char *start = ++p;
    const char *q = static_cast<const char *>(memchr(p, '"', static_cast<size_t>(end - p)));
    if (!q)
      return false;
    for (const char *c = start; c < q; c++)
      if (*c == '\\' || static_cast<unsigned char>(*c) < 0x20 || static_cast<unsigned char>(*c) >= 0x80)
        return false; /* an escape, a control or a non-ASCII byte: json-glib's to read */
    out = std::string_view(start, static_cast<size_t>(q - start));
    p = q + 1;
    return true;
  };
  ws();
  if (p >= end || *p++ != '{')
    return false;
  for (;;) {
    ws();
    if (n == max)
      return false;
    FlatField &f = fields[n];
    if (!string(f.key))
      return false;
    for (size_t i = 0; i < n; i++)
      if (fields[i].key == f.key)
        return false; /* a member twice */
    ws();
    if (p >= end || *p++ != ':')
      return false;
    ws();
    if (p < end && *p == '"') {
      if (!string(f.value))
        return false;
      f.is_string = true;
    } else {
      const char *start = p;
      while (p < end && (g_ascii_isalnum(*p) || *p == '-' || *p == '.' || *p == '+'))
        p++;
      f.value = std::string_view(start, static_cast<size_t>(p - start));
      if (!json_literal(f.value))
        return false;
      f.is_string = false;
    }
    n++;
    ws();
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    if (p < end && *p == '}') {
      p++;
      ws();
      return p == end;
    }
    return false;
  }
}

/* The flat fields of one event, read as get_str() and get_int() read
 * json-glib's nodes; a member of another type than those two expect makes
 * the fast path give up (false). */
class Flat {
public:
  Flat(const FlatField *f, size_t n) : f_(f), n_(n) {}
  const FlatField *find(std::string_view key) const {
    for (size_t i = 0; i < n_; i++)
      if (f_[i].key == key)
        return &f_[i];
    return nullptr;
  }
  bool str(std::string_view key, std::string &out) const {
    const FlatField *x = find(key);
    if (!x)
      return true;
    if (!x->is_string)
      return false;
    out.assign(x->value);
    return true;
  }
  bool integer(std::string_view key, int64_t &out) const {
    const FlatField *x = find(key);
    if (!x)
      return true;
    std::string_view v = x->value;
    if (x->is_string || v.empty() || v.size() > 16)
      return false;
    size_t i = v[0] == '-' ? 1 : 0;
    if (i == v.size())
      return false;
    int64_t r = 0;
    for (; i < v.size(); i++) {
      if (v[i] < '0' || v[i] > '9')
        return false; /* a fraction or an exponent: a double to json-glib */
      r = r * 10 + (v[i] - '0');
    }
    out = v[0] == '-' ? -r : r;
    return true;
  }

private:
  const FlatField *f_;
  size_t n_;
};

bool parse_flat_fast(const char *text, size_t len, ServerEvent &ev, ParseStatus &status, std::string &error) {
  FlatField f[16];
  size_t n = 0;
  if (!scan_flat(text, text + len, f, 16, n))
    return false;
  Flat flat(f, n);
  const FlatField *type = flat.find("type");
  if (!type || !type->is_string || type->value.empty())
    return false;
  ev.type.assign(type->value);
  ev.kind = event_kind(ev.type, &ev.family);
  switch (ev.kind) {
  case EventKind::Error:
  case EventKind::SessionCreated:
  case EventKind::SessionUpdated:
  case EventKind::InputTranscriptionCompleted:
  case EventKind::InputTranscriptionFailed:
  case EventKind::ResponseCreated:
  case EventKind::ResponseDone:
  case EventKind::OutputItemAdded:
  case EventKind::OutputItemDone:
  case EventKind::ItemAdded:
  case EventKind::ItemDone:
  case EventKind::ItemRetrieved:
    return false; /* their fields are nested objects */
  default:
    break;
  }
  int64_t output_index = -1, content_index = 0;
  if (!flat.str("event_id", ev.event_id) || !flat.str("response_id", ev.response_id) ||
      !flat.str("item_id", ev.item_id) || !flat.integer("output_index", output_index) ||
      !flat.integer("content_index", content_index))
    return false;
  ev.output_index = static_cast<int>(output_index);
  ev.content_index = static_cast<int>(content_index);
  status = ParseStatus::Ok;
  switch (ev.kind) {
  case EventKind::SpeechStarted:
    return flat.integer("audio_start_ms", ev.audio_start_ms);
  case EventKind::SpeechStopped:
  case EventKind::ItemTruncated:
    return flat.integer("audio_end_ms", ev.audio_end_ms);
  case EventKind::InputTranscriptionDelta:
  case EventKind::AudioTranscriptDelta:
  case EventKind::TextDelta:
  case EventKind::FunctionCallArgumentsDelta:
    return flat.str("delta", ev.delta);
  case EventKind::AudioTranscriptDone:
    return flat.str("transcript", ev.text);
  case EventKind::InputTranscriptionSegment:
  case EventKind::TextDone:
    return flat.str("text", ev.text);
  case EventKind::FunctionCallArgumentsDone:
    return flat.str("arguments", ev.text) && flat.str("call_id", ev.call_id) && flat.str("name", ev.name);
  case EventKind::AudioDelta: {
    const FlatField *d = flat.find("delta");
    if (d && !d->is_string)
      return false;
    if (!d || !pa::base64_decode(d->value, ev.audio)) {
      ev.audio.clear();
      error = "audio delta is not valid base64";
      status = ParseStatus::BadAudio;
    }
    return true;
  }
  default:
    return true;
  }
}

} // namespace

ParseStatus parse_server_event(const char *text, size_t len, ServerEvent &ev, std::string &error) {
  ev = ServerEvent();
  ParseStatus fast;
  if (parse_flat_fast(text, len, ev, fast, error))
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
  ev.event_id = get_str(o, "event_id");
  ev.response_id = get_str(o, "response_id");
  ev.item_id = get_str(o, "item_id");
  ev.output_index = static_cast<int>(get_int(o, "output_index", -1));
  ev.content_index = static_cast<int>(get_int(o, "content_index", 0));
  ParseStatus status = ParseStatus::Ok;

  switch (ev.kind) {
  case EventKind::Error: {
    JsonObject *e = get_obj(o, "error");
    ev.error.type = get_str(e, "type");
    ev.error.code = get_str(e, "code");
    ev.error.message = get_str(e, "message");
    ev.error.param = get_str(e, "param");
    ev.error.event_id = get_str(e, "event_id");
    break;
  }
  case EventKind::SessionCreated:
  case EventKind::SessionUpdated:
    parse_session(get_obj(o, "session"), ev.session);
    break;
  case EventKind::SpeechStarted:
    ev.audio_start_ms = get_int(o, "audio_start_ms", -1);
    break;
  case EventKind::SpeechStopped:
    ev.audio_end_ms = get_int(o, "audio_end_ms", -1);
    break;
  case EventKind::InputTranscriptionDelta:
  case EventKind::AudioTranscriptDelta:
  case EventKind::TextDelta:
  case EventKind::FunctionCallArgumentsDelta:
    ev.delta = get_str(o, "delta");
    break;
  case EventKind::InputTranscriptionCompleted:
  case EventKind::AudioTranscriptDone:
    ev.text = get_str(o, "transcript");
    if (ev.kind == EventKind::InputTranscriptionCompleted) {
      parse_usage(get_obj(o, "usage"), ev.response.usage);
    }
    break;
  case EventKind::InputTranscriptionSegment:
    ev.text = get_str(o, "text");
    break;
  case EventKind::InputTranscriptionFailed: {
    JsonObject *e = get_obj(o, "error");
    ev.error.type = get_str(e, "type");
    ev.error.code = get_str(e, "code");
    ev.error.message = get_str(e, "message");
    break;
  }
  case EventKind::TextDone:
    ev.text = get_str(o, "text");
    break;
  case EventKind::FunctionCallArgumentsDone:
    ev.text = get_str(o, "arguments");
    ev.call_id = get_str(o, "call_id");
    ev.name = get_str(o, "name"); /* GA only; beta leaves it out */
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
  case EventKind::ResponseCreated:
  case EventKind::ResponseDone: {
    JsonObject *r = get_obj(o, "response");
    ev.response.id = get_str(r, "id");
    ev.response.status = get_str(r, "status");
    if (JsonObject *sd = get_obj(r, "status_details")) {
      ev.response.reason = get_str(sd, "reason");
      if (JsonObject *e = get_obj(sd, "error")) {
        std::string code = get_str(e, "code");
        if (ev.response.reason.empty())
          ev.response.reason = code.empty() ? get_str(e, "type") : code;
      }
    }
    parse_usage(get_obj(r, "usage"), ev.response.usage);
    if (JsonArray *out = get_arr(r, "output")) {
      for (guint i = 0; i < json_array_get_length(out); i++) {
        JsonNode *n = json_array_get_element(out, i);
        if (!JSON_NODE_HOLDS_OBJECT(n))
          continue;
        ItemInfo it;
        parse_item(json_node_get_object(n), it);
        ev.response.output.push_back(std::move(it));
      }
    }
    if (ev.response_id.empty())
      ev.response_id = ev.response.id;
    break;
  }
  case EventKind::OutputItemAdded:
  case EventKind::OutputItemDone:
  case EventKind::ItemAdded:
  case EventKind::ItemDone:
  case EventKind::ItemRetrieved:
    parse_item(get_obj(o, "item"), ev.item);
    if (ev.item_id.empty())
      ev.item_id = ev.item.id;
    break;
  case EventKind::ItemTruncated:
    ev.audio_end_ms = get_int(o, "audio_end_ms", -1);
    break;
  default:
    break;
  }
  g_object_unref(p);
  return status;
}

} // namespace pa::rt
