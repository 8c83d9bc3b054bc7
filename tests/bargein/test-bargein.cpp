/* gst-phone-agent: bargein with GstHarness on a test clock, fed synthesized
 * caller audio (speech-like voiced sound, espeak-ng speech, coughs, DTMF,
 * line noise). Downstream is the harness: it answers no phoneagent/heard
 * query unless a test installs one, so the agent counts as maybe speaking. */
#include <gst/check/gstharness.h>

#include <string>
#include <vector>

#include "../common/pa-check.h"
#include "bargein-signals.h"

namespace {
struct Seen {
  std::string name;
  GstStructure *s;
};

struct Fixture {
  GstHarness *h = nullptr;
  GstElement *el = nullptr; /* the bargein inside the harness's bin */
  GstBus *bus = nullptr;
  GstClockTime pts = 0;
  std::vector<Seen> events; /* the phoneagent/ events, in order */

  explicit Fixture(const char *props = "", bool mulaw = true) {
    std::string desc = std::string("bargein name=b ") + props;
    h = gst_harness_new_parse(desc.c_str());
    el = gst_bin_get_by_name(GST_BIN(h->element), "b");
    bus = gst_bus_new();
    gst_element_set_bus(h->element, bus);
    gst_harness_use_testclock(h);
    gst_harness_set_src_caps_str(h, mulaw ? "audio/x-mulaw, rate=8000, channels=1"
                                          : "audio/x-raw, format=S16LE, layout=interleaved, rate=8000, channels=1");
    mulaw_ = mulaw;
  }
  ~Fixture() {
    gst_object_unref(el);
    for (auto &e : events)
      gst_structure_free(e.s);
    gst_harness_teardown(h);
    gst_object_unref(bus);
  }
  /* pushes @x in 20 ms buffers, audio out must equal audio in */
  void push(const sig::Pcm &x) {
    const size_t chunk = sig::samples(20);
    std::vector<uint8_t> mu = sig::to_mulaw(x);
    std::vector<int16_t> s16 = sig::to_s16(x);
    for (size_t o = 0; o < x.size(); o += chunk) {
      size_t n = std::min(chunk, x.size() - o);
      GstBuffer *b = mulaw_ ? gst_buffer_new_memdup(mu.data() + o, n) : gst_buffer_new_memdup(s16.data() + o, n * 2);
      GST_BUFFER_PTS(b) = pts;
      GST_BUFFER_DURATION(b) = gst_util_uint64_scale(n, GST_SECOND, sig::kRate);
      pts += GST_BUFFER_DURATION(b);
      GstBuffer *copy = gst_buffer_copy(b);
      fail_unless_equals_int(gst_harness_push(h, b), GST_FLOW_OK);
      GstBuffer *out = gst_harness_pull(h);
      fail_unless(gst_buffer_memcmp(out, 0, map_data(copy).data(), gst_buffer_get_size(copy)) == 0,
                  "audio changed on its way through");
      gst_buffer_unref(out);
      gst_buffer_unref(copy);
      drain_events();
    }
  }
  std::vector<uint8_t> map_data(GstBuffer *b) {
    std::vector<uint8_t> v(gst_buffer_get_size(b));
    gst_buffer_extract(b, 0, v.data(), v.size());
    return v;
  }
  void drain_events() {
    while (GstEvent *e = gst_harness_try_pull_event(h)) {
      const GstStructure *s = gst_event_get_structure(e);
      if (s && g_str_has_prefix(gst_structure_get_name(s), "phoneagent/")) {
        fail_unless_equals_int(GST_EVENT_TYPE(e), GST_EVENT_CUSTOM_DOWNSTREAM_OOB);
        events.push_back({gst_structure_get_name(s), gst_structure_copy(s)});
      }
      gst_event_unref(e);
    }
  }
  std::string names() {
    std::string out;
    for (auto &e : events)
      out += (out.empty() ? "" : ",") + e.name.substr(strlen("phoneagent/"));
    return out;
  }
  const GstStructure *find(const char *name) {
    for (auto &e : events)
      if (e.name == name)
        return e.s;
    return nullptr;
  }
  /* element messages by name */
  std::vector<GstStructure *> messages(const char *name) {
    std::vector<GstStructure *> out;
    while (GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
      const GstStructure *s = gst_message_get_structure(m);
      if (gst_structure_has_name(s, name))
        out.push_back(gst_structure_copy(s));
      gst_message_unref(m);
    }
    return out;
  }
  guint64 stat(const char *field) {
    GstStructure *s = nullptr;
    g_object_get(el, "stats", &s, nullptr);
    guint64 v = 0;
    fail_unless(gst_structure_get_uint64(s, field, &v));
    gst_structure_free(s);
    return v;
  }

private:
  bool mulaw_ = true;
};

guint64 u64(const GstStructure *s, const char *f) {
  guint64 v = G_MAXUINT64;
  fail_unless(s && gst_structure_get_uint64(s, f, &v), "no field %s", f);
  return v;
}

/* 1 s of quiet line (-60 dBFS) so the noise floor is known */
sig::Pcm quiet_line(int ms = 1000) { return sig::noise(ms, -60, 42); }

void check_barge_in(Fixture &f, GstClockTime onset_expected, const char *what) {
  assert_str(f.names(), "pause,pause-clear,barge-in,resume");
  /* the voice is recognised as one soon after the onset: Twilio's queue is
   * emptied then (clear-voiced-ms of voiced sound), long before the
   * barge-in is confirmed */
  const GstStructure *pc = f.find("phoneagent/pause-clear");
  fail_unless(u64(pc, "running-time") <= u64(pc, "onset-running-time") + 100 * GST_MSECOND,
              "%s: pause-clear %" G_GUINT64_FORMAT " ms after the onset", what,
              (u64(pc, "running-time") - u64(pc, "onset-running-time")) / GST_MSECOND);
  const GstStructure *pause = f.find("phoneagent/pause");
  const GstStructure *bi = f.find("phoneagent/barge-in");
  const GstStructure *res = f.find("phoneagent/resume");
  guint64 onset = u64(bi, "onset-running-time"), decision = u64(bi, "decision-running-time");
  assert_str(gst_structure_get_string(bi, "source"), "local-vad");
  assert_str(gst_structure_get_string(pause, "source"), "bargein");
  assert_str(gst_structure_get_string(res, "reason"), "barge-in");
  fail_unless_equals_uint64(u64(pause, "onset-running-time"), onset);
  /* onset within 30 ms of where the sound starts (the first loud frame) */
  fail_unless(onset + 10 * GST_MSECOND >= onset_expected && onset <= onset_expected + 30 * GST_MSECOND,
              "%s: onset %" GST_TIME_FORMAT ", expected %" GST_TIME_FORMAT, what, GST_TIME_ARGS(onset),
              GST_TIME_ARGS(onset_expected));
  /* paused at once (onset-ms), decided after min-speech-ms of voiced speech */
  fail_unless(u64(pause, "running-time") <= onset + 40 * GST_MSECOND);
  fail_unless(decision >= onset + 200 * GST_MSECOND && decision <= onset + 500 * GST_MSECOND,
              "%s: reaction %" G_GUINT64_FORMAT " ms", what, (decision - onset) / GST_MSECOND);
  auto msgs = f.messages("barge-in");
  fail_unless_equals_int(msgs.size(), 1);
  fail_unless_equals_uint64(u64(msgs[0], "onset-running-time"), onset);
  fail_unless_equals_uint64(u64(msgs[0], "decision-running-time"), decision);
  assert_str(gst_structure_get_string(msgs[0], "reason"), "speech");
  for (auto *m : msgs)
    gst_structure_free(m);
}
} // namespace

