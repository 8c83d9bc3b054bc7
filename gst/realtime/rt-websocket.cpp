/* gst-phone-agent: the model-side WebSocket client (own epoll loop, OpenSSL) */
#include "rt-websocket.h"

#include "pa-websocket.h"

#include <gst/gst.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

GST_DEBUG_CATEGORY_STATIC(rtws_debug);
#define GST_CAT_DEFAULT rtws_debug

namespace pa::rt {

bool parse_ws_url(const std::string &url, WsUrl &out, std::string &error) {
  out = WsUrl();
  std::string rest;
  if (url.rfind("ws://", 0) == 0) {
    rest = url.substr(5);
  } else if (url.rfind("wss://", 0) == 0) {
    out.tls = true;
    rest = url.substr(6);
  } else {
    error = "not a ws:// or wss:// URL";
    return false;
  }
  size_t slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!out.path.empty() && out.path[0] == '?')
    out.path = "/" + out.path;
  if (authority.find('@') != std::string::npos) {
    error = "credentials in the URL are not supported (use api-key)";
    return false;
  }
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) {
      error = "bad IPv6 address";
      return false;
    }
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        error = "bad authority";
        return false;
      }
      port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos)
      port = authority.substr(colon + 1);
  }
  if (out.host.empty()) {
    error = "no host";
    return false;
  }
  if (port.empty()) {
    out.port = out.tls ? 443 : 80;
  } else {
    char *end = nullptr;
    long p = strtol(port.c_str(), &end, 10);
    if (!end || *end || p <= 0 || p > 65535) {
      error = "bad port";
      return false;
    }
    out.port = static_cast<int>(p);
  }
  return true;
}

namespace {

constexpr gint64 kCloseWaitUs = G_USEC_PER_SEC;           /* after our close frame, wait for the peer's */
constexpr gint64 kTimerScanUs = 100 * G_TIME_SPAN_MILLISECOND; /* timers are this coarse */
constexpr size_t kMaxResponseHead = 16 * 1024;
constexpr size_t kReadChunk = 64 * 1024;
const char kWsGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string default_ca_file() {
  const char *env = g_getenv("SSL_CERT_FILE");
  if (env && g_file_test(env, G_FILE_TEST_EXISTS))
    return env;
  const char *def = X509_get_default_cert_file();
  if (def && g_file_test(def, G_FILE_TEST_EXISTS))
    return def;
  return {};
}

/* The first OpenSSL error, for messages (certificate problems get the
 * verifier's own words). */
std::string ssl_error_text(SSL *ssl) {
  long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
  if (v != X509_V_OK)
    return std::string("certificate not accepted: ") + X509_verify_cert_error_string(v);
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e)
    return "TLS failure";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return std::string("TLS: ") + buf;
}

/* Four unpredictable bytes for a frame's mask (RFC 6455 5.3). RAND_bytes()
 * costs about as much for 4 bytes as for 512 (locks, a DRBG round), and it
 * was 5 % of the agent relay's samples when called per frame: each thread
 * takes its masks from a pool it refills 128 masks at a time. */
void next_mask(uint8_t mask[4]) {
  static thread_local uint8_t pool[512];
  static thread_local size_t used = sizeof(pool);
  if (used == sizeof(pool)) {
    if (RAND_bytes(pool, sizeof(pool)) != 1) /* never in practice; still never a fixed mask */
      for (size_t i = 0; i < sizeof(pool); i += 4) {
        guint32 r = g_random_int();
        memcpy(pool + i, &r, 4);
      }
    used = 0;
  }
  memcpy(mask, pool + used, 4);
  used += 4;
}

std::string accept_for(const std::string &key) {
  std::string s = key + kWsGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char *>(s.data()), s.size(), digest);
  gchar *b64 = g_base64_encode(digest, sizeof(digest));
  std::string out(b64);
  g_free(b64);
  return out;
}

class Loop;

} // namespace

/* One connection. Fields under @mu may be used from any thread (sends,
 * close); the rest belongs to the loop thread. */
struct WsClient::Conn : std::enable_shared_from_this<WsClient::Conn> {
  enum class State { Idle, Connecting, Tls, Upgrade, Open, Done };

  WsOptions opts;
  WsUrl url;
  std::string address;     /* resolved IP */
  std::string host_header; /* host[:port] */

  mutable std::mutex mu;
  std::condition_variable cv;
  State state = State::Idle;
  int fd = -1;
  uint32_t events = 0;                /* what epoll watches */
  SSL *ssl = nullptr;                 /* with its memory BIOs */
  std::deque<std::string> pending;    /* texts sent before the upgrade */
  size_t pending_bytes = 0;
  std::string backlog;                /* bytes the socket has not taken yet */
  size_t backlog_off = 0;
  bool write_failed = false;
  bool closing = false;               /* close() asked */
  bool close_sent = false;
  gint64 close_deadline = 0;
  bool started = false;               /* open() succeeded */
  bool finished = false;              /* socket gone, or never made */
  bool listed = false;                /* in the loop's conns_ (loop thread) */
  WsStats st;
  std::weak_ptr<Loop> loop;

  std::mutex cb_mu;
  WsCallbacks cb;
  bool detached = false;

  /* loop thread only */
  std::string in;            /* bytes read (decrypted), not yet consumed */
  std::string msg;           /* a fragmented message being put together */
  bool in_message = false;
  bool msg_skip = false;     /* binary or oversized: dropped */
  bool msg_binary = false;
  uint64_t skip_bytes = 0;   /* payload still to discard of an oversized frame */
  std::string ws_key;
  int http_status = 0;
  int peer_code = 0;
  std::string peer_reason;
  bool terminal_reported = false;
  gint64 deadline = 0;       /* connecting: give up at */
  gint64 last_rx = 0;
  gint64 ping_at = 0;        /* when we last pinged; 0: no ping out */

