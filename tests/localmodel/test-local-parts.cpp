/* gst-phone-agent: unit tests of the local model's parts: the scripted agent
 * (loading, matching, templates, tool round trips), the built-in agent being
 * agents/receptionist.json, the VAD/turn detector, espeak-ng word timings,
 * the agent language model and a phone-band transcription smoke test. */
#include "../common/pa-check.h"

#include <json-glib/json-glib.h>

#include "local-agent.h"
#include "local-stt.h"
#include "local-tts.h"
#include "local-vad.h"
#include "pa-audio.h"

using namespace pa::local;

namespace {
std::string source_path(const char *rel) {
  const char *root = g_getenv("PA_SOURCE_ROOT");
  fail_unless(root != nullptr, "PA_SOURCE_ROOT not set");
  gchar *p = g_build_filename(root, rel, nullptr);
  std::string s(p);
  g_free(p);
  return s;
}

const Dialog::ToolFilter kAllTools = [](const std::string &) { return true; };
const Dialog::ToolFilter kNoTools = [](const std::string &) { return false; };
} // namespace

GST_START_TEST(test_builtin_is_receptionist_file) {
  JsonParser *a = json_parser_new();
  JsonParser *b = json_parser_new();
  fail_unless(json_parser_load_from_file(a, source_path("agents/receptionist.json").c_str(), nullptr));
  fail_unless(json_parser_load_from_data(b, Agent::builtin_json(), -1, nullptr));
  fail_unless(json_node_equal(json_parser_get_root(a), json_parser_get_root(b)),
              "gst/localmodel/local-agent-builtin.cpp differs from agents/receptionist.json");
  g_object_unref(a);
  g_object_unref(b);
  std::string err;
  fail_unless(Agent::load_file(source_path("agents/receptionist.json"), err) != nullptr, "%s", err.c_str());
  /* the tools file is valid JSON naming the agent's tools */
  JsonParser *t = json_parser_new();
  fail_unless(json_parser_load_from_file(t, source_path("agents/receptionist-tools.json").c_str(), nullptr));
  fail_unless_equals_int(json_array_get_length(json_node_get_array(json_parser_get_root(t))), 4);
  g_object_unref(t);
}
GST_END_TEST;

GST_START_TEST(test_agent_errors) {
  std::string err;
  fail_if(Agent::load_json("{", err));
  fail_unless(err.find("JSON") != std::string::npos, "%s", err.c_str());
  fail_if(Agent::load_json("[]", err));
  fail_if(Agent::load_json(R"({"intents":[{"name":"x","say":"hi"}]})", err));
  fail_unless(err.find("keywords") != std::string::npos, "%s", err.c_str());
  fail_if(Agent::load_json(R"({"intents":[{"name":"x","keywords":["a"]}]})", err));
  fail_if(Agent::load_json(R"({"intents":[{"name":"x","keywords":["a"],"action":"explode"}]})", err));
  fail_if(Agent::load_json(R"({"recognizer":{"agent_lm_weight":3}})", err));
  fail_if(Agent::load_file("/nonexistent.json", err));
  /* minimal agent: defaults for greeting and fallback */
  auto a = Agent::load_json("{}", err);
  fail_unless(a != nullptr, "%s", err.c_str());
  Dialog d(a);
  fail_if(d.greeting().say.empty());
  Plan p = d.user_said("anything", kAllTools);
  assert_str(p.intent, "fallback");
}
GST_END_TEST;

GST_START_TEST(test_agent_matching) {
  Dialog d(Agent::builtin());
  Plan g = d.greeting();
  fail_unless(g.say.find("Riverside Dental") != std::string::npos);

  Plan p = d.user_said("What time do you open on Monday?", kAllTools);
  assert_str(p.intent, "hours");
  fail_unless(p.calls.empty());
  p = d.user_said("can i speak to a real person please", kAllTools);
  assert_str(p.intent, "human");
  fail_unless_equals_int(p.calls.size(), 1);
  assert_str(p.calls[0].name, "transfer_to_human");
  fail_unless(p.calls[0].arguments.find("can i speak to a real person please") != std::string::npos, "%s",
              p.calls[0].arguments.c_str());
  p = d.user_said("blah blah", kAllTools);
  assert_str(p.intent, "fallback");
  std::string first = p.say;
  p = d.user_said("hmm", kAllTools);
  fail_if(p.say == first, "fallback variants do not rotate");
  /* "no" means something only after an offer */
  p = d.user_said("no", kAllTools);
  assert_str(p.intent, "fallback");
  /* thank you goodbye is a goodbye, not a thanks */
  p = d.user_said("thank you goodbye", kAllTools);
  assert_str(p.intent, "goodbye");
  assert_str(p.calls[0].name, "end_call");
  /* undeclared tools are not called */
  p = d.user_said("I need to book an appointment", kNoTools);
  assert_str(p.intent, "book");
  fail_unless(p.calls.empty());
  fail_unless(p.say.find("can't reach the calendar") != std::string::npos, "%s", p.say.c_str());
}
GST_END_TEST;

