/* gst-phone-agent: the realtime protocol library against PROTOCOLS.md
 * section E (shapes of client events, event-name aliasing, parsing). */
#include <random>

#include "../common/pa-check.h"
#include "../common/pa-mutate.h"
#include "pa-audio.h"
#include "rt-protocol.h"
#include "rt-websocket.h"
#include "test-rt-json.h"

using namespace pa::rt;
using rtjson::Doc;

namespace {
SessionConfig twilio_config() {
  SessionConfig c;
  c.model = "gpt-realtime";
  c.instructions = "You are Acme's phone agent. Keep answers short.";
  c.voice = "marin";
  c.transcription_model = "gpt-4o-mini-transcribe";
  c.transcription_language = "en";
  std::vector<std::string> names;
  std::string err;
  fail_unless(normalize_tools(R"([{"type":"function","name":"lookup","description":"Look up",
      "parameters":{"type":"object","properties":{}}}])",
                              c.tools_json, names, err));
  c.tools_json = append_tools(c.tools_json, {builtin_end_call_tool(), builtin_transfer_tool()});
  return c;
}
} // namespace

/* E.3 GA shape, Twilio-ready (μ-law both ways) */
GST_START_TEST(test_session_update_ga) {
  SessionConfig c = twilio_config();
  c.max_output_tokens = 500;
  c.temperature = 0.8; /* beta only: must not appear */
  Doc d(build_session_update(c, Dialect::GA, "cfg-1"));
  fail_unless(d.ok());
  assert_str(d.str("type"), "session.update");
  assert_str(d.str("event_id"), "cfg-1");
  assert_str(d.str("session.type"), "realtime");
  assert_str(d.str("session.model"), "gpt-realtime");
  assert_str(d.str("session.instructions"), c.instructions);
  fail_unless_equals_int(d.len("session.output_modalities"), 1);
  assert_str(d.str("session.output_modalities[0]"), "audio");
  assert_str(d.str("session.audio.input.format.type"), "audio/pcmu");
  fail_unless(!d.has("session.audio.input.format.rate"));
  assert_str(d.str("session.audio.output.format.type"), "audio/pcmu");
  assert_str(d.str("session.audio.output.voice"), "marin");
  fail_unless(!d.has("session.audio.output.speed")); /* 1.0: server default, not sent */
  assert_str(d.str("session.audio.input.transcription.model"), "gpt-4o-mini-transcribe");
  assert_str(d.str("session.audio.input.transcription.language"), "en");
  assert_str(d.str("session.audio.input.turn_detection.type"), "server_vad");
  fail_unless(d.dbl("session.audio.input.turn_detection.threshold") == 0.5);
  fail_unless_equals_int(d.num("session.audio.input.turn_detection.prefix_padding_ms"), 300);
  fail_unless_equals_int(d.num("session.audio.input.turn_detection.silence_duration_ms"), 500);
  fail_unless_equals_int(d.boolean("session.audio.input.turn_detection.create_response"), 1);
  fail_unless_equals_int(d.boolean("session.audio.input.turn_detection.interrupt_response"), 1);
  fail_unless(!d.has("session.audio.input.turn_detection.idle_timeout_ms"));
  /* tools are flat {type,name,description,parameters} */
  fail_unless_equals_int(d.len("session.tools"), 3);
  assert_str(d.str("session.tools[0].type"), "function");
  assert_str(d.str("session.tools[0].name"), "lookup");
  fail_unless(!d.has("session.tools[0].function"));
  assert_str(d.str("session.tools[1].name"), "end_call");
  assert_str(d.str("session.tools[2].name"), "transfer_to_human");
  assert_str(d.str("session.tools[2].parameters.required[0]"), "reason");
  assert_str(d.str("session.tool_choice"), "auto");
  fail_unless_equals_int(d.num("session.max_output_tokens"), 500);
  /* no beta fields, no temperature in GA (G.7) */
  for (const char *k : {"session.temperature", "session.modalities", "session.input_audio_format", "session.voice",
                        "session.turn_detection", "session.max_response_output_tokens"})
    fail_unless(!d.has(k), "GA session.update has beta field %s", k);
}
GST_END_TEST;

GST_START_TEST(test_session_update_ga_pcm_and_vad_variants) {
  SessionConfig c;
  c.input_format = AudioFormat::PCM16;
  c.output_format = AudioFormat::PCM16;
  c.turn_detection = TurnDetection::SemanticVad;
  c.eagerness = "high";
  c.interrupt_response = false;
  c.speed = 1.2;
  c.noise_reduction = "near_field";
  Doc d(build_session_update(c, Dialect::GA));
  assert_str(d.str("session.audio.input.format.type"), "audio/pcm");
  fail_unless_equals_int(d.num("session.audio.input.format.rate"), 24000);
  assert_str(d.str("session.audio.output.format.type"), "audio/pcm");
  fail_unless_equals_int(d.num("session.audio.output.format.rate"), 24000);
  assert_str(d.str("session.audio.input.turn_detection.type"), "semantic_vad");
  assert_str(d.str("session.audio.input.turn_detection.eagerness"), "high");
  fail_unless(!d.has("session.audio.input.turn_detection.threshold"));
  fail_unless_equals_int(d.boolean("session.audio.input.turn_detection.interrupt_response"), 0);
  fail_unless(d.dbl("session.audio.output.speed") > 1.19);
  assert_str(d.str("session.audio.input.noise_reduction.type"), "near_field");
  fail_unless(!d.has("session.tools"));
  fail_unless(!d.has("session.audio.input.transcription"));
  fail_unless(!d.has("session.model"));

  c.turn_detection = TurnDetection::None;
  Doc n(build_session_update(c, Dialect::GA));
  fail_unless(n.is_null("session.audio.input.turn_detection"));

  c.turn_detection = TurnDetection::ServerVad;
  c.idle_timeout_ms = 6000;
  Doc i(build_session_update(c, Dialect::GA));
  fail_unless_equals_int(i.num("session.audio.input.turn_detection.idle_timeout_ms"), 6000);
}
GST_END_TEST;

