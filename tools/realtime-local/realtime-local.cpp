/* gst-phone-agent: realtime-local, the embedded local model as a standalone
 * OpenAI Realtime protocol server (GA and beta event names), for clients
 * other than the realtimemodel element.
 *
 *   realtime-local --port 8765 --agent agents/receptionist.json [--canned]
 *
 * Runs until SIGINT/SIGTERM, then prints its counters. See docs/local-model.md.
 */
#include <glib-unix.h>
#include <gst/gst.h>

#include <cstdio>

#include "local-engine.h"

namespace {
gboolean on_signal(gpointer loop) {
  g_main_loop_quit(static_cast<GMainLoop *>(loop));
  return G_SOURCE_REMOVE;
}
} // namespace

int main(int argc, char **argv) {
  gchar *address = nullptr, *agent = nullptr, *voice = nullptr;
  gint port = 8765;
  gboolean canned = FALSE;
  gdouble factor = 4.0;
  GOptionEntry entries[] = {
      {"address", 'a', 0, G_OPTION_ARG_STRING, &address, "Address to listen on (default 127.0.0.1)", "IP"},
      {"port", 'p', 0, G_OPTION_ARG_INT, &port, "Port to listen on, 0 for any free port (default 8765)", "PORT"},
      {"agent", 0, 0, G_OPTION_ARG_FILENAME, &agent, "Scripted agent JSON (default: built-in receptionist)", "FILE"},
      {"canned", 0, 0, G_OPTION_ARG_NONE, &canned, "Canned replies, no transcription or synthesis (relay benchmarks)",
       nullptr},
      {"voice", 0, 0, G_OPTION_ARG_STRING, &voice, "espeak-ng voice (default en-us)", "VOICE"},
      {"realtime-factor", 0, 0, G_OPTION_ARG_DOUBLE, &factor,
       "Stream reply audio this many times faster than real time, 0 for no pacing (default 4)", "X"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  GOptionContext *octx = g_option_context_new("- local OpenAI Realtime protocol server (test model)");
  g_option_context_set_summary(octx,
                               "A small Realtime server built from webrtc-audio-processing (VAD), pocketsphinx "
                               "(transcription), a scripted JSON agent and espeak-ng (voice).\nFor demos and tests: "
                               "it is not a substitute for a real model.");
  g_option_context_add_main_entries(octx, entries, nullptr);
  g_option_context_add_group(octx, gst_init_get_option_group());
  GError *err = nullptr;
  if (!g_option_context_parse(octx, &argc, &argv, &err)) {
    g_printerr("realtime-local: %s\n", err->message);
    g_error_free(err);
    g_option_context_free(octx);
    return 2;
  }
  g_option_context_free(octx);
  gst_init(&argc, &argv);

  pa::local::EngineConfig cfg;
  if (address)
    cfg.address = address;
  cfg.port = port;
  if (agent)
    cfg.agent_file = agent;
  if (voice)
    cfg.voice = voice;
  cfg.canned = canned;
  cfg.realtime_factor = factor;
  g_free(address);
  g_free(agent);
  g_free(voice);

  int rc = 0;
  {
    pa::local::Engine engine(cfg);
    if (!engine.start(&err)) {
      g_printerr("realtime-local: %s\n", err->message);
      g_error_free(err);
      return 1;
    }
    g_print("realtime-local: serving %s (%s)\n", engine.url().c_str(),
            cfg.canned ? "canned replies" : "pocketsphinx + scripted agent + espeak-ng");
    GMainLoop *loop = g_main_loop_new(nullptr, FALSE);
    g_unix_signal_add(SIGINT, on_signal, loop);
    g_unix_signal_add(SIGTERM, on_signal, loop);
    g_main_loop_run(loop);
    g_main_loop_unref(loop);
    engine.stop();
    GstStructure *s = engine.stats();
    gchar *t = gst_structure_to_string(s);
    g_print("realtime-local: %s\n", t);
    g_free(t);
    gst_structure_free(s);
  }
  gst_deinit();
  return rc;
}
