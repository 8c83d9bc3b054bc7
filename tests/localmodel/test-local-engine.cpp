/* gst-phone-agent: the embedded local model over its WebSocket, as a client
 * sees it: both dialects' event names and shapes, a spoken turn (speech in,
 * transcript, reply audio out), a tool call round trip, truncation, barge-in,
 * canned mode and errors. 127.0.0.1 only. */
#include "../common/pa-check.h"

#include <algorithm>
#include <memory>

#include "local-engine.h"
#include "local-tts.h"
#include "pa-audio.h"
#include "rt-client.h"

using pa::local::Engine;
using pa::local::EngineConfig;

namespace {

std::unique_ptr<Engine> start_engine(EngineConfig cfg = EngineConfig()) {
  auto e = std::make_unique<Engine>(cfg);
  GError *err = nullptr;
  fail_unless(e->start(&err), "engine did not start: %s", err ? err->message : "?");
  fail_unless(e->url().rfind("ws://127.0.0.1:", 0) == 0, "url %s", e->url().c_str());
  return e;
}

EngineConfig fast_config() {
  EngineConfig c;
  c.realtime_factor = 0; /* no pacing: tests stay fast */
  return c;
}

std::string source_path(const char *rel) {
  const char *root = g_getenv("PA_SOURCE_ROOT");
  fail_unless(root != nullptr, "PA_SOURCE_ROOT not set");
  gchar *p = g_build_filename(root, rel, nullptr);
  std::string s(p);
  g_free(p);
  return s;
}

std::string receptionist_tools() {
  gchar *contents = nullptr;
  fail_unless(g_file_get_contents(source_path("agents/receptionist-tools.json").c_str(), &contents, nullptr, nullptr));
  std::string s(contents);
  g_free(contents);
  return s;
}

/* Caller speech: espeak-ng with another variant than the agent's voice. */
std::vector<int16_t> caller_speech(const std::string &text, int rate) {
  pa::local::Speech sp;
  std::string err;
  fail_unless(pa::local::tts_synthesize(text, "en-us+f2", rate, sp, err, 150), "%s", err.c_str());
  return sp.pcm;
}

std::vector<uint8_t> to_mulaw(const std::vector<int16_t> &pcm) {
  std::vector<uint8_t> out(pcm.size());
  pa::mulaw_encode_block(pcm.data(), out.data(), pcm.size());
  return out;
}

/* Appends @bytes in frames of @frame bytes (as a relay would). */
void append(RtClient &c, const std::vector<uint8_t> &bytes, size_t frame) {
  for (size_t i = 0; i < bytes.size(); i += frame) {
    size_t n = std::min(frame, bytes.size() - i);
    c.send("{\"type\":\"input_audio_buffer.append\",\"audio\":\"" + pa::base64_encode(bytes.data() + i, n) + "\"}");
  }
}

/* A caller turn in μ-law: silence, speech, trailing silence. */
std::vector<uint8_t> mulaw_turn(const std::string &text, int lead_ms = 600, int tail_ms = 1200) {
  std::vector<uint8_t> out(static_cast<size_t>(lead_ms) * 8, pa::kMulawSilence);
  auto speech = to_mulaw(caller_speech(text, 8000));
  out.insert(out.end(), speech.begin(), speech.end());
  out.insert(out.end(), static_cast<size_t>(tail_ms) * 8, pa::kMulawSilence);
  return out;
}

const char *kGaPcmuUpdate = R"({"type":"session.update","event_id":"cfg-1","session":{"type":"realtime",
  "output_modalities":["audio"],"instructions":"Be a receptionist.",
  "audio":{"input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"local"},
    "turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,"silence_duration_ms":500}},
  "output":{"format":{"type":"audio/pcmu"},"voice":"alloy"}}}})";

std::string ga_update_with_tools(bool vad) {
  std::string s = R"({"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcmu"},"transcription":{"model":"local"},"turn_detection":)";
  s += vad ? R"({"type":"server_vad"})" : "null";
  s += R"(},"output":{"format":{"type":"audio/pcmu"}}},"tools":)" + receptionist_tools() + "}}";
  return s;
}

/* Removes delta events, so sequences compare on structure. */
std::vector<std::string> without_deltas(const std::vector<std::string> &t) {
  std::vector<std::string> out;
  for (const auto &s : t)
    if (s.size() < 6 || s.compare(s.size() - 6, 6, ".delta") != 0)
      out.push_back(s);
  return out;
}

std::string join(const std::vector<std::string> &v) {
  std::string s;
  for (const auto &x : v)
    s += x + " ";
  return s;
}

/* Sum of the decoded audio deltas of @type from index @from, and the transcript deltas. */
size_t audio_bytes(RtClient &c, size_t from, const std::string &type) {
  size_t total = 0;
  for (size_t i = from; i < c.size(); i++)
    if (c.type_of(i) == type) {
      std::vector<uint8_t> b;
      fail_unless(pa::base64_decode(jstr(c.at(i), "delta"), b), "delta is not base64");
      total += b.size();
    }
  return total;
}

