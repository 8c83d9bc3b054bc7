/* gst-phone-agent: unit tests of PaCall (the call shared by twiliosrc and
 * twiliosink): inbound dispatch, bad input counters, marks and clear. */
#include "../common/pa-check.h"

#include "pa-call.h"
#include "twilio-protocol.h"

using namespace pa;
using namespace pa::twilio;

namespace {
struct Wire {
  std::vector<std::string> sent;
  std::vector<gushort> closes;
};

PaCall *make_call(Wire &wire, CallConfig cfg = CallConfig()) {
  PaCall *call = pa_call_new(cfg);
  pa_call_set_test_transport(
      call, [&wire](const std::string &s) { wire.sent.push_back(s); },
      [&wire](gushort code, const std::string &) { wire.closes.push_back(code); });
  return call;
}

void feed(PaCall *call, const std::string &s) { pa_call_handle_text(call, s.data(), s.size()); }

void start(PaCall *call, const char *sid = "MZ1") {
  StartInfo si;
  si.stream_sid = sid;
  si.call_sid = "CA1";
  si.account_sid = "AC1";
  si.tracks = {"inbound"};
  si.custom_parameters = {{"from", "+1415"}};
  feed(call, build_connected());
  feed(call, build_start(1, si));
}

guint64 stat(PaCall *call, const char *name) { return pa_check_stat(pa_call_get_stats(call), name); }

OutboundMessage parse_sent(const std::string &s) {
  OutboundMessage o;
  std::string err;
  fail_unless(parse_outbound(s, o, err) == ParseResult::Ok, "%s: %s", s.c_str(), err.c_str());
  return o;
}

/* Sends a mark and returns its name, as written on the wire. */
std::string send_mark(PaCall *call, Wire &wire) {
  pa_call_send_mark(call);
  return parse_sent(wire.sent.back()).mark_name;
}
} // namespace

