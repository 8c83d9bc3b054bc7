/* gst-phone-agent: the per-call server end to end.
 *
 * PaServer runs in this process on a GMainContext of the test's own; the
 * twilio-emulator plays the callers as subprocesses. The test waits on
 * events (signals, subprocess exits, the server's stats) by iterating that
 * context with a deadline, never by sleeping. Everything is 127.0.0.1. */
#include <gst/gst.h>
#include <libsoup/soup.h>

#include <cmath>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "../common/pa-e2e.h"
#include "../common/pa-calllog-query.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "pa-server.h"
#include "pa-websocket.h"
#ifdef HAVE_LOCALMODEL
#include "local-engine.h"
#endif
#include "twilio-protocol.h"
#include "twilio-signature.h"

using namespace pa_e2e;

namespace {

const char *kEcho = "twiliosrc ! twiliosink";

/* Caller audio whose bytes we know, different for every @index: a tone
 * sweep at its own pitch plus a per-call noise pattern, as a μ-law WAV
 * (0x7F, the negative-zero alias the emulator would turn into 0xFF, is
 * avoided). */
std::vector<uint8_t> write_caller(const std::string &path, int ms, int index) {
  std::vector<uint8_t> u(static_cast<size_t>(ms) * 8);
  uint32_t lcg = 0x9E3779B9u * static_cast<uint32_t>(index + 1);
  for (size_t i = 0; i < u.size(); i++) {
    double t = static_cast<double>(i) / 8000;
    double f = 220 + 31 * index + 120 * sin(2 * M_PI * 0.9 * t);
    lcg = lcg * 1664525u + 1013904223u;
    double noise = static_cast<double>(static_cast<int>(lcg >> 20) - 2048);
    uint8_t b = pa::mulaw_encode(static_cast<int16_t>(8000 * sin(2 * M_PI * f * t) + noise));
    u[i] = b == 0x7F ? 0xFF : b;
  }
  std::string err;
  fail_unless(pa::wav_write_mulaw(path, u.data(), u.size(), err), "%s", err.c_str());
  return u;
}

gint64 now_ms() { return g_get_monotonic_time() / 1000; }

int count_dir(const char *path) {
  GDir *d = g_dir_open(path, 0, nullptr);
  int n = 0;
  while (d && g_dir_read_name(d))
    n++;
  if (d)
    g_dir_close(d);
  return n;
}
int count_threads() { return count_dir("/proc/self/task"); }
int count_fds() { return count_dir("/proc/self/fd") - 1; /* the GDir's own */ }
/* What the open file descriptors are, for a failure message. */
std::string describe_fds() {
  std::map<std::string, int> kinds;
  GDir *d = g_dir_open("/proc/self/fd", 0, nullptr);
  while (const char *n = d ? g_dir_read_name(d) : nullptr) {
    gchar *target = g_file_read_link((std::string("/proc/self/fd/") + n).c_str(), nullptr);
    std::string t = target ? target : "?";
    g_free(target);
    size_t colon = t.find(":[");
    kinds[colon == std::string::npos ? t : t.substr(0, colon)]++;
  }
  if (d)
    g_dir_close(d);
  std::string out;
  for (auto &[k, v] : kinds)
    out += k + " x" + std::to_string(v) + "; ";
  return out;
}

/* A subprocess whose exit is reported on the thread-default context. */
class Process {
public:
  Process(const std::vector<std::string> &argv, const std::string &log_path) : state_(std::make_shared<State>()) {
    std::vector<const gchar *> args;
    for (auto &a : argv)
      args.push_back(a.c_str());
    args.push_back(nullptr);
    GSubprocessLauncher *l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_subprocess_launcher_set_stdout_file_path(l, log_path.c_str());
    GError *err = nullptr;
    proc_ = g_subprocess_launcher_spawnv(l, args.data(), &err);
    g_object_unref(l);
    fail_unless(proc_ != nullptr, "cannot run %s: %s", argv[0].c_str(), err ? err->message : "?");
    g_subprocess_wait_async(proc_, nullptr, on_exit, new std::shared_ptr<State>(state_));
    log_ = log_path;
  }
  ~Process() {
    if (!state_->done) {
      g_subprocess_force_exit(proc_);
      g_subprocess_wait(proc_, nullptr, nullptr);
    }
    g_object_unref(proc_);
  }
  bool done() const { return state_->done; }
  int status() const { return state_->status; }
  std::string output() const {
    gchar *c = nullptr;
    g_file_get_contents(log_.c_str(), &c, nullptr, nullptr);
    std::string s = c ? c : "";
    g_free(c);
    return s;
  }

private:
  struct State {
    bool done = false;
    int status = -1;
  };
  static void on_exit(GObject *source, GAsyncResult *res, gpointer data) {
    auto *sp = static_cast<std::shared_ptr<State> *>(data);
    GSubprocess *p = G_SUBPROCESS(source);
    if (g_subprocess_wait_finish(p, res, nullptr)) {
      (*sp)->done = true;
      (*sp)->status = g_subprocess_get_if_exited(p) ? g_subprocess_get_exit_status(p) : -1;
    }
    delete sp;
  }
  GSubprocess *proc_ = nullptr;
  std::shared_ptr<State> state_;
  std::string log_;
};

struct Http {
  guint status = 0;
  std::string body;
  std::string content_type;
};


/* A Fixture's set-up: a call log at @path. */
std::function<void(PaServer *)> call_log_at(const std::string &path) {
  return [path](PaServer *s) { g_object_set(s, "call-log", path.c_str(), nullptr); };
}

/* The server in this process, on a context of its own. */
struct Fixture {
  GMainContext *ctx = nullptr;
  PaServer *server = nullptr;
  SoupSession *session = nullptr;
  int port = 0;
  int configured = 0;
  std::vector<std::string> ended_reasons;
  bool drained = false;

  explicit Fixture(const char *tmpl, guint max_calls = 50, std::function<void(PaServer *)> setup = nullptr) {
    ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    server = pa_server_new();
    g_object_set(server, "address", "127.0.0.1", "port", 0, "max-calls", max_calls, nullptr);
    GError *err = nullptr;
    fail_unless(pa_server_set_pipeline_template(server, tmpl, &err), "%s", err ? err->message : "");
    g_signal_connect(server, "call-configure", G_CALLBACK(+[](PaServer *, GstElement *, PaCall *, gpointer d) {
                       static_cast<Fixture *>(d)->configured++;
                     }),
                     this);
    g_signal_connect(server, "call-ended",
                     G_CALLBACK(+[](PaServer *, GstElement *, PaCall *, const gchar *reason, gpointer d) {
                       static_cast<Fixture *>(d)->ended_reasons.emplace_back(reason);
                     }),
                     this);
    g_signal_connect(server, "drained", G_CALLBACK(+[](PaServer *, gpointer d) {
                       static_cast<Fixture *>(d)->drained = true;
                     }),
                     this);
    if (setup)
      setup(server);
    fail_unless(pa_server_start(server, &err), "%s", err ? err->message : "");
    port = pa_server_get_bound_port(server);
    fail_unless(port > 0);
    session = soup_session_new();
  }
  ~Fixture() {
    g_object_unref(session);
    pa_server_stop(server);
    g_object_unref(server);
    /* let what is left (idle callbacks, closed connections) run */
    while (g_main_context_iteration(ctx, FALSE)) {
    }
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
  }

  std::string url(const std::string &path = "/twilio/voice") const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  /* Iterates the server's context until @done or @timeout_ms passed. */
  bool run_until(const std::function<bool()> &done, int timeout_ms) {
    gint64 deadline = now_ms() + timeout_ms;
    /* wakes the blocking iteration up so that the deadline is seen */
    GSource *tick = g_timeout_source_new(20);
    g_source_set_callback(tick, [](gpointer) -> gboolean { return G_SOURCE_CONTINUE; }, nullptr, nullptr);
    g_source_attach(tick, ctx);
    bool ok;
    while (!(ok = done()) && now_ms() < deadline)
      g_main_context_iteration(ctx, TRUE);
    g_source_destroy(tick);
    g_source_unref(tick);
    return ok;
  }

