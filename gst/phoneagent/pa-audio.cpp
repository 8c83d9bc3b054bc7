/* gst-phone-agent: audio helpers (μ-law, WAV, resampling; base64 is in pa-base64.cpp) */
#include "pa-audio.h"

#include <gst/audio/audio.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace pa {

/* ---------------------------------------------------------------- μ-law */

int16_t mulaw_decode(uint8_t b) {
  uint8_t u = static_cast<uint8_t>(~b);
  int sign = u & 0x80;
  int exponent = (u >> 4) & 0x07;
  int mantissa = u & 0x0F;
  int magnitude = ((mantissa << 3) + 0x84) << exponent;
  return static_cast<int16_t>(sign ? (0x84 - magnitude) : (magnitude - 0x84));
}

uint8_t mulaw_encode(int16_t pcm) {
  constexpr int kBias = 0x84;
  constexpr int kClip = 32635;
  int sample = pcm;
  int sign = (sample >> 8) & 0x80;
  if (sign)
    sample = -sample;
  if (sample > kClip)
    sample = kClip;
  sample += kBias;
  int exponent = 7;
  for (int mask = 0x4000; (sample & mask) == 0 && exponent > 0; mask >>= 1)
    exponent--;
  int mantissa = (sample >> (exponent + 3)) & 0x0F;
  return static_cast<uint8_t>(~(sign | (exponent << 4) | mantissa));
}

namespace {
struct MulawTables {
  int16_t decode[256];
  float power[256]; /* (decode / 32768)^2 */
  uint8_t encode[65536];
  MulawTables() {
    for (int i = 0; i < 256; i++) {
      decode[i] = mulaw_decode(static_cast<uint8_t>(i));
      float v = static_cast<float>(decode[i]) / 32768.0f;
      power[i] = v * v;
    }
    for (int i = 0; i < 65536; i++)
      encode[i] = mulaw_encode(static_cast<int16_t>(i - 32768));
  }
};
const MulawTables &tables() {
  static const MulawTables t; /* immutable after construction; thread-safe init */
  return t;
}
} // namespace

void mulaw_decode_block(const uint8_t *in, int16_t *out, size_t n) {
  const auto &t = tables();
  for (size_t i = 0; i < n; i++)
    out[i] = t.decode[in[i]];
}

double mulaw_mean_square(const uint8_t *in, size_t n) {
  if (!n)
    return 0.0;
  const auto &t = tables();
  /* four sums, so that the additions do not wait on one another */
  double e[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    e[0] += t.power[in[i]];
    e[1] += t.power[in[i + 1]];
    e[2] += t.power[in[i + 2]];
    e[3] += t.power[in[i + 3]];
  }
  for (; i < n; i++)
    e[0] += t.power[in[i]];
  return (e[0] + e[1] + e[2] + e[3]) / static_cast<double>(n);
}

int mulaw_peak(const uint8_t *in, size_t n) {
  /* a byte's magnitude falls as its low seven bits grow (the code is sent
   * inverted), so the loudest byte is the one whose low bits are least:
   * found without decoding, 16 bytes at a time where SSE2 is there */
  uint8_t least = 0x7F;
  size_t i = 0;
#ifdef __SSE2__
  if (n >= 16) {
    const __m128i bits = _mm_set1_epi8(0x7F);
    __m128i m = bits;
    for (; i + 16 <= n; i += 16)
      m = _mm_min_epu8(m, _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i *>(in + i)), bits));
    m = _mm_min_epu8(m, _mm_srli_si128(m, 8));
    m = _mm_min_epu8(m, _mm_srli_si128(m, 4));
    m = _mm_min_epu8(m, _mm_srli_si128(m, 2));
    m = _mm_min_epu8(m, _mm_srli_si128(m, 1));
    least = static_cast<uint8_t>(_mm_cvtsi128_si32(m) & 0x7F);
  }
#endif
  for (; i < n; i++) {
    uint8_t b = in[i] & 0x7F;
    least = b < least ? b : least;
  }
  return std::abs(static_cast<int>(tables().decode[least])); /* 0x7F: 0, for no bytes too */
}

int s16le_peak(const uint8_t *in, size_t bytes) {
  int top = 0;
  for (size_t i = 0; i + 1 < bytes; i += 2) {
    int v = std::abs(static_cast<int>(static_cast<int16_t>(in[i] | (in[i + 1] << 8))));
    top = v > top ? v : top;
  }
  return top;
}