std::string transcript_deltas(RtClient &c, size_t from, const std::string &type) {
  std::string s;
  for (size_t i = from; i < c.size(); i++)
    if (c.type_of(i) == type)
      s += jstr(c.at(i), "delta");
  return s;
}

guint64 stat(Engine &e, const char *name) {
  GstStructure *s = e.stats();
  guint64 v = 0;
  fail_unless(gst_structure_get_uint64(s, name, &v), "no stat %s", name);
  gst_structure_free(s);
  return v;
}

} // namespace

/* GA: session shapes, session.update, and a spoken response's event sequence. */
GST_START_TEST(test_ga_dialect) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url() + "?model=gpt-realtime"));
  JsonObject *created = c.wait_for("session.created");
  fail_unless(created != nullptr);
  JsonObject *s = jobj(created, "session");
  assert_str(jstr(s, "type"), "realtime");
  assert_str(jstr(s, "model"), "gpt-realtime");
  JsonObject *in = jobj(jobj(s, "audio"), "input");
  assert_str(jstr(jobj(in, "format"), "type"), "audio/pcm");
  fail_unless_equals_int(jint(jobj(in, "format"), "rate"), 24000);
  assert_str(jstr(jobj(in, "turn_detection"), "type"), "server_vad");
  fail_if(json_object_has_member(s, "input_audio_format"), "GA session with a beta field");

  c.send(kGaPcmuUpdate);
  JsonObject *updated = c.wait_for("session.updated");
  fail_unless(updated != nullptr);
  s = jobj(updated, "session");
  in = jobj(jobj(s, "audio"), "input");
  assert_str(jstr(jobj(in, "format"), "type"), "audio/pcmu");
  assert_str(jstr(jobj(jobj(jobj(s, "audio"), "output"), "format"), "type"), "audio/pcmu");
  assert_str(jstr(jobj(in, "transcription"), "model"), "local");
  assert_str(jstr(s, "instructions"), "Be a receptionist.");

  size_t mark = c.size();
  c.send(R"({"type":"response.create","response":{"instructions":"Say: \"Hello there, this is a test.\""}})");
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr, "no response.done; got %s", join(c.types(mark)).c_str());
  std::vector<std::string> expect = {"response.created",
                                     "rate_limits.updated",
                                     "response.output_item.added",
                                     "conversation.item.added",
                                     "response.content_part.added",
                                     "response.output_audio.done",
                                     "response.output_audio_transcript.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "conversation.item.done",
                                     "response.done"};
  auto got = without_deltas(c.types(mark));
  assert_str(join(got), join(expect));
  /* deltas only inside the content part */
  auto all = c.types(mark);
  auto first_delta = std::find(all.begin(), all.end(), "response.output_audio.delta");
  auto part_added = std::find(all.begin(), all.end(), "response.content_part.added");
  auto audio_done = std::find(all.begin(), all.end(), "response.output_audio.done");
  fail_unless(first_delta != all.end() && part_added < first_delta && first_delta < audio_done);
  for (size_t i = mark; i < c.size(); i++)
    if (c.type_of(i) == "response.audio.delta" || c.type_of(i) == "conversation.item.created")
      fail("beta event %s in a GA session", c.type_of(i).c_str());

  size_t bytes = audio_bytes(c, mark, "response.output_audio.delta");
  fail_unless(bytes > 8 * 800, "only %zu bytes of μ-law (%zu ms)", bytes, bytes / 8);
  assert_str(transcript_deltas(c, mark, "response.output_audio_transcript.delta"), "Hello there, this is a test.");

  JsonObject *r = jobj(done, "response");
  assert_str(jstr(r, "status"), "completed");
  assert_str(jstr(r, "object"), "realtime.response");
  fail_unless(jnull(r, "status_details"));
  JsonObject *usage = jobj(r, "usage");
  fail_unless(jint(usage, "output_tokens") > 0);
  fail_unless(json_object_has_member(jobj(usage, "output_token_details"), "audio_tokens"));
  JsonArray *out = jarr(r, "output");
  fail_unless_equals_int(json_array_get_length(out), 1);
  JsonObject *item = json_array_get_object_element(out, 0);
  assert_str(jstr(item, "object"), "realtime.item");
  assert_str(jstr(item, "role"), "assistant");
  JsonObject *part = json_array_get_object_element(jarr(item, "content"), 0);
  assert_str(jstr(part, "type"), "output_audio");
  assert_str(jstr(part, "transcript"), "Hello there, this is a test.");
  fail_unless(json_array_get_length(jarr(r, "output_modalities")) == 1);
}
GST_END_TEST;

