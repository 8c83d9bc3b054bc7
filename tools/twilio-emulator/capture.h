/* twilio-emulator: --capture (JSON lines) and reading it back for --replay.
 *
 * One JSON object per line:
 *   {"call":1,"t_ms":20.004,"from":"twilio","type":"text","data":"{\"event\":\"media\",...}"}
 *   {"call":1,"t_ms":41.2,"from":"server","type":"binary","data_b64":"..."}
 *   {"call":1,"t_ms":60.0,"from":"twilio","type":"text","inject":"wrong-stream-sid","data":"..."}
 *   {"call":1,"t_ms":9000.1,"from":"server","type":"close","code":1000,"reason":""}
 *   {"call":1,"t_ms":-35.2,"from":"twilio","type":"webhook","url":"...","params":{...}}
 *   {"call":1,"t_ms":-20.1,"from":"server","type":"twiml","status":200,"body":"..."}
 * t_ms is relative to the stream start of that call (negative before it;
 * for a call without a stream, relative to the webhook POST).
 */
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "twilio-protocol.h"

namespace emu {

class CaptureWriter {
public:
  CaptureWriter() = default;
  ~CaptureWriter();
  CaptureWriter(const CaptureWriter &) = delete;
  CaptureWriter &operator=(const CaptureWriter &) = delete;

  bool open(const std::string &path, std::string &error);
  bool is_open() const { return file_ != nullptr; }
  /* Writes one line (without the trailing newline) as built by the helpers below. */
  void write_line(const std::string &line);
  void close();

  static std::string text_line(int call, int64_t t_us, const char *from, std::string_view text,
                               const char *inject);
  static std::string binary_line(int call, int64_t t_us, const char *from, const uint8_t *data, size_t len,
                                 const char *inject);
  static std::string close_line(int call, int64_t t_us, const char *from, int code, std::string_view reason);
  static std::string webhook_line(int call, int64_t t_us, std::string_view url, const pa::twilio::Params &params);
  static std::string twiml_line(int call, int64_t t_us, int status, std::string_view body);

private:
  FILE *file_ = nullptr;
};

/* One message Twilio sent, read back from a capture. */
struct CapturedMessage {
  int64_t t_us = 0;
  std::string text;
};

/* Reads what Twilio sent in call @call (0: the first call found) of a
 * capture: text frames from "twilio" that are not injections. */
bool read_capture(const std::string &path, int call, std::vector<CapturedMessage> &out, std::string &error);

} // namespace emu
