/* gst-phone-agent: twiliosrc with GstHarness, fed by a call with a test
 * transport (no network), on a test clock. */
#include <gst/base/gstbasesrc.h>
#include <gst/check/gstharness.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <vector>

#include "../common/pa-check.h"
#include "../common/pa-socket-call.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "twilio-protocol.h"

using namespace pa;
using namespace pa::twilio;

namespace {
struct Fixture {
  GstHarness *h = nullptr;
  PaCall *call = nullptr;
  GstBus *bus = nullptr;

  explicit Fixture(const char *caps = "audio/x-mulaw, rate=8000, channels=1", bool push = false) {
    call = pa_call_new(CallConfig());
    pa_call_set_test_transport(call, [](const std::string &) {}, nullptr);
    if (push)
      pa_call_set_push(call, TRUE); /* as the server does with media threads */
    h = gst_harness_new("twiliosrc");
    bus = gst_bus_new();
    gst_element_set_bus(h->element, bus);
    /* as the server does: the call comes through the context, no listener */
    GstContext *ctx = pa_call_context_new(call);
    gst_element_set_context(h->element, ctx);
    gst_context_unref(ctx);
    gst_harness_set_sink_caps_str(h, caps);
    gst_harness_use_testclock(h);
    gst_harness_play(h);
  }
  ~Fixture() {
    gst_harness_teardown(h);
    gst_object_unref(bus);
    g_object_unref(call);
  }
  void feed(const std::string &s) { pa_call_handle_text(call, s.data(), s.size()); }
  void start() {
    StartInfo si;
    si.stream_sid = "MZ1";
    si.call_sid = "CA1";
    si.account_sid = "AC1";
    si.tracks = {"inbound"};
    si.custom_parameters = {{"from", "+14155551212"}, {"to", "+15005550006"}, {"tenant", "acme"}};
    feed(build_connected());
    feed(build_start(1, si));
  }
  void media(int64_t ts, uint8_t fill, size_t n = 160) {
    std::vector<uint8_t> f(n, fill);
    feed(build_inbound_media(seq++, "MZ1", chunk++, ts, f.data(), f.size()));
  }
  GstStructure *pop_message(const char *name) {
    for (;;) {
      GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT);
      if (!m)
        return nullptr;
      const GstStructure *s = gst_message_get_structure(m);
      if (gst_structure_has_name(s, name)) {
        GstStructure *copy = gst_structure_copy(s);
        gst_message_unref(m);
        return copy;
      }
      gst_message_unref(m);
    }
  }
  int64_t seq = 2, chunk = 1;

  bool stat_bool(const char *name) {
    GstStructure *st;
    g_object_get(h->element, "stats", &st, nullptr);
    gboolean v = FALSE;
    gst_structure_get_boolean(st, name, &v);
    gst_structure_free(st);
    return v;
  }
  guint64 stat_u64(const char *name) {
    GstStructure *st;
    g_object_get(h->element, "stats", &st, nullptr);
    guint64 v = 0;
    gst_structure_get_uint64(st, name, &v);
    gst_structure_free(st);
    return v;
  }
  /* push mode: until the streaming thread parks (the feeding thread pushes) */
  void wait_parked() {
    for (int i = 0; i < 2000 && !stat_bool("parked"); i++)
      g_usleep(1000);
    fail_unless(stat_bool("parked"), "twiliosrc's streaming thread never parked");
  }
};

/* the threads buffers leave twiliosrc on */
struct ThreadLog {
  std::mutex lock;
  std::vector<GThread *> threads;
  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *, gpointer d) {
    auto *t = static_cast<ThreadLog *>(d);
    std::lock_guard<std::mutex> g(t->lock);
    t->threads.push_back(g_thread_self());
    return GST_PAD_PROBE_OK;
  }
  size_t on(GThread *thread) {
    std::lock_guard<std::mutex> g(lock);
    return static_cast<size_t>(std::count(threads.begin(), threads.end(), thread));
  }
};

void check_buffer(GstBuffer *b, GstClockTime pts, size_t size, uint8_t fill, bool gap) {
  fail_unless(b != nullptr);
  fail_unless_equals_uint64(GST_BUFFER_PTS(b), pts);
  fail_unless_equals_uint64(GST_BUFFER_DURATION(b), gst_util_uint64_scale(size, GST_SECOND, 8000));
  fail_unless_equals_int(gst_buffer_get_size(b), size);
  GstMapInfo map;
  gst_buffer_map(b, &map, GST_MAP_READ);
  for (size_t i = 0; i < map.size; i++)
    fail_unless_equals_int(map.data[i], fill);
  gst_buffer_unmap(b, &map);
  fail_unless_equals_int(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_GAP), gap);
  gst_buffer_unref(b);
}
} // namespace

