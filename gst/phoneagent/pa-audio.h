/* gst-phone-agent
 * Audio helpers shared by the elements and tools: G.711 μ-law, strict base64,
 * WAV files and a resampler built on GStreamer's audio converter.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pa-api.h"

struct _GstAudioConverter;

namespace pa {

/* ---- G.711 μ-law (ITU-T G.711, bias 0x84, silence 0xFF) ---- */
constexpr uint8_t kMulawSilence = 0xFF;
constexpr int kMulawRate = 8000;
constexpr size_t kTwilioFrameBytes = 160; /* 20 ms at 8 kHz */

PA_API int16_t mulaw_decode(uint8_t u);
PA_API uint8_t mulaw_encode(int16_t pcm);
PA_API void mulaw_decode_block(const uint8_t *in, int16_t *out, size_t n);
PA_API void mulaw_encode_block(const int16_t *in, uint8_t *out, size_t n);
/* Mean of the squared samples of @n μ-law bytes, full scale = 1.0. */
PA_API double mulaw_mean_square(const uint8_t *in, size_t n);
/* The largest magnitude on the S16 scale (0 for no samples): of @n μ-law
 * bytes, decoded; of the S16LE samples in @bytes bytes (32768 for -32768;
 * an odd last byte is ignored). */
PA_API int mulaw_peak(const uint8_t *in, size_t n);
PA_API int s16le_peak(const uint8_t *in, size_t bytes);

/* ---- base64 (RFC 4648, standard alphabet, padded) ---- */
PA_API std::string base64_encode(const uint8_t *data, size_t len);
PA_API void base64_encode_append(std::string &out, const uint8_t *data, size_t len);
/* Strict decoder: returns false on any character outside the alphabet, bad
 * padding or a length that is not a multiple of 4. */
PA_API bool base64_decode(std::string_view in, std::vector<uint8_t> &out);
/* The codecs behind those: the functions above use the fastest this CPU
 * has; these name one, for tests and benchmarks (an implementation the CPU
 * lacks falls back to Scalar). Output and errors are the same for all. */
enum class Base64Impl { Scalar, SSSE3 };
PA_API bool base64_impl_available(Base64Impl impl);
PA_API void base64_encode_append_with(Base64Impl impl, std::string &out, const uint8_t *data, size_t len);
PA_API bool base64_decode_with(Base64Impl impl, std::string_view in, std::vector<uint8_t> &out);

/* ---- WAV files ---- */
enum class WavFormat { PCM16, MULAW };

struct WavData {
  int rate = 0;
  int channels = 0;
  /* Samples as interleaved S16 regardless of the file's encoding. */
  std::vector<int16_t> samples;
};

/* Reads PCM16 or μ-law WAV files. Returns false with a message on error. */
PA_API bool wav_read(const std::string &path, WavData &out, std::string &error);
/* Writes mono audio: S16 samples as PCM16 or μ-law. */
PA_API bool wav_write_s16(const std::string &path, const int16_t *samples, size_t n, int rate,
                          std::string &error);
PA_API bool wav_write_mulaw(const std::string &path, const uint8_t *data, size_t n, std::string &error);

/* Converts interleaved S16 at any rate/channel count to mono S16 at @out_rate
 * with GStreamer's audio converter (a real resampler, not sample dropping). */
PA_API std::vector<int16_t> resample_to_mono(const std::vector<int16_t> &in, int in_rate, int in_channels,
                                             int out_rate);

/* Streaming mono S16 rate converter (GstAudioConverter inside). Keeps its
 * filter state between calls, so frame-by-frame use is seamless. */
class PA_API StreamResampler {
public:
  StreamResampler(int in_rate, int out_rate);
  ~StreamResampler();
  StreamResampler(const StreamResampler &) = delete;
  StreamResampler &operator=(const StreamResampler &) = delete;

  int in_rate() const { return in_rate_; }
  int out_rate() const { return out_rate_; }
  /* Appends the converted samples to @out. */
  void process(const int16_t *in, size_t n, std::vector<int16_t> &out);
  /* Forgets the filter history (after a discontinuity). */
  void reset();

private:
  int in_rate_;
  int out_rate_;
  ::_GstAudioConverter *conv_ = nullptr;
};

/* Converts a WAV file to μ-law 8 kHz mono bytes, ready to stream as a caller. */
PA_API bool wav_to_mulaw8k(const std::string &path, std::vector<uint8_t> &out, std::string &error);

} // namespace pa
