/* gst-phone-agent: the per-call server (one pipeline per call) */
#include "pa-server.h"

#include <libsoup/soup.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pa-call.h"
#include "pa-calllog.h"
#include "pa-listener.h"
#include "twilio-protocol.h"

GST_DEBUG_CATEGORY_STATIC(pa_server_debug);
#define GST_CAT_DEFAULT pa_server_debug

G_DEFINE_QUARK(pa-server-error-quark, pa_server_error)

#define DEFAULT_ADDRESS "0.0.0.0"
#define DEFAULT_PORT 8080
#define DEFAULT_WEBHOOK_PATH "/twilio/voice"
#define DEFAULT_STREAM_PATH "/twilio/media"
#define DEFAULT_METRICS_PATH "/metrics"
#define DEFAULT_BUSY_MESSAGE "Sorry, all our agents are busy right now. Please call again later. Goodbye."
#define DEFAULT_MAX_CALLS 100
#define DEFAULT_RESERVATION_TIMEOUT 30000
#define DEFAULT_START_TIMEOUT 10000
#define DEFAULT_END_TIMEOUT 5000
#define DEFAULT_CLOSE_TIMEOUT 6000
#define DEFAULT_MEDIA_THREADS -1
#define DEFAULT_MEDIA_WAIT 10
#define DEFAULT_MEDIA_FILL 50
#define DEFAULT_OUT_DIR "."

/* WebSocket close codes we use */
static constexpr gushort kCloseNormal = 1000;    /* the call is over */
static constexpr gushort kCloseGoingAway = 1001; /* server shutting down */
static constexpr gushort kClosePolicy = 1008;    /* no start in time */
static constexpr gushort kCloseError = 1011;     /* the pipeline failed */

/* Threads that build, start and stop pipelines (more wait when they are all
 * busy: only an element that blocks for long in a state change keeps one). */
static constexpr gint kMaxWorkers = 8;

/* Prometheus' text format of the stats: each field a metric named
 * phoneagent_<field> ('-' as '_'); 64-bit fields are totals since the
 * server started (counters, "_total"), the others values now (gauges). */
namespace {

const struct {
  const char *field, *help;
} kMetricHelp[] = {
    {"calls-active", "Calls with a running pipeline."},
    {"calls-connecting", "Streams connected whose start message has not come yet."},
    {"calls-reserved", "Webhooks answered whose stream has not connected yet."},
    {"calls-closing", "Calls whose pipeline is gone and whose socket is still closing."},
    {"max-calls", "The limit of concurrent calls (0: none)."},
    {"pipelines-live", "Pipelines built and not yet finalized."},
    {"call-objects-live", "Call objects not yet finalized."},
    {"webhooks-admitted", "Webhooks answered with a stream."},
    {"calls-turned-away", "Webhooks answered with the busy message."},
    {"streams-accepted", "Media Streams WebSockets taken."},
    {"streams-refused", "Media Streams WebSockets refused (full or draining)."},
    {"streams-without-start", "Streams closed without a start message."},
    {"calls-started", "Call pipelines started."},
    {"calls-completed", "Calls ended by the end of their stream (EOS)."},
    {"calls-failed", "Calls ended by a pipeline that did not build, did not start or posted an error."},
    {"calls-forced", "Calls stopped after end-timeout."},
    {"draining", "1 once the server stopped taking calls (SIGTERM, pa_server_drain())."},
    {"media-wakeups", "Wake-ups of the media threads."},
    {"media-ready", "Sockets ready at those wake-ups."},
    {"media-threads-busy", "Media threads that have calls now."},
    {"bad-signatures", "Webhooks and stream upgrades refused for a missing or invalid X-Twilio-Signature."},
    {"call-log-pending", "Call log writes queued and not done yet."},
    {"call-log-errors", "Call log writes that failed (each also logged)."},
};

gboolean append_metric(GQuark field, const GValue *value, gpointer user_data) {
  auto &out = *static_cast<std::string *>(user_data);
  const char *name = g_quark_to_string(field);
  std::string metric = "phoneagent_" + std::string(name);
  std::replace(metric.begin(), metric.end(), '-', '_');
  std::string number;
  bool counter = false;
  if (G_VALUE_HOLDS_UINT64(value)) {
    counter = true;
    metric += "_total";
    number = std::to_string(g_value_get_uint64(value));
  } else if (G_VALUE_HOLDS_UINT(value)) {
    number = std::to_string(g_value_get_uint(value));
  } else if (G_VALUE_HOLDS_INT(value)) {
    number = std::to_string(g_value_get_int(value));
  } else if (G_VALUE_HOLDS_BOOLEAN(value)) {
    number = g_value_get_boolean(value) ? "1" : "0";
  } else {
    return TRUE; /* not a number */
  }
  const char *help = "See docs/server.md, Statistics.";
  for (const auto &h : kMetricHelp)
    if (strcmp(h.field, name) == 0)
      help = h.help;
  out += "# HELP " + metric + " " + help + "\n";
  out += "# TYPE " + metric + (counter ? " counter\n" : " gauge\n");
  out += metric + " " + number + "\n";
  return TRUE;
}

} // namespace

gchar *pa_server_get_metrics(PaServer *server) {
  g_return_val_if_fail(PA_IS_SERVER(server), nullptr);
  GstStructure *s = pa_server_get_stats(server);
  std::string out;
  gst_structure_foreach(s, append_metric, &out);
  gst_structure_free(s);
  return g_strndup(out.data(), out.size());
}

/* ------------------------------------------------------------ templates */

namespace {

bool is_name_char(char c) { return g_ascii_isalnum(c) || c == '_'; }

/* Characters passed through as they are; everything else (ASCII) gets a
 * backslash, which gst_parse's lexer keeps inside the value and its
 * unescaping removes. Bytes >= 0x80 (UTF-8) are plain value characters. */
bool is_plain_value_char(unsigned char c) {
  return g_ascii_isalnum(c) || c >= 0x80 || strchr("_-./:@+,%", c) != nullptr;
}

void append_escaped(std::string &out, const char *v) {
  for (const unsigned char *p = reinterpret_cast<const unsigned char *>(v); *p; p++) {
    unsigned char c = *p;
    if (is_plain_value_char(c)) {
      out.push_back(static_cast<char>(c));
    } else if (c == '\n' || c == '\r') {
      /* a backslash cannot escape a newline in the lexer: make it a space */
      out += "\\ ";
    } else {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    }
  }
}

const char *const kCallVariables[] = {"call_sid", "stream_sid", "account_sid", "from", "to", "out_dir",
                                      "recordings_dir"};

bool known_variable(const std::string &name) {
  if (name.rfind("param.", 0) == 0)
    return name.size() > 6;
  for (const char *v : kCallVariables)
    if (name == v)
      return true;
  return false;
}

using Lookup = std::function<const char *(const std::string &name)>;

/* The expansion itself; with @lookup == nullptr it only checks. */
bool expand(const char *tmpl, const Lookup &lookup, std::string &out, GError **error) {
  out.clear();
  bool in_quotes = false;
  bool token_has_assign = false, token_has_variable = false;
  size_t value_start = 0;
  auto end_token = [&]() {
    /* a value that expanded to nothing must still be a value */
    if (token_has_variable && out.size() == value_start)
      out += "\"\"";
    token_has_assign = token_has_variable = false;
  };
  for (const char *p = tmpl; *p; p++) {
    char c = *p;
    if (in_quotes) {
      if (c == '$' && p[1] == '{') {
        g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE,
                    "a variable is inside quotes near \"%.30s\": write it unquoted (name=${...}), values are "
                    "escaped for you",
                    p);
        return false;
      }
      out.push_back(c);
      if (c == '\\' && p[1]) {
        out.push_back(*++p);
      } else if (c == '"') {
        in_quotes = false;
      }
      continue;
    }
    if (g_ascii_isspace(c)) {
      end_token();
      out.push_back(' ');
      continue;
    }
    if (c == '"') {
      in_quotes = true;
      out.push_back(c);
      continue;
    }
    if (c == '\\' && p[1]) {
      out.push_back(c);
      out.push_back(*++p);
      continue;
    }
    if (c == '=' && !token_has_assign) {
      token_has_assign = true;
      out.push_back(c);
      value_start = out.size();
      continue;
    }
    if (c == '$' && p[1] == '$') {
      out.push_back('$');
      p++;
      continue;
    }
    if (c == '$' && p[1] == '{') {
      const char *start = p + 2;
      const char *close = strchr(start, '}');
      if (!close) {
        g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "unterminated variable near \"%.30s\"", p);
        return false;
      }
      std::string body(start, static_cast<size_t>(close - start));
      std::string name = body, def;
      bool has_default = false;
      size_t dpos = body.find(":-");
      if (dpos != std::string::npos) {
        name = body.substr(0, dpos);
        def = body.substr(dpos + 2);
        has_default = true;
      }
      bool valid = !name.empty();
      for (size_t i = 0; i < name.size() && valid; i++) {
        char n = name[i];
        valid = is_name_char(n) || ((n == '.' || n == '-') && name.rfind("param.", 0) == 0 && i >= 5);
      }
      if (!valid || !known_variable(name)) {
        g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE,
                    "unknown variable ${%s}: the variables are ${call_sid}, ${stream_sid}, ${account_sid}, "
                    "${from}, ${to}, ${out_dir}, ${recordings_dir} and ${param.NAME} (a custom parameter)",
                    body.c_str());
        return false;
      }
      if (has_default && name.rfind("param.", 0) != 0) {
        g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE,
                    "${%s}: only ${param.NAME} variables take a default", body.c_str());
        return false;
      }
      if (!token_has_assign) {
        g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE,
                    "${%s} must be part of a property value, as in location=${%s} (no spaces around '=')",
                    name.c_str(), name.c_str());
        return false;
      }
      token_has_variable = true;
      const char *value = lookup ? lookup(name) : "x";
      if (!value)
        value = def.c_str();
      append_escaped(out, value);
      p = close;
      continue;
    }
    out.push_back(c);
  }
  if (in_quotes) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "unterminated quote in the pipeline template");
    return false;
  }
  end_token();
  return true;
}

std::string strip_comments(const char *text) {
  std::string out;
  const char *line = text;
  while (*line) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? static_cast<size_t>(nl - line) : strlen(line);
    const char *q = line;
    while (q < line + len && g_ascii_isspace(*q))
      q++;
    if (q < line + len && *q != '#') {
      if (!out.empty())
        out.push_back(' ');
      out.append(line, len);
    }
    if (!nl)
      break;
    line = nl + 1;
  }
  /* trim */
  size_t b = 0, e = out.size();
  while (b < e && g_ascii_isspace(out[b]))
    b++;
  while (e > b && g_ascii_isspace(out[e - 1]))
    e--;
  return out.substr(b, e - b);
}

} // namespace

