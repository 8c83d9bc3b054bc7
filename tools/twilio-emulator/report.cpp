/* twilio-emulator: JSON report and human summary */
#include "report.h"

#include <glib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "stats.h"

namespace emu {

bool outcome_ok(const std::string &outcome) {
  return outcome == "completed" || outcome == "busy" || outcome == "injected";
}

namespace {

constexpr double kFellBehindUs = 20000;

/* A small pretty-printing JSON writer (fixed decimals for readable figures). */
class JsonOut {
public:
  void begin_object(bool compact = false) { open('{', compact); }
  void end_object() { close('}'); }
  void begin_array(bool compact = false) { open('[', compact); }
  void end_array() { close(']'); }
  JsonOut &key(const char *k) {
    separator();
    quoted(k);
    s_ += compact() ? ":" : ": ";
    after_key_ = true;
    return *this;
  }
  void str(std::string_view v) {
    separator();
    quoted(v);
  }
  void num(double v, int decimals = 3) {
    separator();
    if (!std::isfinite(v)) {
      s_ += "null";
      return;
    }
    char buf[64];
    g_snprintf(buf, sizeof buf, "%.*f", decimals, v);
    s_ += buf;
  }
  void integer(int64_t v) {
    separator();
    s_ += std::to_string(v);
  }
  void boolean(bool v) {
    separator();
    s_ += v ? "true" : "false";
  }
  void null() {
    separator();
    s_ += "null";
  }
  const std::string &text() const { return s_; }

private:
  struct Level {
    bool first = true;
    bool compact = false;
  };
  bool compact() const { return !levels_.empty() && levels_.back().compact; }
  void quoted(std::string_view v) {
    s_.push_back('"');
    pa::twilio::json_escape_append(s_, v);
    s_.push_back('"');
  }
  void newline() {
    s_.push_back('\n');
    s_.append(levels_.size() * 2, ' ');
  }
  void separator() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (levels_.empty())
      return;
    if (!levels_.back().first)
      s_ += compact() ? ", " : ",";
    levels_.back().first = false;
    if (!compact())
      newline();
  }
  void open(char c, bool compact_level) {
    separator();
    s_.push_back(c);
    levels_.push_back({true, compact_level || compact()});
  }
  void close(char c) {
    Level l = levels_.back();
    levels_.pop_back();
    if (!l.first && !l.compact)
      newline();
    s_.push_back(c);
  }