/* E.3 beta shape */
GST_START_TEST(test_session_update_beta) {
  SessionConfig c = twilio_config();
  c.temperature = 0.8;
  c.max_output_tokens = 500;
  c.transcription_model = "whisper-1";
  c.transcription_language.clear();
  Doc d(build_session_update(c, Dialect::Beta));
  assert_str(d.str("type"), "session.update");
  fail_unless(!d.has("session.type"));
  fail_unless(!d.has("session.model"));
  fail_unless_equals_int(d.len("session.modalities"), 2);
  assert_str(d.str("session.modalities[0]"), "text");
  assert_str(d.str("session.modalities[1]"), "audio");
  assert_str(d.str("session.input_audio_format"), "g711_ulaw");
  assert_str(d.str("session.output_audio_format"), "g711_ulaw");
  assert_str(d.str("session.voice"), "marin");
  assert_str(d.str("session.input_audio_transcription.model"), "whisper-1");
  fail_unless(!d.has("session.input_audio_transcription.language"));
  assert_str(d.str("session.turn_detection.type"), "server_vad");
  fail_unless_equals_int(d.boolean("session.turn_detection.create_response"), 1);
  fail_unless(d.dbl("session.temperature") > 0.79);
  fail_unless_equals_int(d.num("session.max_response_output_tokens"), 500);
  assert_str(d.str("session.tools[1].name"), "end_call");
  fail_unless(!d.has("session.audio"));
  fail_unless(!d.has("session.output_modalities"));
  fail_unless(!d.has("session.max_output_tokens"));

  c.input_format = AudioFormat::PCM16;
  Doc p(build_session_update(c, Dialect::Beta));
  assert_str(p.str("session.input_audio_format"), "pcm16");
  assert_str(p.str("session.output_audio_format"), "g711_ulaw");
}
GST_END_TEST;

GST_START_TEST(test_partial_updates) {
  Doc f(build_format_update(Dialect::GA, AudioFormat::PCM16, AudioFormat::PCMU));
  assert_str(f.str("session.type"), "realtime");
  assert_str(f.str("session.audio.input.format.type"), "audio/pcm");
  assert_str(f.str("session.audio.output.format.type"), "audio/pcmu");
  fail_unless(!f.has("session.audio.output.voice"));
  fail_unless(!f.has("session.instructions"));
  Doc fb(build_format_update(Dialect::Beta, AudioFormat::PCMU, AudioFormat::PCM16));
  assert_str(fb.str("session.input_audio_format"), "g711_ulaw");
  assert_str(fb.str("session.output_audio_format"), "pcm16");
  Doc i(build_instructions_update(Dialect::GA, "Be brief."));
  assert_str(i.str("session.instructions"), "Be brief.");
  fail_unless_equals_int(i.len("session"), 2);
}
GST_END_TEST;

/* E.4 client events */
GST_START_TEST(test_client_events) {
  const uint8_t audio[] = {0xff, 0x7f, 0x00, 0x10, 0x20};
  Doc a(build_input_audio_append(audio, sizeof audio));
  assert_str(a.str("type"), "input_audio_buffer.append");
  std::vector<uint8_t> back;
  fail_unless(pa::base64_decode(a.str("audio"), back));
  fail_unless(back == std::vector<uint8_t>(audio, audio + sizeof audio));

  Doc t(build_truncate("item_Bx9", 0, 1840));
  assert_str(t.str("type"), "conversation.item.truncate");
  assert_str(t.str("item_id"), "item_Bx9");
  fail_unless_equals_int(t.num("content_index"), 0);
  fail_unless_equals_int(t.num("audio_end_ms"), 1840);
  fail_unless_equals_int(t.len(""), 4);
  Doc tn(build_truncate("item_X", 0, -5));
  fail_unless_equals_int(tn.num("audio_end_ms"), 0);

  Doc o(build_function_call_output("call_7Hk2", R"({"ok":true,"queue":"billing"})"));
  assert_str(o.str("type"), "conversation.item.create");
  assert_str(o.str("item.type"), "function_call_output");
  assert_str(o.str("item.call_id"), "call_7Hk2");
  assert_str(o.str("item.output"), R"({"ok":true,"queue":"billing"})"); /* a string, not an object */

  Doc r(build_response_create(Dialect::GA));
  assert_str(r.str("type"), "response.create");
  fail_unless(!r.has("response"));
  Doc g(build_response_create(Dialect::GA, "Greet the caller.", "", "greeting"));
  assert_str(g.str("response.instructions"), "Greet the caller.");
  assert_str(g.str("response.metadata.purpose"), "greeting");

  Doc c(build_response_cancel());
  assert_str(c.str("type"), "response.cancel");
  fail_unless(!c.has("response_id"));
  Doc ci(build_response_cancel("resp_R1"));
  assert_str(ci.str("response_id"), "resp_R1");

  Doc ug(build_text_item(Dialect::GA, "user", "(caller connected)"));
  assert_str(ug.str("item.type"), "message");
  assert_str(ug.str("item.role"), "user");
  assert_str(ug.str("item.content[0].type"), "input_text");
  assert_str(ug.str("item.content[0].text"), "(caller connected)");
  Doc ag(build_text_item(Dialect::GA, "assistant", "Hi"));
  assert_str(ag.str("item.content[0].type"), "output_text");
  Doc ab(build_text_item(Dialect::Beta, "assistant", "Hi"));
  assert_str(ab.str("item.content[0].type"), "text");
  Doc sy(build_text_item(Dialect::Beta, "system", "ctx"));
  assert_str(sy.str("item.content[0].type"), "input_text");

  assert_str(Doc(build_input_audio_commit()).str("type"), "input_audio_buffer.commit");
  assert_str(Doc(build_input_audio_clear("x")).str("event_id"), "x");
}
GST_END_TEST;