gchar *pa_pipeline_template_strip_comments(const gchar *text) {
  g_return_val_if_fail(text != nullptr, nullptr);
  return g_strdup(strip_comments(text).c_str());
}

gchar *pa_pipeline_template_escape_value(const gchar *value) {
  std::string out;
  append_escaped(out, value ? value : "");
  return g_strdup(out.c_str());
}

gchar *pa_pipeline_template_expand(const gchar *tmpl, GHashTable *variables, GError **error) {
  g_return_val_if_fail(tmpl != nullptr, nullptr);
  std::string out;
  Lookup lookup = [variables](const std::string &name) -> const char * {
    if (!variables)
      return nullptr;
    return static_cast<const char *>(g_hash_table_lookup(variables, name.c_str()));
  };
  if (!expand(tmpl, lookup, out, error))
    return nullptr;
  return g_strdup(out.c_str());
}

/* ------------------------------------------------------------ the server */

namespace {

enum class CallState { Connecting, Running, Closing };

struct Reservation {
  std::string call_sid;
  gint64 deadline_us = 0;
};

/* A call's bus messages go to the server's context through a sync handler
 * and an ordered queue, not a bus watch: a watch would add one more file
 * descriptor per call to the server's poll set, scanned on every wake-up. */
struct BusRelay {
  std::mutex lock;
  std::deque<GstMessage *> queue;
  bool scheduled = false;
  GWeakRef server;
  guint64 id = 0;
  GMainContext *context = nullptr;
  PaCall *call = nullptr;
  /* with a call log: what it records of the call's messages, gathered here
   * on the thread that posts them (under lock), so that they need not wake
   * the server's context */
  const bool logging;
  pa::CallLogMessages gathered;
  /* the messages of the last events in gathered.events, whose fields
   * (Line::b) are still to be written: kept (a ref) and written out as
   * text kWriteOutBatch at a time, and the rest when the call ends. One at a time, as they were posted,
   * gst_structure_to_string() found its tables cold on every message
   * (docs/performance.md, "Session 26") */
  std::vector<GstMessage *> unwritten;

  BusRelay(PaServer *s, guint64 call_id, GMainContext *ctx, PaCall *c, bool log)
      : id(call_id), context(g_main_context_ref(ctx)), call(PA_CALL(g_object_ref(c))), logging(log) {
    g_weak_ref_init(&server, s);
  }
  ~BusRelay() {
    for (GstMessage *m : queue)
      gst_message_unref(m);
    for (GstMessage *m : unwritten)
      gst_message_unref(m);
    g_weak_ref_clear(&server);
    g_main_context_unref(context);
    g_object_unref(call);
  }
};
using BusRelayRef = std::shared_ptr<BusRelay>;

struct CallEntry {
  guint64 id = 0;
  PaCall *call = nullptr;                 /* ref */
  bool has_socket = false;                /* the listener gave the call a socket */
  gulong started_id = 0, ended_id = 0;
  GstElement *pipeline = nullptr;         /* ref, from its build until it is back in NULL */
  GSource *timer = nullptr;               /* start, end or close timeout */
  CallState state = CallState::Connecting;
  bool claimed = false;                   /* took a webhook's reservation */
  Reservation reservation;
  bool started = false;                   /* the start message arrived */
  bool call_ended = false;                /* stop, or the socket closed */
  bool socket_closed = false;
  bool close_timed_out = false;
  bool eos_sent = false;
  bool worker_busy = false;               /* a build or state change of this call is under way */
  bool playing = false;                   /* the pipeline was asked to play and is not back in NULL */
  bool ended_emitted = false;
  std::string end_reason;                 /* why the call ended (PaCall) */
  std::string final_reason;               /* reason of call-ended */
  std::string call_sid;                   /* for logs: CallSid once started */
  gint64 started_us = 0;
  std::unique_ptr<pa::CallLogEntry> log;  /* with a call log: what it will say of this call */
  std::shared_ptr<BusRelay> relay;        /* the pipeline's bus relay: what it gathered for the log */
};

/* Live pipelines and call objects, counted by weak references; shared with
 * the weak-reference callbacks, which may outlive the server. */
struct LiveCounts {
  std::atomic<gint> pipelines{0};
  std::atomic<gint> calls{0};
};
using LiveCountsRef = std::shared_ptr<LiveCounts>;

struct Settings {
  std::string address = DEFAULT_ADDRESS;
  int port = DEFAULT_PORT;
  std::string public_url;
  std::string webhook_path = DEFAULT_WEBHOOK_PATH;
  std::string stream_path = DEFAULT_STREAM_PATH;
  std::string metrics_path = DEFAULT_METRICS_PATH;
  std::string call_log; /* SQLite file; empty: none */
  std::string auth_token;
  std::string busy_message = DEFAULT_BUSY_MESSAGE;
  std::string greeting;
  guint max_calls = DEFAULT_MAX_CALLS;
  guint reservation_timeout = DEFAULT_RESERVATION_TIMEOUT;
  guint start_timeout = DEFAULT_START_TIMEOUT;
  guint end_timeout = DEFAULT_END_TIMEOUT;
  guint close_timeout = DEFAULT_CLOSE_TIMEOUT;
  gint media_threads = DEFAULT_MEDIA_THREADS;
  guint media_wait = DEFAULT_MEDIA_WAIT;
  guint media_fill = DEFAULT_MEDIA_FILL;
  std::string out_dir = DEFAULT_OUT_DIR;
  std::string pipeline; /* comment-free template */
};

struct Counters {
  guint64 streams_accepted = 0, streams_refused = 0, streams_without_start = 0;
  guint64 calls_started = 0, calls_completed = 0, calls_failed = 0, calls_forced = 0;
  guint64 webhooks_admitted = 0, turned_away = 0;
  guint connecting = 0, running = 0, closing = 0, reserved = 0;
};

} // namespace

struct PaServerPrivate {
  std::mutex lock; /* settings, counters (stats may be read from any thread) */
  Settings settings;
  Counters c;
  GMainContext *context = nullptr;

  /* below: only on the server's context */
  std::unique_ptr<pa::Listener> listener;
  std::unique_ptr<pa::CallLog> call_log;
  std::map<guint64, std::unique_ptr<CallEntry>> calls;
  std::deque<Reservation> reservations;
  pa::twilio::Params pending_parameters; /* from admit to stream_parameters, same webhook */
  guint64 next_id = 1;
  bool started = false;
  std::atomic<bool> draining{false};
  bool grace_over = false;
  bool stopping = false;
  bool drained_emitted = false;
  GSource *grace_timer = nullptr;
  /* Builds and state changes run here, never on the server's context: an
   * element that takes its time to start or stop (a model session opening
   * or closing) must not hold up every other call's audio. */
  GThreadPool *workers = nullptr;

  LiveCountsRef live = std::make_shared<LiveCounts>();
};

struct _PaServer {
  GObject parent;
  PaServerPrivate *priv;
};

G_DEFINE_TYPE(PaServer, pa_server, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ADDRESS,
  PROP_PORT,
  PROP_BOUND_PORT,
  PROP_PUBLIC_URL,
  PROP_WEBHOOK_PATH,
  PROP_STREAM_PATH,
  PROP_METRICS_PATH,
  PROP_CALL_LOG,
  PROP_AUTH_TOKEN,
  PROP_BUSY_MESSAGE,
  PROP_GREETING,
  PROP_MAX_CALLS,
  PROP_RESERVATION_TIMEOUT,
  PROP_START_TIMEOUT,
  PROP_END_TIMEOUT,
  PROP_CLOSE_TIMEOUT,
  PROP_MEDIA_THREADS,
  PROP_MEDIA_WAIT,
  PROP_MEDIA_FILL,
  PROP_OUT_DIR,
  PROP_PIPELINE,
  PROP_CONTEXT,
  PROP_DRAINING,
  PROP_STATS,
};