  std::string s_;
  std::vector<Level> levels_;
  bool after_key_ = false;
};

void summary(JsonOut &j, const char *name, std::vector<double> values, int decimals) {
  Summary s = summarize(values);
  j.key(name).begin_object(true);
  j.key("count").integer(static_cast<int64_t>(s.count));
  if (s.count) {
    j.key("mean").num(s.mean, decimals);
    j.key("p50").num(s.p50, decimals);
    j.key("p95").num(s.p95, decimals);
    j.key("p99").num(s.p99, decimals);
    j.key("max").num(s.max, decimals);
  }
  j.end_object();
}

void optional_ms(JsonOut &j, const char *name, const std::optional<double> &v) {
  j.key(name);
  if (v)
    j.num(*v, 1);
  else
    j.null();
}

void string_list(JsonOut &j, const char *name, const std::vector<std::string> &v) {
  j.key(name).begin_array(true);
  for (const auto &s : v)
    j.str(s);
  j.end_array();
}

void write_call(JsonOut &j, const CallReport &c) {
  j.begin_object();
  j.key("index").integer(c.index);
  j.key("call_sid").str(c.call_sid);
  j.key("stream_sid").str(c.stream_sid);
  j.key("outcome").str(c.outcome);
  j.key("ok").boolean(outcome_ok(c.outcome));
  if (!c.error.empty())
    j.key("error").str(c.error);
  string_list(j, "warnings", c.warnings);
  j.key("http_status").integer(c.http_status);
  j.key("twiml").begin_object();
  j.key("has_stream").boolean(c.has_stream);
  j.key("stream_url").str(c.stream_url);
  j.key("parameters").begin_object(true);
  for (const auto &[k, v] : c.parameters)
    j.key(k.c_str()).str(v);
  j.end_object();
  j.key("says").str(c.says);
  j.key("hangup").boolean(c.hangup);
  j.end_object();
  j.key("transport").str(c.transport);
  j.key("closed_by").str(c.closed_by);
  j.key("close_code").integer(c.close_code);
  j.key("close_reason").str(c.close_reason);
  j.key("server_close_code").integer(c.server_close_code);
  j.key("started_ms").num(c.started_ms, 1);
  j.key("webhook_ms").num(c.webhook_ms, 1);
  j.key("connect_ms").num(c.connect_ms, 1);
  j.key("stream_ms").num(c.stream_ms, 1);
  j.key("messages_sent").integer(static_cast<int64_t>(c.messages_sent));
  j.key("frames_sent").integer(static_cast<int64_t>(c.frames_sent));
  j.key("dtmf_sent").integer(static_cast<int64_t>(c.dtmf_sent));
  string_list(j, "injected", c.injected);
  j.key("messages_received").integer(static_cast<int64_t>(c.messages_received));
  j.key("media_received").integer(static_cast<int64_t>(c.media_received));
  j.key("bytes_received").integer(static_cast<int64_t>(c.bytes_received));
  j.key("marks_received").integer(static_cast<int64_t>(c.marks_received));
  j.key("marks_echoed").integer(static_cast<int64_t>(c.marks_echoed));
  j.key("marks_echoed_on_clear").integer(static_cast<int64_t>(c.marks_echoed_on_clear));
  j.key("clears_received").integer(static_cast<int64_t>(c.clears_received));
  j.key("played_ms").num(c.played_ms, 1);
  j.key("cleared_ms").num(c.cleared_ms, 1);
  j.key("max_buffered_ms").num(c.max_buffered_ms, 1);
  j.key("underruns").integer(static_cast<int64_t>(c.underruns));
  j.key("underrun_ms").num(c.underrun_ms, 1);
  j.key("underrun_spans_us").begin_array(true);
  for (const auto &u : c.underrun_spans) {
    j.begin_array(true);
    j.integer(u.start_us);
    j.integer(u.end_us);
    j.end_array();
  }
  j.end_array();
  j.key("protocol_error_count").integer(static_cast<int64_t>(c.protocol_error_count));
  j.key("protocol_errors").begin_array();
  for (const auto &e : c.protocol_errors) {
    j.begin_object(true);
    j.key("t_ms").num(e.t_ms, 1);
    j.key("kind").str(e.kind);
    j.key("detail").str(e.detail);
    j.end_object();
  }
  j.end_array();
  std::vector<double> pacing(c.pacing_us.begin(), c.pacing_us.end());
  summary(j, "pacing_error_us", pacing, 0);
  j.key("turns").begin_array();
  for (const auto &t : c.turns) {
    j.begin_object(true);
    j.key("onset_ms").integer(t.onset_ms);
    j.key("end_ms").integer(t.end_ms);
    j.key("ended").boolean(t.ended);
    j.key("response_latency_ms");
    if (t.latency_ms)
      j.integer(*t.latency_ms);
    else
      j.null();
    j.end_object();
  }
  j.end_array();
  j.key("clears").begin_array();
  for (const auto &cl : c.clears) {
    j.begin_object(true);
    j.key("t_ms").num(cl.t_ms, 1);
    optional_ms(j, "since_onset_ms", cl.since_onset_ms);
    j.key("dropped_ms").num(static_cast<double>(cl.dropped_bytes) / 8.0, 1);
    optional_ms(j, "audio_stop_ms", cl.audio_stop_ms);
    optional_ms(j, "audio_stop_since_onset_ms", cl.audio_stop_since_onset_ms);
    j.key("played_ms_at_clear").num(cl.played_ms_at_clear, 1);
    j.key("played_total_ms").num(cl.played_total_ms, 1);
    optional_ms(j, "leaked_ms", cl.leaked_ms);
    j.end_object();
  }
  j.end_array();
  j.key("files").begin_object(true);
  if (!c.heard_path.empty())
    j.key("heard").str(c.heard_path);
  if (!c.received_path.empty())
    j.key("received").str(c.received_path);
  j.end_object();
  j.end_object();
}

struct Totals {
  std::map<std::string, int> outcomes;
  uint64_t frames = 0, messages_sent = 0, dtmf = 0, messages_received = 0, media = 0, bytes = 0, marks = 0,
           echoed = 0, echoed_on_clear = 0, clears = 0, underruns = 0, protocol_errors = 0;
  double underrun_ms = 0, call_seconds = 0;
  std::vector<double> pacing_us, latency_ms, clear_ms, stop_ms, leaked_ms, webhook_ms, connect_ms;
  size_t turns_ended = 0;
  bool ok = true;
};

/* p99 pacing error above one frame: the emulator could not keep real time,
 * so the timings it measured are not to be trusted. */
bool fell_behind(std::vector<double> pacing_us) {
  Summary s = summarize(pacing_us);
  return s.count && s.p99 > kFellBehindUs;
}

Totals totals(const std::vector<CallReport> &calls) {
  Totals t;
  for (const auto &c : calls) {
    t.outcomes[c.outcome]++;
    t.ok = t.ok && outcome_ok(c.outcome);
    t.frames += c.frames_sent;
    t.messages_sent += c.messages_sent;
    t.dtmf += c.dtmf_sent;
    t.messages_received += c.messages_received;
    t.media += c.media_received;
    t.bytes += c.bytes_received;
    t.marks += c.marks_received;
    t.echoed += c.marks_echoed;
    t.echoed_on_clear += c.marks_echoed_on_clear;
    t.clears += c.clears_received;
    t.underruns += c.underruns;
    t.underrun_ms += c.underrun_ms;
    t.protocol_errors += c.protocol_error_count;
    t.call_seconds += c.stream_ms / 1000.0;
    t.pacing_us.insert(t.pacing_us.end(), c.pacing_us.begin(), c.pacing_us.end());
    for (const auto &turn : c.turns) {
      t.turns_ended += turn.ended;
      if (turn.latency_ms)
        t.latency_ms.push_back(static_cast<double>(*turn.latency_ms));
    }
    for (const auto &cl : c.clears) {
      if (cl.since_onset_ms)
        t.clear_ms.push_back(*cl.since_onset_ms);
      if (cl.audio_stop_since_onset_ms)
        t.stop_ms.push_back(*cl.audio_stop_since_onset_ms);
      if (cl.leaked_ms)
        t.leaked_ms.push_back(*cl.leaked_ms);
    }
    if (c.http_status)
      t.webhook_ms.push_back(c.webhook_ms);
    if (c.connect_ms > 0)
      t.connect_ms.push_back(c.connect_ms);
  }
  return t;
}

} // namespace