GST_START_TEST(test_mulaw_passthrough_and_started_message) {
  Fixture f;
  f.start();
  f.media(0, 0x10);
  f.media(20, 0x20);
  f.media(40, 0x30);
  /* bit-exact, 20 ms apart from the first frame */
  check_buffer(gst_harness_pull(f.h), 0, 160, 0x10, false);
  check_buffer(gst_harness_pull(f.h), 20 * GST_MSECOND, 160, 0x20, false);
  check_buffer(gst_harness_pull(f.h), 40 * GST_MSECOND, 160, 0x30, false);

  GstStructure *s = f.pop_message("twilio-call-started");
  fail_unless(s != nullptr);
  assert_str(gst_structure_get_string(s, "call-sid"), "CA1");
  assert_str(gst_structure_get_string(s, "stream-sid"), "MZ1");
  assert_str(gst_structure_get_string(s, "from"), "+14155551212");
  assert_str(gst_structure_get_string(s, "to"), "+15005550006");
  const GstStructure *params = gst_value_get_structure(gst_structure_get_value(s, "custom-parameters"));
  assert_str(gst_structure_get_string(params, "tenant"), "acme");
  fail_unless(gst_structure_has_field(s, "running-time"));
  gst_structure_free(s);

  GstCaps *caps = gst_pad_get_current_caps(f.h->sinkpad);
  fail_unless(gst_structure_has_name(gst_caps_get_structure(caps, 0), "audio/x-mulaw"));
  gst_caps_unref(caps);

  /* downstream learns the call: phoneagent/call-info, serialized */
  bool call_info = false;
  while (GstEvent *e = gst_harness_try_pull_event(f.h)) {
    const GstStructure *ci = gst_event_get_structure(e);
    if (ci && gst_structure_has_name(ci, "phoneagent/call-info")) {
      fail_unless_equals_int(GST_EVENT_TYPE(e), GST_EVENT_CUSTOM_DOWNSTREAM);
      assert_str(gst_structure_get_string(ci, "call-sid"), "CA1");
      assert_str(gst_structure_get_string(ci, "stream-sid"), "MZ1");
      assert_str(gst_structure_get_string(ci, "account-sid"), "AC1");
      assert_str(gst_structure_get_string(ci, "from"), "+14155551212");
      assert_str(gst_structure_get_string(ci, "to"), "+15005550006");
      call_info = true;
    }
    gst_event_unref(e);
  }
  fail_unless(call_info);
}
GST_END_TEST;

GST_START_TEST(test_gaps_filled_with_silence) {
  Fixture f;
  f.start();
  f.media(0, 0x10);
  f.media(20, 0x20);
  f.media(100, 0x30); /* Twilio skipped 40..100 ms (silence suppression) */
  f.media(120, 0x40);
  check_buffer(gst_harness_pull(f.h), 0, 160, 0x10, false);
  check_buffer(gst_harness_pull(f.h), 20 * GST_MSECOND, 160, 0x20, false);
  for (int ms = 40; ms < 100; ms += 20)
    check_buffer(gst_harness_pull(f.h), ms * GST_MSECOND, 160, kMulawSilence, true);
  check_buffer(gst_harness_pull(f.h), 100 * GST_MSECOND, 160, 0x30, false);
  check_buffer(gst_harness_pull(f.h), 120 * GST_MSECOND, 160, 0x40, false);
  GstStructure *stats;
  g_object_get(f.h->element, "stats", &stats, nullptr);
  guint64 gaps = 0, gap_ms = 0;
  gst_structure_get_uint64(stats, "gaps-filled", &gaps);
  gst_structure_get_uint64(stats, "gap-fill-ms", &gap_ms);
  fail_unless_equals_uint64(gaps, 1);
  fail_unless_equals_uint64(gap_ms, 60);
  gst_structure_free(stats);
}
GST_END_TEST;

