/* twilio-emulator: WebSocket frame codec */
#include "ws-frame.h"

#include <glib.h>

#include "pa-audio.h"

namespace emu::ws {

void append_frame(std::string &out, uint8_t opcode, const void *data, size_t len, uint32_t mask_key) {
  out.push_back(static_cast<char>(0x80 | (opcode & 0x0F)));
  if (len < 126) {
    out.push_back(static_cast<char>(0x80 | len));
  } else if (len < 65536) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>((len >> 8) & 0xFF));
    out.push_back(static_cast<char>(len & 0xFF));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; i--)
      out.push_back(static_cast<char>((static_cast<uint64_t>(len) >> (8 * i)) & 0xFF));
  }
  uint8_t mask[4] = {static_cast<uint8_t>(mask_key >> 24), static_cast<uint8_t>(mask_key >> 16),
                     static_cast<uint8_t>(mask_key >> 8), static_cast<uint8_t>(mask_key)};
  out.append(reinterpret_cast<const char *>(mask), 4);
  size_t start = out.size();
  out.append(static_cast<const char *>(data), len);
  for (size_t i = 0; i < len; i++)
    out[start + i] = static_cast<char>(static_cast<uint8_t>(out[start + i]) ^ mask[i & 3]);
}

FrameParser::Result FrameParser::next(Frame &out, std::string &error) {
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t avail = buf_.size() - pos_;
  const auto *p = reinterpret_cast<const uint8_t *>(buf_.data() + pos_);
  if (avail < 2)
    return Result::NeedMore;
  bool fin = p[0] & 0x80;
  if (p[0] & 0x70) {
    error = "frame with reserved bits set (no extension was negotiated)";
    return Result::Error;
  }
  uint8_t opcode = p[0] & 0x0F;
  if (p[1] & 0x80) {
    error = "masked frame from the server (RFC 6455 5.1)";
    return Result::Error;
  }
  uint64_t len = p[1] & 0x7F;
  size_t hdr = 2;
  if (len == 126) {
    if (avail < 4)
      return Result::NeedMore;
    len = (static_cast<uint64_t>(p[2]) << 8) | p[3];
    hdr = 4;
  } else if (len == 127) {
    if (avail < 10)
      return Result::NeedMore;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | p[2 + i];
    hdr = 10;
  }
  if ((opcode & 0x08) && (len > 125 || !fin)) {
    error = "invalid control frame (fragmented or longer than 125 bytes)";
    return Result::Error;
  }
  if (len > max_payload_) {
    error = "frame larger than " + std::to_string(max_payload_) + " bytes";
    return Result::Error;
  }
  if (avail < hdr + len)
    return Result::NeedMore;
  out.fin = fin;
  out.opcode = opcode;
  out.payload.assign(buf_.data() + pos_ + hdr, static_cast<size_t>(len));
  pos_ += hdr + static_cast<size_t>(len);
  return Result::Frame;
}

std::string accept_key(std::string_view key) {
  static const char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in(key);
  in += kGuid;
  GChecksum *sha = g_checksum_new(G_CHECKSUM_SHA1);
  g_checksum_update(sha, reinterpret_cast<const guchar *>(in.data()), static_cast<gssize>(in.size()));
  guint8 digest[20];
  gsize len = sizeof digest;
  g_checksum_get_digest(sha, digest, &len);
  g_checksum_free(sha);
  return pa::base64_encode(digest, len);
}

} // namespace emu::ws
