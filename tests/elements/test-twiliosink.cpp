/* gst-phone-agent: twiliosink with GstHarness on a test clock, writing to a
 * call with a test transport (no network). */
#include <gst/check/gstharness.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <thread>

#include "../common/pa-check.h"
#include "../common/pa-socket-call.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "pa-websocket.h"
#include "twilio-protocol.h"

using namespace pa;
using namespace pa::twilio;

namespace {
/* the level of a steady μ-law code, dBFS */
double dbfs(uint8_t code) { return 20.0 * std::log10(std::abs(mulaw_decode(code)) / 32768.0); }

/* a buffer of @bytes, each byte @fill */
GstBuffer *filled_bytes(size_t bytes, uint8_t fill) {
  GstBuffer *b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
  gst_buffer_memset(b, 0, fill, bytes);
  return b;
}
/* @ms of μ-law at 8 kHz, each byte @fill */
GstBuffer *filled(int ms, uint8_t fill) { return filled_bytes(static_cast<size_t>(ms) * 8, fill); }

struct Fixture {
  GstHarness *h = nullptr;
  PaCall *call = nullptr;
  GstBus *bus = nullptr;
  std::mutex lock;
  std::vector<OutboundMessage> sent;
  std::vector<gushort> closes;

  explicit Fixture(guint lead = 100, const char *caps = "audio/x-mulaw, rate=8000, channels=1") {
    call = pa_call_new(CallConfig());
    pa_call_set_test_transport(
        call,
        [this](const std::string &s) {
          OutboundMessage o;
          std::string err;
          fail_unless(parse_outbound(s, o, err) == ParseResult::Ok, "sent something Twilio rejects: %s", err.c_str());
          std::lock_guard<std::mutex> g(lock);
          sent.push_back(o);
        },
        [this](gushort code, const std::string &) {
          std::lock_guard<std::mutex> g(lock);
          closes.push_back(code);
        });
    StartInfo si;
    si.stream_sid = "MZ7";
    si.call_sid = "CA7";
    feed(build_start(1, si));
    /* the harness plays a sink as soon as it wraps it: give it its call first */
    GstElement *sink = gst_element_factory_make("twiliosink", nullptr);
    bus = gst_bus_new();
    gst_element_set_bus(sink, bus);
    GstContext *ctx = pa_call_context_new(call);
    gst_element_set_context(sink, ctx);
    gst_context_unref(ctx);
    /* min-lead off: these tests time each frame; test_min_lead_* set it */
    g_object_set(sink, "lead", lead, "min-lead", 0u, nullptr);
    h = gst_harness_new_with_element(sink, "sink", nullptr);
    gst_object_unref(sink);
    gst_harness_use_testclock(h);
    gst_harness_set_src_caps_str(h, caps);
  }
  ~Fixture() {
    gst_harness_teardown(h);
    gst_object_unref(bus);
    g_object_unref(call);
  }
  void feed(const std::string &s) { pa_call_handle_text(call, s.data(), s.size()); }
  size_t count(Event e) {
    std::lock_guard<std::mutex> g(lock);
    size_t n = 0;
    for (auto &o : sent)
      n += o.event == e;
    return n;
  }
  std::vector<OutboundMessage> snapshot() {
    std::lock_guard<std::mutex> g(lock);
    return sent;
  }
  /* pushes @ms of audio of byte @fill from this thread */
  GstFlowReturn push(int ms, uint8_t fill) { return gst_harness_push(h, filled(ms, fill)); }
  /* the same from a thread (render blocks on the lead) */
  std::thread push_async(int ms, uint8_t fill) {
    GstBuffer *b = filled(ms, fill);
    return std::thread([this, b] { gst_harness_push(h, b); });
  }
  /* the first byte of each media message sent after the first clear */
  std::vector<int> fills_after_clear() {
    std::vector<int> fills;
    bool past_clear = false;
    for (auto &o : snapshot()) {
      past_clear = past_clear || o.event == Event::Clear;
      if (past_clear && o.event == Event::Media)
        fills.push_back(o.payload[0]);
    }
    return fills;
  }
  void echo_all_marks() {
    for (auto &o : snapshot())
      if (o.event == Event::Mark)
        feed(build_mark_echo(99, "MZ7", o.mark_name));
  }
};

GstStructure *heard(GstHarness *h, const char *item) {
  GstStructure *s = gst_structure_new("phoneagent/heard", nullptr, nullptr);
  if (item)
    gst_structure_set(s, "item-id", G_TYPE_STRING, item, nullptr);
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM, s);
  fail_unless(gst_pad_peer_query(h->srcpad, q));
  GstStructure *out = gst_structure_copy(gst_query_get_structure(q));
  gst_query_unref(q);
  return out;
}