GST_START_TEST(test_speech_pauses_then_barges_in) {
  for (bool mulaw : {true, false}) {
    Fixture f("", mulaw);
    sig::Pcm x = quiet_line();
    sig::mix(x, sig::voiced(1000, -20), 1000);
    sig::append(x, quiet_line(500));
    f.push(x);
    check_barge_in(f, GST_SECOND, mulaw ? "mu-law" : "S16LE");
    fail_unless_equals_uint64(f.stat("barge-ins"), 1);
    fail_unless_equals_uint64(f.stat("pauses"), 1);
  }
}
GST_END_TEST;

GST_START_TEST(test_speech_at_16khz) {
  GstHarness *h = gst_harness_new("bargein");
  gst_harness_use_testclock(h);
  gst_harness_set_src_caps_str(h, "audio/x-raw, format=S16LE, layout=interleaved, rate=16000, channels=1");
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::voiced(1000, -20), 1000);
  sig::append(x, quiet_line(500));
  /* 8 -> 16 kHz by linear interpolation (the band stays under 4 kHz) */
  std::vector<double> up(x.size() * 2);
  for (size_t i = 0; i < x.size(); i++) {
    up[2 * i] = x[i];
    up[2 * i + 1] = i + 1 < x.size() ? (x[i] + x[i + 1]) / 2 : x[i];
  }
  std::vector<int16_t> pcm = sig::to_s16(up);
  std::vector<std::string> names;
  guint64 onset = 0, decision = 0;
  for (size_t o = 0; o < pcm.size(); o += 320) {
    GstBuffer *b = gst_buffer_new_memdup(pcm.data() + o, 640);
    GST_BUFFER_PTS(b) = gst_util_uint64_scale(o, GST_SECOND, 16000);
    GST_BUFFER_DURATION(b) = 20 * GST_MSECOND;
    fail_unless_equals_int(gst_harness_push(h, b), GST_FLOW_OK);
    gst_buffer_unref(gst_harness_pull(h));
    while (GstEvent *e = gst_harness_try_pull_event(h)) {
      const GstStructure *s = gst_event_get_structure(e);
      if (s && g_str_has_prefix(gst_structure_get_name(s), "phoneagent/")) {
        names.push_back(gst_structure_get_name(s));
        if (gst_structure_has_name(s, "phoneagent/barge-in")) {
          gst_structure_get_uint64(s, "onset-running-time", &onset);
          gst_structure_get_uint64(s, "decision-running-time", &decision);
        }
      }
      gst_event_unref(e);
    }
  }
  gst_harness_teardown(h);
  fail_unless_equals_int(names.size(), 4);
  assert_str(names[1], "phoneagent/pause-clear");
  assert_str(names[2], "phoneagent/barge-in");
  fail_unless(onset >= GST_SECOND - 10 * GST_MSECOND && onset <= GST_SECOND + 30 * GST_MSECOND);
  fail_unless(decision >= onset + 200 * GST_MSECOND && decision <= onset + 500 * GST_MSECOND);
}
GST_END_TEST;

