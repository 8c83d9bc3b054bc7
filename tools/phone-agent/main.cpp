/* phone-agent: the per-call server on the command line.
 *
 *   phone-agent serve --pipeline pipelines/echo.pipeline [options]
 *
 * A thin shell around PaServer (gst/phoneagent/pa-server.h): options,
 * logging, one line per call on stdout, and a graceful shutdown on
 * SIGINT/SIGTERM. docs/server.md is the manual.
 */
#include <gst/gst.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "config.h"
#include "pa-call.h"
#include "pa-server.h"
#include "twilio-protocol.h"

namespace {

struct Args {
  gchar *pipeline = nullptr;
  gchar *address = nullptr;
  gint port = 8080;
  gchar *public_url = nullptr;
  gchar *auth_token = nullptr;
  gchar *auth_token_file = nullptr;
  gchar *webhook_path = nullptr;
  gchar *metrics_path = nullptr;
  gchar *call_log = nullptr;
  gchar *stream_path = nullptr;
  gint max_calls = 100;
  gint grace_period = 30;
  gint media_threads = -1;
  gint media_wait = 10;
  gint media_fill = 50;
  gchar *log_level = nullptr;
  gchar *out_dir = nullptr;
  gchar *greeting = nullptr;
  gchar *busy_message = nullptr;
  gboolean check = FALSE;