guint64 u64(const GstStructure *s, const char *f) {
  guint64 v = 0;
  fail_unless(gst_structure_get_uint64(s, f, &v), "no field %s", f);
  return v;
}
} // namespace

GST_START_TEST(test_lead_bounds_what_is_queued) {
  Fixture f(100);
  std::thread t = f.push_async(400, 0x42); /* 20 frames at once */
  /* at time 0 it may send up to the lead: frames for 0..100 ms (6 frames) */
  fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
  fail_unless_equals_int(f.count(Event::Media), 6);
  /* it sleeps until half the lead has played (70 ms), then tops the queue
   * up to the lead again: three frames per wake-up, never more than the
   * lead (plus the frame that crosses it) queued, never less than half */
  GstTestClock *clock = gst_harness_get_testclock(f.h);
  for (int i = 1; i <= 4; i++) {
    fail_unless(gst_harness_crank_single_clock_wait(f.h));
    fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
    int sent = f.count(Event::Media);
    fail_unless_equals_int(sent, 6 + 3 * i);
    GstClockTime now = gst_clock_get_time(GST_CLOCK(clock));
    fail_unless_equals_uint64(now, (70 + 60 * (i - 1)) * GST_MSECOND);
    GstClockTime queued = sent * 20 * GST_MSECOND - now;
    fail_unless(queued <= 120 * GST_MSECOND && queued >= 50 * GST_MSECOND, "%" GST_TIME_FORMAT " queued",
                GST_TIME_ARGS(queued));
  }
  gst_object_unref(clock);
  /* run the rest out */
  while (f.count(Event::Media) < 20) {
    gst_harness_crank_single_clock_wait(f.h);
    gst_harness_wait_for_clock_id_waits(f.h, 1, 1);
  }
  t.join();
  /* every media message: 160 bytes, our streamSid, exactly Twilio's fields */
  for (auto &o : f.snapshot()) {
    assert_str(o.stream_sid, "MZ7");
    if (o.event == Event::Media) {
      fail_unless_equals_int(o.payload.size(), 160);
      fail_unless_equals_int(o.payload[0], 0x42);
    }
  }
  /* a mark after each 20 ms frame (mark-interval=20) */
  fail_unless_equals_int(f.count(Event::Mark), 20);
}
GST_END_TEST;

/* min-lead: when Twilio's buffer is empty, audio that comes in real time
 * (an echo's frame by frame) is gathered until there is min-lead of it, or
 * until the first of it has waited that long, so that Twilio starts with
 * that much and a frame that comes up to min-lead - 20 ms late still finds
 * audio playing. Audio that comes faster than real time starts at once. */
GST_START_TEST(test_min_lead_gathers_audio_for_an_empty_twilio) {
  Fixture f(200);
  g_object_set(f.h->element, "min-lead", 40u, nullptr);
  GstTestClock *clock = gst_harness_get_testclock(f.h);
  /* one 20 ms frame at time 0, nothing playing: it waits until 40 ms */
  std::thread t = f.push_async(20, 0x41);
  fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
  fail_unless_equals_int(f.count(Event::Media), 0);
  fail_unless_equals_uint64(gst_test_clock_get_next_entry_time(clock), 40 * GST_MSECOND);
  fail_unless(gst_harness_crank_single_clock_wait(f.h));
  t.join();
  fail_unless_equals_int(f.count(Event::Media), 1);
  /* the frame that waited upstream meanwhile follows at once: Twilio now
   * holds 40 ms (until 80 ms), not 20 */
  fail_unless_equals_int(f.push(20, 0x42), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 2);
  /* so a frame 15 ms late (at 75 ms, the next was due at 60) is still
   * played without a gap: sent at once */
  gst_test_clock_set_time(clock, 75 * GST_MSECOND);
  fail_unless_equals_int(f.push(20, 0x43), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 3);
  /* Twilio ran empty (at 100 ms); 40 ms at once (a model's reply) starts at
   * once, with no wait */
  gst_test_clock_set_time(clock, 200 * GST_MSECOND);
  fail_unless_equals_int(f.push(40, 0x44), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 5);
  /* min-lead 0: a lone frame goes at once */
  g_object_set(f.h->element, "min-lead", 0u, nullptr);
  gst_test_clock_set_time(clock, 400 * GST_MSECOND);
  fail_unless_equals_int(f.push(20, 0x45), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 6);
  std::vector<int> fills;
  for (auto &o : f.snapshot())
    if (o.event == Event::Media)
      fills.push_back(o.payload[0]);
  fail_unless(fills == std::vector<int>({0x41, 0x42, 0x43, 0x44, 0x44, 0x45}), "audio out of order");
  gst_object_unref(clock);
}
GST_END_TEST;

/* A buffer list (realtimemodel pushes a model delta's frames as one) is
 * held whole before sending: frames are cut across its buffers, in order. */