GST_START_TEST(test_inbound_dispatch) {
  Wire wire;
  PaCall *call = make_call(wire);
  guint started = 0;
  g_signal_connect(call, "started", G_CALLBACK(+[](PaCall *, gpointer d) { (*static_cast<guint *>(d))++; }), &started);
  uint8_t frame[160];
  memset(frame, 0x55, sizeof frame);
  /* media before start is not acted on */
  feed(call, build_inbound_media(1, "MZ1", 1, 0, frame, 160));
  fail_unless_equals_int(stat(call, "media-before-start"), 1);
  start(call);
  fail_unless_equals_int(started, 1);
  fail_unless(pa_call_is_started(call));
  feed(call, build_inbound_media(2, "MZ1", 1, 0, frame, 160));
  feed(call, build_dtmf(3, "MZ1", "7"));
  feed(call, build_inbound_media(4, "MZOTHER", 2, 20, frame, 160)); /* wrong stream */
  feed(call, build_stop(5, "MZ1", "AC1", "CA1"));
  fail_unless_equals_int(stat(call, "wrong-stream-sid"), 1);
  fail_unless(pa_call_is_ended(call));

  InboundItem it;
  fail_unless(pa_call_pop_inbound(call, it, 0));
  fail_unless(it.kind == InboundItem::Kind::Start);
  assert_str(it.start->call_sid.c_str(), "CA1");
  fail_unless(pa_call_pop_inbound(call, it, 0));
  fail_unless(it.kind == InboundItem::Kind::Media);
  fail_unless_equals_int(it.payload.size(), 160);
  fail_unless_equals_int(it.payload[0], 0x55);
  fail_unless(pa_call_pop_inbound(call, it, 0));
  fail_unless(it.kind == InboundItem::Kind::Dtmf);
  assert_str(it.digit.c_str(), "7");
  fail_unless(pa_call_pop_inbound(call, it, 0));
  fail_unless(it.kind == InboundItem::Kind::Stop);
  fail_if(pa_call_pop_inbound(call, it, 1000)); /* nothing more: times out */
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_bad_input_counted_call_goes_on) {
  Wire wire;
  CallConfig cfg;
  cfg.max_frame_size = 4096;
  PaCall *call = make_call(wire, cfg);
  start(call);
  feed(call, "{this is not json");
  feed(call, "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"timestamp\":\"0\",\"payload\":\"!!!!\"}}");
  feed(call, "{\"event\":\"teleport\",\"streamSid\":\"MZ1\"}");
  feed(call, "{\"event\":\"media\",\"streamSid\":\"MZ1\"}");
  feed(call, std::string(5000, ' '));
  pa_call_handle_binary(call, 12);
  fail_unless_equals_int(stat(call, "malformed-json"), 1);
  fail_unless_equals_int(stat(call, "invalid-base64"), 1);
  fail_unless_equals_int(stat(call, "unknown-events"), 1);
  fail_unless_equals_int(stat(call, "missing-fields"), 1);
  fail_unless_equals_int(stat(call, "oversized-frames"), 1);
  fail_unless_equals_int(stat(call, "binary-frames"), 1);
  /* and the call still works */
  fail_if(pa_call_is_ended(call));
  uint8_t frame[160] = {};
  feed(call, build_inbound_media(9, "MZ1", 1, 0, frame, 160));
  fail_unless_equals_int(stat(call, "media-frames-received"), 1);
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_marks_and_clear_generations) {
  Wire wire;
  PaCall *call = make_call(wire);
  uint8_t frame[160];
  memset(frame, 0x11, sizeof frame);
  /* nothing is sent before the stream starts */
  fail_if(pa_call_send_media(call, frame, 160));
  fail_unless_equals_int(wire.sent.size(), 0);
  start(call);
  pa_call_begin_item(call, "item_A");
  for (int i = 0; i < 5; i++) {
    fail_unless(pa_call_send_media(call, frame, 160));
    pa_call_send_mark(call);
  }
  fail_unless_equals_int(wire.sent.size(), 10);
  OutboundMessage m0 = parse_sent(wire.sent[0]);
  fail_unless(m0.event == Event::Media);
  assert_str(m0.stream_sid.c_str(), "MZ1");
  std::vector<std::string> marks;
  for (auto &s : wire.sent) {
    OutboundMessage o = parse_sent(s);
    if (o.event == Event::Mark)
      marks.push_back(o.mark_name);
  }
  fail_unless_equals_int(marks.size(), 5);

  Heard h = pa_call_get_heard(call, "item_A");
  fail_unless(h.known);
  fail_unless_equals_int(h.sent_ms, 100);
  fail_unless_equals_int(h.played_ms, 0);
  /* Twilio played two frames */
  feed(call, build_mark_echo(10, "MZ1", marks[0]));
  feed(call, build_mark_echo(11, "MZ1", marks[1]));
  h = pa_call_get_heard(call, "");
  assert_str(h.item_id.c_str(), "item_A");
  fail_unless_equals_int(h.played_ms, 40);
  /* the caller interrupts: clear, then Twilio echoes the pending marks */
  size_t before = wire.sent.size();
  guint gen = pa_call_clear(call);
  fail_unless_equals_int(gen, 1);
  fail_unless_equals_int(wire.sent.size(), before + 1);
  fail_unless(parse_sent(wire.sent.back()).event == Event::Clear);
  for (size_t i = 2; i < marks.size(); i++)
    feed(call, build_mark_echo(12 + i, "MZ1", marks[i]));
  h = pa_call_get_heard(call, "item_A");
  fail_unless_equals_int(h.played_ms, 40); /* cleared echoes are not "played" */
  fail_unless_equals_int(h.sent_ms, 40);   /* what was cleared was never heard */
  fail_unless_equals_int(h.generation, 1);
  fail_unless_equals_int(stat(call, "marks-played"), 2);
  fail_unless_equals_int(stat(call, "marks-cleared"), 3);
  /* an unknown echo is counted, not trusted */
  feed(call, build_mark_echo(20, "MZ1", "forged:9999:g1:m1"));
  fail_unless_equals_int(stat(call, "marks-unknown"), 1);
  fail_unless_equals_int(pa_call_get_heard(call, "item_A").played_ms, 40);
  /* an item never seen */
  fail_if(pa_call_get_heard(call, "nope").known);
  g_object_unref(call);
}
GST_END_TEST;

/* Between mark echoes, heard_ms moves on with the time since the last echo
 * (Twilio plays what it holds back to back), never past a mark not echoed
 * yet nor past what was sent; a clear stops it. Times are given, not read
 * from the clock. */
