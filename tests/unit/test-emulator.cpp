/* gst-phone-agent: unit tests of the Twilio emulator's internals (playout
 * buffer, turn/latency detection, percentiles, command-line specs, the raw
 * WebSocket frame codec, the media/mark fast parser, the caller script, the
 * frame phases of --phases: the schedule, the ticker driving it, the ticker
 * with poll batching, and a whole run against an in-process peer). */
#include "../common/pa-check.h"

#include <glib-unix.h>
#include <libsoup/soup.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "fast-parse.h"
#include "options.h"
#include "pa-audio.h"
#include "phases.h"
#include "playout.h"
#include "poll-batch.h"
#include "runner.h"
#include "script.h"
#include "specs.h"
#include "stats.h"
#include "synth.h"
#include "ticker.h"
#include "turns.h"
#include "twilio-protocol.h"
#include "twiml.h"
#include "ws-frame.h"

using namespace emu;

static std::vector<uint8_t> bytes(size_t n, uint8_t v = 0x10) { return std::vector<uint8_t>(n, v); }

/* ------------------------------------------------------------ playout */

GST_START_TEST(test_playout_marks) {
  PlayoutBuffer pb;
  std::vector<std::string> rel;
  uint8_t frame[160];

  /* nothing buffered, nothing pending: echoed at once */
  fail_unless(pb.push_mark("m0"));

  /* a mark after 320 bytes is reached once both frames have played */
  auto a = bytes(320);
  pb.push_audio(a.data(), a.size());
  fail_if(pb.push_mark("m1"));
  pb.tick(frame, rel); /* takes frame 1 */
  fail_unless(rel.empty());
  pb.tick(frame, rel); /* frame 1 played; takes frame 2 */
  fail_unless(rel.empty());
  fail_unless_equals_int(frame[0], 0x10);
  pb.tick(frame, rel); /* frame 2 played: m1 reached */
  fail_unless_equals_int(rel.size(), 1);
  assert_str(rel[0], "m1");
  fail_unless_equals_int(frame[0], 0xFF); /* buffer empty: silence */
  fail_unless_equals_int(pb.played_bytes(), 320);

  /* marks keep their order: a mark behind a pending one is not immediate */
  rel.clear();
  pb.push_audio(a.data(), 100);
  fail_if(pb.push_mark("m2"));
  pb.tick(frame, rel);
  fail_unless_equals_int(frame[99], 0x10);
  fail_unless_equals_int(frame[100], 0xFF); /* partial frame padded with silence */
  fail_if(pb.push_mark("m3"));              /* m2 still pending */
  pb.tick(frame, rel);
  fail_unless_equals_int(rel.size(), 2);
  assert_str(rel[0], "m2");
  assert_str(rel[1], "m3");
}
GST_END_TEST;

GST_START_TEST(test_playout_clear) {
  PlayoutBuffer pb;
  std::vector<std::string> rel;
  uint8_t frame[160];
  auto a = bytes(1600);
  pb.push_audio(a.data(), 800);
  pb.push_mark("a");
  pb.push_audio(a.data(), 800);
  pb.push_mark("b");
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.buffered(), 1440);
  pb.clear(rel);
  fail_unless_equals_int(rel.size(), 2);
  assert_str(rel[0], "a");
  assert_str(rel[1], "b");
  fail_unless_equals_int(pb.buffered(), 0);
  fail_unless_equals_int(pb.cleared_bytes(), 1440);
  fail_unless_equals_int(pb.pending_marks(), 0);
  rel.clear();
  pb.tick(frame, rel);
  fail_unless(rel.empty());
  fail_unless_equals_int(frame[0], 0xFF);
  /* the silence after a clear is no underrun */
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.underruns(), 0);
}
GST_END_TEST;

GST_START_TEST(test_playout_underruns) {
  PlayoutBuffer pb(160, 8000);
  std::vector<std::string> rel;
  uint8_t frame[160];
  auto a = bytes(160);

  /* silence before the first audio does not count */
  for (int i = 0; i < 10; i++)
    pb.tick(frame, rel);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.underruns(), 0);

  /* a 60 ms gap, then audio again: one underrun of 60 ms */
  for (int i = 0; i < 3; i++)
    pb.tick(frame, rel);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.underruns(), 1);
  fail_unless_equals_int(pb.underrun_bytes(), 480);
  fail_unless_equals_int(pb.ended_gap_bytes(), 480); /* what dates it in the report */

  /* a partial frame then audio in time for the next tick: 100 bytes missing */
  pb.push_audio(a.data(), 60);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.ended_gap_bytes(), 0);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.underruns(), 2);
  fail_unless_equals_int(pb.underrun_bytes(), 580);
  fail_unless_equals_int(pb.ended_gap_bytes(), 100);

  /* a pause of 1 s or more is the end of a response, not an underrun */
  for (int i = 0; i < 50; i++)
    pb.tick(frame, rel);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.underruns(), 2);
  fail_unless_equals_int(pb.ended_gap_bytes(), 0);

  /* a gap still open when the stream ends is not counted */
  pb.tick(frame, rel);
  pb.finish();
  fail_unless_equals_int(pb.underruns(), 2);
}
GST_END_TEST;

