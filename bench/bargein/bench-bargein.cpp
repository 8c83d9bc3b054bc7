/* gst-phone-agent: bargein benchmark. Feeds the barge-in detector (the same
 * code the element runs) synthetic caller audio, with the agent taken as
 * speaking throughout, and prints:
 *   - for a noise set (line noise, hum, pink hiss, music-like tones, coughs,
 *     clicks, DTMF, a noise step
 *     after digital silence): pauses and false barge-ins;
 *   - for a speech set (speech-like voiced sound at several levels over
 *     line noise, espeak-ng sentences): detection and reaction times
 *     (decision - onset; onset error against the true start).
 * Usage: bench-bargein [min-speech-ms]
 */
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bargein-detector.h"
#include "bargein-signals.h"

namespace {
struct Result {
  int pauses = 0, barge_ins = 0;
  double onset_ms = -1, decision_ms = -1;
};

Result run(const sig::Pcm &x, const bargein::Params &p) {
  bargein::Detector d(sig::kRate, p);
  std::vector<int16_t> s = sig::to_s16(x);
  /* through μ-law, as Twilio sends it */
  std::vector<uint8_t> mu = sig::to_mulaw(x);
  pa::mulaw_decode_block(mu.data(), s.data(), mu.size());
  Result r;
  const size_t n = d.frame_samples();
  auto agent = [] { return bargein::AgentState(); };
  for (size_t o = 0; o + n <= s.size(); o += n) {
    bargein::Decision dec = d.process(s.data() + o, agent);
    if (dec.action == bargein::Action::Pause)
      r.pauses++;
    if (dec.action == bargein::Action::Confirm) {
      if (r.barge_ins++ == 0) {
        r.onset_ms = dec.onset * 1000.0 / sig::kRate;
        r.decision_ms = dec.at * 1000.0 / sig::kRate;
      }
    }
  }
  return r;
}

sig::Pcm line(int ms, double db, guint32 seed) { return sig::noise(ms, db, seed); }
} // namespace

int main(int argc, char **argv) {
  bargein::Params p;
  if (argc > 1)
    p.min_speech_ms = static_cast<unsigned>(atoi(argv[1]));
  printf("bargein detector benchmark (min-speech-ms %u, snr-db %.0f, vad-aggressiveness %d)\n\n", p.min_speech_ms,
         p.snr_db, p.vad_aggressiveness);

  struct Case {
    std::string name;
    sig::Pcm x;
  };
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

  printf("%-52s %7s %10s\n", "noise set", "pauses", "barge-ins");
  int false_total = 0;
  for (auto &c : noise) {
    Result r = run(c.x, p);
    false_total += r.barge_ins;
    printf("%-52s %7d %10d\n", c.name.c_str(), r.pauses, r.barge_ins);
  }
  printf("false barge-ins on the noise set: %d\n\n", false_total);

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
  printf("%-52s %9s %12s %12s\n", "speech set (true onset 1000 ms)", "detected", "onset err", "reaction");
  for (auto &c : speech) {
    Result r = run(c.x, p);
    if (r.barge_ins)
      printf("%-52s %9s %9.0f ms %9.0f ms\n", c.name.c_str(), "yes", r.onset_ms - 1000, r.decision_ms - r.onset_ms);
    else
      printf("%-52s %9s %12s %12s\n", c.name.c_str(), "NO", "-", "-");
  }
  return 0;
}