void mulaw_encode_block(const int16_t *in, uint8_t *out, size_t n) {
  const auto &t = tables();
  for (size_t i = 0; i < n; i++)
    out[i] = t.encode[static_cast<int>(in[i]) + 32768];
}

/* ------------------------------------------------------------------ WAV */

namespace {
uint32_t rd32(const uint8_t *p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint16_t rd16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void wr32(std::string &s, uint32_t v) {
  for (int i = 0; i < 4; i++)
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void wr16(std::string &s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xFF));
  s.push_back(static_cast<char>(v >> 8));
}

bool write_file(const std::string &path, const std::string &header, const void *data, size_t len,
                std::string &error) {
  std::unique_ptr<FILE, int (*)(FILE *)> f(fopen(path.c_str(), "wb"), fclose);
  if (!f) {
    error = "cannot open " + path + " for writing: " + strerror(errno);
    return false;
  }
  if (fwrite(header.data(), 1, header.size(), f.get()) != header.size() ||
      (len && fwrite(data, 1, len, f.get()) != len)) {
    error = "cannot write " + path + ": " + strerror(errno);
    return false;
  }
  return true;
}

std::string wav_header(uint16_t format_tag, uint16_t bits, int rate, uint32_t data_len) {
  std::string h;
  bool ext = format_tag != 1; /* non-PCM formats carry a cbSize field */
  uint32_t fmt_len = ext ? 18 : 16;
  h += "RIFF";
  wr32(h, 4 + (8 + fmt_len) + (ext ? 12 : 0) + 8 + data_len);
  h += "WAVE";
  h += "fmt ";
  wr32(h, fmt_len);
  wr16(h, format_tag);
  wr16(h, 1);
  wr32(h, static_cast<uint32_t>(rate));
  wr32(h, static_cast<uint32_t>(rate) * bits / 8);
  wr16(h, bits / 8);
  wr16(h, bits);
  if (ext) {
    wr16(h, 0);
    h += "fact";
    wr32(h, 4);
    wr32(h, data_len);
  }
  h += "data";
  wr32(h, data_len);
  return h;
}
} // namespace

bool wav_read(const std::string &path, WavData &out, std::string &error) {
  gchar *contents = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &contents, &len, &err)) {
    error = err->message;
    g_error_free(err);
    return false;
  }
  std::unique_ptr<gchar, decltype(&g_free)> holder(contents, g_free);
  const uint8_t *p = reinterpret_cast<const uint8_t *>(contents);
  if (len < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WAVE", 4) != 0) {
    error = path + " is not a RIFF/WAVE file";
    return false;
  }
  size_t pos = 12;
  int format = -1, channels = 0, rate = 0, bits = 0;
  const uint8_t *data = nullptr;
  size_t data_len = 0;
  while (pos + 8 <= len) {
    uint32_t clen = rd32(p + pos + 4);
    const uint8_t *c = p + pos + 8;
    size_t avail = len - pos - 8;
    if (memcmp(p + pos, "fmt ", 4) == 0 && clen >= 16 && avail >= 16) {
      format = rd16(c);
      channels = rd16(c + 2);
      rate = static_cast<int>(rd32(c + 4));
      bits = rd16(c + 14);
      if (format == 0xFFFE && clen >= 26 && avail >= 26)
        format = rd16(c + 24); /* WAVE_FORMAT_EXTENSIBLE: sub-format GUID starts with the tag */
    } else if (memcmp(p + pos, "data", 4) == 0) {
      data = c;
      data_len = std::min<size_t>(clen, avail);
    }
    pos += 8 + clen + (clen & 1);
  }
  if (format < 0 || !data) {
    error = path + ": no fmt or data chunk";
    return false;
  }
  if (channels < 1 || rate < 1000 || rate > 384000) {
    error = path + ": unsupported channel count or rate";
    return false;
  }
  out.rate = rate;
  out.channels = channels;
  out.samples.clear();
  if (format == 1 && bits == 16) {
    out.samples.resize(data_len / 2);
    for (size_t i = 0; i < out.samples.size(); i++)
      out.samples[i] = static_cast<int16_t>(rd16(data + 2 * i));
  } else if (format == 7 && bits == 8) {
    out.samples.resize(data_len);
    mulaw_decode_block(data, out.samples.data(), data_len);
  } else if (format == 1 && bits == 8) {
    out.samples.resize(data_len);
    for (size_t i = 0; i < data_len; i++)
      out.samples[i] = static_cast<int16_t>((data[i] - 128) << 8);
  } else {
    error = path + ": only PCM 8/16-bit and μ-law WAV files are supported (format " + std::to_string(format) +
            ", " + std::to_string(bits) + " bits)";
    return false;
  }
  return true;
}