  guint64 stat(const char *name) {
    GstStructure *s = pa_server_get_stats(server);
    const GValue *v = gst_structure_get_value(s, name);
    fail_unless(v != nullptr, "no stat %s", name);
    guint64 r = G_VALUE_HOLDS_UINT64(v) ? g_value_get_uint64(v)
                : G_VALUE_HOLDS_UINT(v) ? g_value_get_uint(v)
                                        : static_cast<guint64>(g_value_get_int(v));
    gst_structure_free(s);
    return r;
  }

  /* No call in any state, and every pipeline and call object finalized. */
  bool idle() {
    return stat("calls-active") == 0 && stat("calls-connecting") == 0 && stat("calls-closing") == 0 &&
           stat("pipelines-live") == 0 && stat("call-objects-live") == 0;
  }
  void wait_idle(int timeout_ms = 15000) {
    fail_unless(run_until([this] { return idle(); }, timeout_ms),
                "the server did not become idle: %" G_GUINT64_FORMAT " active, %" G_GUINT64_FORMAT
                " connecting, %" G_GUINT64_FORMAT " closing, %" G_GUINT64_FORMAT " pipelines, %" G_GUINT64_FORMAT
                " call objects",
                stat("calls-active"), stat("calls-connecting"), stat("calls-closing"), stat("pipelines-live"),
                stat("call-objects-live"));
  }

  /* Until the call log has written what it was given (its own thread). */
  void wait_call_log() {
    fail_unless(run_until([this] { return stat("call-log-pending") == 0; }, 10000), "the call log is not written");
  }

  /* @each runs at every poll while waiting (e.g. to sample stats). */
  void wait_processes(std::vector<std::unique_ptr<Process>> &procs, int timeout_ms,
                      const std::function<void()> &each = nullptr) {
    bool ok = run_until(
        [&] {
          if (each)
            each();
          for (auto &p : procs)
            if (!p->done())
              return false;
          return true;
        },
        timeout_ms);
    if (!ok)
      for (auto &p : procs)
        if (!p->done())
          fail("a subprocess did not finish in %d ms:\n%s", timeout_ms, p->output().c_str());
  }

  /* An HTTP request from this thread (async: the server runs here too). */
  Http http(const char *method, const std::string &u, const std::string &form = "") {
    SoupMessage *msg = soup_message_new(method, u.c_str());
    if (!form.empty()) {
      GBytes *b = g_bytes_new(form.data(), form.size());
      soup_message_set_request_body_from_bytes(msg, "application/x-www-form-urlencoded", b);
      g_bytes_unref(b);
    }
    struct Pending {
      bool done = false;
      GBytes *body = nullptr;
    } pending;
    soup_session_send_and_read_async(session, msg, G_PRIORITY_DEFAULT, nullptr,
        [](GObject *src, GAsyncResult *res, gpointer d) {
          auto *pd = static_cast<Pending *>(d);
          pd->body = soup_session_send_and_read_finish(SOUP_SESSION(src), res, nullptr);
          pd->done = true;
        },
        &pending);
    fail_unless(run_until([&] { return pending.done; }, 10000), "no HTTP answer from %s", u.c_str());
    Http r;
    r.status = soup_message_get_status(msg);
    if (const char *ct = soup_message_headers_get_one(soup_message_get_response_headers(msg), "Content-Type"))
      r.content_type = ct;
    if (pending.body) {
      r.body.assign(static_cast<const char *>(g_bytes_get_data(pending.body, nullptr)),
                    g_bytes_get_size(pending.body));
      g_bytes_unref(pending.body);
    }
    g_object_unref(msg);
    return r;
  }

  Http webhook(const std::string &call_sid, const std::string &query = "") {
    pa::twilio::Params form = {{"CallSid", call_sid}, {"From", "+14155551212"}, {"To", "+15005550006"},
                               {"AccountSid", "AC0123"}, {"CallStatus", "ringing"}};
    return http("POST", url("/twilio/voice") + query, pa::twilio::form_encode(form));
  }

  /* Starts the emulator among @procs (for wait_processes()), its output in @log. */
  void place_call(std::vector<std::unique_ptr<Process>> &procs, const std::string &log,
                  const std::vector<std::string> &extra, const std::string &query = "") const {
    procs.push_back(std::make_unique<Process>(emulator(extra, query), log));
  }

