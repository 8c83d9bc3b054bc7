/* gst-phone-agent: strict base64 (RFC 4648, standard alphabet, padded)
 *
 * Every media frame is base64 twice on the way through the server: Twilio's
 * payload is decoded, and the frame that goes back (or the append that goes
 * to the model) is encoded. The scalar codec below does a 160-byte frame in
 * about 1,100 (encode) and 1,450 (decode) instructions; on x86 CPUs with
 * SSSE3 the same work is done 12 bytes (16 characters) at a time with byte
 * shuffles, and the scalar code finishes the tail and the padded last quad.
 * Both give the same output and reject the same input; tests compare them.
 */
#include "pa-audio.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PA_BASE64_SSSE3 1
#endif

namespace pa {

namespace {

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ------------------------------------------------------------ scalar */

/* The two characters of every 12-bit group, so that three bytes encode
 * with two lookups. */
struct B64Pairs {
  char pair[4096][2];
  B64Pairs() {
    for (int v = 0; v < 4096; v++) {
      pair[v][0] = kB64[v >> 6];
      pair[v][1] = kB64[v & 63];
    }
  }
};

/* Writes the ((len + 2) / 3) * 4 characters of @data at @o. */
void encode_scalar(char *o, const uint8_t *data, size_t len) {
  static const B64Pairs pairs;
  size_t i = 0;
  for (; i + 3 <= len; i += 3, o += 4) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    memcpy(o, pairs.pair[v >> 12], 2);
    memcpy(o + 2, pairs.pair[v & 0xfff], 2);
  }
  if (i < len) {
    uint32_t v = data[i] << 16;
    if (i + 1 < len)
      v |= data[i + 1] << 8;
    *o++ = kB64[(v >> 18) & 63];
    *o++ = kB64[(v >> 12) & 63];
    *o++ = (i + 1 < len) ? kB64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
}

/* One table per position in a quad, each entry already shifted into place,
 * so a quad decodes with four loads and three ORs. Entries for bytes that
 * are not base64 carry kB64Bad, a bit no valid quad can set. */
constexpr uint32_t kB64Bad = 1u << 24;
struct B64Rev {
  uint32_t at[4][256];
  B64Rev() {
    for (auto &t : at)
      for (uint32_t &e : t)
        e = kB64Bad;
    for (uint32_t i = 0; i < 64; i++) {
      auto c = static_cast<uint8_t>(kB64[i]);
      at[0][c] = i << 18;
      at[1][c] = i << 12;
      at[2][c] = i << 6;
      at[3][c] = i;
    }
  }
};
const B64Rev &rev_tables() {
  static const B64Rev rev;
  return rev;
}

/* Decodes @quads quads without padding from @p to @o (3 bytes each).
 * Returns false if any character is not in the alphabet. */
bool decode_quads_scalar(const uint8_t *p, size_t quads, uint8_t *o) {
  const B64Rev &rev = rev_tables();
  uint32_t bad = 0;
  for (size_t q = 0; q < quads; q++, p += 4, o += 3) {
    uint32_t v = rev.at[0][p[0]] | rev.at[1][p[1]] | rev.at[2][p[2]] | rev.at[3][p[3]];
    bad |= v;
    o[0] = static_cast<uint8_t>(v >> 16);
    o[1] = static_cast<uint8_t>(v >> 8);
    o[2] = static_cast<uint8_t>(v);
  }
  return !(bad & kB64Bad);
}

/* -------------------------------------------------------------- SSSE3 */

#ifdef PA_BASE64_SSSE3

bool have_ssse3() {
  static const bool yes = __builtin_cpu_supports("ssse3");
  return yes;
}

/* Encodes 12 bytes into 16 characters per step while 16 bytes can be
 * loaded; returns how many bytes it encoded (a multiple of 12).
 *
 * Each 32-bit lane takes one 3-byte group s0 s1 s2, shuffled to the bytes
 * s1 s0 s2 s1, so that its low 16-bit word is s0s1 and its high word s1s2.
 * The four 6-bit indices a b c d sit at bits 15..10 and 9..4 of the low
 * word and 11..6 and 5..0 of the high word; one multiply-high moves a and c
 * down to bits 5..0, one multiply-low moves b and d up to bits 13..8, so
 * the lane's bytes are a b c d. An index becomes its character by adding an
 * offset looked up by range: 0-25 'A', 26-51 'a' - 26, 52-61 '0' - 52,
 * 62 '+', 63 '/'. */
__attribute__((target("ssse3"))) size_t encode_ssse3(char *o, const uint8_t *data, size_t len) {
  const __m128i spread = _mm_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
  const __m128i mask_ac = _mm_set1_epi32(0x0fc0fc00);
  const __m128i shift_ac = _mm_set1_epi32(0x04000040);
  const __m128i mask_bd = _mm_set1_epi32(0x003f03f0);
  const __m128i shift_bd = _mm_set1_epi32(0x01000010);
  /* offsets by range: k = index - 51 saturated (1..12 for 52..63), or 13
   * below 26 */
  const __m128i offsets = _mm_setr_epi8(71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0);
  size_t i = 0;
  for (; i + 16 <= len; i += 12, o += 16) {
    __m128i in = _mm_loadu_si128(reinterpret_cast<const __m128i *>(data + i));
    in = _mm_shuffle_epi8(in, spread);
    __m128i ac = _mm_mulhi_epu16(_mm_and_si128(in, mask_ac), shift_ac);
    __m128i bd = _mm_mullo_epi16(_mm_and_si128(in, mask_bd), shift_bd);
    __m128i idx = _mm_or_si128(ac, bd);
    __m128i k = _mm_subs_epu8(idx, _mm_set1_epi8(51));
    __m128i below26 = _mm_cmpgt_epi8(_mm_set1_epi8(26), idx);
    k = _mm_or_si128(k, _mm_and_si128(below26, _mm_set1_epi8(13)));
    __m128i chars = _mm_add_epi8(idx, _mm_shuffle_epi8(offsets, k));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(o), chars);
  }
  return i;
}

/* The decoder's lookups by nibble, built from the alphabet rather than
 * written out. Validity: every high nibble has a class bit; lo[l] has the
 * bit of each class whose character (h << 4 | l) is not base64, so a
 * character is valid exactly when lo[l] & hi[h] is 0 (bytes of 0x80 and
 * up have their own class, invalid for every low nibble). Translation:
 * the value is the character plus an offset chosen by its high nibble,
 * with '/' (the one character sharing a nibble with '+') moved to index 1. */
struct B64Nibbles {
  alignas(16) int8_t lo[16];
  alignas(16) int8_t hi[16];
  alignas(16) int8_t roll[16];
  B64Nibbles() {
    auto class_bit = [](int h) { return static_cast<uint8_t>(h >= 2 && h <= 7 ? 1u << (h - 2) : 1u << 6); };
    uint8_t l8[16] = {};
    for (int h = 0; h < 16; h++)
      for (int l = 0; l < 16; l++)
        if (h >= 8 || !strchr(kB64, (h << 4) | l) || ((h << 4) | l) == 0)
          l8[l] = static_cast<uint8_t>(l8[l] | class_bit(h));
    for (int n = 0; n < 16; n++) {
      lo[n] = static_cast<int8_t>(l8[n]);
      hi[n] = static_cast<int8_t>(class_bit(n));
      roll[n] = 0;
    }
    roll[1] = 63 - '/';
    roll[2] = 62 - '+';
    roll[3] = 52 - '0';
    roll[4] = roll[5] = static_cast<int8_t>(0 - 'A');
    roll[6] = roll[7] = static_cast<int8_t>(26 - 'a');
  }
};

/* Decodes 16 characters into 12 bytes per step for the first @nchars
 * characters (a multiple of 16); false if any is not base64. The four
 * 6-bit values of a lane are packed by two multiply-adds into a 24-bit
 * number, whose bytes a shuffle puts in order. */
__attribute__((target("ssse3"))) bool decode_ssse3(const uint8_t *p, size_t nchars, uint8_t *o) {
  static const B64Nibbles t;
  const __m128i lo_t = _mm_load_si128(reinterpret_cast<const __m128i *>(t.lo));
  const __m128i hi_t = _mm_load_si128(reinterpret_cast<const __m128i *>(t.hi));
  const __m128i roll_t = _mm_load_si128(reinterpret_cast<const __m128i *>(t.roll));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  const __m128i pairs = _mm_set1_epi32(0x01400140);
  const __m128i quads = _mm_set1_epi32(0x00011000);
  const __m128i order = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
  __m128i bad = _mm_setzero_si128();
  for (size_t i = 0; i < nchars; i += 16, o += 12) {
    __m128i in = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p + i));
    __m128i hi = _mm_and_si128(_mm_srli_epi32(in, 4), nibble);
    __m128i lo = _mm_and_si128(in, nibble);
    bad = _mm_or_si128(bad, _mm_and_si128(_mm_shuffle_epi8(lo_t, lo), _mm_shuffle_epi8(hi_t, hi)));
    __m128i slash = _mm_cmpeq_epi8(in, _mm_set1_epi8('/'));
    __m128i v = _mm_add_epi8(in, _mm_shuffle_epi8(roll_t, _mm_add_epi8(hi, slash)));
    __m128i packed = _mm_madd_epi16(_mm_maddubs_epi16(v, pairs), quads);
    packed = _mm_shuffle_epi8(packed, order);
    alignas(16) uint8_t out[16];
    _mm_store_si128(reinterpret_cast<__m128i *>(out), packed);
    memcpy(o, out, 12);
  }
  return _mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) == 0xffff;
}