GST_START_TEST(test_heard_between_marks) {
  Wire wire;
  PaCall *call = make_call(wire);
  start(call);
  pa_call_begin_item(call, "item_H");
  uint8_t frame[160] = {};
  std::vector<std::string> marks;
  /* 200 ms, a mark every 100 ms (twiliosink's default) */
  for (int i = 0; i < 10; i++) {
    fail_unless(pa_call_send_media(call, frame, 160));
    if (i % 5 == 4)
      marks.push_back(send_mark(call, wire));
  }
  Heard h = pa_call_get_heard(call, "item_H");
  fail_unless_equals_int(h.heard_ms, 0); /* no echo yet: nothing known to have played */
  feed(call, build_mark_echo(10, "MZ1", marks[0]));
  h = pa_call_get_heard(call, "item_H");
  fail_unless_equals_int(h.played_ms, 100);
  fail_unless(h.played_at_us > 0);
  const gint64 at = h.played_at_us;
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", at).heard_ms, 100);
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", at + 30000).heard_ms, 130);
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", at + 500000).heard_ms, 200); /* all that was sent */
  /* 200 ms more sent: still not past the second mark, whose echo has not come */
  for (int i = 0; i < 10; i++)
    fail_unless(pa_call_send_media(call, frame, 160));
  marks.push_back(send_mark(call, wire));
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", at + 500000).heard_ms, 200);
  feed(call, build_mark_echo(11, "MZ1", marks[1]));
  h = pa_call_get_heard(call, "item_H");
  fail_unless_equals_int(h.played_ms, 200);
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", h.played_at_us + 50000).heard_ms, 250);
  fail_unless_equals_int(pa_call_get_heard(call, "item_H", h.played_at_us + 900000).heard_ms, 400);
  /* another item: its own echoes, none yet */
  pa_call_begin_item(call, "item_I");
  for (int i = 0; i < 5; i++)
    fail_unless(pa_call_send_media(call, frame, 160));
  std::string last = send_mark(call, wire);
  fail_unless_equals_int(pa_call_get_heard(call, "item_I", h.played_at_us + 900000).heard_ms, 0);
  feed(call, build_mark_echo(12, "MZ1", last));
  const gint64 at3 = pa_call_get_heard(call, "item_I").played_at_us;
  /* a clear: what was heard stays; what is sent after it plays on from
   * its own echoes, not from one before the clear */
  pa_call_clear(call);
  h = pa_call_get_heard(call, "item_I", at3 + 900000);
  fail_unless_equals_int(h.sent_ms, 100);
  fail_unless_equals_int(h.heard_ms, 100);
  for (int i = 0; i < 5; i++)
    fail_unless(pa_call_send_media(call, frame, 160));
  h = pa_call_get_heard(call, "item_I", at3 + 900000);
  fail_unless_equals_int(h.sent_ms, 200);
  fail_unless_equals_int(h.heard_ms, 100);
  g_object_unref(call);
}
GST_END_TEST;

/* Echoes out of order are matched to their own marks; a name that carries
 * an outstanding mark's number but not its name is not trusted. */
