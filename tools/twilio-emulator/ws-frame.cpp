/* twilio-emulator: WebSocket frame codec */
#include "ws-frame.h"

#include <glib.h>

#include "pa-audio.h"
#include "pa-websocket.h"

namespace emu::ws {

/* The codec is the library's (gst/phoneagent/pa-websocket.h); this keeps the
 * client's side of it: masking what we send, refusing masked frames. */

void append_frame(std::string &out, uint8_t opcode, const void *data, size_t len, uint32_t mask_key) {
  const uint8_t mask[4] = {static_cast<uint8_t>(mask_key >> 24), static_cast<uint8_t>(mask_key >> 16),
                           static_cast<uint8_t>(mask_key >> 8), static_cast<uint8_t>(mask_key)};
  pa::ws::append_frame(out, static_cast<pa::ws::Opcode>(opcode & 0x0F),
                       std::string_view(static_cast<const char *>(data), len), mask);
}

FrameParser::Result FrameParser::next(Frame &out, std::string &error) {
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  /* refuse a masked frame from its second byte, before its mask arrives */
  if (buf_.size() - pos_ >= 2 && (static_cast<uint8_t>(buf_[pos_ + 1]) & 0x80)) {
    error = "masked frame from the server (RFC 6455 5.1)";
    return Result::Error;
  }
  pa::ws::FrameHeader h;
  switch (pa::ws::decode_header(reinterpret_cast<const uint8_t *>(buf_.data() + pos_), buf_.size() - pos_, h, error)) {
  case pa::ws::Decode::Incomplete:
    return Result::NeedMore;
  case pa::ws::Decode::Error:
    return Result::Error;
  case pa::ws::Decode::Ok:
    break;
  }
  if (h.payload_len > max_payload_) {
    error = "frame larger than " + std::to_string(max_payload_) + " bytes";
    return Result::Error;
  }
  if (buf_.size() - pos_ < h.header_len + h.payload_len)
    return Result::NeedMore;
  out.fin = h.fin;
  out.opcode = static_cast<uint8_t>(h.opcode);
  out.payload.assign(buf_.data() + pos_ + h.header_len, static_cast<size_t>(h.payload_len));
  pos_ += h.header_len + static_cast<size_t>(h.payload_len);
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
