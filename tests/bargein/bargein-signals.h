/* gst-phone-agent: synthetic caller audio for bargein's tests and benchmark
 * (8 kHz PCM): line noise (white, pink, brown), music-like tones, voiced
 * speech-like sound, coughs, DTMF, and espeak-ng speech when the program is
 * installed. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "pa-audio.h"

namespace sig {

constexpr int kRate = 8000;
using Pcm = std::vector<double>;

inline size_t samples(int ms) { return static_cast<size_t>(ms) * kRate / 1000; }

inline void scale_to(Pcm &x, double db) {
  double e = 0;
  for (double v : x)
    e += v * v;
  if (x.empty() || e <= 0)
    return;
  double rms = std::sqrt(e / x.size());
  double want = 32768.0 * std::pow(10.0, db / 20.0);
  for (double &v : x)
    v *= want / rms;
}

/* white noise with an RMS level of @db dBFS (deterministic per @seed) */
inline Pcm noise(int ms, double db, guint32 seed = 1) {
  GRand *r = g_rand_new_with_seed(seed);
  Pcm x(samples(ms));
  for (double &v : x) {
    double s = 0;
    for (int k = 0; k < 4; k++)
      s += g_rand_double_range(r, -1, 1); /* roughly gaussian */
    v = s;
  }
  g_rand_free(r);
  scale_to(x, db);
  return x;
}

/* pink-ish noise (Paul Kellet's economy filter: -3 dB per octave) with an
 * RMS level of @db dBFS */
inline Pcm pink(int ms, double db, guint32 seed = 1) {
  Pcm w = noise(ms, 0, seed), x(w.size());
  double b0 = 0, b1 = 0, b2 = 0;
  for (size_t i = 0; i < w.size(); i++) {
    b0 = 0.99765 * b0 + w[i] * 0.0990460;
    b1 = 0.96300 * b1 + w[i] * 0.2965164;
    b2 = 0.57000 * b2 + w[i] * 1.0526913;
    x[i] = b0 + b1 + b2 + w[i] * 0.1848;
  }
  scale_to(x, db);
  return x;
}

/* rumble: brown noise (leaky integrated white noise, -6 dB per octave above
 * ~6 Hz) with an RMS level of @db dBFS */
inline Pcm brown(int ms, double db, guint32 seed = 1) {
  Pcm x = noise(ms, 0, seed);
  double y = 0;
  for (double &v : x) {
    y = 0.995 * y + v;
    v = y;
  }
  scale_to(x, db);
  return x;
}

/* music-like: notes of 150-400 ms (C4 to E5) with three harmonics, a soft
 * attack and a decay, at @db dBFS */
inline Pcm music(int ms, double db, guint32 seed = 1) {
  static const double notes[] = {262, 294, 330, 349, 392, 440, 494, 523, 587, 659};
  GRand *r = g_rand_new_with_seed(seed);
  Pcm x(samples(ms));
  size_t i = 0;
  while (i < x.size()) {
    double f = notes[g_rand_int_range(r, 0, 10)];
    size_t len = samples(g_rand_int_range(r, 150, 400));
    for (size_t k = 0; k < len && i < x.size(); k++, i++) {
      double t = static_cast<double>(k) / kRate;
      double env = std::min(1.0, t * 40) * std::exp(-t * 3);
      x[i] = env * (std::sin(2 * M_PI * f * t) + 0.5 * std::sin(4 * M_PI * f * t) + 0.25 * std::sin(6 * M_PI * f * t));
    }
  }
  g_rand_free(r);
  scale_to(x, db);
  return x;
}

/* a two-pole resonator */
inline void resonate(Pcm &x, double f, double bw) {
  double rr = std::exp(-M_PI * bw / kRate);
  double a1 = 2 * rr * std::cos(2 * M_PI * f / kRate), a2 = -rr * rr;
  double y1 = 0, y2 = 0;
  for (double &v : x) {
    double y = v + a1 * y1 + a2 * y2;
    y2 = y1;
    y1 = y;
    v = y;
  }
}

/* speech-like voiced sound: a glottal pulse train (F0 gliding around
 * @f0 Hz) through three formants that move, syllables at ~4 Hz */
