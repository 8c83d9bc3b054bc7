/* gst-phone-agent: the embedded local model engine (server, threads, workers) */
#include "local-engine.h"

#include <libsoup/soup.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "local-session.h"
#include "local-stt.h"
#include "local-tts.h"
#include "pa-audio.h"

GST_DEBUG_CATEGORY(pa_local_debug);
#define GST_CAT_DEFAULT pa_local_debug

namespace pa::local {

namespace {

constexpr const char *kPath = "/v1/realtime";
constexpr int kSttThreads = 2;

/* A closable FIFO of jobs for worker threads. */
template <typename Job> class JobQueue {
public:
  void push(Job job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (closed_)
        return;
      q_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  /* Blocks; FALSE once closed. */
  bool pop(Job &job) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [this] { return closed_ || !q_.empty(); });
    if (closed_)
      return false;
    job = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(m_);
      closed_ = true;
      q_.clear();
    }
    cv_.notify_all();
  }
  void reopen() {
    std::lock_guard<std::mutex> lock(m_);
    closed_ = false;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(m_);
    return q_.size();
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Job> q_;
  bool closed_ = false;
};

/* Runs @fn on @ctx's thread (never inline: workers do not own @ctx). */
void invoke_on(GMainContext *ctx, std::function<void()> fn) {
  GSource *src = g_idle_source_new();
  g_source_set_priority(src, G_PRIORITY_DEFAULT);
  g_source_set_callback(
      src,
      [](gpointer d) -> gboolean {
        (*static_cast<std::function<void()> *>(d))();
        return G_SOURCE_REMOVE;
      },
      new std::function<void()>(std::move(fn)), [](gpointer d) { delete static_cast<std::function<void()> *>(d); });
  g_source_attach(src, ctx);
  g_source_unref(src);
}

/* The canned reply: 100 ms of silence, a 1 s 440 Hz tone at -12 dBFS with
 * 20 ms ramps, 100 ms of silence. */
std::vector<int16_t> render_canned(int rate) {
  std::vector<int16_t> out(static_cast<size_t>(rate) * 12 / 10, 0);
  size_t start = static_cast<size_t>(rate) / 10, len = static_cast<size_t>(rate);
  size_t ramp = static_cast<size_t>(rate) / 50;
  for (size_t i = 0; i < len; i++) {
    double env = 1.0;
    if (i < ramp)
      env = static_cast<double>(i) / static_cast<double>(ramp);
    else if (len - i < ramp)
      env = static_cast<double>(len - i) / static_cast<double>(ramp);
    out[start + i] = static_cast<int16_t>(8192.0 * env * std::sin(2.0 * M_PI * 440.0 * static_cast<double>(i) / rate));
  }
  return out;
}

} // namespace

struct Engine::Impl {
  explicit Impl(EngineConfig c) { svc.config = std::move(c); }

  Services svc;
  SttConfig stt_config;

  std::thread thread;
  GMainContext *ctx = nullptr;
  GMainLoop *loop = nullptr;
  SoupServer *server = nullptr;
  std::map<SoupWebsocketConnection *, std::unique_ptr<Session>> sessions;
  bool shutting_down = false;

  mutable std::mutex m;
  std::condition_variable cv;
  bool ready = false;
  GError *start_error = nullptr;
  std::string url;

  /* One pocketsphinx decoder on its own thread with its own FIFO, so that a
   * stream's jobs (begin, feeds, end) stay in order on one decoder. Created
   * and used on the engine thread (start_workers: before it serves). */
  struct SttWorker {
    JobQueue<std::function<void(Recognizer *)>> jobs;
    std::thread thread;
    bool reserved = false; /* a stream is open on it */
  };
  std::vector<std::unique_ptr<SttWorker>> stt_workers;
  std::deque<std::function<void(Recognizer *)>> stt_waiting; /* batch jobs waiting for a decoder */
  JobQueue<std::function<void()>> tts_jobs;
  std::thread tts_thread;