GST_START_TEST(test_buffer_list_sent_in_order) {
  Fixture f(10000);
  GstBufferList *list = gst_buffer_list_new();
  const size_t sizes[] = {100, 300, 240};
  const uint8_t fills[] = {0x11, 0x22, 0x33};
  std::vector<uint8_t> expect;
  for (int i = 0; i < 3; i++) {
    GstBuffer *b = filled_bytes(sizes[i], fills[i]);
    gst_buffer_list_add(list, b);
    expect.insert(expect.end(), sizes[i], fills[i]);
  }
  fail_unless_equals_int(gst_pad_push_list(f.h->srcpad, list), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 4); /* 640 bytes: four 20 ms frames */
  std::vector<uint8_t> got;
  for (auto &o : f.snapshot())
    if (o.event == Event::Media)
      got.insert(got.end(), o.payload.begin(), o.payload.end());
  fail_unless(got == expect, "the list's audio went out changed or out of order");
}
GST_END_TEST;

GST_START_TEST(test_frames_are_whole_and_eos_pads) {
  Fixture f(10000);
  g_object_set(f.h->element, "frame-ms", 40, nullptr);
  GstBuffer *b = filled_bytes(100, 0x42); /* 12.5 ms: less than a frame */
  fail_unless_equals_int(gst_harness_push(f.h, b), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 0); /* held until a whole frame */
  b = filled_bytes(300, 0x43);
  fail_unless_equals_int(gst_harness_push(f.h, b), GST_FLOW_OK);
  fail_unless_equals_int(f.count(Event::Media), 1); /* 320 of 400 bytes out, as one 40 ms frame */
  /* EOS: the 80-byte tail is padded to 160 with silence, then we wait for the echo */
  std::thread t([&f] { gst_harness_push_event(f.h, gst_event_new_eos()); });
  for (int i = 0; i < 500 && f.count(Event::Mark) < 2; i++)
    g_usleep(2000);
  auto s = f.snapshot();
  fail_unless_equals_int(f.count(Event::Media), 2);
  const OutboundMessage *tail = nullptr;
  for (auto &o : s)
    if (o.event == Event::Media)
      tail = &o;
  fail_unless_equals_int(tail->payload.size(), 160);
  fail_unless_equals_int(tail->payload[79], 0x43);
  fail_unless_equals_int(tail->payload[80], kMulawSilence);
  fail_unless_equals_int(f.closes.size(), 0); /* not closed before Twilio played it */
  f.echo_all_marks();
  t.join();
  fail_unless_equals_int(f.closes.size(), 1);
  fail_unless_equals_int(f.closes[0], 1000);
}
GST_END_TEST;

GST_START_TEST(test_clear_event_discards_and_heard_query) {
  Fixture f(100);
  gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_A", nullptr)));
  std::thread t = f.push_async(1000, 0x42);
  fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
  fail_unless_equals_int(f.count(Event::Media), 6);
  /* Twilio played 3 frames */
  auto s = f.snapshot();
  int echoed = 0;
  for (auto &o : s)
    if (o.event == Event::Mark && echoed < 3) {
      f.feed(build_mark_echo(50 + echoed, "MZ7", o.mark_name));
      echoed++;
    }
  GstStructure *hq = heard(f.h, "item_A");
  assert_str(gst_structure_get_string(hq, "item-id"), "item_A");
  fail_unless_equals_uint64(u64(hq, "played-ms"), 60);
  fail_unless_equals_uint64(u64(hq, "sent-ms"), 120);
  /* the agent's level, for bargein's echo guard: the RMS of the last 100 ms
   * sent, all of it μ-law 0x42 here */
  gdouble level = 0;
  fail_unless(gst_structure_get_double(hq, "level-db", &level));
  fail_unless(std::fabs(level - dbfs(0x42)) < 0.01, "level %f, want %f", level, dbfs(0x42));
  gst_structure_free(hq);

  /* barge-in: clear overtakes the queued audio, the blocked render gives up */
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
      gst_structure_new("phoneagent/clear", "reason", G_TYPE_STRING, "barge-in", nullptr))));
  t.join();
  auto after = f.snapshot();
  fail_unless(after.back().event == Event::Clear);
  fail_unless_equals_int(f.count(Event::Media), 6); /* nothing of the old response after clear */
  /* late echoes of the cleared marks do not count as played */
  f.echo_all_marks();
  hq = heard(f.h, nullptr);
  /* the clear kept what was heard until then: the three echoed frames and
   * what played on since the third echo (the time between it and the
   * clear), never past the fourth frame's mark, whose echo had not come */
  guint64 played = u64(hq, "played-ms");
  fail_unless(played >= 60 && played <= 80, "played %" G_GUINT64_FORMAT " ms", played);
  fail_unless_equals_uint64(u64(hq, "heard-ms"), played);
  fail_unless_equals_uint64(u64(hq, "sent-ms"), played);
  guint gen = 0;
  gst_structure_get_uint(hq, "generation", &gen);
  fail_unless_equals_int(gen, 1);
  /* nothing sent since the clear: no agent level */
  fail_unless(gst_structure_get_double(hq, "level-db", &level));
  fail_unless_equals_float(level, -100.0);
  gst_structure_free(hq);
  /* the rest of the cleared item, still in flight, is dropped */
  GstBuffer *b = filled_bytes(160, 0x42);
  gst_harness_push(f.h, b);
  fail_unless_equals_int(f.count(Event::Media), 6);
  /* a new item plays again */
  gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_B", nullptr)));
  b = filled_bytes(160, 0x44);
  gst_harness_push(f.h, b);
  fail_unless_equals_int(f.count(Event::Media), 7);
  /* the level is that of the one frame sent since the clear */
  hq = heard(f.h, nullptr);
  fail_unless(gst_structure_get_double(hq, "level-db", &level));
  fail_unless(std::fabs(level - dbfs(0x44)) < 0.01, "level %f, want %f", level, dbfs(0x44));
  gst_structure_free(hq);
  /* the clear was announced on the bus */
  bool msg = false;
  while (GstMessage *m = gst_bus_pop_filtered(f.bus, GST_MESSAGE_ELEMENT)) {
    msg |= gst_structure_has_name(gst_message_get_structure(m), "twilio-clear");
    gst_message_unref(m);
  }
  fail_unless(msg);
}
GST_END_TEST;