  ~Args() {
    for (gchar *s : {pipeline, address, public_url, auth_token, auth_token_file, webhook_path, stream_path,
                     metrics_path, call_log, log_level, out_dir, greeting, busy_message})
      g_free(s);
  }
};

struct App {
  PaServer *server = nullptr;
  GMainLoop *loop = nullptr;
  guint grace_ms = 0;
  int signals_seen = 0;
  bool forced = false;
};

int fail(const std::string &msg, int code = 1) {
  fprintf(stderr, "phone-agent: %s\n", msg.c_str());
  return code;
}

/* --log-level: a GStreamer debug level for our categories (phoneagent*:
 * listener, call, server; twilio*: twiliosrc, twiliosink). */
bool apply_log_level(const char *level, std::string &error) {
  static const struct {
    const char *name;
    GstDebugLevel level;
  } names[] = {{"none", GST_LEVEL_NONE},   {"error", GST_LEVEL_ERROR}, {"warning", GST_LEVEL_WARNING},
               {"fixme", GST_LEVEL_FIXME}, {"info", GST_LEVEL_INFO},   {"debug", GST_LEVEL_DEBUG},
               {"log", GST_LEVEL_LOG},     {"trace", GST_LEVEL_TRACE}};
  GstDebugLevel lv = GST_LEVEL_WARNING;
  bool found = false;
  if (level) {
    for (const auto &n : names) {
      if (g_ascii_strcasecmp(level, n.name) == 0) {
        lv = n.level;
        found = true;
      }
    }
    if (!found && g_ascii_isdigit(level[0]) && level[1] == '\0') {
      lv = static_cast<GstDebugLevel>(level[0] - '0');
      found = true;
    }
    if (!found) {
      error = std::string("--log-level: unknown level '") + level +
              "' (none, error, warning, fixme, info, debug, log, trace or 0-9)";
      return false;
    }
  } else if (g_getenv("GST_DEBUG")) {
    return true; /* the environment decides */
  }
  gst_debug_set_threshold_for_name("phoneagent*", lv);
  gst_debug_set_threshold_for_name("twilio*", lv);
  return true;
}

/* libsoup logs a few debug lines per WebSocket frame (hundreds per call
 * every second). GLib formats each one before it finds out that nobody
 * listens; a handler that drops them at least skips the rest of the default
 * handler's work (about 6% of the main thread's instructions, measured with
 * callgrind on 3 echo calls). Kept when G_MESSAGES_DEBUG asks for them. */
void quiet_libsoup_debug() {
  const char *want = g_getenv("G_MESSAGES_DEBUG");
  if (want && (strstr(want, "all") || strstr(want, "libsoup")))
    return;
  g_log_set_handler("libsoup", G_LOG_LEVEL_DEBUG, [](const gchar *, GLogLevelFlags, const gchar *, gpointer) {},
                    nullptr);
}

/* ------------------------------------------------------------ call log */

void on_call_configure(PaServer *server, GstElement *, PaCall *call, gpointer) {
  pa::twilio::StartInfo si = pa_call_get_start_info(call);
  std::string from;
  for (const auto &[k, v] : si.custom_parameters)
    if (k == "from")
      from = v;
  GstStructure *s = pa_server_get_stats(server);
  guint active = 0;
  gst_structure_get_uint(s, "calls-active", &active);
  gst_structure_free(s);
  g_print("call %s started (from %s, stream %s; %u active)\n", si.call_sid.c_str(),
          from.empty() ? "?" : from.c_str(), si.stream_sid.c_str(), active);
}

void on_call_ended(PaServer *, GstElement *, PaCall *call, const gchar *reason, gpointer) {
  GstStructure *cs = pa_call_get_stats(call);
  guint64 in = 0, out = 0;
  gst_structure_get_uint64(cs, "media-bytes-received", &in);
  gst_structure_get_uint64(cs, "media-bytes-sent", &out);
  gst_structure_free(cs);
  g_print("call %s ended: %s (%.1f s of caller audio in, %.1f s out)\n", pa_call_get_name(call).c_str(), reason,
          static_cast<double>(in) / 8000.0, static_cast<double>(out) / 8000.0);
}

void on_drained(PaServer *, gpointer data) {
  auto *app = static_cast<App *>(data);
  g_print("phone-agent: no call left; exiting\n");
  g_main_loop_quit(app->loop);
}

gboolean on_signal(gpointer data) {
  auto *app = static_cast<App *>(data);
  app->signals_seen++;
  if (app->signals_seen == 1) {
    GstStructure *s = pa_server_get_stats(app->server);
    guint active = 0, connecting = 0, reserved = 0;
    gst_structure_get_uint(s, "calls-active", &active);
    gst_structure_get_uint(s, "calls-connecting", &connecting);
    gst_structure_get_uint(s, "calls-reserved", &reserved);
    gst_structure_free(s);
    g_print("phone-agent: shutting down: new callers hear the busy message; %u calls in progress may finish "
            "within %u s (signal again to end them now)\n",
            active + connecting + reserved, app->grace_ms / 1000);
    pa_server_drain(app->server, app->grace_ms);
  } else {
    g_print("phone-agent: ending every call now\n");
    app->forced = true;
    g_main_loop_quit(app->loop);
  }
  return G_SOURCE_CONTINUE;
}

bool read_token_file(const char *path, std::string &token, std::string &error) {
  gchar *text = nullptr;
  GError *err = nullptr;
  if (!g_file_get_contents(path, &text, nullptr, &err)) {
    error = std::string("--auth-token-file: ") + err->message;
    g_clear_error(&err);
    return false;
  }
  token = g_strstrip(text);
  g_free(text);
  return true;
}

int serve(int argc, char **argv) {
  Args a;
  GOptionEntry entries[] = {
      {"pipeline", 'p', 0, G_OPTION_ARG_FILENAME, &a.pipeline,
       "Launch template of each call's pipeline (gst-launch syntax, ${variables}; required)", "FILE"},
      {"address", 0, 0, G_OPTION_ARG_STRING, &a.address, "IP address to listen on (default 0.0.0.0)", "ADDR"},
      {"port", 0, 0, G_OPTION_ARG_INT, &a.port, "TCP port (default 8080; 0 picks a free one)", "PORT"},
      {"public-url", 0, 0, G_OPTION_ARG_STRING, &a.public_url,
       "The URL Twilio reaches this server at, e.g. https://agent.example.com (for the stream URL and signature "
       "checks)",
       "URL"},
      {"auth-token", 0, 0, G_OPTION_ARG_STRING, &a.auth_token,
       "Twilio auth token for signature checks (default: $TWILIO_AUTH_TOKEN; prefer the environment or "
       "--auth-token-file, a command line is visible to other users)",
       "TOKEN"},
      {"auth-token-file", 0, 0, G_OPTION_ARG_FILENAME, &a.auth_token_file, "Read the auth token from this file",
       "FILE"},
      {"webhook-path", 0, 0, G_OPTION_ARG_STRING, &a.webhook_path, "Voice webhook path (default /twilio/voice)",
       "PATH"},
      {"stream-path", 0, 0, G_OPTION_ARG_STRING, &a.stream_path, "Media Streams path (default /twilio/media)",
       "PATH"},
      {"metrics-path", 0, 0, G_OPTION_ARG_STRING, &a.metrics_path,
       "Path where GET answers the server's statistics in Prometheus' text format (default /metrics; \"\": none)",
       "PATH"},
      {"max-calls", 0, 0, G_OPTION_ARG_INT, &a.max_calls, "Most calls at once; more hear the busy message "
       "(default 100, 0: no limit)", "N"},
      {"grace-period", 0, 0, G_OPTION_ARG_INT, &a.grace_period,
       "On SIGINT/SIGTERM, seconds calls in progress may go on before they are ended (default 30)", "S"},
      {"media-threads", 0, 0, G_OPTION_ARG_INT, &a.media_threads,
       "Threads shared by all calls that read their sockets and push their audio into the pipelines (default -1: "
       "one per CPU; 0: a streaming thread per call)", "N"},
      {"media-wait", 0, 0, G_OPTION_ARG_INT, &a.media_wait,
       "Milliseconds a media thread lets frames (and an agent's model events) gather after a wake-up: fewer "
       "wake-ups, up to this much latency (default 10, 0-20)", "MS"},
      {"media-fill", 0, 0, G_OPTION_ARG_INT, &a.media_fill,
       "Percent of a CPU a media thread takes on before new calls go to the next one (default 50; 0: spread calls "
       "evenly over all media threads)", "PERCENT"},
      {"log-level", 0, 0, G_OPTION_ARG_STRING, &a.log_level,
       "GStreamer debug level of our categories: none, error, warning (default), info, debug, log, trace",
       "LEVEL"},
      {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &a.out_dir,
       "Directory for ${out_dir} / ${recordings_dir} (default .; created if missing)", "DIR"},
      {"call-log", 0, 0, G_OPTION_ARG_FILENAME, &a.call_log,
       "SQLite database recording each call, its transcript and events (default OUT-DIR/calls.sqlite; "
       "\"\": none)",
       "FILE"},
      {"greeting", 0, 0, G_OPTION_ARG_STRING, &a.greeting, "Text Twilio says before connecting the stream", "TEXT"},
      {"busy-message", 0, 0, G_OPTION_ARG_STRING, &a.busy_message,
       "What callers hear when the server is full or shutting down", "TEXT"},
      {"check", 0, 0, G_OPTION_ARG_NONE, &a.check, "Check the template and the options, then exit", nullptr},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  GOptionContext *oc = g_option_context_new("- run one pipeline per Twilio call");
  g_option_context_add_main_entries(oc, entries, nullptr);
  g_option_context_add_group(oc, gst_init_get_option_group());
  g_option_context_set_description(oc,
      "Point a Twilio number's voice webhook at PUBLIC-URL/twilio/voice. docs/server.md has the details.\n");
  GError *err = nullptr;
  bool parsed = g_option_context_parse(oc, &argc, &argv, &err);
  g_option_context_free(oc);
  if (!parsed) {
    int r = fail(std::string(err->message) + " (see phone-agent serve --help)", 2);
    g_clear_error(&err);
    return r;
  }
  if (argc > 1)
    return fail(std::string("unexpected argument '") + argv[1] + "' (see phone-agent serve --help)", 2);
  if (!a.pipeline)
    return fail("--pipeline FILE is required, e.g. --pipeline pipelines/echo.pipeline", 2);
  if (a.port < 0 || a.port > 65535)
    return fail("--port must be between 0 and 65535", 2);
  if (a.max_calls < 0)
    return fail("--max-calls must be >= 0", 2);
  if (a.media_threads < -1 || a.media_threads > 64)
    return fail("--media-threads must be between -1 and 64", 2);
  if (a.media_wait < 0 || a.media_wait > 20)
    return fail("--media-wait must be between 0 and 20 ms", 2);
  if (a.media_fill < 0 || a.media_fill > 100)
    return fail("--media-fill must be between 0 and 100 percent", 2);
  if (a.grace_period < 0 || a.grace_period > 24 * 3600)
    return fail("--grace-period must be between 0 and 86400 seconds", 2);
  std::string error;
  if (!apply_log_level(a.log_level, error))
    return fail(error, 2);

  std::string token;
  if (a.auth_token) {
    token = a.auth_token;
  } else if (a.auth_token_file) {
    if (!read_token_file(a.auth_token_file, token, error))
      return fail(error);
  } else if (const char *env = g_getenv("TWILIO_AUTH_TOKEN")) {
    token = env;
  }

  if (a.out_dir && g_mkdir_with_parents(a.out_dir, 0755) != 0)
    return fail(std::string("--out-dir ") + a.out_dir + ": " + g_strerror(errno));

  PaServer *server = pa_server_new();
  g_object_set(server, "port", a.port, "max-calls", static_cast<guint>(a.max_calls), "media-threads",
               a.media_threads, "media-wait", static_cast<guint>(a.media_wait), "media-fill",
               static_cast<guint>(a.media_fill), nullptr);
  if (!token.empty())
    g_object_set(server, "auth-token", token.c_str(), nullptr);
  if (a.address)
    g_object_set(server, "address", a.address, nullptr);
  if (a.public_url)
    g_object_set(server, "public-url", a.public_url, nullptr);
  if (a.webhook_path)
    g_object_set(server, "webhook-path", a.webhook_path, nullptr);
  if (a.metrics_path)
    g_object_set(server, "metrics-path", a.metrics_path, nullptr);
  if (a.stream_path)
    g_object_set(server, "stream-path", a.stream_path, nullptr);
  if (a.out_dir)
    g_object_set(server, "out-dir", a.out_dir, nullptr);
  std::string call_log = a.call_log ? a.call_log : std::string(a.out_dir ? a.out_dir : ".") + "/calls.sqlite";
  g_object_set(server, "call-log", call_log.c_str(), nullptr);
  if (a.greeting)
    g_object_set(server, "greeting", a.greeting, nullptr);
  if (a.busy_message)
    g_object_set(server, "busy-message", a.busy_message, nullptr);

  if (!pa_server_load_pipeline_template(server, a.pipeline, &err)) {
    std::string msg = err->message;
    GstElementFactory *f = gst_element_factory_find("twiliosrc");
    if (f)
      gst_object_unref(f);
    else if (msg.find("no element \"twilio") != std::string::npos)
      msg += " (the twilio plugin is not found: install it, or run from the build tree with "
             "GST_PLUGIN_PATH=BUILD/plugins/twilio)";
    g_clear_error(&err);
    g_object_unref(server);
    return fail(msg);
  }
  if (a.check) {
    gchar *tmpl = nullptr;
    g_object_get(server, "pipeline", &tmpl, nullptr);
    g_print("phone-agent: %s is a valid template: %s\n", a.pipeline, tmpl);
    g_free(tmpl);
    g_object_unref(server);
    return 0;
  }

  quiet_libsoup_debug();
  App app;
  app.server = server;
  app.loop = g_main_loop_new(nullptr, FALSE);
  app.grace_ms = static_cast<guint>(a.grace_period) * 1000;
  g_signal_connect(server, "call-configure", G_CALLBACK(on_call_configure), &app);
  g_signal_connect(server, "call-ended", G_CALLBACK(on_call_ended), &app);
  g_signal_connect(server, "drained", G_CALLBACK(on_drained), &app);

  if (!pa_server_start(server, &err)) {
    std::string msg = err->message;
    if (msg.find("already in use") != std::string::npos)
      msg += " (is another server running on this port? choose one with --port)";
    g_clear_error(&err);
    g_object_unref(server);
    g_main_loop_unref(app.loop);
    return fail(msg);
  }
  if (token.empty())
    g_printerr("phone-agent: WARNING: no Twilio auth token (--auth-token, --auth-token-file or "
               "TWILIO_AUTH_TOKEN): signatures are NOT checked, anyone who finds this server can place calls\n");
  gchar *webhook_path = nullptr;
  g_object_get(server, "webhook-path", &webhook_path, nullptr);
  g_print("phone-agent: listening on %s:%d (max %d calls, template %s)\n", a.address ? a.address : "0.0.0.0",
          pa_server_get_bound_port(server), a.max_calls, a.pipeline);
  if (a.public_url)
    g_print("phone-agent: Twilio voice webhook URL: %s%s\n", a.public_url, webhook_path);
  else
    g_print("phone-agent: set the number's voice webhook to https://YOUR-PUBLIC-HOST%s (and pass --public-url)\n",
            webhook_path);
  g_free(webhook_path);
  if (!call_log.empty())
    g_print("phone-agent: call log: %s\n", call_log.c_str());

  guint sigint = g_unix_signal_add(SIGINT, on_signal, &app);
  guint sigterm = g_unix_signal_add(SIGTERM, on_signal, &app);
  g_main_loop_run(app.loop);
  g_source_remove(sigint);
  g_source_remove(sigterm);

  pa_server_stop(server);
  GstStructure *stats = pa_server_get_stats(server);
  guint64 started = 0, failed = 0, turned_away = 0;
  gst_structure_get_uint64(stats, "calls-started", &started);
  gst_structure_get_uint64(stats, "calls-failed", &failed);
  gst_structure_get_uint64(stats, "calls-turned-away", &turned_away);
  gst_structure_free(stats);
  g_print("phone-agent: stopped (%" G_GUINT64_FORMAT " calls, %" G_GUINT64_FORMAT " failed, %" G_GUINT64_FORMAT
          " turned away)\n",
          started, failed, turned_away);
  g_object_unref(server);
  g_main_loop_unref(app.loop);
  return 0;
}

void usage(FILE *out) {
  fprintf(out,
          "Usage: phone-agent serve --pipeline FILE [OPTION...]\n"
          "       phone-agent serve --help\n"
          "       phone-agent --version\n"
          "\n"
          "Runs one GStreamer pipeline per Twilio phone call (docs/server.md).\n");
}

} // namespace

int main(int argc, char **argv) {
  /* a closed pipe (stdout to a dead reader) must not kill calls in progress */
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0); /* one call per line, also into a log file */
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("phone-agent %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "serve") != 0) {
    fprintf(stderr, "phone-agent: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }
  /* argv[1..] with "serve" as the program name for GOption */
  /* no gst_deinit(): after a stop that did not wait for a stuck pipeline, a
   * worker thread may still be stopping it */
  return serve(argc - 1, argv + 1);
}