  std::vector<std::string> emulator(const std::vector<std::string> &extra, const std::string &query = "") const {
    std::vector<std::string> argv = {emulator_path(), "--url", url("/twilio/voice") + query, "--quiet",
                                     "--max-duration-s", "60"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
};

/* A WebSocket client in this process (for what the emulator never does). */
struct WsClient {
  SoupWebsocketConnection *ws = nullptr;
  bool connected = false, failed = false, closed = false;
  gushort close_code = 0;

  WsClient(Fixture &f) {
    SoupMessage *msg = soup_message_new("GET", f.url("/twilio/media").c_str());
    soup_session_websocket_connect_async(f.session, msg, nullptr, nullptr, G_PRIORITY_DEFAULT, nullptr,
        [](GObject *src, GAsyncResult *res, gpointer d) {
          auto *self = static_cast<WsClient *>(d);
          self->ws = soup_session_websocket_connect_finish(SOUP_SESSION(src), res, nullptr);
          if (!self->ws) {
            self->failed = true;
            return;
          }
          self->connected = true;
          g_signal_connect(self->ws, "closed", G_CALLBACK(+[](SoupWebsocketConnection *w, gpointer d2) {
                             auto *s2 = static_cast<WsClient *>(d2);
                             s2->closed = true;
                             s2->close_code = soup_websocket_connection_get_close_code(w);
                           }),
                           self);
        },
        this);
    g_object_unref(msg);
    fail_unless(f.run_until([this] { return connected || failed; }, 5000), "no WebSocket answer");
  }
  ~WsClient() {
    if (ws) {
      g_signal_handlers_disconnect_by_data(ws, this);
      g_object_unref(ws);
    }
  }
  void send(const std::string &text) { soup_websocket_connection_send_text(ws, text.c_str()); }
};

void check_echo(const std::string &dir, const std::vector<uint8_t> &sent, const char *what) {
  Report r(dir + "/report.json");
  assert_str(r.outcome(0), "completed");
  std::vector<uint8_t> received = read_bytes(dir + "/call-1-received.ulaw");
  fail_unless(received.size() >= sent.size(), "%s: only %zu of %zu bytes came back", what, received.size(),
              sent.size());
  for (size_t i = 0; i < sent.size(); i++)
    fail_unless(received[i] == sent[i], "%s: byte %zu differs: sent 0x%02x, got 0x%02x", what, i, sent[i],
                received[i]);
}

/* Buffers leaving the calls' twiliosrc, and how many left on a media thread
 * (pushed by the thread that read the socket) rather than a streaming
 * thread of the call's own. */
struct PushCount {
  std::atomic<int> buffers{0}, on_media_thread{0};
  void watch(PaServer *server) {
    g_signal_connect(server, "call-configure", G_CALLBACK(+[](PaServer *, GstElement *pipeline, PaCall *, gpointer d) {
                       GstElement *src = nullptr;
                       GstIterator *it = gst_bin_iterate_sources(GST_BIN(pipeline));
                       GValue v = G_VALUE_INIT;
                       if (gst_iterator_next(it, &v) == GST_ITERATOR_OK)
                         src = GST_ELEMENT(g_value_dup_object(&v));
                       g_value_unset(&v);
                       gst_iterator_free(it);
                       fail_unless(src != nullptr);
                       GstPad *pad = gst_element_get_static_pad(src, "src");
                       gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER,
                                         [](GstPad *, GstPadProbeInfo *, gpointer data) -> GstPadProbeReturn {
                                           auto *c = static_cast<PushCount *>(data);
                                           c->buffers++;
                                           if (pa::on_media_thread())
                                             c->on_media_thread++;
                                           return GST_PAD_PROBE_OK;
                                         },
                                         d, nullptr);
                       gst_object_unref(pad);
                       gst_object_unref(src);
                     }),
                     this);
  }
};

/* 20 calls at once on the echo template: every caller gets exactly their own
 * audio back (each call's audio is different, so cross-talk would show).
 * @media_threads: the server's media-threads. */
void twenty_concurrent_calls(int media_threads, PushCount &pushes) {
  const int n = 20;
  TempDir tmp;
  Fixture f(kEcho, 25, [&](PaServer *s) {
    g_object_set(s, "media-threads", media_threads, nullptr);
    pushes.watch(s);
  });
  std::vector<std::vector<uint8_t>> sent;
  std::vector<std::unique_ptr<Process>> procs;
  for (int i = 0; i < n; i++) {
    std::string dir = tmp.file("c" + std::to_string(i));
    g_mkdir(dir.c_str(), 0755);
    sent.push_back(write_caller(dir + "/caller.wav", 1500, i));
    f.place_call(procs, dir + "/emulator.log", {"--audio", dir + "/caller.wav", "--tail-ms", "1000", "--out-dir", dir,
        "--report", dir + "/report.json"});
  }
  /* how many calls were up at once, and on how many media threads */
  guint64 most_active = 0, most_busy = 0;
  f.wait_processes(procs, 60000, [&] {
    most_active = std::max(most_active, f.stat("calls-active"));
    most_busy = std::max(most_busy, f.stat("media-threads-busy"));
  });
  for (int i = 0; i < n; i++) {
    std::string dir = tmp.file("c" + std::to_string(i));
    fail_unless_equals_int(procs[i]->status(), 0);
    check_echo(dir, sent[i], dir.c_str());
  }
  fail_unless(most_active >= 2, "the calls never overlapped");
  /* media-fill (50 %): 20 echo calls are far from half a CPU, so they all
   * go to the first media thread, whose wake-ups serve them all */
  fail_unless_equals_uint64(most_busy, media_threads ? 1 : 0);
  f.wait_idle();
  fail_unless_equals_int(f.configured, n);
  fail_unless_equals_int(f.stat("calls-started"), n);
  fail_unless_equals_int(f.stat("calls-completed"), n);
  fail_unless_equals_int(f.stat("calls-failed"), 0);
  for (auto &r : f.ended_reasons)
    assert_str(r, "eos");
}

} // namespace

/* Two media threads, of which the first serves the 20 calls and pushes their audio
 * (all but the first buffer or two of each call) */
GST_START_TEST(test_twenty_concurrent_calls_bitexact) {
  PushCount pushes;
  twenty_concurrent_calls(2, pushes);
  /* 1.5 s of audio: 75 frames per call */
  fail_unless(pushes.buffers >= 20 * 75, "%d buffers", pushes.buffers.load());
  fail_unless(pushes.on_media_thread >= pushes.buffers - 20 * 5, "only %d of %d buffers pushed on a media thread",
              pushes.on_media_thread.load(), pushes.buffers.load());
}
GST_END_TEST;

/* media-threads=0: each call's twiliosrc reads and pushes on its own thread */
GST_START_TEST(test_twenty_concurrent_calls_bitexact_own_threads) {
  PushCount pushes;
  twenty_concurrent_calls(0, pushes);
  fail_unless(pushes.buffers >= 20 * 75, "%d buffers", pushes.buffers.load());
  fail_unless_equals_int(pushes.on_media_thread, 0);
}
GST_END_TEST;

/* The recording example of docs/server.md: per-call files named after the
 * call (${out_dir}, ${call_sid}), holding exactly what the caller said. */
GST_START_TEST(test_recording_template) {
  TempDir tmp;
  std::string rec = tmp.file("rec");
  g_mkdir(rec.c_str(), 0755);
  const char *tmpl = "twiliosrc ! tee name=caller "
                     "  caller. ! queue ! tee name=agent "
                     "    agent. ! queue ! twiliosink "
                     "    agent. ! queue ! wavenc ! filesink location=${out_dir}/${call_sid}-agent.wav "
                     "  caller. ! queue ! wavenc ! filesink location=${out_dir}/${call_sid}-caller.wav";
  /* with a call-message handler, every message of the call's bus reaches
   * it, not only the EOS, errors and warnings the server acts on itself */
  std::set<GstMessageType> seen;
  Fixture f(tmpl, 10, [&](PaServer *s) {
    g_object_set(s, "out-dir", rec.c_str(), nullptr);
    g_signal_connect(s, "call-message", G_CALLBACK(+[](PaServer *, GstElement *, PaCall *, GstMessage *m, gpointer d) {
                       static_cast<std::set<GstMessageType> *>(d)->insert(GST_MESSAGE_TYPE(m));
                     }),
                     &seen);
  });
  std::vector<uint8_t> sent = write_caller(tmp.file("caller.wav"), 1500, 3);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("emulator.log"), {"--audio", tmp.file("caller.wav"), "--tail-ms", "1000", "--out-dir",
      tmp.path, "--report", tmp.file("report.json")});
  f.wait_processes(procs, 30000);
  check_echo(tmp.path, sent, "the recorded call");
  f.wait_idle();
  fail_unless(seen.count(GST_MESSAGE_STREAM_START) && seen.count(GST_MESSAGE_STATE_CHANGED) &&
              seen.count(GST_MESSAGE_EOS));
  Report r(tmp.file("report.json"));
  std::string sid = json_object_get_string_member(r.call(0), "call_sid");
  for (const char *side : {"caller", "agent"}) {
    std::string path = rec + "/" + sid + "-" + side + ".wav";
    pa::WavData wav;
    std::string err;
    fail_unless(pa::wav_read(path, wav, err), "%s: %s", path.c_str(), err.c_str());
    fail_unless_equals_int(wav.rate, 8000);
    fail_unless(wav.samples.size() >= sent.size(), "%s: %zu samples", side, wav.samples.size());
    for (size_t i = 0; i < sent.size(); i++)
      fail_unless(pa::mulaw_encode(wav.samples[i]) == sent[i], "%s: sample %zu differs", side, i);
  }
}
GST_END_TEST;

/* Over the limit: the webhook answers the busy TwiML (no stream), and a
 * stream that arrives anyway is closed cleanly (1013 "try again later"). */
GST_START_TEST(test_over_limit_turned_away) {
  TempDir tmp;
  Fixture f(kEcho, 2);
  write_caller(tmp.file("caller.wav"), 1500, 0);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("emulator.log"), {"--audio", tmp.file("caller.wav"), "--tail-ms", "300", "--calls", "3",
      "--report", tmp.file("report.json")});
  /* while the two admitted calls run, one more stream comes without a webhook */
  fail_unless(f.run_until([&] { return f.stat("calls-active") == 2; }, 10000));
  {
    WsClient intruder(f);
    fail_unless(intruder.connected);
    fail_unless(f.run_until([&] { return intruder.closed; }, 5000), "the refused stream was not closed");
    fail_unless_equals_int(intruder.close_code, 1013);
  }
  f.wait_processes(procs, 30000);
  Report r(tmp.file("report.json"));
  int completed = 0, busy = 0;
  for (guint i = 0; i < 3; i++) {
    std::string o = r.outcome(i);
    completed += o == "completed";
    busy += o == "busy";
    if (o == "busy") {
      JsonObject *twiml = json_object_get_object_member(r.call(i), "twiml");
      fail_if(json_object_get_boolean_member(twiml, "has_stream"));
      fail_unless(json_object_get_boolean_member(twiml, "hangup"));
      fail_unless(strstr(json_object_get_string_member(twiml, "says"), "busy") != nullptr);
    }
  }
  fail_unless_equals_int(completed, 2);
  fail_unless_equals_int(busy, 1);
  fail_unless_equals_int(f.stat("calls-turned-away"), 1);
  fail_unless_equals_int(f.stat("streams-refused"), 1);
  f.wait_idle();
}
GST_END_TEST;

/* A webhook holds a place until its stream comes, or until the
 * reservation times out. */