inline Pcm voiced(int ms, double db, double f0 = 120, guint32 seed = 7) {
  Pcm x(samples(ms));
  GRand *r = g_rand_new_with_seed(seed);
  double phase = 0;
  for (size_t i = 0; i < x.size(); i++) {
    double t = static_cast<double>(i) / kRate;
    double f = f0 * (1.0 + 0.1 * std::sin(2 * M_PI * 1.3 * t));
    phase += f / kRate;
    if (phase >= 1.0) {
      phase -= 1.0;
      x[i] = 1.0;
    }
    x[i] += 0.02 * g_rand_double_range(r, -1, 1); /* breath */
  }
  g_rand_free(r);
  Pcm a = x, b = x;
  resonate(a, 700, 90);  /* an "a" */
  resonate(a, 1200, 110);
  resonate(b, 300, 70);  /* an "i" */
  resonate(b, 2300, 150);
  for (size_t i = 0; i < x.size(); i++) {
    double t = static_cast<double>(i) / kRate;
    double w = 0.5 + 0.5 * std::sin(2 * M_PI * 2.1 * t); /* vowel change */
    double env = 0.55 + 0.45 * std::sin(2 * M_PI * 4.0 * t - M_PI / 2); /* syllables */
    x[i] = (w * a[i] + (1 - w) * b[i]) * (0.2 + env);
  }
  resonate(x, 2600, 250); /* F3 */
  /* 10 ms fades */
  size_t fade = std::min(samples(10), x.size() / 2);
  for (size_t i = 0; i < fade; i++) {
    x[i] *= static_cast<double>(i) / fade;
    x[x.size() - 1 - i] *= static_cast<double>(i) / fade;
  }
  scale_to(x, db);
  return x;
}

/* a cough or a click: a noise burst with a fast attack and decay */
inline Pcm burst(int ms, double db, guint32 seed = 3) {
  Pcm x = noise(ms, 0, seed);
  resonate(x, 500, 800);
  for (size_t i = 0; i < x.size(); i++) {
    double t = static_cast<double>(i) / x.size();
    x[i] *= std::min(1.0, t * 20) * (1.0 - 0.7 * t);
  }
  scale_to(x, db);
  return x;
}

/* one DTMF key: low and high tone, @db dBFS each */
inline Pcm dtmf(int ms, double low, double high, double db) {
  Pcm x(samples(ms));
  double a = 32768.0 * std::pow(10.0, db / 20.0) * std::sqrt(2.0);
  for (size_t i = 0; i < x.size(); i++) {
    double t = static_cast<double>(i) / kRate;
    x[i] = a * (std::sin(2 * M_PI * low * t) + std::sin(2 * M_PI * high * t));
  }
  return x;
}

inline Pcm silence(int ms) { return Pcm(samples(ms), 0.0); }

