/* gst-phone-agent: the server's call log (SQLite). */
#include "pa-calllog.h"

#include <gst/gst.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>

GST_DEBUG_CATEGORY_STATIC(pa_calllog_debug);
#define GST_CAT_DEFAULT pa_calllog_debug

namespace pa {

namespace {

const int kSchemaVersion = 1;

const char *kSchema = R"sql(
CREATE TABLE IF NOT EXISTS calls (
  call_sid TEXT PRIMARY KEY,
  account_sid TEXT,
  stream_sid TEXT,
  from_number TEXT,
  to_number TEXT,
  parameters TEXT,
  instance TEXT,
  started_at TEXT,
  ended_at TEXT,
  duration_s REAL,
  end_reason TEXT,
  error TEXT,
  caller_audio_s REAL,
  agent_audio_s REAL,
  turns INTEGER,
  latency_p50_ms REAL,
  latency_max_ms REAL,
  barge_ins INTEGER,
  function_calls INTEGER,
  total_tokens INTEGER
);
CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at);
CREATE TABLE IF NOT EXISTS transcript (
  call_sid TEXT NOT NULL,
  seq INTEGER NOT NULL,
  running_time_s REAL,
  role TEXT,
  text TEXT,
  PRIMARY KEY (call_sid, seq)
);
CREATE TABLE IF NOT EXISTS events (
  call_sid TEXT NOT NULL,
  seq INTEGER NOT NULL,
  running_time_s REAL,
  name TEXT,
  detail TEXT,
  PRIMARY KEY (call_sid, seq)
);
)sql";

/* UTC, ISO 8601 with milliseconds */
std::string iso_time(gint64 us) {
  GDateTime *t = g_date_time_new_from_unix_utc(us / G_USEC_PER_SEC);
  if (!t)
    return {};
  gchar *s = g_date_time_format(t, "%Y-%m-%dT%H:%M:%S");
  g_date_time_unref(t);
  char ms[8];
  g_snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>((us % G_USEC_PER_SEC) / 1000));
  std::string out = std::string(s) + ms;
  g_free(s);
  return out;
}

std::string params_json(const twilio::Params &params) {
  std::string out = "{";
  for (const auto &[k, v] : params) {
    if (out.size() > 1)
      out += ',';
    out += '"';
    twilio::json_escape_append(out, k);
    out += "\":\"";
    twilio::json_escape_append(out, v);
    out += '"';
  }
  return out + "}";
}

} // namespace

/* A prepared statement, finalized on scope exit. */
struct CallLog::Stmt {
  sqlite3_stmt *s = nullptr;
  Stmt(sqlite3 *db, const char *sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~Stmt() { sqlite3_finalize(s); }
  explicit operator bool() const { return s != nullptr; }
  Stmt &text(int i, const std::string &v) {
    sqlite3_bind_text(s, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt &opt_text(int i, const std::string &v) {
    if (v.empty())
      sqlite3_bind_null(s, i);
    else
      text(i, v);
    return *this;
  }
  Stmt &real(int i, double v) {
    sqlite3_bind_double(s, i, v);
    return *this;
  }
  Stmt &integer(int i, gint64 v) {
    sqlite3_bind_int64(s, i, v);
    return *this;
  }
  bool run() {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  }
};

struct CallLog::Db {
  sqlite3 *db = nullptr;
  ~Db() {
    if (db)
      sqlite3_close(db);
  }
  bool exec(const char *sql, std::string &error) {
    char *msg = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) == SQLITE_OK)
      return true;
    error = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return false;
  }
  std::string why() const { return sqlite3_errmsg(db); }
};

std::unique_ptr<CallLog> CallLog::open(const std::string &path, std::string &error) {
  static gsize debug_once = 0;
  if (g_once_init_enter(&debug_once)) {
    GST_DEBUG_CATEGORY_INIT(pa_calllog_debug, "phoneagentcalllog", 0, "gst-phone-agent server call log");
    g_once_init_leave(&debug_once, 1);
  }
  std::unique_ptr<CallLog> log(new CallLog());
  log->db_ = std::make_unique<Db>();
  log->path_ = path;
  if (sqlite3_open_v2(path.c_str(), &log->db_->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    error = "cannot open the call log " + path + ": " +
            (log->db_->db ? log->db_->why() : std::string("out of memory"));
    return nullptr;
  }
  /* another process (a report, a second instance) may read or write it:
   * wait a little for its lock rather than lose a row */
  sqlite3_busy_timeout(log->db_->db, 2000);
  std::string why;
  /* WAL: readers never block the server; NORMAL: a commit does not wait
   * for the disk (a power cut may lose the last calls, never corrupt) */
  if (!log->db_->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", why) ||
      !log->db_->exec(kSchema, why)) {
    error = "cannot use the call log " + path + ": " + why;
    return nullptr;
  }
  {
    Stmt v(log->db_->db, "PRAGMA user_version");
    int version = v && sqlite3_step(v.s) == SQLITE_ROW ? sqlite3_column_int(v.s, 0) : 0;
    if (version > kSchemaVersion) {
      error = "the call log " + path + " was written by a newer version (schema " + std::to_string(version) + ")";
      return nullptr;
    }
  }
  if (!log->db_->exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(), why)) {
    error = "cannot use the call log " + path + ": " + why;
    return nullptr;
  }
  log->instance_ = std::string(g_get_host_name()) + ":" + std::to_string(getpid());
  log->thread_ = std::thread([raw = log.get()] { raw->run(); });
  return log;
}

CallLog::~CallLog() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join(); /* after what was queued */
  }
}