GST_START_TEST(test_reservations) {
  Fixture f(kEcho, 1, [](PaServer *s) { g_object_set(s, "reservation-timeout", 300u, nullptr); });
  Http a = f.webhook("CA0001");
  fail_unless_equals_int(a.status, 200);
  fail_unless(a.body.find("<Stream url=\"wss://127.0.0.1:") != std::string::npos, "%s", a.body.c_str());
  fail_unless_equals_int(f.stat("calls-reserved"), 1);
  /* a second caller while the first one's stream is on its way: busy */
  Http b = f.webhook("CA0002");
  fail_unless(b.body.find("<Stream") == std::string::npos && b.body.find("<Hangup/>") != std::string::npos, "%s",
              b.body.c_str());
  /* a retry of the first webhook keeps its place */
  fail_unless(f.webhook("CA0001").body.find("<Stream") != std::string::npos);
  /* the first stream never comes: after the timeout the place is free */
  gint64 t0 = now_ms();
  f.run_until([&] { return now_ms() - t0 > 350; }, 1000);
  fail_unless(f.webhook("CA0003").body.find("<Stream") != std::string::npos);
}
GST_END_TEST;

/* Per-call data in <Parameter>s: the webhook URL's query parameters and what
 * a call-admit handler adds; a handler can also refuse the call. */
GST_START_TEST(test_call_admit_and_parameters) {
  Fixture f(kEcho, 10, [](PaServer *s) {
    g_signal_connect(s, "call-admit",
                     G_CALLBACK(+[](PaServer *, GstStructure *webhook, GstStructure *params, gpointer) -> gboolean {
                       const char *sid = gst_structure_get_string(webhook, "CallSid");
                       if (g_strcmp0(sid, "CAblocked") == 0)
                         return FALSE;
                       gst_structure_set(params, "tenant", G_TYPE_STRING, "acme & co", nullptr);
                       return TRUE;
                     }),
                     nullptr);
  });
  Http a = f.webhook("CA0001", "?agent=sales");
  fail_unless(a.body.find("<Parameter name=\"from\" value=\"+14155551212\"/>") != std::string::npos, "%s",
              a.body.c_str());
  fail_unless(a.body.find("<Parameter name=\"agent\" value=\"sales\"/>") != std::string::npos, "%s", a.body.c_str());
  fail_unless(a.body.find("<Parameter name=\"tenant\" value=\"acme &amp; co\"/>") != std::string::npos, "%s",
              a.body.c_str());
  Http b = f.webhook("CAblocked");
  fail_unless(b.body.find("<Stream") == std::string::npos, "%s", b.body.c_str());
  fail_unless_equals_int(f.stat("calls-turned-away"), 1);
  /* health checks */
  Http h = f.http("GET", f.url("/healthz"));
  fail_unless_equals_int(h.status, 200);
}
GST_END_TEST;

/* GET /metrics: every statistic in Prometheus' text format, named after
 * its field, with the value pa_server_get_stats() gives; 64-bit totals as
 * counters. Unsigned requests show up there; another path, or none. */
GST_START_TEST(test_metrics) {
  TempDir tmp;
  Fixture f(kEcho, 5, [](PaServer *s) { g_object_set(s, "auth-token", "s3cret", nullptr); });
  /* an unsigned webhook: refused, and counted */
  fail_unless_equals_int(f.webhook("CA0001").status, 403);
  write_caller(tmp.file("caller.wav"), 600, 0);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("emulator.log"), {"--audio", tmp.file("caller.wav"), "--tail-ms", "200", "--auth-token",
      "s3cret"});
  f.wait_processes(procs, 30000);
  f.wait_idle();

  Http m = f.http("GET", f.url("/metrics"));
  fail_unless_equals_int(m.status, 200);
  assert_str(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  /* each metric: HELP, TYPE, then its sample; its value is the stat's */
  std::istringstream lines(m.body);
  std::string line, help_of, type_of, type;
  int samples = 0;
  std::set<std::string> seen;
  while (std::getline(lines, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      help_of = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      t >> type_of >> type;
      fail_unless(type_of == help_of, "TYPE of %s after HELP of %s", type_of.c_str(), help_of.c_str());
      continue;
    }
    std::istringstream sample(line);
    std::string name;
    guint64 value = 0;
    fail_unless(static_cast<bool>(sample >> name >> value), "not a sample: '%s'", line.c_str());
    fail_unless(name == type_of, "sample %s after TYPE of %s", name.c_str(), type_of.c_str());
    fail_unless(name.rfind("phoneagent_", 0) == 0, "%s", name.c_str());
    std::string field = name.substr(strlen("phoneagent_"));
    bool total = field.size() > 6 && field.compare(field.size() - 6, 6, "_total") == 0;
    if (total)
      field.resize(field.size() - 6);
    std::replace(field.begin(), field.end(), '_', '-');
    assert_str(type, total ? "counter" : "gauge");
    if (field == "draining") {
      fail_unless_equals_int(value, 0);
    } else if (field != "media-wakeups" && field != "media-ready") { /* these move while we read */
      fail_unless(value == f.stat(field.c_str()), "%s is %" G_GUINT64_FORMAT ", the stat %" G_GUINT64_FORMAT,
                  name.c_str(), value, f.stat(field.c_str()));
    }
    seen.insert(name);
    samples++;
  }
  for (const char *want : {"phoneagent_calls_active", "phoneagent_max_calls", "phoneagent_calls_started_total",
                           "phoneagent_calls_completed_total", "phoneagent_bad_signatures_total",
                           "phoneagent_draining", "phoneagent_media_wakeups_total"})
    fail_unless(seen.count(want) == 1, "no %s in:\n%s", want, m.body.c_str());
  fail_unless(samples >= 20, "%d samples", samples);
  fail_unless_equals_int(f.stat("calls-completed"), 1);
  fail_unless_equals_int(f.stat("bad-signatures"), 1);
  fail_unless_equals_int(f.stat("max-calls"), 5);
  fail_unless_equals_int(f.http("POST", f.url("/metrics"), "a=b").status, 405);
}
GST_END_TEST;

GST_START_TEST(test_metrics_path) {
  {
    Fixture f(kEcho, 5, [](PaServer *s) { g_object_set(s, "metrics-path", "", nullptr); });
    fail_unless_equals_int(f.http("GET", f.url("/metrics")).status, 404);
  }
  Fixture f(kEcho, 5, [](PaServer *s) { g_object_set(s, "metrics-path", "/internal/m", nullptr); });
  fail_unless_equals_int(f.http("GET", f.url("/metrics")).status, 404);
  Http m = f.http("GET", f.url("/internal/m"));
  fail_unless_equals_int(m.status, 200);
  fail_unless(m.body.find("\nphoneagent_max_calls 5\n") != std::string::npos, "%s", m.body.c_str());
}
GST_END_TEST;

/* Another process holds the call log's lock (a report, a backup): the
 * call goes on, the write that could not wait is counted, and the row is
 * whole once the lock is free again (the end writes what the start could
 * not). */
