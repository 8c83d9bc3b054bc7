/* gst-phone-agent: bargein end to end. The emulator calls an in-process
 *   twiliosrc ! bargein ! realtimemodel (embedded local model, speaking a
 *   greeting first) ! twiliosink
 * and the caller talks over the greeting (espeak-ng), or coughs and presses
 * a key over it. What the caller heard comes from the emulator's report
 * (docs/emulator.md, "Clear timing"); what the elements did from their
 * messages and stats. */
#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "../common/pa-e2e.h"
#include "bargein-signals.h"

using namespace pa_e2e;

namespace {

/* About 9 s of agent speech, the same every run. */
const char *kGreeting = "Say: Thank you for calling Riverside Dental. This is the automated receptionist. "
                        "Our opening hours are eight to six on weekdays and nine to one on Saturdays. "
                        "How can I help you today?";

/* A failed check exits the test process while the pipeline runs, and
 * gst_deinit (at exit) then waits for its streaming threads for ever: stop
 * the pipelines still alive first (atexit handlers run last-registered
 * first, so this runs before gst_check's). */
std::vector<GstElement *> live_pipelines;
void stop_live_pipelines() {
  for (GstElement *p : live_pipelines)
    gst_element_set_state(p, GST_STATE_NULL);
  live_pipelines.clear();
}

/* bargein's local VAD alone decides: the model's speech_started does not
 * interrupt (docs/bargein.md, "Modes") */
const char *kLocalOnly = "interrupt-response=false";

struct AgentPipeline {
  GstElement *pipeline = nullptr, *src = nullptr, *bargein = nullptr, *model = nullptr, *sink = nullptr;
  int port = 0;
  std::vector<GstStructure *> msgs; /* element messages, in order */
  bool eos = false;