enum {
  SIGNAL_CALL_ADMIT,
  SIGNAL_CALL_CONSTRUCTED,
  SIGNAL_CALL_CONFIGURE,
  SIGNAL_CALL_MESSAGE,
  SIGNAL_CALL_ENDED,
  SIGNAL_DRAINED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void release_entry(PaServer *server, guint64 id);
static void teardown(PaServer *server, CallEntry *e, const char *reason, gushort code, const char *close_reason);
static void check_drained(PaServer *server);

/* ------------------------------------------------------------ helpers */

static void update_gauges(PaServer *server) {
  PaServerPrivate *p = server->priv;
  guint connecting = 0, running = 0, closing = 0;
  for (const auto &[id, e] : p->calls) {
    switch (e->state) {
    case CallState::Connecting: connecting++; break;
    case CallState::Running: running++; break;
    case CallState::Closing: closing++; break;
    }
  }
  std::lock_guard<std::mutex> g(p->lock);
  p->c.connecting = connecting;
  p->c.running = running;
  p->c.closing = closing;
  p->c.reserved = static_cast<guint>(p->reservations.size());
}

static void prune_reservations(PaServer *server) {
  PaServerPrivate *p = server->priv;
  gint64 now = g_get_monotonic_time();
  for (auto it = p->reservations.begin(); it != p->reservations.end();) {
    if (it->deadline_us <= now) {
      GST_INFO("call %s: no stream arrived in time; its place is free again", it->call_sid.c_str());
      it = p->reservations.erase(it);
    } else {
      ++it;
    }
  }
}

/* Calls that hold a place: streams connecting or running, and webhooks
 * answered whose stream has not come yet. */
static guint places_taken(PaServer *server) {
  PaServerPrivate *p = server->priv;
  guint n = static_cast<guint>(p->reservations.size());
  for (const auto &[id, e] : p->calls)
    if (e->state != CallState::Closing)
      n++;
  return n;
}

static GSource *add_timeout(PaServer *server, guint ms, GSourceFunc func, gpointer data, GDestroyNotify notify) {
  GSource *src = g_timeout_source_new(ms);
  g_source_set_callback(src, func, data, notify);
  g_source_attach(src, server->priv->context);
  return src;
}

static void clear_source(GSource *&src) {
  if (src) {
    g_source_destroy(src);
    g_source_unref(src);
    src = nullptr;
  }
}

/* Runs @func(server, id) from the server's context, later: used for what
 * PaCall and the socket tell us in the middle of their own processing. */
struct Deferred {
  GWeakRef server;
  guint64 id;
  void (*func)(PaServer *, guint64);
};

static gboolean run_deferred(gpointer data) {
  auto *d = static_cast<Deferred *>(data);
  if (auto *server = static_cast<PaServer *>(g_weak_ref_get(&d->server))) {
    d->func(server, d->id);
    g_object_unref(server);
  }
  return G_SOURCE_REMOVE;
}

static void free_deferred(gpointer data) {
  auto *d = static_cast<Deferred *>(data);
  g_weak_ref_clear(&d->server);
  delete d;
}

static void defer(PaServer *server, guint64 id, void (*func)(PaServer *, guint64)) {
  auto *d = new Deferred;
  g_weak_ref_init(&d->server, server);
  d->id = id;
  d->func = func;
  GSource *src = g_idle_source_new();
  g_source_set_priority(src, G_PRIORITY_HIGH_IDLE);
  g_source_set_callback(src, run_deferred, d, free_deferred);
  g_source_attach(src, server->priv->context);
  g_source_unref(src);
}

static CallEntry *find_entry(PaServer *server, guint64 id) {
  auto it = server->priv->calls.find(id);
  return it == server->priv->calls.end() ? nullptr : it->second.get();
}

struct TimerData {
  PaServer *server; /* not a ref: timers are destroyed before the entry and the server go */
  guint64 id;
};

static void on_pipeline_finalized(gpointer data, GObject *) {
  auto *live = static_cast<LiveCountsRef *>(data);
  (*live)->pipelines--;
  delete live;
}
static void on_call_finalized(gpointer data, GObject *) {
  auto *live = static_cast<LiveCountsRef *>(data);
  (*live)->calls--;
  delete live;
}

/* ------------------------------------------------------------ worker tasks */

enum class TaskKind { Build, Play, Stop };

/* A build or state change of one call's pipeline, run by a worker thread;
 * its result comes back to the server's context (task_done). */
struct Task {
  GWeakRef server;
  guint64 id = 0;
  TaskKind kind = TaskKind::Build;
  GMainContext *context = nullptr; /* ref */
  std::string description;         /* Build: the expanded launch line */
  std::string name;                /* Build: the pipeline's name */
  GstElement *pipeline = nullptr;  /* ref: Play/Stop its pipeline, Build its result */
  GError *error = nullptr;
  GstStateChangeReturn ret = GST_STATE_CHANGE_SUCCESS;
};

static void free_task(gpointer data) {
  auto *t = static_cast<Task *>(data);
  if (t->pipeline)
    gst_object_unref(t->pipeline);
  g_clear_error(&t->error);
  g_weak_ref_clear(&t->server);
  g_main_context_unref(t->context);
  delete t;
}

static gboolean task_done(gpointer data);

static void run_task(gpointer data, gpointer) {
  auto *t = static_cast<Task *>(data);
  switch (t->kind) {
  case TaskKind::Build:
    t->pipeline = gst_parse_launch_full(t->description.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &t->error);
    if (t->pipeline) {
      g_clear_error(&t->error); /* non-fatal warnings */
      if (!GST_IS_PIPELINE(t->pipeline)) {
        GstElement *bin = gst_pipeline_new(nullptr);
        gst_bin_add(GST_BIN(bin), t->pipeline);
        t->pipeline = bin;
      }
      gst_object_ref_sink(t->pipeline);
      gst_object_set_name(GST_OBJECT(t->pipeline), t->name.c_str());
    }
    break;
  case TaskKind::Play:
    t->ret = gst_element_set_state(t->pipeline, GST_STATE_PLAYING);
    break;
  case TaskKind::Stop:
    t->ret = gst_element_set_state(t->pipeline, GST_STATE_NULL);
    break;
  }
  GSource *src = g_idle_source_new();
  g_source_set_priority(src, G_PRIORITY_HIGH);
  g_source_set_callback(src, task_done, t, free_task);
  g_source_attach(src, t->context);
  g_source_unref(src);
}

static void submit(PaServer *server, CallEntry *e, TaskKind kind, std::string description = {}) {
  auto *t = new Task;
  g_weak_ref_init(&t->server, server);
  t->id = e->id;
  t->kind = kind;
  t->context = g_main_context_ref(server->priv->context);
  t->description = std::move(description);
  t->name = "call-" + (e->call_sid.empty() ? std::to_string(e->id) : e->call_sid);
  if (kind != TaskKind::Build)
    t->pipeline = GST_ELEMENT(gst_object_ref(e->pipeline));
  if (kind == TaskKind::Stop)
    e->playing = false;
  e->worker_busy = true;
  g_thread_pool_push(server->priv->workers, t, nullptr);
}

/* ------------------------------------------------------------ the call log */

/* The call's row, as its stream starts. */
static void log_call_started(PaServer *server, CallEntry *e, const pa::twilio::StartInfo &si) {
  PaServerPrivate *p = server->priv;
  if (!p->call_log)
    return;
  e->log = std::make_unique<pa::CallLogEntry>();
  pa::CallLogEntry &l = *e->log;
  l.call_sid = e->call_sid;
  l.account_sid = si.account_sid;
  l.stream_sid = si.stream_sid;
  l.parameters = si.custom_parameters;
  for (const auto &[k, v] : si.custom_parameters) {
    if (k == "from")
      l.from = v;
    else if (k == "to")
      l.to = v;
  }
  l.started_us = g_get_real_time();
  p->call_log->started(l);
}

/* Names of the messages the call log looks into, and of their fields,
 * interned once in class_init: given as strings, each would be looked up in
 * GLib's global quark table on every message. */
static struct {
  GQuark transcript, latency, usage, barge_in, function_call;
  GQuark final, running_time, role, text, latency_ms, total_tokens;
} log_quarks;

/* @st's field @q if it holds a @type, else NULL */
static const GValue *field_of(const GstStructure *st, GQuark q, GType type) {
  const GValue *v = gst_structure_id_get_value(st, q);
  return v && G_VALUE_HOLDS(v, type) ? v : nullptr;
}

/* An element message the call log records: everything an element posts but
 * the transcripts' deltas (it keeps the final ones). */
static bool logged_message(GstMessage *msg) {
  if (GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT)
    return false;
  const GstStructure *st = gst_message_get_structure(msg);
  if (!st)
    return false;
  const GValue *final = field_of(st, log_quarks.final, G_TYPE_BOOLEAN);
  return gst_structure_get_name_id(st) != log_quarks.transcript || !final || g_value_get_boolean(final);
}

const size_t kMaxLoggedEvents = 2000; /* per call: a runaway element cannot fill the disk */
/* messages kept before their details are written out: a few kB a call, and
 * the serialiser's tables stay warm after the first of a batch */
const size_t kWriteOutBatch = 16;

/* Under the relay's lock: the events' details of the messages kept so far
 * written out as text, and the messages let go. */
static void write_out_locked(BusRelay &relay) {
  size_t index = relay.gathered.events.size() - relay.unwritten.size();
  for (GstMessage *msg : relay.unwritten) {
    gchar *detail = gst_structure_to_string(gst_message_get_structure(msg));
    relay.gathered.events[index++].b = detail;
    g_free(detail);
    gst_message_unref(msg);
  }
  relay.unwritten.clear();
}

/* On the thread that posts @msg, under its bus relay's lock. */
static void log_message(BusRelay &relay, GstMessage *msg) {
  if (!logged_message(msg))
    return;
  pa::CallLogMessages &l = relay.gathered;
  const GstStructure *st = gst_message_get_structure(msg);
  const GQuark name = gst_structure_get_name_id(st);
  const GValue *rt = field_of(st, log_quarks.running_time, G_TYPE_UINT64);
  double t = rt ? static_cast<double>(g_value_get_uint64(rt)) / GST_SECOND : -1.0;
  if (name == log_quarks.transcript) {
    const GValue *role = field_of(st, log_quarks.role, G_TYPE_STRING);
    const GValue *text = field_of(st, log_quarks.text, G_TYPE_STRING);
    const char *r = role ? g_value_get_string(role) : nullptr, *x = text ? g_value_get_string(text) : nullptr;
    if (x && l.transcript.size() < kMaxLoggedEvents)
      l.transcript.push_back({t, r ? r : "", x});
    else if (x)
      l.lines_dropped++;
    return;
  }
  if (name == log_quarks.latency) {
    l.turns++;
    const GValue *ms = field_of(st, log_quarks.latency_ms, G_TYPE_DOUBLE);
    if (ms && g_value_get_double(ms) >= 0) /* -1: not known */
      l.latencies_ms.push_back(g_value_get_double(ms));
  } else if (name == log_quarks.usage) {
    if (const GValue *tokens = field_of(st, log_quarks.total_tokens, G_TYPE_INT64))
      l.total_tokens += g_value_get_int64(tokens);
  } else if (name == log_quarks.barge_in) {
    l.barge_ins++;
  } else if (name == log_quarks.function_call) {
    l.function_calls++;
  }
  if (l.events.size() >= kMaxLoggedEvents) {
    l.lines_dropped++;
    return;
  }
  l.events.push_back({t, g_quark_to_string(name), std::string()});
  relay.unwritten.push_back(gst_message_ref(msg));
  if (relay.unwritten.size() >= kWriteOutBatch)
    write_out_locked(relay);
}

/* The call's gathered messages for its row, their details written out. */
static void take_gathered(BusRelay &relay, pa::CallLogMessages &l) {
  std::lock_guard<std::mutex> g(relay.lock);
  write_out_locked(relay);
  l = std::move(relay.gathered);
}

/* The row completed, with the transcript and the events, as the call ends. */
static void log_call_ended(PaServer *server, CallEntry *e, const std::string &reason) {
  PaServerPrivate *p = server->priv;
  std::unique_ptr<pa::CallLogEntry> l = std::move(e->log);
  if (!l || !p->call_log)
    return;
  l->ended_us = g_get_real_time();
  l->end_reason = reason;
  if (e->relay)
    take_gathered(*e->relay, l->messages);
  /* said, so that a short log is not taken for a quiet call */
  if (l->messages.lines_dropped)
    l->messages.events.push_back({-1.0, "call-log-truncated",
                                  std::to_string(l->messages.lines_dropped) + " messages over the limit of " +
                                      std::to_string(kMaxLoggedEvents) + " per call were not kept"});
  GstStructure *cs = pa_call_get_stats(e->call);
  guint64 in = 0, out = 0;
  gst_structure_get_uint64(cs, "media-bytes-received", &in);
  gst_structure_get_uint64(cs, "media-bytes-sent", &out);
  gst_structure_free(cs);
  l->caller_audio_s = static_cast<double>(in) / 8000.0;
  l->agent_audio_s = static_cast<double>(out) / 8000.0;
  p->call_log->ended(std::move(*l));
}

/* ------------------------------------------------------------ the end of a call */

static void maybe_release(PaServer *server, CallEntry *e) {
  if (e->state == CallState::Closing && !e->worker_busy && !e->playing &&
      (e->socket_closed || !e->has_socket || e->close_timed_out))
    defer(server, e->id, [](PaServer *s, guint64 id) { release_entry(s, id); });
}

static gboolean on_close_timeout(gpointer data) {
  auto *t = static_cast<TimerData *>(data);
  if (CallEntry *e = find_entry(t->server, t->id)) {
    GST_INFO("call %s: the socket did not close in time; dropping it", e->call_sid.c_str());
    g_source_unref(e->timer);
    e->timer = nullptr;
    e->close_timed_out = true;
    maybe_release(t->server, e);
  }
  return G_SOURCE_REMOVE;
}

/* The pipeline is back in NULL (or never ran): call-ended, then it goes. */
static void pipeline_finished(PaServer *server, CallEntry *e) {
  if (e->started && !e->ended_emitted) {
    e->ended_emitted = true;
    double secs = e->started_us ? static_cast<double>(g_get_monotonic_time() - e->started_us) / 1e6 : 0.0;
    GST_INFO("call %s ended (%s) after %.1f s", e->call_sid.c_str(), e->final_reason.c_str(), secs);
    guint64 id = e->id;
    std::string reason = e->final_reason;
    log_call_ended(server, e, reason);
    g_signal_emit(server, signals[SIGNAL_CALL_ENDED], 0, e->pipeline, e->call, reason.c_str());
    if (!(e = find_entry(server, id))) /* the application stopped the server */
      return;
  }
  if (e->pipeline) {
    gst_object_unref(e->pipeline);
    e->pipeline = nullptr;
  }
  maybe_release(server, e);
}

/* Ends a call: closes its socket (with our code, before twiliosink might
 * close it with 1000 after the EOS a failing source sends), and brings its
 * pipeline back to NULL on a worker. The entry stays (Closing) until both
 * are done, so that the close handshake can finish. */
static void teardown(PaServer *server, CallEntry *e, const char *reason, gushort code, const char *close_reason) {
  PaServerPrivate *p = server->priv;
  if (e->state == CallState::Closing)
    return;
  e->state = CallState::Closing;
  e->final_reason = reason;
  clear_source(e->timer);
  if (e->call && !e->socket_closed)
    pa_call_close(e->call, code, close_reason);
  if (!e->socket_closed && e->has_socket) {
    guint ms;
    {
      std::lock_guard<std::mutex> g(p->lock);
      ms = p->settings.close_timeout;
    }
    e->timer = add_timeout(server, ms, on_close_timeout, new TimerData{server, e->id},
                           [](gpointer d) { delete static_cast<TimerData *>(d); });
  }
  update_gauges(server);
  if (e->worker_busy) {
    /* task_done goes on from here */
  } else if (e->playing) {
    submit(server, e, TaskKind::Stop);
  } else {
    pipeline_finished(server, e);
  }
  check_drained(server);
}

static void release_entry(PaServer *server, guint64 id) {
  PaServerPrivate *p = server->priv;
  auto it = p->calls.find(id);
  if (it == p->calls.end())
    return;
  std::unique_ptr<CallEntry> e = std::move(it->second);
  p->calls.erase(it);
  if (e->log) /* dropped before its pipeline finished (the server stopped) */
    log_call_ended(server, e.get(), e->final_reason.empty() ? "dropped" : e->final_reason);
  clear_source(e->timer);
  if (e->pipeline) /* only when the server stops without waiting: a worker may still hold it */
    gst_object_unref(e->pipeline);
  if (e->call) {
    if (e->started_id)
      g_signal_handler_disconnect(e->call, e->started_id);
    if (e->ended_id)
      g_signal_handler_disconnect(e->call, e->ended_id);
    g_object_unref(e->call);
  }
  update_gauges(server);
  check_drained(server);
}

static gboolean on_end_timeout(gpointer data) {
  auto *t = static_cast<TimerData *>(data);
  PaServer *server = t->server;
  if (CallEntry *e = find_entry(server, t->id)) {
    g_source_unref(e->timer);
    e->timer = nullptr;
    GST_WARNING("call %s: the pipeline did not finish in time after the call ended; stopping it",
                e->call_sid.c_str());
    {
      std::lock_guard<std::mutex> g(server->priv->lock);
      server->priv->c.calls_forced++;
    }
    teardown(server, e, e->eos_sent && server->priv->grace_over ? "shutdown" : "end-timeout",
             server->priv->stopping ? kCloseGoingAway : kCloseNormal, "call ended");
  }
  return G_SOURCE_REMOVE;
}

static void arm_end_timer(PaServer *server, CallEntry *e) {
  if (e->timer)
    return;
  guint ms;
  {
    std::lock_guard<std::mutex> g(server->priv->lock);
    ms = server->priv->settings.end_timeout;
  }
  e->timer = add_timeout(server, ms, on_end_timeout, new TimerData{server, e->id},
                         [](gpointer d) { delete static_cast<TimerData *>(d); });
}

/* Ends a running call cleanly: EOS into the pipeline (twiliosink plays out
 * what it holds and closes the stream), forced after end-timeout. */
static void end_call_cleanly(PaServer *server, CallEntry *e) {
  if (e->state != CallState::Running || e->eos_sent || !e->playing || e->worker_busy)
    return;
  e->eos_sent = true;
  GST_INFO("call %s: ending it (EOS)", e->call_sid.c_str());
  clear_source(e->timer);
  arm_end_timer(server, e);
  gst_element_send_event(e->pipeline, gst_event_new_eos());
}

/* ------------------------------------------------------------ pipeline */

/* Handles one message of a call's bus, on the server's context. */
static void on_bus_message(PaServer *server, guint64 id, GstMessage *msg) {
  CallEntry *e = find_entry(server, id);
  if (!e || e->state != CallState::Running || !e->pipeline)
    return;
  /* keep what the handlers need: an application may stop the server from a
   * call-message handler */
  GstElement *pipeline = GST_ELEMENT(gst_object_ref(e->pipeline));
  PaCall *call = PA_CALL(g_object_ref(e->call));
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_EOS:
    if (GST_MESSAGE_SRC(msg) != GST_OBJECT(pipeline))
      break;
    {
      std::lock_guard<std::mutex> g(server->priv->lock);
      server->priv->c.calls_completed++;
    }
    teardown(server, e, e->eos_sent && server->priv->grace_over ? "shutdown" : "eos", kCloseNormal, "call ended");
    break;
  case GST_MESSAGE_ERROR: {
    GError *err = nullptr;
    gchar *dbg = nullptr;
    gst_message_parse_error(msg, &err, &dbg);
    GST_ERROR("call %s: pipeline error from %s: %s (%s); ending this call", e->call_sid.c_str(),
              GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), err ? err->message : "?", dbg ? dbg : "no details");
    if (e->log && e->log->error.empty())
      e->log->error = std::string(GST_OBJECT_NAME(GST_MESSAGE_SRC(msg))) + ": " + (err ? err->message : "?");
    g_clear_error(&err);
    g_free(dbg);
    {
      std::lock_guard<std::mutex> g(server->priv->lock);
      server->priv->c.calls_failed++;
    }
    teardown(server, e, "error", kCloseError, "pipeline error");
    break;
  }
  case GST_MESSAGE_WARNING: {
    GError *err = nullptr;
    gchar *dbg = nullptr;
    gst_message_parse_warning(msg, &err, &dbg);
    GST_WARNING("call %s: warning from %s: %s (%s)", e->call_sid.c_str(), GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)),
                err ? err->message : "?", dbg ? dbg : "no details");
    g_clear_error(&err);
    g_free(dbg);
    break;
  }
  default:
    break;
  }
  if (g_signal_has_handler_pending(server, signals[SIGNAL_CALL_MESSAGE], 0, FALSE))
    g_signal_emit(server, signals[SIGNAL_CALL_MESSAGE], 0, pipeline, call, msg);
  gst_object_unref(pipeline);
  g_object_unref(call);
}