  /* ---------------------------------------------------------- workers */

  void stt_main(SttWorker *w, bool warm) {
    std::unique_ptr<Recognizer> rec;
    std::string error;
    bool failed = false;
    auto ensure = [&]() {
      if (!rec && !failed) {
        gint64 t = g_get_monotonic_time();
        rec = Recognizer::create(stt_config, error);
        failed = !rec;
        if (failed) {
          GST_ERROR("pocketsphinx: %s", error.c_str());
          return;
        }
        rec->prime_phone_band(); /* streaming starts from a phone-like cepstral mean */
        GST_INFO("pocketsphinx decoder ready in %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
      }
    };
    if (warm)
      ensure();
    std::function<void(Recognizer *)> job;
    while (w->jobs.pop(job)) {
      ensure();
      job(rec.get());
      job = nullptr;
    }
  }

  /* An unreserved decoder, preferring the least loaded; a second one is
   * only loaded when the first is streaming. */
  SttWorker *free_worker() {
    SttWorker *best = nullptr;
    for (auto &w : stt_workers)
      if (!w->reserved && (!best || w->jobs.size() < best->jobs.size()))
        best = w.get();
    if (!best && static_cast<int>(stt_workers.size()) < kSttThreads)
      best = spawn_stt_worker(false);
    return best;
  }

  SttWorker *spawn_stt_worker(bool warm) {
    auto w = std::make_unique<SttWorker>();
    SttWorker *raw = w.get();
    w->thread = std::thread([this, raw, warm] { stt_main(raw, warm); });
    stt_workers.push_back(std::move(w));
    return raw;
  }

  void release_worker(SttWorker *w) {
    w->reserved = false;
    if (shutting_down)
      return;
    while (!stt_waiting.empty()) {
      SttWorker *f = free_worker();
      if (!f)
        break;
      f->jobs.push(std::move(stt_waiting.front()));
      stt_waiting.pop_front();
    }
  }

  class Stream : public SttStream {
  public:
    Stream(Impl *impl, SttWorker *w) : impl_(impl), w_(w) {
      w_->reserved = true;
      w_->jobs.push([](Recognizer *r) {
        if (r)
          r->begin();
      });
    }
    ~Stream() override {
      if (!open_)
        return;
      w_->jobs.push([](Recognizer *r) {
        if (r)
          r->end();
      });
      impl_->release_worker(w_);
    }
    void feed(std::vector<int16_t> pcm) override {
      if (!open_ || pcm.empty())
        return;
      Stats *stats = &impl_->svc.stats;
      w_->jobs.push([pcm = std::move(pcm), stats](Recognizer *r) {
        gint64 t = g_get_monotonic_time();
        if (r)
          r->feed(pcm.data(), pcm.size());
        stats->transcription_ms += static_cast<uint64_t>((g_get_monotonic_time() - t) / 1000);
      });
    }
    void finish(std::function<void(std::string, double)> done) override {
      if (!open_)
        return;
      open_ = false;
      Stats *stats = &impl_->svc.stats;
      GMainContext *c = impl_->ctx;
      w_->jobs.push([done = std::move(done), stats, c](Recognizer *r) mutable {
        gint64 t = g_get_monotonic_time();
        std::string text = r ? r->end() : std::string();
        double ms = static_cast<double>(g_get_monotonic_time() - t) / 1000.0;
        stats->transcriptions++;
        stats->transcription_ms += static_cast<uint64_t>(ms);
        invoke_on(c, [done = std::move(done), text, ms]() { done(text, ms); });
      });
      impl_->release_worker(w_);
    }

  private:
    Impl *impl_;
    SttWorker *w_;
    bool open_ = true;
  };

  void start_workers() {
    tts_jobs.reopen();
    spawn_stt_worker(true);
    tts_thread = std::thread([this] {
      std::function<void()> job;
      while (tts_jobs.pop(job)) {
        job();
        job = nullptr;
      }
    });
    GMainContext *c = ctx;
    Stats *stats = &svc.stats;
    svc.transcribe = [this, c, stats](std::vector<int16_t> pcm, std::function<void(std::string, double)> done) {
      std::function<void(Recognizer *)> job = [c, stats, pcm = std::move(pcm),
                                               done = std::move(done)](Recognizer *rec) mutable {
        gint64 t = g_get_monotonic_time();
        std::string text = rec ? rec->transcribe(pcm.data(), pcm.size()) : std::string();
        double ms = static_cast<double>(g_get_monotonic_time() - t) / 1000.0;
        stats->transcriptions++;
        stats->transcription_ms += static_cast<uint64_t>(ms);
        invoke_on(c, [done = std::move(done), text, ms]() { done(text, ms); });
      };
      if (SttWorker *w = free_worker())
        w->jobs.push(std::move(job));
      else
        stt_waiting.push_back(std::move(job));
    };
    svc.open_stream = [this]() -> std::unique_ptr<SttStream> {
      SttWorker *w = free_worker();
      if (!w)
        return nullptr;
      return std::make_unique<Stream>(this, w);
    };
    svc.synthesize = [this, c, stats](std::string text, std::string voice, int rate, int wpm,
                                      std::function<void(bool, Speech, std::string)> done) {
      tts_jobs.push([c, stats, text = std::move(text), voice = std::move(voice), rate, wpm,
                     done = std::move(done)]() mutable {
        gint64 t = g_get_monotonic_time();
        Speech speech;
        std::string error;
        bool ok = tts_synthesize(text, voice, rate, speech, error, wpm);
        stats->synthesis_ms += static_cast<uint64_t>((g_get_monotonic_time() - t) / 1000);
        auto shared = std::make_shared<Speech>(std::move(speech));
        invoke_on(c, [done = std::move(done), ok, shared, error]() { done(ok, std::move(*shared), error); });
      });
    };
  }

  /* After the engine thread has ended (no session can touch them). */
  void stop_workers() {
    for (auto &w : stt_workers)
      w->jobs.close();
    tts_jobs.close();
    for (auto &w : stt_workers)
      if (w->thread.joinable())
        w->thread.join();
    stt_workers.clear();
    stt_waiting.clear();
    if (tts_thread.joinable())
      tts_thread.join();
    svc.transcribe = nullptr;
    svc.open_stream = nullptr;
    svc.synthesize = nullptr;
  }

  /* ----------------------------------------------------------- server */

  static void on_websocket(SoupServer *, SoupServerMessage *msg, const char *, SoupWebsocketConnection *conn,
                           gpointer user_data) {
    auto *self = static_cast<Impl *>(user_data);
    if (self->shutting_down) {
      soup_websocket_connection_close(conn, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "server shutting down");
      return;
    }
    SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
    /* beta: the header, or its browser spelling as a subprotocol */
    const char *beta = soup_message_headers_get_one(h, "OpenAI-Beta");
    const char *protocols = soup_message_headers_get_list(h, "Sec-WebSocket-Protocol");
    Dialect dialect = ((beta && strstr(beta, "realtime=v1")) || (protocols && strstr(protocols, "openai-beta.realtime-v1")))
                          ? Dialect::Beta
                          : Dialect::GA;
    std::string model;
    if (const char *q = g_uri_get_query(soup_server_message_get_uri(msg))) {
      GHashTable *params = g_uri_parse_params(q, -1, "&", G_URI_PARAMS_NONE, nullptr);
      if (params) {
        if (const char *m = static_cast<const char *>(g_hash_table_lookup(params, "model")))
          model = m;
        g_hash_table_unref(params);
      }
    }
    /* Authorization / api-key headers are accepted and ignored (never logged). */
    auto session = std::make_unique<Session>(self->svc, conn, dialect, model);
    g_signal_connect(conn, "closed", G_CALLBACK(on_closed), self);
    GST_INFO("session from %s (%s dialect, model '%s')", soup_server_message_get_remote_host(msg),
             dialect == Dialect::GA ? "GA" : "beta", model.c_str());
    self->svc.stats.sessions_total++;
    self->svc.stats.sessions_active++;
    Session *s = session.get();
    self->sessions[conn] = std::move(session);
    s->start();
  }

  static void on_closed(SoupWebsocketConnection *conn, gpointer user_data) {
    auto *self = static_cast<Impl *>(user_data);
    g_signal_handlers_disconnect_by_func(conn, reinterpret_cast<gpointer>(on_closed), self);
    /* destroy the session after this emission */
    GSource *src = g_idle_source_new();
    auto *args = new std::pair<Impl *, SoupWebsocketConnection *>(self, conn);
    g_source_set_callback(
        src,
        [](gpointer d) -> gboolean {
          auto *a = static_cast<std::pair<Impl *, SoupWebsocketConnection *> *>(d);
          a->first->remove_session(a->second);
          return G_SOURCE_REMOVE;
        },
        args, [](gpointer d) { delete static_cast<std::pair<Impl *, SoupWebsocketConnection *> *>(d); });
    g_source_attach(src, self->ctx);
    g_source_unref(src);
  }

  void remove_session(SoupWebsocketConnection *conn) {
    auto it = sessions.find(conn);
    if (it == sessions.end())
      return;
    GST_INFO("session closed (code %u)", soup_websocket_connection_get_close_code(conn));
    sessions.erase(it);
    svc.stats.sessions_active--;
    if (shutting_down && sessions.empty())
      g_main_loop_quit(loop);
  }

  static void on_http(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer user_data) {
    auto *self = static_cast<Impl *>(user_data);
    std::string body;
    if (g_strcmp0(path, "/") == 0 || g_strcmp0(path, "/health") == 0) {
      soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
      body = "{\"status\":\"ok\",\"engine\":\"gst-phone-agent local model\",\"websocket\":\"" + std::string(kPath) +
             "\",\"mode\":\"" + (self->svc.config.canned ? "canned" : "scripted") + "\"}";
    } else if (g_strcmp0(path, kPath) == 0) {
      soup_server_message_set_status(msg, SOUP_STATUS_BAD_REQUEST, nullptr);
      body = "{\"error\":{\"message\":\"This endpoint expects a WebSocket upgrade.\"}}";
    } else {
      soup_server_message_set_status(msg, SOUP_STATUS_NOT_FOUND, nullptr);
      body = "{\"error\":{\"message\":\"Not found. The Realtime endpoint is " + std::string(kPath) + "\"}}";
    }
    soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body.data(), body.size());
  }