GST_START_TEST(test_mark_echoes_out_of_order) {
  Wire wire;
  PaCall *call = make_call(wire);
  start(call);
  pa_call_begin_item(call, "item_B");
  uint8_t frame[160] = {};
  std::vector<std::string> marks;
  for (int i = 0; i < 4; i++) {
    fail_unless(pa_call_send_media(call, frame, 160));
    marks.push_back(send_mark(call, wire));
  }
  feed(call, build_mark_echo(10, "MZ1", marks[2]));
  fail_unless_equals_int(pa_call_get_heard(call, "item_B").played_ms, 60);
  std::string forged = "item_X" + marks[0].substr(marks[0].find(':'));
  feed(call, build_mark_echo(11, "MZ1", forged));
  fail_unless_equals_int(stat(call, "marks-unknown"), 1);
  feed(call, build_mark_echo(12, "MZ1", marks[0]));
  feed(call, build_mark_echo(13, "MZ1", marks[1]));
  feed(call, build_mark_echo(14, "MZ1", marks[1])); /* twice: the second is unknown */
  fail_unless_equals_int(stat(call, "marks-played"), 3);
  fail_unless_equals_int(stat(call, "marks-unknown"), 2);
  fail_unless_equals_int(pa_call_get_heard(call, "item_B").played_ms, 60);
  fail_if(pa_call_wait_played(call, 1000));
  feed(call, build_mark_echo(15, "MZ1", marks[3]));
  fail_unless(pa_call_wait_played(call, 1000));
  fail_unless_equals_int(pa_call_get_heard(call, "item_B").played_ms, 80);
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_wait_played_and_close) {
  Wire wire;
  PaCall *call = make_call(wire);
  start(call);
  uint8_t frame[160] = {};
  pa_call_send_media(call, frame, 160);
  pa_call_send_mark(call);
  /* not echoed yet */
  fail_if(pa_call_wait_played(call, 1000));
  std::string name = parse_sent(wire.sent.back()).mark_name;
  feed(call, build_mark_echo(3, "MZ1", name));
  fail_unless(pa_call_wait_played(call, 1000));
  pa_call_close(call, 1000, "done");
  pa_call_close(call, 1000, "again"); /* idempotent */
  fail_unless_equals_int(wire.closes.size(), 1);
  fail_unless_equals_int(wire.closes[0], 1000);
  /* nothing is sent after closing */
  size_t n = wire.sent.size();
  fail_if(pa_call_send_media(call, frame, 160));
  fail_unless_equals_int(wire.sent.size(), n);
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_closed_socket_ends_call) {
  Wire wire;
  PaCall *call = make_call(wire);
  start(call);
  gchar *reason = nullptr;
  g_signal_connect(call, "ended", G_CALLBACK(+[](PaCall *, const gchar *r, gpointer d) {
                     *static_cast<gchar **>(d) = g_strdup(r);
                   }),
                   &reason);
  pa_call_handle_closed(call, 1006, "");
  assert_str(reason, "connection-lost");
  g_free(reason);
  InboundItem it;
  fail_unless(pa_call_pop_inbound(call, it, 0)); /* start */
  fail_unless(pa_call_pop_inbound(call, it, 0));
  fail_unless(it.kind == InboundItem::Kind::Closed);
  /* the source is never stuck: flushing wakes a waiting pop */
  pa_call_set_source_flushing(call, TRUE);
  fail_if(pa_call_pop_inbound(call, it, -1));
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_inbound_queue_bounded) {
  Wire wire;
  CallConfig cfg;
  cfg.max_inbound_queue = 10;
  PaCall *call = make_call(wire, cfg);
  start(call);
  uint8_t frame[160] = {};
  for (int i = 0; i < 50; i++)
    feed(call, build_inbound_media(2 + i, "MZ1", i + 1, i * 20, frame, 160));
  fail_unless_equals_int(stat(call, "inbound-dropped"), 41);
  /* the oldest media went, the newest stayed */
  InboundItem it;
  int64_t last = -1;
  while (pa_call_pop_inbound(call, it, 0))
    if (it.kind == InboundItem::Kind::Media)
      last = it.timestamp_ms;
  fail_unless_equals_int(last, 49 * 20);
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_context_roundtrip) {
  PaCall *call = pa_call_new(CallConfig());
  GstContext *ctx = pa_call_context_new(call);
  fail_unless(gst_context_is_persistent(ctx));
  PaCall *back = pa_call_from_context(ctx);
  fail_unless(back == call);
  g_object_unref(back);
  GstContext *other = gst_context_new("something.else", FALSE);
  fail_unless(pa_call_from_context(other) == nullptr);
  gst_context_unref(other);
  gst_context_unref(ctx);
  g_object_unref(call);
}
GST_END_TEST;

static Suite *call_suite(void) {
  Suite *s = suite_create("pa-call");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_inbound_dispatch);
  tcase_add_test(tc, test_bad_input_counted_call_goes_on);
  tcase_add_test(tc, test_marks_and_clear_generations);
  tcase_add_test(tc, test_mark_echoes_out_of_order);
  tcase_add_test(tc, test_heard_between_marks);
  tcase_add_test(tc, test_wait_played_and_close);
  tcase_add_test(tc, test_closed_socket_ends_call);
  tcase_add_test(tc, test_inbound_queue_bounded);
  tcase_add_test(tc, test_context_roundtrip);
  return s;
}

GST_CHECK_MAIN(call);
