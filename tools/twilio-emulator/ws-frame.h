/* twilio-emulator: a minimal RFC 6455 frame codec for the raw client
 * transport (the one that can stop reading). Client side only: frames we
 * write are masked, frames we read must not be. */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace emu::ws {

enum Opcode : uint8_t { Continuation = 0x0, Text = 0x1, Binary = 0x2, Close = 0x8, Ping = 0x9, Pong = 0xA };

/* Appends one final, masked frame to @out. */
void append_frame(std::string &out, uint8_t opcode, const void *data, size_t len, uint32_t mask_key);

struct Frame {
  bool fin = true;
  uint8_t opcode = 0;
  std::string payload;
};

/* Incremental parser of server frames. */
class FrameParser {
public:
  enum class Result { NeedMore, Frame, Error };
  explicit FrameParser(uint64_t max_payload = 64u << 20) : max_payload_(max_payload) {}
  void feed(const char *data, size_t n) { buf_.append(data, n); }
  Result next(Frame &out, std::string &error);

private:
  std::string buf_;
  size_t pos_ = 0;
  uint64_t max_payload_;
};

/* Sec-WebSocket-Accept for @key: base64(SHA-1(key + RFC 6455 GUID)). */
std::string accept_key(std::string_view key);

} // namespace emu::ws
