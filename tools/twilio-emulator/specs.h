/* twilio-emulator: parsers for the small command-line specs
 * (--dtmf, --silence-gaps, --inject, --connect-to). Pure functions. */
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace emu {

/* --dtmf "1500:1,3000:#" */
struct DtmfSpec {
  int64_t at_ms = 0;
  std::string digit;
};
bool parse_dtmf_spec(std::string_view spec, std::vector<DtmfSpec> &out, std::string &error);

/* --silence-gaps "2000-2400,5000-5600": half-open [begin, end) in ms. */
struct Range {
  int64_t begin_ms = 0;
  int64_t end_ms = 0;
  bool contains(int64_t ms) const { return ms >= begin_ms && ms < end_ms; }
};
bool parse_ranges(std::string_view spec, std::vector<Range> &out, std::string &error);

/* --inject KIND@MS */
enum class InjectKind {
  MalformedJson,
  Binary,
  Oversized,
  MediaBeforeStart,
  WrongStreamSid,
  InvalidBase64,
  UnknownEvent,
  AbruptClose,
  StopReading,
};
struct InjectSpec {
  InjectKind kind = InjectKind::MalformedJson;
  int64_t at_ms = 0;
};
const char *inject_name(InjectKind k);
bool parse_inject(std::string_view spec, InjectSpec &out, std::string &error);
/* The comma-separated list of kinds, for help texts. */
std::string inject_kinds_list();

/* --echo: "DB" or "DB:DELAY_MS" (DB <= 0, the echo's gain relative to
 * what was played; DELAY_MS 0..1000, rounded down to a multiple of 20). */
struct EchoSpec {
  bool enabled = false;
  double gain_db = -20.0;
  int64_t delay_ms = 40;
};
bool parse_echo(std::string_view spec, EchoSpec &out, std::string &error);

/* "host:port", "[::1]:8080". */
bool parse_host_port(std::string_view spec, std::string &host, int &port, std::string &error);

/* 127.0.0.0/8, ::1, "localhost" and "*.localhost". */
bool is_loopback_host(std::string_view host);

} // namespace emu