  AgentPipeline(const std::string &bargein_props, const std::string &model_props,
                const std::string &sink_props = "", const std::string &src_props = "") {
    std::string desc = "twiliosrc name=src port=0 address=127.0.0.1 " + src_props + " ! bargein name=b " +
                       bargein_props +
                       " ! realtimemodel name=m " + model_props + " ! twiliosink name=sink " + sink_props;
    GError *err = nullptr;
    pipeline = gst_parse_launch(desc.c_str(), &err);
    fail_unless(pipeline != nullptr, "%s", err ? err->message : "?");
    src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    bargein = gst_bin_get_by_name(GST_BIN(pipeline), "b");
    model = gst_bin_get_by_name(GST_BIN(pipeline), "m");
    sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    g_object_set(model, "greeting", kGreeting, nullptr);
    static bool registered = false;
    if (!registered)
      registered = atexit(stop_live_pipelines) == 0;
    live_pipelines.push_back(pipeline);
    fail_unless(gst_element_set_state(pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    g_object_get(src, "bound-port", &port, nullptr);
    fail_unless(port > 0);
  }
  ~AgentPipeline() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    live_pipelines.erase(std::remove(live_pipelines.begin(), live_pipelines.end(), pipeline), live_pipelines.end());
    for (GstStructure *s : msgs)
      gst_structure_free(s);
    for (GstElement *e : {src, bargein, model, sink})
      gst_object_unref(e);
    gst_object_unref(pipeline);
  }
  void pump(int timeout_ms) {
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *m = gst_bus_timed_pop_filtered(
        bus, static_cast<GstClockTime>(timeout_ms) * GST_MSECOND,
        static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR));
    if (m) {
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
        eos = true;
      } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
        GError *e = nullptr;
        gst_message_parse_error(m, &e, nullptr);
        fail("pipeline error: %s", e ? e->message : "?");
      } else if (const GstStructure *s = gst_message_get_structure(m)) {
        msgs.push_back(gst_structure_copy(s));
      }
      gst_message_unref(m);
    }
    gst_object_unref(bus);
  }
  /* Places one call with the emulator (the caller's audio, more options)
   * and waits for it and for the pipeline's EOS; the report's path. */
  std::string call(const TempDir &tmp, const std::string &wav, const std::vector<std::string> &more = {}) {
    std::string report = tmp.file("report-" + std::to_string(port) + ".json");
    std::vector<std::string> argv = {emulator_path(), "--url",
                                     "http://127.0.0.1:" + std::to_string(port) + "/twilio/voice", "--quiet",
                                     "--max-duration-s", "40", "--audio", wav, "--tail-ms", "1000", "--report",
                                     report};
    argv.insert(argv.end(), more.begin(), more.end());
    Background emu(argv, tmp.file("emulator.log"));
    int rc = -1;
    for (int waited = 0; waited < 60000 && rc < 0; waited += 20) {
      pump(20);
      if (!g_subprocess_get_identifier(emu.proc))
        rc = emu.wait(1000);
    }
    fail_unless_equals_int(rc, 0);
    for (int waited = 0; waited < 10000 && !eos; waited += 20)
      pump(20);
    fail_unless(eos, "no EOS after the call");
    return report;
  }
  const GstStructure *msg(const char *name, guint nth = 0) const {
    for (GstStructure *s : msgs)
      if (gst_structure_has_name(s, name) && nth-- == 0)
        return s;
    return nullptr;
  }
  /* the barge-in related element messages, one a line, cut short (for
   * failure messages, which check limits in length) */
  std::string dump() const {
    std::string out;
    for (GstStructure *s : msgs) {
      std::string name = gst_structure_get_name(s);
      if (name.find("barge-in") == std::string::npos && name.find("speech") == std::string::npos &&
          name != "twilio-clear")
        continue;
      gchar *t = gst_structure_to_string(s);
      out += std::string(t).substr(0, 300) + "\n";
      g_free(t);
    }
    return out.substr(0, 2000);
  }
  guint count(const char *name) const {
    guint n = 0;
    for (GstStructure *s : msgs)
      n += gst_structure_has_name(s, name);
    return n;
  }
  static guint64 stat(GstElement *e, const char *field) {
    GstStructure *s = nullptr;
    g_object_get(e, "stats", &s, nullptr);
    guint64 v = 0;
    fail_unless(s && gst_structure_get_uint64(s, field, &v), "no stat %s", field);
    gst_structure_free(s);
    return v;
  }
  /* the item of the agent's first words (the greeting) */
  std::string first_agent_item() const {
    for (GstStructure *s : msgs)
      if (gst_structure_has_name(s, "realtime-transcript") && !g_strcmp0(gst_structure_get_string(s, "role"), "assistant"))
        return gst_structure_get_string(s, "item-id");
    fail("no agent transcript");
    return "";
  }
  /* twiliosink's phoneagent/heard answer for @item (now) */
  guint64 heard_played_ms(const std::string &item, guint64 *sent_ms = nullptr) {
    GstQuery *q = gst_query_new_custom(
        GST_QUERY_CUSTOM, gst_structure_new("phoneagent/heard", "item-id", G_TYPE_STRING, item.c_str(), nullptr));
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    fail_unless(gst_pad_query(pad, q));
    guint64 played = 0;
    gst_structure_get_uint64(gst_query_get_structure(q), "played-ms", &played);
    if (sent_ms)
      gst_structure_get_uint64(gst_query_get_structure(q), "sent-ms", sent_ms);
    gst_object_unref(pad);
    gst_query_unref(q);
    return played;
  }
};

double dmember(JsonObject *o, const char *name) {
  JsonNode *n = json_object_get_member(o, name);
  fail_unless(n && !JSON_NODE_HOLDS_NULL(n), "report: %s is missing or null", name);
  return json_node_get_double(n);
}

/* the first of exactly @n clears */
JsonObject *first_clear(const Report &r, guint n = 1) {
  JsonArray *clears = json_object_get_array_member(r.call(0), "clears");
  fail_unless_equals_int(json_array_get_length(clears), n);
  return json_array_get_object_element(clears, 0);
}
JsonObject *only_clear(const Report &r) { return first_clear(r, 1); }

/* A caller who waits (line noise) for @at_ms, then speaks over the agent. */
std::string interrupting_caller(const TempDir &tmp, int at_ms) {
  sig::Pcm speech = sig::espeak("Stop, stop. I want to talk to a person about my bill, please.", -20);
  if (speech.empty())
    return "";
  sig::Pcm caller = sig::noise(at_ms, -60, 3);
  sig::append(caller, speech);
  sig::append(caller, sig::noise(1500, -60, 4));
  std::vector<uint8_t> mu = sig::to_mulaw(caller);
  std::string err, path = tmp.file("caller.wav");
  fail_unless(pa::wav_write_mulaw(path, mu.data(), mu.size(), err), "%s", err.c_str());
  return path;
}

/* What the caller heard after the clear, and the truncate against what the
 * emulator played of the greeting (the only item: played since the stream
 * start is played of the item). */
