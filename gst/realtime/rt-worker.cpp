/* gst-phone-agent: a private GMainContext thread with timers and HTTP */
#include "rt-worker.h"

#include <gst/gst.h>
#include <libsoup/soup.h>

#include <atomic>
#include <mutex>

GST_DEBUG_CATEGORY_STATIC(rtworker_debug);
#define GST_CAT_DEFAULT rtworker_debug

namespace pa::rt {

struct Worker::Impl {
  std::string name;
  GMainContext *context = nullptr;
  GMainLoop *loop = nullptr;
  GThread *thread = nullptr;
  SoupSession *session = nullptr; /* worker thread only */
  GCancellable *cancel = nullptr; /* cancels every request at stop */
  std::mutex lock;
  bool stopped = false;

  static gpointer thread_main(gpointer data) {
    auto *impl = static_cast<Impl *>(data);
    g_main_context_push_thread_default(impl->context);
    g_main_loop_run(impl->loop);
    /* let cancelled requests finish their callbacks */
    for (int i = 0; i < 1000 && g_main_context_iteration(impl->context, FALSE); i++) {
    }
    if (impl->session) {
      soup_session_abort(impl->session);
      g_object_unref(impl->session);
      impl->session = nullptr;
    }
    for (int i = 0; i < 1000 && g_main_context_iteration(impl->context, FALSE); i++) {
    }
    g_main_context_pop_thread_default(impl->context);
    return nullptr;
  }

  SoupSession *get_session() {
    if (!session)
      session = soup_session_new_with_options("user-agent", "gst-phone-agent realtimemodel", nullptr);
    return session;
  }
};

namespace {
struct Call {
  std::function<void()> fn;
};
struct Timer {
  std::function<bool()> fn;
};

struct Request {
  Worker::Impl *impl;
  SoupMessage *msg = nullptr;
  GCancellable *cancel = nullptr;
  GSource *timeout = nullptr;
  gulong cancel_handler = 0;
  bool timed_out = false;
  gint64 start_us = 0;
  std::function<void(HttpResult)> done;
};

void finish_request(GObject *source, GAsyncResult *res, gpointer data) {
  auto *r = static_cast<Request *>(data);
  GError *err = nullptr;
  GBytes *bytes = soup_session_send_and_read_finish(SOUP_SESSION(source), res, &err);
  HttpResult out;
  out.elapsed_ms = (g_get_monotonic_time() - r->start_us) / 1000.0;
  if (bytes) {
    out.status = static_cast<int>(soup_message_get_status(r->msg));
    gsize n = 0;
    const char *p = static_cast<const char *>(g_bytes_get_data(bytes, &n));
    out.body.assign(p ? p : "", n);
    g_bytes_unref(bytes);
  } else {
    out.timed_out = r->timed_out;
    out.cancelled = !r->timed_out && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    out.error = r->timed_out ? "timed out" : (err ? err->message : "request failed");
  }
  g_clear_error(&err);
  if (r->cancel_handler)
    g_cancellable_disconnect(r->impl->cancel, r->cancel_handler);
  if (r->timeout) {
    g_source_destroy(r->timeout);
    g_source_unref(r->timeout);
  }
  GST_DEBUG("POST done: status %d, %s, %.1f ms", out.status, out.error.empty() ? "ok" : out.error.c_str(),
            out.elapsed_ms);
  if (r->done)
    r->done(std::move(out));
  g_object_unref(r->msg);
  g_object_unref(r->cancel);
  delete r;
}
} // namespace

Worker::Worker(std::string name) : impl_(std::make_unique<Impl>()) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(rtworker_debug, "rtworker", 0, "realtime model control thread and HTTP");
    g_once_init_leave(&once, 1);
  }
  impl_->name = std::move(name);
}

Worker::~Worker() { stop(); }

void Worker::start() {
  std::lock_guard<std::mutex> g(impl_->lock);
  if (impl_->thread)
    return;
  impl_->stopped = false;
  impl_->context = g_main_context_new();
  impl_->loop = g_main_loop_new(impl_->context, FALSE);
  impl_->cancel = g_cancellable_new();
  impl_->thread = g_thread_new(impl_->name.c_str(), Impl::thread_main, impl_.get());
}