GST_START_TEST(test_clear_action_signal) {
  Fixture f(1000);
  GstBuffer *b = filled_bytes(320, 0x42);
  gst_harness_push(f.h, b);
  g_signal_emit_by_name(f.h->element, "clear");
  auto s = f.snapshot();
  fail_unless(s.back().event == Event::Clear);
  assert_str(s.back().stream_sid, "MZ7");
  /* without items (the echo agent), audio keeps flowing after a clear */
  b = filled_bytes(160, 0x42);
  gst_harness_push(f.h, b);
  fail_unless(f.snapshot().back().event == Event::Mark);
  fail_unless_equals_int(f.count(Event::Media), 3);
}
GST_END_TEST;

GST_START_TEST(test_s16_input_converted) {
  Fixture f(10000, "audio/x-raw, format=S16LE, layout=interleaved, rate=24000, channels=1");
  g_object_set(f.h->element, "eos-timeout", 0, nullptr);
  /* 200 ms of silence at 24 kHz -> about 10 frames of μ-law silence */
  GstBuffer *b = filled_bytes(24000 / 5 * 2, 0);
  gst_harness_push(f.h, b);
  gst_harness_push_event(f.h, gst_event_new_eos());
  /* EOS waits for echoes: none come, eos-timeout 0 lets it go */
  size_t media = f.count(Event::Media);
  fail_unless(media >= 9 && media <= 10, "%zu frames", media);
  for (auto &o : f.snapshot())
    if (o.event == Event::Media)
      fail_unless_equals_int(o.payload[0], kMulawSilence);
}
GST_END_TEST;

namespace {
GstEvent *oob(const char *name) {
  return gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB, gst_structure_new_empty(name));
}
} // namespace

GST_START_TEST(test_pause_holds_and_resume_sends_in_order) {
  Fixture f(10000); /* no lead waits: only the pause holds audio back */
  g_object_set(f.h->element, "pause-clears", FALSE, nullptr); /* a plain pause */
  gst_harness_push(f.h, filled(40, 0x10));
  fail_unless_equals_int(f.count(Event::Media), 2);
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause")));
  /* render blocks while paused: push from a thread, in order */
  std::thread t([&f] {
    gst_harness_push(f.h, filled(60, 0x11));
    gst_harness_push(f.h, filled(40, 0x12));
  });
  g_usleep(100 * 1000);
  fail_unless_equals_int(f.count(Event::Media), 2); /* nothing sent while paused */
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/resume")));
  t.join();
  auto s = f.snapshot();
  std::vector<int> fills;
  for (auto &o : s)
    if (o.event == Event::Media) {
      fail_unless_equals_int(o.payload.size(), 160);
      fills.push_back(o.payload[0]);
    }
  std::vector<int> want = {0x10, 0x10, 0x11, 0x11, 0x11, 0x12, 0x12};
  fail_unless(fills == want, "audio lost or out of order over the pause (%zu frames)", fills.size());
  GstStructure *st = nullptr;
  g_object_get(f.h->element, "stats", &st, nullptr);
  fail_unless_equals_uint64(u64(st, "pauses"), 1);
  fail_unless_equals_uint64(u64(st, "pause-timeouts"), 0);
  gst_structure_free(st);
}
GST_END_TEST;

/* mark-interval=100: a mark every fifth frame; between echoes, heard-ms
 * moves on with the time since the last one. */