  void run() {
    g_main_context_push_thread_default(ctx);
    GError *err = nullptr;
    server = soup_server_new("server-header", "gst-phone-agent-local-model", nullptr);
    soup_server_add_handler(server, nullptr, on_http, this, nullptr);
    /* Browser-style clients offer "realtime" (plus key and beta markers) as
     * subprotocols and want it chosen; others offer none. */
    static const char *subprotocols[] = {"realtime", nullptr};
    soup_server_add_websocket_handler(server, kPath, nullptr, const_cast<char **>(subprotocols), on_websocket, this,
                                      nullptr);
    std::string addr = svc.config.address.empty() ? "127.0.0.1" : svc.config.address;
    if (addr == "localhost")
      addr = "127.0.0.1";
    GInetAddress *ia = g_inet_address_new_from_string(addr.c_str());
    int port = 0;
    if (!ia) {
      g_set_error(&err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                  "The local model can only listen on a numeric IP address, not '%s'", addr.c_str());
    } else {
      GSocketAddress *sa = g_inet_socket_address_new(ia, static_cast<guint16>(svc.config.port));
      if (!soup_server_listen(server, sa, static_cast<SoupServerListenOptions>(0), &err)) {
        GError *e = g_error_new(GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ_WRITE,
                                "The local model cannot listen on %s:%d: %s", addr.c_str(), svc.config.port,
                                err->message);
        g_clear_error(&err);
        err = e;
      } else {
        GSList *uris = soup_server_get_uris(server);
        if (uris)
          port = g_uri_get_port(static_cast<GUri *>(uris->data));
        g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
      }
      g_object_unref(sa);
      g_object_unref(ia);
    }
    {
      std::lock_guard<std::mutex> lock(m);
      if (err) {
        start_error = err;
      } else {
        bool v6 = addr.find(':') != std::string::npos;
        url = "ws://" + (v6 ? "[" + addr + "]" : addr) + ":" + std::to_string(port) + kPath;
      }
      ready = true;
    }
    cv.notify_all();
    if (!err)
      g_main_loop_run(loop);

    for (auto &[conn, s] : sessions)
      g_signal_handlers_disconnect_by_func(conn, reinterpret_cast<gpointer>(on_closed), this);
    sessions.clear();
    svc.stats.sessions_active = 0;
    soup_server_disconnect(server);
    g_object_unref(server);
    server = nullptr;
    /* let the closing sockets flush */
    while (g_main_context_iteration(ctx, FALSE)) {
    }
    g_main_context_pop_thread_default(ctx);
  }

