/* gst-phone-agent: pocketsphinx transcription for the local model */
#include "local-stt.h"

#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <glib.h>
#include <glib/gstdio.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "local-tts.h"
#include "pa-audio.h"

namespace pa::local {

namespace {
constexpr const char *kDebianModelDir = "/usr/share/pocketsphinx/model/en-us";
/* one short phone-band sentence adapts the live cepstral mean well enough
 * (bench/local-model-wer --stream: longer ones did no better) */
constexpr const char *kPrimeSentence = "How can I help you today?";
std::mutex g_init_lock; /* sphinxbase keeps some process-wide state (logging) */

std::string path_join(const std::string &a, const char *b) {
  gchar *p = g_build_filename(a.c_str(), b, nullptr);
  std::string s(p);
  g_free(p);
  return s;
}
} // namespace

std::string stt_model_dir(const SttConfig &config) {
  if (!config.model_dir.empty())
    return config.model_dir;
  const char *env = g_getenv("PA_POCKETSPHINX_MODEL");
  if (env && *env)
    return env;
  return kDebianModelDir;
}

bool stt_check_models(const SttConfig &config, std::string &error) {
  std::string dir = stt_model_dir(config);
  for (const char *f : {"en-us/mdef", "en-us.lm.bin", "cmudict-en-us.dict"}) {
    std::string p = path_join(dir, f);
    if (!g_file_test(p.c_str(), G_FILE_TEST_EXISTS)) {
      error = "pocketsphinx model file " + p + " is missing (Debian package pocketsphinx-en-us)";
      return false;
    }
  }
  return true;
}

std::vector<std::string> normalize_words(const std::string &text) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&]() {
    /* strip apostrophes at the edges ('quoted' words) */
    while (!cur.empty() && cur.back() == '\'')
      cur.pop_back();
    size_t b = 0;
    while (b < cur.size() && cur[b] == '\'')
      b++;
    if (b < cur.size())
      words.push_back(cur.substr(b));
    cur.clear();
  };
  for (size_t i = 0; i < text.size(); i++) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (g_ascii_isalnum(c) || c == '\'' || c >= 0x80)
      cur.push_back(static_cast<char>(g_ascii_tolower(c)));
    else
      flush();
  }
  flush();
  return words;
}

std::string build_arpa(const std::vector<std::string> &sentences) {
  std::map<std::string, double> uni;
  std::map<std::pair<std::string, std::string>, double> bi;
  for (const auto &s : sentences) {
    std::vector<std::string> w = normalize_words(s);
    if (w.empty())
      continue;
    w.insert(w.begin(), "<s>");
    w.push_back("</s>");
    for (const auto &x : w)
      uni[x] += 1;
    for (size_t i = 0; i + 1 < w.size(); i++)
      bi[{w[i], w[i + 1]}] += 1;
  }
  if (bi.empty())
    return "";
  /* unigrams: add-one over the vocabulary (<s> is never predicted) */
  double total = 0;
  for (auto &[w, c] : uni)
    if (w != "<s>")
      total += c;
  double vocab = static_cast<double>(uni.size());
  std::map<std::string, double> p1;
  for (auto &[w, c] : uni)
    p1[w] = (w == "<s>") ? 0.0 : (c + 1.0) / (total + vocab);
  /* bigrams: absolute discounting, the freed mass goes to the back-off */
  constexpr double D = 0.5;
  std::map<std::string, std::vector<std::pair<std::string, double>>> followers;
  for (auto &[k, c] : bi)
    followers[k.first].emplace_back(k.second, c);
  std::map<std::pair<std::string, std::string>, double> p2;
  std::map<std::string, double> bow;
  for (auto &[a, fl] : followers) {
    double ca = 0, seen = 0;
    for (auto &[b, c] : fl)
      ca += c;
    for (auto &[b, c] : fl) {
      p2[{a, b}] = (c - D) / ca;
      seen += p1[b];
    }
    double left = D * static_cast<double>(fl.size()) / ca;
    double denom = 1.0 - seen;
    bow[a] = denom > 1e-9 ? left / denom : 1.0;
  }
  std::string out = "\\data\\\n";
  out += "ngram 1=" + std::to_string(uni.size()) + "\n";
  out += "ngram 2=" + std::to_string(bi.size()) + "\n\n\\1-grams:\n";
  char buf[64];
  for (auto &[w, c] : uni) {
    double lp = (w == "<s>") ? -99.0 : std::log10(p1[w]);
    auto b = bow.find(w);
    double lb = b != bow.end() ? std::log10(std::max(b->second, 1e-9)) : 0.0;
    g_ascii_formatd(buf, sizeof buf, "%.4f", lp);
    out += buf;
    out += " " + w + " ";
    g_ascii_formatd(buf, sizeof buf, "%.4f", lb);
    out += buf;
    out += "\n";
  }
  out += "\n\\2-grams:\n";
  for (auto &[k, p] : p2) {
    g_ascii_formatd(buf, sizeof buf, "%.4f", std::log10(p));
    out += buf;
    out += " " + k.first + " " + k.second + "\n";
  }
  out += "\n\\end\\\n";
  return out;
}

struct Recognizer::Impl {
  ps_decoder_t *ps = nullptr;
};

Recognizer::Recognizer() : impl_(new Impl) {}

Recognizer::~Recognizer() {
  if (impl_->ps)
    ps_free(impl_->ps);
}