static gboolean relay_dispatch(gpointer data) {
  BusRelayRef relay = *static_cast<BusRelayRef *>(data);
  std::deque<GstMessage *> msgs;
  {
    std::lock_guard<std::mutex> g(relay->lock);
    msgs.swap(relay->queue);
    relay->scheduled = false;
  }
  auto *server = static_cast<PaServer *>(g_weak_ref_get(&relay->server));
  for (GstMessage *m : msgs) {
    if (server)
      on_bus_message(server, relay->id, m);
    gst_message_unref(m);
  }
  if (server)
    g_object_unref(server);
  return G_SOURCE_REMOVE;
}

/* In the thread that posts the message. An error also closes the call's
 * socket with 1011 at once, before the EOS a failing source sends after its
 * error reaches twiliosink (which would close with 1000, as for a call that
 * ended well). */
static GstBusSyncReply on_bus_sync(GstBus *, GstMessage *msg, gpointer data) {
  BusRelayRef &relay = *static_cast<BusRelayRef *>(data);
  switch (GST_MESSAGE_TYPE(msg)) {
  case GST_MESSAGE_ERROR:
    pa_call_close(relay->call, kCloseError, "pipeline error");
    break;
  case GST_MESSAGE_EOS:
  case GST_MESSAGE_WARNING:
    break;
  default: {
    if (relay->logging) {
      std::lock_guard<std::mutex> g(relay->lock);
      log_message(*relay, msg);
    }
    /* only "call-message" wants the rest (an agent's transcripts, turn and
     * usage messages: several per call-second): without a handler, drop it
     * here rather than wake the server's context for nothing */
    auto *server = static_cast<PaServer *>(g_weak_ref_get(&relay->server));
    bool wanted = server && g_signal_has_handler_pending(server, signals[SIGNAL_CALL_MESSAGE], 0, FALSE);
    if (server)
      g_object_unref(server);
    if (!wanted) {
      gst_message_unref(msg);
      return GST_BUS_DROP;
    }
  }
  }
  bool schedule;
  {
    std::lock_guard<std::mutex> g(relay->lock);
    relay->queue.push_back(msg); /* GST_BUS_DROP: the message is ours */
    schedule = !relay->scheduled;
    relay->scheduled = true;
  }
  if (schedule) {
    GSource *src = g_idle_source_new();
    g_source_set_priority(src, G_PRIORITY_HIGH);
    g_source_set_callback(src, relay_dispatch, new BusRelayRef(relay),
                          [](gpointer d) { delete static_cast<BusRelayRef *>(d); });
    g_source_attach(src, relay->context);
    g_source_unref(src);
  }
  return GST_BUS_DROP;
}