void Worker::stop() {
  GThread *thread;
  {
    std::lock_guard<std::mutex> g(impl_->lock);
    thread = impl_->thread;
    impl_->thread = nullptr;
    impl_->stopped = true;
  }
  if (!thread)
    return;
  /* cancel on the worker thread, then quit: cancelling wakes libsoup's
   * handlers in the thread that cancels, and a SoupSession may only be
   * touched from its own thread (cancelled here, a request being torn
   * down on the worker crashed inside libsoup now and then) */
  GSource *s = g_idle_source_new();
  g_source_set_priority(s, G_PRIORITY_HIGH);
  g_source_set_callback(
      s,
      [](gpointer d) -> gboolean {
        auto *impl = static_cast<Impl *>(d);
        g_cancellable_cancel(impl->cancel);
        g_main_loop_quit(impl->loop);
        return G_SOURCE_REMOVE;
      },
      impl_.get(), nullptr);
  g_source_attach(s, impl_->context);
  g_source_unref(s);
  g_thread_join(thread);
  /* sources still attached hold std::functions: destroying the context
   * frees them (their destroy notifies run here) */
  g_main_loop_unref(impl_->loop);
  impl_->loop = nullptr;
  g_main_context_unref(impl_->context);
  impl_->context = nullptr;
  g_object_unref(impl_->cancel);
  impl_->cancel = nullptr;
}

bool Worker::running() const {
  std::lock_guard<std::mutex> g(impl_->lock);
  return impl_->thread != nullptr;
}

bool Worker::on_worker_thread() const {
  std::lock_guard<std::mutex> g(impl_->lock);
  return impl_->context && g_main_context_is_owner(impl_->context);
}

void Worker::invoke(std::function<void()> fn) {
  std::lock_guard<std::mutex> g(impl_->lock);
  if (!impl_->thread)
    return;
  GSource *s = g_idle_source_new();
  g_source_set_priority(s, G_PRIORITY_DEFAULT);
  g_source_set_callback(
      s,
      [](gpointer d) -> gboolean {
        static_cast<Call *>(d)->fn();
        return G_SOURCE_REMOVE;
      },
      new Call{std::move(fn)}, [](gpointer d) { delete static_cast<Call *>(d); });
  g_source_attach(s, impl_->context);
  g_source_unref(s);
}

guint Worker::add_timer(guint interval_ms, std::function<bool()> fn) {
  std::lock_guard<std::mutex> g(impl_->lock);
  if (!impl_->thread)
    return 0;
  GSource *s = g_timeout_source_new(interval_ms);
  g_source_set_callback(
      s, [](gpointer d) -> gboolean { return static_cast<Timer *>(d)->fn() ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE; },
      new Timer{std::move(fn)}, [](gpointer d) { delete static_cast<Timer *>(d); });
  guint id = g_source_attach(s, impl_->context);
  g_source_unref(s);
  return id;
}

void Worker::cancel_timer(guint id) {
  std::lock_guard<std::mutex> g(impl_->lock);
  if (!impl_->thread || !id)
    return;
  if (GSource *s = g_main_context_find_source_by_id(impl_->context, id))
    g_source_destroy(s);
}

void Worker::http_post(const std::string &url, const std::string &content_type, const std::string &body,
                       std::vector<std::pair<std::string, std::string>> headers, guint timeout_ms,
                       std::function<void(HttpResult)> done) {
  invoke([this, url, content_type, body, headers = std::move(headers), timeout_ms,
          done = std::move(done)]() mutable {
    HttpResult fail;
    SoupMessage *msg = soup_message_new("POST", url.c_str());
    if (!msg) {
      fail.error = "invalid URL";
      done(std::move(fail));
      return;
    }
    GBytes *b = g_bytes_new(body.data(), body.size());
    soup_message_set_request_body_from_bytes(msg, content_type.c_str(), b);
    g_bytes_unref(b);
    SoupMessageHeaders *h = soup_message_get_request_headers(msg);
    soup_message_headers_replace(h, "Accept", "application/json");
    for (const auto &[k, v] : headers)
      soup_message_headers_replace(h, k.c_str(), v.c_str());
    auto *r = new Request();
    r->impl = impl_.get();
    r->msg = msg;
    r->cancel = g_cancellable_new();
    r->start_us = g_get_monotonic_time();
    r->done = std::move(done);
    /* stop() cancels every request through the worker's cancellable */
    r->cancel_handler = g_cancellable_connect(impl_->cancel, G_CALLBACK(+[](GCancellable *, gpointer c) {
                            g_cancellable_cancel(G_CANCELLABLE(c));
                          }),
                          g_object_ref(r->cancel), g_object_unref);
    if (timeout_ms > 0) {
      r->timeout = g_timeout_source_new(timeout_ms);
      g_source_set_callback(
          r->timeout,
          [](gpointer d) -> gboolean {
            auto *req = static_cast<Request *>(d);
            req->timed_out = true;
            g_cancellable_cancel(req->cancel);
            return G_SOURCE_REMOVE;
          },
          r, nullptr);
      g_source_attach(r->timeout, impl_->context);
    }
    GST_DEBUG("POST %s (%zu bytes, timeout %u ms)", soup_message_get_uri(msg) ? g_uri_get_host(soup_message_get_uri(msg)) : "?",
              body.size(), timeout_ms);
    soup_session_send_and_read_async(impl_->get_session(), msg, G_PRIORITY_DEFAULT, r->cancel, finish_request, r);
  });
}

} // namespace pa::rt