std::unique_ptr<Recognizer> Recognizer::create(const SttConfig &config, std::string &error) {
  if (!stt_check_models(config, error))
    return nullptr;
  std::string dir = stt_model_dir(config);
  std::string hmm = path_join(dir, "en-us");
  std::string lm = path_join(dir, "en-us.lm.bin");
  std::string dict = path_join(dir, "cmudict-en-us.dict");

  std::lock_guard<std::mutex> lock(g_init_lock);
  err_set_logfp(nullptr); /* pocketsphinx logs a lot to stderr by default */
  std::vector<std::string> args = {"-hmm", hmm, "-lm", lm, "-dict", dict};
  /* expert knob for experiments (e.g. "-beam 1e-60 -lw 8"), see docs/local-model.md */
  if (const char *extra = g_getenv("PA_POCKETSPHINX_ARGS")) {
    gchar **argv = nullptr;
    if (g_shell_parse_argv(extra, nullptr, &argv, nullptr)) {
      for (int i = 0; argv[i]; i++)
        args.push_back(argv[i]);
      g_strfreev(argv);
    }
  }
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  cmd_ln_t *cfg = cmd_ln_parse_r(nullptr, ps_args(), static_cast<int32>(argv.size()), argv.data(), TRUE);
  if (!cfg) {
    error = "pocketsphinx rejected its configuration";
    return nullptr;
  }
  std::unique_ptr<Recognizer> r(new Recognizer());
  r->impl_->ps = ps_init(cfg);
  cmd_ln_free_r(cfg); /* the decoder keeps its own reference */
  if (!r->impl_->ps) {
    error = "pocketsphinx failed to load the models in " + dir;
    return nullptr;
  }

  std::string arpa = config.agent_weight > 0 ? build_arpa(config.agent_sentences) : "";
  if (!arpa.empty()) {
    gchar *tmp = nullptr;
    gint fd = g_file_open_tmp("pa-agent-XXXXXX.arpa", &tmp, nullptr);
    if (fd >= 0) {
      close(fd);
      ngram_model_t *general = ps_get_lm(r->impl_->ps, "_default");
      ngram_model_t *agent = nullptr;
      if (g_file_set_contents(tmp, arpa.data(), static_cast<gssize>(arpa.size()), nullptr))
        agent = ngram_model_read(ps_get_config(r->impl_->ps), tmp, NGRAM_ARPA, ps_get_logmath(r->impl_->ps));
      g_unlink(tmp);
      if (general && agent) {
        /* The set takes over both references; the general model stays owned
         * by the default search too. The set itself stays referenced for the
         * decoder's lifetime (released with it; a few bytes if not). */
        ngram_model_t *models[2] = {ngram_model_retain(general), agent};
        const char *names[2] = {"general", "agent"};
        double w = std::clamp(config.agent_weight, 0.0, 1.0);
        float32 weights[2] = {static_cast<float32>(1.0 - w), static_cast<float32>(w)};
        ngram_model_t *set = ngram_model_set_init(ps_get_config(r->impl_->ps), models, const_cast<char **>(names),
                                                  weights, 2);
        if (set && ps_set_lm(r->impl_->ps, "mixed", set) == 0)
          ps_set_search(r->impl_->ps, "mixed");
      } else if (agent) {
        ngram_model_free(agent);
      }
    }
    g_free(tmp);
  }
  return r;
}

std::string Recognizer::transcribe(const int16_t *pcm, size_t n) {
  ps_decoder_t *ps = impl_->ps;
  /* Pad with a little low-level noise so that the front end sees silence
   * around the words (helps with tightly cut turns) without digital zeros. */
  std::vector<int16_t> buf;
  const size_t pad = kSttRate / 5; /* 200 ms */
  buf.reserve(n + 2 * pad);
  guint32 seed = 12345;
  auto noise = [&seed]() {
    seed = seed * 1103515245u + 12345u;
    return static_cast<int16_t>(static_cast<int>((seed >> 16) % 9) - 4);
  };
  for (size_t i = 0; i < pad; i++)
    buf.push_back(noise());
  buf.insert(buf.end(), pcm, pcm + n);
  for (size_t i = 0; i < pad; i++)
    buf.push_back(noise());

  if (ps_start_utt(ps) < 0)
    return "";
  /* full_utt: batch cepstral mean normalization over the whole turn */
  ps_process_raw(ps, buf.data(), buf.size(), FALSE, TRUE);
  ps_end_utt(ps);
  int32 score = 0;
  const char *hyp = ps_get_hyp(ps, &score);
  return hyp ? std::string(hyp) : std::string();
}

void Recognizer::begin() { ps_start_utt(impl_->ps); }

void Recognizer::feed(const int16_t *pcm, size_t n) {
  if (n)
    ps_process_raw(impl_->ps, pcm, n, FALSE, FALSE);
}

std::string Recognizer::partial() {
  int32 score = 0;
  const char *hyp = ps_get_hyp(impl_->ps, &score);
  return hyp ? std::string(hyp) : std::string();
}

std::string Recognizer::end() {
  ps_end_utt(impl_->ps);
  return partial();
}

void Recognizer::prime(const int16_t *pcm, size_t n) {
  begin();
  for (size_t i = 0; i < n; i += 1600)
    feed(pcm + i, std::min<size_t>(1600, n - i));
  end();
}

void Recognizer::prime_phone_band() {
  Speech sp;
  std::string error;
  if (!tts_synthesize(kPrimeSentence, "en-us", kMulawRate, sp, error))
    return;
  std::vector<uint8_t> mu(sp.pcm.size());
  mulaw_encode_block(sp.pcm.data(), mu.data(), mu.size());
  std::vector<int16_t> wide = mulaw8k_to_16k(mu.data(), mu.size());
  prime(wide.data(), wide.size());
}

std::vector<int16_t> mulaw8k_to_16k(const uint8_t *mulaw, size_t n) {
  std::vector<int16_t> pcm(n);
  mulaw_decode_block(mulaw, pcm.data(), n);
  return resample_to_mono(pcm, kMulawRate, 1, kSttRate);
}

} // namespace pa::local