/* Beta by header: flat session fields and beta event names. */
GST_START_TEST(test_beta_dialect_header) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url(), true));
  JsonObject *created = c.wait_for("session.created");
  fail_unless(created != nullptr);
  JsonObject *s = jobj(created, "session");
  assert_str(jstr(s, "input_audio_format"), "pcm16");
  assert_str(jstr(s, "output_audio_format"), "pcm16");
  fail_if(json_object_has_member(s, "audio"), "beta session with GA audio object");
  fail_unless(json_array_get_length(jarr(s, "modalities")) == 2);

  size_t mark = c.size();
  c.send(R"({"type":"response.create","response":{"instructions":"Say: Good morning."}})");
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr);
  std::vector<std::string> expect = {"response.created",
                                     "rate_limits.updated",
                                     "response.output_item.added",
                                     "conversation.item.created",
                                     "response.content_part.added",
                                     "response.audio.done",
                                     "response.audio_transcript.done",
                                     "response.content_part.done",
                                     "response.output_item.done",
                                     "response.done"};
  assert_str(join(without_deltas(c.types(mark))), join(expect));
  size_t bytes = audio_bytes(c, mark, "response.audio.delta");
  fail_unless(bytes > 48 * 300 && bytes % 2 == 0, "%zu bytes of pcm16", bytes);
  assert_str(transcript_deltas(c, mark, "response.audio_transcript.delta"), "Good morning.");
  c.set_cursor(mark);
  JsonObject *pa = c.wait_for("response.content_part.added");
  assert_str(jstr(jobj(pa, "part"), "type"), "audio");
  JsonObject *r = jobj(done, "response");
  assert_str(jstr(r, "output_audio_format"), "pcm16");
  fail_unless(json_object_has_member(r, "modalities"));

  /* browser-style subprotocols: "realtime" is chosen, the beta marker counts */
  const char *beta_protocols[] = {"realtime", "openai-insecure-api-key.sk-test", "openai-beta.realtime-v1", nullptr};
  RtClient b;
  fail_unless(b.connect(engine->url(), false, beta_protocols));
  assert_str(b.protocol(), "realtime");
  fail_unless(json_object_has_member(jobj(b.wait_for("session.created"), "session"), "input_audio_format"));
  const char *ga_protocols[] = {"realtime", nullptr};
  RtClient g;
  fail_unless(g.connect(engine->url(), false, ga_protocols));
  assert_str(jstr(jobj(g.wait_for("session.created"), "session"), "type"), "realtime");
}
GST_END_TEST;

/* Beta by shape: a flat session.update switches a header-less session. */
GST_START_TEST(test_beta_dialect_shape) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(R"({"type":"session.update","session":{"modalities":["text","audio"],"voice":"alloy",
    "input_audio_format":"g711_ulaw","output_audio_format":"g711_ulaw","turn_detection":{"type":"server_vad"},
    "input_audio_transcription":{"model":"whisper-1"},"temperature":0.8}})");
  JsonObject *updated = c.wait_for("session.updated");
  fail_unless(updated != nullptr);
  JsonObject *s = jobj(updated, "session");
  assert_str(jstr(s, "input_audio_format"), "g711_ulaw");
  assert_str(jstr(s, "output_audio_format"), "g711_ulaw");
  assert_str(jstr(jobj(s, "input_audio_transcription"), "model"), "whisper-1");
  size_t mark = c.size();
  c.send(R"({"type":"response.create"})"); /* no input yet: the agent's greeting */
  fail_unless(c.wait_for("response.done") != nullptr);
  auto t = c.types(mark);
  fail_unless(std::count(t.begin(), t.end(), "response.audio.delta") > 0, "%s", join(t).c_str());
  fail_unless(std::count(t.begin(), t.end(), "response.output_audio.delta") == 0);
  std::string said = transcript_deltas(c, mark, "response.audio_transcript.delta");
  fail_unless(said.find("Riverside Dental") != std::string::npos, "greeting: %s", said.c_str());
  fail_unless(audio_bytes(c, mark, "response.audio.delta") > 8 * 2000, "short greeting audio");
}
GST_END_TEST;