  size_t queued_locked() const { return pending_bytes + (backlog.size() - backlog_off); }
  /* st.queued_bytes, and its copy that WsClient::queued_bytes() reads without the lock */
  std::atomic<size_t> queued{0};
  void set_queued_locked() {
    st.queued_bytes = queued_locked();
    queued.store(st.queued_bytes, std::memory_order_relaxed);
  }

  /* The socket is gone (or never made): close it and drop what waits. */
  void close_socket_locked() {
    if (fd >= 0) {
      if (epfd >= 0)
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
      ::close(fd);
    }
    fd = -1;
    if (ssl)
      SSL_free(ssl);
    ssl = nullptr;
    state = State::Done;
    backlog.clear();
    backlog_off = 0;
    pending.clear();
    pending_bytes = 0;
    st.queued_bytes = 0;
    queued.store(0, std::memory_order_relaxed);
  }
  /* Nothing more will happen: wait_closed() returns. */
  void finished_locked() {
    finished = true;
    cv.notify_all();
  }

  void fire_open() {
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_open)
      cb.on_open();
  }
  void fire_message(std::string_view text) {
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_message)
      cb.on_message(text);
  }
  void fire_fail(int status, const std::string &why) {
    if (terminal_reported)
      return;
    terminal_reported = true;
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_fail)
      cb.on_fail(status, why);
  }
  void fire_closed(int code, const std::string &reason) {
    if (terminal_reported)
      return;
    terminal_reported = true;
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_closed)
      cb.on_closed(code, reason);
  }

  /* ---- writing, any thread, under mu ---- */

  /* Edge-triggered: Loop::on_ready() reads until a short read, and arms
   * again (@force) when it stops before that; arming reports what is ready
   * now. */
  void watch_locked(uint32_t ev, bool force = false) {
    if (fd < 0 || (ev == events && !force))
      return;
    epoll_event e{};
    e.events = ev | EPOLLET;
    e.data.ptr = this;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &e) == 0)
      events = ev;
  }
  int epfd = -1; /* the loop's, set before the socket is registered */

  /* Raw bytes for the socket, after whatever is still waiting. */
  void out_raw_locked(const char *data, size_t len) {
    if (fd < 0 || write_failed || len == 0)
      return;
    if (backlog_off < backlog.size()) {
      backlog.append(data, len);
      return;
    }
    backlog.clear();
    backlog_off = 0;
    ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        write_failed = true; /* the loop thread sees the socket fail on its side */
        return;
      }
      n = 0;
    }
    if (static_cast<size_t>(n) < len) {
      backlog.assign(data + n, len - n);
      watch_locked(events | EPOLLOUT);
    }
  }
  /* What TLS has ready to go out. */
  void flush_tls_locked() {
    if (!ssl)
      return;
    BIO *wbio = SSL_get_wbio(ssl);
    char buf[16 * 1024];
    int n;
    while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0)
      out_raw_locked(buf, static_cast<size_t>(n));
  }
  /* WebSocket stream bytes: through TLS when there is TLS. */
  void out_locked(const std::string &bytes) {
    if (!ssl) {
      out_raw_locked(bytes.data(), bytes.size());
      return;
    }
    if (!bytes.empty() && SSL_write(ssl, bytes.data(), static_cast<int>(bytes.size())) <= 0)
      write_failed = true;
    flush_tls_locked();
  }
  void frame_locked(pa::ws::Opcode op, std::string_view payload) {
    uint8_t mask[4];
    next_mask(mask);
    std::string f;
    f.reserve(payload.size() + 14);
    pa::ws::append_frame(f, op, payload, mask);
    out_locked(f);
  }
  void send_close_locked(int code, const std::string &reason) {
    if (close_sent)
      return;
    close_sent = true;
    close_deadline = g_get_monotonic_time() + kCloseWaitUs;
    std::string p;
    p.push_back(static_cast<char>((code >> 8) & 0xff));
    p.push_back(static_cast<char>(code & 0xff));
    p.append(reason.substr(0, 120));
    frame_locked(pa::ws::Opcode::Close, p);
  }
};

namespace {

using Conn = WsClient::Conn;
using State = Conn::State;

/* A loop: one epoll set of model sockets, read by one thread. Either the
 * process-wide one, with a thread of its own, or one hosted by a media
 * thread of the phone-agent server (pa::HostedLoop): that thread watches
 * our epoll set with its own sockets and calls dispatch(), so a call's model
 * socket is read on the thread that reads its Twilio socket. Either way it
 * only reads: sends are written by the thread that sends. */
class Loop : public pa::HostedLoop {
public:
  /* The loop for sockets hosted by @host (nullptr, or a host that has
   * stopped: the process-wide loop). */
  static std::shared_ptr<Loop> get(const std::shared_ptr<pa::MediaThread> &host, GError **error);

  /* Runs @fn on the loop thread, soon. */
  void post(std::function<void()> fn);
  /* Loop thread: starts connecting @c. */
  void connect(const std::shared_ptr<Conn> &c);
  /* Loop thread: drops @c if it is still connecting (close() before the upgrade). */
  void abort(Conn *c);

  /* pa::HostedLoop */
  int fd() const override { return epfd_; }
  bool hosted() const { return hosted_; }
  void dispatch() override;
  void host_gone() override;

private:
  Loop() = default;
  bool start(bool own_thread, GError **error);
  void release(); /* the last reference went */
  static gpointer thread_main(gpointer data);
  void run();
  void handle(epoll_event *evs, int n);
  void run_posted();
  void scan_timers(gint64 now);
  void end_all(); /* closes every socket, no callbacks: nobody is listening */
  void free_all(); /* end_all(), then the TLS contexts and our descriptors */

