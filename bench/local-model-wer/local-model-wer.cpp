/* gst-phone-agent: word error rate of the local model's transcription on
 * phone-band audio.
 *
 * Each sentence is synthesized (espeak-ng, with a voice other than the
 * agent's) or read from a WAV file, converted to 8 kHz G.711 μ-law as a phone
 * call carries it, decoded back and upsampled to 16 kHz exactly as the engine
 * does, then transcribed by the engine's recognizer. WER = (substitutions +
 * deletions + insertions) / reference words, over normalized words.
 *
 *   local-model-wer --sentences FILE [--voice en-us+f2] [--agent-weight 0.5]
 *                   [--agent agents/receptionist.json] [--wav-list FILE.tsv] [--wideband]
 *
 * --wav-list: lines "path<TAB>reference text" (any rate; e.g. flite or real
 * recordings) instead of synthesizing. --wideband: skip the μ-law 8 kHz step
 * (16 kHz input), to see what the phone band costs. Prints one line per
 * sentence and a summary; the last line is JSON.
 */
#include <gst/gst.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "local-agent.h"
#include "local-stt.h"
#include "local-tts.h"
#include "pa-audio.h"

using namespace pa::local;

namespace {

size_t edit_distance(const std::vector<std::string> &ref, const std::vector<std::string> &hyp) {
  std::vector<size_t> prev(hyp.size() + 1), cur(hyp.size() + 1);
  for (size_t j = 0; j <= hyp.size(); j++)
    prev[j] = j;
  for (size_t i = 1; i <= ref.size(); i++) {
    cur[0] = i;
    for (size_t j = 1; j <= hyp.size(); j++) {
      size_t sub = prev[j - 1] + (ref[i - 1] == hyp[j - 1] ? 0 : 1);
      cur[j] = std::min({sub, prev[j] + 1, cur[j - 1] + 1});
    }
    std::swap(prev, cur);
  }
  return prev[hyp.size()];
}

/* "don't" and "do not" are the same to a listener; the recognizer's
 * dictionary spells numbers as words, so references should too. */
std::vector<std::string> words(const std::string &s) { return normalize_words(s); }

std::vector<std::string> read_lines(const std::string &path) {
  std::vector<std::string> lines;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    lines.push_back(line);
  }
  return lines;
}

} // namespace