/* A spoken caller turn: VAD events, commit, transcript, reply with audio. */
GST_START_TEST(test_full_turn) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(kGaPcmuUpdate);
  fail_unless(c.wait_for("session.updated") != nullptr);
  size_t mark = c.size();
  append(c, mulaw_turn("Can I speak to a real person please?"), 160);

  JsonObject *started = c.wait_for("input_audio_buffer.speech_started");
  fail_unless(started != nullptr, "no speech_started: %s", join(c.types(mark)).c_str());
  std::string item_id = jstr(started, "item_id");
  gint64 start_ms = jint(started, "audio_start_ms");
  /* speech begins at 600 ms; prefix padding is 300 ms */
  fail_unless(start_ms >= 200 && start_ms <= 500, "audio_start_ms %" G_GINT64_FORMAT, start_ms);
  JsonObject *stopped = c.wait_for("input_audio_buffer.speech_stopped");
  fail_unless(stopped != nullptr);
  gint64 stopped_at = g_get_monotonic_time();
  assert_str(jstr(stopped, "item_id"), item_id);
  gint64 end_ms = jint(stopped, "audio_end_ms");
  fail_unless(end_ms > start_ms + 1000, "audio_end_ms %" G_GINT64_FORMAT, end_ms);
  JsonObject *committed = c.wait_for("input_audio_buffer.committed");
  assert_str(jstr(committed, "item_id"), item_id);
  JsonObject *added = c.wait_for("conversation.item.added");
  JsonObject *user = jobj(added, "item");
  assert_str(jstr(user, "role"), "user");
  assert_str(jstr(json_array_get_object_element(jarr(user, "content"), 0), "type"), "input_audio");
  fail_unless(c.wait_for("conversation.item.done") != nullptr);
  JsonObject *tr = c.wait_for("conversation.item.input_audio_transcription.completed", 20000);
  fail_unless(tr != nullptr, "no transcript: %s", join(c.types(mark)).c_str());
  assert_str(jstr(tr, "item_id"), item_id);
  std::string transcript = jstr(tr, "transcript");
  GST_INFO("caller transcript: '%s'", transcript.c_str());
  fail_if(transcript.empty(), "empty transcript");
  assert_str(jstr(jobj(tr, "usage"), "type"), "duration");

  size_t resp_mark = c.cursor();
  fail_unless(c.wait_for("response.output_audio.delta", 20000) != nullptr);
  GST_INFO("end of turn to first reply audio: %" G_GINT64_FORMAT " ms (transcription + agent + synthesis)",
           (g_get_monotonic_time() - stopped_at) / 1000);
  c.set_cursor(resp_mark);
  JsonObject *done = c.wait_for("response.done", 20000);
  fail_unless(done != nullptr, "no response: %s", join(c.types(mark)).c_str());
  assert_str(jstr(jobj(done, "response"), "status"), "completed");
  size_t bytes = audio_bytes(c, resp_mark, "response.output_audio.delta");
  fail_unless(bytes >= 8 * 500, "reply audio only %zu ms", bytes / 8);
  std::string reply = transcript_deltas(c, resp_mark, "response.output_audio_transcript.delta");
  GST_INFO("agent reply: '%s'", reply.c_str());
  fail_if(reply.empty());
  fail_unless(stat(*engine, "transcriptions") == 1);
  fail_unless(stat(*engine, "turns") == 1);
}
GST_END_TEST;

/* Function call protocol: call, output, reply quoting the output; then an
 * end_call action. Text input keeps it deterministic. */
