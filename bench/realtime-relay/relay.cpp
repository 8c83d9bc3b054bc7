/* gst-phone-agent benchmark: realtimemodel's relay overhead.
 *
 * N calls, each a pipeline `realtimemodel ! twiliosink` whose call has a test
 * transport (no Twilio socket). A scripted realtime server (libsoup, its own
 * thread, 127.0.0.1) streams 20 ms μ-law audio deltas to every call at real
 * time. Each delta carries (connection, sequence) in its bytes, and the
 * server stamps it immediately before writing it to the socket. The figure
 * is the time from that stamp to the moment twiliosink hands the media frame
 * holding the same bytes to the call's transport, i.e. what the model's
 * audio spends between the model socket and the Twilio socket: the loopback
 * hop, the model socket's reading thread, JSON parsing and base64, the element's queue and task,
 * twiliosink. Real time pacing keeps twiliosink's lead from ever waiting, so
 * pacing is not counted.
 *
 * Usage: realtime-relay-bench [--calls N[,N...]] [--seconds S] [--warmup S]
 * Prints one line per call count: deltas measured, p50/p90/p99/max in ms,
 * CPU used by the process.
 */
#include "config.h"

#include <gst/gst.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pa-audio.h"
#include "pa-call.h"
#include "rt-mock-server.h"
#include "twilio-protocol.h"