GST_START_TEST(test_playout_runs) {
  PlayoutBuffer pb(160, 8000);
  std::vector<std::string> rel;
  uint8_t frame[160];
  auto a = bytes(1600);

  fail_unless_equals_int(pb.run_played_bytes(), 0);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.last_tick_bytes(), 0);
  /* a run: 400 bytes, the last frame partial */
  pb.push_audio(a.data(), 400);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.last_tick_bytes(), 160);
  pb.tick(frame, rel);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.last_tick_bytes(), 80);
  fail_unless_equals_int(pb.run_played_bytes(), 400);
  /* an underrun (60 ms) does not end the run */
  for (int i = 0; i < 3; i++)
    pb.tick(frame, rel);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.run_played_bytes(), 560);
  /* a silence of 1 s does: the next audio starts a new run */
  for (int i = 0; i < 50; i++)
    pb.tick(frame, rel);
  fail_unless_equals_int(pb.run_played_bytes(), 560); /* the last run's figure stays until then */
  pb.push_audio(a.data(), 320);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.run_played_bytes(), 160);
  /* a clear ends the run too */
  pb.clear(rel);
  pb.push_audio(a.data(), 160);
  pb.tick(frame, rel);
  fail_unless_equals_int(pb.run_played_bytes(), 160);
  fail_unless_equals_int(pb.played_bytes(), 400 + 160 + 160 + 160);
}
GST_END_TEST;

/* ------------------------------------------------------------ turns */

static std::vector<float> levels(const char *pattern) {
  /* one char per 20 ms frame: 'S' speech (-20 dBFS), '.' silence */
  std::vector<float> v;
  for (const char *p = pattern; *p; p++)
    v.push_back(*p == 'S' ? -20.0f : -90.0f);
  return v;
}

GST_START_TEST(test_turns) {
  TurnParams p; /* -40 dB, 500 ms end silence, 60 ms minimum */
  std::string pat = std::string(5, '.') + std::string(10, 'S') + std::string(10, '.') + std::string(5, 'S') +
                    std::string(25, '.') + "S" + std::string(30, '.') + std::string(5, 'S') + std::string(3, '.');
  auto turns = detect_turns(levels(pat.c_str()), p);
  /* the 200 ms pause does not end the first turn; the lone frame is a click;
   * the last turn is cut off by the end of the audio */
  fail_unless_equals_int(turns.size(), 2);
  fail_unless_equals_int(turns[0].onset_ms, 100);
  fail_unless_equals_int(turns[0].end_ms, 600);
  fail_unless(turns[0].ended);
  fail_unless_equals_int(turns[1].onset_ms, 1720);
  fail_unless(!turns[1].ended);
  fail_unless_equals_int(latest_onset(turns, 1719).value(), 100);
  fail_unless_equals_int(latest_onset(turns, 1720).value(), 1720);
  fail_if(latest_onset(turns, 50).has_value());

  /* heard: the agent talks across the turn end (not a response), then a new
   * burst starts at 1000 ms: latency 400 ms */
  std::vector<Turn> t = {{100, 600, true}, {3000, 3500, true}};
  std::string heard = std::string(20, '.') + std::string(12, 'S') + std::string(18, '.') + std::string(10, 'S');
  auto lat = response_latencies(t, levels(heard.c_str()), p);
  fail_unless_equals_int(lat.size(), 2);
  /* frames 20..31 loud (400-640 ms) cross the end at 600 ms; 50.. loud again at 1000 ms */
  fail_unless_equals_int(lat[0].value(), 400);
  fail_if(lat[1].has_value()); /* nothing heard after 3500 ms */

  /* no response before the next turn's onset: none */
  std::vector<Turn> t2 = {{0, 200, true}, {400, 600, true}};
  auto lat2 = response_latencies(t2, levels("................................SSS"), p);
  fail_if(lat2[0].has_value());
  fail_unless_equals_int(lat2[1].value(), 40); /* loud from frame 32 = 640 ms */
}
GST_END_TEST;

GST_START_TEST(test_clear_figures) {
  /* frames 0-1 silent, 2-5 full, 6 partial (80 bytes), 7-9 silent, 10 full */
  std::vector<uint8_t> sb = {0, 0, 160, 160, 160, 160, 80, 0, 0, 0, 160};
  /* nothing played yet */
  fail_if(last_audio_end_ms(sb, 2, 20).has_value());
  /* after frame 4 was taken: audio stops at its end */
  fail_unless_equals_int(*last_audio_end_ms(sb, 5, 20), 100);
  /* with frames 7-9 silent, the last audio was frame 6 (partial counts) */
  fail_unless_equals_int(*last_audio_end_ms(sb, 10, 20), 140);
  fail_unless_equals_int(*last_audio_end_ms(sb, 100, 20), 220); /* clamped to what was played */
  /* audio in the frames from 5 on that start before 200 ms: 160 + 80 bytes */
  fail_unless(std::fabs(audio_ms_between(sb, 5, 200, 20) - 30.0) < 1e-9);
  /* a frame starting exactly at the limit is not included */
  fail_unless(std::fabs(audio_ms_between(sb, 5, 120, 20) - 20.0) < 1e-9);
  fail_unless(std::fabs(audio_ms_between(sb, 5, 121, 20) - 30.0) < 1e-9);
  fail_unless(std::fabs(audio_ms_between(sb, 7, 1000, 20) - 20.0) < 1e-9);
  fail_unless_equals_int(audio_ms_between(sb, 20, 1000, 20), 0);

  std::vector<Turn> turns = {{100, 900, true}, {2000, 2600, true}};
  fail_unless_equals_int(latest_turn(turns, 99), -1);
  fail_unless_equals_int(latest_turn(turns, 100), 0);
  fail_unless_equals_int(latest_turn(turns, 1999), 0);
  fail_unless_equals_int(latest_turn(turns, 5000), 1);
}
GST_END_TEST;