bool write_report(const std::string &path, const std::vector<CallReport> &calls, const RunInfo &run,
                  std::string &error) {
  Totals t = totals(calls);
  JsonOut j;
  j.begin_object();
  j.key("tool").str("twilio-emulator");
  j.key("url").str(run.url);
  j.key("source").str(run.source);
  j.key("calls_requested").integer(run.calls);
  j.key("sequential").boolean(run.sequential);
  j.key("ramp_ms").integer(run.ramp_ms);
  j.key("phases").integer(run.phases);
  j.key("timed_out").boolean(run.timed_out);
  if (!run.capture_path.empty())
    j.key("capture").str(run.capture_path);

  j.key("totals").begin_object();
  j.key("calls").integer(static_cast<int64_t>(calls.size()));
  j.key("ok").boolean(t.ok);
  j.key("outcomes").begin_object(true);
  for (const auto &[k, v] : t.outcomes)
    j.key(k.c_str()).integer(v);
  j.end_object();
  j.key("call_seconds").num(t.call_seconds, 1);
  j.key("messages_sent").integer(static_cast<int64_t>(t.messages_sent));
  j.key("frames_sent").integer(static_cast<int64_t>(t.frames));
  j.key("dtmf_sent").integer(static_cast<int64_t>(t.dtmf));
  j.key("messages_received").integer(static_cast<int64_t>(t.messages_received));
  j.key("media_received").integer(static_cast<int64_t>(t.media));
  j.key("bytes_received").integer(static_cast<int64_t>(t.bytes));
  j.key("marks_received").integer(static_cast<int64_t>(t.marks));
  j.key("marks_echoed").integer(static_cast<int64_t>(t.echoed));
  j.key("marks_echoed_on_clear").integer(static_cast<int64_t>(t.echoed_on_clear));
  j.key("clears_received").integer(static_cast<int64_t>(t.clears));
  j.key("underruns").integer(static_cast<int64_t>(t.underruns));
  j.key("underrun_ms").num(t.underrun_ms, 1);
  j.key("protocol_errors").integer(static_cast<int64_t>(t.protocol_errors));
  j.key("turns_ended").integer(static_cast<int64_t>(t.turns_ended));
  j.key("fell_behind").boolean(fell_behind(t.pacing_us));
  summary(j, "pacing_error_us", t.pacing_us, 0);
  summary(j, "response_latency_ms", t.latency_ms, 1);
  summary(j, "clear_after_onset_ms", t.clear_ms, 1);
  summary(j, "audio_stop_after_onset_ms", t.stop_ms, 1);
  summary(j, "leaked_ms", t.leaked_ms, 1);
  summary(j, "webhook_ms", t.webhook_ms, 1);
  summary(j, "connect_ms", t.connect_ms, 1);
  j.end_object();

  j.key("process").begin_object(true);
  j.key("wall_s").num(run.wall_s, 3);
  j.key("cpu_user_s").num(run.cpu_user_s, 3);
  j.key("cpu_sys_s").num(run.cpu_sys_s, 3);
  j.key("cpu_ms_per_call_second")
      .num(t.call_seconds > 0 ? (run.cpu_user_s + run.cpu_sys_s) * 1000.0 / t.call_seconds : 0, 3);
  j.key("max_rss_kb").integer(run.max_rss_kb);
  j.end_object();

  j.key("calls").begin_array();
  for (const auto &c : calls)
    write_call(j, c);
  j.end_array();
  j.end_object();

  std::string text = j.text() + "\n";
  GError *err = nullptr;
  if (!g_file_set_contents(path.c_str(), text.data(), static_cast<gssize>(text.size()), &err)) {
    error = std::string("cannot write report: ") + err->message;
    g_error_free(err);
    return false;
  }
  return true;
}