/* Expands the template for the call and has a worker build it. */
static void build_pipeline(PaServer *server, CallEntry *e) {
  PaServerPrivate *p = server->priv;
  pa::twilio::StartInfo si = pa_call_get_start_info(e->call);
  std::string tmpl, out_dir;
  {
    std::lock_guard<std::mutex> g(p->lock);
    tmpl = p->settings.pipeline;
    out_dir = p->settings.out_dir;
  }
  std::map<std::string, std::string> vars = {
      {"call_sid", si.call_sid}, {"stream_sid", si.stream_sid}, {"account_sid", si.account_sid},
      {"out_dir", out_dir},      {"recordings_dir", out_dir},   {"from", ""},
      {"to", ""},
  };
  for (const auto &[k, v] : si.custom_parameters) {
    vars["param." + k] = v;
    if (k == "from" || k == "to")
      vars[k] = v;
  }
  Lookup lookup = [&vars](const std::string &name) -> const char * {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  std::string desc;
  GError *err = nullptr;
  if (!expand(tmpl.c_str(), lookup, desc, &err)) {
    GST_ERROR("call %s: the pipeline did not build: %s; ending this call", e->call_sid.c_str(), err->message);
    if (e->log)
      e->log->error = std::string("the pipeline did not build: ") + err->message;
    g_clear_error(&err);
    {
      std::lock_guard<std::mutex> g(p->lock);
      p->c.calls_failed++;
    }
    teardown(server, e, "build-failed", kCloseError, "pipeline failed");
    return;
  }
  GST_INFO("call %s: stream %s from %s to %s", e->call_sid.c_str(), si.stream_sid.c_str(), vars["from"].c_str(),
           vars["to"].c_str());
  GST_DEBUG("call %s: pipeline %s", e->call_sid.c_str(), desc.c_str());
  submit(server, e, TaskKind::Build, std::move(desc));
}

/* The call's pipeline was built: the application may touch it, then it is
 * handed the call and started. */
static void pipeline_built(PaServer *server, CallEntry *e, Task *t) {
  PaServerPrivate *p = server->priv;
  const guint64 id = e->id;
  if (!t->pipeline && e->state == CallState::Closing) { /* ended meanwhile anyway */
    pipeline_finished(server, e);
    return;
  }
  if (!t->pipeline) {
    GST_ERROR("call %s: the pipeline did not build: %s; ending this call", e->call_sid.c_str(),
              t->error ? t->error->message : "unknown error");
    if (e->log)
      e->log->error = std::string("the pipeline did not build: ") + (t->error ? t->error->message : "unknown error");
    {
      std::lock_guard<std::mutex> g(p->lock);
      p->c.calls_failed++;
    }
    teardown(server, e, "build-failed", kCloseError, "pipeline failed");
    return;
  }
  GstElement *pipeline = t->pipeline;
  t->pipeline = nullptr;
  p->live->pipelines++;
  g_object_weak_ref(G_OBJECT(pipeline), on_pipeline_finalized, new LiveCountsRef(p->live));
  e->pipeline = pipeline;
  if (e->state == CallState::Closing) { /* ended while it was being built */
    pipeline_finished(server, e);
    return;
  }

  g_signal_emit(server, signals[SIGNAL_CALL_CONSTRUCTED], 0, pipeline, e->call);
  if (!(e = find_entry(server, id)) || e->state != CallState::Running) /* the application ended it */
    return;
  GstContext *ctx = pa_call_context_new(e->call);
  gst_element_set_context(pipeline, ctx);
  gst_context_unref(ctx);
  GstBus *bus = gst_element_get_bus(pipeline);
  e->relay = std::make_shared<BusRelay>(server, e->id, p->context, e->call, e->log != nullptr);
  gst_bus_set_sync_handler(bus, on_bus_sync, new BusRelayRef(e->relay),
                           [](gpointer d) { delete static_cast<BusRelayRef *>(d); });
  gst_object_unref(bus);
  g_signal_emit(server, signals[SIGNAL_CALL_CONFIGURE], 0, pipeline, e->call);
  if (!(e = find_entry(server, id)) || e->state != CallState::Running)
    return;
  {
    std::lock_guard<std::mutex> g(p->lock);
    p->c.calls_started++;
  }
  e->playing = true;
  submit(server, e, TaskKind::Play);
}

static void pipeline_started(PaServer *server, CallEntry *e, Task *t) {
  PaServerPrivate *p = server->priv;
  if (e->state == CallState::Closing) { /* ended while it was starting */
    submit(server, e, TaskKind::Stop);
    return;
  }
  if (t->ret == GST_STATE_CHANGE_FAILURE) {
    /* the element's error message (on its way through the bus relay) has
     * the details; this names the call */
    GST_ERROR("call %s: the pipeline failed to start; ending this call", e->call_sid.c_str());
    {
      std::lock_guard<std::mutex> g(p->lock);
      p->c.calls_failed++;
    }
    teardown(server, e, "start-failed", kCloseError, "pipeline failed");
    return;
  }
  if (e->call_ended || pa_call_is_ended(e->call))
    arm_end_timer(server, e);
  else if (p->grace_over)
    end_call_cleanly(server, e);
}

static gboolean task_done(gpointer data) {
  auto *t = static_cast<Task *>(data);
  auto *server = static_cast<PaServer *>(g_weak_ref_get(&t->server));
  if (!server)
    return G_SOURCE_REMOVE;
  if (CallEntry *e = find_entry(server, t->id)) {
    e->worker_busy = false;
    switch (t->kind) {
    case TaskKind::Build: pipeline_built(server, e, t); break;
    case TaskKind::Play: pipeline_started(server, e, t); break;
    case TaskKind::Stop: pipeline_finished(server, e); break;
    }
  } else if (t->kind == TaskKind::Play && server->priv->workers) {
    /* the call was dropped while its pipeline started (pa_server_stop did
     * not wait any longer): still bring it back to NULL */
    auto *stop = new Task;
    g_weak_ref_init(&stop->server, nullptr);
    stop->kind = TaskKind::Stop;
    stop->context = g_main_context_ref(t->context);
    stop->pipeline = t->pipeline;
    t->pipeline = nullptr;
    g_thread_pool_push(server->priv->workers, stop, nullptr);
  }
  g_object_unref(server);
  return G_SOURCE_REMOVE;
}

/* ------------------------------------------------------------ call events */

static void on_started_deferred(PaServer *server, guint64 id) {
  PaServerPrivate *p = server->priv;
  CallEntry *e = find_entry(server, id);
  if (!e || e->state != CallState::Connecting)
    return;
  clear_source(e->timer);
  pa::twilio::StartInfo si = pa_call_get_start_info(e->call);
  e->started = true;
  e->started_us = g_get_monotonic_time();
  e->call_sid = si.call_sid.empty() ? pa_call_get_name(e->call) : si.call_sid;
  log_call_started(server, e, si);
  /* the stream took the oldest reservation; if it belongs to another
   * reservation of ours (streams arrived out of order), swap them */
  if (e->claimed && e->reservation.call_sid != si.call_sid) {
    for (auto it = p->reservations.begin(); it != p->reservations.end(); ++it) {
      if (it->call_sid == si.call_sid) {
        Reservation other = e->reservation;
        e->reservation = *it;
        p->reservations.erase(it);
        p->reservations.push_back(other);
        break;
      }
    }
  }
  if (p->stopping) {
    teardown(server, e, "server-stopped", kCloseGoingAway, "server stopping");
    return;
  }
  e->state = CallState::Running;
  update_gauges(server);
  build_pipeline(server, e);
}

static void on_call_started(PaCall *, gpointer data) {
  auto *t = static_cast<TimerData *>(data);
  defer(t->server, t->id, on_started_deferred);
}

static void on_ended_deferred(PaServer *server, guint64 id) {
  CallEntry *e = find_entry(server, id);
  if (!e)
    return;
  e->call_ended = true;
  e->end_reason = pa_call_get_end_reason(e->call);
  switch (e->state) {
  case CallState::Connecting:
    /* gone before its start: nothing to run */
    GST_INFO("%s: the stream ended before it started (%s)", e->call_sid.c_str(), e->end_reason.c_str());
    teardown(server, e, e->end_reason.c_str(), kCloseNormal, "call ended");
    break;
  case CallState::Running:
    /* twiliosrc sends EOS; if the pipeline does not finish, force it */
    arm_end_timer(server, e);
    break;
  case CallState::Closing:
    break;
  }
}

/* Emitted on whichever thread read the stop or saw the close (the socket
 * loop, or twiliosrc's streaming thread): only defer to the main context. */
static void on_call_ended(PaCall *, const gchar *, gpointer data) {
  auto *t = static_cast<TimerData *>(data);
  defer(t->server, t->id, on_ended_deferred);
}

static void on_socket_closed_deferred(PaServer *server, guint64 id) {
  CallEntry *e = find_entry(server, id);
  if (!e)
    return;
  if (e->state == CallState::Closing)
    maybe_release(server, e);
  else if (e->state == CallState::Connecting)
    teardown(server, e, "closed", kCloseNormal, "call ended");
  /* Running: the call's "ended" takes care of it */
}

/* The listener's hook: the call's socket is gone (on the main context). */
static void stream_socket_closed(PaServer *server, PaCall *call) {
  for (auto &[id, e] : server->priv->calls) {
    if (e->call == call) {
      e->socket_closed = true;
      defer(server, e->id, on_socket_closed_deferred);
      return;
    }
  }
}

static gboolean on_start_timeout(gpointer data) {
  auto *t = static_cast<TimerData *>(data);
  PaServer *server = t->server;
  if (CallEntry *e = find_entry(server, t->id)) {
    g_source_unref(e->timer);
    e->timer = nullptr;
    GST_WARNING("%s: the stream sent no 'start' in time; closing it", e->call_sid.c_str());
    {
      std::lock_guard<std::mutex> g(server->priv->lock);
      server->priv->c.streams_without_start++;
    }
    teardown(server, e, "no-start", kClosePolicy, "no start message");
  }
  return G_SOURCE_REMOVE;
}

/* ------------------------------------------------------------ listener hooks */

static bool admit_webhook(PaServer *server, const pa::WebhookInfo &info) {
  PaServerPrivate *p = server->priv;
  p->pending_parameters.clear();
  guint max_calls;
  {
    std::lock_guard<std::mutex> g(p->lock);
    max_calls = p->settings.max_calls;
  }
  auto turn_away = [&](const char *why) {
    GST_INFO("call %s turned away: %s", info.call_sid.c_str(), why);
    std::lock_guard<std::mutex> g(p->lock);
    p->c.turned_away++;
    return false;
  };
  if (p->draining || p->stopping)
    return turn_away("the server is shutting down");
  prune_reservations(server);
  bool known = false;
  for (auto &r : p->reservations)
    known = known || (!info.call_sid.empty() && r.call_sid == info.call_sid);
  if (!known && max_calls && places_taken(server) >= max_calls)
    return turn_away("all places taken (max-calls)");

  /* the webhook URL's query parameters travel with the call */
  pa::twilio::Params params;
  for (const auto &[k, v] : info.query)
    if (k != "from" && k != "to" && !k.empty())
      params.emplace_back(k, v);
  if (g_signal_has_handler_pending(server, signals[SIGNAL_CALL_ADMIT], 0, FALSE)) {
    GstStructure *webhook = gst_structure_new_empty("twilio-webhook");
    for (const auto &[k, v] : info.form)
      if (!k.empty() && g_ascii_isalpha(k[0]))
        gst_structure_set(webhook, k.c_str(), G_TYPE_STRING, v.c_str(), nullptr);
    GstStructure *ps = gst_structure_new_empty("stream-parameters");
    for (const auto &[k, v] : params)
      if (g_ascii_isalpha(k[0]))
        gst_structure_set(ps, k.c_str(), G_TYPE_STRING, v.c_str(), nullptr);
    gboolean ok = TRUE;
    g_signal_emit(server, signals[SIGNAL_CALL_ADMIT], 0, webhook, ps, &ok);
    params.clear();
    if (ok) {
      gint n = gst_structure_n_fields(ps);
      for (gint i = 0; i < n; i++) {
        const gchar *name = gst_structure_nth_field_name(ps, i);
        const GValue *v = gst_structure_get_value(ps, name);
        if (G_VALUE_HOLDS_STRING(v))
          params.emplace_back(name, g_value_get_string(v) ? g_value_get_string(v) : "");
      }
    }
    gst_structure_free(webhook);
    gst_structure_free(ps);
    if (!ok)
      return turn_away("refused by the application (call-admit)");
  }
  if (!known) {
    guint timeout;
    {
      std::lock_guard<std::mutex> g(p->lock);
      timeout = p->settings.reservation_timeout;
    }
    p->reservations.push_back({info.call_sid, g_get_monotonic_time() + static_cast<gint64>(timeout) * 1000});
  }
  p->pending_parameters = std::move(params);
  {
    std::lock_guard<std::mutex> g(p->lock);
    p->c.webhooks_admitted++;
  }
  update_gauges(server);
  return true;
}

static PaCall *take_stream(PaServer *server) {
  PaServerPrivate *p = server->priv;
  guint max_calls;
  pa::CallConfig config;
  {
    std::lock_guard<std::mutex> g(p->lock);
    max_calls = p->settings.max_calls;
  }
  config = p->listener->config().call;
  prune_reservations(server);
  bool claim = !p->reservations.empty() && !p->grace_over;
  const char *refusal = nullptr;
  if (p->stopping || p->grace_over)
    refusal = "the server is shutting down";
  else if (p->draining && !claim)
    refusal = "the server is draining and this stream has no admitted call";
  else if (!claim && max_calls && places_taken(server) >= max_calls)
    refusal = "all places taken (max-calls)";
  if (refusal) {
    GST_WARNING("refused a stream: %s", refusal);
    std::lock_guard<std::mutex> g(p->lock);
    p->c.streams_refused++;
    return nullptr;
  }
  auto e = std::make_unique<CallEntry>();
  e->id = p->next_id++;
  if (claim) {
    e->claimed = true;
    e->reservation = p->reservations.front();
    p->reservations.pop_front();
  }
  e->call = pa_call_new(config);
  if (p->listener && p->listener->config().media_threads)
    pa_call_set_push(e->call, TRUE); /* twiliosrc pushes on the media thread */
  e->has_socket = true; /* the listener hands it the socket next */
  p->live->calls++;
  g_object_weak_ref(G_OBJECT(e->call), on_call_finalized, new LiveCountsRef(p->live));
  e->call_sid = pa_call_get_name(e->call);
  e->started_id = g_signal_connect_data(e->call, "started", G_CALLBACK(on_call_started),
                                        new TimerData{server, e->id},
                                        [](gpointer d, GClosure *) { delete static_cast<TimerData *>(d); },
                                        static_cast<GConnectFlags>(0));
  e->ended_id = g_signal_connect_data(e->call, "ended", G_CALLBACK(on_call_ended), new TimerData{server, e->id},
                                      [](gpointer d, GClosure *) { delete static_cast<TimerData *>(d); },
                                      static_cast<GConnectFlags>(0));
  guint start_timeout;
  {
    std::lock_guard<std::mutex> g(p->lock);
    start_timeout = p->settings.start_timeout;
    p->c.streams_accepted++;
  }
  e->timer = add_timeout(server, start_timeout, on_start_timeout, new TimerData{server, e->id},
                         [](gpointer d) { delete static_cast<TimerData *>(d); });
  PaCall *call = PA_CALL(g_object_ref(e->call));
  p->calls[e->id] = std::move(e);
  update_gauges(server);
  return call;
}

/* ------------------------------------------------------------ drain */

static void check_drained(PaServer *server) {
  PaServerPrivate *p = server->priv;
  if (!p->draining || p->drained_emitted || !p->calls.empty())
    return;
  if (!p->grace_over) {
    prune_reservations(server);
    if (!p->reservations.empty())
      return;
  }
  p->drained_emitted = true;
  clear_source(p->grace_timer);
  GST_INFO("drained: no call left");
  g_signal_emit(server, signals[SIGNAL_DRAINED], 0);
}

static gboolean on_grace_over(gpointer data) {
  PaServer *server = PA_SERVER(data);
  PaServerPrivate *p = server->priv;
  g_source_unref(p->grace_timer);
  p->grace_timer = nullptr;
  p->grace_over = true;
  p->reservations.clear();
  update_gauges(server);
  GST_INFO("grace period over: ending %zu calls", p->calls.size());
  std::vector<guint64> ids;
  for (auto &[id, e] : p->calls)
    ids.push_back(id);
  for (guint64 id : ids) {
    CallEntry *e = find_entry(server, id);
    if (!e)
      continue;
    if (e->state == CallState::Running)
      end_call_cleanly(server, e);
    else if (e->state == CallState::Connecting)
      teardown(server, e, "shutdown", kCloseGoingAway, "server shutting down");
  }
  check_drained(server);
  return G_SOURCE_REMOVE;
}

static gboolean emit_drained_idle(gpointer data) {
  check_drained(PA_SERVER(data));
  return G_SOURCE_REMOVE;
}

void pa_server_drain(PaServer *server, guint grace_ms) {
  g_return_if_fail(PA_IS_SERVER(server));
  PaServerPrivate *p = server->priv;
  if (!p->started || p->draining)
    return;
  p->draining = true;
  GST_INFO("draining: no new calls; %zu calls may finish within %u ms", p->calls.size(), grace_ms);
  p->grace_timer = g_timeout_source_new(grace_ms);
  g_source_set_callback(p->grace_timer, on_grace_over, server, nullptr);
  g_source_attach(p->grace_timer, p->context);
  /* "drained" always comes from the main loop, never from this call */
  GSource *idle = g_idle_source_new();
  g_source_set_callback(idle, emit_drained_idle, g_object_ref(server), g_object_unref);
  g_source_attach(idle, p->context);
  g_source_unref(idle);
}

/* ------------------------------------------------------------ start / stop */

gboolean pa_server_start(PaServer *server, GError **error) {
  g_return_val_if_fail(PA_IS_SERVER(server), FALSE);
  PaServerPrivate *p = server->priv;
  if (p->started) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_STATE, "the server is already started");
    return FALSE;
  }
  pa::ListenerConfig lc;
  std::string call_log_path;
  {
    std::lock_guard<std::mutex> g(p->lock);
    const Settings &s = p->settings;
    if (s.pipeline.empty()) {
      g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_STATE, "no pipeline template set");
      return FALSE;
    }
    lc.address = s.address;
    lc.port = s.port;
    lc.public_url = s.public_url;
    lc.webhook_path = s.webhook_path;
    lc.stream_path = s.stream_path;
    lc.metrics_path = s.metrics_path;
    call_log_path = s.call_log;
    lc.auth_token = s.auth_token;
    lc.busy_message = s.busy_message;
    lc.greeting = s.greeting;
    lc.media_threads = s.media_threads < 0 ? std::max(1u, g_get_num_processors()) : static_cast<guint>(s.media_threads);
    lc.media_wait_us = s.media_wait * 1000;
    lc.media_fill_permille = s.media_fill * 10;
  }
  if (!p->context)
    p->context = g_main_context_ref_thread_default();
  if (!p->workers)
    p->workers = g_thread_pool_new(run_task, nullptr, kMaxWorkers, FALSE, nullptr);

  pa::Listener::Hooks hooks;
  hooks.admit = [server](const pa::WebhookInfo &info) { return admit_webhook(server, info); };
  hooks.take_stream = [server]() { return take_stream(server); };
  hooks.stream_parameters = [server](const pa::WebhookInfo &, pa::twilio::Params &params) {
    auto &pending = server->priv->pending_parameters;
    params.insert(params.end(), pending.begin(), pending.end());
    pending.clear();
  };
  hooks.ready = [server]() { return !server->priv->draining && !server->priv->stopping; };
  hooks.socket_closed = [server](PaCall *call) { stream_socket_closed(server, call); };
  hooks.metrics = [server]() {
    gchar *text = pa_server_get_metrics(server);
    std::string out(text);
    g_free(text);
    return out;
  };
  p->listener = std::make_unique<pa::Listener>(lc, hooks);
  g_main_context_push_thread_default(p->context);
  GError *err = nullptr;
  bool ok = p->listener->start(&err);
  g_main_context_pop_thread_default(p->context);
  if (!ok) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_LISTEN, "cannot listen on %s port %d: %s",
                lc.address.c_str(), lc.port, err ? err->message : "unknown error");
    g_clear_error(&err);
    p->listener.reset();
    return FALSE;
  }
  /* after the listener, so that a server that cannot listen leaves no
   * file; no call can come before this returns (same context) */
  if (!call_log_path.empty()) {
    std::string why;
    std::unique_ptr<pa::CallLog> opened = pa::CallLog::open(call_log_path, why);
    if (!opened) {
      g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_CALL_LOG, "%s", why.c_str());
      g_main_context_push_thread_default(p->context);
      p->listener->stop();
      p->listener.reset();
      g_main_context_pop_thread_default(p->context);
      return FALSE;
    }
    GST_INFO("call log: %s", call_log_path.c_str());
    std::lock_guard<std::mutex> g(p->lock);
    p->call_log = std::move(opened);
  }
  p->started = true;
  p->stopping = p->draining = p->grace_over = p->drained_emitted = false;
  GST_INFO("serving on %s:%d", lc.address.c_str(), p->listener->port());
  return TRUE;
}

