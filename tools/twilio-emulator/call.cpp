/* twilio-emulator: one call's state machine, from the open WebSocket to the
 * end (the webhook half is call-webhook.cpp, injections call-inject.cpp) */
#include "call.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "capture.h"
#include "fast-parse.h"
#include "pa-audio.h"
#include "synth.h"
#include "turns.h"
#include "twilio-protocol.h"

namespace emu {

namespace tw = pa::twilio;

namespace {

constexpr size_t kMaxListedErrors = 20;
constexpr size_t kErrorExcerpt = 120;
constexpr int64_t kTickUs = 20000;

std::string excerpt(const char *data, size_t len) {
  std::string s(data, std::min(len, kErrorExcerpt));
  for (char &c : s)
    if (static_cast<unsigned char>(c) < 0x20)
      c = ' ';
  if (len > kErrorExcerpt)
    s += "...";
  return s;
}

double ms_between(int64_t from_us, int64_t to_us) { return static_cast<double>(to_us - from_us) / 1000.0; }

} // namespace

Call::Call(CallHost &host, const Options &opt, const Script &script, int index)
    : host_(host), opt_(opt), script_(script), cancel_(g_cancellable_new()) {
  report_.index = index;
  report_.call_sid = tw::make_sid("CA");
  report_.stream_sid = tw::make_sid("MZ");
  account_sid_ = opt.account_sid;
  /* libsoup cannot stop reading: a stop-reading injection needs the raw client */
  bool raw = opt.raw_transport || std::any_of(opt.injects.begin(), opt.injects.end(), [](const InjectSpec &i) {
               return i.kind == InjectKind::StopReading;
             });
  transport_ = raw ? make_raw_transport(*this) : make_soup_transport(*this);
  report_.transport = raw ? "raw" : "libsoup";
  released_.reserve(16);
}

Call::~Call() {
  g_cancellable_cancel(cancel_);
  transport_.reset();
  g_clear_object(&webhook_msg_);
  g_object_unref(cancel_);
}

int64_t Call::stream_time_us() const {
  int64_t now = g_get_monotonic_time();
  return t0_us_ ? now - t0_us_ : now - webhook_start_us_;
}

/* ------------------------------------------------------------ stream */

void Call::on_transport_open() {
  if (state_ != State::Connecting)
    return;
  report_.connect_ms = ms_between(connect_start_us_, g_get_monotonic_time());
  state_ = State::Ready; /* the stream starts on the next shared tick */
}

void Call::on_transport_failed(int http_status, const std::string &message) {
  if (state_ != State::Connecting)
    return;
  report_.connect_ms = ms_between(connect_start_us_, g_get_monotonic_time());
  if (http_status > 0 && http_status != 101)
    finish("ws-upgrade-" + std::to_string(http_status),
           "WebSocket " + report_.stream_url + " refused the upgrade: HTTP " + std::to_string(http_status));
  else
    finish("ws-connect-error", "WebSocket " + report_.stream_url + ": " + message);
}

void Call::begin_stream(int64_t tick, int64_t ideal_us) {
  t0_us_ = ideal_us;
  first_tick_ = tick;
  state_ = State::Streaming;
  if (CaptureWriter *w = host_.capture()) {
    for (auto &l : pre_stream_)
      w->write_line(l.build(l.abs_us - t0_us_));
    pre_stream_.clear();
  }
  size_t expected_frames = static_cast<size_t>(script_.end_us / kTickUs) + 2;
  heard_db_.reserve(expected_frames);
  heard_server_.reserve(expected_frames);
  report_.pacing_us.reserve(script_.media_frames);
  if (!opt_.out_dir.empty())
    heard_.reserve(expected_frames * playout_.frame_bytes());
  if (opt_.echo.enabled)
    echo_ring_.assign(static_cast<size_t>(opt_.echo.delay_ms / 20 + 1) * playout_.frame_bytes(), pa::kMulawSilence);
}

void Call::on_tick(int64_t tick, int64_t ideal_us) {
  /* what this tick sends leaves in one write where the transport can batch */
  struct Batch {
    Transport &t;
    explicit Batch(Transport &tr) : t(tr) { t.begin_batch(); }
    ~Batch() { t.end_batch(); }
  } batch(*transport_);
  tick_send(tick, ideal_us);
  tick_play(ideal_us);
}

void Call::tick_send(int64_t tick, int64_t ideal_us) {
  if (state_ == State::Ready)
    begin_stream(tick, ideal_us);
  if (state_ != State::Streaming)
    return;
  const int64_t rel_us = (tick - first_tick_) * kTickUs;
  const auto &events = script_.events;
  while (next_event_ < events.size() && events[next_event_].t_us <= rel_us && state_ == State::Streaming)
    send_event(events[next_event_++], ideal_us);
}

void Call::tick_play(int64_t ideal_us) {
  if (state_ != State::Streaming)
    return;
  uint8_t frame[pa::kTwilioFrameBytes];
  released_.clear();
  playout_.tick(frame, released_);
  if (size_t gap = playout_.ended_gap_bytes(); gap && report_.underrun_spans.size() < CallReport::kMaxUnderrunSpans) {
    /* audio came back at this tick: the gap took the time before it */
    const int64_t gap_us = static_cast<int64_t>(gap) * 1000 / 8;
    report_.underrun_spans.push_back({ideal_us - gap_us, ideal_us});
  }
  for (const auto &name : released_)
    echo_mark(name);
  heard_db_.push_back(mulaw_level_db(frame, sizeof frame));
  if (!echo_ring_.empty()) {
    size_t slots = echo_ring_.size() / sizeof frame;
    memcpy(echo_ring_.data() + heard_server_.size() % slots * sizeof frame, frame, sizeof frame);
  }
  heard_server_.push_back(static_cast<uint8_t>(playout_.last_tick_bytes()));
  if (!opt_.out_dir.empty())
    heard_.insert(heard_.end(), frame, frame + sizeof frame);
}

void Call::send_text(const std::string &text, const char *inject) {
  transport_->send_text(text);
  report_.messages_sent++;
  if (host_.capture()) {
    int idx = report_.index;
    host_.capture()->write_line(CaptureWriter::text_line(idx, stream_time_us(), "twilio", text, inject));
  }
}

void Call::send_event(const CallerEvent &e, int64_t ideal_us) {
  const std::string &sid = report_.stream_sid;
  switch (e.kind) {
  case CallerEventKind::Connected:
    send_text(tw::build_connected());
    break;
  case CallerEventKind::Start: {
    tw::StartInfo info;
    info.account_sid = account_sid_;
    info.stream_sid = sid;
    info.call_sid = report_.call_sid;
    info.tracks = {"inbound"};
    info.custom_parameters = twiml_.stream.parameters;
    send_text(tw::build_start(++seq_, info));
    break;
  }
  case CallerEventKind::Media: {
    const uint8_t *audio = script_.audio.data() + e.offset;
    if (!echo_ring_.empty() && e.len == playout_.frame_bytes()) {
      /* the frame the caller heard delay_ms before this one's start */
      const size_t fb = playout_.frame_bytes(), slots = echo_ring_.size() / fb;
      int64_t k = echo_source_frame(e.timestamp_ms, opt_.echo.delay_ms, static_cast<int64_t>(heard_server_.size()),
                                    static_cast<int64_t>(slots));
      if (k >= 0) {
        echo_frame_.resize(fb);
        mix_echo_mulaw(audio, echo_ring_.data() + static_cast<size_t>(k) % slots * fb,
                       std::pow(10.0, opt_.echo.gain_db / 20.0), echo_frame_.data(), fb);
        audio = echo_frame_.data();
      }
    }
    std::string msg = tw::build_inbound_media(++seq_, sid, e.chunk, e.timestamp_ms, audio, e.len);
    int64_t now = g_get_monotonic_time();
    report_.pacing_us.push_back(static_cast<int32_t>(std::clamp<int64_t>(now - ideal_us, INT32_MIN, INT32_MAX)));
    send_text(msg);
    report_.frames_sent++;
    last_chunk_ = e.chunk;
    break;
  }
  case CallerEventKind::Dtmf:
    send_text(tw::build_dtmf(++seq_, sid, e.digit));
    report_.dtmf_sent++;
    break;
  case CallerEventKind::Inject:
    send_inject(e.inject, e.t_us / 1000);
    break;
  case CallerEventKind::Stop:
    end_stream();
    break;
  }
}

void Call::echo_mark(const std::string &name) {
  if (state_ != State::Streaming)
    return;
  send_text(tw::build_mark_echo(++seq_, report_.stream_sid, name));
  report_.marks_echoed++;
}

void Call::protocol_error(const char *kind, const std::string &detail, const char *data, size_t len) {
  report_.protocol_error_count++;
  if (report_.protocol_errors.size() < kMaxListedErrors) {
    ProtocolError e;
    e.t_ms = static_cast<double>(stream_time_us()) / 1000.0;
    e.kind = kind;
    e.detail = detail;
    if (data)
      e.detail += ": " + excerpt(data, len);
    report_.protocol_errors.push_back(std::move(e));
  }
}

void Call::on_transport_text(const char *data, size_t len) {
  report_.messages_received++;
  if (CaptureWriter *w = host_.capture()) {
    std::string text(data, len);
    int idx = report_.index;
    if (t0_us_)
      w->write_line(CaptureWriter::text_line(idx, stream_time_us(), "server", text, nullptr));
    else
      pre_stream_.push_back({g_get_monotonic_time(), [idx, text](int64_t t) {
                               return CaptureWriter::text_line(idx, t, "server", text, nullptr);
                             }});
  }
  if (state_ != State::Streaming && state_ != State::Ready)
    return; /* after our stop: Twilio no longer listens (a race, not an error) */

  tw::OutboundMessage &msg = rx_msg_; /* reused: no allocation per frame */
  std::string_view text(data, len);
  if (!parse_outbound_fast(text, msg)) {
    std::string err;
    tw::ParseResult r = tw::parse_outbound(text, msg, err);
    if (r != tw::ParseResult::Ok) {
      /* parse_outbound reports extra fields as MissingField: name them right */
      const char *kind = err.rfind("unexpected field", 0) == 0 ? "extra-field" : tw::parse_result_name(r);
      protocol_error(kind, "31951 " + err, data, len);
      return;
    }
  }
  if (msg.stream_sid != report_.stream_sid) {
    protocol_error("wrong-stream-sid", "31951 streamSid '" + msg.stream_sid + "' is not this stream's", data, len);
    return;
  }
  switch (msg.event) {
  case tw::Event::Media:
    report_.media_received++;
    report_.bytes_received += msg.payload.size();
    playout_.push_audio(msg.payload.data(), msg.payload.size());
    if (!opt_.out_dir.empty())
      received_.insert(received_.end(), msg.payload.begin(), msg.payload.end());
    break;
  case tw::Event::Mark:
    report_.marks_received++;
    if (playout_.push_mark(msg.mark_name))
      echo_mark(msg.mark_name);
    break;
  case tw::Event::Clear: {
    report_.clears_received++;
    ClearResult c;
    c.t_ms = static_cast<double>(stream_time_us()) / 1000.0;
    c.dropped_bytes = playout_.buffered();
    c.frames_at_arrival = heard_server_.size();
    c.played_ms_at_clear = static_cast<double>(playout_.run_played_bytes()) / 8.0;
    c.played_total_ms = static_cast<double>(playout_.played_bytes()) / 8.0;
    if (auto stop = last_audio_end_ms(heard_server_, heard_server_.size(), kTickUs / 1000))
      c.audio_stop_ms = static_cast<double>(*stop);
    c.turn = latest_turn(script_.turns, static_cast<int64_t>(c.t_ms));
    if (c.turn >= 0) {
      double onset = static_cast<double>(script_.turns[static_cast<size_t>(c.turn)].onset_ms);
      c.since_onset_ms = c.t_ms - onset;
      if (c.audio_stop_ms)
        c.audio_stop_since_onset_ms = *c.audio_stop_ms - onset;
    }
    report_.clears.push_back(c);
    std::vector<std::string> released;
    playout_.clear(released);
    for (const auto &name : released) {
      echo_mark(name);
      report_.marks_echoed_on_clear++;
    }
    break;
  }
  default:
    break;
  }
}

void Call::on_transport_binary(const uint8_t *data, size_t len) {
  report_.messages_received++;
  if (CaptureWriter *w = host_.capture())
    w->write_line(CaptureWriter::binary_line(report_.index, stream_time_us(), "server", data, len, nullptr));
  if (state_ == State::Streaming || state_ == State::Ready)
    protocol_error("binary", "31950 binary frame of " + std::to_string(len) + " bytes (Twilio takes JSON text frames)",
                   nullptr, 0);
}

void Call::end_stream() {
  if (stop_sent_ || state_ != State::Streaming)
    return;
  stop_sent_ = true;
  send_text(tw::build_stop(++seq_, report_.stream_sid, account_sid_, report_.call_sid));
  playout_.finish();
  state_ = State::Closing;
  transport_->close(1000, nullptr);
}

void Call::on_transport_closed(const CloseInfo &info) {
  if (state_ == State::Done)
    return;
  report_.closed_by = info.by_emulator ? "emulator" : "server";
  report_.close_code = info.code;
  report_.close_reason = info.reason;
  report_.server_close_code = info.server_code;
  if (CaptureWriter *w = host_.capture())
    w->write_line(CaptureWriter::close_line(report_.index, stream_time_us(), info.by_emulator ? "twilio" : "server",
                                            info.code, info.reason));
  if (!pending_outcome_.empty()) {
    finish(pending_outcome_, "the run was stopped (" + pending_outcome_ + ") before the call ended");
    return;
  }
  bool transport_injected = std::any_of(report_.injected.begin(), report_.injected.end(), [](const std::string &s) {
    return s.rfind("abrupt-close@", 0) == 0 || s.rfind("stop-reading@", 0) == 0;
  });
  if (transport_injected) {
    finish("injected");
    return;
  }
  bool clean = info.code == 1000 || info.code == 1001 || info.code == 1005;
  bool streamed = t0_us_ != 0;
  if (info.by_emulator && info.server_code == 0)
    report_.warnings.push_back("the server did not answer the close frame" +
                               (info.error.empty() ? std::string() : " (" + info.error + ")"));
  if (streamed && clean) {
    finish("completed");
  } else if (info.code == 1006) {
    finish("ws-dropped", "the server dropped the connection without a close frame" +
                             (info.error.empty() ? std::string() : ": " + info.error));
  } else {
    finish("ws-closed-" + std::to_string(info.code),
           "the server closed the stream with code " + std::to_string(info.code) +
               (info.reason.empty() ? std::string() : " (" + info.reason + ")"));
  }
}

/* ------------------------------------------------------------ the end */

void Call::shutdown(const char *outcome) {
  switch (state_) {
  case State::Idle:
    finish("not-started");
    break;
  case State::Webhook:
  case State::Connecting:
    g_cancellable_cancel(cancel_);
    transport_.reset(); /* cancels the upgrade */
    finish(outcome, std::string("stopped before the stream started: ") + outcome);
    break;
  case State::Ready: /* open, but the stream has not started: just close */
    pending_outcome_ = outcome;
    state_ = State::Closing;
    transport_->close(1000, nullptr);
    break;
  case State::Streaming:
    pending_outcome_ = outcome;
    end_stream();
    break;
  case State::Closing:
    pending_outcome_ = outcome;
    break;
  case State::Done:
    break;
  }
}

void Call::force_finish(const char *outcome) {
  if (state_ != State::Done)
    finish(outcome, std::string("the call did not end in time: ") + outcome);
}

void Call::finish(const std::string &outcome, const std::string &error) {
  if (state_ == State::Done)
    return;
  state_ = State::Done;
  report_.outcome = outcome;
  if (!error.empty())
    report_.error = error;
  int64_t now = g_get_monotonic_time();
  if (t0_us_)
    report_.stream_ms = ms_between(t0_us_, now);
  if (CaptureWriter *w = host_.capture()) {
    for (auto &l : pre_stream_)
      w->write_line(l.build(l.abs_us - webhook_start_us_));
    pre_stream_.clear();
  }
  playout_.finish();
  analyse();
  write_files();
  host_.call_finished(*this);
}

void Call::analyse() {
  report_.played_ms = static_cast<double>(playout_.played_bytes()) / 8.0;
  report_.cleared_ms = static_cast<double>(playout_.cleared_bytes()) / 8.0;
  report_.max_buffered_ms = static_cast<double>(playout_.max_buffered()) / 8.0;
  report_.underruns = playout_.underruns();
  report_.underrun_ms = static_cast<double>(playout_.underrun_bytes()) / 8.0;
  if (!t0_us_)
    return;
  /* caller turns within what was actually streamed */
  const int64_t end_ms = static_cast<int64_t>(heard_db_.size()) * (kTickUs / 1000);
  std::vector<Turn> turns;
  for (Turn t : script_.turns) {
    if (t.onset_ms >= end_ms)
      break;
    if (t.end_ms + opt_.turn.end_silence_ms > end_ms)
      t.ended = false;
    turns.push_back(t);
  }
  /* what played after each clear until the interrupting turn ended (or the next clear came) */
  auto &clears = report_.clears;
  for (size_t i = 0; i < clears.size(); i++) {
    if (clears[i].turn < 0)
      continue;
    int64_t until = script_.turns[static_cast<size_t>(clears[i].turn)].end_ms;
    if (i + 1 < clears.size())
      until = std::min(until, static_cast<int64_t>(clears[i + 1].t_ms));
    clears[i].leaked_ms = audio_ms_between(heard_server_, clears[i].frames_at_arrival, until, kTickUs / 1000);
  }
  auto latencies = response_latencies(turns, heard_db_, opt_.turn);
  for (size_t i = 0; i < turns.size(); i++)
    report_.turns.push_back({turns[i].onset_ms, turns[i].end_ms, turns[i].ended, latencies[i]});
}

void Call::write_files() {
  if (opt_.out_dir.empty() || !t0_us_)
    return;
  std::string base = opt_.out_dir + G_DIR_SEPARATOR_S + "call-" + std::to_string(report_.index);
  std::string err;
  report_.heard_path = base + "-heard.wav";
  if (!pa::wav_write_mulaw(report_.heard_path, heard_.data(), heard_.size(), err)) {
    report_.warnings.push_back(err);
    report_.heard_path.clear();
  }
  report_.received_path = base + "-received.ulaw";
  GError *gerr = nullptr;
  if (!g_file_set_contents(report_.received_path.c_str(), reinterpret_cast<const char *>(received_.data()),
                           static_cast<gssize>(received_.size()), &gerr)) {
    report_.warnings.push_back(gerr->message);
    g_error_free(gerr);
    report_.received_path.clear();
  }
  std::vector<uint8_t>().swap(heard_);
  std::vector<uint8_t>().swap(received_);
}

} // namespace emu
