/* twilio-emulator: one call, the bad input it can inject (--inject) */
#include "call.h"
#include "capture.h"
#include "pa-audio.h"
#include "twilio-protocol.h"

namespace emu {

namespace tw = pa::twilio;

void Call::send_inject(InjectKind kind, int64_t t_ms) {
  const char *name = inject_name(kind);
  report_.injected.push_back(std::string(name) + "@" + std::to_string(t_ms));
  const std::string &sid = report_.stream_sid;
  static const uint8_t silence[pa::kTwilioFrameBytes] = {
#define F16 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
      F16, F16, F16, F16, F16, F16, F16, F16, F16, F16
#undef F16
  };
  switch (kind) {
  case InjectKind::MalformedJson:
    send_text("{\"event\":\"media\",\"streamSid\":\"" + sid + "\",\"media\":{\"payload\":", name);
    break;
  case InjectKind::Binary:
    transport_->send_binary(silence, sizeof silence);
    report_.messages_sent++;
    if (host_.capture())
      host_.capture()->write_line(
          CaptureWriter::binary_line(report_.index, stream_time_us(), "twilio", silence, sizeof silence, name));
    break;
  case InjectKind::Oversized: {
    /* a well-formed media message of exactly 128 KiB */
    constexpr size_t kTarget = 128 * 1024;
    std::string head = tw::build_inbound_media(++seq_, sid, last_chunk_, t_ms, nullptr, 0);
    size_t b64 = (kTarget - head.size()) / 4 * 4;
    std::vector<uint8_t> raw(b64 / 4 * 3, pa::kMulawSilence);
    std::string msg = tw::build_inbound_media(seq_, sid, last_chunk_, t_ms, raw.data(), raw.size());
    size_t pad = kTarget - msg.size(); /* whitespace inside the object keeps it valid JSON */
    msg.insert(msg.size() - 1, pad, ' ');
    send_text(msg, name);
    break;
  }
  case InjectKind::MediaBeforeStart:
  case InjectKind::WrongStreamSid: {
    std::string other = kind == InjectKind::WrongStreamSid ? tw::make_sid("MZ") : sid;
    send_text(tw::build_inbound_media(++seq_, other, last_chunk_, t_ms, silence, sizeof silence), name);
    break;
  }
  case InjectKind::InvalidBase64: {
    std::string msg = tw::build_inbound_media(++seq_, sid, last_chunk_, t_ms, silence, sizeof silence);
    size_t p = msg.find("\"payload\":\"");
    if (p != std::string::npos) {
      p += 11;
      msg[p] = '!';
      msg[p + 5] = '*';
    }
    send_text(msg, name);
    break;
  }
  case InjectKind::UnknownEvent:
    send_text("{\"event\":\"emulator-unknown\",\"sequenceNumber\":\"" + std::to_string(++seq_) +
                  "\",\"streamSid\":\"" + sid + "\"}",
              name);
    break;
  case InjectKind::AbruptClose:
    transport_->abort();
    break;
  case InjectKind::StopReading:
    reading_stopped_ = transport_->stop_reading();
    break;
  }
}

} // namespace emu