  void on_ready(Conn *c, uint32_t ev);
  void on_connected(Conn *c);
  bool read_some(Conn *c);
  void consume(Conn *c, std::string_view fresh);
  bool consume_response_head(Conn *c);
  bool consume_frames(Conn *c, std::string_view in, size_t &pos);
  void start_upgrade_locked(Conn *c);
  /* The socket is gone: report (fail before the upgrade, closed after),
   * unregister, close, and let waiters go. */
  void finish(Conn *c, int status_or_code, const std::string &why);
  SSL_CTX *ssl_ctx_for(const std::string &ca_file, std::string &error);

  int epfd_ = -1, evfd_ = -1;
  GThread *thread_ = nullptr;
  std::atomic<bool> stop_{false};
  bool orphaned_ = false; /* released on the loop thread: the thread deletes us */
  /* hosted: a timer in the epoll set for scan_timers() */
  bool hosted_ = false;
  int timerfd_ = -1;
  gint64 armed_for_ = 0;
  /* hosted, once the host has stopped: what is posted runs at once, on the
   * posting thread, one at a time */
  bool dead_ = false; /* under mu_ */
  std::mutex dead_run_mu_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::unordered_map<Conn *, std::shared_ptr<Conn>> conns_; /* loop thread */
  /* loop thread: connections finished in this round, kept until it is over
   * so that the pointers epoll gave back stay valid (Conn::listed says
   * whether one is still ours, with no lookup in conns_) */
  std::vector<std::shared_ptr<Conn>> retired_;
  std::map<std::string, SSL_CTX *> ssl_ctx_;                /* loop thread */
  gint64 next_scan_ = 0;
};

const char kTimerTag = 0; /* epoll data of a hosted loop's timer */

std::mutex g_loop_lock;
std::weak_ptr<Loop> g_loop;
const char g_host_key = 0; /* our key on a media thread */

std::shared_ptr<Loop> Loop::get(const std::shared_ptr<pa::MediaThread> &host, GError **error) {
  if (host) {
    GError *herr = nullptr;
    std::shared_ptr<pa::HostedLoop> h = host->host(&g_host_key, [&herr]() -> std::shared_ptr<pa::HostedLoop> {
      Loop *raw = new Loop();
      if (!raw->start(false, &herr)) {
        delete raw;
        return nullptr;
      }
      return std::shared_ptr<Loop>(raw, [](Loop *p) { p->release(); });
    });
    if (h)
      return std::static_pointer_cast<Loop>(h);
    if (herr) {
      g_propagate_error(error, herr);
      return nullptr;
    }
    /* the host has stopped: the process-wide loop will do */
  }
  std::lock_guard<std::mutex> g(g_loop_lock);
  if (auto l = g_loop.lock())
    return l;
  Loop *raw = new Loop();
  if (!raw->start(true, error)) {
    delete raw;
    return nullptr;
  }
  std::shared_ptr<Loop> l(raw, [](Loop *p) { p->release(); });
  g_loop = l;
  return l;
}

bool Loop::start(bool own_thread, GError **error) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(rtws_debug, "rtws", 0, "realtime model WebSocket client");
    g_once_init_leave(&once, 1);
  }
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!own_thread)
    timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epfd_ < 0 || evfd_ < 0 || (!own_thread && timerfd_ < 0)) {
    g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, "model socket loop: %s", g_strerror(errno));
    for (int fd : {epfd_, evfd_, timerfd_})
      if (fd >= 0)
        ::close(fd);
    return false;
  }
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.ptr = nullptr; /* the wake-up */
  epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &e);
  if (!own_thread) {
    hosted_ = true;
    e.data.ptr = const_cast<char *>(&kTimerTag);
    epoll_ctl(epfd_, EPOLL_CTL_ADD, timerfd_, &e);
    return true;
  }
  thread_ = g_thread_new("rt-websocket", thread_main, this);
  return true;
}

void Loop::end_all() {
  for (auto &kv : conns_) {
    std::lock_guard<std::mutex> g(kv.first->mu);
    kv.first->close_socket_locked();
    kv.first->finished_locked();
    kv.first->listed = false;
  }
  conns_.clear();
  retired_.clear();
}

void Loop::free_all() {
  end_all();
  for (auto &kv : ssl_ctx_)
    SSL_CTX_free(kv.second);
  for (int fd : {epfd_, evfd_, timerfd_})
    if (fd >= 0)
      ::close(fd);
}

void Loop::release() {
  if (hosted_) {
    /* the host let go of us (it stopped) and so did every client */
    free_all();
    delete this;
    return;
  }
  stop_ = true;
  if (g_thread_self() == thread_) {
    orphaned_ = true; /* a callback dropped the last client: finish after it returns */
    return;
  }
  uint64_t one = 1;
  (void)!write(evfd_, &one, sizeof(one));
  g_thread_join(thread_);
  delete this;
}

void Loop::post(std::function<void()> fn) {
  bool first;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!dead_) {
      first = posted_.empty();
      posted_.push_back(std::move(fn));
      if (first) {
        uint64_t one = 1;
        (void)!write(evfd_, &one, sizeof(one));
      }
      return;
    }
  }
  std::lock_guard<std::mutex> g(dead_run_mu_);
  fn();
}

gpointer Loop::thread_main(gpointer data) {
  auto *self = static_cast<Loop *>(data);
  self->run();
  self->free_all();
  GST_DEBUG("model socket loop stopped");
  if (self->orphaned_) {
    g_thread_unref(self->thread_);
    delete self;
  }
  return nullptr;
}