GST_START_TEST(test_agent_booking_flow) {
  Dialog d(Agent::builtin());
  Plan p = d.user_said("Can I book a cleaning on Friday afternoon?", kAllTools);
  assert_str(p.intent, "book");
  assert_str(p.say, "Let me check the calendar.");
  fail_unless_equals_int(p.calls.size(), 1);
  assert_str(p.calls[0].name, "findAvailability");
  assert_str(p.calls[0].arguments, R"({"day":"Friday","period":"afternoon"})");
  fail_unless(p.calls[0].call_id.rfind("call_", 0) == 0);
  fail_unless(d.has_pending_call(p.calls[0].call_id));

  /* an unknown call id is ignored */
  Plan none = d.tool_outputs({{"call_other", "{}"}});
  fail_unless(none.say.empty() && none.calls.empty());

  Plan after = d.tool_outputs({{p.calls[0].call_id, R"({"slots":["Friday at 1 PM","Friday at 3:30 PM"]})"}});
  assert_str(after.say, "I have Friday at 1 PM or Friday at 3:30 PM. Would the first one work for you?");
  assert_str(d.state(), "offered");
  fail_if(d.has_pending_call(p.calls[0].call_id));

  /* "the second one" books the second slot */
  Plan second = d.user_said("the second one please", kAllTools);
  assert_str(second.intent, "second_slot");
  assert_str(second.calls[0].arguments.substr(0, 28), R"({"slot":"Friday at 3:30 PM",)");
  Plan booked = d.tool_outputs({{second.calls[0].call_id, R"({"slot":"Friday at 3:30 PM","confirmation":"X1"})"}});
  fail_unless(booked.say.find("Friday at 3:30 PM") != std::string::npos &&
                  booked.say.find("X1") != std::string::npos,
              "%s", booked.say.c_str());
  assert_str(d.state(), "anything_else");
  Plan bye = d.user_said("no", kAllTools);
  assert_str(bye.intent, "done");
  assert_str(bye.calls[0].name, "end_call");

  /* errors from the tool */
  Dialog d2(Agent::builtin());
  Plan p2 = d2.user_said("book me in next week", kAllTools);
  assert_str(p2.calls[0].arguments, R"({"day":"next week","period":"any time"})");
  Plan err = d2.tool_outputs({{p2.calls[0].call_id, R"({"error":"fully booked"})"}});
  assert_str(err.say, "Sorry, I couldn't find a free slot for next week. Would another day work?");
  /* a plain-text output is usable too */
  Plan p3 = d2.user_said("book an appointment", kAllTools);
  Plan txt = d2.tool_outputs({{p3.calls[0].call_id, "Monday at 9"}});
  assert_str(txt.say, "I have . Would the first one work for you?"); /* no slots field: empty, as written */
  assert_str(d2.render("{result}|{nothing|fallback}|{day}"), "Monday at 9|fallback|next week");
}
GST_END_TEST;

GST_START_TEST(test_arpa) {
  assert_str(build_arpa({}), "");
  std::string lm = build_arpa({"Book an appointment", "book a cleaning", "I'd like to book"});
  fail_unless(lm.find("\\data\\") == 0);
  fail_unless(lm.find("ngram 2=") != std::string::npos);
  fail_unless(lm.find(" book an") != std::string::npos);
  fail_unless(lm.find(" i'd ") != std::string::npos);
  fail_unless(lm.find("\\end\\") != std::string::npos);
  auto w = normalize_words("Hello, WORLD! It's 'quoted' 10:30");
  fail_unless_equals_int(w.size(), 6);
  assert_str(w[2], "it's");
  assert_str(w[3], "quoted");
  assert_str(w[4], "10");
}
GST_END_TEST;

GST_START_TEST(test_tts_words) {
  Speech sp;
  std::string err;
  fail_unless(tts_check_voice("en-us", err), "%s", err.c_str());
  fail_if(tts_check_voice("xx-nonexistent-voice", err));
  std::string text = "Hello there, this is a short test of the voice.";
  fail_unless(tts_synthesize(text, "en-us", 8000, sp, err), "%s", err.c_str());
  fail_unless_equals_int(sp.rate, 8000);
  double seconds = static_cast<double>(sp.pcm.size()) / 8000;
  fail_unless(seconds > 1.5 && seconds < 6, "%.2f s", seconds);
  fail_unless_equals_int(sp.words.size(), 10);
  assert_str(text.substr(sp.words[1].begin, 5), "there");
  for (size_t i = 1; i < sp.words.size(); i++)
    fail_unless(sp.words[i].start_ms >= sp.words[i - 1].start_ms);
  fail_unless(sp.words.back().start_ms > 1000 && sp.words.back().start_ms < seconds * 1000);
  Speech sp24;
  fail_unless(tts_synthesize(text, "en-us", 24000, sp24, err));
  fail_unless(std::abs(static_cast<double>(sp24.pcm.size()) / 24000 - seconds) < 0.05);
}
GST_END_TEST;

