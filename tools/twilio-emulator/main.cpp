/* twilio-emulator: plays Twilio's part of a phone call against a server's
 * voice webhook and Media Streams WebSocket. See docs/emulator.md. */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <sys/resource.h>

#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <string>

#include "options.h"
#include "phases.h"
#include "report.h"
#include "runner.h"
#include "script.h"
#include "specs.h"
#include "twilio-protocol.h"

namespace {

using emu::Options;

struct RawArgs {
  gchar *url = nullptr, *auth_token = nullptr, *account_sid = nullptr, *from = nullptr, *to = nullptr;
  gchar **params = nullptr;
  gint webhook_timeout_s = 15;
  gboolean plain_ws = FALSE;
  gchar *transport = nullptr;
  gchar *connect_to = nullptr;
  gchar *audio = nullptr, *replay = nullptr;
  gint replay_call = 0;
  gint tail_ms = 2000;
  gchar *dtmf = nullptr, *gaps = nullptr, *echo = nullptr;
  gint hangup_ms = -1;
  gchar **injects = nullptr;
  gint calls = 1;
  gint ramp_ms = 0;
  gint phases = 1;
  gboolean sequential = FALSE;
  gint max_duration_s = 120;
  gint poll_batch_us = -1;
  gdouble threshold_db = -40.0;
  gint turn_silence_ms = 500;
  gchar *out_dir = nullptr, *report = nullptr, *capture = nullptr;
  gboolean quiet = FALSE;