void Loop::handle(epoll_event *evs, int n) {
  for (int i = 0; i < n; i++) {
    if (!evs[i].data.ptr) {
      uint64_t v;
      (void)!read(evfd_, &v, sizeof(v));
      continue;
    }
    if (evs[i].data.ptr == &kTimerTag) {
      uint64_t v;
      (void)!read(timerfd_, &v, sizeof(v));
      armed_for_ = 0;
      continue;
    }
    auto *c = static_cast<Conn *>(evs[i].data.ptr);
    if (c->listed) /* an earlier event of this round may have finished it */
      on_ready(c, evs[i].events);
  }
  retired_.clear();
}

void Loop::run() {
  epoll_event evs[64];
  while (!stop_) {
    gint64 now = g_get_monotonic_time();
    int timeout = -1;
    if (!conns_.empty()) {
      if (now >= next_scan_) {
        scan_timers(now);
        next_scan_ = now + kTimerScanUs;
      }
      timeout = static_cast<int>((next_scan_ - now + 999) / 1000);
    }
    int n = epoll_wait(epfd_, evs, G_N_ELEMENTS(evs), timeout);
    if (n < 0 && errno != EINTR) {
      GST_ERROR("epoll_wait: %s", g_strerror(errno));
      break;
    }
    handle(evs, std::max(n, 0));
    run_posted();
  }
}

/* Hosted: the media thread saw our epoll set readable (a socket, a post, or
 * the timer). The same round as run()'s, without the wait; the timer is
 * armed only while there are sockets. */
void Loop::dispatch() {
  epoll_event evs[64];
  int n = epoll_wait(epfd_, evs, G_N_ELEMENTS(evs), 0);
  handle(evs, std::max(n, 0));
  run_posted();
  if (conns_.empty()) {
    if (armed_for_) {
      itimerspec off{};
      timerfd_settime(timerfd_, 0, &off, nullptr);
      armed_for_ = 0;
    }
    return;
  }
  gint64 now = g_get_monotonic_time();
  if (now >= next_scan_) {
    scan_timers(now);
    next_scan_ = now + kTimerScanUs;
  }
  if (armed_for_ != next_scan_) {
    itimerspec at{};
    at.it_value.tv_sec = static_cast<time_t>(next_scan_ / G_USEC_PER_SEC);
    at.it_value.tv_nsec = static_cast<long>(next_scan_ % G_USEC_PER_SEC) * 1000;
    timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &at, nullptr); /* g_get_monotonic_time is CLOCK_MONOTONIC */
    armed_for_ = next_scan_;
  }
}

void Loop::host_gone() {
  std::vector<std::function<void()>> todo;
  {
    std::lock_guard<std::mutex> g(mu_);
    dead_ = true;
    todo.swap(posted_);
  }
  std::lock_guard<std::mutex> g(dead_run_mu_);
  for (auto &fn : todo)
    fn();
  end_all();
}

void Loop::run_posted() {
  std::vector<std::function<void()>> todo;
  {
    std::lock_guard<std::mutex> g(mu_);
    todo.swap(posted_);
  }
  for (auto &fn : todo)
    fn();
  retired_.clear();
}

void Loop::scan_timers(gint64 now) {
  std::vector<Conn *> all;
  all.reserve(conns_.size());
  for (auto &kv : conns_)
    all.push_back(kv.first);
  for (Conn *c : all) {
    if (!c->listed)
      continue;
    State s;
    bool close_sent, write_failed;
    gint64 close_deadline;
    {
      std::lock_guard<std::mutex> g(c->mu);
      s = c->state;
      close_sent = c->close_sent;
      close_deadline = c->close_deadline;
      write_failed = c->write_failed;
    }
    if (write_failed) {
      finish(c, s == State::Open ? 1006 : 0, "the connection failed while sending");
    } else if (s != State::Open) {
      if (now >= c->deadline)
        finish(c, c->http_status, "timed out connecting to the model");
    } else if (close_sent && now >= close_deadline) {
      finish(c, c->peer_code ? c->peer_code : 1006, c->peer_reason);
    } else if (now - c->last_rx >= gint64(c->opts.dead_after_ms) * 1000) {
      finish(c, 1006, "the model stopped answering");
    } else if (now - c->last_rx >= gint64(c->opts.ping_after_ms) * 1000 && c->ping_at < c->last_rx) {
      c->ping_at = now;
      std::lock_guard<std::mutex> g(c->mu);
      c->frame_locked(pa::ws::Opcode::Ping, {});
    }
  }
  retired_.clear();
}

SSL_CTX *Loop::ssl_ctx_for(const std::string &ca_file, std::string &error) {
  auto it = ssl_ctx_.find(ca_file);
  if (it != ssl_ctx_.end())
    return it->second;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    error = ssl_error_text(nullptr);
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  std::string sys = default_ca_file();
  if (!sys.empty())
    SSL_CTX_load_verify_locations(ctx, sys.c_str(), nullptr);
  else
    SSL_CTX_set_default_verify_paths(ctx);
  if (!ca_file.empty() && SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
    error = "could not read CA file " + ca_file;
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return nullptr;
  }
  ERR_clear_error();
  ssl_ctx_[ca_file] = ctx;
  return ctx;
}