  void shutdown() {
    shutting_down = true;
    if (sessions.empty()) {
      g_main_loop_quit(loop);
      return;
    }
    for (auto &[conn, s] : sessions)
      s->close(SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "server shutting down");
    /* do not wait forever for peers to answer the close */
    GSource *t = g_timeout_source_new(500);
    g_source_set_callback(
        t,
        [](gpointer d) -> gboolean {
          g_main_loop_quit(static_cast<GMainLoop *>(d));
          return G_SOURCE_REMOVE;
        },
        g_main_loop_ref(loop), reinterpret_cast<GDestroyNotify>(g_main_loop_unref));
    g_source_attach(t, ctx);
    g_source_unref(t);
  }
};

Engine::Engine(EngineConfig config) : impl_(new Impl(std::move(config))) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(pa_local_debug, "localmodel", 0, "gst-phone-agent embedded local model");
    g_once_init_leave(&once, 1);
  }
}

Engine::~Engine() { stop(); }

bool Engine::start(GError **error) {
  Impl &p = *impl_;
  if (p.thread.joinable()) {
    g_set_error(error, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_FAILED, "The local model is already running");
    return false;
  }
  std::string err;
  if (p.svc.config.agent_file.empty()) {
    p.svc.agent = Agent::builtin();
  } else {
    p.svc.agent = Agent::load_file(p.svc.config.agent_file, err);
    if (!p.svc.agent) {
      g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, "The local model's agent file is unusable: %s",
                  err.c_str());
      return false;
    }
  }
  if (p.svc.config.canned) {
    p.svc.canned_pcm24 = render_canned(24000);
    std::vector<int16_t> pcm8 = render_canned(kMulawRate);
    p.svc.canned_pcmu.resize(pcm8.size());
    mulaw_encode_block(pcm8.data(), p.svc.canned_pcmu.data(), pcm8.size());
    p.svc.canned_text = "This is a canned reply from the local model.";
    p.svc.canned_words.clear();
    /* words spread evenly over the tone */
    size_t words = 0, pos = 0;
    std::vector<size_t> starts;
    for (size_t i = 0; i < p.svc.canned_text.size(); i++)
      if (p.svc.canned_text[i] != ' ' && (i == 0 || p.svc.canned_text[i - 1] == ' '))
        starts.push_back(i);
    words = starts.size();
    for (size_t s : starts)
      p.svc.canned_words.emplace_back(s, 100.0 + 1000.0 * static_cast<double>(pos++) / static_cast<double>(words));
  } else {
    p.stt_config.agent_sentences = p.svc.agent->language_sentences();
    p.stt_config.agent_weight = p.svc.agent->agent_lm_weight();
    if (!stt_check_models(p.stt_config, err)) {
      g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
                  "The local model cannot transcribe: %s", err.c_str());
      return false;
    }
    if (!tts_check_voice(p.svc.config.voice, err)) {
      g_set_error(error, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_INIT, "The local model cannot speak: %s", err.c_str());
      return false;
    }
  }

  p.ctx = g_main_context_new();
  p.loop = g_main_loop_new(p.ctx, FALSE);
  p.svc.context = p.ctx;
  p.ready = false;
  p.shutting_down = false;
  if (!p.svc.config.canned)
    p.start_workers(); /* before any session can ask for them */
  p.thread = std::thread([&p] { p.run(); });
  {
    std::unique_lock<std::mutex> lock(p.m);
    p.cv.wait(lock, [&p] { return p.ready; });
  }
  if (p.start_error) {
    p.thread.join();
    p.stop_workers();
    g_propagate_error(error, p.start_error);
    p.start_error = nullptr;
    g_main_loop_unref(p.loop);
    g_main_context_unref(p.ctx);
    p.loop = nullptr;
    p.ctx = nullptr;
    return false;
  }
  GST_INFO("local model serving %s (agent '%s', %s)", p.url.c_str(), p.svc.agent->name().c_str(),
           p.svc.config.canned ? "canned replies" : "pocketsphinx + espeak-ng");
  return true;
}