void check_clear_and_truncate(AgentPipeline &a, const Report &r, guint clears = 1) {
  JsonObject *cl = first_clear(r, clears);
  /* after the clear, nothing but the frame playing when it arrived */
  fail_unless_equals_int(dmember(cl, "leaked_ms"), 0);
  double played = dmember(cl, "played_ms_at_clear");
  fail_unless_equals_int(played, dmember(cl, "played_total_ms"));
  fail_unless(played >= 1000, "only %.0f ms of the greeting played before the clear", played);
  const GstStructure *b = a.msg("realtime-barge-in");
  fail_unless(b != nullptr, "realtimemodel did not interrupt");
  guint64 end = 0, generated = 0;
  fail_unless(gst_structure_get_uint64(b, "audio-end-ms", &end));
  fail_unless(gst_structure_get_uint64(b, "generated-ms", &generated));
  fail_unless(generated > end + 1000, "the greeting (%" G_GUINT64_FORMAT " ms) was not cut", generated);
  fail_unless(std::fabs(static_cast<double>(end) - played) <= 40.0,
              "truncated at %" G_GUINT64_FORMAT " ms, the caller heard %.0f ms", end, played);
  fail_unless_equals_int(a.count("realtime-barge-in"), 1);
}

} // namespace

/* bargein's local VAD (alone) interrupts the greeting: nothing of the old
 * response after the clear, the truncate at what was played. By default
 * (twiliosink pause-clears) the pause at the onset also empties Twilio's
 * queue (a first clear), long before the barge-in is confirmed (a second);
 * with pause-clears=false and bargein clear-voiced-ms=0 the pause only
 * stops the sending, and the caller hears what Twilio holds (twiliosink's
 * lead) until the barge-in's clear. */
static void caller_interrupts_the_greeting(bool pause_clears, bool media_thread = false) {
  TempDir tmp;
  std::string wav = interrupting_caller(tmp, 2500);
  if (wav.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  AgentPipeline a(pause_clears ? "" : "clear-voiced-ms=0", kLocalOnly, pause_clears ? "" : "pause-clears=false",
                  media_thread ? "media-thread=true" : "");
  Report r(a.call(tmp, wav));
  assert_str(r.outcome(0), "completed");
  const guint clears = pause_clears ? 2 : 1;
  fail_unless_equals_int(json_object_get_int_member(r.call(0), "clears_received"), clears);

  /* bargein saw the agent speaking (through the heard query) and decided */
  const GstStructure *bi = a.msg("barge-in");
  fail_unless(bi != nullptr, "bargein did not decide");
  guint64 onset = 0, decision = 0;
  gst_structure_get_uint64(bi, "onset-running-time", &onset);
  gst_structure_get_uint64(bi, "decision-running-time", &decision);
  /* "Stop, stop." is one of the slow ones to confirm since the detector's
   * pitch is taken above 300 Hz (bench/bargein: 340 or 650 ms here, max
   * 674 ms over its phrases); the pause, below, is what the caller hears */
  fail_unless(decision > onset && decision - onset < 800 * GST_MSECOND, "reaction %" G_GUINT64_FORMAT " ms",
              (decision - onset) / GST_MSECOND);
  /* the speech starts 2.5 s into the call (the stream's time base is the
   * first frame's arrival) */
  fail_unless(onset >= 2500 * GST_MSECOND && onset < 4000 * GST_MSECOND, "onset %" GST_TIME_FORMAT,
              GST_TIME_ARGS(onset));
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "barge-ins"), 1);
  fail_unless_equals_int(AgentPipeline::stat(a.sink, "pause-clears"), pause_clears ? 1 : 0);
  const GstStructure *rb = a.msg("realtime-barge-in");
  fail_unless(rb != nullptr);
  assert_str(gst_structure_get_string(rb, "source"), "local-vad");
  check_clear_and_truncate(a, r, clears);
  if (media_thread) /* bargein, realtimemodel ran on the media thread */
    fail_unless(AgentPipeline::stat(a.src, "media-thread-buffers") > 100);

  JsonObject *cl = first_clear(r, clears);
  double since = dmember(cl, "since_onset_ms"), stop = dmember(cl, "audio_stop_since_onset_ms");
  if (pause_clears) {
    /* the agent stops at the caller with the pause: onset-ms (20) after
     * the onset, and a frame or two */
    fail_unless(since <= 80, "the pause's clear %.0f ms after the onset", since);
    fail_unless(stop <= 80, "the agent stopped %.0f ms after the onset", stop);
    return;
  }
  /* the clear follows the decision (min-speech-ms after the onset) ... */
  fail_unless(since >= 150 && since < 800, "clear %.0f ms after the onset", since);
  /* ... but the pause stopped the agent at the caller before it: within
   * twiliosink's lead plus bargein's onset (20 ms), the frame in flight,
   * and up to 80 ms for the pause to get through a loaded machine (a
   * fresh-clone suite saw 300 ms with a 200 ms lead, one frame over the
   * 80 ms this allowed before) */
  guint lead = 0;
  g_object_get(a.sink, "lead", &lead, nullptr);
  fail_unless(stop < since, "the agent was heard until the clear (%.0f ms)", stop);
  fail_unless(stop <= lead + 120.0, "the agent stopped %.0f ms after the onset (lead %u ms)", stop, lead);
}

