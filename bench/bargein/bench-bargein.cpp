/* gst-phone-agent: bargein benchmark. Feeds the barge-in detector (the same
 * code the element runs) synthetic caller audio through μ-law, with the agent
 * taken as speaking throughout, and prints:
 *   - e2e noise set: the noise set of bench/bargein-e2e without the echo
 *     (coughs, clicks, DTMF keys, white and pink hiss, music-like tones over
 *     a -62 dBFS line; the same generator, the e2e's 6 calls and more seeds):
 *     pauses and false barge-ins per kind;
 *   - e2e speech set: every pair of the e2e's espeak-ng voices and phrases
 *     (90 utterances, -12..-30 dBFS over white or pink line noise at
 *     -62..-54 dBFS), and short words ("Stop.", "Wait." ...) in each voice:
 *     detected or missed, pause and confirm time after the true onset
 *     (p50/p95/max);
 *   - the classic sets: line noise, hum, a noise step, coughs, clicks, DTMF
 *     and speech-like voiced sound (F0 110/210 Hz, -15..-35 dBFS);
 *   - echo: a line that echoes the agent (espeak-ng, 15-25 dB down, 40-120
 *     ms late) through the element's echo path (bargein::EchoPath: the
 *     AECM canceller, the echo presence check, the echo ceiling):
 *     the noise set's coughs over it (false barge-ins) and the e2e phrases
 *     talking over it (confirm time), with the detector given the far end
 *     and the echo ceiling (Detector::far_end, Detector::echo_ceiling, as
 *     the element does) and without them (as before those guards);
 *   - the detector's cost, µs per 10 ms frame over everything fed (the echo
 *     set apart, the canceller not counted).
 * Usage: bench-bargein [min-speech-ms] [--seeds N] [--sets e2e-noise,e2e-speech,classic,echo]
 */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bargein-detector.h"
#include "bargein-echo.h"
#include "bargein-signals.h"