GST_START_TEST(test_marks_every_100ms_and_heard_ms) {
  Fixture f(10000); /* no lead waits */
  g_object_set(f.h->element, "mark-interval", 100u, nullptr);
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_M", nullptr))));
  for (int i = 0; i < 10; i++)
    gst_harness_push(f.h, filled(20, static_cast<uint8_t>(0x20 + i)));
  fail_unless_equals_int(f.count(Event::Media), 10);
  fail_unless_equals_int(f.count(Event::Mark), 2);
  auto s = f.snapshot();
  fail_unless(s[5].event == Event::Mark && s[11].event == Event::Mark, "the marks do not follow frames 5 and 10");
  GstStructure *hq = heard(f.h, "item_M");
  fail_unless_equals_uint64(u64(hq, "played-ms"), 0);
  fail_unless_equals_uint64(u64(hq, "heard-ms"), 0);
  gst_structure_free(hq);
  gint64 before = g_get_monotonic_time();
  f.feed(build_mark_echo(60, "MZ7", s[5].mark_name));
  hq = heard(f.h, "item_M");
  gint64 since_ms = (g_get_monotonic_time() - before) / 1000;
  fail_unless_equals_uint64(u64(hq, "played-ms"), 100);
  fail_unless_equals_uint64(u64(hq, "sent-ms"), 200);
  guint64 heard_ms = u64(hq, "heard-ms");
  fail_unless(heard_ms >= 100 && heard_ms <= std::min<guint64>(200, 100 + since_ms + 1), "heard %" G_GUINT64_FORMAT
              " ms, %" G_GINT64_FORMAT " ms after a mark at 100 ms", heard_ms, since_ms);
  gst_structure_free(hq);
  /* audio faster than it plays (60 ms in one buffer, a model's delta): a
   * mark after its last frame too, so Twilio confirms the end */
  gst_harness_push(f.h, filled(60, 0x30));
  fail_unless_equals_int(f.count(Event::Media), 13);
  fail_unless_equals_int(f.count(Event::Mark), 3);
  fail_unless(f.snapshot().back().event == Event::Mark);
}
GST_END_TEST;

/* pause-clears: the pause makes Twilio drop what it holds (clear), and the
 * resume sends again what it had not played, from the last echoed mark, in
 * order; the heard position never counts what the clear threw away.
 * Without pause-clears, the same once phoneagent/pause-clear follows the
 * pause (bargein: the sound looks like a voice), and only then. */
static void pause_clears_and_sends_again(bool by_event) {
  Fixture f(10000); /* no lead waits */
  g_object_set(f.h->element, "pause-clears", !by_event, nullptr);
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_1", nullptr))));
  for (int i = 0; i < 10; i++)
    gst_harness_push(f.h, filled(20, static_cast<uint8_t>(0x20 + i)));
  fail_unless_equals_int(f.count(Event::Media), 10);
  /* Twilio played the first four frames */
  int echoed = 0;
  for (auto &o : f.snapshot())
    if (o.event == Event::Mark && echoed++ < 4)
      f.feed(build_mark_echo(99, "MZ7", o.mark_name));
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause")));
  if (by_event) {
    fail_unless(f.snapshot().back().event != Event::Clear, "a clear at a plain pause");
    fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause-clear")));
    fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause-clear"))); /* once per pause */
  }
  auto s = f.snapshot();
  fail_unless(s.back().event == Event::Clear, "no clear at the pause");
  int clears = 0;
  for (auto &o : s)
    clears += o.event == Event::Clear;
  fail_unless_equals_int(clears, 1);
  GstStructure *heard_s = heard(f.h, "item_1");
  fail_unless_equals_uint64(u64(heard_s, "played-ms"), 80);
  fail_unless_equals_uint64(u64(heard_s, "sent-ms"), 80); /* what the clear dropped is not counted as sent */
  gst_structure_free(heard_s);
  /* the mark echoes the clear releases are not taken as played */
  for (auto &o : s)
    if (o.event == Event::Mark)
      f.feed(build_mark_echo(99, "MZ7", o.mark_name));
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/resume")));
  std::vector<int> after = f.fills_after_clear();
  std::vector<int> want = {0x24, 0x25, 0x26, 0x27, 0x28, 0x29};
  fail_unless(after == want, "sent again: %zu frames, from 0x%x", after.size(), after.empty() ? 0 : after[0]);
  heard_s = heard(f.h, "item_1");
  fail_unless_equals_uint64(u64(heard_s, "played-ms"), 80);
  fail_unless_equals_uint64(u64(heard_s, "sent-ms"), 200);
  gst_structure_free(heard_s);
  GstStructure *st = nullptr;
  g_object_get(f.h->element, "stats", &st, nullptr);
  fail_unless_equals_uint64(u64(st, "pause-clears"), 1);
  fail_unless_equals_uint64(u64(st, "resent-ms"), 120);
  gst_structure_free(st);
}