GST_START_TEST(test_caller_interrupts_the_greeting) { caller_interrupts_the_greeting(true); }
GST_END_TEST;

GST_START_TEST(test_caller_interrupts_the_greeting_without_pause_clear) { caller_interrupts_the_greeting(false); }
GST_END_TEST;

/* the same, with the caller's audio pushed from a media thread as the
 * server does by default (twiliosrc media-thread=true, which waits up to
 * 10 ms for other calls' frames): bargein still stops the agent within the
 * same 80 ms */
GST_START_TEST(test_caller_interrupts_the_greeting_on_a_media_thread) { caller_interrupts_the_greeting(true, true); }
GST_END_TEST;

/* A cough and a DTMF key over the greeting, local VAD alone: no clear, no
 * barge-in, and the caller hears the whole greeting, exactly as on a quiet
 * line. (With the model's VAD also listening, mode=both, the local model's
 * VAD takes both for speech and interrupts: bargein cannot guard that.) */
GST_START_TEST(test_cough_and_dtmf_do_not_interrupt) {
  TempDir tmp;
  sig::Pcm probe = sig::espeak("test", -20);
  if (probe.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  sig::Pcm quiet = sig::noise(12000, -60, 5); /* longer than the greeting */
  sig::Pcm noisy = quiet;
  sig::mix(noisy, sig::burst(160, -18, 9), 2500);                  /* a cough */
  sig::mix(noisy, sig::dtmf(120, 852, 1336, -16), 4500);           /* the key 8, in band */
  std::string err;
  std::vector<uint8_t> mq = sig::to_mulaw(quiet), mn = sig::to_mulaw(noisy);
  fail_unless(pa::wav_write_mulaw(tmp.file("quiet.wav"), mq.data(), mq.size(), err));
  fail_unless(pa::wav_write_mulaw(tmp.file("noisy.wav"), mn.data(), mn.size(), err));

  /* the greeting on a quiet line: how much of it was sent and played */
  guint64 base_sent = 0, base_played;
  {
    AgentPipeline a("", kLocalOnly);
    Report r(a.call(tmp, tmp.file("quiet.wav")));
    base_played = a.heard_played_ms(a.first_agent_item(), &base_sent);
    fail_unless(base_sent > 6000, "the greeting was only %" G_GUINT64_FORMAT " ms long", base_sent);
    fail_unless(base_played + 20 >= base_sent, "the greeting did not play out on the quiet line");
  }
  AgentPipeline a("", kLocalOnly);
  Report r(a.call(tmp, tmp.file("noisy.wav")));
  assert_str(r.outcome(0), "completed");
  /* no barge-in: the only clears are the pauses' (twiliosink pause-clears),
   * each followed by the rest of the greeting again */
  fail_unless(json_object_get_int_member(r.call(0), "clears_received") ==
                  static_cast<gint64>(AgentPipeline::stat(a.sink, "pause-clears")),
              "interrupted:\n%s", a.dump().c_str());
  fail_unless_equals_int(a.count("realtime-barge-in"), 0);
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "barge-ins"), 0);
  /* the cough was heard as a possible start of speech (a pause), and let go */
  fail_unless(AgentPipeline::stat(a.bargein, "pauses") >= 1, "the cough did not even pause the agent");
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "pauses"), AgentPipeline::stat(a.bargein, "resumes"));
  fail_unless(a.count("barge-in-rejected") >= 1);
  /* the whole greeting was sent and played, as on the quiet line (the
   * model may answer the cough afterwards: another item; twiliosink then
   * sometimes counts up to a few frames of it to the greeting, hence >=) */
  guint64 sent = 0, played = a.heard_played_ms(a.first_agent_item(), &sent);
  fail_unless(sent >= base_sent && played + 20 >= sent,
              "the greeting: %" G_GUINT64_FORMAT " ms sent, %" G_GUINT64_FORMAT " played (%" G_GUINT64_FORMAT
              " ms on the quiet line)", sent, played, base_sent);
  fail_unless_equals_int(AgentPipeline::stat(a.model, "dropped-cancelled-ms"), 0);
  fail_unless_equals_int(AgentPipeline::stat(a.sink, "discarded-ms"), 0);
}
GST_END_TEST;