GST_START_TEST(test_echo) {
  EchoSpec e;
  std::string err;
  fail_unless(parse_echo("-20", e, err));
  fail_unless(e.enabled && e.gain_db == -20.0 && e.delay_ms == 40);
  fail_unless(parse_echo("-15.5:50", e, err));
  fail_unless(e.gain_db == -15.5 && e.delay_ms == 40); /* rounded down to a frame */
  fail_if(parse_echo("3", e, err));                   /* a gain, never an amplification */
  fail_if(parse_echo("-20:2000", e, err));
  fail_if(parse_echo("loud", e, err));

  /* silence plus the heard audio 20 dB down: 1/10 of its amplitude */
  std::vector<int16_t> tone(160);
  for (size_t i = 0; i < tone.size(); i++)
    tone[i] = static_cast<int16_t>(16000 * std::sin(2 * M_PI * 400 * static_cast<double>(i) / 8000));
  std::vector<uint8_t> heard(160), silence(160, 0xFF), out(160);
  pa::mulaw_encode_block(tone.data(), heard.data(), tone.size());
  mix_echo_mulaw(silence.data(), heard.data(), 0.1, out.data(), out.size());
  fail_unless(std::fabs(mulaw_level_db(out.data(), out.size()) - (mulaw_level_db(heard.data(), heard.size()) - 20)) <
              0.5);
  /* which played frame echoes where: media frame j (timestamp 20j) leaves
   * at tick j+1, when frames 0..j have played; with 40 ms of delay it
   * carries frame j-2, the oldest of the 3 kept */
  fail_unless_equals_int(echo_source_frame(200, 40, 11, 3), 8);
  fail_unless_equals_int(echo_source_frame(200, 0, 11, 1), 10);
  fail_unless_equals_int(echo_source_frame(20, 40, 2, 3), -1);  /* before the stream */
  fail_unless_equals_int(echo_source_frame(200, 40, 8, 3), -1);  /* not played yet */
  fail_unless_equals_int(echo_source_frame(200, 40, 12, 3), -1); /* no longer kept */
  /* no echo: the caller's audio unchanged */
  mix_echo_mulaw(heard.data(), silence.data(), 0.1, out.data(), out.size());
  fail_unless(out == heard);
}
GST_END_TEST;

GST_START_TEST(test_levels) {
  auto silence = std::vector<uint8_t>(160, pa::kMulawSilence);
  fail_unless(mulaw_level_db(silence.data(), silence.size()) < -100);
  std::vector<int16_t> pcm(160);
  for (size_t i = 0; i < pcm.size(); i++)
    pcm[i] = static_cast<int16_t>(16384 * std::sin(2 * M_PI * 400 * static_cast<double>(i) / 8000));
  std::vector<uint8_t> mu(160);
  pa::mulaw_encode_block(pcm.data(), mu.data(), 160);
  float db = mulaw_level_db(mu.data(), mu.size());
  fail_unless(db > -10 && db < -8, "a half-scale sine is about -9 dBFS, got %f", db);
}
GST_END_TEST;

/* ------------------------------------------------------------ stats */

GST_START_TEST(test_percentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; i--)
    v.push_back(i);
  Summary s = summarize(v);
  fail_unless_equals_int(s.count, 100);
  fail_unless_equals_float(s.p50, 50);
  fail_unless_equals_float(s.p95, 95);
  fail_unless_equals_float(s.p99, 99);
  fail_unless_equals_float(s.max, 100);
  fail_unless_equals_float(s.mean, 50.5);
  std::vector<double> one = {7};
  s = summarize(one);
  fail_unless_equals_float(s.p50, 7);
  fail_unless_equals_float(s.p99, 7);
  std::vector<double> none;
  fail_unless_equals_int(summarize(none).count, 0);
}
GST_END_TEST;

/* ------------------------------------------------------------ specs */

GST_START_TEST(test_specs) {
  std::string err;
  std::vector<DtmfSpec> d;
  fail_unless(parse_dtmf_spec("3000:#, 1500:1", d, err));
  fail_unless_equals_int(d.size(), 2);
  fail_unless_equals_int(d[0].at_ms, 1500);
  assert_str(d[0].digit, "1");
  assert_str(d[1].digit, "#");
  fail_if(parse_dtmf_spec("1500:x", d, err));
  fail_if(parse_dtmf_spec("abc:1", d, err));

  std::vector<Range> r;
  fail_unless(parse_ranges("5000-5600,2000-2400", r, err));
  fail_unless_equals_int(r.size(), 2);
  fail_unless_equals_int(r[0].begin_ms, 2000);
  fail_unless(r[0].contains(2000) && !r[0].contains(2400));
  fail_if(parse_ranges("2400-2000", r, err));
  fail_if(parse_ranges("2000", r, err));

  InjectSpec i;
  fail_unless(parse_inject("wrong-stream-sid@1500", i, err));
  fail_unless(i.kind == InjectKind::WrongStreamSid && i.at_ms == 1500);
  fail_unless(parse_inject("media-before-start@0", i, err));
  fail_if(parse_inject("media-before-start@10", i, err));
  fail_if(parse_inject("frobnicate@10", i, err));
  fail_if(parse_inject("binary", i, err));
  assert_str(inject_name(InjectKind::StopReading), "stop-reading");

  std::string host;
  int port = 0;
  fail_unless(parse_host_port("[::1]:8080", host, port, err));
  assert_str(host, "::1");
  fail_unless_equals_int(port, 8080);
  fail_if(parse_host_port("example.com", host, port, err));

  fail_unless(is_loopback_host("127.0.0.1"));
  fail_unless(is_loopback_host("127.8.9.10"));
  fail_unless(is_loopback_host("localhost"));
  fail_unless(is_loopback_host("[::1]"));
  fail_if(is_loopback_host("10.0.0.1"));
  fail_if(is_loopback_host("example.com"));
}
GST_END_TEST;