#endif /* PA_BASE64_SSSE3 */

/* Appends the encoding of @data to @out with @impl (one the CPU has). */
void encode_with(Base64Impl impl, std::string &out, const uint8_t *data, size_t len) {
  size_t start = out.size();
  out.resize(start + ((len + 2) / 3) * 4);
  char *o = out.data() + start;
#ifdef PA_BASE64_SSSE3
  if (impl == Base64Impl::SSSE3) {
    size_t done = encode_ssse3(o, data, len);
    o += done / 3 * 4;
    data += done;
    len -= done;
  }
#else
  (void)impl;
#endif
  encode_scalar(o, data, len);
}

bool decode_with(Base64Impl impl, std::string_view in, std::vector<uint8_t> &out) {
  out.clear();
  if (in.size() % 4 != 0)
    return false;
  if (in.empty())
    return true;
  size_t pad = 0;
  if (in[in.size() - 1] == '=')
    pad++;
  if (in[in.size() - 2] == '=')
    pad++;
  const size_t quads = in.size() / 4;
  out.resize(quads * 3 - pad);
  uint8_t *o = out.data();
  const auto *p = reinterpret_cast<const uint8_t *>(in.data());
  /* every quad but the last: no padding allowed */
  size_t body = quads - 1;
  bool ok = true;
#ifdef PA_BASE64_SSSE3
  if (impl == Base64Impl::SSSE3) {
    size_t blocks = body / 4; /* 16 characters, 4 quads */
    ok = decode_ssse3(p, blocks * 16, o);
    p += blocks * 16;
    o += blocks * 12;
    body -= blocks * 4;
  }
#else
  (void)impl;
#endif
  ok = decode_quads_scalar(p, body, o) && ok;
  p += body * 4;
  o += body * 3;
  /* the last quad: '=' stands for zero bits; padding leaves bits unused,
   * which a canonical encoder writes as 0 (RFC 4648 3.5), and anything
   * else is not what Twilio or we would send */
  const B64Rev &rev = rev_tables();
  uint32_t c = pad >= 2 ? 0 : rev.at[2][p[2]];
  uint32_t d = pad >= 1 ? 0 : rev.at[3][p[3]];
  uint32_t v = rev.at[0][p[0]] | rev.at[1][p[1]] | c | d;
  bool stray_bits = (pad == 2 && (v & 0xffff)) || (pad == 1 && (v & 0xff));
  if (!ok || (v & kB64Bad) || stray_bits) {
    out.clear();
    return false;
  }
  o[0] = static_cast<uint8_t>(v >> 16);
  if (pad < 2)
    o[1] = static_cast<uint8_t>(v >> 8);
  if (pad < 1)
    o[2] = static_cast<uint8_t>(v);
  return true;
}