/* The caller's line echoes the agent 15 dB down, 60 ms late (the
 * emulator's --echo: a loud line, which the level guard alone lets
 * through), local VAD alone: bargein's echo canceller, fed by twiliosink's
 * phoneagent/far-end answers through realtimemodel, takes it out, and the
 * echo never interrupts the greeting, which plays out whole. (With
 * PA_TEST_BARGEIN_PROPS=echo-cancel=false this test fails.) */
GST_START_TEST(test_echo_does_not_interrupt) {
  TempDir tmp;
  sig::Pcm probe = sig::espeak("test", -20);
  if (probe.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  sig::Pcm quiet = sig::noise(16000, -60, 7); /* the greeting, and the pauses the echo costs */
  std::vector<uint8_t> mq = sig::to_mulaw(quiet);
  std::string err;
  fail_unless(pa::wav_write_mulaw(tmp.file("quiet.wav"), mq.data(), mq.size(), err));
  const char *props = g_getenv("PA_TEST_BARGEIN_PROPS"); /* to see this test fail with weaker guards */
  AgentPipeline a(props ? props : "", kLocalOnly);
  Report r(a.call(tmp, tmp.file("quiet.wav"), {"--echo", "-15:60"}));
  assert_str(r.outcome(0), "completed");
  /* no barge-in: the only clears are the pauses' (twiliosink pause-clears),
   * each followed by the rest of the greeting again */
  fail_unless(json_object_get_int_member(r.call(0), "clears_received") ==
                  static_cast<gint64>(AgentPipeline::stat(a.sink, "pause-clears")),
              "interrupted:\n%s", a.dump().c_str());
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "barge-ins"), 0);
  guint64 sent = 0, played = a.heard_played_ms(a.first_agent_item(), &sent);
  /* (what to look at if the greeting stopped short: the pauses, the
   * audio sent again after them, what the model dropped) */
  fail_unless(sent > 6000 && played + 20 >= sent,
              "the greeting: %" G_GUINT64_FORMAT " ms sent, %" G_GUINT64_FORMAT " played; %" G_GUINT64_FORMAT
              " pauses, %" G_GUINT64_FORMAT " ended by max-pause-ms, %" G_GUINT64_FORMAT " ms sent again, %"
              G_GUINT64_FORMAT " ms dropped by realtimemodel\n%s",
              sent, played, AgentPipeline::stat(a.bargein, "pauses"), AgentPipeline::stat(a.sink, "pause-timeouts"),
              AgentPipeline::stat(a.sink, "resent-ms"), AgentPipeline::stat(a.model, "dropped-cancelled-ms"),
              a.dump().c_str());
  if (!props) {
    /* the canceller ran while the agent spoke, and took the echo down */
    fail_unless(AgentPipeline::stat(a.bargein, "echo-frames") * 10 >= sent);
    GstStructure *st = nullptr;
    g_object_get(a.bargein, "stats", &st, nullptr);
    gdouble taken = 0;
    fail_unless(gst_structure_get_double(st, "echo-taken-db", &taken));
    gst_structure_free(st);
    fail_unless(taken > 10, "the canceller took only %.1f dB out", taken);
    /* what bargein found about the line: the emulator's echo, 15 dB down,
     * 60 ms after the caller heard the agent, which twiliosink's pacing
     * places up to a frame and a tick (the emulator's 20 ms) early (80 ms
     * in 20 of 20 runs here; more if the emulator fell behind) */
    gboolean echoes = FALSE;
    guint delay = 0;
    gdouble loss = 0;
    g_object_get(a.bargein, "stats", &st, nullptr);
    gst_structure_get_boolean(st, "line-echoes", &echoes);
    gst_structure_get_uint(st, "echo-delay-ms", &delay);
    gst_structure_get_double(st, "echo-loss-db", &loss);
    gst_structure_free(st);
    fail_unless(echoes, "the line's echo was not noticed");
    fail_unless(delay >= 60 && delay <= 140, "the echo found %u ms late", delay);
    fail_unless(loss > -17 && loss < -13, "the echo found %.1f dB down", loss);
    /* while the canceller learnt the line (the greeting's first 3 s), the
     * echo hardly paused the agent: the far end's level at the line's
     * delay says how loud the echo is, frame by frame. (Before that guard,
     * 3-4 pauses there in every run; with it, none in 26 runs. One is
     * allowed: the prediction holds to a frame either way of the delay
     * found, and an emulator that falls behind on a loaded machine plays
     * later than twiliosink's pacing says.) */
    guint early = 0;
    for (guint i = 0; const GstStructure *m = a.msg("barge-in-rejected", i); i++) {
      guint64 onset = 0;
      gst_structure_get_uint64(m, "onset-running-time", &onset);
      early += onset < 3 * GST_SECOND;
    }
    fail_unless(early <= 1, "the echo paused the agent %u times in the first 3 s\n%s", early, a.dump().c_str());
  }
}
GST_END_TEST;