GST_START_TEST(test_pause_clears_and_sends_again) { pause_clears_and_sends_again(false); }
GST_END_TEST;

/* The same while the lead holds most of a reply back: what Twilio had not
 * played goes back in front of audio that was never sent, which the sink
 * keeps behind what it has already sent, and the caller hears each frame
 * once more from the last echoed mark, then the rest, in order. */
GST_START_TEST(test_pause_clear_while_the_lead_holds_audio) {
  Fixture f(100);
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_1", nullptr))));
  GstBuffer *reply = gst_buffer_new_allocate(nullptr, 20 * 160, nullptr); /* 400 ms, a fill per frame */
  for (int i = 0; i < 20; i++)
    gst_buffer_memset(reply, static_cast<gsize>(i) * 160, static_cast<uint8_t>(0x20 + i), 160);
  std::atomic<bool> rendered{false};
  std::thread t([&f, &rendered, reply] {
    gst_harness_push(f.h, reply);
    rendered = true;
  });
  fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
  fail_unless_equals_int(f.count(Event::Media), 6); /* the lead: 0..100 ms */
  fail_unless(gst_harness_crank_single_clock_wait(f.h));
  fail_unless(gst_harness_wait_for_clock_id_waits(f.h, 1, 5));
  fail_unless_equals_int(f.count(Event::Media), 9); /* topped up at 70 ms; 11 frames still held */
  /* Twilio played the first four frames */
  int echoed = 0;
  for (auto &o : f.snapshot())
    if (o.event == Event::Mark && echoed++ < 4)
      f.feed(build_mark_echo(99, "MZ7", o.mark_name));
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause")));
  fail_unless(f.snapshot().back().event == Event::Clear, "no clear at the pause");
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/resume")));
  /* the render sleeps until half the lead has played, as above */
  for (int i = 0; i < 20 && !rendered; i++)
    if (gst_harness_wait_for_clock_id_waits(f.h, 1, 1))
      gst_harness_crank_single_clock_wait(f.h);
  t.join();
  std::vector<int> want;
  for (int i = 4; i < 20; i++)
    want.push_back(0x20 + i);
  std::vector<int> got = f.fills_after_clear();
  fail_unless(got == want, "after the clear: %zu frames, from 0x%x", got.size(), got.empty() ? 0 : got[0]);
  GstStructure *st = nullptr;
  g_object_get(f.h->element, "stats", &st, nullptr);
  fail_unless_equals_uint64(u64(st, "resent-ms"), 100); /* frames 4..8 */
  gst_structure_free(st);
}
GST_END_TEST;

GST_START_TEST(test_pause_clear_event_clears_and_sends_again) { pause_clears_and_sends_again(true); }
GST_END_TEST;

GST_START_TEST(test_clear_while_paused_discards) {
  Fixture f(10000);
  /* a plain pause (with pause-clears, the frame Twilio held comes back to
   * be sent again, and the clear discards it too: 120 ms) */
  g_object_set(f.h->element, "pause-clears", FALSE, nullptr);
  gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_A", nullptr)));
  gst_harness_push(f.h, filled(20, 0x10));
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause")));
  std::thread t([&f] { gst_harness_push(f.h, filled(100, 0x11)); });
  g_usleep(50 * 1000);
  fail_unless_equals_int(f.count(Event::Media), 1);
  /* the barge-in is confirmed: clear throws the held audio away and the
   * blocked render gives up, even before the resume */
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
      gst_structure_new("phoneagent/clear", "reason", G_TYPE_STRING, "barge-in", nullptr))));
  t.join();
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/resume")));
  fail_unless_equals_int(f.count(Event::Media), 1);
  fail_unless(f.snapshot().back().event == Event::Clear);
  /* the rest of the cleared item is dropped, the next item plays */
  gst_harness_push(f.h, filled(20, 0x11));
  fail_unless_equals_int(f.count(Event::Media), 1);
  gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, "item_B", nullptr)));
  gst_harness_push(f.h, filled(20, 0x13));
  fail_unless_equals_int(f.count(Event::Media), 2);
  GstStructure *st = nullptr;
  g_object_get(f.h->element, "stats", &st, nullptr);
  fail_unless_equals_uint64(u64(st, "discarded-ms"), 100);
  gst_structure_free(st);
}
GST_END_TEST;

GST_START_TEST(test_pause_ends_by_itself) {
  Fixture f(10000);
  g_object_set(f.h->element, "max-pause-ms", 100, nullptr);
  fail_unless(gst_harness_push_event(f.h, oob("phoneagent/pause")));
  std::thread t([&f] { gst_harness_push(f.h, filled(40, 0x11)); });
  t.join(); /* returns after max-pause-ms without a resume */
  fail_unless_equals_int(f.count(Event::Media), 2);
  GstStructure *st = nullptr;
  g_object_get(f.h->element, "stats", &st, nullptr);
  fail_unless_equals_uint64(u64(st, "pause-timeouts"), 1);
  gst_structure_free(st);
}
GST_END_TEST;