GST_START_TEST(test_tools_normalize) {
  std::string out, err;
  std::vector<std::string> names;
  /* Chat Completions' nested shape is flattened, "strict" dropped */
  fail_unless(normalize_tools(R"({"tools":[{"type":"function","function":{"name":"get_weather","description":"d",
      "parameters":{"type":"object"},"strict":true}}]})",
                              out, names, err));
  Doc d(out);
  assert_str(d.str("[0].type"), "function");
  assert_str(d.str("[0].name"), "get_weather");
  fail_unless(!d.has("[0].function"));
  fail_unless(!d.has("[0].strict"));
  fail_unless_equals_int(names.size(), 1);
  /* type defaults to function; MCP tools pass through */
  fail_unless(normalize_tools(R"([{"name":"a"},{"type":"mcp","server_label":"x","server_url":"https://x"}])", out,
                              names, err));
  fail_unless_equals_int(names.size(), 1);
  assert_str(Doc(out).str("[1].type"), "mcp");
  /* errors */
  fail_if(normalize_tools("not json", out, names, err));
  fail_if(normalize_tools(R"({"x":1})", out, names, err));
  fail_if(normalize_tools(R"([{"type":"function","description":"no name"}])", out, names, err));
  fail_if(normalize_tools(R"([1])", out, names, err));
}
GST_END_TEST;

/* E.5: every beta name and its GA alias map to the same kind */
GST_START_TEST(test_event_aliasing) {
  struct Pair {
    const char *beta, *ga;
    EventKind kind;
  } pairs[] = {
      {"response.audio.delta", "response.output_audio.delta", EventKind::AudioDelta},
      {"response.audio.done", "response.output_audio.done", EventKind::AudioDone},
      {"response.audio_transcript.delta", "response.output_audio_transcript.delta", EventKind::AudioTranscriptDelta},
      {"response.audio_transcript.done", "response.output_audio_transcript.done", EventKind::AudioTranscriptDone},
      {"response.text.delta", "response.output_text.delta", EventKind::TextDelta},
      {"response.text.done", "response.output_text.done", EventKind::TextDone},
      {"conversation.item.created", "conversation.item.added", EventKind::ItemAdded},
  };
  for (const auto &p : pairs) {
    NameFamily fb, fg;
    fail_unless(event_kind(p.beta, &fb) == p.kind, "%s", p.beta);
    fail_unless(event_kind(p.ga, &fg) == p.kind, "%s", p.ga);
    fail_unless(fg == NameFamily::GAOnly, "%s", p.ga);
    /* conversation.item.created is still in the GA union: no hint */
    fail_unless(fb == (p.kind == EventKind::ItemAdded ? NameFamily::Common : NameFamily::BetaOnly), "%s", p.beta);
  }
  const char *common[] = {"session.created", "session.updated", "conversation.created",
                          "input_audio_buffer.committed", "input_audio_buffer.cleared",
                          "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                          "conversation.item.input_audio_transcription.delta",
                          "conversation.item.input_audio_transcription.completed",
                          "conversation.item.input_audio_transcription.failed", "conversation.item.truncated",
                          "conversation.item.deleted", "conversation.item.retrieved", "response.created",
                          "response.output_item.added", "response.output_item.done", "response.content_part.added",
                          "response.content_part.done", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.done", "rate_limits.updated", "error",
                          "output_audio_buffer.started", "output_audio_buffer.stopped", "output_audio_buffer.cleared"};
  for (const char *n : common) {
    NameFamily f;
    fail_if(event_kind(n, &f) == EventKind::Unknown, "%s", n);
    fail_unless(f == NameFamily::Common, "%s", n);
  }
  for (const char *n : {"conversation.item.done", "input_audio_buffer.timeout_triggered",
                        "conversation.item.input_audio_transcription.segment", "input_audio_buffer.dtmf_event_received"}) {
    NameFamily f;
    fail_if(event_kind(n, &f) == EventKind::Unknown, "%s", n);
    fail_unless(f == NameFamily::GAOnly, "%s", n);
  }
  fail_unless(event_kind("mcp_list_tools.in_progress") == EventKind::Ignored);
  fail_unless(event_kind("response.mcp_call.completed") == EventKind::Ignored);
  fail_unless(event_kind("response.something_new") == EventKind::Unknown);
}
GST_END_TEST;