void pa_server_stop(PaServer *server) {
  g_return_if_fail(PA_IS_SERVER(server));
  PaServerPrivate *p = server->priv;
  if (!p->started)
    return;
  p->stopping = true;
  clear_source(p->grace_timer);
  std::vector<guint64> ids;
  for (auto &[id, e] : p->calls)
    ids.push_back(id);
  for (guint64 id : ids)
    if (CallEntry *e = find_entry(server, id))
      teardown(server, e, "server-stopped", kCloseGoingAway, "server stopping");
  p->reservations.clear();
  /* let the pipelines stop and the close frames go out (bounded) when we
   * may run the context */
  if (!p->calls.empty() && g_main_context_acquire(p->context)) {
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (!p->calls.empty() && g_get_monotonic_time() < deadline) {
      if (!g_main_context_iteration(p->context, FALSE))
        g_usleep(1000);
    }
    g_main_context_release(p->context);
  }
  if (!p->calls.empty())
    GST_WARNING("%zu calls did not finish closing in time; dropping them", p->calls.size());
  while (!p->calls.empty())
    release_entry(server, p->calls.begin()->first);
  if (p->listener) {
    g_main_context_push_thread_default(p->context);
    p->listener->stop();
    p->listener.reset();
    g_main_context_pop_thread_default(p->context);
  }
  std::unique_ptr<pa::CallLog> log; /* closed (what is queued written first) outside the lock */
  {
    std::lock_guard<std::mutex> g(p->lock);
    log = std::move(p->call_log);
  }
  log.reset();
  p->started = false;
  update_gauges(server);
  GST_INFO("stopped");
}