/* On a server media thread (a render there must not wait) what the lead
 * holds back is sent from timers on that thread: one second of audio
 * rendered at once from the media thread, lead 200 ms. The render returns
 * at once, about the lead goes out at once, and the rest follows as it
 * plays, to the last frame, in order, with nobody rendering again. The call
 * here has a real socket on a pa::SocketLoop media thread (the system
 * clock: the bound below is a liveness bound, far above the 800 ms the
 * pacing takes). */
GST_START_TEST(test_media_thread_sends_what_the_lead_held_back) {
  auto loop = pa_check_media_loop();
  int peer = -1;
  PaCall *call = pa_check_socket_call(*loop, &peer);
  StartInfo si;
  si.stream_sid = "MZ8";
  si.call_sid = "CA8";
  std::string start;
  const uint8_t mask[4] = {1, 2, 3, 4};
  ws::append_frame(start, ws::Opcode::Text, build_start(1, si), mask);
  fail_unless(::send(peer, start.data(), start.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(start.size()));
  for (int i = 0; i < 400 && !pa_call_is_started(call); i++)
    g_usleep(5000);
  fail_unless(pa_call_is_started(call));
  std::shared_ptr<MediaThread> mt = pa_call_get_media_thread(call);
  fail_unless(mt != nullptr);

  GstElement *sink = gst_element_factory_make("twiliosink", nullptr);
  GstContext *ctx = pa_call_context_new(call);
  gst_element_set_context(sink, ctx);
  gst_context_unref(ctx);
  g_object_set(sink, "lead", 200, nullptr);
  GstHarness *h = gst_harness_new_with_element(sink, "sink", nullptr);
  gst_object_unref(sink);
  gst_harness_use_systemclock(h);
  gst_harness_set_src_caps_str(h, "audio/x-mulaw, rate=8000, channels=1");

  /* 1 s of audio, each frame numbered (from @first), rendered on the media
   * thread; what the sink still held then is asked on that thread too,
   * before any timer of the thread can send more */
  std::atomic<int> rendered{0};
  std::atomic<gint64> render_us{0}, held_after_render{-1}, rendered_at{0};
  auto render_audio = [&](int from, size_t bytes) {
    GstBuffer *b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_WRITE);
    for (size_t i = 0; i < bytes; i++)
      map.data[i] = static_cast<uint8_t>(from + i / 160);
    gst_buffer_unmap(b, &map);
    fail_unless(mt->at(g_get_monotonic_time(), [&, b] {
      gint64 t0 = g_get_monotonic_time();
      rendered_at = t0;
      fail_unless_equals_int(gst_harness_push(h, b), GST_FLOW_OK);
      render_us = g_get_monotonic_time() - t0;
      GstStructure *held = heard(h, nullptr);
      held_after_render = static_cast<gint64>(u64(held, "held-ms"));
      gst_structure_free(held);
      rendered++;
    }));
  };
  auto render_second = [&](int from) { render_audio(from, 8000); };
  /* what Twilio gets: media frames, in order, until @n of them or @max_us;
   * @at_us: how many had come @at_us after the start */
  std::string inbox;
  auto read_frames = [&](size_t n, gint64 max_us, gint64 at_us, size_t &at) {
    std::vector<int> frames;
    gint64 t0 = g_get_monotonic_time();
    at = SIZE_MAX;
    while (frames.size() < n && g_get_monotonic_time() - t0 < max_us) {
      struct pollfd pfd = {peer, POLLIN, 0};
      if (poll(&pfd, 1, 10) > 0) {
        char buf[65536];
        ssize_t got = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
        if (got > 0)
          inbox.append(buf, static_cast<size_t>(got));
      }
      for (;;) {
        ws::FrameHeader fh;
        std::string err;
        if (ws::decode_header(reinterpret_cast<const uint8_t *>(inbox.data()), inbox.size(), fh, err) !=
                ws::Decode::Ok ||
            inbox.size() < fh.header_len + fh.payload_len)
          break;
        OutboundMessage o;
        fail_unless(parse_outbound(inbox.substr(fh.header_len, fh.payload_len), o, err) == ParseResult::Ok, "%s",
                    err.c_str());
        inbox.erase(0, fh.header_len + fh.payload_len);
        if (o.event == Event::Media)
          for (size_t k = 0; k < o.payload.size(); k += 160)
            frames.push_back(o.payload[k]);
      }
      if (at == SIZE_MAX && g_get_monotonic_time() - t0 > at_us)
        at = frames.size();
    }
    return frames;
  };

  render_second(1);
  size_t first_burst = 0;
  std::vector<int> frames = read_frames(50, 3 * G_USEC_PER_SEC, 50000, first_burst);
  GST_INFO("rendered in %" G_GINT64_FORMAT " us, first burst %zu, frames %zu", render_us.load(), first_burst,
           frames.size());
  fail_unless_equals_int(rendered.load(), 1);
  fail_unless(render_us.load() < 100000, "the render waited %" G_GINT64_FORMAT " us on the media thread",
              render_us.load());
  /* the lead: about 200 ms (10 frames) at once, the rest held; not the
   * whole second (counted where it was sent: how soon this thread reads it
   * depends on the machine's load) */
  fail_unless(held_after_render.load() >= 1000 - 12 * 20 && held_after_render.load() <= 1000 - 5 * 20,
              "%" G_GINT64_FORMAT " ms of the second held after the render", held_after_render.load());
  fail_unless_equals_int(frames.size(), 50);
  for (int i = 0; i < 50; i++)
    fail_unless_equals_int(frames[i], i + 1);
  GstStructure *st = heard(h, nullptr);
  fail_unless_equals_uint64(u64(st, "held-ms"), 0);
  gst_structure_free(st);

  /* paused (no clear: nothing plays), a second rendered: all held, and a
   * timer set for the pause's own end (max-pause-ms, 3 s). Resumed after
   * 200 ms: the lead goes at once and the rest follows at the lead's pace,
   * not at that timer's. */
  g_object_set(h->element, "pause-clears", FALSE, nullptr);
  g_usleep(300000); /* Twilio's queue (the pacing's) has played out */
  fail_unless(gst_harness_push_event(h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
                                                             gst_structure_new_empty("phoneagent/pause"))));
  render_second(51);
  size_t during_pause = 0;
  frames = read_frames(50, 200000, 200000, during_pause);
  fail_unless_equals_int(rendered.load(), 2);
  fail_unless_equals_int(frames.size(), 0);
  st = heard(h, nullptr);
  fail_unless_equals_uint64(u64(st, "held-ms"), 1000);
  gst_structure_free(st);
  fail_unless(gst_harness_push_event(h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
                                                             gst_structure_new_empty("phoneagent/resume"))));
  size_t unused = 0;
  frames = read_frames(50, 2 * G_USEC_PER_SEC, 0, unused);
  fail_unless_equals_int(frames.size(), 50); /* before the pause's own end */
  for (int i = 0; i < 50; i++)
    fail_unless_equals_int(frames[i], 51 + i);

  /* min-lead (40 ms by default): once Twilio's queue has played out, a lone
   * 20 ms frame (an echo's) is held, by a timer and not a wait, and goes
   * when it has waited 40 ms (never sooner) */
  g_usleep(300000);
  render_audio(101, 160);
  frames = read_frames(1, 2 * G_USEC_PER_SEC, 0, unused);
  gint64 waited_us = g_get_monotonic_time() - rendered_at.load();
  fail_unless_equals_int(rendered.load(), 3);
  fail_unless(render_us.load() < 100000, "the render waited %" G_GINT64_FORMAT " us", render_us.load());
  fail_unless_equals_int(held_after_render.load(), 20);
  fail_unless_equals_int(frames.size(), 1);
  fail_unless_equals_int(frames[0], 101);
  fail_unless(waited_us >= 39000, "sent %" G_GINT64_FORMAT " us after it came", waited_us);

  gst_harness_teardown(h);
  loop.reset();
  g_object_unref(call);
  close(peer);
}
GST_END_TEST;

static Suite *twiliosink_suite(void) {
  Suite *s = suite_create("twiliosink");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 30);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_lead_bounds_what_is_queued);
  tcase_add_test(tc, test_min_lead_gathers_audio_for_an_empty_twilio);
  tcase_add_test(tc, test_frames_are_whole_and_eos_pads);
  tcase_add_test(tc, test_buffer_list_sent_in_order);
  tcase_add_test(tc, test_clear_event_discards_and_heard_query);
  tcase_add_test(tc, test_marks_every_100ms_and_heard_ms);
  tcase_add_test(tc, test_clear_action_signal);
  tcase_add_test(tc, test_s16_input_converted);
  tcase_add_test(tc, test_pause_holds_and_resume_sends_in_order);
  tcase_add_test(tc, test_clear_while_paused_discards);
  tcase_add_test(tc, test_pause_ends_by_itself);
  tcase_add_test(tc, test_pause_clears_and_sends_again);
  tcase_add_test(tc, test_pause_clear_while_the_lead_holds_audio);
  tcase_add_test(tc, test_pause_clear_event_clears_and_sends_again);
  tcase_add_test(tc, test_media_thread_sends_what_the_lead_held_back);
  return s;
}

GST_CHECK_MAIN(twiliosink);