std::string Engine::url() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return impl_->url;
}

void Engine::stop() {
  Impl &p = *impl_;
  if (!p.thread.joinable())
    return;
  invoke_on(p.ctx, [&p] { p.shutdown(); });
  p.thread.join();
  p.stop_workers();
  g_main_loop_unref(p.loop);
  p.loop = nullptr;
  g_main_context_unref(p.ctx); /* drops results that arrived too late */
  p.ctx = nullptr;
  p.svc.context = nullptr;
  std::lock_guard<std::mutex> lock(p.m);
  p.url.clear();
}

GstStructure *Engine::stats() const {
  const Stats &s = impl_->svc.stats;
  std::string url = this->url();
  return gst_structure_new(
      "local-model-stats", "url", G_TYPE_STRING, url.c_str(), "mode", G_TYPE_STRING,
      impl_->svc.config.canned ? "canned" : "scripted", "sessions-total", G_TYPE_UINT64, s.sessions_total.load(),
      "sessions-active", G_TYPE_UINT64, s.sessions_active.load(), "events-received", G_TYPE_UINT64,
      s.events_received.load(), "events-sent", G_TYPE_UINT64, s.events_sent.load(), "errors-sent", G_TYPE_UINT64,
      s.errors_sent.load(), "malformed-json", G_TYPE_UINT64, s.malformed_json.load(), "unknown-events",
      G_TYPE_UINT64, s.unknown_events.load(), "binary-frames", G_TYPE_UINT64, s.binary_frames.load(), "turns",
      G_TYPE_UINT64, s.turns.load(), "commits", G_TYPE_UINT64, s.commits.load(), "transcriptions", G_TYPE_UINT64,
      s.transcriptions.load(), "transcription-ms", G_TYPE_UINT64, s.transcription_ms.load(), "responses",
      G_TYPE_UINT64, s.responses.load(), "responses-cancelled", G_TYPE_UINT64, s.responses_cancelled.load(),
      "tool-calls", G_TYPE_UINT64, s.tool_calls.load(), "truncations", G_TYPE_UINT64, s.truncations.load(),
      "audio-in-ms", G_TYPE_UINT64, s.audio_in_ms.load(), "audio-out-ms", G_TYPE_UINT64, s.audio_out_ms.load(),
      "synthesis-ms", G_TYPE_UINT64, s.synthesis_ms.load(), nullptr);
}

} // namespace pa::local