  ~RawArgs() {
    for (gchar *s : {url, auth_token, account_sid, from, to, connect_to, transport, audio, replay, dtmf, gaps, echo, out_dir, report,
                     capture})
      g_free(s);
    g_strfreev(params);
    g_strfreev(injects);
  }
};

bool fail(const std::string &message) {
  g_printerr("twilio-emulator: %s\n", message.c_str());
  return false;
}

bool parse_args(int &argc, char **&argv, Options &opt) {
  RawArgs a;
  std::string inject_help = "Bad input for server tests, KIND@MS, repeatable. KIND: " + emu::inject_kinds_list();
  const GOptionEntry entries[] = {
      {"url", 'u', 0, G_OPTION_ARG_STRING, &a.url, "Voice webhook URL (required)", "URL"},
      {"auth-token", 0, 0, G_OPTION_ARG_STRING, &a.auth_token,
       "Auth token for X-Twilio-Signature (default: $TWILIO_AUTH_TOKEN; unsigned when neither)", "TOKEN"},
      {"account-sid", 0, 0, G_OPTION_ARG_STRING, &a.account_sid, "AccountSid (default: random AC...)", "AC..."},
      {"from", 0, 0, G_OPTION_ARG_STRING, &a.from, "Caller number (default +14155551212)", "NUMBER"},
      {"to", 0, 0, G_OPTION_ARG_STRING, &a.to, "Called number (default +15005550006)", "NUMBER"},
      {"param", 0, 0, G_OPTION_ARG_STRING_ARRAY, &a.params, "Extra or replaced webhook parameter, repeatable",
       "NAME=VALUE"},
      {"webhook-timeout-s", 0, 0, G_OPTION_ARG_INT, &a.webhook_timeout_s, "Webhook timeout (default 15, as Twilio)",
       "S"},
      {"plain-ws", 0, 0, G_OPTION_ARG_NONE, &a.plain_ws, "Open the stream with ws:// even for non-loopback hosts",
       nullptr},
      {"transport", 0, 0, G_OPTION_ARG_STRING, &a.transport,
       "WebSocket client: libsoup (default) or raw (own framing, batched writes, less CPU per call)",
       "libsoup|raw"},
      {"connect-to", 0, 0, G_OPTION_ARG_STRING, &a.connect_to,
       "Open the stream at this address instead of the TwiML's host (signature and Host still use the TwiML URL)",
       "HOST:PORT"},
      {"audio", 'a', 0, G_OPTION_ARG_STRING, &a.audio,
       "What the caller says: a WAV file (PCM16/PCM8/u-law, any rate and channels) or synth:MS", "FILE|synth:MS"},
      {"replay", 0, 0, G_OPTION_ARG_STRING, &a.replay, "Replay what Twilio sent in a --capture file", "FILE"},
      {"replay-call", 0, 0, G_OPTION_ARG_INT, &a.replay_call, "Which call of the capture (default: the first)", "N"},
      {"tail-ms", 0, 0, G_OPTION_ARG_INT, &a.tail_ms, "Silence sent after the audio (default 2000)", "MS"},
      {"dtmf", 0, 0, G_OPTION_ARG_STRING, &a.dtmf, "DTMF digits at stream times, e.g. 1500:1,3000:#", "SPEC"},
      {"silence-gaps", 0, 0, G_OPTION_ARG_STRING, &a.gaps,
       "Send no media in these ranges (silence suppression), e.g. 2000-2400,5000-5600", "SPEC"},
      {"hangup-ms", 0, 0, G_OPTION_ARG_INT, &a.hangup_ms, "Hang up (stop + close) at this stream time", "MS"},
      {"echo", 0, 0, G_OPTION_ARG_STRING, &a.echo,
       "Line echo: what the caller hears comes back in the caller's audio, DB (<= 0) below it, DELAY_MS later "
       "(default 40, a multiple of 20)",
       "DB[:DELAY_MS]"},
      {"inject", 0, 0, G_OPTION_ARG_STRING_ARRAY, &a.injects, inject_help.c_str(), "KIND@MS"},
      {"calls", 'n', 0, G_OPTION_ARG_INT, &a.calls, "Number of calls (default 1)", "N"},
      {"ramp-ms", 0, 0, G_OPTION_ARG_INT, &a.ramp_ms, "Spread the call starts over this time (default 0)", "MS"},
      {"phases", 0, 0, G_OPTION_ARG_INT, &a.phases,
       "Spread the calls' 20 ms frames over N phases: call i (0-based) sends and plays at (i mod N) x 20/N ms "
       "within each frame, as independent calls do (default 1: every call at the same instant; N divides 20 ms: "
       "1, 2, 4, 5, 8, 10, 16 or 20)",
       "N"},
      {"sequential", 0, 0, G_OPTION_ARG_NONE, &a.sequential, "Run the calls one after another", nullptr},
      {"max-duration-s", 0, 0, G_OPTION_ARG_INT, &a.max_duration_s, "Stop everything after this (default 120)", "S"},
      {"poll-batch-us", 0, 0, G_OPTION_ARG_INT, &a.poll_batch_us,
       "Wake the main loop at most once per this many us, so one wake-up serves many sockets (default: 0 below "
       "50 calls, 1000 from 50 calls; never delays a tick)",
       "US"},
      {"speech-threshold-db", 0, 0, G_OPTION_ARG_DOUBLE, &a.threshold_db,
       "Frame level above which audio counts as speech, dBFS (default -40)", "DB"},
      {"turn-silence-ms", 0, 0, G_OPTION_ARG_INT, &a.turn_silence_ms,
       "Caller silence that ends a turn (default 500)", "MS"},
      {"out-dir", 'o', 0, G_OPTION_ARG_FILENAME, &a.out_dir,
       "Write call-<n>-heard.wav and call-<n>-received.ulaw here", "DIR"},
      {"report", 'r', 0, G_OPTION_ARG_FILENAME, &a.report, "Write the JSON report here", "FILE"},
      {"capture", 0, 0, G_OPTION_ARG_FILENAME, &a.capture, "Record every message (JSON lines)", "FILE"},
      {"quiet", 'q', 0, G_OPTION_ARG_NONE, &a.quiet, "Only the totals on stdout", nullptr},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr},
  };
  GOptionContext *ctx = g_option_context_new("- play Twilio's part of phone calls against a voice webhook");
  g_option_context_set_summary(ctx, "Posts the signed voice webhook, follows <Connect><Stream>, streams the caller's\n"
                                    "audio as Media Streams messages in real time, plays back what the server sends,\n"
                                    "and reports what happened. See docs/emulator.md.");
  g_option_context_add_main_entries(ctx, entries, nullptr);
  g_option_context_add_group(ctx, gst_init_get_option_group());
  GError *err = nullptr;
  bool parsed = g_option_context_parse(ctx, &argc, &argv, &err);
  g_option_context_free(ctx);
  if (!parsed) {
    fail(err->message);
    g_error_free(err);
    return false;
  }