GST_START_TEST(test_espeak_speech_barges_in) {
  sig::Pcm speech = sig::espeak("Wait, stop, I have a question about my bill.", -20);
  if (speech.empty()) {
    GST_WARNING("espeak-ng not available: skipped");
    return;
  }
  /* espeak-ng starts with a little silence: find the first sample above -40 dBFS */
  size_t first = 0;
  while (first < speech.size() && std::fabs(speech[first]) < 328)
    first++;
  Fixture f;
  sig::Pcm x = quiet_line();
  sig::mix(x, speech, 1000);
  sig::append(x, quiet_line(500));
  f.push(x);
  check_barge_in(f, GST_SECOND + gst_util_uint64_scale(first, GST_SECOND, sig::kRate), "espeak-ng");
}
GST_END_TEST;

GST_START_TEST(test_cough_pauses_then_resumes) {
  Fixture f;
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::burst(100, -15), 1000);
  sig::append(x, quiet_line(500));
  f.push(x);
  assert_str(f.names(), "pause,resume");
  const GstStructure *res = f.find("phoneagent/resume");
  assert_str(gst_structure_get_string(res, "reason"), "too-short");
  /* resumed soon: burst + hangover */
  guint64 onset = u64(f.find("phoneagent/pause"), "onset-running-time");
  fail_unless(u64(res, "running-time") <= onset + 300 * GST_MSECOND);
  fail_unless(f.messages("barge-in").empty());
  fail_unless_equals_uint64(f.stat("rejected"), 1);
  fail_unless_equals_uint64(f.stat("barge-ins"), 0);
}
GST_END_TEST;

/* Every pause is let go (one resume each), and nothing is a barge-in. */
void check_no_barge_in(Fixture &f, const char *what) {
  unsigned pauses = 0, resumes = 0;
  for (auto &e : f.events) {
    fail_if(e.name == "phoneagent/barge-in", "%s: a barge-in (%s)", what, f.names().c_str());
    pauses += e.name == "phoneagent/pause";
    resumes += e.name == "phoneagent/resume";
  }
  fail_unless_equals_int(pauses, resumes);
  fail_unless(f.messages("barge-in").empty(), "%s", what);
  fail_unless_equals_uint64(f.stat("barge-ins"), 0);
}

