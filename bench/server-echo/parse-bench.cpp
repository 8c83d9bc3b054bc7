/* server-echo-parse: what one inbound Twilio message costs to parse, with
 * parse_inbound() (hand-written fast path for media and mark) and with
 * parse_inbound_reference() (json-glib), on the messages an echo call gets
 * 50 times a second each: a 20 ms media frame and a mark echo.
 *
 * usage: server-echo-parse [ITERATIONS]   (default 200000)
 * Prints ns per message (CPU time of this thread). */
#include <glib.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../common/bench-timing.h"
#include "twilio-protocol.h"

namespace {

/* one parse of @msg, per call (CPU ns) */
template <typename F> double ns_per_call(const std::string &msg, long iterations, F parse) {
  pa::twilio::InboundMessage m;
  std::string err;
  return bench::ns_per_run(iterations, [&] {
    if (parse(msg, m, err) == pa::twilio::ParseResult::Ok)
      return true;
    fprintf(stderr, "parse failed: %s\n", err.c_str());
    return false;
  });
}

} // namespace

int main(int argc, char **argv) {
  long iterations = argc > 1 ? atol(argv[1]) : 200000;
  std::vector<uint8_t> frame(160);
  for (size_t i = 0; i < frame.size(); i++)
    frame[i] = static_cast<uint8_t>(i * 37);
  std::string media = pa::twilio::build_inbound_media(1234, "MZ18ad3ab5a668481ce02b83e7395059f0", 1200, 24000,
                                                      frame.data(), frame.size());
  std::string mark = pa::twilio::build_mark_echo(1235, "MZ18ad3ab5a668481ce02b83e7395059f0", "item:24000:g0:m1200");
  printf("%-8s %8s %12s %12s\n", "message", "bytes", "fast ns", "json-glib ns");
  for (const auto &[name, msg] : {std::pair<const char *, std::string>{"media", media}, {"mark", mark}}) {
    double fast = ns_per_call(msg, iterations, pa::twilio::parse_inbound);
    double ref = ns_per_call(msg, iterations / 4, pa::twilio::parse_inbound_reference);
    printf("%-8s %8zu %12.0f %12.0f\n", name, msg.size(), fast, ref);
  }
  return 0;
}
