/* twilio-emulator: the caller-side script */
#include "script.h"

#include <algorithm>
#include <cstdlib>

#include "capture.h"
#include "pa-audio.h"
#include "synth.h"
#include "twilio-protocol.h"

namespace emu {

namespace {

constexpr int64_t kFrameMs = 20;
constexpr size_t kFrame = pa::kTwilioFrameBytes;

int rank(const CallerEvent &e) {
  switch (e.kind) {
  case CallerEventKind::Connected: return 0;
  case CallerEventKind::Start: return 2;
  case CallerEventKind::Media: return 3;
  case CallerEventKind::Dtmf: return 4;
  case CallerEventKind::Inject: return e.inject == InjectKind::MediaBeforeStart ? 1 : 5;
  case CallerEventKind::Stop: return 6;
  }
  return 5;
}

bool in_gap(const Options &opt, int64_t ts_ms) {
  for (const auto &r : opt.silence_gaps)
    if (r.contains(ts_ms))
      return true;
  return false;
}

/* Adds dtmf and injections, applies --hangup-ms, sorts, and analyses what
 * the server will hear. */
void finalize(Script &s, const Options &opt) {
  for (const auto &d : opt.dtmf) {
    CallerEvent e;
    e.kind = CallerEventKind::Dtmf;
    e.t_us = d.at_ms * 1000;
    e.digit = d.digit;
    s.events.push_back(e);
  }
  for (const auto &inj : opt.injects) {
    CallerEvent e;
    e.kind = CallerEventKind::Inject;
    e.t_us = inj.at_ms * 1000;
    e.inject = inj.kind;
    s.events.push_back(e);
  }
  if (opt.hangup_ms >= 0 && opt.hangup_ms * 1000 < s.end_us) {
    s.end_us = opt.hangup_ms * 1000;
    s.events.erase(std::remove_if(s.events.begin(), s.events.end(),
                                  [&](const CallerEvent &e) {
                                    return e.kind == CallerEventKind::Stop ||
                                           (e.t_us >= s.end_us && e.kind != CallerEventKind::Connected &&
                                            e.kind != CallerEventKind::Start);
                                  }),
                   s.events.end());
    CallerEvent stop;
    stop.kind = CallerEventKind::Stop;
    stop.t_us = s.end_us;
    s.events.push_back(stop);
  }
  /* events after stop are never sent: drop them (injections past the end) */
  s.events.erase(std::remove_if(s.events.begin(), s.events.end(),
                                [&](const CallerEvent &e) {
                                  return e.t_us > s.end_us && e.kind != CallerEventKind::Stop;
                                }),
                 s.events.end());
  std::stable_sort(s.events.begin(), s.events.end(), [](const CallerEvent &a, const CallerEvent &b) {
    if (a.t_us != b.t_us)
      return a.t_us < b.t_us;
    return rank(a) < rank(b);
  });

  s.media_frames = 0;
  const size_t frames = static_cast<size_t>(s.end_us / 1000 / kFrameMs) + 1;
  std::vector<uint8_t> heard_by_server(frames * kFrame, pa::kMulawSilence);
  for (const auto &e : s.events) {
    if (e.kind != CallerEventKind::Media)
      continue;
    s.media_frames++;
    size_t at = static_cast<size_t>(std::max<int64_t>(0, e.timestamp_ms)) * 8;
    if (at >= heard_by_server.size())
      continue;
    size_t n = std::min(e.len, heard_by_server.size() - at);
    std::copy_n(s.audio.begin() + static_cast<std::ptrdiff_t>(e.offset), n, heard_by_server.begin() + static_cast<std::ptrdiff_t>(at));
  }
  s.caller_level_db.resize(frames);
  for (size_t k = 0; k < frames; k++)
    s.caller_level_db[k] = mulaw_level_db(heard_by_server.data() + k * kFrame, kFrame);
  s.turns = detect_turns(s.caller_level_db, opt.turn);
}

} // namespace

bool load_caller_audio(const std::string &spec, std::vector<uint8_t> &out, std::string &error) {
  if (spec.rfind("synth:", 0) == 0) {
    char *end = nullptr;
    long long ms = std::strtoll(spec.c_str() + 6, &end, 10);
    if (!end || *end || ms <= 0 || ms > 24LL * 3600 * 1000) {
      error = "--audio synth:MS needs a positive duration in ms, got '" + spec + "'";
      return false;
    }
    out = synth_caller_mulaw(ms);
    return true;
  }
  if (!pa::wav_to_mulaw8k(spec, out, error)) {
    error = "--audio " + spec + ": " + error;
    return false;
  }
  return true;
}

Script make_audio_script(std::vector<uint8_t> mulaw, const Options &opt) {
  Script s;
  s.source = opt.audio;
  s.audio = std::move(mulaw);
  /* whole frames (Twilio always sends 160 bytes), then the tail of silence */
  size_t padded = (s.audio.size() + kFrame - 1) / kFrame * kFrame;
  size_t tail = static_cast<size_t>(std::max<int64_t>(0, opt.tail_ms)) * 8;
  tail = (tail + kFrame - 1) / kFrame * kFrame;
  s.audio.resize(padded + tail, pa::kMulawSilence);

  CallerEvent connected;
  connected.kind = CallerEventKind::Connected;
  s.events.push_back(connected);
  CallerEvent start;
  start.kind = CallerEventKind::Start;
  s.events.push_back(start);

  const size_t frames = s.audio.size() / kFrame;
  int64_t chunk = 0;
  for (size_t j = 0; j < frames; j++) {
    int64_t ts = static_cast<int64_t>(j) * kFrameMs;
    if (in_gap(opt, ts))
      continue; /* silence suppression: nothing sent, the timestamp jumps */
    CallerEvent m;
    m.kind = CallerEventKind::Media;
    m.t_us = (ts + kFrameMs) * 1000;
    m.offset = j * kFrame;
    m.len = kFrame;
    m.chunk = ++chunk;
    m.timestamp_ms = ts;
    s.events.push_back(m);
  }
  CallerEvent stop;
  stop.kind = CallerEventKind::Stop;
  stop.t_us = (static_cast<int64_t>(frames) + 1) * kFrameMs * 1000;
  s.end_us = stop.t_us;
  s.events.push_back(stop);
  finalize(s, opt);
  return s;
}

bool make_replay_script(const Options &opt, Script &out, std::string &error) {
  std::vector<CapturedMessage> msgs;
  if (!read_capture(opt.replay, opt.replay_call, msgs, error))
    return false;
  Script s;
  s.source = "replay " + opt.replay;
  bool have_start = false, have_stop = false;
  int64_t last_us = 0;
  for (const auto &m : msgs) {
    pa::twilio::InboundMessage in;
    std::string perr;
    if (pa::twilio::parse_inbound(m.text, in, perr) != pa::twilio::ParseResult::Ok)
      continue; /* not something Twilio sends: skip it */
    CallerEvent e;
    /* on the 20 ms grid: the tick nearest the captured time (a capture holds
     * actual send times, a little after their ideal ticks) */
    const int64_t tick_us = kFrameMs * 1000;
    e.t_us = std::max<int64_t>(0, (m.t_us + tick_us / 2) / tick_us * tick_us);
    switch (in.event) {
    case pa::twilio::Event::Connected: e.kind = CallerEventKind::Connected; break;
    case pa::twilio::Event::Start:
      e.kind = CallerEventKind::Start;
      have_start = true;
      break;
    case pa::twilio::Event::Media:
      if (in_gap(opt, in.timestamp_ms))
        continue;
      e.kind = CallerEventKind::Media;
      e.offset = s.audio.size();
      e.len = in.payload.size();
      e.chunk = in.chunk;
      e.timestamp_ms = in.timestamp_ms;
      s.audio.insert(s.audio.end(), in.payload.begin(), in.payload.end());
      break;
    case pa::twilio::Event::Dtmf:
      e.kind = CallerEventKind::Dtmf;
      e.digit = in.digit;
      break;
    case pa::twilio::Event::Stop:
      e.kind = CallerEventKind::Stop;
      have_stop = true;
      break;
    default:
      continue; /* mark echoes are answers to this server's marks, not replayed */
    }
    last_us = std::max(last_us, e.t_us);
    s.events.push_back(std::move(e));
    if (have_stop)
      break;
  }
  if (!have_start) {
    error = opt.replay + ": the captured call has no 'start' message";
    return false;
  }
  if (!have_stop) {
    CallerEvent stop;
    stop.kind = CallerEventKind::Stop;
    stop.t_us = last_us + kFrameMs * 1000;
    s.events.push_back(stop);
    last_us = stop.t_us;
  }
  s.end_us = last_us;
  finalize(s, opt);
  out = std::move(s);
  return true;
}

} // namespace emu