Base64Impl best_impl() {
#ifdef PA_BASE64_SSSE3
  if (have_ssse3())
    return Base64Impl::SSSE3;
#endif
  return Base64Impl::Scalar;
}

} // namespace

bool base64_impl_available(Base64Impl impl) {
  return impl == Base64Impl::Scalar
#ifdef PA_BASE64_SSSE3
         || (impl == Base64Impl::SSSE3 && have_ssse3())
#endif
      ;
}

void base64_encode_append_with(Base64Impl impl, std::string &out, const uint8_t *data, size_t len) {
  encode_with(base64_impl_available(impl) ? impl : Base64Impl::Scalar, out, data, len);
}

bool base64_decode_with(Base64Impl impl, std::string_view in, std::vector<uint8_t> &out) {
  return decode_with(base64_impl_available(impl) ? impl : Base64Impl::Scalar, in, out);
}

std::string base64_encode(const uint8_t *data, size_t len) {
  std::string out;
  base64_encode_append(out, data, len);
  return out;
}

void base64_encode_append(std::string &out, const uint8_t *data, size_t len) {
  static const Base64Impl impl = best_impl();
  encode_with(impl, out, data, len);
}

bool base64_decode(std::string_view in, std::vector<uint8_t> &out) {
  static const Base64Impl impl = best_impl();
  return decode_with(impl, in, out);
}

} // namespace pa