/* ------------------------------------------------------------ ws frames */

GST_START_TEST(test_ws_frames) {
  /* RFC 6455 section 1.3 example */
  assert_str(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

  /* our frames: masked, with the right length encodings */
  for (size_t len : {size_t(5), size_t(200), size_t(70000)}) {
    std::string out;
    std::string payload(len, 'x');
    ws::append_frame(out, ws::Text, payload.data(), payload.size(), 0x11223344);
    size_t hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    fail_unless_equals_int(out.size(), hdr + 4 + len);
    fail_unless_equals_int(static_cast<uint8_t>(out[0]), 0x81);
    fail_unless(static_cast<uint8_t>(out[1]) & 0x80);
    fail_unless_equals_int(static_cast<uint8_t>(out[hdr + 4]), 'x' ^ 0x11);
  }

  /* server frames, fed byte by byte */
  ws::FrameParser parser;
  std::string in = std::string("\x81\x05hello", 7) + std::string("\x01\x03" "abc", 5) +
                   std::string("\x80\x02" "de", 4) + std::string("\x89\x00", 2);
  std::string err;
  ws::Frame f;
  std::vector<ws::Frame> frames;
  for (char c : in) {
    parser.feed(&c, 1);
    while (parser.next(f, err) == ws::FrameParser::Result::Frame)
      frames.push_back(f);
  }
  fail_unless_equals_int(frames.size(), 4);
  assert_str(frames[0].payload, "hello");
  fail_unless(!frames[1].fin && frames[1].opcode == ws::Text);
  fail_unless(frames[2].fin && frames[2].opcode == ws::Continuation);
  fail_unless(frames[3].opcode == ws::Ping);

  /* errors: a masked server frame, a long control frame */
  ws::FrameParser p2;
  p2.feed("\x81\x85", 2);
  fail_unless(p2.next(f, err) == ws::FrameParser::Result::Error);
  ws::FrameParser p3;
  p3.feed("\x88\x7e\x00\x80", 4);
  fail_unless(p3.next(f, err) == ws::FrameParser::Result::Error);
}
GST_END_TEST;

/* ------------------------------------------------------------ fast parse */

GST_START_TEST(test_fast_parse) {
  namespace tw = pa::twilio;
  const std::string sid = "MZ0123456789abcdef0123456789abcdef";
  auto payload = bytes(160, 0x55);
  tw::OutboundMessage fast, slow;
  std::string err;

  std::string media = tw::build_media(sid, payload.data(), payload.size());
  fail_unless(parse_outbound_fast(media, fast));
  fail_unless(tw::parse_outbound(media, slow, err) == tw::ParseResult::Ok);
  fail_unless(fast.event == slow.event && fast.stream_sid == slow.stream_sid && fast.payload == slow.payload);

  std::string mark = tw::build_mark(sid, "item_1:1200:g1:m7");
  fail_unless(parse_outbound_fast(mark, fast));
  fail_unless(tw::parse_outbound(mark, slow, err) == tw::ParseResult::Ok);
  fail_unless(fast.event == tw::Event::Mark && fast.mark_name == slow.mark_name && fast.stream_sid == sid);

  /* anything not canonical goes to the full parser */
  const char *others[] = {
      "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"AAAA\",\"track\":\"x\"}}",
      "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"!!!!\"}}",
      "{\"event\":\"media\", \"streamSid\":\"MZ1\",\"media\":{\"payload\":\"AAAA\"}}",
      "{\"streamSid\":\"MZ1\",\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"}}",
      "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\\\"b\"}}",
      "{\"event\":\"media\",\"streamSid\":\"M\\u005a1\",\"media\":{\"payload\":\"AAAA\"}}",
      "{\"event\":\"clear\",\"streamSid\":\"MZ1\"}",
      "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"AAAA\"}}x",
      "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"caf\xc3\xa9\"}}",
  };
  for (const char *o : others)
    fail_if(parse_outbound_fast(o, fast), "fast path accepted %s", o);
}
GST_END_TEST;

/* ------------------------------------------------------------ script */