  if (!a.url)
    return fail("--url is required (e.g. --url http://127.0.0.1:8080/twilio/voice)");
  opt.url = a.url;
  if (opt.url.rfind("http://", 0) != 0 && opt.url.rfind("https://", 0) != 0)
    return fail("--url must be an http:// or https:// URL, got " + opt.url);
  if (a.auth_token)
    opt.auth_token = a.auth_token;
  else if (const char *env = g_getenv("TWILIO_AUTH_TOKEN"))
    opt.auth_token = env;
  opt.account_sid = a.account_sid ? a.account_sid : pa::twilio::make_sid("AC");
  if (a.from)
    opt.from = a.from;
  if (a.to)
    opt.to = a.to;
  for (gchar **p = a.params; p && *p; p++) {
    const char *eq = strchr(*p, '=');
    if (!eq || eq == *p)
      return fail(std::string("--param: expected NAME=VALUE, got '") + *p + "'");
    opt.extra_params.emplace_back(std::string(*p, static_cast<size_t>(eq - *p)), std::string(eq + 1));
  }
  opt.webhook_timeout_s = a.webhook_timeout_s;
  opt.plain_ws = a.plain_ws;
  if (a.transport && g_strcmp0(a.transport, "raw") != 0 && g_strcmp0(a.transport, "libsoup") != 0)
    return fail(std::string("--transport: libsoup or raw, got '") + a.transport + "'");
  opt.raw_transport = g_strcmp0(a.transport, "raw") == 0;
  std::string error;
  if (a.connect_to && !emu::parse_host_port(a.connect_to, opt.connect_host, opt.connect_port, error))
    return fail("--connect-to: " + error);

  if (a.audio && a.replay)
    return fail("--audio and --replay are exclusive");
  if (!a.audio && !a.replay)
    return fail("say what the caller sends: --audio FILE.wav, --audio synth:MS or --replay CAPTURE");
  if (a.audio)
    opt.audio = a.audio;
  if (a.replay)
    opt.replay = a.replay;
  opt.replay_call = a.replay_call;
  opt.tail_ms = a.tail_ms;
  if ((a.dtmf && !emu::parse_dtmf_spec(a.dtmf, opt.dtmf, error)) ||
      (a.gaps && !emu::parse_ranges(a.gaps, opt.silence_gaps, error)))
    return fail(error);
  opt.hangup_ms = a.hangup_ms;
  if (a.echo && !emu::parse_echo(a.echo, opt.echo, error))
    return fail(error);
  for (gchar **p = a.injects; p && *p; p++) {
    emu::InjectSpec spec;
    if (!emu::parse_inject(*p, spec, error))
      return fail(error);
    opt.injects.push_back(spec);
  }
  if (a.calls < 1 || a.calls > 100000)
    return fail("--calls must be between 1 and 100000");
  if (a.ramp_ms < 0 || a.tail_ms < 0 || a.max_duration_s < 1 || a.webhook_timeout_s < 1 || a.turn_silence_ms < 20)
    return fail("--ramp-ms, --tail-ms must be >= 0, --max-duration-s, --webhook-timeout-s >= 1, "
                "--turn-silence-ms >= 20");
  if (!emu::PhaseSchedule::valid(a.phases))
    return fail("--phases must divide 20 ms into equal whole microseconds: " + emu::PhaseSchedule::valid_list() +
                " (got " + std::to_string(a.phases) + ")");
  opt.calls = a.calls;
  opt.phases = a.phases;
  opt.ramp_ms = a.ramp_ms;
  opt.sequential = a.sequential;
  opt.max_duration_s = a.max_duration_s;
  if (a.poll_batch_us > 20000)
    return fail("--poll-batch-us must be at most 20000");
  opt.poll_batch_us = a.poll_batch_us >= 0 ? a.poll_batch_us : (a.calls >= 50 ? 1000 : 0);
  opt.turn.threshold_db = a.threshold_db;
  opt.turn.end_silence_ms = a.turn_silence_ms;
  if (a.out_dir)
    opt.out_dir = a.out_dir;
  if (a.report)
    opt.report = a.report;
  if (a.capture)
    opt.capture = a.capture;
  opt.quiet = a.quiet;
  return true;
}