GST_START_TEST(test_tool_round_trip) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(ga_update_with_tools(false));
  JsonObject *updated = c.wait_for("session.updated");
  fail_unless_equals_int(json_array_get_length(jarr(jobj(updated, "session"), "tools")), 4);

  c.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"user",
    "content":[{"type":"input_text","text":"I'd like to book an appointment for Tuesday morning."}]}})");
  JsonObject *added = c.wait_for("conversation.item.added");
  assert_str(jstr(json_array_get_object_element(jarr(jobj(added, "item"), "content"), 0), "type"), "input_text");
  fail_unless(c.wait_for("conversation.item.done") != nullptr);

  size_t mark = c.size();
  c.send(R"({"type":"response.create"})");
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr);
  std::vector<std::string> expect = {"response.created", "rate_limits.updated", "response.output_item.added",
                                     "conversation.item.added", "response.content_part.added",
                                     "response.output_audio.done", "response.output_audio_transcript.done",
                                     "response.content_part.done", "response.output_item.done",
                                     "conversation.item.done",
                                     /* the call */
                                     "response.output_item.added", "conversation.item.added",
                                     "response.function_call_arguments.done", "response.output_item.done",
                                     "conversation.item.done", "response.done"};
  assert_str(join(without_deltas(c.types(mark))), join(expect));
  assert_str(transcript_deltas(c, mark, "response.output_audio_transcript.delta"), "Let me check the calendar.");
  c.set_cursor(mark);
  c.wait_for("response.output_item.done");
  JsonObject *fc_added = c.wait_for("response.output_item.added");
  JsonObject *fc = jobj(fc_added, "item");
  assert_str(jstr(fc, "type"), "function_call");
  assert_str(jstr(fc, "name"), "findAvailability");
  std::string call_id = jstr(fc, "call_id");
  std::string args_delta;
  for (size_t i = c.cursor(); i < c.size(); i++)
    if (c.type_of(i) == "response.function_call_arguments.delta") {
      assert_str(jstr(c.at(i), "call_id"), call_id);
      args_delta += jstr(c.at(i), "delta");
    }
  JsonObject *args_done = c.wait_for("response.function_call_arguments.done");
  assert_str(jstr(args_done, "name"), "findAvailability");
  assert_str(jstr(args_done, "arguments"), args_delta);
  assert_str(jstr(args_done, "arguments"), R"({"day":"Tuesday","period":"morning"})");
  JsonArray *out = jarr(jobj(done, "response"), "output");
  fail_unless_equals_int(json_array_get_length(out), 2);
  assert_str(jstr(json_array_get_object_element(out, 1), "arguments"), R"({"day":"Tuesday","period":"morning"})");

  /* the tool's output, then a reply that quotes it */
  c.set_cursor(c.size());
  c.send(R"({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":")" + call_id +
         R"(","output":"{\"slots\":[\"Tuesday at 10:30 AM\",\"Tuesday at 2 PM\"]}"}})");
  fail_unless(c.wait_for("conversation.item.added") != nullptr);
  mark = c.size();
  c.send(R"({"type":"response.create"})");
  fail_unless(c.wait_for("response.done") != nullptr);
  assert_str(transcript_deltas(c, mark, "response.output_audio_transcript.delta"),
             "I have Tuesday at 10:30 AM or Tuesday at 2 PM. Would the first one work for you?");

  /* "yes" books the first slot */
  c.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"user",
    "content":[{"type":"input_text","text":"yes please"}]}})");
  mark = c.size();
  c.send(R"({"type":"response.create"})");
  JsonObject *book = c.wait_for("response.function_call_arguments.done");
  fail_unless(book != nullptr, "%s", join(c.types(mark)).c_str());
  assert_str(jstr(book, "name"), "bookAppointment");
  fail_unless(jstr(book, "arguments").find("\"slot\":\"Tuesday at 10:30 AM\"") != std::string::npos, "%s",
              jstr(book, "arguments").c_str());
  std::string book_id = jstr(book, "call_id");
  fail_unless(c.wait_for("response.done") != nullptr);
  c.send(R"({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":")" + book_id +
         R"(","output":"{\"slot\":\"Tuesday at 10:30 AM\",\"confirmation\":\"RD-4821\"}"}})");
  mark = c.size();
  c.send(R"({"type":"response.create"})");
  fail_unless(c.wait_for("response.done") != nullptr);
  std::string said = transcript_deltas(c, mark, "response.output_audio_transcript.delta");
  fail_unless(said.find("RD-4821") != std::string::npos, "reply: %s", said.c_str());

  /* goodbye: a spoken goodbye and an end_call call in one response */
  c.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"user",
    "content":[{"type":"input_text","text":"No, that's it. Goodbye!"}]}})");
  mark = c.size();
  c.send(R"({"type":"response.create"})");
  JsonObject *end = c.wait_for("response.function_call_arguments.done");
  fail_unless(end != nullptr);
  assert_str(jstr(end, "name"), "end_call");
  fail_unless(c.wait_for("response.done") != nullptr);
  fail_unless(transcript_deltas(c, mark, "response.output_audio_transcript.delta").find("Goodbye") !=
              std::string::npos);
  fail_unless_equals_int(stat(*engine, "tool-calls"), 3);
}
GST_END_TEST;

/* Beta names for function calls: arguments.done without name; tools not
 * declared by the session are not called. */
GST_START_TEST(test_tools_beta_and_undeclared) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url(), true));
  fail_unless(c.wait_for("session.created") != nullptr);
  /* no tools declared: the agent says it cannot */
  c.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"user",
    "content":[{"type":"input_text","text":"Can I talk to a human?"}]}})");
  size_t mark = c.size();
  c.send(R"({"type":"response.create","response":{"modalities":["text"]}})");
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr);
  auto t = c.types(mark);
  fail_unless(std::count(t.begin(), t.end(), "response.output_item.added") == 1, "%s", join(t).c_str());
  fail_unless(std::count(t.begin(), t.end(), "response.text.delta") == 1, "%s", join(t).c_str());
  fail_unless(std::count(t.begin(), t.end(), "response.audio.delta") == 0);
  c.set_cursor(mark);
  JsonObject *text_done = c.wait_for("response.text.done");
  fail_unless(jstr(text_done, "text").find("Sorry") != std::string::npos, "%s", jstr(text_done, "text").c_str());

  c.send(R"({"type":"session.update","session":{"tools":[{"type":"function","name":"transfer_to_human",
    "parameters":{"type":"object","properties":{"reason":{"type":"string"}}}}]}})");
  fail_unless(c.wait_for("session.updated") != nullptr);
  c.send(R"({"type":"conversation.item.create","item":{"type":"message","role":"user",
    "content":[{"type":"input_text","text":"Can I talk to a human?"}]}})");
  mark = c.size();
  c.send(R"({"type":"response.create"})");
  JsonObject *args = c.wait_for("response.function_call_arguments.done");
  fail_unless(args != nullptr, "%s", join(c.types(mark)).c_str());
  fail_if(json_object_has_member(args, "name"), "beta arguments.done carries a name");
  fail_unless(jstr(args, "arguments").find("caller asked for a person") != std::string::npos);
  fail_unless(c.wait_for("response.done") != nullptr);
}
GST_END_TEST;