gint pa_server_get_bound_port(PaServer *server) {
  g_return_val_if_fail(PA_IS_SERVER(server), 0);
  return server->priv->listener ? server->priv->listener->port() : 0;
}

GstStructure *pa_server_get_stats(PaServer *server) {
  g_return_val_if_fail(PA_IS_SERVER(server), nullptr);
  PaServerPrivate *p = server->priv;
  GstStructure *s;
  {
    std::lock_guard<std::mutex> g(p->lock);
    const Counters &c = p->c;
    s = gst_structure_new("phoneagent-server-stats",
        "calls-active", G_TYPE_UINT, c.running,
        "calls-connecting", G_TYPE_UINT, c.connecting,
        "calls-reserved", G_TYPE_UINT, c.reserved,
        "calls-closing", G_TYPE_UINT, c.closing,
        "max-calls", G_TYPE_UINT, p->settings.max_calls,
        "pipelines-live", G_TYPE_INT, p->live->pipelines.load(),
        "call-objects-live", G_TYPE_INT, p->live->calls.load(),
        "webhooks-admitted", G_TYPE_UINT64, c.webhooks_admitted,
        "calls-turned-away", G_TYPE_UINT64, c.turned_away,
        "streams-accepted", G_TYPE_UINT64, c.streams_accepted,
        "streams-refused", G_TYPE_UINT64, c.streams_refused,
        "streams-without-start", G_TYPE_UINT64, c.streams_without_start,
        "calls-started", G_TYPE_UINT64, c.calls_started,
        "calls-completed", G_TYPE_UINT64, c.calls_completed,
        "calls-failed", G_TYPE_UINT64, c.calls_failed,
        "calls-forced", G_TYPE_UINT64, c.calls_forced,
        nullptr);
    if (p->call_log) /* replaced under the lock */
      gst_structure_set(s, "call-log-pending", G_TYPE_UINT, p->call_log->pending(), "call-log-errors",
                        G_TYPE_UINT64, p->call_log->errors(), nullptr);
  }
  gst_structure_set(s, "draining", G_TYPE_BOOLEAN, p->draining.load(), nullptr);
  if (p->listener) {
    GstStructure *ls = p->listener->stats();
    guint64 wakeups = 0, ready = 0;
    guint busy = 0;
    gst_structure_get_uint64(ls, "media-wakeups", &wakeups);
    gst_structure_get_uint64(ls, "media-ready", &ready);
    gst_structure_get_uint(ls, "media-threads-busy", &busy);
    guint64 bad_signatures = 0;
    gst_structure_get_uint64(ls, "bad-signatures", &bad_signatures);
    gst_structure_free(ls);
    gst_structure_set(s, "media-wakeups", G_TYPE_UINT64, wakeups, "media-ready", G_TYPE_UINT64, ready,
                      "media-threads-busy", G_TYPE_UINT, busy, "bad-signatures", G_TYPE_UINT64, bad_signatures,
                      nullptr);
  }
  return s;
}

/* ------------------------------------------------------------ templates */

static std::string read_template_file(const gchar *path, GError **error) {
  gchar *text = nullptr;
  GError *err = nullptr;
  if (!g_file_get_contents(path, &text, nullptr, &err)) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "cannot read the pipeline template: %s",
                err->message);
    g_clear_error(&err);
    return {};
  }
  std::string s = strip_comments(text);
  g_free(text);
  if (s.empty())
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE,
                "the pipeline template %s is empty (only comments?)", path);
  return s;
}

/* Checks @tmpl: variables, then parses it with dummy values (no state
 * change: nothing listens, nothing is opened). */
static bool check_template(const std::string &tmpl, GError **error) {
  std::string desc;
  Lookup dummy = [](const std::string &name) -> const char * {
    if (name == "call_sid")
      return "CA00000000000000000000000000000000";
    if (name == "stream_sid")
      return "MZ00000000000000000000000000000000";
    if (name == "account_sid")
      return "AC00000000000000000000000000000000";
    if (name == "from" || name == "to")
      return "+15005550006";
    if (name == "out_dir" || name == "recordings_dir")
      return ".";
    return nullptr; /* params: their default, else empty */
  };
  if (!expand(tmpl.c_str(), dummy, desc, error))
    return false;
  GError *err = nullptr;
  GstElement *pipeline = gst_parse_launch_full(desc.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!pipeline) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "the pipeline template does not parse: %s",
                err ? err->message : "unknown error");
    g_clear_error(&err);
    return false;
  }
  g_clear_error(&err);
  gst_object_ref_sink(pipeline);
  gst_object_unref(pipeline);
  return true;
}

gboolean pa_server_set_pipeline_template(PaServer *server, const gchar *description, GError **error) {
  g_return_val_if_fail(PA_IS_SERVER(server), FALSE);
  g_return_val_if_fail(description != nullptr, FALSE);
  std::string tmpl = strip_comments(description);
  if (tmpl.empty()) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "the pipeline template is empty");
    return FALSE;
  }
  if (!check_template(tmpl, error))
    return FALSE;
  std::lock_guard<std::mutex> g(server->priv->lock);
  server->priv->settings.pipeline = tmpl;
  return TRUE;
}

gboolean pa_server_load_pipeline_template(PaServer *server, const gchar *path, GError **error) {
  g_return_val_if_fail(PA_IS_SERVER(server), FALSE);
  GError *err = nullptr;
  std::string tmpl = read_template_file(path, &err);
  if (err) {
    g_propagate_error(error, err);
    return FALSE;
  }
  if (!check_template(tmpl, &err)) {
    g_set_error(error, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE, "%s: %s", path, err->message);
    g_clear_error(&err);
    return FALSE;
  }
  std::lock_guard<std::mutex> g(server->priv->lock);
  server->priv->settings.pipeline = tmpl;
  return TRUE;
}

/* ------------------------------------------------------------ GObject */

PaServer *pa_server_new(void) { return PA_SERVER(g_object_new(PA_TYPE_SERVER, nullptr)); }