void CallLog::post(std::function<void()> job) {
  pending_++;
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void CallLog::run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    wake_.wait(l, [this] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) /* stop_, and nothing left */
      break;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    l.unlock();
    job();
    pending_--;
    l.lock();
  }
}

void CallLog::queue_write(CallLogEntry e, bool end) {
  post([this, end, e = std::move(e)] {
    std::string error;
    if (!(end ? write_ended(e, error) : write_started(e, error))) {
      errors_++;
      GST_WARNING("call %s: cannot write its %s to the call log %s: %s", e.call_sid.c_str(), end ? "end" : "start",
                  path_.c_str(), error.c_str());
    }
  });
}

void CallLog::started(const CallLogEntry &e) { queue_write(e, false); }

void CallLog::ended(CallLogEntry e) { queue_write(std::move(e), true); }

/* The columns known as the stream starts: 1 to 8. */
void CallLog::bind_start(Stmt &st, const CallLogEntry &e) const {
  st.text(1, e.call_sid)
      .opt_text(2, e.account_sid)
      .opt_text(3, e.stream_sid)
      .opt_text(4, e.from)
      .opt_text(5, e.to)
      .text(6, params_json(e.parameters))
      .text(7, instance_)
      .text(8, iso_time(e.started_us));
}

bool CallLog::write_started(const CallLogEntry &e, std::string &error) {
  Stmt st(db_->db, "INSERT OR REPLACE INTO calls (call_sid, account_sid, stream_sid, from_number, to_number, "
                   "parameters, instance, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (st)
    bind_start(st, e);
  if (!st || !st.run()) {
    error = db_->why();
    return false;
  }
  return true;
}

bool CallLog::write_ended(const CallLogEntry &e, std::string &error) {
  if (!db_->exec("BEGIN", error))
    return false;
  const CallLogMessages &m = e.messages;
  bool ok = true;
  {
    /* the whole row: if its start could not be written (the database was
     * locked, the disk full), the end writes it */
    Stmt up(db_->db, "INSERT INTO calls (call_sid, account_sid, stream_sid, from_number, to_number, parameters, "
                     "instance, started_at, ended_at, duration_s, end_reason, error, caller_audio_s, agent_audio_s, "
                     "turns, latency_p50_ms, latency_max_ms, barge_ins, function_calls, total_tokens) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (call_sid) DO UPDATE SET ended_at = excluded.ended_at, "
                     "duration_s = excluded.duration_s, end_reason = excluded.end_reason, error = excluded.error, "
                     "caller_audio_s = excluded.caller_audio_s, agent_audio_s = excluded.agent_audio_s, "
                     "turns = excluded.turns, latency_p50_ms = excluded.latency_p50_ms, "
                     "latency_max_ms = excluded.latency_max_ms, barge_ins = excluded.barge_ins, "
                     "function_calls = excluded.function_calls, total_tokens = excluded.total_tokens");
    ok = static_cast<bool>(up);
    if (ok) {
      bind_start(up, e);
      up.text(9, iso_time(e.ended_us))
          .real(10, static_cast<double>(e.ended_us - e.started_us) / 1e6)
          .text(11, e.end_reason)
          .opt_text(12, e.error)
          .real(13, e.caller_audio_s)
          .real(14, e.agent_audio_s)
          .integer(15, m.turns);
      if (m.latencies_ms.empty()) {
        sqlite3_bind_null(up.s, 16);
        sqlite3_bind_null(up.s, 17);
      } else {
        std::vector<double> l = m.latencies_ms;
        std::sort(l.begin(), l.end());
        size_t n = l.size();
        up.real(16, n % 2 ? l[n / 2] : (l[n / 2 - 1] + l[n / 2]) / 2).real(17, l.back());
      }
      up.integer(18, m.barge_ins).integer(19, m.function_calls).integer(20, m.total_tokens);
      ok = up.run();
    }
  }
  auto insert_lines = [&](const char *sql, const std::vector<CallLogMessages::Line> &lines) {
    Stmt ins(db_->db, sql);
    ok = ok && static_cast<bool>(ins);
    for (size_t i = 0; ok && i < lines.size(); i++)
      ok = ins.text(1, e.call_sid)
               .integer(2, static_cast<gint64>(i))
               .real(3, lines[i].running_time_s)
               .text(4, lines[i].a)
               .text(5, lines[i].b)
               .run();
  };
  insert_lines("INSERT OR REPLACE INTO transcript (call_sid, seq, running_time_s, role, text) VALUES (?, ?, ?, ?, ?)",
               m.transcript);
  insert_lines("INSERT OR REPLACE INTO events (call_sid, seq, running_time_s, name, detail) VALUES (?, ?, ?, ?, ?)",
               m.events);
  if (ok && db_->exec("COMMIT", error))
    return true;
  if (!ok)
    error = db_->why();
  /* a COMMIT that failed (busy, disk full) may leave the transaction
   * open: every later BEGIN would fail with it */
  if (!sqlite3_get_autocommit(db_->db)) {
    std::string ignored;
    db_->exec("ROLLBACK", ignored);
  }
  return false;
}

} // namespace pa