/* One connection per call plus the webhooks: make sure the fd limit allows it. */
void raise_fd_limit(int calls) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  rlim_t want = static_cast<rlim_t>(calls) * 3 + 64;
  if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = std::min(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < want)
    g_printerr("twilio-emulator: warning: the open-file limit (%llu) may be too low for %d calls\n",
               static_cast<unsigned long long>(rl.rlim_cur), calls);
}

/* Failures, grouped: one line per distinct error with how many calls had it. */
void print_failures(const std::vector<emu::CallReport> &reports) {
  std::map<std::string, int> counts;
  for (const auto &r : reports)
    if (!emu::outcome_ok(r.outcome))
      counts[r.outcome + ": " + (r.error.empty() ? "(no detail)" : r.error)]++;
  int shown = 0;
  for (const auto &[msg, n] : counts) {
    if (++shown > 10) {
      g_printerr("twilio-emulator: ... and %zu more distinct errors (see the report)\n", counts.size() - 10);
      break;
    }
    g_printerr("twilio-emulator: %d call(s) failed: %s\n", n, msg.c_str());
  }
}

} // namespace

int main(int argc, char **argv) {
  setlocale(LC_ALL, ""); /* GLib's messages in the user's encoding */
  Options opt;
  if (!parse_args(argc, argv, opt))
    return 2;
  gst_init(nullptr, nullptr); /* the WAV resampler uses GStreamer's audio library */

  std::string error;
  emu::Script script;
  if (!opt.replay.empty()) {
    if (!emu::make_replay_script(opt, script, error)) {
      g_printerr("twilio-emulator: %s\n", error.c_str());
      return 2;
    }
  } else {
    std::vector<uint8_t> audio;
    if (!emu::load_caller_audio(opt.audio, audio, error)) {
      g_printerr("twilio-emulator: %s\n", error.c_str());
      return 2;
    }
    script = emu::make_audio_script(std::move(audio), opt);
  }
  if (!opt.out_dir.empty() && g_mkdir_with_parents(opt.out_dir.c_str(), 0755) != 0) {
    g_printerr("twilio-emulator: cannot create --out-dir %s: %s\n", opt.out_dir.c_str(), g_strerror(errno));
    return 2;
  }
  raise_fd_limit(opt.calls);

  int64_t wall_start = g_get_monotonic_time();
  emu::RunInfo info;
  std::vector<emu::CallReport> reports;
  {
    emu::Runner runner(opt, script);
    if (!runner.init(error)) {
      g_printerr("twilio-emulator: %s\n", error.c_str());
      return 2;
    }
    runner.run();
    reports = runner.reports();
    info.timed_out = runner.timed_out();
  }
  rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  info.url = opt.url;
  info.source = script.source;
  info.calls = opt.calls;
  info.sequential = opt.sequential;
  info.ramp_ms = opt.ramp_ms;
  info.phases = opt.phases;
  info.wall_s = static_cast<double>(g_get_monotonic_time() - wall_start) / 1e6;
  info.cpu_user_s = static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
  info.cpu_sys_s = static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;
  info.max_rss_kb = ru.ru_maxrss;
  info.capture_path = opt.capture;

  emu::print_summary(stdout, reports, info, !opt.quiet && reports.size() <= 20);
  int rc = 0;
  if (!opt.report.empty()) {
    if (emu::write_report(opt.report, reports, info, error)) {
      printf("report: %s\n", opt.report.c_str());
    } else {
      g_printerr("twilio-emulator: %s\n", error.c_str());
      rc = 1;
    }
  }
  fflush(stdout);
  bool all_ok = true;
  for (const auto &r : reports)
    all_ok = all_ok && emu::outcome_ok(r.outcome);
  if (!all_ok) {
    print_failures(reports);
    rc = 1;
  }
  return rc;
}