GST_START_TEST(test_duplicates_and_jitter) {
  Fixture f;
  f.start();
  f.media(0, 0x10);
  f.media(0, 0x11);  /* a duplicate: dropped */
  f.media(25, 0x20); /* 5 ms of jitter is not a gap: continues at 20 ms */
  f.media(45, 0x30);
  check_buffer(gst_harness_pull(f.h), 0, 160, 0x10, false);
  check_buffer(gst_harness_pull(f.h), 20 * GST_MSECOND, 160, 0x20, false);
  check_buffer(gst_harness_pull(f.h), 40 * GST_MSECOND, 160, 0x30, false);
}
GST_END_TEST;

GST_START_TEST(test_dtmf_and_stop) {
  Fixture f;
  f.start();
  f.media(0, 0x10);
  f.feed(build_dtmf(f.seq++, "MZ1", "5"));
  f.media(20, 0x20);
  f.feed(build_stop(f.seq++, "MZ1", "AC1", "CA1"));
  check_buffer(gst_harness_pull(f.h), 0, 160, 0x10, false);
  check_buffer(gst_harness_pull(f.h), 20 * GST_MSECOND, 160, 0x20, false);
  /* the dtmf went downstream in order, as a custom event */
  bool found = false, eos = false;
  while (GstEvent *ev = gst_harness_try_pull_event(f.h)) {
    eos |= GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    const GstStructure *s = gst_event_get_structure(ev);
    if (GST_EVENT_TYPE(ev) == GST_EVENT_CUSTOM_DOWNSTREAM && gst_structure_has_name(s, "phoneagent/dtmf")) {
      assert_str(gst_structure_get_string(s, "digit"), "5");
      found = true;
    }
    gst_event_unref(ev);
  }
  fail_unless(found);
  GstStructure *m = f.pop_message("twilio-dtmf");
  fail_unless(m != nullptr);
  assert_str(gst_structure_get_string(m, "digit"), "5");
  guint64 rt = 0;
  gst_structure_get_uint64(m, "running-time", &rt);
  fail_unless_equals_uint64(rt, 20 * GST_MSECOND); /* where it fell in the stream */
  gst_structure_free(m);
  /* stop -> EOS and a stopped message */
  for (int i = 0; i < 100 && !f.pop_message("twilio-call-stopped"); i++) {
    if (i == 99)
      fail("no twilio-call-stopped message");
    g_usleep(10000);
  }
  for (int i = 0; i < 200 && !eos; i++) {
    while (GstEvent *ev = gst_harness_try_pull_event(f.h)) {
      eos |= GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
      gst_event_unref(ev);
    }
    if (!eos)
      g_usleep(5000);
  }
  fail_unless(eos);
}
GST_END_TEST;

GST_START_TEST(test_socket_close_gives_eos) {
  Fixture f;
  f.start();
  f.media(0, 0x10);
  check_buffer(gst_harness_pull(f.h), 0, 160, 0x10, false);
  pa_call_handle_closed(f.call, 1006, "");
  GstStructure *m = nullptr;
  for (int i = 0; i < 200 && !(m = f.pop_message("twilio-call-stopped")); i++)
    g_usleep(5000);
  fail_unless(m != nullptr);
  assert_str(gst_structure_get_string(m, "reason"), "connection-lost");
  gst_structure_free(m);
}
GST_END_TEST;