void Loop::connect(const std::shared_ptr<Conn> &cp) {
  Conn *c = cp.get();
  {
    std::lock_guard<std::mutex> g(c->mu);
    if (c->closing) { /* closed before we got to it */
      c->close_socket_locked();
      c->finished_locked();
      return;
    }
  }
  bool dead;
  {
    std::lock_guard<std::mutex> g(mu_);
    dead = dead_;
  }
  if (dead) { /* the media thread hosting us has stopped */
    c->fire_fail(0, "the server is stopping");
    std::lock_guard<std::mutex> g(c->mu);
    c->close_socket_locked();
    c->finished_locked();
    return;
  }
  c->deadline = g_get_monotonic_time() + gint64(c->opts.connect_timeout_ms) * 1000;
  SSL *ssl = nullptr;
  if (c->url.tls) {
    std::string err;
    SSL_CTX *ctx = ssl_ctx_for(c->opts.ca_file, err);
    if (!ctx || !(ssl = SSL_new(ctx))) {
      c->fire_fail(0, err.empty() ? "could not set up TLS" : err);
      std::lock_guard<std::mutex> g(c->mu);
      c->close_socket_locked();
      c->finished_locked();
      return;
    }
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(ssl);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1);
    GInetAddress *literal = g_inet_address_new_from_string(c->url.host.c_str());
    if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->url.host.c_str());
      g_object_unref(literal);
    } else {
      SSL_set_tlsext_host_name(ssl, c->url.host.c_str());
      SSL_set1_host(ssl, c->url.host.c_str());
    }
  }

  union {
    sockaddr sa;
    sockaddr_in in4;
    sockaddr_in6 in6;
  } addr{};
  socklen_t alen;
  if (inet_pton(AF_INET, c->address.c_str(), &addr.in4.sin_addr) == 1) {
    addr.in4.sin_family = AF_INET;
    addr.in4.sin_port = htons(static_cast<uint16_t>(c->url.port));
    alen = sizeof(addr.in4);
  } else {
    inet_pton(AF_INET6, c->address.c_str(), &addr.in6.sin6_addr);
    addr.in6.sin6_family = AF_INET6;
    addr.in6.sin6_port = htons(static_cast<uint16_t>(c->url.port));
    alen = sizeof(addr.in6);
  }
  int fd = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(fd, &addr.sa, alen) < 0 && errno != EINPROGRESS)
      err = errno;
  }
  if (err) {
    if (fd >= 0)
      ::close(fd);
    if (ssl)
      SSL_free(ssl);
    GST_DEBUG("could not connect to %s port %d: %s", c->address.c_str(), c->url.port, g_strerror(err));
    c->fire_fail(0, std::string("could not connect: ") + g_strerror(err));
    std::lock_guard<std::mutex> g(c->mu);
    c->close_socket_locked();
    c->finished_locked();
    return;
  }
  {
    std::lock_guard<std::mutex> g(c->mu);
    c->fd = fd;
    c->ssl = ssl;
    c->epfd = epfd_;
    c->state = State::Connecting;
    c->events = EPOLLOUT;
  }
  conns_[c] = cp;
  c->listed = true;
  epoll_event e{};
  e.events = EPOLLOUT | EPOLLET; /* see Conn::watch_locked() */
  e.data.ptr = c;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &e);
  GST_DEBUG("connecting to %s port %d (%s)", c->address.c_str(), c->url.port, c->url.tls ? "TLS" : "plain");
}

void Loop::abort(Conn *c) {
  if (c->listed)
    finish(c, c->http_status, "closed before the connection was made");
}

void Loop::on_ready(Conn *c, uint32_t ev) {
  State s;
  {
    std::lock_guard<std::mutex> g(c->mu);
    s = c->state;
  }
  if (s == State::Connecting) {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      on_connected(c);
    return;
  }
  if (ev & EPOLLOUT) {
    std::lock_guard<std::mutex> g(c->mu);
    while (c->fd >= 0 && c->backlog_off < c->backlog.size()) {
      ssize_t n = ::send(c->fd, c->backlog.data() + c->backlog_off, c->backlog.size() - c->backlog_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          c->write_failed = true;
        break;
      }
      c->backlog_off += static_cast<size_t>(n);
    }
    if (c->backlog_off >= c->backlog.size()) {
      c->backlog.clear();
      c->backlog_off = 0;
      c->watch_locked(c->events & ~EPOLLOUT);
    } else if (c->backlog_off >= 256 * 1024 && c->backlog_off * 2 >= c->backlog.size()) {
      c->backlog.erase(0, c->backlog_off); /* a slow reader: do not keep what went out */
      c->backlog_off = 0;
    }
    c->set_queued_locked();
  }
  if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    return;
  /* until a read comes back short (the socket is empty: new bytes make a
   * new edge), or four full reads (other sockets get their turn; armed
   * again, the socket is reported again at once) */
  for (int round = 0; round < 4; round++) {
    if (!read_some(c) || !c->listed)
      return;
  }
  std::lock_guard<std::mutex> g(c->mu);
  c->watch_locked(c->events, true);
}

void Loop::on_connected(Conn *c) {
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  int fd;
  {
    std::lock_guard<std::mutex> g(c->mu);
    fd = c->fd;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
    soerr = errno;
  if (soerr) {
    finish(c, 0, std::string("could not connect: ") + g_strerror(soerr));
    return;
  }
  c->last_rx = g_get_monotonic_time();
  std::lock_guard<std::mutex> g(c->mu);
  c->watch_locked(EPOLLIN);
  if (c->ssl) {
    c->state = State::Tls;
    SSL_do_handshake(c->ssl); /* writes the ClientHello into the BIO */
    c->flush_tls_locked();
  } else {
    start_upgrade_locked(c);
  }
}

void Loop::start_upgrade_locked(Conn *c) {
  unsigned char nonce[16];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1)
    for (auto &b : nonce)
      b = static_cast<unsigned char>(g_random_int());
  gchar *key = g_base64_encode(nonce, sizeof(nonce));
  c->ws_key = key;
  g_free(key);
  std::string req = "GET " + c->url.path + " HTTP/1.1\r\nHost: " + c->host_header +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c->ws_key +
                    "\r\nSec-WebSocket-Version: 13\r\n";
  for (const auto &[name, value] : c->opts.headers)
    req += name + ": " + value + "\r\n";
  req += "\r\n";
  c->state = State::Upgrade;
  c->out_locked(req);
}