inline Pcm &append(Pcm &a, const Pcm &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/* @b mixed into @a from @at_ms */
inline void mix(Pcm &a, const Pcm &b, int at_ms) {
  size_t o = samples(at_ms);
  if (a.size() < o + b.size())
    a.resize(o + b.size(), 0.0);
  for (size_t i = 0; i < b.size(); i++)
    a[o + i] += b[i];
}

inline std::vector<int16_t> to_s16(const Pcm &x) {
  std::vector<int16_t> out(x.size());
  for (size_t i = 0; i < x.size(); i++)
    out[i] = static_cast<int16_t>(std::lround(std::clamp(x[i], -32768.0, 32767.0)));
  return out;
}

inline std::vector<uint8_t> to_mulaw(const Pcm &x) {
  std::vector<int16_t> s = to_s16(x);
  std::vector<uint8_t> out(s.size());
  pa::mulaw_encode_block(s.data(), out.data(), s.size());
  return out;
}

/* espeak-ng speaking @text at 8 kHz (voice @voice, e.g. "en-gb+f2"; default
 * "en"), scaled to @db; with @trim, leading and trailing near-silence is cut
 * first (so the onset is the speech). Empty when espeak-ng is missing or
 * fails. */
inline Pcm espeak(const std::string &text, double db, const std::string &voice = "", bool trim = false) {
  gchar *path = nullptr;
  int fd = g_file_open_tmp("bargein-XXXXXX.wav", &path, nullptr);
  if (fd < 0)
    return {};
  close(fd);
  gchar *quoted = g_shell_quote(text.c_str());
  gchar *v = g_shell_quote(voice.empty() ? "en" : voice.c_str());
  std::string cmd = std::string("espeak-ng -v ") + v + " -w " + path + " " + quoted + " 2>/dev/null";
  g_free(v);
  g_free(quoted);
  Pcm out;
  if (system(cmd.c_str()) == 0) {
    std::vector<uint8_t> mu;
    std::string err;
    if (pa::wav_to_mulaw8k(path, mu, err)) {
      out.resize(mu.size());
      for (size_t i = 0; i < mu.size(); i++)
        out[i] = pa::mulaw_decode(mu[i]);
      if (trim) {
        size_t b = 0, e = out.size();
        while (b < e && std::fabs(out[b]) < 200)
          b++;
        while (e > b && std::fabs(out[e - 1]) < 200)
          e--;
        out = Pcm(out.begin() + static_cast<long>(b), out.begin() + static_cast<long>(e));
      }
      scale_to(out, db);
    }
  }
  g_unlink(path);
  g_free(path);
  return out;
}

/* ---- the sets of bench/bargein-e2e, which bench/bargein replays offline ---- */

/* espeak-ng voices and interruptions of the speech set */
inline const char *const kE2eVoices[] = {"en-us",          "en-gb", "en-us+m3", "en-gb+f2", "en+m1", "en-us+f4",
                                         "en-gb-scotland", "en+f3", "en-029",   "en-us+m5"};
inline const char *const kE2ePhrases[] = {"Wait, I have a question.",
                                          "Sorry, can I stop you there?",
                                          "Hold on a second please.",
                                          "No, that is not what I asked.",
                                          "Excuse me, I need to change my appointment.",
                                          "Actually, I would like to talk to someone.",
                                          "Stop, stop, I already know that.",
                                          "Hang on, what was that time again?",
                                          "Okay, but how much does it cost?"};

/* the kinds of the noise set, in the order they take turns ("echo": the
 * line alone, which the e2e benchmark's emulator fills with the echo) */
inline const char *const kNoiseKinds[] = {"cough", "clicks", "dtmf", "white", "pink", "music", "echo"};
constexpr int kNoiseKindCount = 7;

struct NoiseEvent {
  int kind;           /* index in kNoiseKinds */
  int begin_ms, len_ms;
  double db;          /* its level (0 for clicks and the line alone) */
};

/* One call of the noise set: @total_ms of a -62 dBFS line with, from 1 s
 * on, coughs, clicks, DTMF keys, white and pink hiss, music-like tones and
 * quiet stretches taking turns from kind @first_kind, 0.8-2 s apart; all
 * drawn from @seed. What was played, when, goes to @events. */
inline Pcm noise_call(int first_kind, int total_ms, guint32 seed, std::vector<NoiseEvent> &events) {
  static const double rows[] = {697, 770, 852, 941}, cols[] = {1209, 1336, 1477};
  Pcm x = noise(total_ms, -62, seed);
  GRand *r = g_rand_new_with_seed(seed);
  int kind = first_kind;
  for (int t = 1000; t < total_ms - 4000; kind++) {
    int len = 0;
    double db = 0;
    switch (kind % kNoiseKindCount) {
    case 0: /* a cough */
      len = g_rand_int_range(r, 60, 400);
      db = g_rand_double_range(r, -25, -15);
      mix(x, burst(len, db, seed + t), t);
      break;
    case 1: /* a few clicks */
      for (int k = 0; k < 4; k++) {
        int ms = g_rand_int_range(r, 5, 15);
        double click_db = g_rand_double_range(r, -20, -10);
        mix(x, burst(ms, click_db, seed + t + k), t + k * 250);
      }
      len = 1000;
      break;
    case 2: /* a DTMF key */ {
      len = g_rand_int_range(r, 100, 140);
      double lo = rows[g_rand_int_range(r, 0, 4)], hi = cols[g_rand_int_range(r, 0, 3)];
      db = g_rand_double_range(r, -22, -10);
      mix(x, dtmf(len, lo, hi, db), t);
      break;
    }
    case 3: /* white hiss */
      len = g_rand_int_range(r, 1000, 3000);
      db = g_rand_double_range(r, -45, -35);
      mix(x, noise(len, db, seed + t), t);
      break;
    case 4: /* pink hiss */
      len = g_rand_int_range(r, 1000, 3000);
      db = g_rand_double_range(r, -45, -35);
      mix(x, pink(len, db, seed + t), t);
      break;
    case 5: /* music-like tones */
      len = g_rand_int_range(r, 2000, 4000);
      db = g_rand_double_range(r, -35, -25);
      mix(x, music(len, db, seed + t), t);
      break;
    default: /* the line alone */
      len = 1500;
      break;
    }
    events.push_back({kind % kNoiseKindCount, t, len, db});
    t += len + g_rand_int_range(r, 800, 2000);
  }
  g_rand_free(r);
  return x;
}

} // namespace sig