static ServerEvent parse_ok(const std::string &text) {
  ServerEvent ev;
  std::string err;
  ParseStatus st = parse_server_event(text.data(), text.size(), ev, err);
  fail_unless(st == ParseStatus::Ok, "%s: %s", text.c_str(), err.c_str());
  return ev;
}

GST_START_TEST(test_parse_payloads) {
  /* session shapes tell the dialect */
  ServerEvent sc = parse_ok(R"({"type":"session.created","event_id":"event_01","session":{"type":"realtime",
      "object":"realtime.session","id":"sess_1","model":"gpt-realtime","audio":{}}})");
  fail_unless(sc.kind == EventKind::SessionCreated);
  assert_str(sc.session.id, "sess_1");
  assert_str(sc.session.model, "gpt-realtime");
  fail_unless(sc.session.shape_known && sc.session.shape == Dialect::GA);
  ServerEvent sb = parse_ok(R"({"type":"session.created","session":{"id":"s","modalities":["text","audio"],
      "input_audio_format":"pcm16"}})");
  fail_unless(sb.session.shape_known && sb.session.shape == Dialect::Beta);
  ServerEvent su = parse_ok(R"({"type":"session.created","session":{"id":"s"}})");
  fail_unless(!su.session.shape_known);

  ServerEvent ss = parse_ok(R"({"type":"input_audio_buffer.speech_started","event_id":"e2","audio_start_ms":10240,"item_id":"item_U1"})");
  fail_unless(ss.kind == EventKind::SpeechStarted);
  fail_unless_equals_int64(ss.audio_start_ms, 10240);
  assert_str(ss.item_id, "item_U1");
  ServerEvent sp = parse_ok(R"({"type":"input_audio_buffer.speech_stopped","audio_end_ms":12880,"item_id":"item_U1"})");
  fail_unless_equals_int64(sp.audio_end_ms, 12880);

  ServerEvent tc = parse_ok(R"({"type":"conversation.item.input_audio_transcription.completed","item_id":"item_U1",
      "content_index":0,"transcript":"I'd like to check my bill.","usage":{"type":"tokens","input_tokens":91,
      "output_tokens":9,"total_tokens":100}})");
  fail_unless(tc.kind == EventKind::InputTranscriptionCompleted);
  assert_str(tc.text, "I'd like to check my bill.");

  const uint8_t mu[] = {1, 2, 3, 0xff};
  std::string b64 = pa::base64_encode(mu, sizeof mu);
  for (const char *name : {"response.output_audio.delta", "response.audio.delta"}) {
    ServerEvent ad = parse_ok(std::string(R"({"type":")") + name +
                              R"(","response_id":"resp_R1","item_id":"item_A2","output_index":0,"content_index":0,"delta":")" +
                              b64 + "\"}");
    fail_unless(ad.kind == EventKind::AudioDelta);
    assert_str(ad.response_id, "resp_R1");
    assert_str(ad.item_id, "item_A2");
    fail_unless(ad.audio == std::vector<uint8_t>(mu, mu + sizeof mu));
  }

  ServerEvent fc = parse_ok(R"({"type":"response.function_call_arguments.done","response_id":"resp_R2","item_id":"item_F3",
      "output_index":0,"call_id":"call_7Hk2","name":"transfer_to_human","arguments":"{\"reason\":\"billing\"}"})");
  fail_unless(fc.kind == EventKind::FunctionCallArgumentsDone);
  assert_str(fc.call_id, "call_7Hk2");
  assert_str(fc.name, "transfer_to_human");
  assert_str(fc.text, R"({"reason":"billing"})");
  ServerEvent fcb = parse_ok(R"({"type":"response.function_call_arguments.done","item_id":"i","call_id":"c","arguments":"{}"})");
  assert_str(fcb.name, ""); /* beta: no name; taken from output_item.added */

  ServerEvent oi = parse_ok(R"({"type":"response.output_item.added","response_id":"r","output_index":1,"item":{"id":"item_F3",
      "type":"function_call","name":"lookup","call_id":"call_1","arguments":""}})");
  assert_str(oi.item_id, "item_F3");
  assert_str(oi.item.name, "lookup");
  assert_str(oi.item.call_id, "call_1");

  ServerEvent rd = parse_ok(R"({"type":"response.done","event_id":"e10","response":{"object":"realtime.response","id":"resp_R1",
      "status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[{"type":"message",
      "role":"assistant","id":"item_A2","object":"realtime.item","status":"incomplete","content":[{"type":"output_audio",
      "transcript":"Sure, I can"}]}],"usage":{"total_tokens":1523,"input_tokens":1207,"output_tokens":316,
      "input_token_details":{"text_tokens":1001,"audio_tokens":206,"cached_tokens":832},
      "output_token_details":{"text_tokens":71,"audio_tokens":245}}}})");
  fail_unless(rd.kind == EventKind::ResponseDone);
  assert_str(rd.response.id, "resp_R1");
  assert_str(rd.response_id, "resp_R1");
  assert_str(rd.response.status, "cancelled");
  assert_str(rd.response.reason, "turn_detected");
  fail_unless(rd.response.usage.present);
  fail_unless_equals_int64(rd.response.usage.total_tokens, 1523);
  fail_unless_equals_int64(rd.response.usage.input_cached_tokens, 832);
  fail_unless_equals_int64(rd.response.usage.output_audio_tokens, 245);
  fail_unless_equals_int(rd.response.output.size(), 1);
  fail_unless(rd.response.output[0].has_audio);
  assert_str(rd.response.output[0].transcript, "Sure, I can");
  ServerEvent rf = parse_ok(R"({"type":"response.done","response":{"id":"r","status":"failed","status_details":
      {"type":"failed","error":{"type":"server_error","code":"rate_limit_exceeded"}}}})");
  assert_str(rf.response.reason, "rate_limit_exceeded");

  ServerEvent er = parse_ok(R"({"type":"error","event_id":"e12","error":{"type":"invalid_request_error","code":"invalid_value",
      "message":"bad voice","param":"session.audio.output.voice","event_id":"cfg-1"}})");
  fail_unless(er.kind == EventKind::Error);
  assert_str(er.error.code, "invalid_value");
  assert_str(er.error.type, "invalid_request_error");
  assert_str(er.error.param, "session.audio.output.voice");
  assert_str(er.error.event_id, "cfg-1");
  ServerEvent en = parse_ok(R"({"type":"error","error":{"type":"server_error","code":null,"message":"m","param":null}})");
  assert_str(en.error.code, "");

  ServerEvent tr = parse_ok(R"({"type":"conversation.item.truncated","item_id":"item_A2","content_index":0,"audio_end_ms":1840})");
  fail_unless_equals_int64(tr.audio_end_ms, 1840);
}
GST_END_TEST;