GST_START_TEST(test_audio_script) {
  Options opt;
  opt.tail_ms = 100;
  std::string err;
  fail_unless(parse_ranges("200-260", opt.silence_gaps, err));
  fail_unless(parse_dtmf_spec("100:5", opt.dtmf, err));
  InjectSpec inj;
  fail_unless(parse_inject("media-before-start@0", inj, err));
  opt.injects.push_back(inj);
  /* 500 ms of audio (+100 ms tail) = 30 frames; 3 omitted by the gap */
  Script s = make_audio_script(std::vector<uint8_t>(4000, 0x22), opt);
  fail_unless_equals_int(s.media_frames, 27);
  fail_unless(s.events[0].kind == CallerEventKind::Connected);
  fail_unless(s.events[1].kind == CallerEventKind::Inject);
  fail_unless(s.events[2].kind == CallerEventKind::Start);
  const CallerEvent &m0 = s.events[3];
  fail_unless(m0.kind == CallerEventKind::Media);
  fail_unless_equals_int(m0.t_us, 20000);
  fail_unless_equals_int(m0.timestamp_ms, 0);
  fail_unless_equals_int(m0.chunk, 1);
  int64_t prev_ts = -20, chunk = 0;
  bool jumped = false, dtmf = false;
  for (const auto &e : s.events) {
    if (e.kind == CallerEventKind::Dtmf) {
      dtmf = true;
      fail_unless_equals_int(e.t_us, 100000);
    }
    if (e.kind != CallerEventKind::Media)
      continue;
    fail_unless_equals_int(e.chunk, ++chunk); /* chunks count sent messages */
    fail_unless_equals_int(e.t_us, (e.timestamp_ms + 20) * 1000);
    if (e.timestamp_ms - prev_ts != 20) {
      jumped = true; /* the gap: timestamps jump from 180 to 260 */
      fail_unless_equals_int(prev_ts, 180);
      fail_unless_equals_int(e.timestamp_ms, 260);
    }
    prev_ts = e.timestamp_ms;
  }
  fail_unless(jumped && dtmf);
  fail_unless(s.events.back().kind == CallerEventKind::Stop);
  fail_unless_equals_int(s.end_us, 620000);

  /* --hangup-ms cuts the script */
  Options opt2;
  opt2.hangup_ms = 300;
  Script h = make_audio_script(std::vector<uint8_t>(8000, 0x22), opt2);
  fail_unless(h.events.back().kind == CallerEventKind::Stop);
  fail_unless_equals_int(h.end_us, 300000);
  for (const auto &e : h.events)
    fail_unless(e.t_us <= 300000);
}
GST_END_TEST;

GST_START_TEST(test_synth_turns) {
  std::vector<uint8_t> a = synth_caller_mulaw(6000);
  fail_unless_equals_int(a.size(), 48000);
  Options opt;
  Script s = make_audio_script(a, opt);
  /* utterances start at 500, 3000 and 5500 ms */
  fail_unless_equals_int(s.turns.size(), 3);
  fail_unless(std::abs(s.turns[0].onset_ms - 500) <= 60);
  fail_unless(std::abs(s.turns[1].onset_ms - 3000) <= 60);
  fail_unless(s.turns[0].ended && s.turns[1].ended);
}
GST_END_TEST;

/* ------------------------------------------------------------ phases */

GST_START_TEST(test_phase_schedule) {
  for (int n : {1, 2, 4, 5, 8, 10, 16, 20})
    fail_unless(PhaseSchedule::valid(n), "%d", n);
  for (int n : {-1, 0, 3, 6, 7, 9, 12, 15, 21, 40})
    fail_if(PhaseSchedule::valid(n), "%d", n);
  assert_str(PhaseSchedule::valid_list(), "1, 2, 4, 5, 8, 10, 16 or 20");

  /* one phase: every call on every 20 ms tick, in the order the single shared
   * tick always used (call (i + tick) mod N first) */
  PhaseSchedule one(1, 5);
  fail_unless_equals_int(one.period_us(), 20000);
  for (int64_t t = 0; t < 12; t++) {
    fail_unless_equals_int(one.frame_of(t), t);
    fail_unless_equals_int(one.phase_at(t), 0);
    std::vector<size_t> order;
    one.for_each(one.frame_of(t), one.phase_at(t), [&](size_t i) { order.push_back(i); });
    fail_unless_equals_int(order.size(), 5);
    for (size_t i = 0; i < 5; i++)
      fail_unless_equals_int(order[i], (i + static_cast<size_t>(t)) % 5);
  }

  /* four phases, 10 calls: sub-ticks every 5 ms; sub-tick s is frame s / 4 of
   * phase s % 4 and touches only that phase's calls (i % 4 == phase), each
   * once, rotating within the phase */
  PhaseSchedule four(4, 10);
  fail_unless_equals_int(four.period_us(), 5000);
  fail_unless_equals_int(four.offset_us(3), 15000);
  fail_unless_equals_int(four.bucket(0).size(), 3); /* 0 4 8 */
  fail_unless_equals_int(four.bucket(3).size(), 2); /* 3 7 */
  std::vector<int> acted(10, 0);
  for (int64_t s = 0; s < 4 * 6; s++) {
    const int64_t frame = four.frame_of(s);
    const int phase = four.phase_at(s);
    fail_unless_equals_int(frame, s / 4);
    fail_unless_equals_int(phase, s % 4);
    std::vector<size_t> order;
    four.for_each(frame, phase, [&](size_t i) { order.push_back(i); });
    fail_unless_equals_int(order.size(), four.bucket(phase).size());
    for (size_t i : order) {
      fail_unless_equals_int(four.phase_of(i), phase);
      acted[i]++;
    }
    fail_unless_equals_int(order[0], four.bucket(phase)[static_cast<size_t>(frame) % order.size()]);
  }
  for (int a : acted)
    fail_unless_equals_int(a, 6); /* once per frame */

  /* fewer calls than phases: empty buckets are fine */
  PhaseSchedule sparse(20, 3);
  int touched = 0;
  for (int64_t s = 0; s < 40; s++)
    sparse.for_each(sparse.frame_of(s), sparse.phase_at(s), [&](size_t) { touched++; });
  fail_unless_equals_int(touched, 6);
}
GST_END_TEST;