/* conversation.item.truncate: validation and the truncated event. */
GST_START_TEST(test_truncate) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(kGaPcmuUpdate);
  fail_unless(c.wait_for("session.updated") != nullptr);
  c.send(R"({"type":"response.create","response":{"instructions":"Say: This sentence is long enough to be cut short."}})");
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr);
  JsonObject *item = json_array_get_object_element(jarr(jobj(done, "response"), "output"), 0);
  std::string id = jstr(item, "id");
  size_t bytes = audio_bytes(c, 0, "response.output_audio.delta");
  gint64 len_ms = static_cast<gint64>(bytes / 8);

  /* beyond the audio: an error that echoes our event_id */
  c.send(R"({"type":"conversation.item.truncate","event_id":"trunc-1","item_id":")" + id +
         R"(","content_index":0,"audio_end_ms":)" + std::to_string(len_ms + 500) + "}");
  JsonObject *err = c.wait_for("error");
  fail_unless(err != nullptr);
  JsonObject *e = jobj(err, "error");
  assert_str(jstr(e, "code"), "invalid_value");
  assert_str(jstr(e, "event_id"), "trunc-1");
  assert_str(jstr(e, "param"), "audio_end_ms");
  fail_unless(jstr(e, "message").find("shorter than") != std::string::npos);

  /* at what was heard */
  c.send(R"({"type":"conversation.item.truncate","item_id":")" + id + R"(","content_index":0,"audio_end_ms":700})");
  JsonObject *tr = c.wait_for("conversation.item.truncated");
  fail_unless(tr != nullptr);
  assert_str(jstr(tr, "item_id"), id);
  fail_unless_equals_int(jint(tr, "audio_end_ms"), 700);
  fail_unless_equals_int(jint(tr, "content_index"), 0);
  /* the item is now 700 ms long, and its unheard transcript is gone */
  c.send(R"({"type":"conversation.item.retrieve","item_id":")" + id + R"("})");
  JsonObject *ret = c.wait_for("conversation.item.retrieved");
  assert_str(jstr(json_array_get_object_element(jarr(jobj(ret, "item"), "content"), 0), "transcript"), "");
  c.send(R"({"type":"conversation.item.truncate","event_id":"trunc-2","item_id":")" + id +
         R"(","content_index":0,"audio_end_ms":701})");
  err = c.wait_for("error");
  assert_str(jstr(jobj(err, "error"), "event_id"), "trunc-2");

  /* unknown item, missing field */
  c.send(R"({"type":"conversation.item.truncate","event_id":"trunc-3","item_id":"item_nope","content_index":0,"audio_end_ms":0})");
  err = c.wait_for("error");
  assert_str(jstr(jobj(err, "error"), "event_id"), "trunc-3");
  c.send(R"({"type":"conversation.item.truncate","event_id":"trunc-4","item_id":")" + id + R"("})");
  err = c.wait_for("error");
  assert_str(jstr(jobj(err, "error"), "code"), "missing_required_parameter");
  fail_unless_equals_int(stat(*engine, "truncations"), 1);
}
GST_END_TEST;