/* TRUE when the read filled the buffer: more may be waiting. */
bool Loop::read_some(Conn *c) {
  char buf[kReadChunk];
  int fd;
  {
    std::lock_guard<std::mutex> g(c->mu);
    fd = c->fd;
  }
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0 && errno == EINTR)
    return true; /* try again */
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return false;
  bool open;
  {
    std::lock_guard<std::mutex> g(c->mu);
    open = c->state == State::Open;
  }
  if (n <= 0) {
    std::string why = n == 0 ? std::string(open ? "" : "the connection closed before the upgrade")
                             : std::string("connection error: ") + g_strerror(errno);
    if (open)
      finish(c, c->peer_code ? c->peer_code : 1006, c->peer_code ? c->peer_reason : why);
    else
      finish(c, c->http_status, why);
    return false;
  }
  c->last_rx = g_get_monotonic_time();
  bool handshake_done = false;
  std::string tls_error;
  {
    std::lock_guard<std::mutex> g(c->mu);
    if (!c->ssl) {
      /* handed to consume() as it is */
    } else {
      BIO_write(SSL_get_rbio(c->ssl), buf, static_cast<int>(n));
      if (c->state == State::Tls) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
          handshake_done = true;
        } else {
          int e = SSL_get_error(c->ssl, r);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            tls_error = ssl_error_text(c->ssl);
        }
        c->flush_tls_locked();
        if (handshake_done)
          start_upgrade_locked(c);
      }
      if (tls_error.empty() && c->state != State::Tls) {
        char plain[16 * 1024];
        for (;;) {
          int r = SSL_read(c->ssl, plain, sizeof(plain));
          if (r > 0) {
            c->in.append(plain, static_cast<size_t>(r));
            continue;
          }
          int e = SSL_get_error(c->ssl, r);
          if (e == SSL_ERROR_ZERO_RETURN)
            break; /* close_notify: the TCP end follows */
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            tls_error = ssl_error_text(c->ssl);
          break;
        }
        c->flush_tls_locked(); /* whatever TLS answers (key updates, alerts) */
      }
    }
  }
  if (!tls_error.empty()) {
    GST_DEBUG("TLS failed: %s", tls_error.c_str());
    finish(c, open ? 1006 : 0, tls_error);
    return false;
  }
  consume(c, c->ssl ? std::string_view() : std::string_view(buf, static_cast<size_t>(n)));
  return static_cast<size_t>(n) == sizeof(buf);
}

/* Handles what has been read (@fresh, then c->in): the upgrade's answer,
 * then frames. */
void Loop::consume(Conn *c, std::string_view fresh) {
  State s;
  {
    std::lock_guard<std::mutex> g(c->mu);
    s = c->state;
  }
  size_t pos = 0;
  if (s == State::Open && c->in.empty()) {
    /* the usual case, whole frames: read where recv() put them, and only
     * a frame cut short is kept for the next read. Copying every read into
     * c->in first cost a cold write for each of its cache lines
     * (docs/performance.md, "Session 26") */
    if (consume_frames(c, fresh, pos))
      c->in.append(fresh.substr(pos));
    return;
  }
  c->in.append(fresh);
  if (s == State::Upgrade && !consume_response_head(c))
    return;
  {
    std::lock_guard<std::mutex> g(c->mu);
    s = c->state;
  }
  if (s == State::Open && consume_frames(c, c->in, pos))
    c->in.erase(0, pos);
}

bool header_is(const std::string &line, const char *name, std::string &value) {
  size_t colon = line.find(':');
  if (colon == std::string::npos || g_ascii_strncasecmp(line.c_str(), name, colon) != 0 || strlen(name) != colon)
    return false;
  value = line.substr(colon + 1);
  size_t a = value.find_first_not_of(" \t"), b = value.find_last_not_of(" \t");
  value = a == std::string::npos ? "" : value.substr(a, b - a + 1);
  return true;
}

/* TRUE when the connection is open and frames may follow. */
bool Loop::consume_response_head(Conn *c) {
  size_t end = c->in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c->in.size() > kMaxResponseHead)
      finish(c, 0, "the model's answer to the upgrade is too long");
    return false;
  }
  std::string head = c->in.substr(0, end);
  c->in.erase(0, end + 4);
  std::vector<std::string> lines;
  for (size_t pos = 0; pos <= head.size();) {
    size_t nl = head.find("\r\n", pos);
    if (nl == std::string::npos)
      nl = head.size();
    lines.push_back(head.substr(pos, nl - pos));
    pos = nl + 2;
  }
  int status = 0;
  std::string reason_phrase;
  if (lines.empty() || sscanf(lines[0].c_str(), "HTTP/1.%*d %d", &status) != 1) {
    finish(c, 0, "the model's server did not answer in HTTP");
    return false;
  }
  size_t sp = lines[0].find(' ', lines[0].find(' ') + 1);
  if (sp != std::string::npos)
    reason_phrase = lines[0].substr(sp + 1);
  c->http_status = status;
  if (status != 101) {
    GST_DEBUG("upgrade refused: HTTP %d %s", status, reason_phrase.c_str());
    finish(c, status, "the model's server refused the WebSocket upgrade: HTTP " + std::to_string(status) +
                          (reason_phrase.empty() ? "" : " " + reason_phrase));
    return false;
  }
  std::string accept, upgrade, v;
  for (size_t i = 1; i < lines.size(); i++) {
    if (header_is(lines[i], "Sec-WebSocket-Accept", v))
      accept = v;
    else if (header_is(lines[i], "Upgrade", v))
      upgrade = v;
    else if (header_is(lines[i], "Sec-WebSocket-Extensions", v) && !v.empty()) {
      finish(c, 0, "the model's server chose an extension we did not offer (" + v + ")");
      return false;
    }
  }
  if (g_ascii_strcasecmp(upgrade.c_str(), "websocket") != 0 || accept != accept_for(c->ws_key)) {
    finish(c, 0, "the model's server answered the upgrade wrongly (Upgrade or Sec-WebSocket-Accept)");
    return false;
  }
  {
    std::lock_guard<std::mutex> g(c->mu);
    c->state = State::Open;
    GST_DEBUG("connection established");
    /* what was sent before the upgrade, in order, then a close asked meanwhile */
    while (!c->pending.empty()) {
      std::string t = std::move(c->pending.front());
      c->pending.pop_front();
      c->pending_bytes -= t.size();
      c->frame_locked(pa::ws::Opcode::Text, t);
      c->st.messages_out++;
      c->st.bytes_out += t.size();
    }
    c->set_queued_locked();
  }
  c->fire_open();
  return true;
}