GST_START_TEST(test_s16_output_resampled) {
  Fixture f("audio/x-raw, format=S16LE, layout=interleaved, rate=16000, channels=1");
  f.start();
  /* 1 s of a 500 Hz tone in μ-law */
  std::vector<int16_t> pcm(8000);
  for (int i = 0; i < 8000; i++)
    pcm[i] = static_cast<int16_t>(6000 * sin(2 * M_PI * 500 * i / 8000.0));
  std::vector<uint8_t> u(8000);
  mulaw_encode_block(pcm.data(), u.data(), u.size());
  for (int k = 0; k < 50; k++)
    f.feed(build_inbound_media(f.seq++, "MZ1", k + 1, k * 20, u.data() + k * 160, 160));
  std::vector<int16_t> out;
  GstClockTime last_end = 0;
  for (int k = 0; k < 50; k++) {
    GstBuffer *b = gst_harness_pull(f.h);
    /* continuous timestamps in the output domain */
    if (k)
      fail_unless_equals_uint64(GST_BUFFER_PTS(b), last_end);
    last_end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    const auto *s = reinterpret_cast<const int16_t *>(map.data);
    out.insert(out.end(), s, s + map.size / 2);
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  /* about twice the samples (the resampler holds back a few) */
  fail_unless(out.size() > 15800 && out.size() <= 16000, "%zu samples", out.size());
  int crossings = 0;
  for (size_t i = 400; i + 1 < out.size() - 400; i++)
    crossings += (out[i] < 0) != (out[i + 1] < 0);
  double seconds = (out.size() - 801) / 16000.0;
  double freq = crossings / 2.0 / seconds;
  fail_unless(fabs(freq - 500) < 10, "tone at %.1f Hz", freq);
}
GST_END_TEST;

GST_START_TEST(test_live_and_latency) {
  Fixture f;
  fail_unless(gst_base_src_is_live(GST_BASE_SRC(f.h->element)));
  GstQuery *q = gst_query_new_latency();
  fail_unless(gst_element_query(f.h->element, q));
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(q, &live, &min, &max);
  fail_unless(live);
  fail_unless_equals_uint64(min, 20 * GST_MSECOND);
  gst_query_unref(q);
}
GST_END_TEST;


/* Push mode (the server's media threads): after the first buffer, the
 * thread that hands the call its frames (here the test's, in the server a
 * media thread) pushes them downstream itself while twiliosrc's streaming
 * thread stays parked; content, timestamps and order are as in pull mode. */
GST_START_TEST(test_push_mode_pushes_on_the_reading_thread) {
  Fixture f("audio/x-mulaw, rate=8000, channels=1", true);
  ThreadLog log;
  GstPad *src = gst_element_get_static_pad(f.h->element, "src");
  gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, ThreadLog::probe, &log, nullptr);
  f.start();
  f.media(0, 1);
  check_buffer(gst_harness_pull(f.h), 0, 160, 1, false);
  fail_unless(f.stat_bool("push-mode"));
  fail_unless_equals_int(log.on(g_thread_self()), 0); /* the first one: basesrc's thread */
  for (int k = 1; k < 50; k++) {
    f.wait_parked();
    f.media(k * 20, static_cast<uint8_t>(k + 1));
    /* pushed before the feed returned, on this thread */
    fail_unless_equals_int(log.on(g_thread_self()), k);
    check_buffer(gst_harness_pull(f.h), k * 20 * GST_MSECOND, 160, static_cast<uint8_t>(k + 1), false);
  }
  fail_unless_equals_uint64(f.stat_u64("media-thread-buffers"), 49);
  /* the end still comes out as EOS (basesrc's thread pushes it) */
  f.feed(build_stop(f.seq++, "MZ1", "AC1", "CA1"));
  bool eos = false;
  for (int i = 0; i < 400 && !eos; i++) {
    while (GstEvent *ev = gst_harness_try_pull_event(f.h)) {
      eos |= GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
      gst_event_unref(ev);
    }
    if (!eos)
      g_usleep(5000);
  }
  fail_unless(eos, "no EOS after stop in push mode");
  gst_object_unref(src);
}
GST_END_TEST;

/* Push mode on a real media thread, with frames already queued when the
 * pipeline starts (they came while it was being built): after the first
 * buffer the streaming thread parks at once and the media thread pushes
 * the backlog, in order; the streaming thread does not take it frame by
 * frame (on a busy machine it could then stay behind for good). */