void print_summary(FILE *out, const std::vector<CallReport> &calls, const RunInfo &run, bool per_call) {
  Totals t = totals(calls);
  fprintf(out, "twilio-emulator: %zu call(s) to %s (%s)\n", calls.size(), run.url.c_str(), run.source.c_str());
  if (per_call) {
    for (const auto &c : calls) {
      std::vector<double> p(c.pacing_us.begin(), c.pacing_us.end());
      Summary ps = summarize(p);
      fprintf(out, "  call %d %s: %s", c.index, c.call_sid.c_str(), c.outcome.c_str());
      if (!c.closed_by.empty())
        fprintf(out, " (closed by %s, %d)", c.closed_by.c_str(), c.close_code);
      fprintf(out, ", %llu frames sent, %llu bytes received, marks %llu/%llu, clears %llu, underruns %llu, "
                   "protocol errors %llu",
              static_cast<unsigned long long>(c.frames_sent), static_cast<unsigned long long>(c.bytes_received),
              static_cast<unsigned long long>(c.marks_echoed), static_cast<unsigned long long>(c.marks_received),
              static_cast<unsigned long long>(c.clears_received), static_cast<unsigned long long>(c.underruns),
              static_cast<unsigned long long>(c.protocol_error_count));
      if (ps.count)
        fprintf(out, ", pacing p99 %.2f ms", ps.p99 / 1000.0);
      fprintf(out, "\n");
      if (!c.error.empty())
        fprintf(out, "    error: %s\n", c.error.c_str());
      if (!c.says.empty() && !c.has_stream)
        fprintf(out, "    TwiML: <Say>%s</Say>%s\n", c.says.c_str(), c.hangup ? " <Hangup/>" : "");
    }
  }
  fprintf(out, "outcomes:");
  for (const auto &[k, v] : t.outcomes)
    fprintf(out, " %s=%d", k.c_str(), v);
  fprintf(out, "\n");
  fprintf(out, "sent %llu frames; received %llu bytes of audio, %llu marks (%llu echoed), %llu clears; "
               "%llu underruns (%.0f ms); %llu protocol errors\n",
          static_cast<unsigned long long>(t.frames), static_cast<unsigned long long>(t.bytes),
          static_cast<unsigned long long>(t.marks), static_cast<unsigned long long>(t.echoed),
          static_cast<unsigned long long>(t.clears), static_cast<unsigned long long>(t.underruns), t.underrun_ms,
          static_cast<unsigned long long>(t.protocol_errors));
  Summary p = summarize(t.pacing_us);
  if (p.count)
    fprintf(out, "pacing error (ms): p50 %.3f  p95 %.3f  p99 %.3f  max %.3f  (%zu frames)\n", p.p50 / 1000.0,
            p.p95 / 1000.0, p.p99 / 1000.0, p.max / 1000.0, p.count);
  if (p.count && p.p99 > kFellBehindUs)
    fprintf(out, "warning: the emulator fell behind real time (pacing error p99 %.0f ms > 20 ms): the timings "
                 "above are unreliable; use fewer calls, --transport raw or a less loaded machine\n",
            p.p99 / 1000.0);
  Summary l = summarize(t.latency_ms);
  if (l.count)
    fprintf(out, "response latency (ms): p50 %.0f  p95 %.0f  p99 %.0f  max %.0f  (%zu of %zu ended turns)\n", l.p50,
            l.p95, l.p99, l.max, l.count, t.turns_ended);
  Summary c = summarize(t.clear_ms);
  if (c.count)
    fprintf(out, "clear after caller onset (ms): p50 %.0f  p95 %.0f  p99 %.0f  max %.0f  (%zu clears)\n", c.p50,
            c.p95, c.p99, c.max, c.count);
  Summary st = summarize(t.stop_ms);
  if (st.count)
    fprintf(out, "agent audio stopped after caller onset (ms): p50 %.0f  p95 %.0f  p99 %.0f  max %.0f\n", st.p50,
            st.p95, st.p99, st.max);
  Summary lk = summarize(t.leaked_ms);
  if (lk.count)
    fprintf(out, "audio leaked after clear (ms): p50 %.0f  p95 %.0f  max %.0f\n", lk.p50, lk.p95, lk.max);
  double cpu = run.cpu_user_s + run.cpu_sys_s;
  fprintf(out, "process: wall %.1f s, cpu %.2f s user + %.2f s sys", run.wall_s, run.cpu_user_s, run.cpu_sys_s);
  if (t.call_seconds > 0)
    fprintf(out, " = %.2f ms per call-second (%.0f call-seconds)", cpu * 1000.0 / t.call_seconds, t.call_seconds);
  fprintf(out, ", peak RSS %.1f MiB\n", static_cast<double>(run.max_rss_kb) / 1024.0);
}

} // namespace emu