namespace {
struct Event {
  int onset_ms, at_ms;
  bargein::Action action;
  const char *reason;
  unsigned voiced_ms, sound_ms;
};

struct Result {
  int pauses = 0, barge_ins = 0;
  double onset_ms = -1, decision_ms = -1; /* the first barge-in */
  std::vector<Event> events;
};

double g_us = 0, g_loud_us = 0; /* time in Detector::process: all frames, loud ones */
uint64_t g_frames = 0, g_loud_frames = 0;
/* BENCH_DUMP=case:from_ms:to_ms prints the detector's view of every frame of
 * one case: e2e noise call N (1..), e2e phrase 1000+n, short word 2000+n,
 * classic speech 3000+i, classic noise 4000+i (BENCH_VERBOSE=1 lists n) */
int g_dump_from = -1, g_dump_to = -1, g_dump_case = -2, g_case = -1;

/* The events, pauses and first barge-in of what the detector decided. */
Result result_of(const std::vector<bargein::Decision> &decs) {
  Result r;
  for (const auto &dec : decs) {
    int onset = static_cast<int>(dec.onset * 1000 / sig::kRate), at = static_cast<int>(dec.at * 1000 / sig::kRate);
    r.events.push_back({onset, at, dec.action, dec.reason, dec.voiced_ms, dec.sound_ms});
    if (dec.action == bargein::Action::Pause)
      r.pauses++;
    if (dec.action == bargein::Action::Confirm && r.barge_ins++ == 0) {
      r.onset_ms = onset;
      r.decision_ms = at;
    }
  }
  return r;
}

Result run(const sig::Pcm &x, const bargein::Params &p) {
  bargein::Detector d(sig::kRate, p);
  std::vector<int16_t> s(x.size());
  /* through μ-law, as Twilio sends it */
  std::vector<uint8_t> mu = sig::to_mulaw(x);
  pa::mulaw_decode_block(mu.data(), s.data(), mu.size());
  const size_t n = d.frame_samples();
  auto agent = [] { return bargein::AgentState(); };
  std::vector<bargein::Decision> decs;
  for (size_t o = 0; o + n <= s.size(); o += n) {
    auto t0 = std::chrono::steady_clock::now();
    bargein::Decision dec = d.process(s.data() + o, agent);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    g_us += us;
    g_frames++;
    if (d.last().loud) {
      g_loud_us += us;
      g_loud_frames++;
    }
    if (dec.action != bargein::Action::None)
      decs.push_back(dec);
    if (g_case == g_dump_case) {
      int ms = static_cast<int>(o * 1000 / sig::kRate);
      const bargein::FrameInfo &fi = d.last();
      if (ms >= g_dump_from && ms < g_dump_to)
        printf("    %6d ms level %6.1f floor %6.1f loud %d vad %d pitch %.2f pred %5.1f dB%s\n", ms, fi.level_db,
               fi.floor_db, fi.loud, fi.vad, fi.periodicity, fi.prediction_gain_db,
               dec.action == bargein::Action::Pause     ? " PAUSE"
               : dec.action == bargein::Action::Confirm ? " CONFIRM"
               : dec.action == bargein::Action::Resume  ? " RESUME"
                                                        : "");
    }
  }
  return result_of(decs);
}

sig::Pcm line(int ms, double db, guint32 seed) { return sig::noise(ms, db, seed); }

/* ------------------------------------------------ e2e noise set */

using Played = sig::NoiseEvent;

/* the noise call @i of bench/bargein-e2e (same seeds, same generator), minus
 * the agent's echo */
sig::Pcm e2e_noise_call(int i, int total, std::vector<Played> &played) {
  return sig::noise_call(i, total, static_cast<guint32>(100 + i + 1), played);
}

/* the sound that was playing when a burst started at @onset_ms */
int kind_at(const std::vector<Played> &played, int onset_ms) {
  int k = 6;
  for (const auto &p : played)
    if (p.begin_ms <= onset_ms + 30)
      k = p.kind;
  return k;
}

void e2e_noise(const bargein::Params &p, int calls, int noise_s) {
  struct Tally {
    int events = 0, pauses = 0, barge_ins = 0;
    unsigned max_voiced = 0; /* the most voiced sound in a burst let go */
    std::vector<std::string> where;
  };
  std::map<int, Tally> t;
  for (int i = 0; i < calls; i++) {
    std::vector<Played> played;
    sig::Pcm x = e2e_noise_call(i, noise_s * 1000, played);
    for (const auto &pl : played)
      t[pl.kind].events++;
    g_case = i + 1;
    Result r = run(x, p);

    for (const auto &e : r.events) {
      int k = kind_at(played, e.onset_ms);
      if (e.action == bargein::Action::Resume) {
        t[k].max_voiced = std::max(t[k].max_voiced, e.voiced_ms);
        continue;
      }
      if (e.action == bargein::Action::Pause)
        t[k].pauses++;
      else {
        t[k].barge_ins++;
        char w[96];
        const Played *pl = nullptr;
        for (const auto &q : played)
          if (q.begin_ms <= e.onset_ms + 30)
            pl = &q;
        snprintf(w, sizeof w, "call %d at %.1f s (%s %d ms %.0f dBFS, +%d ms)", i + 1, e.onset_ms / 1000.0,
                 sig::kNoiseKinds[k], pl ? pl->len_ms : 0, pl ? pl->db : 0.0, pl ? e.onset_ms - pl->begin_ms : 0);
        t[k].where.push_back(w);
      }
    }
  }
  printf("e2e noise set: %d calls x %d s (bench/bargein-e2e's generator, seeds 101..%d), no echo\n", calls, noise_s,
         100 + calls);
  printf("%-12s %8s %8s %10s %18s\n", "kind", "played", "pauses", "barge-ins", "voiced (let go)");
  int total = 0, pauses = 0;
  for (int k = 0; k < 7; k++) {
    const Tally &y = t[k];
    printf("%-12s %8d %8d %10d %15u ms\n", k == 6 ? "line only" : sig::kNoiseKinds[k], y.events, y.pauses, y.barge_ins,
           y.max_voiced);
    total += y.barge_ins;
    pauses += y.pauses;
  }
  printf("false barge-ins on the e2e noise set: %d (pauses %d)\n", total, pauses);
  printf("(voiced: the most voiced sound in one burst that was let go, against %u ms needed)\n", p.min_speech_ms / 2);
  for (int k = 0; k < 7; k++)
    for (const auto &w : t[k].where)
      printf("  %s\n", w.c_str());
  printf("\n");
}

/* ------------------------------------------------ e2e speech set */

const char *kShort[] = {"Stop.", "Wait.", "No, stop.", "Hello?", "Hold on."};

double pct(std::vector<double> v, double q) {
  if (v.empty())
    return -1;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

void e2e_speech(const bargein::Params &p, bool verbose) {
  struct Set {
    const char *name;
    std::vector<double> pause, confirm;
    int n = 0, missed = 0, early = 0;
  };
  Set sets[2] = {{"e2e phrases (10 voices x 9 phrases)", {}, {}}, {"short words (10 voices x 5 words)", {}, {}}};
  for (int s = 0; s < 2; s++) {
    int count = s == 0 ? 90 : 50;
    for (int n = 0; n < count; n++) {
      const char *voice = sig::kE2eVoices[n % G_N_ELEMENTS(sig::kE2eVoices)];
      const char *text = s == 0 ? sig::kE2ePhrases[n % G_N_ELEMENTS(sig::kE2ePhrases)] : kShort[(n / 10 + n) % 5];
      double db = -12.0 - (n * 7 % 19); /* -12 .. -30 dBFS */
      sig::Pcm sp = sig::espeak(text, db, voice, true);
      if (sp.empty()) {
        printf("espeak-ng failed (voice %s): speech set skipped\n", voice);
        return;
      }
      double line_db = -62 + 2 * ((n / 2) % 5); /* -62 .. -54 */
      guint32 seed = static_cast<guint32>(500 + 1000 * s + n);
      int onset = 1000 + (n * 13 % 11) * 3; /* jittered against the frames */
      int total = onset + static_cast<int>(sp.size() * 1000 / sig::kRate) + 1500;
      sig::Pcm x = (n % 2) ? sig::pink(total, line_db, seed) : sig::noise(total, line_db, seed);
      sig::mix(x, sp, onset);
      g_case = 1000 * (s + 1) + n;
      Result r = run(x, p);
      Set &st = sets[s];
      st.n++;
      int first_pause = -1, confirm = -1;
      for (const auto &e : r.events) {
        if (e.action == bargein::Action::Pause && first_pause < 0)
          first_pause = e.at_ms;
        if (e.action == bargein::Action::Confirm && confirm < 0)
          confirm = e.at_ms;
      }
      if (first_pause >= 0 && first_pause < onset)
        st.early++;
      if (confirm < onset) {
        st.missed++;
        printf("  MISSED: %s \"%s\" %.0f dBFS over %s %.0f dBFS\n", voice, text, db, (n % 2) ? "pink" : "white",
               line_db);
        if (verbose)
          for (const auto &e : r.events)
            printf("     %s onset %d at %d %s\n",
                   e.action == bargein::Action::Pause ? "pause" : e.action == bargein::Action::Resume ? "resume" : "confirm",
                   e.onset_ms - onset, e.at_ms - onset, e.reason);
        continue;
      }
      if (first_pause >= 0)
        st.pause.push_back(first_pause - onset);
      st.confirm.push_back(confirm - onset);
      if (verbose)
        printf("  %-10s %-45s %4.0f dB: pause %4d confirm %4d ms\n", voice, text, db, first_pause - onset,
               confirm - onset);
    }
  }
  printf("%-38s %5s %7s %22s %22s\n", "e2e speech set", "n", "missed", "pause p50/p95/max", "confirm p50/p95/max");
  for (auto &st : sets) {
    char a[40], b[40];
    snprintf(a, sizeof a, "%.0f/%.0f/%.0f ms", pct(st.pause, .5), pct(st.pause, .95), pct(st.pause, 1));
    snprintf(b, sizeof b, "%.0f/%.0f/%.0f ms", pct(st.confirm, .5), pct(st.confirm, .95), pct(st.confirm, 1));
    printf("%-38s %5d %7d %22s %22s\n", st.name, st.n, st.missed, a, b);
    if (st.early)
      printf("  (%d paused before the speech started)\n", st.early);
  }
  printf("(times after the true onset, the first sample of the trimmed espeak-ng speech)\n\n");
}

/* ------------------------------------------------ the classic sets */

struct Case {
  std::string name;
  sig::Pcm x;
};

void classic(const bargein::Params &p) {
  std::vector<Case> noise;
  for (double db : {-55.0, -45.0, -35.0, -25.0})
    noise.push_back({"white noise " + std::to_string(static_cast<int>(db)) + " dBFS, 10 s", line(10000, db, 5)});
  {
    sig::Pcm x = line(10000, -50, 6);
    for (size_t i = 0; i < x.size(); i++)
      x[i] += 1500 * std::sin(2 * M_PI * 60 * i / sig::kRate) + 500 * std::sin(2 * M_PI * 180 * i / sig::kRate);
    noise.push_back({"60 Hz hum + harmonics over -50 dBFS hiss, 10 s", x});
  }
  {
    sig::Pcm x = line(1000, -60, 13);
    for (int k = 0; k < 5; k++) {
      sig::mix(x, sig::pink(2000, -45 + 3 * k, 300 + k), 1000 + k * 3000);
    }
    sig::append(x, line(1000, -60, 14));
    noise.push_back({"5 bursts of pink hiss, 2 s, -45..-33 dBFS", x});
  }
  {
    sig::Pcm x = line(1000, -60, 15);
    for (int k = 0; k < 4; k++)
      sig::mix(x, sig::music(3000, -35 + 3 * k, 400 + k), 1000 + k * 4000);
    noise.push_back({"4 bursts of music-like tones, 3 s, -35..-26 dBFS", x});
  }
  {
    sig::Pcm x = sig::silence(2000);
    sig::append(x, line(8000, -35, 7));
    noise.push_back({"digital silence, then -35 dBFS noise (step)", x});
  }
  for (int ms : {60, 100, 150, 180, 400}) {
    sig::Pcm x = line(1000, -60, 8);
    for (int k = 0; k < 10; k++) {
      sig::mix(x, sig::burst(ms, -15, 100 + k), 1000 + k * 800);
    }
    sig::append(x, line(500, -60, 9));
    noise.push_back({"10 coughs of " + std::to_string(ms) + " ms at -15 dBFS", x});
  }
  {
    sig::Pcm x = line(1000, -60, 10);
    for (int k = 0; k < 10; k++)
      sig::mix(x, sig::burst(15, -6, 200 + k), 1000 + k * 500);
    noise.push_back({"10 clicks of 15 ms at -6 dBFS", x});
  }
  {
    sig::Pcm x = line(1000, -60, 11);
    const double rows[] = {697, 770, 852, 941}, cols[] = {1209, 1336, 1477, 1633};
    for (int k = 0; k < 16; k++) {
      sig::append(x, sig::dtmf(100 + 10 * (k % 5), rows[k % 4], cols[(k / 4) % 4], -10 - (k % 3) * 6));
      sig::append(x, line(100, -60, 12 + k));
    }
    noise.push_back({"16 DTMF keys, 100-140 ms, -10..-22 dBFS per tone", x});
  }

  printf("%-52s %7s %10s\n", "classic noise set", "pauses", "barge-ins");
  int false_total = 0;
  for (size_t i = 0; i < noise.size(); i++) {
    const Case &c = noise[i];
    g_case = 4000 + static_cast<int>(i);
    Result r = run(c.x, p);
    false_total += r.barge_ins;
    printf("%-52s %7d %10d\n", c.name.c_str(), r.pauses, r.barge_ins);
  }
  printf("false barge-ins on the classic noise set: %d\n\n", false_total);

  std::vector<Case> speech;
  for (double db : {-15.0, -25.0, -35.0})
    for (double f0 : {110.0, 210.0}) {
      sig::Pcm x = line(1000, -55, 13);
      sig::mix(x, sig::voiced(1500, db, f0), 1000);
      sig::append(x, line(500, -55, 14));
      char name[80];
      snprintf(name, sizeof name, "voiced F0 %.0f Hz at %.0f dBFS over -55 dBFS", f0, db);
      speech.push_back({name, x});
    }
  struct Said {
    const char *text, *voice;
    double db;
  };
  const Said said[] = {{"Stop.", "", -22},
                       {"Stop, stop.", "", -22},
                       {"Wait, stop.", "", -22},
                       {"Hello?", "", -22},
                       {"Actually I need to talk to a person.", "", -22},
                       {"No no no, that's wrong.", "", -22},
                       {"Stop, stop, I already know that.", "en-gb+f2", -15},
                       {"Stop, stop, I already know that.", "en+m1", -28},
                       {"Stop, stop, I already know that.", "en-gb", -27},
                       {"Actually, I would like to talk to someone.", "en-us+f4", -28}};
  for (const Said &w : said) {
    const char *text = w.text;
    sig::Pcm s = sig::espeak(text, w.db, w.voice);
    if (s.empty())
      continue;
    size_t first = 0;
    while (first < s.size() && std::fabs(s[first]) < 328)
      first++;
    sig::Pcm x = line(1000, -55, 15);
    sig::mix(x, sig::Pcm(s.begin() + static_cast<long>(first), s.end()), 1000);
    sig::append(x, line(500, -55, 16));
    std::string name = std::string("espeak-ng \"") + text + "\"";
    if (*w.voice)
      name += std::string(" ") + w.voice + " " + std::to_string(static_cast<int>(w.db));
    speech.push_back({name, x});
  }
  printf("%-52s %9s %12s %12s\n", "classic speech set (true onset 1000 ms)", "detected", "onset err", "reaction");
  int missed = 0;
  for (size_t i = 0; i < speech.size(); i++) {
    const Case &c = speech[i];
    g_case = 3000 + static_cast<int>(i);
    Result r = run(c.x, p);
    if (r.barge_ins)
      printf("%-52s %9s %9.0f ms %9.0f ms\n", c.name.c_str(), "yes", r.onset_ms - 1000, r.decision_ms - r.onset_ms);
    else {
      missed++;
      printf("%-52s %9s %12s %12s\n", c.name.c_str(), "NO", "-", "-");
    }
  }
  printf("missed in the classic speech set: %d of %zu\n\n", missed, speech.size());
}

/* ------------------------------------------------ a line that echoes */

/* the detector behind the element's echo path (bargein::EchoPath: the echo
 * presence check, the canceller, the far end and the echo ceiling for the
 * detector, its output once learnt); with @far_ref false, the
 * detector gets neither the far end nor the ceiling (as before either
 * existed). The agent is taken as speaking at -12 dBFS. */
double g_echo_us[2] = {0, 0}; /* time in Detector::process on the echo set: without, with the far end */
uint64_t g_echo_frames[2] = {0, 0};

Result run_echo(const sig::Pcm &far, const sig::Pcm &near, const bargein::Params &p, bool far_ref) {
  bargein::Detector d(sig::kRate, p);
  bargein::Detector ignored(sig::kRate, p); /* takes what @d is not to get */
  bargein::EchoPath echo(sig::kRate);
  std::vector<int16_t> f(far.size()), s(near.size());
  {
    std::vector<uint8_t> fm = sig::to_mulaw(far), nm = sig::to_mulaw(near);
    pa::mulaw_decode_block(fm.data(), f.data(), fm.size());
    pa::mulaw_decode_block(nm.data(), s.data(), nm.size());
  }
  std::vector<bargein::Decision> decs;
  for (size_t o = 0; o + 80 <= s.size() && o + 80 <= f.size(); o += 80) {
    const int16_t *heard = echo.frame(f.data() + o, s.data() + o, far_ref ? d : ignored);
    auto agent = [] {
      bargein::AgentState a;
      a.level_db = -12;
      return a;
    };
    auto t0 = std::chrono::steady_clock::now();
    bargein::Decision dec = d.process(heard, agent);
    g_echo_us[far_ref] += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    g_echo_frames[far_ref]++;
    if (dec.action != bargein::Action::None)
      decs.push_back(dec);
  }
  return result_of(decs);
}

/* the agent: a long espeak-ng sentence at -12 dBFS, repeated to @ms */
sig::Pcm echo_agent(int ms, const char *voice) {
  sig::Pcm x = sig::espeak("Our clinic offers general dentistry, cleanings, fillings, crowns and whitening, and we "
                           "accept most insurance plans, including the ones offered by the larger employers in the "
                           "area. We are open from eight in the morning until six in the evening on weekdays.",
                           -12, voice);
  if (x.empty())
    return x;
  while (x.size() < sig::samples(ms))
    sig::append(x, sig::Pcm(x));
  x.resize(sig::samples(ms));
  return x;
}

/* @far delayed @delay_ms and @loss_db down over a -62 dBFS line */
sig::Pcm echo_line(const sig::Pcm &far, int delay_ms, double loss_db, guint32 seed) {
  sig::Pcm x = sig::noise(static_cast<int>(far.size() * 1000 / sig::kRate), -62, seed);
  const double g = std::pow(10.0, -loss_db / 20.0);
  const size_t d = sig::samples(delay_ms);
  for (size_t i = d; i < x.size(); i++)
    x[i] += g * far[i - d];
  return x;
}

void echo(const bargein::Params &p, int calls, bool verbose) {
  static const char *const agents[] = {"en-us", "en-gb+f2"};
  static const double losses[] = {15, 20, 25};
  static const int delays[] = {40, 60, 120};
  sig::Pcm far[2] = {echo_agent(55000, agents[0]), echo_agent(55000, agents[1])};
  if (far[0].empty() || far[1].empty()) {
    printf("espeak-ng failed: echo set skipped\n\n");
    return;
  }
  /* coughs: the noise set's (60-400 ms, -25..-15 dBFS), 0.6-1.4 s apart */
  int coughs = 0, barge_ins[2] = {0, 0}, pauses[2] = {0, 0};
  for (int i = 0; i < calls; i++) {
    const sig::Pcm &agent = far[i % 2];
    const double loss = losses[i % 3];
    const int delay = delays[(i / 3) % 3];
    const guint32 seed = static_cast<guint32>(700 + i);
    sig::Pcm x = echo_line(agent, delay, loss, seed);
    GRand *r = g_rand_new_with_seed(seed);
    for (int t = 3000; t < 53000; coughs++) {
      const int len = g_rand_int_range(r, 60, 400);
      sig::mix(x, sig::burst(len, g_rand_double_range(r, -25, -15), seed + static_cast<guint32>(t)), t);
      t += len + g_rand_int_range(r, 600, 1400);
    }
    g_rand_free(r);
    x.resize(agent.size());
    for (int k = 0; k < 2; k++) {
      Result res = run_echo(agent, x, p, k == 1);
      barge_ins[k] += res.barge_ins;
      pauses[k] += res.pauses;
    }
  }
  printf("echo set: the agent (espeak-ng %s, %s) echoed 15/20/25 dB down, 40/60/120 ms late\n", agents[0], agents[1]);
  printf("%-44s %16s %16s\n", "", "without far end", "with far end");
  printf("%-44s %16d %16d\n", ("false barge-ins, " + std::to_string(coughs) + " coughs over the echo").c_str(),
         barge_ins[0], barge_ins[1]);
  printf("%-44s %16d %16d\n", "pauses (let go)", pauses[0], pauses[1]);
  /* the e2e phrases talking over the echo, 4-9 s into the agent's speech */
  std::vector<double> confirm[2];
  int missed[2] = {0, 0}, n = 0, later = 0;
  double later_max = 0;
  GRand *r = g_rand_new_with_seed(77);
  for (const char *voice : sig::kE2eVoices)
    for (const char *text : sig::kE2ePhrases) {
      const double loss = losses[g_rand_int_range(r, 0, 3)], db = g_rand_double_range(r, -30, -12);
      const int delay = delays[g_rand_int_range(r, 0, 3)], at = g_rand_int_range(r, 4000, 9000);
      const sig::Pcm &agent = far[n % 2];
      sig::Pcm sp = sig::espeak(text, db, voice, true);
      const sig::Pcm a(agent.begin(), agent.begin() + static_cast<long>(sig::samples(at + 4000)));
      sig::Pcm x = echo_line(a, delay, loss, static_cast<guint32>(900 + n));
      sig::mix(x, sp, at);
      x.resize(a.size());
      double got[2] = {-1, -1};
      for (int k = 0; k < 2; k++) {
        Result res = run_echo(a, x, p, k == 1);
        for (const auto &e : res.events)
          if (e.action == bargein::Action::Confirm && e.onset_ms >= at - 100) {
            got[k] = e.at_ms - at;
            break;
          }
        if (got[k] < 0)
          missed[k]++;
        else
          confirm[k].push_back(got[k]);
      }
      if (verbose && got[0] != got[1])
        printf("  %-14s %-44s %5.1f dBFS, agent %s, echo %.0f dB down %d ms late, from %d ms: confirm %.0f / %.0f ms\n",
               voice, text, db, agents[n % 2], loss, delay, at, got[0], got[1]);
      if (got[0] >= 0 && got[1] > got[0]) {
        later++;
        later_max = std::max(later_max, got[1] - got[0]);
      }
      n++;
    }
  g_rand_free(r);
  char b[2][48];
  for (int k = 0; k < 2; k++)
    snprintf(b[k], sizeof b[k], "%d / %.0f/%.0f/%.0f", missed[k], pct(confirm[k], .5), pct(confirm[k], .95),
             pct(confirm[k], 1));
  const std::string row = "e2e phrases over it (" + std::to_string(n) + "): missed / confirm";
  printf("%-44s %16s %16s\n", row.c_str(), b[0], b[1]);
  printf("(confirm after the true onset, p50/p95/max ms; %d of %d confirmed later with the far end, by up to "
         "%.0f ms)\n",
         later, n, later_max);
  printf("detector cost on the echo set, us per 10 ms frame (the canceller not counted): %.1f without, %.1f with\n\n",
         g_echo_frames[0] ? g_echo_us[0] / g_echo_frames[0] : 0.0,
         g_echo_frames[1] ? g_echo_us[1] / g_echo_frames[1] : 0.0);
}
} // namespace

int main(int argc, char **argv) {
  bargein::Params p;
  int seeds = 12, noise_s = 55;
  bool verbose = getenv("BENCH_VERBOSE") != nullptr;
  std::string sets = "e2e-noise,e2e-speech,classic,echo";
  if (const char *dump = getenv("BENCH_DUMP"))
    if (sscanf(dump, "%d:%d:%d", &g_dump_case, &g_dump_from, &g_dump_to) != 3)
      g_dump_case = -2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
      seeds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sets") && i + 1 < argc)
      sets = argv[++i];
    else if (argv[i][0] != '-')
      p.min_speech_ms = static_cast<unsigned>(atoi(argv[i]));
    else {
      fprintf(stderr, "usage: bench-bargein [min-speech-ms] [--seeds N] [--sets e2e-noise,e2e-speech,classic,echo]\n");
      return 2;
    }
  }
  printf("bargein detector benchmark (min-speech-ms %u, snr-db %.0f, vad-aggressiveness %d)\n\n", p.min_speech_ms,
         p.snr_db, p.vad_aggressiveness);
  if (sets.find("e2e-noise") != std::string::npos)
    e2e_noise(p, seeds, noise_s);
  if (sets.find("e2e-speech") != std::string::npos)
    e2e_speech(p, verbose);
  if (sets.find("classic") != std::string::npos)
    classic(p);
  if (sets.find("echo") != std::string::npos)
    echo(p, seeds, verbose);
  printf("detector cost: %.1f us per 10 ms frame (%llu frames), %.1f us per loud frame (%llu)\n",
         g_frames ? g_us / g_frames : 0.0, static_cast<unsigned long long>(g_frames),
         g_loud_frames ? g_loud_us / g_loud_frames : 0.0, static_cast<unsigned long long>(g_loud_frames));
  return 0;
}
