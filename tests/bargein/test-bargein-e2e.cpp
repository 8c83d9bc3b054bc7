/* gst-phone-agent: bargein end to end. The emulator calls
 *   twiliosrc ! bargein ! realtimemodel (embedded local model, speaking a
 *   greeting first) ! twiliosink
 * and the caller talks over the greeting (espeak-ng). The phoneagent/heard
 * query reaches twiliosink through realtimemodel, bargein pauses and then
 * decides a barge-in, and Twilio (the emulator) gets a clear. Which of
 * bargein and the local model's own VAD interrupts first is not checked:
 * both are in-process here. */
#include <gst/gst.h>

#include "../common/pa-e2e.h"
#include "bargein-signals.h"

using namespace pa_e2e;

GST_START_TEST(test_caller_interrupts_the_greeting) {
  sig::Pcm speech = sig::espeak("Stop, stop. I want to talk to a person about my bill, please.", -20);
  if (speech.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  TempDir tmp;
  sig::Pcm caller = sig::noise(2500, -60, 3);
  sig::append(caller, speech);
  std::vector<uint8_t> mu = sig::to_mulaw(caller);
  std::string err;
  fail_unless(pa::wav_write_mulaw(tmp.file("caller.wav"), mu.data(), mu.size(), err), "%s", err.c_str());

  Background agent({"gst-launch-1.0", "-m", "-e", "twiliosrc", "port=0", "address=127.0.0.1", "!", "bargein", "!",
                    "realtimemodel", "greeting=Greet the caller", "!", "twiliosink"},
                   tmp.file("agent.log"));
  int port = wait_for_port(agent);
  fail_unless(port > 0);
  int rc = run({emulator_path(), "--url", "http://127.0.0.1:" + std::to_string(port) + "/twilio/voice", "--quiet",
                "--max-duration-s", "30", "--audio", tmp.file("caller.wav"), "--tail-ms", "1500", "--report",
                tmp.file("report.json")});
  fail_unless_equals_int(rc, 0);
  Report r(tmp.file("report.json"));
  assert_str(r.outcome(0), "completed");
  /* the caller's speech interrupted the agent: Twilio got a clear */
  fail_unless(json_object_get_int_member(r.call(0), "clears_received") >= 1, "no clear:\n%s", agent.output().c_str());
  /* bargein saw the agent speaking (through the heard query) and decided */
  std::string rest = agent.wait_for("(element): barge-in, onset-running-time=(guint64)", 5000);
  guint64 onset = g_ascii_strtoull(rest.c_str(), nullptr, 10);
  size_t d = rest.find("decision-running-time=(guint64)");
  fail_unless(d != std::string::npos);
  guint64 decision = g_ascii_strtoull(rest.c_str() + d + strlen("decision-running-time=(guint64)"), nullptr, 10);
  fail_unless(decision > onset && decision - onset < 600 * GST_MSECOND, "reaction %" G_GUINT64_FORMAT " ms",
              (decision - onset) / GST_MSECOND);
  /* the speech starts 2.5 s into the call (the stream's time base is the
   * first frame's arrival, a little after the pipeline started) */
  fail_unless(onset >= 2500 * GST_MSECOND && onset < 4000 * GST_MSECOND, "onset %" GST_TIME_FORMAT,
              GST_TIME_ARGS(onset));
  std::string out = agent.output();
  fail_unless(out.find("realtime-barge-in") != std::string::npos, "realtimemodel did not interrupt");
}
GST_END_TEST;

static Suite *bargein_e2e_suite(void) {
  Suite *s = suite_create("bargein-e2e");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_caller_interrupts_the_greeting);
  return s;
}

GST_CHECK_MAIN(bargein_e2e);