/* The real ticker at 20/N ms driving the schedule, as the runner does: the
 * ideal time each call is given is exact (the ticker's absolute deadlines),
 * whatever the machine's load, so these checks are exact too. */
/* A source on @ctx that quits @loop after @seconds (the caller destroys
 * and unrefs it). */
static GSource *quit_after(GMainContext *ctx, GMainLoop *loop, guint seconds) {
  GSource *guard = g_timeout_source_new_seconds(seconds);
  g_source_set_callback(guard, G_SOURCE_FUNC(+[](gpointer l) -> gboolean {
                          g_main_loop_quit(static_cast<GMainLoop *>(l));
                          return G_SOURCE_REMOVE;
                        }),
                        loop, nullptr);
  g_source_attach(guard, ctx);
  return guard;
}

GST_START_TEST(test_phase_ticker) {
  constexpr int kPhases = 4, kCalls = 6, kFrames = 8;
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  GMainLoop *loop = g_main_loop_new(ctx, FALSE);

  PhaseSchedule sched(kPhases, kCalls);
  struct Act {
    int64_t frame, ideal_us, now_us;
  };
  std::vector<std::vector<Act>> acts(kCalls);
  std::vector<int64_t> subs;
  Ticker ticker(
      sched.period_us(),
      [&](int64_t sub, int64_t ideal_us) {
        subs.push_back(sub);
        const int64_t frame = sched.frame_of(sub);
        sched.for_each(frame, sched.phase_at(sub),
                       [&](size_t i) { acts[i].push_back({frame, ideal_us, g_get_monotonic_time()}); });
        if (sub + 1 == int64_t{kFrames} * kPhases) {
          /* stopped here: a wake-up that is catching up after a stall of
           * the machine would otherwise go on with the next sub-ticks */
          ticker.stop();
          g_main_loop_quit(loop);
        }
      },
      Ticker::kDefaultMaxCatchUp * kPhases);
  const int64_t origin = g_get_monotonic_time() + 2000;
  ticker.start(origin);
  GSource *guard = quit_after(ctx, loop, 10); /* never hang */
  g_main_loop_run(loop);
  ticker.stop();
  g_source_destroy(guard);
  g_source_unref(guard);

  fail_unless_equals_int(subs.size(), kFrames * kPhases);
  for (size_t s = 0; s < subs.size(); s++)
    fail_unless_equals_int(subs[s], s);
  for (int i = 0; i < kCalls; i++) {
    const auto &a = acts[static_cast<size_t>(i)];
    fail_unless_equals_int(a.size(), kFrames);
    const int64_t offset = (i % kPhases) * 5000; /* its phase within the frame */
    for (size_t k = 0; k < a.size(); k++) {
      fail_unless_equals_int(a[k].frame, k);
      /* its own exact 20 ms grid, at its phase's offset */
      fail_unless_equals_int(a[k].ideal_us, origin + static_cast<int64_t>(k) * 20000 + offset);
      fail_unless(a[k].now_us >= a[k].ideal_us, "call %d frame %zu ran early", i, k); /* absolute deadlines */
    }
  }
  /* calls of different phases are 5 ms apart, calls of one phase together */
  fail_unless_equals_int(acts[1][0].ideal_us - acts[0][0].ideal_us, 5000);
  fail_unless_equals_int(acts[3][0].ideal_us - acts[1][0].ideal_us, 10000);
  fail_unless_equals_int(acts[4][0].ideal_us, acts[0][0].ideal_us);

  g_main_loop_unref(loop);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}
GST_END_TEST;

/* The ticker must not starve the sockets. With --phases 20 (a 1 ms tick) and
 * poll batching (the default from 50 calls, which sleeps up to the next
 * tick), nearly every main-loop wake-up finds a tick due; when the ticker
 * outranked the sockets, those wake-ups ran only the tick, the calls' sockets
 * were read far too late and the echo was lost (100 calls against the echo
 * server got 94% of their audio back, with 17 times the underruns of
 * --phases 1). Checked by structure, not by timing: a socket that is always
 * readable (a pipe never drained) is served in every wake-up that runs the
 * ticker, however late or few those wake-ups are on a loaded machine. */