/* The audio delta fast path and the json-glib path give the same event. */
GST_START_TEST(test_audio_delta_fast_path_equivalence) {
  const uint8_t mu[] = {9, 8, 7, 6, 5};
  std::string b64 = pa::base64_encode(mu, sizeof mu);
  const std::string variants[] = {
      /* usual order */
      R"({"type":"response.output_audio.delta","event_id":"e7","response_id":"resp_R1","item_id":"item_A2","output_index":0,"content_index":1,"delta":")" + b64 + "\"}",
      /* other order, spaces, unknown fields */
      "{ \"delta\" : \"" + b64 + R"(" , "content_index":1, "item_id":"item_A2","x":true,"y":null,"output_index":0,"response_id":"resp_R1","event_id":"e7","type":"response.output_audio.delta" })",
      /* nested member: json-glib path */
      R"({"type":"response.output_audio.delta","event_id":"e7","meta":{"a":[1,2]},"response_id":"resp_R1","item_id":"item_A2","output_index":0,"content_index":1,"delta":")" + b64 + "\"}",
      /* escapes: json-glib path */
      R"({"type":"response.output_audio.delta","event_id":"e\u0037","response_id":"resp_R1","item_id":"item_A2","output_index":0,"content_index":1,"delta":")" + b64 + "\"}",
  };
  for (const auto &v : variants) {
    ServerEvent ev = parse_ok(v);
    fail_unless(ev.kind == EventKind::AudioDelta, "%s", v.c_str());
    fail_unless(ev.family == NameFamily::GAOnly);
    assert_str(ev.event_id, "e7");
    assert_str(ev.response_id, "resp_R1");
    assert_str(ev.item_id, "item_A2");
    fail_unless_equals_int(ev.output_index, 0);
    fail_unless_equals_int(ev.content_index, 1);
    fail_unless(ev.audio == std::vector<uint8_t>(mu, mu + sizeof mu), "%s", v.c_str());
  }
  ServerEvent ev;
  std::string err;
  std::string trailing = R"({"type":"response.audio.delta","delta":"AAAA"} x)";
  fail_unless(parse_server_event(trailing.data(), trailing.size(), ev, err) == ParseStatus::NotJson);
  std::string missing = R"({"type":"response.audio.delta","item_id":"i"})";
  fail_unless(parse_server_event(missing.data(), missing.size(), ev, err) == ParseStatus::BadAudio);
  std::string truncated = R"({"type":"response.audio.delta","delta":"AAAA)";
  fail_unless(parse_server_event(truncated.data(), truncated.size(), ev, err) == ParseStatus::NotJson);
}
GST_END_TEST;