int main(int argc, char **argv) {
  gchar *sentences = nullptr, *voice = nullptr, *agent = nullptr, *wav_list = nullptr;
  gdouble weight = -1;
  gboolean wideband = FALSE, quiet = FALSE, stream = FALSE;
  gint wpm = 150;
  GOptionEntry entries[] = {
      {"sentences", 's', 0, G_OPTION_ARG_FILENAME, &sentences, "Reference sentences, one per line", "FILE"},
      {"voice", 'v', 0, G_OPTION_ARG_STRING, &voice, "espeak-ng voice of the caller (default en-us+f2)", "VOICE"},
      {"wpm", 0, 0, G_OPTION_ARG_INT, &wpm, "Caller speaking rate, words per minute (default 150)", "N"},
      {"agent", 0, 0, G_OPTION_ARG_FILENAME, &agent, "Agent whose phrases bias recognition (default: built-in)",
       "FILE"},
      {"agent-weight", 'w', 0, G_OPTION_ARG_DOUBLE, &weight,
       "Agent language model weight, 0 = general model only (default: the agent's)", "W"},
      {"wav-list", 0, 0, G_OPTION_ARG_FILENAME, &wav_list, "TSV of 'path<TAB>reference' instead of synthesis", "FILE"},
      {"wideband", 0, 0, G_OPTION_ARG_NONE, &wideband, "16 kHz input, no 8 kHz μ-law step", nullptr},
      {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Only the summary", nullptr},
      {"stream", 0, 0, G_OPTION_ARG_NONE, &stream, "Streaming (live) decoding after priming, as the engine does",
       nullptr},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  GOptionContext *octx = g_option_context_new("- word error rate of the local model on phone-band speech");
  g_option_context_add_main_entries(octx, entries, nullptr);
  GError *err = nullptr;
  if (!g_option_context_parse(octx, &argc, &argv, &err) || (!sentences && !wav_list)) {
    g_printerr("local-model-wer: %s\n", err ? err->message : "--sentences or --wav-list is required");
    return 2;
  }
  g_option_context_free(octx);
  gst_init(&argc, &argv);

  std::string error;
  auto ag = agent ? Agent::load_file(agent, error) : Agent::builtin();
  if (!ag) {
    g_printerr("local-model-wer: %s\n", error.c_str());
    return 1;
  }
  SttConfig cfg;
  cfg.agent_sentences = ag->language_sentences();
  cfg.agent_weight = weight >= 0 ? weight : ag->agent_lm_weight();
  auto rec = Recognizer::create(cfg, error);
  if (!rec) {
    g_printerr("local-model-wer: %s\n", error.c_str());
    return 1;
  }
  std::string caller_voice = voice ? voice : "en-us+f2";
  if (stream)
    rec->prime_phone_band(); /* what the engine does before its first stream */

  struct Case {
    std::string ref, wav;
  };
  std::vector<Case> cases;
  if (wav_list) {
    for (const auto &line : read_lines(wav_list)) {
      size_t tab = line.find('\t');
      if (tab != std::string::npos)
        cases.push_back({line.substr(tab + 1), line.substr(0, tab)});
    }
  } else {
    for (const auto &line : read_lines(sentences))
      cases.push_back({line, ""});
  }

  size_t ref_words = 0, errors = 0, sentences_ok = 0;
  double audio_s = 0, decode_s = 0;
  for (const auto &c : cases) {
    std::vector<int16_t> pcm;
    int rate = 0;
    if (!c.wav.empty()) {
      pa::WavData w;
      if (!pa::wav_read(c.wav, w, error)) {
        g_printerr("local-model-wer: %s\n", error.c_str());
        return 1;
      }
      pcm = std::move(w.samples);
      rate = w.rate;
      if (w.channels != 1)
        pcm = pa::resample_to_mono(pcm, w.rate, w.channels, w.rate);
    } else {
      Speech sp;
      if (!tts_synthesize(c.ref, caller_voice, wideband ? kSttRate : pa::kMulawRate, sp, error, wpm)) {
        g_printerr("local-model-wer: %s\n", error.c_str());
        return 1;
      }
      pcm = std::move(sp.pcm);
      rate = sp.rate;
    }
    std::vector<int16_t> wide;
    if (wideband) {
      wide = pa::resample_to_mono(pcm, rate, 1, kSttRate);
    } else {
      std::vector<int16_t> narrow = pa::resample_to_mono(pcm, rate, 1, pa::kMulawRate);
      std::vector<uint8_t> mu(narrow.size());
      pa::mulaw_encode_block(narrow.data(), mu.data(), mu.size());
      wide = mulaw8k_to_16k(mu.data(), mu.size());
    }
    gint64 t = g_get_monotonic_time();
    std::string hyp;
    if (stream) {
      rec->begin();
      for (size_t i = 0; i < wide.size(); i += 320)
        rec->feed(wide.data() + i, std::min<size_t>(320, wide.size() - i));
      hyp = rec->end();
    } else {
      hyp = rec->transcribe(wide.data(), wide.size());
    }
    decode_s += static_cast<double>(g_get_monotonic_time() - t) / 1e6;
    audio_s += static_cast<double>(wide.size()) / kSttRate;
    auto r = words(c.ref), h = words(hyp);
    size_t e = edit_distance(r, h);
    ref_words += r.size();
    errors += e;
    if (e == 0)
      sentences_ok++;
    if (!quiet)
      g_print("%3zu/%-3zu | %s\n        | %s\n", e, r.size(), c.ref.c_str(), hyp.c_str());
  }
  double wer = ref_words ? 100.0 * static_cast<double>(errors) / static_cast<double>(ref_words) : 0;
  std::string source = wav_list ? std::string("wav-list ") + wav_list : "espeak-ng " + caller_voice;
  g_print("WER %.1f%% (%zu errors / %zu words), %zu/%zu sentences exact, %s, %s, agent LM weight %.2f, "
          "decoding %.2fx real time\n",
          wer, errors, ref_words, sentences_ok, cases.size(), source.c_str(),
          wideband ? "16 kHz wideband" : "8 kHz mu-law", cfg.agent_weight, audio_s > 0 ? decode_s / audio_s : 0);
  g_print("{\"wer\":%.2f,\"errors\":%zu,\"words\":%zu,\"sentences\":%zu,\"exact\":%zu,\"band\":\"%s\","
          "\"agent_weight\":%.2f,\"rtf\":%.3f}\n",
          wer, errors, ref_words, cases.size(), sentences_ok, wideband ? "wideband" : "mulaw8k", cfg.agent_weight,
          audio_s > 0 ? decode_s / audio_s : 0);
  g_free(sentences);
  g_free(voice);
  g_free(agent);
  g_free(wav_list);
  return 0;
}