GST_START_TEST(test_tick_with_io) {
  constexpr int kPhases = 20, kSubTicks = 200;
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  GMainLoop *loop = g_main_loop_new(ctx, FALSE);

  PhaseSchedule sched(kPhases, 1);
  int64_t ticks = 0;
  Ticker ticker(
      sched.period_us(),
      [&](int64_t, int64_t) {
        if (++ticks == kSubTicks)
          g_main_loop_quit(loop);
      },
      Ticker::kDefaultMaxCatchUp * kPhases);
  ticker.start(g_get_monotonic_time() + 2000);
  PollBatcher batcher;
  batcher.install(ctx, ticker, 1000); /* the default from 50 calls */
  fail_unless(batcher.installed());

  /* attached after the ticker, as the calls' sockets are */
  int fds[2];
  fail_unless(pipe(fds) == 0);
  fail_unless(write(fds[1], "x", 1) == 1);
  int64_t served = 0;
  GSource *io = g_unix_fd_source_new(fds[0], G_IO_IN);
  g_source_set_callback(io, G_SOURCE_FUNC(+[](gint, GIOCondition, gpointer d) -> gboolean {
                          ++*static_cast<int64_t *>(d);
                          return G_SOURCE_CONTINUE;
                        }),
                        &served, nullptr);
  g_source_attach(io, ctx);
  GSource *guard = quit_after(ctx, loop, 20); /* never hang */
  g_main_loop_run(loop);
  ticker.stop();
  batcher.uninstall();
  for (GSource *s : {io, guard}) {
    g_source_destroy(s);
    g_source_unref(s);
  }
  close(fds[0]);
  close(fds[1]);

  /* a late wake-up catches up several sub-ticks in one dispatch, so the
   * loop may quit a few past the count */
  const int64_t most = kSubTicks + Ticker::kDefaultMaxCatchUp * kPhases;
  fail_unless(ticks >= kSubTicks && ticks <= most, "%" G_GINT64_FORMAT " sub-ticks", ticks);
  fail_unless(ticker.wakeups() > 0);
  fail_unless(served >= ticker.wakeups(),
              "the socket was served in %" G_GINT64_FORMAT " wake-ups, the ticker ran in %" G_GINT64_FORMAT, served,
              ticker.wakeups());

  g_main_loop_unref(loop);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}
GST_END_TEST;

/* A whole run (Runner, calls, transport) against a trivial in-process peer
 * that notes when each media frame arrives: with --phases 4 the calls'
 * frames arrive at the phase of their call, 5 ms apart, each call's own
 * frames on a 20 ms grid. Robust on a loaded machine: a frame's phase is its
 * arrival time modulo 20 ms (from the run's start, the ticker's origin), each
 * call is judged by the median over its frames, and the tolerance is almost
 * half the 5 ms spacing. */
namespace {

struct PhasePeer {
  int port = 0;
  std::map<std::string, std::vector<int64_t>> arrivals; /* streamSid -> arrival of each media frame */
  std::vector<SoupWebsocketConnection *> conns;
};

void phase_peer_voice(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer data) {
  auto *peer = static_cast<PhasePeer *>(data);
  pa::twilio::ConnectStream cs;
  cs.url = "wss://127.0.0.1:" + std::to_string(peer->port) + "/media";
  std::string xml = pa::twilio::build_connect_stream(cs);
  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  soup_server_message_set_response(msg, "text/xml", SOUP_MEMORY_COPY, xml.data(), xml.size());
}

void phase_peer_message(SoupWebsocketConnection *, gint type, GBytes *message, gpointer data) {
  const int64_t now = g_get_monotonic_time();
  auto *peer = static_cast<PhasePeer *>(data);
  gsize len = 0;
  const char *p = static_cast<const char *>(g_bytes_get_data(message, &len));
  std::string_view text(p, len);
  pa::twilio::InboundMessage m;
  std::string err;
  if (type == SOUP_WEBSOCKET_DATA_TEXT && pa::twilio::parse_inbound(text, m, err) == pa::twilio::ParseResult::Ok &&
      m.event == pa::twilio::Event::Media)
    peer->arrivals[m.stream_sid].push_back(now);
}

void phase_peer_ws(SoupServer *, SoupServerMessage *, const char *, SoupWebsocketConnection *conn, gpointer data) {
  auto *peer = static_cast<PhasePeer *>(data);
  peer->conns.push_back(static_cast<SoupWebsocketConnection *>(g_object_ref(conn)));
  g_signal_connect(conn, "message", G_CALLBACK(phase_peer_message), peer);
}

} // namespace