GST_START_TEST(test_push_mode_media_thread_takes_the_backlog) {
  auto loop = pa_check_media_loop();
  int peer = -1;
  PaCall *call = pa_check_socket_call(*loop, &peer);
  pa_call_set_push(call, TRUE);
  const uint8_t mask[4] = {1, 2, 3, 4};
  auto send_text = [&](const std::string &text) {
    std::string wire;
    ws::append_frame(wire, ws::Opcode::Text, text, mask);
    fail_unless(::send(peer, wire.data(), wire.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(wire.size()));
  };
  StartInfo si;
  si.stream_sid = "MZ9";
  si.call_sid = "CA9";
  send_text(build_start(1, si));
  const int n = 10;
  for (int k = 0; k < n; k++) {
    std::vector<uint8_t> f(160, static_cast<uint8_t>(k + 1));
    send_text(build_inbound_media(2 + k, "MZ9", k + 1, k * 20, f.data(), f.size()));
  }
  auto received = [call] {
    GstStructure *st = pa_call_get_stats(call);
    guint64 v = 0;
    gst_structure_get_uint64(st, "media-frames-received", &v);
    gst_structure_free(st);
    return v;
  };
  for (int i = 0; i < 400 && received() < n; i++)
    g_usleep(5000);
  fail_unless_equals_uint64(received(), n);

  GstHarness *h = gst_harness_new("twiliosrc");
  GstContext *ctx = pa_call_context_new(call);
  gst_element_set_context(h->element, ctx);
  gst_context_unref(ctx);
  std::atomic<int> on_media_thread{0};
  GstPad *pad = gst_element_get_static_pad(h->element, "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, [](GstPad *, GstPadProbeInfo *, gpointer d) -> GstPadProbeReturn {
    if (pa::on_media_thread())
      (*static_cast<std::atomic<int> *>(d))++;
    return GST_PAD_PROBE_OK;
  }, &on_media_thread, nullptr);
  gst_object_unref(pad);
  gst_harness_set_sink_caps_str(h, "audio/x-mulaw, rate=8000, channels=1");
  gst_harness_use_systemclock(h);
  gst_harness_play(h);
  GstClockTime pts0 = GST_CLOCK_TIME_NONE;
  for (int k = 0; k < n; k++) {
    GstBuffer *b = gst_harness_pull(h);
    fail_unless(b != nullptr);
    if (k == 0)
      pts0 = GST_BUFFER_PTS(b);
    check_buffer(b, pts0 + k * 20 * GST_MSECOND, 160, static_cast<uint8_t>(k + 1), false);
  }
  fail_unless_equals_int(on_media_thread.load(), n - 1);
  gst_harness_teardown(h);
  loop.reset();
  g_object_unref(call);
  close(peer);
}
GST_END_TEST;

/* Push mode across PLAYING -> PAUSED -> PLAYING: what arrives while paused
 * waits, nothing is pushed in PAUSED, then everything comes out in order
 * and the feeding thread takes over again. */
GST_START_TEST(test_push_mode_pause_and_resume) {
  Fixture f("audio/x-mulaw, rate=8000, channels=1", true);
  f.start();
  f.media(0, 1);
  check_buffer(gst_harness_pull(f.h), 0, 160, 1, false);
  f.wait_parked();
  f.media(20, 2);
  check_buffer(gst_harness_pull(f.h), 20 * GST_MSECOND, 160, 2, false);
  fail_unless_equals_int(gst_element_set_state(f.h->element, GST_STATE_PAUSED), GST_STATE_CHANGE_NO_PREROLL);
  fail_unless(!f.stat_bool("parked"));
  guint received = gst_harness_buffers_received(f.h);
  for (int k = 2; k < 6; k++)
    f.media(k * 20, static_cast<uint8_t>(k + 1));
  g_usleep(20000);
  fail_unless_equals_int(gst_harness_buffers_received(f.h), received); /* nothing in PAUSED */
  gst_harness_play(f.h);
  for (int k = 2; k < 6; k++)
    check_buffer(gst_harness_pull(f.h), k * 20 * GST_MSECOND, 160, static_cast<uint8_t>(k + 1), false);
  f.wait_parked();
  guint64 before = f.stat_u64("media-thread-buffers");
  f.media(120, 7);
  check_buffer(gst_harness_pull(f.h), 120 * GST_MSECOND, 160, 7, false);
  fail_unless_equals_uint64(f.stat_u64("media-thread-buffers"), before + 1);
}
GST_END_TEST;

/* Push mode: a push that waits downstream (here a probe sleeping 80 ms)
 * holds up the media thread, and twiliosrc says so once, naming the cause */
GST_START_TEST(test_push_mode_warns_about_a_slow_push) {
  Fixture f("audio/x-mulaw, rate=8000, channels=1", true);
  f.start();
  f.media(0, 1);
  check_buffer(gst_harness_pull(f.h), 0, 160, 1, false);
  GstPad *src = gst_element_get_static_pad(f.h->element, "src");
  gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, [](GstPad *, GstPadProbeInfo *, gpointer) -> GstPadProbeReturn {
    g_usleep(80 * 1000);
    return GST_PAD_PROBE_OK;
  }, nullptr, nullptr);
  for (int k = 1; k < 3; k++) {
    f.wait_parked();
    f.media(k * 20, static_cast<uint8_t>(k + 1));
    check_buffer(gst_harness_pull(f.h), k * 20 * GST_MSECOND, 160, static_cast<uint8_t>(k + 1), false);
  }
  int warnings = 0;
  while (GstMessage *m = gst_bus_pop_filtered(f.bus, GST_MESSAGE_WARNING)) {
    GError *err = nullptr;
    gst_message_parse_warning(m, &err, nullptr);
    fail_unless(strstr(err->message, "media thread shared with other calls") != nullptr, "%s", err->message);
    g_error_free(err);
    gst_message_unref(m);
    warnings++;
  }
  fail_unless_equals_int(warnings, 1);
  gst_object_unref(src);
}
GST_END_TEST;