GST_START_TEST(test_call_log_locked) {
  TempDir tmp;
  std::string log = tmp.file("calls.sqlite");
  Fixture f(kEcho, 5, call_log_at(log));
  sqlite3 *other = nullptr;
  fail_unless(sqlite3_open(log.c_str(), &other) == SQLITE_OK);
  fail_unless(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  std::vector<uint8_t> sent = write_caller(tmp.file("caller.wav"), 1500, 3);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("emulator.log"), {"--audio", tmp.file("caller.wav"), "--tail-ms", "300", "--out-dir",
      tmp.path, "--report", tmp.file("report.json")});
  /* the start's write gives up after its 2 s wait for the lock */
  fail_unless(f.run_until([&] { return f.stat("call-log-errors") == 1; }, 10000), "no failed write counted");
  fail_unless(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  f.wait_processes(procs, 30000);
  check_echo(tmp.path, sent, "the call while the log was locked");
  f.wait_idle();
  f.wait_call_log();
  fail_unless_equals_int(f.stat("call-log-errors"), 1);
  auto rows = query(log, "SELECT call_sid, end_reason, started_at <= ended_at, from_number, instance != '' FROM calls");
  fail_unless_equals_int(rows.size(), 1);
  assert_str(rows[0][0], json_object_get_string_member(Report(tmp.file("report.json")).call(0), "call_sid"));
  assert_str(rows[0][1], "eos");
  assert_str(rows[0][2], "1");
  assert_str(rows[0][3], "+14155551212");
  assert_str(rows[0][4], "1");
}
GST_END_TEST;

/* An element that posts without end (level, every millisecond of audio):
 * the call log keeps 2,000 of its messages, says that it dropped the rest,
 * and the call is not affected. */
GST_START_TEST(test_call_log_limit) {
  TempDir tmp;
  std::string log = tmp.file("calls.sqlite");
  Fixture f("twiliosrc ! audio/x-raw,format=S16LE,rate=8000 ! level interval=1000000 ! twiliosink", 5,
            call_log_at(log));
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("emulator.log"), {"--audio", "synth:2500", "--tail-ms", "300", "--report",
      tmp.file("report.json")});
  f.wait_processes(procs, 30000);
  assert_str(Report(tmp.file("report.json")).outcome(0), "completed");
  f.wait_idle();
  f.wait_call_log();
  auto n = query(log, "SELECT (SELECT count(*) FROM events WHERE name != 'call-log-truncated'), "
                      "(SELECT detail FROM events WHERE name = 'call-log-truncated'), (SELECT end_reason FROM calls)");
  assert_str(n[0][0], "2000");
  /* 2.8 s of audio, a message a millisecond: about 800 over */
  guint dropped = static_cast<guint>(g_ascii_strtoull(n[0][1].c_str(), nullptr, 10));
  fail_unless(dropped > 500 && n[0][1].find(" messages over the limit of 2000 per call were not kept") !=
                                   std::string::npos, "%s", n[0][1].c_str());
  assert_str(n[0][2], "eos");
  /* each kept message's fields, written out as text (16 at a time, the
   * rest as the call ends), on the row of its own message: level's
   * running-time grows with seq */
  auto details = query(log, "SELECT detail FROM events WHERE name = 'level' ORDER BY seq");
  fail_unless(details.size() > 1990, "%zu level messages kept", details.size());
  gint64 last = -1;
  for (auto &d : details) {
    fail_unless(g_str_has_prefix(d[0].c_str(), "level, ") && d[0].find("rms=") != std::string::npos, "%s",
                d[0].c_str());
    const char *rt = strstr(d[0].c_str(), "running-time=(guint64)");
    fail_unless(rt != nullptr, "%s", d[0].c_str());
    gint64 t = g_ascii_strtoll(rt + strlen("running-time=(guint64)"), nullptr, 10);
    fail_unless(t > last, "out of order: %s", d[0].c_str());
    last = t;
  }
}
GST_END_TEST;

/* A stream that connects but never says start is closed (1008); a stream
 * that closes before its start leaves nothing behind. */
GST_START_TEST(test_stream_without_start) {
  Fixture f(kEcho, 10, [](PaServer *s) { g_object_set(s, "start-timeout", 300u, nullptr); });
  {
    WsClient c(f);
    c.send(pa::twilio::build_connected());
    fail_unless(f.run_until([&] { return c.closed; }, 5000));
    fail_unless_equals_int(c.close_code, 1008);
  }
  {
    WsClient c(f);
    soup_websocket_connection_close(c.ws, 1000, nullptr);
    fail_unless(f.run_until([&] { return c.closed; }, 5000));
  }
  f.wait_idle();
  fail_unless_equals_int(f.stat("streams-without-start"), 1);
  fail_unless_equals_int(f.stat("calls-started"), 0);
  fail_unless(f.ended_reasons.empty());
}
GST_END_TEST;

/* A pipeline that fails mid-call, and one that does not build, end their own
 * call only (socket closed, 1011); the other call and the server go on.
 * ${param.error_after} comes from the webhook URL's query. */
GST_START_TEST(test_failing_pipeline_ends_one_call) {
  TempDir tmp;
  std::string log = tmp.file("calls.sqlite");
  Fixture f("twiliosrc ! identity error-after=${param.error_after:--1} ! twiliosink", 10,
            call_log_at(log));
  std::vector<uint8_t> good = write_caller(tmp.file("good.wav"), 2000, 1);
  write_caller(tmp.file("bad.wav"), 2000, 2);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("good.log"), {"--audio", tmp.file("good.wav"), "--tail-ms", "1000", "--out-dir",
      tmp.path, "--report", tmp.file("report.json")});
  f.place_call(procs, tmp.file("mid.log"), {"--audio", tmp.file("bad.wav"), "--tail-ms", "300", "--report",
      tmp.file("mid.json")}, "?error_after=25");
  f.place_call(procs, tmp.file("build.log"), {"--audio", tmp.file("bad.wav"), "--tail-ms", "300", "--report",
      tmp.file("build.json")}, "?error_after=many");
  f.wait_processes(procs, 30000);
  check_echo(tmp.path, good, "the good call");
  /* mid-call error: closed by the server after some audio */
  Report mid(tmp.file("mid.json"));
  assert_str(mid.outcome(0), "ws-closed-1011");
  assert_str(json_object_get_string_member(mid.call(0), "closed_by"), "server");
  gint64 mid_bytes = json_object_get_int_member(mid.call(0), "bytes_received");
  fail_unless(mid_bytes > 0 && mid_bytes <= 25 * 160, "%" G_GINT64_FORMAT " bytes", mid_bytes);
  /* does not build: closed right away */
  Report build(tmp.file("build.json"));
  assert_str(build.outcome(0), "ws-closed-1011");
  fail_unless_equals_int(json_object_get_int_member(build.call(0), "bytes_received"), 0);

  f.wait_idle();
  fail_unless_equals_int(f.stat("calls-failed"), 2);
  fail_unless_equals_int(f.stat("calls-completed"), 1);
  std::sort(f.ended_reasons.begin(), f.ended_reasons.end());
  fail_unless_equals_int(f.ended_reasons.size(), 3);
  assert_str(f.ended_reasons[0], "build-failed");
  assert_str(f.ended_reasons[1], "eos");
  assert_str(f.ended_reasons[2], "error");
  /* the call log says the same of each call, and why the two failed (its
   * writes run on a thread of their own) */
  f.wait_call_log();
  fail_unless_equals_int(f.stat("call-log-errors"), 0);
  auto rows = query(log, "SELECT end_reason, error, caller_audio_s, parameters, from_number, call_sid, "
                         "duration_s >= 0, ended_at >= started_at, instance FROM calls ORDER BY end_reason");
  fail_unless_equals_int(rows.size(), 3);
  assert_str(rows[0][0], "build-failed");
  fail_unless(rows[0][1].find("did not build") != std::string::npos, "%s", rows[0][1].c_str());
  fail_unless(rows[0][3].find("\"error_after\":\"many\"") != std::string::npos, "%s", rows[0][3].c_str());
  assert_str(rows[1][0], "eos");
  assert_str(rows[1][1], "");
  /* every frame the emulator sent (2 s of speech, 1 s of tail) */
  double sent_s = 0.02 * static_cast<double>(json_object_get_int_member(Report(tmp.file("report.json")).call(0),
                                                                        "frames_sent"));
  fail_unless(sent_s > 2.9 && std::fabs(std::stod(rows[1][2]) - sent_s) < 0.001, "the good call's caller audio: %s s",
              rows[1][2].c_str());
  assert_str(rows[2][0], "error");
  fail_unless(rows[2][1].find("identity") != std::string::npos, "%s", rows[2][1].c_str());
  fail_unless(std::stod(rows[2][2]) <= 25 * 0.02 + 0.001, "%s s", rows[2][2].c_str());
  for (auto &r : rows) {
    assert_str(r[4], "+14155551212");
    fail_unless(r[5].rfind("CA", 0) == 0, "%s", r[5].c_str());
    assert_str(r[6], "1");
    assert_str(r[7], "1");
    fail_unless(r[8].find(':') != std::string::npos, "%s", r[8].c_str());
  }
  /* the reports' calls are the log's */
  std::set<std::string> logged, reported;
  for (auto &r : rows)
    logged.insert(r[5]);
  for (const char *rep : {"report.json", "mid.json", "build.json"})
    reported.insert(json_object_get_string_member(Report(tmp.file(rep)).call(0), "call_sid"));
  fail_unless(logged == reported, "the log's calls are not the emulator's");
  /* what twiliosrc posted is among each started call's events */
  auto ev = query(log, "SELECT count(*) FROM events WHERE name = 'twilio-call-started'");
  assert_str(ev[0][0], "2");

  /* and the server takes the next call */
  std::vector<std::unique_ptr<Process>> again;
  f.place_call(again, tmp.file("again.log"), {"--audio", tmp.file("good.wav"), "--tail-ms", "1000", "--out-dir",
      tmp.path, "--report", tmp.file("report.json")});
  f.wait_processes(again, 30000);
  check_echo(tmp.path, good, "the call after the failures");
  f.wait_idle();
}
GST_END_TEST;