static void run_phase_peer(bool raw) {
  constexpr int kPhases = 4, kCalls = 8;
  PhasePeer peer;
  SoupServer *server = soup_server_new(nullptr, nullptr);
  soup_server_add_handler(server, "/voice", phase_peer_voice, &peer, nullptr);
  soup_server_add_websocket_handler(server, "/media", nullptr, nullptr, phase_peer_ws, &peer, nullptr);
  GError *err = nullptr;
  fail_unless(soup_server_listen_local(server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &err), "%s",
              err ? err->message : "");
  GSList *uris = soup_server_get_uris(server);
  peer.port = g_uri_get_port(static_cast<GUri *>(uris->data));
  g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));

  Options opt;
  opt.url = "http://127.0.0.1:" + std::to_string(peer.port) + "/voice";
  opt.audio = "synth:1000";
  opt.tail_ms = 0;
  opt.calls = kCalls;
  opt.phases = kPhases;
  opt.raw_transport = raw;
  opt.max_duration_s = 20;
  opt.poll_batch_us = 0;
  opt.quiet = true;
  std::vector<uint8_t> audio;
  std::string error;
  fail_unless(load_caller_audio(opt.audio, audio, error), "%s", error.c_str());
  Script script = make_audio_script(std::move(audio), opt);

  std::vector<CallReport> reports;
  int64_t origin = 0;
  {
    Runner runner(opt, script);
    fail_unless(runner.init(error), "%s", error.c_str());
    runner.run();
    fail_if(runner.timed_out());
    origin = runner.run_start_us(); /* the ticker's origin */
    reports = runner.reports();
  }
  fail_unless_equals_int(reports.size(), kCalls);
  /* Each call's frames go at its phase on the 20 ms dial: origin + (i mod 4)
   * x 5 ms. The peer sees them a little later, by how much depending on the
   * machine's load: a busy peer delays frames by a few ms, a stall of the
   * machine a run of them by any amount (a 300 ms stall is 15 frames of the
   * 50), and a peer that lags behind lags for every call alike. So each
   * call's phase as the peer sees it is where most of its frames arrive: the
   * 3 ms window of the dial (0.5 ms steps) that holds the most of them; late
   * frames spread over the dial, and a lag moves every call's window by the
   * same amount. Measured from call 0's window, call i's must then be its
   * own phase's distance from call 0's, within 2.5 ms: a call sent at
   * another phase is 5 ms or more off. (That the phases start at the
   * origin, and that no frame goes early, the emulator's own pacing says:
   * below, and test_phase_ticker.) */
  std::vector<int64_t> seen(kCalls, 0);
  std::vector<size_t> in_window(kCalls, 0);
  for (int i = 0; i < kCalls; i++) {
    const CallReport &r = reports[static_cast<size_t>(i)];
    assert_str(r.outcome, "completed");
    const auto &t = peer.arrivals[r.stream_sid];
    fail_unless_equals_int(t.size(), script.media_frames);
    fail_unless(t.size() >= 40);
    for (int64_t w = 0; w < 20000; w += 500) {
      size_t n = 0;
      for (int64_t a : t)
        n += ((a - origin - w) % 20000 + 20000) % 20000 < 3000;
      if (n > in_window[static_cast<size_t>(i)]) {
        in_window[static_cast<size_t>(i)] = n;
        seen[static_cast<size_t>(i)] = w;
      }
    }
    const int64_t want = (i % kPhases) * 5000;
    int64_t off = ((seen[static_cast<size_t>(i)] - seen[0] - want) % 20000 + 20000) % 20000;
    off = off > 10000 ? off - 20000 : off;
    fail_unless(std::llabs(off) <= 2500,
                "call %d (transport %s): most of its frames (%zu of %zu) arrive %.1f ms into the dial, call 0's "
                "(%zu) at %.1f ms: %.1f ms from its phase, %.0f ms after call 0's: sent at another phase",
                i, raw ? "raw" : "libsoup", in_window[static_cast<size_t>(i)], t.size(),
                seen[static_cast<size_t>(i)] / 1000.0, in_window[0], seen[0] / 1000.0, off / 1000.0, want / 1000.0);
    /* its own frames 20 ms apart: the median gap between arrivals */
    std::vector<int64_t> gaps;
    for (size_t k = 1; k < t.size(); k++)
      gaps.push_back(t[k] - t[k - 1]);
    std::sort(gaps.begin(), gaps.end());
    fail_unless(std::llabs(gaps[gaps.size() / 2] - 20000) <= 2400, "call %d: median gap %.2f ms", i,
                gaps[gaps.size() / 2] / 1000.0);
    /* pacing is measured against its own phase's ideal time: never before
     * it (the ticker's deadlines are absolute), and some of a call's frames
     * go on time (how late the others go depends on the machine's load);
     * measured against another phase's time, every frame of the call would
     * be 5 ms (a phase) or more late */
    fail_unless(!r.pacing_us.empty());
    const int32_t first = *std::min_element(r.pacing_us.begin(), r.pacing_us.end());
    fail_unless(first >= 0, "call %d: sent %.2f ms before its time", i, -first / 1000.0);
    fail_unless(first < 4000, "call %d (transport %s): no frame sent less than %.2f ms after its time", i,
                raw ? "raw" : "libsoup", first / 1000.0);
  }

  for (auto *c : peer.conns)
    g_object_unref(c);
  soup_server_disconnect(server);
  g_object_unref(server);
}

GST_START_TEST(test_phase_run) {
  run_phase_peer(false);
  run_phase_peer(true);
}
GST_END_TEST;

static Suite *emulator_suite(void) {
  Suite *s = suite_create("emulator");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_playout_marks);
  tcase_add_test(tc, test_playout_clear);
  tcase_add_test(tc, test_playout_underruns);
  tcase_add_test(tc, test_playout_runs);
  tcase_add_test(tc, test_clear_figures);
  tcase_add_test(tc, test_echo);
  tcase_add_test(tc, test_turns);
  tcase_add_test(tc, test_levels);
  tcase_add_test(tc, test_percentiles);
  tcase_add_test(tc, test_specs);
  tcase_add_test(tc, test_ws_frames);
  tcase_add_test(tc, test_fast_parse);
  tcase_add_test(tc, test_audio_script);
  tcase_add_test(tc, test_synth_turns);
  tcase_add_test(tc, test_phase_schedule);
  tcase_add_test(tc, test_phase_ticker);
  tcase_add_test(tc, test_tick_with_io);
  tcase_add_test(tc, test_phase_run);
  return s;
}

GST_CHECK_MAIN(emulator);