GST_START_TEST(test_music_does_not_barge_in) {
  /* music-like notes (three clean harmonics of a constant F0) have a pitch
   * and the webrtc VAD takes them for voice: the tonality guard (periodicity
   * and linear prediction gain both high) keeps them from confirming, down
   * to -35 dBFS over a -62 dBFS line, where the line noise lowers the gain */
  Fixture f;
  sig::Pcm x = sig::noise(1000, -62, 40);
  for (int k = 0; k < 6; k++)
    sig::mix(x, sig::music(3000, -35 + 2 * k, 600 + k), 1000 + k * 4500);
  sig::append(x, sig::noise(1500, -62, 41));
  f.push(x);
  check_no_barge_in(f, "music");
  fail_unless(f.stat("pauses") >= 6); /* still paused at once, then let go */
}
GST_END_TEST;

GST_START_TEST(test_pink_hiss_and_rumble_do_not_barge_in) {
  /* low-frequency noise correlates at every short lag: the pitch is looked
   * for above 300 Hz, pre-emphasized */
  Fixture f;
  sig::Pcm x = sig::noise(1000, -62, 42);
  for (int k = 0; k < 5; k++)
    sig::mix(x, sig::pink(2000, -45 + 4 * k, 700 + k), 1000 + k * 3500); /* -45..-29 dBFS */
  for (int k = 0; k < 4; k++)
    sig::mix(x, sig::brown(2000, -36 + 5 * k, 800 + k), 18500 + k * 3500); /* -36..-21 dBFS */
  sig::append(x, sig::noise(1500, -62, 43));
  f.push(x);
  check_no_barge_in(f, "pink hiss, rumble");
  fail_unless(f.stat("pauses") >= 9);
}
GST_END_TEST;

GST_START_TEST(test_short_word_barges_in_when_it_ends) {
  /* 170 ms of voiced sound (a quiet "Stop." whose consonants stay under the
   * threshold) never reaches min-speech-ms of sound: it is judged, and
   * confirmed, once it has ended (hangover-ms of quiet) */
  Fixture f;
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::voiced(170, -22, 130), 1000);
  sig::append(x, quiet_line(600));
  f.push(x);
  check_barge_in(f, GST_SECOND, "short word");
  guint64 decision = u64(f.find("phoneagent/barge-in"), "decision-running-time");
  fail_unless(decision >= GST_SECOND + 270 * GST_MSECOND, "decided before the word ended");
  /* a cough as long is still let go */
  Fixture c;
  sig::Pcm y = quiet_line();
  sig::mix(y, sig::burst(180, -15), 1000);
  sig::append(y, quiet_line(600));
  c.push(y);
  assert_str(c.names(), "pause,resume");
}
GST_END_TEST;

GST_START_TEST(test_espeak_voices_over_pink_line_barge_in) {
  /* the guards keep real speech: espeak-ng voices at -30 dBFS over pink line
   * noise (the hardest of bench/bargein's e2e speech set) */
  const char *voices[] = {"en-us+f4", "en-gb-scotland", "en-029", "en+m1"};
  for (const char *v : voices) {
    sig::Pcm speech = sig::espeak("Hold on a second please.", -30, v, true);
    if (speech.empty()) {
      GST_WARNING("espeak-ng not available: skipped");
      return;
    }
    Fixture f;
    sig::Pcm x = sig::pink(1000, -56, 44);
    sig::mix(x, speech, 1000);
    sig::append(x, sig::pink(1000, -56, 45));
    f.push(x);
    /* en-029's first syllable is so clean a pitch that it looks tonal:
     * no pause-clear before the barge-in (whose clear comes then) */
    if (f.names() != "pause,barge-in,resume")
      assert_str(f.names(), "pause,pause-clear,barge-in,resume");
    guint64 onset = u64(f.find("phoneagent/barge-in"), "onset-running-time");
    guint64 decision = u64(f.find("phoneagent/barge-in"), "decision-running-time");
    fail_unless(onset <= GST_SECOND + 150 * GST_MSECOND, "%s: onset %" GST_TIME_FORMAT, v, GST_TIME_ARGS(onset));
    fail_unless(decision <= GST_SECOND + 600 * GST_MSECOND, "%s: decided %" GST_TIME_FORMAT, v,
                GST_TIME_ARGS(decision));
  }
}
GST_END_TEST;