/* Malformed and unexpected input gets error events; the socket stays open. */
GST_START_TEST(test_errors) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);

  auto expect_error = [&c](const std::string &send, const char *code, const char *event_id) {
    c.send(send);
    JsonObject *err = c.wait_for("error");
    fail_unless(err != nullptr, "no error for %s", send.c_str());
    JsonObject *e = jobj(err, "error");
    assert_str(jstr(e, "type"), "invalid_request_error");
    assert_str(jstr(e, "code"), code);
    if (event_id)
      assert_str(jstr(e, "event_id"), event_id);
  };
  expect_error("{not json", "invalid_json", nullptr);
  expect_error("[1,2,3]", "invalid_json", nullptr);
  expect_error(R"({"type":"no.such.event","event_id":"e-1"})", "invalid_value", "e-1");
  expect_error(R"({"event_id":"e-2"})", "missing_required_parameter", "e-2");
  expect_error(R"({"type":"response.cancel","event_id":"e-3"})", "response_cancel_not_active", "e-3");
  expect_error(R"({"type":"input_audio_buffer.commit","event_id":"e-4"})", "input_audio_buffer_commit_empty", "e-4");
  expect_error(R"({"type":"input_audio_buffer.append","event_id":"e-5","audio":"not base64!"})", "invalid_value", "e-5");
  expect_error(R"({"type":"session.update","event_id":"e-6","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcma"}}}}})",
               "invalid_value", "e-6");
  expect_error(R"({"type":"conversation.item.create","event_id":"e-7","item":{"type":"function_call_output","call_id":"call_x","output":"{}"}})",
               "invalid_value", "e-7");
  expect_error(R"({"type":"session.update","event_id":"e-8","session":{"type":"transcription"}})", "invalid_value", "e-8");
  guint8 bin[4] = {1, 2, 3, 4};
  c.send_binary(bin, sizeof bin);
  fail_unless(c.wait_for("error") != nullptr);

  /* a rejected update changed nothing */
  c.send(R"({"type":"session.update","session":{"instructions":"x"}})");
  JsonObject *up = c.wait_for("session.updated");
  assert_str(jstr(jobj(jobj(jobj(jobj(up, "session"), "audio"), "input"), "format"), "type"), "audio/pcm");

  /* a second response.create while one is active */
  EngineConfig slow;
  slow.realtime_factor = 1.0;
  auto engine2 = start_engine(slow);
  RtClient c2;
  fail_unless(c2.connect(engine2->url()));
  fail_unless(c2.wait_for("session.created") != nullptr);
  c2.send(R"({"type":"response.create","response":{"instructions":"Say: one two three four five six seven."}})");
  fail_unless(c2.wait_for("response.output_audio.delta") != nullptr);
  c2.send(R"({"type":"response.create","event_id":"e-9"})");
  JsonObject *err = c2.wait_for("error");
  fail_unless(err != nullptr);
  assert_str(jstr(jobj(err, "error"), "code"), "conversation_already_has_active_response");
  assert_str(jstr(jobj(err, "error"), "event_id"), "e-9");
  /* response.cancel ends it */
  c2.send(R"({"type":"response.cancel"})");
  JsonObject *done = c2.wait_for("response.done");
  fail_unless(done != nullptr);
  JsonObject *r = jobj(done, "response");
  assert_str(jstr(r, "status"), "cancelled");
  assert_str(jstr(jobj(r, "status_details"), "reason"), "client_cancelled");

  fail_if(c.closed());
  fail_unless_equals_int(stat(*engine, "malformed-json"), 2);
  fail_unless_equals_int(stat(*engine, "unknown-events"), 2);
  fail_unless_equals_int(stat(*engine, "binary-frames"), 1);
  fail_unless(stat(*engine, "errors-sent") >= 11);
}
GST_END_TEST;

/* Barge-in: caller speech during a response cancels it (turn_detected). */
GST_START_TEST(test_barge_in) {
  EngineConfig cfg;
  cfg.realtime_factor = 1.0; /* the response lasts long enough to talk over */
  auto engine = start_engine(cfg);
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(kGaPcmuUpdate);
  fail_unless(c.wait_for("session.updated") != nullptr);
  c.send(R"({"type":"response.create","response":{"instructions":"Say: We are open from eight in the morning until six in the evening, Monday to Friday, and on Saturday mornings."}})");
  fail_unless(c.wait_for("response.output_audio.delta") != nullptr);
  size_t mark = c.cursor();
  append(c, mulaw_turn("Hello, hello?", 100, 800), 160);
  JsonObject *started = c.wait_for("input_audio_buffer.speech_started");
  fail_unless(started != nullptr, "%s", join(c.types(mark)).c_str());
  JsonObject *done = c.wait_for("response.done");
  fail_unless(done != nullptr);
  JsonObject *r = jobj(done, "response");
  assert_str(jstr(r, "status"), "cancelled");
  assert_str(jstr(jobj(r, "status_details"), "reason"), "turn_detected");
  JsonObject *item = json_array_get_object_element(jarr(r, "output"), 0);
  assert_str(jstr(item, "status"), "incomplete");
  auto t = c.types(mark);
  fail_unless(std::count(t.begin(), t.end(), "response.output_audio.done") == 1, "%s", join(t).c_str());
  /* then the new turn is answered */
  fail_unless(c.wait_for("input_audio_buffer.committed") != nullptr);
  fail_unless(c.wait_for("response.created", 20000) != nullptr);
  fail_unless_equals_int(stat(*engine, "responses-cancelled"), 1);
}
GST_END_TEST;