/* The frames in @in from @pos on, up to the last whole one (@pos is left
 * after it); FALSE when the connection ended. */
bool Loop::consume_frames(Conn *c, std::string_view in, size_t &pos) {
  bool alive = true;
  while (alive) {
    if (c->skip_bytes) {
      size_t n = std::min<uint64_t>(c->skip_bytes, in.size() - pos);
      c->skip_bytes -= n;
      pos += n;
      if (c->skip_bytes)
        break;
      continue;
    }
    pa::ws::FrameHeader h;
    std::string err;
    auto d = pa::ws::decode_header(reinterpret_cast<const uint8_t *>(in.data()) + pos, in.size() - pos, h, err);
    if (d == pa::ws::Decode::Incomplete)
      break;
    if (d == pa::ws::Decode::Ok && h.masked)
      d = pa::ws::Decode::Error, err = "a masked frame from the server";
    if (d == pa::ws::Decode::Ok && h.opcode == pa::ws::Opcode::Continuation && !c->in_message)
      d = pa::ws::Decode::Error, err = "a continuation frame outside a message";
    if (d == pa::ws::Decode::Ok && (h.opcode == pa::ws::Opcode::Text || h.opcode == pa::ws::Opcode::Binary) &&
        c->in_message)
      d = pa::ws::Decode::Error, err = "a new message inside a fragmented one";
    if (d == pa::ws::Decode::Error) {
      GST_WARNING("protocol error from the model's server: %s", err.c_str());
      {
        std::lock_guard<std::mutex> g(c->mu);
        c->send_close_locked(1002, "protocol error");
      }
      finish(c, 1002, "protocol error: " + err);
      return false;
    }
    bool data = static_cast<uint8_t>(h.opcode) < 8;
    bool starts = data && h.opcode != pa::ws::Opcode::Continuation;
    if (data) {
      bool binary = starts ? h.opcode == pa::ws::Opcode::Binary : c->msg_binary;
      bool skip = starts ? binary : c->msg_skip;
      bool oversized = !skip && (starts ? 0 : c->msg.size()) + h.payload_len > c->opts.max_message;
      if (skip || oversized) { /* drop the payload as it comes, without keeping it */
        if (starts) {
          c->in_message = true;
          c->msg_binary = binary;
        }
        c->msg_skip = true;
        c->msg.clear();
        if (oversized) {
          c->msg.shrink_to_fit();
          std::lock_guard<std::mutex> g(c->mu);
          c->st.oversized_dropped++;
        }
        pos += h.header_len;
        uint64_t take = std::min<uint64_t>(in.size() - pos, h.payload_len);
        pos += take;
        c->skip_bytes = h.payload_len - take;
        if (h.fin) {
          c->in_message = false;
          if (c->msg_binary && !oversized) {
            std::lock_guard<std::mutex> g(c->mu);
            c->st.binary_dropped++;
          }
        }
        continue;
      }
    }
    if (in.size() - pos < h.header_len + h.payload_len)
      break; /* wait for the whole frame */
    const char *payload = in.data() + pos + h.header_len;
    size_t plen = static_cast<size_t>(h.payload_len);
    pos += h.header_len + plen;
    if (starts) {
      c->in_message = true;
      c->msg_binary = c->msg_skip = false;
      c->msg.clear();
    }
    switch (h.opcode) {
    case pa::ws::Opcode::Text:
    case pa::ws::Opcode::Continuation: {
      /* a message in one frame is handed over where it lies; fragments
       * are gathered in c->msg */
      bool whole = starts && h.fin;
      if (!whole)
        c->msg.append(payload, plen);
      if (!h.fin)
        break;
      c->in_message = false;
      std::string_view text = whole ? std::string_view(payload, plen) : std::string_view(c->msg);
      {
        std::lock_guard<std::mutex> g(c->mu);
        c->st.messages_in++;
        c->st.bytes_in += text.size();
      }
      c->fire_message(text);
      c->msg.clear();
      if (c->msg.capacity() > kReadChunk)
        c->msg.shrink_to_fit();
      std::lock_guard<std::mutex> g(c->mu);
      alive = c->state == State::Open;
      break;
    }
    case pa::ws::Opcode::Ping: {
      std::lock_guard<std::mutex> g(c->mu);
      if (!c->close_sent)
        c->frame_locked(pa::ws::Opcode::Pong, std::string_view(payload, plen));
      break;
    }
    case pa::ws::Opcode::Pong:
      break;
    case pa::ws::Opcode::Close: {
      c->peer_code = plen >= 2 ? (static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]) : 1005;
      c->peer_reason = plen > 2 ? std::string(payload + 2, plen - 2) : "";
      {
        std::lock_guard<std::mutex> g(c->mu);
        c->send_close_locked(c->peer_code == 1005 ? 1000 : c->peer_code, ""); /* the answer */
      }
      GST_DEBUG("closed by the peer (%d)", c->peer_code);
      finish(c, c->peer_code, c->peer_reason);
      return false;
    }
    default:
      break;
    }
  }
  return alive;
}