namespace {

constexpr size_t kFrame = 160; /* 20 ms of μ-law */
constexpr int kMaxSeq = 1 << 16;

struct Stamps {
  /* indexed by connection id, then sequence: when the server sent it (µs) */
  std::vector<std::unique_ptr<std::atomic<gint64>[]>> sent;
  explicit Stamps(int conns) {
    for (int i = 0; i <= conns; i++) {
      sent.emplace_back(new std::atomic<gint64>[kMaxSeq]);
      for (int s = 0; s < kMaxSeq; s++)
        sent.back()[s].store(0, std::memory_order_relaxed);
    }
  }
};

struct Samples {
  std::mutex mu;
  std::vector<double> ms;
  std::atomic<bool> recording{false};
  std::atomic<guint64> unmatched{0};
};

struct Call {
  PaCall *call = nullptr;
  GstElement *pipe = nullptr;
};

double cpu_seconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* (busy, total) jiffies of the whole machine, from /proc/stat */
std::pair<double, double> machine_busy() {
  gchar *text = nullptr;
  std::pair<double, double> r{0, 0};
  if (!g_file_get_contents("/proc/stat", &text, nullptr, nullptr))
    return r;
  unsigned long long v[8] = {0};
  if (sscanf(text, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
             &v[7]) == 8) {
    double idle = static_cast<double>(v[3] + v[4]);
    double total = 0;
    for (auto x : v)
      total += static_cast<double>(x);
    r = {total - idle, total};
  }
  g_free(text);
  return r;
}

double pct(std::vector<double> &v, double p) {
  if (v.empty())
    return 0;
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

bool run(int calls, double seconds, double warmup, int delta_ms) {
  rtmock::Options opt;
  opt.record_audio = false;
  rtmock::MockServer mock(opt);
  if (!mock.start()) {
    g_printerr("cannot start the mock server\n");
    return false;
  }
  auto stamps = std::make_unique<Stamps>(calls + 1);
  Samples samples;
  std::vector<Call> pipes(calls);
  Stamps *st = stamps.get();

  for (int i = 0; i < calls; i++) {
    pa::CallConfig cc;
    cc.stall_timeout_ms = G_MAXUINT; /* nobody echoes marks here */
    PaCall *call = pa_call_new(cc);
    pa_call_set_test_transport(
        call,
        [st, &samples](const std::string &text) {
          gint64 now = g_get_monotonic_time(); /* the frame leaves for Twilio */
          /* only the first 6 payload bytes matter: decode 8 base64 characters */
          size_t k = text.find("\"payload\":\"");
          if (k == std::string::npos || text.size() < k + 11 + 8)
            return; /* marks */
          std::vector<uint8_t> head;
          if (!pa::base64_decode(std::string_view(text).substr(k + 11, 8), head) || head.size() < 6)
            return;
          int conn = head[0] | (head[1] << 8);
          int seq = head[2] | (head[3] << 8);
          if (conn <= 0 || conn >= static_cast<int>(st->sent.size()) || !samples.recording)
            return;
          gint64 t0 = st->sent[conn][seq].exchange(0);
          if (!t0) {
            samples.unmatched++;
            return;
          }
          std::lock_guard<std::mutex> g(samples.mu);
          samples.ms.push_back((now - t0) / 1000.0);
        },
        nullptr);
    pa::twilio::StartInfo si;
    si.stream_sid = "MZ" + std::to_string(i);
    si.call_sid = "CA" + std::to_string(i);
    std::string start = pa::twilio::build_start(1, si);
    pa_call_handle_text(call, start.data(), start.size());
    std::string desc = "realtimemodel location=" + mock.url() + " ! twiliosink lead=200 mark-interval=100";
    GError *err = nullptr;
    GstElement *pipe = gst_parse_launch(desc.c_str(), &err);
    if (!pipe) {
      g_printerr("pipeline: %s\n", err ? err->message : "?");
      return false;
    }
    GstContext *ctx = pa_call_context_new(call);
    gst_element_set_context(pipe, ctx);
    gst_context_unref(ctx);
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    pipes[i] = {call, pipe};
  }
  gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
  while (mock.count("session.update") < static_cast<size_t>(calls) && g_get_monotonic_time() < deadline)
    g_usleep(10 * 1000);
  if (mock.count("session.update") < static_cast<size_t>(calls)) {
    g_printerr("only %zu of %d sessions came up\n", mock.count("session.update"), calls);
    return false;
  }
  std::vector<int> conns = mock.open_connections();
  for (int c : conns)
    mock.send(mock.response_created("resp_" + std::to_string(c)), c);

  /* stream: one @delta_ms delta per call every @delta_ms, at real time,
   * each call on its own phase (independent calls). Every 20 ms frame of a
   * delta carries its own (connection, sequence) and the delta's stamp.
   * After the handshake, this thread writes the server's frames straight to
   * each connection's socket (libsoup does not write after the setup), so
   * what is measured is the element's path, not the mock's main loop. */
  const int frames_per_delta = std::max(1, delta_ms / 20);
  const gint64 period_us = frames_per_delta * 20 * 1000;
  struct Stream {
    int conn, fd, seq = 0;
    gint64 next;
  };
  std::vector<Stream> streams;
  for (size_t i = 0; i < conns.size(); i++) {
    int fd = mock.raw_fd(conns[i]);
    if (fd < 0) {
      g_printerr("no socket for connection %d\n", conns[i]);
      return false;
    }
    streams.push_back({conns[i], fd, 0, static_cast<gint64>(period_us * i / conns.size())});
  }
  g_usleep(200 * 1000); /* response.created went out through libsoup before we write */
  double cpu0 = 0;
  std::pair<double, double> machine0{0, 0};
  gint64 t_start = g_get_monotonic_time();
  for (auto &st_ : streams)
    st_.next += t_start;
  gint64 t_rec = t_start + static_cast<gint64>(warmup * G_USEC_PER_SEC);
  gint64 t_end = t_rec + static_cast<gint64>(seconds * G_USEC_PER_SEC);
  bool recording = false;
  std::vector<uint8_t> audio(kFrame * frames_per_delta, pa::kMulawSilence);
  std::string frame;
  guint64 short_writes = 0;
  for (;;) {
    /* the stream due first */
    Stream *due = &streams[0];
    for (auto &x : streams)
      if (x.next < due->next)
        due = &x;
    if (due->next >= t_end)
      break;
    gint64 now = g_get_monotonic_time();
    if (due->next > now)
      g_usleep(static_cast<gulong>(due->next - now));
    if (!recording && g_get_monotonic_time() >= t_rec) {
      recording = true;
      samples.recording = true;
      cpu0 = cpu_seconds();
      machine0 = machine_busy();
    }
    int c = due->conn;
    for (int k = 0; k < frames_per_delta; k++) {
      int sq = (due->seq + k) % kMaxSeq;
      uint8_t *f = audio.data() + k * kFrame;
      f[0] = static_cast<uint8_t>(c & 0xff);
      f[1] = static_cast<uint8_t>(c >> 8);
      f[2] = static_cast<uint8_t>(sq & 0xff);
      f[3] = static_cast<uint8_t>(sq >> 8);
    }
    std::string json = mock.audio_delta("resp_" + std::to_string(c), "item_" + std::to_string(c), audio);
    /* an unmasked text frame (server to client) */
    frame.clear();
    frame.push_back(static_cast<char>(0x81));
    if (json.size() < 126) {
      frame.push_back(static_cast<char>(json.size()));
    } else {
      frame.push_back(static_cast<char>(126));
      frame.push_back(static_cast<char>((json.size() >> 8) & 0xff));
      frame.push_back(static_cast<char>(json.size() & 0xff));
    }
    frame += json;
    gint64 t = g_get_monotonic_time();
    for (int k = 0; k < frames_per_delta; k++)
      st->sent[c][(due->seq + k) % kMaxSeq].store(t);
    ssize_t w = send(due->fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (w != static_cast<ssize_t>(frame.size()))
      short_writes++;
    due->seq = (due->seq + frames_per_delta) % kMaxSeq;
    due->next += period_us;
  }
  if (short_writes)
    g_printerr("%" G_GUINT64_FORMAT " short writes\n", short_writes);
  g_usleep(300 * 1000); /* the last frames */
  samples.recording = false;
  double cpu = cpu_seconds() - cpu0;
  std::pair<double, double> machine1 = machine_busy();
  double machine = machine1.second > machine0.second
                       ? 100.0 * (machine1.first - machine0.first) / (machine1.second - machine0.second)
                       : 0;
  double wall = (g_get_monotonic_time() - t_rec) / 1e6;

  std::vector<double> v;
  {
    std::lock_guard<std::mutex> g(samples.mu);
    v = samples.ms;
  }
  std::sort(v.begin(), v.end());
  size_t expected = static_cast<size_t>(seconds * 50) * calls;
  printf("%6d  %8d  %9zu  %9zu  %7.3f  %7.3f  %7.3f  %8.3f  %5.0f%%  %7.0f%%\n", calls, delta_ms, v.size(), expected,
         pct(v, 0.50), pct(v, 0.90), pct(v, 0.99), v.empty() ? 0.0 : v.back(), 100.0 * cpu / wall, machine);
  fflush(stdout);

  for (auto &c : pipes) {
    gst_element_set_state(c.pipe, GST_STATE_NULL);
    gst_object_unref(c.pipe);
    g_object_unref(c.call);
  }
  return !v.empty();
}

} // namespace

int main(int argc, char **argv) {
  /* this build's plugins, and a registry of our own */
  g_setenv("GST_PLUGIN_PATH_1_0", PA_BUILD_ROOT "/plugins/realtime:" PA_BUILD_ROOT "/plugins/twilio", FALSE);
  g_setenv("GST_REGISTRY_1_0", PA_BUILD_ROOT "/bench/realtime-relay/registry.dat", FALSE);
  gchar *calls_arg = nullptr;
  gdouble seconds = 10, warmup = 2;
  gint delta_ms = 20;
  GOptionEntry entries[] = {
      {"calls", 'c', 0, G_OPTION_ARG_STRING, &calls_arg, "Concurrent calls, comma-separated runs (default 1,300)", "N"},
      {"seconds", 's', 0, G_OPTION_ARG_DOUBLE, &seconds, "Measured seconds per run (default 10)", "S"},
      {"warmup", 'w', 0, G_OPTION_ARG_DOUBLE, &warmup, "Seconds streamed before measuring (default 2)", "S"},
      {"delta-ms", 'd', 0, G_OPTION_ARG_INT, &delta_ms, "Audio per model delta, a multiple of 20 ms (default 20)", "MS"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr},
  };
  GOptionContext *octx = g_option_context_new("- realtimemodel relay overhead");
  g_option_context_add_main_entries(octx, entries, nullptr);
  g_option_context_add_group(octx, gst_init_get_option_group());
  GError *err = nullptr;
  if (!g_option_context_parse(octx, &argc, &argv, &err)) {
    g_printerr("%s\n", err->message);
    return 2;
  }
  g_option_context_free(octx);
  gst_init(&argc, &argv);
  if (!gst_registry_find_feature(gst_registry_get(), "realtimemodel", GST_TYPE_ELEMENT_FACTORY)) {
    g_printerr("realtimemodel not found (build the project first)\n");
    return 2;
  }
  std::vector<int> runs;
  gchar **parts = g_strsplit(calls_arg ? calls_arg : "1,300", ",", -1);
  for (gchar **p = parts; *p; p++)
    runs.push_back(atoi(*p));
  g_strfreev(parts);
  g_free(calls_arg);

  printf("realtimemodel relay overhead: model audio delta written by the server -> media frame handed to the\n"
         "Twilio socket by twiliosink (deltas at real time per call, %.0f s measured after %.0f s warm-up)\n",
         seconds, warmup);
  printf("%6s  %8s  %9s  %9s  %7s  %7s  %7s  %8s  %6s  %8s\n", "calls", "delta_ms", "frames", "expected", "p50_ms",
         "p90_ms", "p99_ms", "max_ms", "cpu", "machine");
  printf("(cpu: this process, %% of one core; machine: all cores busy, %%, including other programs)\n");
  bool ok = true;
  for (int n : runs)
    if (n > 0)
      ok &= run(n, seconds, warmup, delta_ms);
  return ok ? 0 : 1;
}