/* Canned mode: no transcription, a pre-rendered reply on turn end, paced. */
GST_START_TEST(test_canned) {
  EngineConfig cfg;
  cfg.canned = true;
  cfg.realtime_factor = 4.0;
  auto engine = start_engine(cfg);
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(kGaPcmuUpdate);
  fail_unless(c.wait_for("session.updated") != nullptr);
  size_t mark = c.size();
  append(c, mulaw_turn("Testing one two three."), 160);
  fail_unless(c.wait_for("input_audio_buffer.speech_stopped") != nullptr);
  JsonObject *created = c.wait_for("response.created");
  fail_unless(created != nullptr);
  gint64 t0 = g_get_monotonic_time();
  fail_unless(c.wait_for("response.done") != nullptr);
  gint64 elapsed_ms = (g_get_monotonic_time() - t0) / 1000;
  /* 1.2 s of audio at 4x: about 300 ms */
  fail_unless(elapsed_ms >= 200, "canned reply took %" G_GINT64_FORMAT " ms", elapsed_ms);
  fail_unless_equals_int(audio_bytes(c, mark, "response.output_audio.delta"), 9600);
  auto t = c.types(mark);
  fail_unless(std::count(t.begin(), t.end(), "conversation.item.input_audio_transcription.completed") == 0);
  fail_unless_equals_int(stat(*engine, "transcriptions"), 0);
}
GST_END_TEST;

/* PCM16 24 kHz input with manual turns: commit + response.create. */
GST_START_TEST(test_manual_pcm24) {
  auto engine = start_engine(fast_config());
  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  c.send(R"({"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":24000},
    "turn_detection":null,"transcription":{"model":"local"}}}}})");
  JsonObject *up = c.wait_for("session.updated");
  fail_unless(jnull(jobj(jobj(jobj(up, "session"), "audio"), "input"), "turn_detection"));
  std::vector<int16_t> pcm = caller_speech("What time do you open on Monday?", 24000);
  std::vector<uint8_t> bytes(pcm.size() * 2);
  memcpy(bytes.data(), pcm.data(), bytes.size());
  size_t mark = c.size();
  append(c, bytes, 4801); /* odd-sized chunks split samples */
  c.send(R"({"type":"input_audio_buffer.commit"})");
  JsonObject *committed = c.wait_for("input_audio_buffer.committed");
  fail_unless(committed != nullptr);
  c.send(R"({"type":"response.create"})");
  JsonObject *tr = c.wait_for("conversation.item.input_audio_transcription.completed", 20000);
  fail_unless(tr != nullptr);
  GST_INFO("manual transcript: '%s'", jstr(tr, "transcript").c_str());
  fail_unless(c.wait_for("response.done", 20000) != nullptr);
  auto t = c.types(mark);
  fail_unless(std::count(t.begin(), t.end(), "input_audio_buffer.speech_started") == 0, "VAD ran in manual mode");
  fail_unless(audio_bytes(c, mark, "response.output_audio.delta") > 48 * 500);
  /* clear */
  append(c, bytes, 9600);
  c.send(R"({"type":"input_audio_buffer.clear"})");
  fail_unless(c.wait_for("input_audio_buffer.cleared") != nullptr);
  c.send(R"({"type":"input_audio_buffer.commit","event_id":"after-clear"})");
  JsonObject *err = c.wait_for("error");
  assert_str(jstr(jobj(err, "error"), "code"), "input_audio_buffer_commit_empty");
}
GST_END_TEST;

/* Start failures and stop while clients are connected. */
GST_START_TEST(test_lifecycle) {
  EngineConfig bad;
  bad.agent_file = "/nonexistent/agent.json";
  Engine e1(bad);
  GError *err = nullptr;
  fail_if(e1.start(&err));
  fail_unless(err && err->domain == GST_RESOURCE_ERROR);
  g_clear_error(&err);

  auto engine = start_engine(fast_config());
  EngineConfig same = fast_config();
  same.port = std::stoi(engine->url().substr(strlen("ws://127.0.0.1:")));
  Engine e2(same);
  fail_if(e2.start(&err), "two engines on one port");
  fail_unless(err && err->domain == GST_RESOURCE_ERROR);
  g_clear_error(&err);

  RtClient c;
  fail_unless(c.connect(engine->url()));
  fail_unless(c.wait_for("session.created") != nullptr);
  fail_unless_equals_int(stat(*engine, "sessions-active"), 1);
  engine->stop();
  fail_unless(RtClient::run_until([&c] { return c.closed(); }, 3000), "client not closed by stop()");
  fail_unless_equals_int(c.close_code(), SOUP_WEBSOCKET_CLOSE_GOING_AWAY);
  engine->stop(); /* idempotent */
  assert_str(engine->url(), "");
}
GST_END_TEST;

static Suite *localmodel_suite() {
  Suite *s = suite_create("localmodel");
  TCase *tc = tcase_create("engine");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_ga_dialect);
  tcase_add_test(tc, test_beta_dialect_header);
  tcase_add_test(tc, test_beta_dialect_shape);
  tcase_add_test(tc, test_full_turn);
  tcase_add_test(tc, test_tool_round_trip);
  tcase_add_test(tc, test_tools_beta_and_undeclared);
  tcase_add_test(tc, test_truncate);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_barge_in);
  tcase_add_test(tc, test_canned);
  tcase_add_test(tc, test_manual_pcm24);
  tcase_add_test(tc, test_lifecycle);
  return s;
}

GST_CHECK_MAIN(localmodel);