/* bargein mode=model: bargein stays out of it; the model's own
 * speech_started interrupts. The clear then finds the lead still queued at
 * Twilio, whose marks come back as "cleared" echoes: twiliosink counts them
 * and does not take them as played. */
GST_START_TEST(test_model_vad_mode_and_cleared_marks) {
  TempDir tmp;
  std::string wav = interrupting_caller(tmp, 2500);
  if (wav.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  AgentPipeline a("mode=model", "");
  Report r(a.call(tmp, wav));
  assert_str(r.outcome(0), "completed");
  fail_unless_equals_int(json_object_get_int_member(r.call(0), "clears_received"), 1);
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "pauses"), 0);
  fail_unless_equals_int(AgentPipeline::stat(a.bargein, "barge-ins"), 0);
  fail_unless_equals_int(a.count("barge-in"), 0);
  const GstStructure *rb = a.msg("realtime-barge-in");
  fail_unless(rb != nullptr, "the model's speech_started did not interrupt");
  assert_str(gst_structure_get_string(rb, "source"), "server-vad");
  check_clear_and_truncate(a, r);

  /* the clear released marks still pending at Twilio */
  gint64 on_clear = json_object_get_int_member(r.call(0), "marks_echoed_on_clear");
  fail_unless(on_clear >= 1, "nothing was queued at Twilio when the clear came");
  guint64 cleared = AgentPipeline::stat(a.sink, "marks-cleared");
  fail_unless(cleared >= static_cast<guint64>(on_clear), "%" G_GUINT64_FORMAT " cleared echoes seen of %" G_GINT64_FORMAT,
              cleared, on_clear);
  /* ... and the played position of the item did not jump with them: still
   * what the emulator played */
  const char *item = gst_structure_get_string(rb, "item-id");
  fail_unless(item && *item);
  guint64 played_now = a.heard_played_ms(item);
  double played = dmember(only_clear(r), "played_ms_at_clear");
  fail_unless(std::fabs(static_cast<double>(played_now) - played) <= 40.0,
              "twiliosink says %" G_GUINT64_FORMAT " ms of the item played, the caller heard %.0f ms", played_now,
              played);
  /* no pause: the caller heard the agent until the clear came */
  JsonObject *cl = only_clear(r);
  fail_unless(dmember(cl, "audio_stop_since_onset_ms") >= dmember(cl, "since_onset_ms") - 20.0);
}
GST_END_TEST;

static Suite *bargein_e2e_suite(void) {
  Suite *s = suite_create("bargein-e2e");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_caller_interrupts_the_greeting);
  tcase_add_test(tc, test_caller_interrupts_the_greeting_without_pause_clear);
  tcase_add_test(tc, test_caller_interrupts_the_greeting_on_a_media_thread);
  tcase_add_test(tc, test_cough_and_dtmf_do_not_interrupt);
  tcase_add_test(tc, test_echo_does_not_interrupt);
  tcase_add_test(tc, test_model_vad_mode_and_cleared_marks);
  return s;
}

GST_CHECK_MAIN(bargein_e2e);
