/* realtime-relay-parse: what one model event costs to parse, with
 * parse_server_event() (a scanner of its own for flat events) and with
 * parse_server_event_reference() (json-glib), on the events a reply is made
 * of: audio deltas of 100 ms of μ-law, transcript deltas, speech started,
 * and a nested response.done (the fast path for nested events since
 * session 8; json-glib before).
 *
 * usage: realtime-relay-parse [ITERATIONS [EVENT]]   (default 100000, every event)
 * Prints ns per event (CPU time of this thread). With EVENT (a name from
 * the table) it parses only that one, ITERATIONS times, with the fast path
 * only, and prints nothing: for counting instructions under callgrind
 * (parse-callgrind.sh), which the VM's noise does not move. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../common/bench-timing.h"
#include "pa-audio.h"
#include "rt-protocol.h"

namespace {

/* one parse of @text, per call (CPU ns) */
template <typename F> double ns_per_call(const std::string &text, long iterations, F parse) {
  pa::rt::ServerEvent ev;
  std::string err;
  return bench::ns_per_run(iterations, [&] {
    if (parse(text.data(), text.size(), ev, err) == pa::rt::ParseStatus::Ok)
      return true;
    fprintf(stderr, "parse failed: %s\n", err.c_str());
    return false;
  });
}

} // namespace

int main(int argc, char **argv) {
  long iterations = argc > 1 ? atol(argv[1]) : 100000;
  std::vector<uint8_t> audio(800); /* 100 ms of μ-law, as the local model sends */
  for (size_t i = 0; i < audio.size(); i++)
    audio[i] = static_cast<uint8_t>(i * 37);
  const std::string ids = R"("event_id":"event_B7hYf2kQ","response_id":"resp_C1x9AbQ","item_id":"item_C1x9AcZ")";
  const std::pair<const char *, std::string> events[] = {
      {"audio.delta", R"({"type":"response.output_audio.delta",)" + ids +
                          R"(,"output_index":0,"content_index":0,"delta":")" +
                          pa::base64_encode(audio.data(), audio.size()) + "\"}"},
      {"transcript.delta",
       R"({"type":"response.output_audio_transcript.delta",)" + ids + R"(,"output_index":0,"content_index":0,"delta":" tomorrow"})"},
      {"speech_started", R"({"type":"input_audio_buffer.speech_started","event_id":"event_B7hYf2kR","audio_start_ms":1240,"item_id":"item_C1x9AdA"})"},
      {"response.done",
       R"({"type":"response.done","event_id":"event_B7hYf2kS","response":{"id":"resp_C1x9AbQ","status":"completed","usage":{"total_tokens":42,"input_tokens":30,"output_tokens":12},"output":[{"id":"item_C1x9AcZ","type":"message","role":"assistant","status":"completed","content":[{"type":"output_audio","transcript":"I have tomorrow at 9:00 AM."}]}]}})"},
  };
  if (argc > 2) {
    for (const auto &[name, text] : events) {
      if (strcmp(name, argv[2]) != 0)
        continue;
      pa::rt::ServerEvent ev;
      std::string err;
      for (long i = 0; i < iterations; i++)
        if (pa::rt::parse_server_event(text.data(), text.size(), ev, err) != pa::rt::ParseStatus::Ok)
          return 1;
      return 0;
    }
    fprintf(stderr, "realtime-relay-parse: no event %s\n", argv[2]);
    return 2;
  }
  printf("%-18s %8s %12s %12s\n", "event", "bytes", "parse ns", "json-glib ns");
  for (const auto &[name, text] : events) {
    double fast = ns_per_call(text, iterations, pa::rt::parse_server_event);
    double ref = ns_per_call(text, iterations / 4, pa::rt::parse_server_event_reference);
    printf("%-18s %8zu %12.0f %12.0f\n", name, text.size(), fast, ref);
  }
  return 0;
}
