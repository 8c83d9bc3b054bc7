/* gst-phone-agent
 * The embedded local model: a WebSocket server that speaks the OpenAI
 * Realtime protocol (GA and beta event names) with Debian-packaged parts:
 * webrtc-audio-processing's VAD for turn taking, pocketsphinx for
 * transcription, a scripted agent (JSON intents, replies, tool calls) as the
 * brain and espeak-ng as the voice. For demos, tests and offline first tries;
 * it is not a substitute for a real model. See docs/local-model.md.
 */
#pragma once

#include <gst/gst.h>

#include <memory>
#include <string>

#if defined(BUILDING_PA_LOCALMODEL)
#define PA_LOCAL_API __attribute__((visibility("default")))
#else
#define PA_LOCAL_API
#endif

namespace pa::local {

struct EngineConfig {
  std::string address = "127.0.0.1";
  int port = 0;                 /* 0: pick a free port */
  std::string agent_file;       /* scripted agent JSON; empty: built-in receptionist example */
  bool canned = false;          /* canned mode: no STT/TTS, pre-rendered replies (for relay benchmarks) */
  std::string voice = "en-us";  /* espeak-ng voice */
  double realtime_factor = 4.0; /* audio deltas streamed this many times faster than real time; <= 0: no pacing */
};

class PA_LOCAL_API Engine {
public:
  explicit Engine(EngineConfig config);
  /* Stops the engine if it still runs. */
  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  /* Loads the agent, checks the speech models and binds the listening
   * socket, then serves on its own thread with its own GMainContext. Returns
   * FALSE with @error (GST_RESOURCE_ERROR or GST_LIBRARY_ERROR domain) when
   * the agent file, the models or the address are unusable. */
  bool start(GError **error);
  /* ws://ADDRESS:PORT/v1/realtime once started, "" before. */
  std::string url() const;
  /* Closes every session (WebSocket close 1001), stops the server thread and
   * the speech workers (waits for a transcription in progress). Idempotent. */
  void stop();
  /* A "local-model-stats" structure (counters, see docs/local-model.md).
   * The caller owns it. Thread-safe. */
  GstStructure *stats() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace pa::local