/* Every field of an event, to compare the two parsers. */
static std::string describe(const ServerEvent &e) {
  std::string s = std::to_string(static_cast<int>(e.kind)) + "|" + std::to_string(static_cast<int>(e.family)) + "|" +
                  e.type + "|" + e.event_id + "|" + e.response_id + "|" + e.item_id + "|" +
                  std::to_string(e.output_index) + "|" + std::to_string(e.content_index) + "|" + e.delta + "|" +
                  e.text + "|" + e.call_id + "|" + e.name + "|" + std::to_string(e.audio_start_ms) + "|" +
                  std::to_string(e.audio_end_ms) + "|audio:";
  for (uint8_t b : e.audio)
    s += std::to_string(b) + ",";
  s += "|err:" + e.error.type + "," + e.error.code + "," + e.error.message + "," + e.error.param + "," + e.error.event_id;
  auto usage = [](const Usage &u) {
    return std::to_string(u.present) + "," + std::to_string(u.total_tokens) + "," + std::to_string(u.input_tokens) +
           "," + std::to_string(u.output_tokens) + "," + std::to_string(u.input_text_tokens) + "," +
           std::to_string(u.input_audio_tokens) + "," + std::to_string(u.input_cached_tokens) + "," +
           std::to_string(u.output_text_tokens) + "," + std::to_string(u.output_audio_tokens);
  };
  auto item = [](const ItemInfo &i) {
    return i.id + "," + i.type + "," + i.role + "," + i.status + "," + i.name + "," + i.call_id + "," + i.arguments +
           "," + std::to_string(i.has_audio) + "," + i.transcript;
  };
  s += "|resp:" + e.response.id + "," + e.response.status + "," + e.response.reason + "," + usage(e.response.usage);
  for (const ItemInfo &i : e.response.output)
    s += "|out:" + item(i);
  s += "|session:" + e.session.id + "," + e.session.model + "," + std::to_string(e.session.shape_known);
  s += "|item:" + item(e.item);
  return s;
}

/* Both parsers on @text: the same status, event and error. */
static void check_same_event(const std::string &text) {
  ServerEvent a, b;
  std::string ea, eb;
  ParseStatus ra = parse_server_event(text.data(), text.size(), a, ea);
  ParseStatus rb = parse_server_event_reference(text.data(), text.size(), b, eb);
  fail_unless(ra == rb, "'%s': status %d, reference %d", text.c_str(), static_cast<int>(ra), static_cast<int>(rb));
  if (ra == ParseStatus::Ok || ra == ParseStatus::BadAudio)
    assert_str(describe(a), describe(b));
  if (ra == ParseStatus::BadAudio)
    assert_str(ea, eb);
}