/* Holds the thread that pushes into the element named "gate" in a call's
 * pipeline until the test opens it: at the end of stream, or from buffer
 * number @hold_from_buffer (counted from 1) on when that is above 0. The
 * pipeline cannot finish then, nor stop (going to NULL waits for that
 * thread), for as long as the test wants and not for a guessed time. A watchdog opens it after @limit_ms so
 * that a server waiting for that pipeline cannot hang the test; timed_out()
 * then says so. */
class Gate {
public:
  Gate(int limit_ms, int hold_from_buffer)
      : hold_from_buffer_(hold_from_buffer), watchdog_([this, limit_ms] {
          std::unique_lock<std::mutex> l(m_);
          if (!cv_.wait_for(l, std::chrono::milliseconds(limit_ms), [this] { return open_; })) {
            timed_out_ = true;
            open_ = true;
            cv_.notify_all();
          }
        }) {}
  ~Gate() {
    open();
    watchdog_.join();
  }
  void watch(PaServer *server) {
    g_signal_connect(server, "call-configure", G_CALLBACK(+[](PaServer *, GstElement *pipeline, PaCall *, gpointer d) {
                       GstElement *gate = gst_bin_get_by_name(GST_BIN(pipeline), "gate");
                       if (!gate)
                         return;
                       GstPad *pad = gst_element_get_static_pad(gate, "sink");
                       auto *self = static_cast<Gate *>(d);
                       gst_pad_add_probe(pad,
                                         static_cast<GstPadProbeType>(
                                             GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM |
                                             (self->hold_from_buffer_ > 0 ? GST_PAD_PROBE_TYPE_BUFFER : 0)),
                                         [](GstPad *, GstPadProbeInfo *info, gpointer data) -> GstPadProbeReturn {
                                           auto *g = static_cast<Gate *>(data);
                                           if ((info->type & GST_PAD_PROBE_TYPE_BUFFER)
                                                   ? ++g->buffers_ >= g->hold_from_buffer_
                                                   : GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS)
                                             g->hold();
                                           return GST_PAD_PROBE_OK;
                                         },
                                         d, nullptr);
                       gst_object_unref(pad);
                       gst_object_unref(gate);
                     }),
                     this);
  }
  void open() {
    {
      std::lock_guard<std::mutex> l(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool reached() const { return reached_; }
  bool timed_out() {
    std::lock_guard<std::mutex> l(m_);
    return timed_out_;
  }

private:
  void hold() {
    reached_ = true;
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [this] { return open_; });
  }
  const int hold_from_buffer_;
  std::atomic<int> buffers_{0};
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false, timed_out_ = false;
  std::atomic<bool> reached_{false};
  std::thread watchdog_;
};

/* A pipeline that cannot stop (its streaming thread held by a Gate) must
 * not hold up the server or the other calls: state changes run on worker
 * threads, not on the server's context, and a media thread never waits for
 * one call's pipeline. The other call runs while the stuck call hangs up
 * and the server tries to stop its pipeline, and ends with every byte
 * echoed before the gate opens; the server answers meanwhile. Nothing here
 * depends on how long anything takes: a server that waited would lose the
 * other call's echo, or not get that far before the watchdog. */
static void stuck_pipeline_does_not_stall_others(const char *tmpl, int media_threads, int hold_from_buffer) {
  TempDir tmp;
  Gate gate(30000, hold_from_buffer);
  Fixture f(tmpl, 10, [media_threads](PaServer *s) {
    g_object_set(s, "end-timeout", 300u, "media-threads", media_threads, nullptr);
  });
  gate.watch(f.server);
  write_caller(tmp.file("stuck.wav"), 2000, 5);
  std::vector<uint8_t> good = write_caller(tmp.file("good.wav"), 3000, 6);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("good.log"), {"--audio", tmp.file("good.wav"), "--tail-ms", "1000", "--out-dir",
      tmp.path, "--report", tmp.file("report.json")});
  /* hangs up before 1 s of its audio (a queue's max-size-time) could wait
   * behind a held gate */
  f.place_call(procs, tmp.file("stuck.log"), {"--audio", tmp.file("stuck.wav"), "--hangup-ms", "600", "--report",
      tmp.file("stuck.json")}, "?gate=gate");
  /* the stuck call hung up, its EOS waits at the gate, the end timeout
   * fired: the server is stopping that pipeline now */
  fail_unless(f.run_until([&] { return f.stat("calls-forced") == 1; }, 10000), "the end timeout did not fire");
  fail_unless(gate.reached());
  Http h = f.http("GET", f.url("/healthz"));
  fail_unless_equals_int(h.status, 200);
  f.wait_processes(procs, 30000);
  fail_if(gate.timed_out(), "the server waited for the stuck pipeline");
  check_echo(tmp.path, good, "the call next to the stuck one");
  /* the other call's pipeline finishes; the stuck one is still there */
  fail_unless(f.run_until([&] { return f.stat("pipelines-live") == 1; }, 10000), "%" G_GUINT64_FORMAT " pipelines",
              f.stat("pipelines-live"));
  gate.open();
  f.wait_idle();
  std::sort(f.ended_reasons.begin(), f.ended_reasons.end());
  fail_unless_equals_int(f.ended_reasons.size(), 2);
  assert_str(f.ended_reasons[0], "end-timeout");
  assert_str(f.ended_reasons[1], "eos");
}

/* each call on a streaming thread of its own, held at its end of stream
 * (held from the start, it could not read the hang-up) */
GST_START_TEST(test_stuck_pipeline_does_not_stall_others) {
  stuck_pipeline_does_not_stall_others("twiliosrc ! identity name=${param.gate:-pass} ! twiliosink", 0, -1);
}
GST_END_TEST;

/* one media thread for both calls, the stuck call's held from its 10th
 * buffer (by then the media thread pushes them, not twiliosrc's streaming
 * thread): the element that blocks is behind a queue, as docs/server.md
 * asks of templates */
GST_START_TEST(test_stuck_pipeline_behind_queue_does_not_stall_media_thread) {
  stuck_pipeline_does_not_stall_others("twiliosrc ! queue ! identity name=${param.gate:-pass} ! twiliosink", 1,
                                       10);
}
GST_END_TEST;

#ifdef HAVE_LOCALMODEL
/* The agent template under the server, against the local model in canned
 * mode (pre-rendered replies, no speech recognition or synthesis): the
 * caller hears the agent, interrupts it cleanly, and the model socket is
 * read where the docs say,
 * by the call's media thread (docs/architecture.md), or by realtimemodel's
 * shared socket thread when the server has no media threads. When the call
 * ends the model session is closed and nothing is left. */
static void agent_call(int media_threads) {
  TempDir tmp;
  pa::local::EngineConfig cfg;
  cfg.canned = true;
  pa::local::Engine engine(cfg);
  GError *err = nullptr;
  fail_unless(engine.start(&err), "%s", err ? err->message : "");
  auto engine_stat = [&engine](const char *name) {
    GstStructure *s = engine.stats();
    guint64 v = 0;
    fail_unless(gst_structure_get_uint64(s, name, &v), "no %s", name);
    gst_structure_free(s);
    return v;
  };
  std::string tmpl = "twiliosrc ! realtimemodel location=" + engine.url() + " ! twiliosink";
  std::string log = tmp.file("calls.sqlite");
  Fixture f(tmpl.c_str(), 10, [media_threads, &log](PaServer *s) {
    g_object_set(s, "media-threads", media_threads, "call-log", log.c_str(), nullptr);
  });
  GstElement *model = nullptr; /* ref */
  g_signal_connect(f.server, "call-configure", G_CALLBACK(+[](PaServer *, GstElement *pipeline, PaCall *, gpointer d) {
                     GstIterator *it = gst_bin_iterate_all_by_element_factory_name(GST_BIN(pipeline), "realtimemodel");
                     GValue v = G_VALUE_INIT;
                     if (gst_iterator_next(it, &v) == GST_ITERATOR_OK)
                       *static_cast<GstElement **>(d) = GST_ELEMENT(g_value_dup_object(&v));
                     g_value_unset(&v);
                     gst_iterator_free(it);
                   }),
                   &model);
  std::vector<std::unique_ptr<Process>> procs;
  f.place_call(procs, tmp.file("agent.log"), {"--audio", "synth:5000", "--tail-ms", "2000", "--report",
      tmp.file("report.json")});
  /* the model socket, once open and answering, and who reads it */
  gboolean on_media_thread = FALSE;
  fail_unless(f.run_until(
      [&] {
        if (!model)
          return false;
        GstStructure *st = nullptr;
        g_object_get(model, "stats", &st, nullptr);
        guint64 events = 0;
        bool answered = gst_structure_get_uint64(st, "events-received", &events) && events > 0 &&
                        gst_structure_get_boolean(st, "ws-on-media-thread", &on_media_thread);
        gst_structure_free(st);
        return answered;
      },
      15000), "the model never answered");
  fail_unless_equals_int(on_media_thread, media_threads != 0);
  f.wait_processes(procs, 30000);
  /* the agent's audio: pushed by the media thread that reads the model
   * socket (no task wake-up), twiliosink sending what the lead held back
   * from that thread's timers; without media threads, by the task */
  guint64 pushed_ms = 0, direct_ms = 0, barge_ins = 0, truncates = 0;
  {
    GstStructure *st = nullptr;
    g_object_get(model, "stats", &st, nullptr);
    fail_unless(gst_structure_get_uint64(st, "output-pushed-ms", &pushed_ms));
    fail_unless(gst_structure_get_uint64(st, "output-pushed-on-media-thread-ms", &direct_ms));
    fail_unless(gst_structure_get_uint64(st, "barge-ins", &barge_ins));
    fail_unless(gst_structure_get_uint64(st, "truncates", &truncates));
    gst_structure_free(st);
  }
  fail_unless(pushed_ms > 500, "%" G_GUINT64_FORMAT " ms pushed", pushed_ms);
  if (media_threads)
    fail_unless(direct_ms * 10 >= pushed_ms * 9, "only %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                " ms pushed on the media thread", direct_ms, pushed_ms);
  else
    fail_unless_equals_uint64(direct_ms, 0);

  Report r(tmp.file("report.json"));
  assert_str(r.outcome(0), "completed");
  fail_unless(json_object_get_double_member(r.call(0), "played_ms") > 500, "the caller heard %.0f ms of the agent",
              json_object_get_double_member(r.call(0), "played_ms"));
  /* the synthetic caller speaks again 1.3 s after each utterance, over the
   * agent's answer: the model's VAD interrupts it. Each clear stops the
   * agent at once (the audio twiliosink held back is dropped with it, not
   * played after), and the interrupted item is truncated */
  JsonArray *clears = json_object_get_array_member(r.call(0), "clears");
  fail_unless(barge_ins >= 1 && json_array_get_length(clears) >= 1, "no barge-in (%" G_GUINT64_FORMAT ")",
              barge_ins);
  fail_unless(truncates >= 1);
  for (guint i = 0; i < json_array_get_length(clears); i++)
    fail_unless_equals_int(
        json_object_get_double_member(json_array_get_object_element(clears, i), "leaked_ms"), 0);
  JsonArray *turns = json_object_get_array_member(r.call(0), "turns");
  fail_unless(json_array_get_length(turns) > 0);
  fail_unless(json_object_get_int_member(json_array_get_object_element(turns, 0), "response_latency_ms") > 0,
              "the agent did not answer the caller's first turn");
  /* the call ended: the model session is closed, the server is idle (our
   * reference kept realtimemodel, and through it the call object) */
  gst_object_unref(model);
  f.wait_idle();
  fail_unless(f.run_until([&] { return engine_stat("sessions-active") == 0; }, 10000),
              "the model session is still open after the call");
  fail_unless_equals_int(engine_stat("sessions-total"), 1);
  engine.stop();

  /* the call log: the turns, their latency, the barge-ins and what the
   * agent said, as realtimemodel posted them */
  f.wait_call_log();
  auto row = query(log, "SELECT end_reason, turns, latency_p50_ms, latency_max_ms, barge_ins, agent_audio_s > 0.5 "
                        "FROM calls");
  fail_unless_equals_int(row.size(), 1);
  assert_str(row[0][0], "eos");
  fail_unless(std::stoi(row[0][1]) >= 1, "%s turns", row[0][1].c_str());
  assert_str(row[0][4], std::to_string(barge_ins).c_str());
  assert_str(row[0][5], "1");
  /* the median and the largest of the turns' latencies that were known */
  std::vector<double> known;
  for (auto &ev : query(log, "SELECT detail FROM events WHERE name = 'realtime-latency'")) {
    const char *at = strstr(ev[0].c_str(), "latency-ms=(double)");
    fail_unless(at != nullptr, "%s", ev[0].c_str());
    double ms = g_ascii_strtod(at + strlen("latency-ms=(double)"), nullptr);
    if (ms >= 0)
      known.push_back(ms);
  }
  std::sort(known.begin(), known.end());
  if (known.empty()) {
    assert_str(row[0][2], "");
    assert_str(row[0][3], "");
  } else {
    size_t n = known.size();
    double median = n % 2 ? known[n / 2] : (known[n / 2 - 1] + known[n / 2]) / 2;
    fail_unless(std::fabs(std::stod(row[0][2]) - median) < 0.01, "p50 %s, want %f", row[0][2].c_str(), median);
    fail_unless(std::fabs(std::stod(row[0][3]) - known.back()) < 0.01, "max %s, want %f", row[0][3].c_str(),
                known.back());
  }
  auto counted = query(log, "SELECT (SELECT count(*) FROM events WHERE name = 'realtime-latency'), "
                            "(SELECT count(*) FROM events WHERE name = 'realtime-barge-in')");
  assert_str(counted[0][0], row[0][1].c_str());
  assert_str(counted[0][1], row[0][4].c_str());
  auto said = query(log, "SELECT role, text, running_time_s FROM transcript ORDER BY seq");
  fail_unless(!said.empty(), "no transcript in the call log");
  double last = 0;
  for (auto &line : said) {
    assert_str(line[0], "assistant");
    fail_unless(!line[1].empty());
    fail_unless(std::stod(line[2]) >= last, "the transcript is out of order");
    last = std::stod(line[2]);
  }
  /* deltas are not kept */
  auto deltas = query(log, "SELECT count(*) FROM events WHERE name = 'realtime-transcript'");
  assert_str(deltas[0][0], "0");
}

GST_START_TEST(test_agent_call_model_socket_on_media_thread) { agent_call(1); }
GST_END_TEST;

GST_START_TEST(test_agent_call_without_media_threads) { agent_call(0); }
GST_END_TEST;
#endif

/* Draining with calls that finish within the grace period: they are not
 * cut; new callers hear the busy message; /healthz says 503. */
GST_START_TEST(test_drain_lets_calls_finish) {
  TempDir tmp;
  Fixture f(kEcho, 10);
  std::vector<std::vector<uint8_t>> sent;
  std::vector<std::unique_ptr<Process>> procs;
  for (int i = 0; i < 2; i++) {
    std::string dir = tmp.file("c" + std::to_string(i));
    g_mkdir(dir.c_str(), 0755);
    sent.push_back(write_caller(dir + "/caller.wav", 1500, i));
    f.place_call(procs, dir + "/emulator.log", {"--audio", dir + "/caller.wav", "--tail-ms", "1000", "--out-dir", dir,
        "--report", dir + "/report.json"});
  }
  fail_unless(f.run_until([&] { return f.configured == 2; }, 10000));
  pa_server_drain(f.server, 20000);
  Http h = f.http("GET", f.url("/healthz"));
  fail_unless_equals_int(h.status, 503);
  Http w = f.webhook("CAlate");
  fail_unless(w.body.find("<Stream") == std::string::npos && w.body.find("busy") != std::string::npos);
  gint64 t0 = now_ms();
  fail_unless(f.run_until([&] { return f.drained; }, 15000), "not drained");
  fail_unless(now_ms() - t0 < 10000, "drained only after %" G_GINT64_FORMAT " ms", now_ms() - t0);
  f.wait_processes(procs, 10000);
  for (int i = 0; i < 2; i++)
    check_echo(tmp.file("c" + std::to_string(i)), sent[i], "a call during the drain");
  for (auto &r : f.ended_reasons)
    assert_str(r, "eos");
  f.wait_idle();
}
GST_END_TEST;

/* Draining with calls longer than the grace period: after it they are ended
 * cleanly (EOS: twiliosink plays out and closes with 1000), and "drained"
 * follows. */
GST_START_TEST(test_drain_ends_long_calls_cleanly) {
  TempDir tmp;
  Fixture f(kEcho, 10);
  std::vector<std::vector<uint8_t>> sent;
  std::vector<std::unique_ptr<Process>> procs;
  for (int i = 0; i < 3; i++) {
    std::string dir = tmp.file("c" + std::to_string(i));
    g_mkdir(dir.c_str(), 0755);
    sent.push_back(write_caller(dir + "/caller.wav", 20000, i));
    f.place_call(procs, dir + "/emulator.log", {"--audio", dir + "/caller.wav", "--out-dir", dir, "--report",
        dir + "/report.json"});
  }
  fail_unless(f.run_until([&] { return f.configured == 3; }, 10000));
  gint64 t0 = now_ms();
  pa_server_drain(f.server, 1500);
  fail_unless(f.run_until([&] { return f.drained; }, 10000), "not drained");
  gint64 took = now_ms() - t0;
  fail_unless(took >= 1500 && took < 6000, "drained after %" G_GINT64_FORMAT " ms", took);
  f.wait_processes(procs, 10000);
  fail_unless_equals_int(f.ended_reasons.size(), 3);
  for (int i = 0; i < 3; i++) {
    assert_str(f.ended_reasons[i], "shutdown");
    std::string dir = tmp.file("c" + std::to_string(i));
    Report r(dir + "/report.json");
    /* closed by the server, cleanly, with what the caller said so far echoed */
    assert_str(r.outcome(0), "completed");
    assert_str(json_object_get_string_member(r.call(0), "closed_by"), "server");
    fail_unless_equals_int(json_object_get_int_member(r.call(0), "close_code"), 1000);
    std::vector<uint8_t> received = read_bytes(dir + "/call-1-received.ulaw");
    fail_unless(received.size() > 8000 && received.size() < sent[i].size(), "call %d: %zu bytes came back", i,
                received.size());
    fail_unless(memcmp(received.data(), sent[i].data(), received.size()) == 0, "call %d: echo differs", i);
  }
  fail_unless_equals_int(f.stat("calls-forced"), 0);
  f.wait_idle();
}
GST_END_TEST;

/* 200 calls, in 4 lanes of 50 one after another: no pipeline, call object,
 * socket or thread is left behind. */
GST_START_TEST(test_no_leaks_after_200_calls) {
  TempDir tmp;
  Fixture f(kEcho, 10);
  write_caller(tmp.file("caller.wav"), 100, 0);
  auto run_lanes = [&](int lanes, int calls_each, const char *tag) {
    std::vector<std::unique_ptr<Process>> procs;
    for (int l = 0; l < lanes; l++)
      f.place_call(procs, tmp.file(std::string(tag) + std::to_string(l) + ".log"), {"--audio", tmp.file("caller.wav"),
          "--tail-ms", "0", "--calls", std::to_string(calls_each), "--sequential", "--report",
          tmp.file(std::string(tag) + std::to_string(l) + ".json")});
    f.wait_processes(procs, 120000);
    for (int l = 0; l < lanes; l++) {
      Report r(tmp.file(std::string(tag) + std::to_string(l) + ".json"));
      JsonObject *totals = json_object_get_object_member(r.root, "totals");
      JsonObject *outcomes = json_object_get_object_member(totals, "outcomes");
      fail_unless(json_object_has_member(outcomes, "completed"), "lane %d: no completed call", l);
      fail_unless_equals_int(json_object_get_int_member(outcomes, "completed"), calls_each);
    }
  };
  /* warm up: thread pools and caches reach their steady size */
  run_lanes(4, 2, "warm");
  f.wait_idle();
  int threads0 = count_threads(), fds0 = count_fds();

  gint64 t0 = now_ms();
  run_lanes(4, 50, "lane");
  gint64 took = now_ms() - t0;
  f.wait_idle();
  fail_unless_equals_int(f.stat("calls-started"), 208);
  fail_unless_equals_int(f.stat("calls-completed"), 208);
  /* sockets: the emulators are gone, so their connections close too */
  bool fds_ok = f.run_until([&] { return count_fds() <= fds0; }, 5000);
  fail_unless(fds_ok, "%d file descriptors open, %d before the 200 calls: %s", count_fds(), fds0,
              describe_fds().c_str());
  /* threads: GStreamer's task pool keeps a couple of idle ones at most */
  bool threads_ok = f.run_until([&] { return count_threads() <= threads0 + 2; }, 5000);
  fail_unless(threads_ok, "%d threads, %d before the 200 calls", count_threads(), threads0);
  GST_INFO("200 calls in %" G_GINT64_FORMAT " ms; threads %d -> %d, fds %d -> %d", took, threads0, count_threads(),
           fds0, count_fds());
}
GST_END_TEST;

static Suite *server_suite(void) {
  Suite *s = suite_create("server");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 180);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_twenty_concurrent_calls_bitexact);
  tcase_add_test(tc, test_twenty_concurrent_calls_bitexact_own_threads);
  tcase_add_test(tc, test_recording_template);
  tcase_add_test(tc, test_over_limit_turned_away);
  tcase_add_test(tc, test_reservations);
  tcase_add_test(tc, test_call_admit_and_parameters);
  tcase_add_test(tc, test_metrics);
  tcase_add_test(tc, test_metrics_path);
  tcase_add_test(tc, test_call_log_locked);
  tcase_add_test(tc, test_call_log_limit);
  tcase_add_test(tc, test_stream_without_start);
  tcase_add_test(tc, test_failing_pipeline_ends_one_call);
  tcase_add_test(tc, test_stuck_pipeline_does_not_stall_others);
  tcase_add_test(tc, test_stuck_pipeline_behind_queue_does_not_stall_media_thread);
#ifdef HAVE_LOCALMODEL
  tcase_add_test(tc, test_agent_call_model_socket_on_media_thread);
  tcase_add_test(tc, test_agent_call_without_media_threads);
#endif
  tcase_add_test(tc, test_drain_lets_calls_finish);
  tcase_add_test(tc, test_drain_ends_long_calls_cleanly);
  tcase_add_test(tc, test_no_leaks_after_200_calls);
  return s;
}

GST_CHECK_MAIN(server);