/* Push mode in a real pipeline that pauses and plays again: a sink in
 * PAUSED waits for preroll, and the feeding thread (in the server, a media
 * thread other calls share) must not wait there: once the pipeline is
 * paused the feed returns at once, the streaming thread takes over, and
 * after PLAYING again everything comes out. (The window while the state
 * change is under way, sink already PAUSED and twiliosrc still PLAYING,
 * is covered by twiliosrc checking the pipeline's target state before
 * each push; this test does not reach into that window.) */
GST_START_TEST(test_push_mode_stops_pushing_when_the_pipeline_pauses) {
  PaCall *call = pa_call_new(CallConfig());
  pa_call_set_test_transport(call, [](const std::string &) {}, nullptr);
  pa_call_set_push(call, TRUE);
  GstElement *pipeline = gst_parse_launch("twiliosrc name=src ! fakesink name=sink sync=false signal-handoffs=true",
                                          nullptr);
  fail_unless(pipeline != nullptr);
  GstContext *ctx = pa_call_context_new(call);
  gst_element_set_context(pipeline, ctx);
  gst_context_unref(ctx);
  GstElement *src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  std::atomic<int> handoffs{0};
  g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement *, GstBuffer *, GstPad *, gpointer d) {
                     (*static_cast<std::atomic<int> *>(d))++;
                   }),
                   &handoffs);
  auto wait_for = [](const std::function<bool()> &done) {
    for (int i = 0; i < 2000 && !done(); i++)
      g_usleep(1000);
    return done();
  };
  auto parked = [src] {
    GstStructure *st;
    g_object_get(src, "stats", &st, nullptr);
    gboolean v = FALSE;
    gst_structure_get_boolean(st, "parked", &v);
    gst_structure_free(st);
    return v != FALSE;
  };
  int64_t seq = 2;
  auto media = [&](int64_t ts) {
    std::vector<uint8_t> f(160, 0x55);
    std::string m = build_inbound_media(seq++, "MZ1", ts / 20 + 1, ts, f.data(), f.size());
    pa_call_handle_text(call, m.data(), m.size());
  };
  StartInfo si;
  si.stream_sid = "MZ1";
  si.call_sid = "CA1";
  si.account_sid = "AC1";
  std::string start = build_start(1, si);
  fail_unless(gst_element_set_state(pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  pa_call_handle_text(call, start.data(), start.size());
  media(0);
  fail_unless(wait_for([&] { return handoffs == 1; }));
  fail_unless(wait_for(parked));
  media(20);
  fail_unless_equals_int(handoffs.load(), 2); /* pushed by this thread */

  gst_element_set_state(pipeline, GST_STATE_PAUSED);
  auto feed = std::async(std::launch::async, [&] { media(40); });
  fail_unless(feed.wait_for(std::chrono::seconds(2)) == std::future_status::ready,
              "the feeding thread waited in a paused sink");
  fail_unless(!parked());
  fail_unless(gst_element_set_state(pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  fail_unless(wait_for([&] { return handoffs == 3; }), "%d buffers after PLAYING again", handoffs.load());
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  g_object_unref(call);
}
GST_END_TEST;

static Suite *twiliosrc_suite(void) {
  Suite *s = suite_create("twiliosrc");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_mulaw_passthrough_and_started_message);
  tcase_add_test(tc, test_gaps_filled_with_silence);
  tcase_add_test(tc, test_duplicates_and_jitter);
  tcase_add_test(tc, test_dtmf_and_stop);
  tcase_add_test(tc, test_socket_close_gives_eos);
  tcase_add_test(tc, test_s16_output_resampled);
  tcase_add_test(tc, test_live_and_latency);
  tcase_add_test(tc, test_push_mode_pushes_on_the_reading_thread);
  tcase_add_test(tc, test_push_mode_media_thread_takes_the_backlog);
  tcase_add_test(tc, test_push_mode_pause_and_resume);
  tcase_add_test(tc, test_push_mode_warns_about_a_slow_push);
  tcase_add_test(tc, test_push_mode_stops_pushing_when_the_pipeline_pauses);
  return s;
}

GST_CHECK_MAIN(twiliosrc);