GST_START_TEST(test_dtmf_is_ignored) {
  Fixture f;
  sig::Pcm x = quiet_line();
  /* keys 5, 9, #, 1 at a loud -8 dBFS per tone, 120 ms on, 80 ms off */
  const double keys[][2] = {{770, 1336}, {852, 1477}, {941, 1477}, {697, 1209}};
  for (auto &k : keys) {
    sig::append(x, sig::dtmf(120, k[0], k[1], -8));
    sig::append(x, quiet_line(80));
  }
  sig::append(x, quiet_line(500));
  f.push(x);
  assert_str(f.names(), "");
  fail_unless(f.stat("dtmf-frames") >= 30);
}
GST_END_TEST;

GST_START_TEST(test_line_noise_is_ignored) {
  /* steady hiss at -35 dBFS with 50 Hz hum, from the start */
  Fixture f;
  sig::Pcm x = sig::noise(4000, -35, 9);
  for (size_t i = 0; i < x.size(); i++)
    x[i] += 800 * std::sin(2 * M_PI * 50 * i / sig::kRate);
  f.push(x);
  assert_str(f.names(), "");
}
GST_END_TEST;

GST_START_TEST(test_noise_step_resumes) {
  /* digital silence (a gap twiliosrc filled), then hiss: the sudden sound
   * pauses the agent, but without a pitch it never becomes a barge-in */
  Fixture f;
  sig::Pcm x = sig::silence(1000);
  sig::append(x, sig::noise(5000, -35, 10));
  f.push(x);
  assert_str(f.names(), "pause,resume");
  const GstStructure *res = f.find("phoneagent/resume");
  assert_str(gst_structure_get_string(res, "reason"), "not-speech");
  fail_unless(u64(res, "running-time") <= 2100 * GST_MSECOND);
}
GST_END_TEST;

GST_START_TEST(test_model_mode_does_nothing) {
  Fixture f("mode=model");
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::voiced(1000, -20), 1000);
  f.push(x);
  assert_str(f.names(), "");
}
GST_END_TEST;

/* clear-voiced-ms=0: a voice pauses and barges in without pause-clear */
GST_START_TEST(test_no_pause_clear) {
  Fixture f("clear-voiced-ms=0");
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::voiced(400, -20, 110), 1000);
  sig::append(x, quiet_line(500));
  f.push(x);
  assert_str(f.names(), "pause,barge-in,resume");
  fail_unless_equals_uint64(f.stat("pause-clears"), 0);
}
GST_END_TEST;

GST_START_TEST(test_backchannel) {
  /* a 400 ms "mm-hm" pauses and resumes with backchannel on... */
  {
    Fixture f("backchannel=true backchannel-max-ms=600");
    sig::Pcm x = quiet_line();
    sig::mix(x, sig::voiced(400, -20, 110), 1000);
    sig::append(x, quiet_line(500));
    f.push(x);
    assert_str(f.names(), "pause,resume");
    assert_str(gst_structure_get_string(f.find("phoneagent/resume"), "reason"), "backchannel");
  }
  /* ...and is a barge-in without it */
  {
    Fixture f;
    sig::Pcm x = quiet_line();
    sig::mix(x, sig::voiced(400, -20, 110), 1000);
    sig::append(x, quiet_line(500));
    f.push(x);
    assert_str(f.names(), "pause,pause-clear,barge-in,resume");
  }
}
GST_END_TEST;

namespace {
GstPadQueryFunction harness_query = nullptr;
gboolean agent_silent_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_CUSTOM) {
    GstStructure *s = gst_query_writable_structure(query);
    if (s && gst_structure_has_name(s, "phoneagent/heard")) {
      /* twiliosink's answer when everything sent was played */
      gst_structure_set(s, "item-id", G_TYPE_STRING, "item_1", "played-ms", G_TYPE_UINT64, G_GUINT64_CONSTANT(1200),
                        "sent-ms", G_TYPE_UINT64, G_GUINT64_CONSTANT(1200), "known", G_TYPE_BOOLEAN, TRUE, nullptr);
      return TRUE;
    }
  }
  return harness_query(pad, parent, query);
}
} // namespace