static std::vector<std::string> server_event_corpus() {
  const uint8_t mu[] = {0xff, 0x7f, 0x00, 0x10, 0x42, 0x99, 0x20};
  const std::string b64 = pa::base64_encode(mu, sizeof mu);
  return {
      R"({"type":"response.output_audio.delta","event_id":"e1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":")" + b64 + "\"}",
      R"({"type":"response.audio.delta","event_id":"e2","response_id":"resp_1","item_id":"item_1","output_index":2,"content_index":1,"delta":")" + b64 + "\"}",
      R"({"type":"response.output_audio_transcript.delta","event_id":"e3","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":" I have tomorrow at 9:00 AM"})",
      R"({"type":"response.audio_transcript.delta","response_id":"resp_1","item_id":"item_1","delta":"Hello"})",
      R"({"type":"conversation.item.input_audio_transcription.delta","event_id":"e4","item_id":"item_2","content_index":0,"delta":" book"})",
      R"({"type":"input_audio_buffer.speech_started","event_id":"e5","audio_start_ms":1240,"item_id":"item_3"})",
      R"({"type":"input_audio_buffer.speech_stopped","event_id":"e6","audio_end_ms":2980,"item_id":"item_3"})",
      R"({"type":"input_audio_buffer.committed","event_id":"e7","previous_item_id":null,"item_id":"item_3"})",
      R"({"type":"response.output_audio.done","event_id":"e8","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0})",
      R"({"type":"response.output_audio_transcript.done","event_id":"e9","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"transcript":"Let me check the calendar."})",
      R"({"type":"response.output_text.delta","response_id":"resp_1","item_id":"item_1","delta":"x"})",
      R"({"type":"response.output_text.done","response_id":"resp_1","item_id":"item_1","text":"all of it"})",
      R"({"type":"response.function_call_arguments.delta","response_id":"resp_2","item_id":"item_4","output_index":1,"call_id":"call_1","delta":"{\"da"})",
      R"({"type":"response.function_call_arguments.done","response_id":"resp_2","item_id":"item_4","output_index":1,"call_id":"call_1","name":"bookAppointment","arguments":"{}"})",
      R"({"type":"conversation.item.truncated","event_id":"e10","item_id":"item_1","content_index":0,"audio_end_ms":1840})",
      R"({"type":"conversation.item.input_audio_transcription.segment","item_id":"item_2","text":"book an appointment","start":0.5,"end":1.75e0})",
      R"({"type":"response.content_part.added","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"part":{"type":"audio","transcript":""}})",
      R"({"type":"response.created","event_id":"e11","response":{"id":"resp_1","status":"in_progress","output":[]}})",
      R"({"type":"response.done","response":{"id":"resp_1","status":"completed","usage":{"total_tokens":42,"input_tokens":30,"output_tokens":12},"output":[{"id":"item_1","type":"message","role":"assistant","status":"completed","content":[{"type":"audio","transcript":"Hi"}]}]}})",
      R"({"type":"response.output_item.added","response_id":"resp_1","output_index":0,"item":{"id":"item_1","type":"message","role":"assistant","status":"in_progress","content":[]}})",
      R"({"type":"conversation.item.input_audio_transcription.completed","item_id":"item_2","content_index":0,"transcript":"book it","usage":{"type":"duration","seconds":1.2}})",
      R"({"type":"response.done","event_id":"e14","response":{"object":"realtime.response","id":"resp_3","status":"incomplete","status_details":{"type":"incomplete","reason":"max_output_tokens"},"usage":{"total_tokens":120,"input_tokens":80,"output_tokens":40,"input_token_details":{"text_tokens":20,"audio_tokens":60,"cached_tokens":0,"cached_tokens_details":{"text_tokens":0}},"output_token_details":{"text_tokens":10,"audio_tokens":30}},"output":[{"id":"item_5","type":"function_call","status":"completed","name":"bookAppointment","call_id":"call_2","arguments":"{}"},7,{"id":"item_6","type":"message","role":"assistant","content":[{"type":"output_text","text":"x"},{"type":"output_audio","transcript":"first"},{"type":"output_audio","transcript":"second"}]}],"metadata":null,"max_output_tokens":4096,"temperature":0.8}})",
      R"({"type":"response.done","response":{"id":"resp_4","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","code":null}},"output":null,"usage":{"total_tokens":1.5e1}}})",
      R"({"type":"response.done","response":{"id":"resp_5","status":"failed","status_details":{"reason":null,"error":{"type":"server_error","code":"rate_limited"}},"usage":{"total_tokens":12345678901234567}}})",
      R"({"type":"response.created","response_id":"resp_other","response":{"id":"resp_6","status":"in_progress","output":[],"conversation_id":"conv_1","voice":"marin","modalities":["audio","text"]}})",
      R"({"type":"response.output_item.done","event_id":"e15","response_id":"resp_1","output_index":0,"item":{"id":"item_1","object":"realtime.item","type":"message","role":"assistant","status":"completed","content":[{"type":"output_audio","transcript":"Goodbye"}]}})",
      R"({"type":"conversation.item.added","event_id":"e16","previous_item_id":"item_0","item":{"id":"item_7","type":"message","role":"user","content":[{"type":"input_audio","transcript":null}]}})",
      R"({"type":"conversation.item.done","item_id":"item_8","item":{"id":7,"type":"function_call_output","call_id":"call_2","output":"{}"}})",
      R"({"type":"conversation.item.retrieved","item":{"id":"item_9","type":"message","content":[[{"type":"audio"}],{"type":"audio","transcript":"deep"}]}})",
      R"({"type":"response.output_item.added","output_index":1,"item":{"id":"item_1","type":"message","content":[{"type":"audio","transcript":"caf\u00e9"}]}})",
      R"({"type":"response.output_item.added","output_index":1.0,"item":{"id":"item_1"}})",
      R"({"type":"conversation.item.input_audio_transcription.completed","item_id":"item_2","content_index":0,"transcript":"book it","usage":{"type":"tokens","total_tokens":7,"input_tokens":5,"input_token_details":{"text_tokens":0,"audio_tokens":5},"output_tokens":2}})",
      R"({"type":"conversation.item.input_audio_transcription.failed","item_id":"item_2","content_index":0,"error":{"type":"transcription_error","code":"audio_unintelligible","message":"Audio could not be transcribed","param":"x"}})",
      R"({"type":"error","event_id":"e17","error":{"type":"invalid_request_error","code":"invalid_value","message":"bad","param":"session.voice","event_id":"evt_client_1"}})",
      R"({"type":"error","error":"just a string"})",
      R"({"type":"response.done","response":{"id":"a","output":[{"content":[{"content":[{"content":[{"content":[{"content":[{"content":[{"content":[{"content":[{"content":[]}]}]}]}]}]}]}]}]}]}})",
      R"({"type":"input_audio_buffer.speech_started","event_id":"e18","audio_start_ms":640,"item_id":"item_10","extra":{"a":[1,2]}})",
      R"({"type":"response.output_audio_transcript.delta","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":" at nine","logprobs":[]})",
      R"({"type":"response.function_call_arguments.done","response_id":"resp_2","item_id":"item_4","output_index":1,"call_id":"call_1","name":"x","arguments":"{}","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9})",
      R"({"type":"conversation.item.truncated","item_id":"item_1","content_index":0,"audio_end_ms":1.5e3,"x":{}})",
      R"({"type":"response.output_audio.delta","item_id":"i","delta":"AAAA","x":[]})",
      R"({"type":"session.updated","session":{"id":"sess_1","type":"realtime","audio":{"output":{"voice":"marin"}}}})",
      R"({"type":"error","event_id":"e12","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key","param":null,"event_id":null}})",
      R"({"type":"session.created","event_id":"e13","session":{"id":"sess_1","type":"realtime","model":"gpt-realtime"}})",
      R"({"type":"rate_limits.updated","rate_limits":[{"name":"requests","limit":1000,"remaining":999,"reset_seconds":60}]})",
      R"({"type":"response.brand_new","x":1,"y":-2.5e-3,"z":true})",
      R"({"type":"input_audio_buffer.speech_started","audio_start_ms":"soon","item_id":7})",
      R"({"type":"input_audio_buffer.committed","item_id":2.5,"response_id":true,"event_id":null})",
      R"({"type":"response.output_audio.delta","item_id":"i"})",
      R"({"type":"response.output_audio.delta","item_id":"i","delta":5})",
      R"({"type":"response.output_audio_transcript.delta","item_id":"i","delta":"caf\u00e9 \"quoted\""})",
      "{\"type\":\"response.output_audio_transcript.delta\",\"item_id\":\"i\",\"delta\":\"caf\xc3\xa9\"}",
      R"({"type":"input_audio_buffer.speech_stopped","audio_end_ms":12345678901234567890})",
      R"({"type":"input_audio_buffer.speech_stopped","audio_end_ms":2.5,"output_index":1e2})",
      R"({"type":"input_audio_buffer.speech_stopped","item_id":"a","item_id":"b"})",
      R"({"type":"input_audio_buffer.committed","x":123456789012345678901234567890,"y":1e400,"z":-0.0e-0,"content_index":-0})",
      R"( { "type" : "input_audio_buffer.committed" , "item_id" : "item_3" } )",
      R"({"type":"input_audio_buffer.committed","item_id":"item_3"} x)",
      R"({"item_id":"item_3"})",
      R"({"type":7})",
      R"({"type":""})",
      "[]",
      "",
  };
}