static void pa_server_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
  PaServer *server = PA_SERVER(object);
  PaServerPrivate *p = server->priv;
  if (prop_id == PROP_CONTEXT) {
    if (p->started) {
      g_warning("PaServer: the context cannot change while the server runs");
      return;
    }
    if (p->context)
      g_main_context_unref(p->context);
    p->context = static_cast<GMainContext *>(g_value_dup_boxed(value));
    return;
  }
  if (prop_id == PROP_PIPELINE) {
    GError *err = nullptr;
    const char *v = g_value_get_string(value);
    if (v && !pa_server_set_pipeline_template(server, v, &err)) {
      g_warning("PaServer: pipeline template refused: %s", err->message);
      g_clear_error(&err);
    }
    return;
  }
  std::lock_guard<std::mutex> g(p->lock);
  Settings &s = p->settings;
  auto str = [value] {
    const char *v = g_value_get_string(value);
    return std::string(v ? v : "");
  };
  switch (prop_id) {
  case PROP_ADDRESS: s.address = str(); break;
  case PROP_PORT: s.port = g_value_get_int(value); break;
  case PROP_PUBLIC_URL: s.public_url = str(); break;
  case PROP_WEBHOOK_PATH: s.webhook_path = str(); break;
  case PROP_STREAM_PATH: s.stream_path = str(); break;
  case PROP_METRICS_PATH: s.metrics_path = str(); break;
  case PROP_CALL_LOG: s.call_log = str(); break;
  case PROP_AUTH_TOKEN: s.auth_token = str(); break;
  case PROP_BUSY_MESSAGE: s.busy_message = str(); break;
  case PROP_GREETING: s.greeting = str(); break;
  case PROP_MAX_CALLS: s.max_calls = g_value_get_uint(value); break;
  case PROP_RESERVATION_TIMEOUT: s.reservation_timeout = g_value_get_uint(value); break;
  case PROP_START_TIMEOUT: s.start_timeout = g_value_get_uint(value); break;
  case PROP_END_TIMEOUT: s.end_timeout = g_value_get_uint(value); break;
  case PROP_CLOSE_TIMEOUT: s.close_timeout = g_value_get_uint(value); break;
  case PROP_MEDIA_THREADS: s.media_threads = g_value_get_int(value); break;
  case PROP_MEDIA_WAIT: s.media_wait = g_value_get_uint(value); break;
  case PROP_MEDIA_FILL: s.media_fill = g_value_get_uint(value); break;
  case PROP_OUT_DIR: s.out_dir = str(); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static void pa_server_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  PaServer *server = PA_SERVER(object);
  PaServerPrivate *p = server->priv;
  switch (prop_id) {
  case PROP_STATS: g_value_take_boxed(value, pa_server_get_stats(server)); return;
  case PROP_BOUND_PORT: g_value_set_int(value, pa_server_get_bound_port(server)); return;
  case PROP_CONTEXT: g_value_set_boxed(value, p->context); return;
  case PROP_DRAINING: g_value_set_boolean(value, p->draining.load()); return;
  default: break;
  }
  std::lock_guard<std::mutex> g(p->lock);
  const Settings &s = p->settings;
  auto nullable = [](const std::string &v) { return v.empty() ? nullptr : v.c_str(); };
  switch (prop_id) {
  case PROP_ADDRESS: g_value_set_string(value, s.address.c_str()); break;
  case PROP_PORT: g_value_set_int(value, s.port); break;
  case PROP_PUBLIC_URL: g_value_set_string(value, nullable(s.public_url)); break;
  case PROP_WEBHOOK_PATH: g_value_set_string(value, s.webhook_path.c_str()); break;
  case PROP_STREAM_PATH: g_value_set_string(value, s.stream_path.c_str()); break;
  case PROP_METRICS_PATH: g_value_set_string(value, s.metrics_path.c_str()); break;
  case PROP_CALL_LOG: g_value_set_string(value, s.call_log.c_str()); break;
  case PROP_BUSY_MESSAGE: g_value_set_string(value, s.busy_message.c_str()); break;
  case PROP_GREETING: g_value_set_string(value, nullable(s.greeting)); break;
  case PROP_MAX_CALLS: g_value_set_uint(value, s.max_calls); break;
  case PROP_RESERVATION_TIMEOUT: g_value_set_uint(value, s.reservation_timeout); break;
  case PROP_START_TIMEOUT: g_value_set_uint(value, s.start_timeout); break;
  case PROP_END_TIMEOUT: g_value_set_uint(value, s.end_timeout); break;
  case PROP_CLOSE_TIMEOUT: g_value_set_uint(value, s.close_timeout); break;
  case PROP_MEDIA_THREADS: g_value_set_int(value, s.media_threads); break;
  case PROP_MEDIA_WAIT: g_value_set_uint(value, s.media_wait); break;
  case PROP_MEDIA_FILL: g_value_set_uint(value, s.media_fill); break;
  case PROP_OUT_DIR: g_value_set_string(value, s.out_dir.c_str()); break;
  case PROP_PIPELINE: g_value_set_string(value, nullable(s.pipeline)); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static void pa_server_dispose(GObject *object) {
  PaServer *server = PA_SERVER(object);
  if (server->priv->started)
    pa_server_stop(server);
  G_OBJECT_CLASS(pa_server_parent_class)->dispose(object);
}

static void pa_server_finalize(GObject *object) {
  PaServer *server = PA_SERVER(object);
  /* tasks still queued run to the end (a pipeline is never left playing);
   * their results find no server and are dropped */
  if (server->priv->workers)
    g_thread_pool_free(server->priv->workers, FALSE, FALSE);
  if (server->priv->context)
    g_main_context_unref(server->priv->context);
  delete server->priv;
  G_OBJECT_CLASS(pa_server_parent_class)->finalize(object);
}

static void pa_server_init(PaServer *server) { server->priv = new PaServerPrivate(); }

static gboolean admit_accumulator(GSignalInvocationHint *, GValue *return_accu, const GValue *handler_return,
                                  gpointer) {
  gboolean v = g_value_get_boolean(handler_return);
  g_value_set_boolean(return_accu, v);
  return v; /* the first FALSE stops the emission */
}

static void pa_server_class_init(PaServerClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  gobject_class->set_property = pa_server_set_property;
  gobject_class->get_property = pa_server_get_property;
  gobject_class->dispose = pa_server_dispose;
  gobject_class->finalize = pa_server_finalize;

  GST_DEBUG_CATEGORY_INIT(pa_server_debug, "phoneagentserver", 0, "phone-agent per-call server");
  log_quarks.transcript = g_quark_from_static_string("realtime-transcript");
  log_quarks.latency = g_quark_from_static_string("realtime-latency");
  log_quarks.usage = g_quark_from_static_string("realtime-usage");
  log_quarks.barge_in = g_quark_from_static_string("realtime-barge-in");
  log_quarks.function_call = g_quark_from_static_string("realtime-function-call");
  log_quarks.final = g_quark_from_static_string("final");
  log_quarks.running_time = g_quark_from_static_string("running-time");
  log_quarks.role = g_quark_from_static_string("role");
  log_quarks.text = g_quark_from_static_string("text");
  log_quarks.latency_ms = g_quark_from_static_string("latency-ms");
  log_quarks.total_tokens = g_quark_from_static_string("total-tokens");

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const auto ro = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(gobject_class, PROP_ADDRESS,
      g_param_spec_string("address", "Address", "IP address to listen on", DEFAULT_ADDRESS, rw));
  g_object_class_install_property(gobject_class, PROP_PORT,
      g_param_spec_int("port", "Port", "TCP port to listen on (0 picks a free port; see bound-port)", 0, 65535,
                       DEFAULT_PORT, rw));
  g_object_class_install_property(gobject_class, PROP_BOUND_PORT,
      g_param_spec_int("bound-port", "Bound port", "The port listened on once started", 0, 65535, 0, ro));
  g_object_class_install_property(gobject_class, PROP_PUBLIC_URL,
      g_param_spec_string("public-url", "Public URL",
                          "The URL Twilio reaches this server at, e.g. https://agent.example.com (stream URL in the "
                          "TwiML and signature checks; empty: from the Host header)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_WEBHOOK_PATH,
      g_param_spec_string("webhook-path", "Webhook path", "HTTP path of the voice webhook", DEFAULT_WEBHOOK_PATH,
                          rw));
  g_object_class_install_property(gobject_class, PROP_STREAM_PATH,
      g_param_spec_string("stream-path", "Stream path", "HTTP path of the Media Streams WebSocket",
                          DEFAULT_STREAM_PATH, rw));
  g_object_class_install_property(gobject_class, PROP_METRICS_PATH,
      g_param_spec_string("metrics-path", "Metrics path",
                          "HTTP path where GET answers the server's statistics in Prometheus' text format (empty: "
                          "none)",
                          DEFAULT_METRICS_PATH, rw));
  g_object_class_install_property(gobject_class, PROP_CALL_LOG,
      g_param_spec_string("call-log", "Call log",
                          "SQLite database where each call, its transcript and its events are recorded (created "
                          "if missing; see docs/server.md; empty: none)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_AUTH_TOKEN,
      g_param_spec_string("auth-token", "Auth token",
                          "Twilio auth token for X-Twilio-Signature checks (write-only, never logged; empty: no "
                          "checks)",
                          nullptr, static_cast<GParamFlags>(G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_BUSY_MESSAGE,
      g_param_spec_string("busy-message", "Busy message",
                          "What a caller hears (then hang-up) when the server is full or shutting down",
                          DEFAULT_BUSY_MESSAGE, rw));
  g_object_class_install_property(gobject_class, PROP_GREETING,
      g_param_spec_string("greeting", "Greeting", "Optional text Twilio speaks before connecting the stream",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_CALLS,
      g_param_spec_uint("max-calls", "Max calls",
                        "Most calls at once, counting webhooks answered whose stream has not come yet (0: no limit)",
                        0, G_MAXUINT, DEFAULT_MAX_CALLS, rw));
  g_object_class_install_property(gobject_class, PROP_RESERVATION_TIMEOUT,
      g_param_spec_uint("reservation-timeout", "Reservation timeout",
                        "How long (ms) an answered webhook holds a place for its stream", 0, G_MAXUINT,
                        DEFAULT_RESERVATION_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_START_TIMEOUT,
      g_param_spec_uint("start-timeout", "Start timeout",
                        "A stream that sends no 'start' within this time (ms) is closed", 1, G_MAXUINT,
                        DEFAULT_START_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_END_TIMEOUT,
      g_param_spec_uint("end-timeout", "End timeout",
                        "After a call ended (or was asked to end), longest wait (ms) for its pipeline's EOS before "
                        "it is stopped",
                        1, G_MAXUINT, DEFAULT_END_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_CLOSE_TIMEOUT,
      g_param_spec_uint("close-timeout", "Close timeout",
                        "Longest wait (ms) for a call's socket to finish closing before it is dropped", 1,
                        G_MAXUINT, DEFAULT_CLOSE_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_MEDIA_THREADS,
      g_param_spec_int("media-threads", "Media threads",
                       "Threads shared by all calls that read the Twilio sockets and push each call's audio into "
                       "its pipeline (-1: one per CPU; 0: none, each call's twiliosrc reads its own socket on its "
                       "own streaming thread). Elements after twiliosrc then run on these threads and must not "
                       "block (see docs/server.md). Read at start",
                       -1, 64, DEFAULT_MEDIA_THREADS, rw));
  g_object_class_install_property(gobject_class, PROP_MEDIA_WAIT,
      g_param_spec_uint("media-wait", "Media wait",
                        "After a media thread woke up for a frame, how long (ms) it lets other calls' frames "
                        "(and the model events of agent calls, whose sockets it reads too) gather before it looks "
                        "again: fewer wake-ups, up to this much more latency (0: handle each at once). Read at start",
                        0, 20, DEFAULT_MEDIA_WAIT, rw));
  g_object_class_install_property(gobject_class, PROP_MEDIA_FILL,
      g_param_spec_uint("media-fill", "Media fill",
                        "A new call goes to the first media thread that uses less than this share of a CPU "
                        "(percent), else to the least loaded: light load wakes few threads, and every wake-up "
                        "costs CPU of its own (0: spread calls evenly over all media threads). Read at start",
                        0, 100, DEFAULT_MEDIA_FILL, rw));
  g_object_class_install_property(gobject_class, PROP_OUT_DIR,
      g_param_spec_string("out-dir", "Output directory", "Value of ${out_dir} / ${recordings_dir} in templates",
                          DEFAULT_OUT_DIR, rw));
  g_object_class_install_property(gobject_class, PROP_PIPELINE,
      g_param_spec_string("pipeline", "Pipeline template",
                          "The launch template (checked when set; see pa_server_set_pipeline_template)", nullptr,
                          rw));
  g_object_class_install_property(gobject_class, PROP_CONTEXT,
      g_param_spec_boxed("context", "Main context",
                         "The GMainContext everything runs on (default: the thread-default context at start)",
                         G_TYPE_MAIN_CONTEXT, rw));
  g_object_class_install_property(gobject_class, PROP_DRAINING,
      g_param_spec_boolean("draining", "Draining", "TRUE after pa_server_drain()", FALSE, ro));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics", "Calls by state, totals, live pipelines (see docs/server.md)",
                         GST_TYPE_STRUCTURE, ro));

  signals[SIGNAL_CALL_ADMIT] = g_signal_new("call-admit", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0,
      admit_accumulator, nullptr, nullptr, G_TYPE_BOOLEAN, 2, GST_TYPE_STRUCTURE | G_SIGNAL_TYPE_STATIC_SCOPE,
      GST_TYPE_STRUCTURE | G_SIGNAL_TYPE_STATIC_SCOPE);
  signals[SIGNAL_CALL_CONSTRUCTED] = g_signal_new("call-constructed", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST,
      0, nullptr, nullptr, nullptr, G_TYPE_NONE, 2, GST_TYPE_ELEMENT, PA_TYPE_CALL);
  signals[SIGNAL_CALL_CONFIGURE] = g_signal_new("call-configure", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0,
      nullptr, nullptr, nullptr, G_TYPE_NONE, 2, GST_TYPE_ELEMENT, PA_TYPE_CALL);
  signals[SIGNAL_CALL_MESSAGE] = g_signal_new("call-message", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0,
      nullptr, nullptr, nullptr, G_TYPE_NONE, 3, GST_TYPE_ELEMENT, PA_TYPE_CALL, GST_TYPE_MESSAGE);
  signals[SIGNAL_CALL_ENDED] = g_signal_new("call-ended", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr,
      nullptr, nullptr, G_TYPE_NONE, 3, GST_TYPE_ELEMENT, PA_TYPE_CALL, G_TYPE_STRING);
  signals[SIGNAL_DRAINED] = g_signal_new("drained", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr,
      nullptr, nullptr, G_TYPE_NONE, 0);
}