gboolean agent_loud_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_CUSTOM) {
    GstStructure *s = gst_query_writable_structure(query);
    if (s && gst_structure_has_name(s, "phoneagent/heard")) {
      /* twiliosink while the agent speaks at -10 dBFS */
      gst_structure_set(s, "item-id", G_TYPE_STRING, "item_1", "played-ms", G_TYPE_UINT64, G_GUINT64_CONSTANT(800),
                        "sent-ms", G_TYPE_UINT64, G_GUINT64_CONSTANT(1000), "known", G_TYPE_BOOLEAN, TRUE, "level-db",
                        G_TYPE_DOUBLE, -10.0, nullptr);
      return TRUE;
    }
  }
  return harness_query(pad, parent, query);
}

GST_START_TEST(test_echo_of_the_agent_is_ignored) {
  /* the agent's voice coming back 30 dB down on average (its syllables peak
   * some 5 dB higher; echo-margin-db 20): nothing */
  {
    Fixture f;
    harness_query = GST_PAD_QUERYFUNC(f.h->sinkpad);
    gst_pad_set_query_function(f.h->sinkpad, agent_loud_query);
    sig::Pcm x = quiet_line();
    sig::mix(x, sig::voiced(1000, -40), 1000);
    sig::append(x, quiet_line(500));
    f.push(x);
    assert_str(f.names(), "");
  }
  /* the caller, louder than the echo can be: a barge-in */
  {
    Fixture f;
    harness_query = GST_PAD_QUERYFUNC(f.h->sinkpad);
    gst_pad_set_query_function(f.h->sinkpad, agent_loud_query);
    sig::Pcm x = quiet_line();
    sig::mix(x, sig::voiced(1000, -20), 1000);
    sig::append(x, quiet_line(500));
    f.push(x);
    check_barge_in(f, GST_SECOND, "caller over the agent");
  }
}
GST_END_TEST;

GST_START_TEST(test_agent_silent_no_barge_in) {
  Fixture f;
  harness_query = GST_PAD_QUERYFUNC(f.h->sinkpad);
  gst_pad_set_query_function(f.h->sinkpad, agent_silent_query);
  sig::Pcm x = quiet_line();
  sig::mix(x, sig::voiced(1000, -20), 1000);
  sig::append(x, quiet_line(500));
  f.push(x);
  assert_str(f.names(), "");
  fail_unless_equals_uint64(f.stat("ignored-bursts"), 1);
}
GST_END_TEST;

GST_START_TEST(test_eos_ends_a_pause) {
  Fixture f;
  sig::Pcm x = quiet_line();
  sig::append(x, sig::voiced(100, -20));
  f.push(x);
  assert_str(f.names(), "pause,pause-clear");
  gst_harness_push_event(f.h, gst_event_new_eos());
  f.drain_events();
  assert_str(f.names(), "pause,pause-clear,resume");
  assert_str(gst_structure_get_string(f.find("phoneagent/resume"), "reason"), "eos");
}
GST_END_TEST;

static Suite *bargein_suite(void) {
  Suite *s = suite_create("bargein");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_speech_pauses_then_barges_in);
  tcase_add_test(tc, test_speech_at_16khz);
  tcase_add_test(tc, test_espeak_speech_barges_in);
  tcase_add_test(tc, test_cough_pauses_then_resumes);
  tcase_add_test(tc, test_music_does_not_barge_in);
  tcase_add_test(tc, test_pink_hiss_and_rumble_do_not_barge_in);
  tcase_add_test(tc, test_short_word_barges_in_when_it_ends);
  tcase_add_test(tc, test_espeak_voices_over_pink_line_barge_in);
  tcase_add_test(tc, test_dtmf_is_ignored);
  tcase_add_test(tc, test_line_noise_is_ignored);
  tcase_add_test(tc, test_noise_step_resumes);
  tcase_add_test(tc, test_model_mode_does_nothing);
  tcase_add_test(tc, test_backchannel);
  tcase_add_test(tc, test_no_pause_clear);
  tcase_add_test(tc, test_agent_silent_no_barge_in);
  tcase_add_test(tc, test_echo_of_the_agent_is_ignored);
  tcase_add_test(tc, test_eos_ends_a_pause);
  return s;
}

GST_CHECK_MAIN(bargein);