bool wav_write_s16(const std::string &path, const int16_t *samples, size_t n, int rate, std::string &error) {
  std::string h = wav_header(1, 16, rate, static_cast<uint32_t>(n * 2));
  return write_file(path, h, samples, n * 2, error); /* little-endian host assumed (x86/ARM) */
}

bool wav_write_mulaw(const std::string &path, const uint8_t *data, size_t n, std::string &error) {
  std::string h = wav_header(7, 8, kMulawRate, static_cast<uint32_t>(n));
  return write_file(path, h, data, n, error);
}

/* ----------------------------------------------------------- resampling */

static GstAudioConverter *make_converter(int in_rate, int in_channels, int out_rate) {
  GstAudioInfo in_info, out_info;
  gst_audio_info_set_format(&in_info, GST_AUDIO_FORMAT_S16, in_rate, in_channels, nullptr);
  gst_audio_info_set_format(&out_info, GST_AUDIO_FORMAT_S16, out_rate, 1, nullptr);
  GstStructure *config = gst_structure_new("config", GST_AUDIO_CONVERTER_OPT_RESAMPLER_METHOD,
                                           GST_TYPE_AUDIO_RESAMPLER_METHOD, GST_AUDIO_RESAMPLER_METHOD_KAISER,
                                           nullptr);
  return gst_audio_converter_new(GST_AUDIO_CONVERTER_FLAG_VARIABLE_RATE, &in_info, &out_info, config);
}

static void convert(GstAudioConverter *conv, const int16_t *in, size_t n, std::vector<int16_t> &out) {
  gsize out_frames = gst_audio_converter_get_out_frames(conv, n);
  size_t old = out.size();
  out.resize(old + out_frames);
  gpointer in_ptr = const_cast<int16_t *>(in);
  gpointer out_ptr = out.data() + old;
  gst_audio_converter_samples(conv, GST_AUDIO_CONVERTER_FLAG_NONE, n ? &in_ptr : nullptr, n, &out_ptr,
                              out_frames);
}

std::vector<int16_t> resample_to_mono(const std::vector<int16_t> &in, int in_rate, int in_channels, int out_rate) {
  if (in_rate == out_rate && in_channels == 1)
    return in;
  GstAudioConverter *conv = make_converter(in_rate, in_channels, out_rate);
  std::vector<int16_t> out;
  size_t frames = in.size() / static_cast<size_t>(in_channels);
  convert(conv, in.data(), frames, out);
  /* drain the filter: push silence equal to its latency */
  gsize latency = gst_audio_converter_get_max_latency(conv);
  if (latency) {
    std::vector<int16_t> zeros(latency * static_cast<size_t>(in_channels), 0);
    convert(conv, zeros.data(), latency, out);
  }
  gst_audio_converter_free(conv);
  /* GstAudioConverter's output is already time-aligned with its input (an
   * impulse at input 0 comes out at output 0): keep it from the start and
   * drop what draining added past the end. */
  size_t want = static_cast<size_t>(static_cast<double>(frames) * out_rate / in_rate + 0.5);
  out.resize(want, 0);
  return out;
}

StreamResampler::StreamResampler(int in_rate, int out_rate) : in_rate_(in_rate), out_rate_(out_rate) {
  if (in_rate != out_rate)
    conv_ = make_converter(in_rate, 1, out_rate);
}

StreamResampler::~StreamResampler() {
  if (conv_)
    gst_audio_converter_free(conv_);
}

void StreamResampler::process(const int16_t *in, size_t n, std::vector<int16_t> &out) {
  if (!conv_) {
    out.insert(out.end(), in, in + n);
    return;
  }
  convert(conv_, in, n, out);
}

void StreamResampler::reset() {
  if (conv_)
    gst_audio_converter_reset(conv_);
}

bool wav_to_mulaw8k(const std::string &path, std::vector<uint8_t> &out, std::string &error) {
  WavData w;
  if (!wav_read(path, w, error))
    return false;
  std::vector<int16_t> mono = resample_to_mono(w.samples, w.rate, w.channels, kMulawRate);
  out.resize(mono.size());
  mulaw_encode_block(mono.data(), out.data(), mono.size());
  return true;
}

} // namespace pa