void Loop::finish(Conn *c, int status_or_code, const std::string &why) {
  auto it = conns_.find(c);
  if (it == conns_.end())
    return;
  std::shared_ptr<Conn> hold = it->second;
  retired_.push_back(std::move(it->second)); /* see retired_ */
  conns_.erase(it);
  c->listed = false;
  bool was_open;
  {
    std::lock_guard<std::mutex> g(c->mu);
    was_open = c->state == State::Open;
    c->close_socket_locked();
  }
  if (was_open)
    c->fire_closed(status_or_code ? status_or_code : 1006, why);
  else
    c->fire_fail(status_or_code, why.empty() ? "the connection closed before the upgrade" : why);
  c->in.clear();
  c->msg.clear();
  std::lock_guard<std::mutex> g(c->mu);
  c->finished_locked();
}

} // namespace

/* ------------------------------------------------------------ WsClient */

WsClient::WsClient(WsCallbacks callbacks) : conn_(std::make_shared<Conn>()) { conn_->cb = std::move(callbacks); }

WsClient::~WsClient() {
  detach();
  close(1000, "");
  svc_.reset();
}

bool WsClient::open(const WsOptions &options, GCancellable *cancellable, GError **error) {
  Conn &c = *conn_;
  std::string perr;
  if (!parse_ws_url(options.url, c.url, perr)) {
    g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, "invalid model URL: %s", perr.c_str());
    return false;
  }
  c.opts = options;
  /* resolve here, not on the shared loop thread */
  GInetAddress *literal = g_inet_address_new_from_string(c.url.host.c_str());
  if (literal) {
    c.address = c.url.host;
    g_object_unref(literal);
  } else {
    GResolver *resolver = g_resolver_get_default();
    GError *rerr = nullptr;
    GList *addrs = g_resolver_lookup_by_name(resolver, c.url.host.c_str(), cancellable, &rerr);
    g_object_unref(resolver);
    if (!addrs) {
      g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, "could not resolve %s: %s",
                  c.url.host.c_str(), rerr ? rerr->message : "no address");
      g_clear_error(&rerr);
      return false;
    }
    /* prefer IPv4: fewer surprises on hosts without IPv6 routes */
    GInetAddress *pick = static_cast<GInetAddress *>(addrs->data);
    for (GList *l = addrs; l; l = l->next)
      if (g_inet_address_get_family(static_cast<GInetAddress *>(l->data)) == G_SOCKET_FAMILY_IPV4) {
        pick = static_cast<GInetAddress *>(l->data);
        break;
      }
    gchar *s = g_inet_address_to_string(pick);
    c.address = s;
    g_free(s);
    g_resolver_free_addresses(addrs);
  }
  bool default_port = c.url.port == (c.url.tls ? 443 : 80);
  std::string host = c.url.host.find(':') != std::string::npos ? "[" + c.url.host + "]" : c.url.host;
  c.host_header = default_port ? host : host + ":" + std::to_string(c.url.port);

  auto loop = Loop::get(options.host, error);
  if (!loop)
    return false;
  svc_ = loop;
  {
    std::lock_guard<std::mutex> g(c.mu);
    if (c.closing) {
      g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, "closed before opening");
      return false;
    }
    c.started = true;
    c.loop = loop;
    c.st.on_media_thread = loop->hosted();
  }
  std::shared_ptr<Conn> cp = conn_;
  loop->post([l = loop.get(), cp] { l->connect(cp); });
  return true;
}

bool WsClient::send(std::string text) {
  Conn &c = *conn_;
  std::lock_guard<std::mutex> g(c.mu);
  if (c.closing || c.finished || !c.started || c.state == Conn::State::Done)
    return false;
  if (c.state != Conn::State::Open) {
    c.pending_bytes += text.size();
    c.pending.push_back(std::move(text)); /* sent once the upgrade is done */
  } else {
    c.frame_locked(pa::ws::Opcode::Text, text);
    c.st.messages_out++;
    c.st.bytes_out += text.size();
  }
  c.set_queued_locked();
  return true;
}

void WsClient::close(int code, const std::string &reason) {
  Conn &c = *conn_;
  std::shared_ptr<Loop> loop;
  {
    std::lock_guard<std::mutex> g(c.mu);
    if (c.closing)
      return;
    c.closing = true;
    if (!c.started || c.state == Conn::State::Done) {
      c.finished = c.finished || !c.started;
      c.cv.notify_all();
      return;
    }
    if (c.state == Conn::State::Open) {
      c.send_close_locked(code, reason); /* the loop ends the socket at the answer, or after kCloseWaitUs */
      return;
    }
    loop = c.loop.lock();
  }
  /* still connecting: drop it */
  if (loop) {
    std::shared_ptr<Conn> cp = conn_;
    loop->post([l = loop.get(), cp] { l->abort(cp.get()); });
  }
}

bool WsClient::wait_closed(int64_t timeout_us) {
  std::unique_lock<std::mutex> g(conn_->mu);
  if (!conn_->started)
    return true;
  return conn_->cv.wait_for(g, std::chrono::microseconds(timeout_us), [this] { return conn_->finished; });
}

void WsClient::detach() {
  std::lock_guard<std::mutex> g(conn_->cb_mu);
  conn_->detached = true;
  conn_->cb = WsCallbacks();
}

bool WsClient::is_open() const {
  std::lock_guard<std::mutex> g(conn_->mu);
  return conn_->state == Conn::State::Open && !conn_->closing;
}

size_t WsClient::queued_bytes() const { return conn_->queued.load(std::memory_order_relaxed); }

WsStats WsClient::stats() const {
  std::lock_guard<std::mutex> g(conn_->mu);
  return conn_->st;
}

} // namespace pa::rt