/* The fast path and json-glib agree on every event above and on random
 * edits of each: byte flips, deletions, JSON-significant insertions. */
GST_START_TEST(test_server_event_fast_path_agrees) {
  for (const auto &t : server_event_corpus())
    check_same_event(t);
  std::mt19937 rng(11);
  for (const auto &base : server_event_corpus())
    pa_for_each_json_mutation(base, 400, rng, check_same_event);
}
GST_END_TEST;

GST_START_TEST(test_parse_bad_input) {
  ServerEvent ev;
  std::string err;
  fail_unless(parse_server_event("{not json", 9, ev, err) == ParseStatus::NotJson);
  fail_unless(parse_server_event("[1,2]", 5, ev, err) == ParseStatus::NotObject);
  fail_unless(parse_server_event("{\"x\":1}", 7, ev, err) == ParseStatus::NoType);
  std::string bad = R"({"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"@@@"})";
  fail_unless(parse_server_event(bad.data(), bad.size(), ev, err) == ParseStatus::BadAudio);
  std::string unk = R"({"type":"response.brand_new","x":1})";
  fail_unless(parse_server_event(unk.data(), unk.size(), ev, err) == ParseStatus::Ok);
  fail_unless(ev.kind == EventKind::Unknown);
  /* wrong member types are read as missing, not a crash */
  std::string odd = R"({"type":"input_audio_buffer.speech_started","audio_start_ms":"soon","item_id":7})";
  fail_unless(parse_server_event(odd.data(), odd.size(), ev, err) == ParseStatus::Ok);
  fail_unless_equals_int64(ev.audio_start_ms, -1);
}
GST_END_TEST;

GST_START_TEST(test_ws_url) {
  WsUrl u;
  std::string err;
  fail_unless(parse_ws_url("wss://api.openai.com/v1/realtime?model=gpt-realtime", u, err));
  fail_unless(u.tls);
  assert_str(u.host, "api.openai.com");
  fail_unless_equals_int(u.port, 443);
  assert_str(u.path, "/v1/realtime?model=gpt-realtime");
  fail_unless(parse_ws_url("ws://127.0.0.1:8765", u, err));
  fail_if(u.tls);
  fail_unless_equals_int(u.port, 8765);
  assert_str(u.path, "/");
  fail_unless(parse_ws_url("ws://[::1]:9000/v1?x=1", u, err));
  assert_str(u.host, "::1");
  fail_unless_equals_int(u.port, 9000);
  fail_unless(parse_ws_url("ws://host?model=m", u, err));
  assert_str(u.path, "/?model=m");
  fail_if(parse_ws_url("https://api.openai.com/v1/realtime", u, err));
  fail_if(parse_ws_url("wss://user:pw@host/", u, err));
  fail_if(parse_ws_url("ws://host:99999/", u, err));
  fail_if(parse_ws_url("ws:///path", u, err));
}
GST_END_TEST;

static Suite *rt_protocol_suite(void) {
  Suite *s = suite_create("rt-protocol");
  TCase *tc = tcase_create("protocol");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_session_update_ga);
  tcase_add_test(tc, test_session_update_ga_pcm_and_vad_variants);
  tcase_add_test(tc, test_session_update_beta);
  tcase_add_test(tc, test_partial_updates);
  tcase_add_test(tc, test_client_events);
  tcase_add_test(tc, test_tools_normalize);
  tcase_add_test(tc, test_event_aliasing);
  tcase_add_test(tc, test_parse_payloads);
  tcase_add_test(tc, test_audio_delta_fast_path_equivalence);
  tcase_add_test(tc, test_server_event_fast_path_agrees);
  tcase_add_test(tc, test_parse_bad_input);
  tcase_add_test(tc, test_ws_url);
  return s;
}

GST_CHECK_MAIN(rt_protocol)