GST_START_TEST(test_turn_detector) {
  Speech sp;
  std::string err;
  fail_unless(tts_synthesize("Good morning, I would like an appointment please.", "en-us+f2", kVadRate, sp, err));
  /* 1 s of faint noise, speech, 1 s of faint noise */
  std::vector<int16_t> audio;
  guint32 seed = 1;
  auto noise = [&seed]() {
    seed = seed * 1103515245u + 12345u;
    return static_cast<int16_t>(static_cast<int>((seed >> 16) % 61) - 30);
  };
  for (int i = 0; i < kVadRate; i++)
    audio.push_back(noise());
  size_t speech_at = audio.size();
  audio.insert(audio.end(), sp.pcm.begin(), sp.pcm.end());
  size_t speech_end = audio.size();
  for (int i = 0; i < kVadRate; i++)
    audio.push_back(noise());

  TurnDetector td;
  std::vector<TurnEvent> ev;
  for (size_t i = 0; i < audio.size(); i += 333) /* odd block sizes */
    td.process(audio.data() + i, std::min<size_t>(333, audio.size() - i), ev);
  fail_unless_equals_int(ev.size(), 2);
  fail_unless(ev[0].kind == TurnEvent::Kind::Started && ev[1].kind == TurnEvent::Kind::Stopped);
  double start_ms = static_cast<double>(ev[0].sample) / 16, speech_ms = static_cast<double>(speech_at) / 16;
  /* started at the speech minus the 300 ms prefix (within a VAD window) */
  fail_unless(start_ms >= speech_ms - 300 - 40 && start_ms <= speech_ms - 300 + 200, "start %.0f speech %.0f",
              start_ms, speech_ms);
  double stop_ms = static_cast<double>(ev[1].sample) / 16, end_ms = static_cast<double>(speech_end) / 16;
  fail_unless(stop_ms >= end_ms + 300 && stop_ms <= end_ms + 700, "stop %.0f speech end %.0f", stop_ms, end_ms);
  fail_if(td.in_speech());

  /* noise and silence alone: no turn */
  TurnDetector quiet;
  ev.clear();
  std::vector<int16_t> zeros(kVadRate * 2, 0);
  quiet.process(zeros.data(), zeros.size(), ev);
  std::vector<int16_t> hiss(kVadRate * 2);
  for (auto &s : hiss)
    s = noise();
  quiet.process(hiss.data(), hiss.size(), ev);
  fail_unless_equals_int(ev.size(), 0);
  fail_unless_equals_int(quiet.position(), kVadRate * 4);
}
GST_END_TEST;

/* Phone-band smoke test: μ-law 8 kHz speech through the recognizer. Only
 * checks that it produces words; the accuracy is measured by
 * bench/local-model-wer. */
GST_START_TEST(test_recognizer_phone_band) {
  SttConfig cfg;
  std::string err;
  if (!stt_check_models(cfg, err)) {
    GST_WARNING("skipping: %s", err.c_str());
    return;
  }
  cfg.agent_sentences = Agent::builtin()->language_sentences();
  auto rec = Recognizer::create(cfg, err);
  fail_unless(rec != nullptr, "%s", err.c_str());
  Speech sp;
  fail_unless(tts_synthesize("Yes, that works for me.", "en-us+f2", 8000, sp, err, 150));
  std::vector<uint8_t> mu(sp.pcm.size());
  pa::mulaw_encode_block(sp.pcm.data(), mu.data(), mu.size());
  std::vector<int16_t> wide = mulaw8k_to_16k(mu.data(), mu.size());
  fail_unless(std::abs(static_cast<double>(wide.size()) - 2.0 * mu.size()) < 4);
  std::string text = rec->transcribe(wide.data(), wide.size());
  GST_INFO("recognized: '%s'", text.c_str());
  fail_if(text.empty());
  std::vector<int16_t> silence(16000, 0);
  rec->transcribe(silence.data(), silence.size()); /* must not crash or hang */
}
GST_END_TEST;

static Suite *localmodel_parts_suite() {
  Suite *s = suite_create("localmodel-parts");
  TCase *tc = tcase_create("parts");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_builtin_is_receptionist_file);
  tcase_add_test(tc, test_agent_errors);
  tcase_add_test(tc, test_agent_matching);
  tcase_add_test(tc, test_agent_booking_flow);
  tcase_add_test(tc, test_arpa);
  tcase_add_test(tc, test_tts_words);
  tcase_add_test(tc, test_turn_detector);
  tcase_add_test(tc, test_recognizer_phone_band);
  return s;
}

GST_CHECK_MAIN(localmodel_parts);
