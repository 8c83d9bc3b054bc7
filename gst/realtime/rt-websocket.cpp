/* gst-phone-agent: the model-side WebSocket client on libwebsockets */
#include "rt-websocket.h"

#include "pa-websocket.h"

#include <gst/gst.h>
#include <libwebsockets.h>
#include <openssl/x509.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

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

class Service;

/* Keeps connections alive and checks they still answer. */
lws_retry_bo_t make_retry_policy() {
  lws_retry_bo_t r;
  memset(&r, 0, sizeof(r));
  r.secs_since_valid_ping = 30;
  r.secs_since_valid_hangup = 70;
  return r;
}
const lws_retry_bo_t kRetry = make_retry_policy();

void lws_log_to_gst(int level, const char *line) {
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  GstDebugLevel l = level == LLL_ERR ? GST_LEVEL_WARNING : level == LLL_WARN ? GST_LEVEL_INFO : GST_LEVEL_DEBUG;
  GST_CAT_LEVEL_LOG(rtws_debug, l, nullptr, "lws: %s", s.c_str());
}

std::string default_ca_file() {
  const char *env = g_getenv("SSL_CERT_FILE");
  if (env && g_file_test(env, G_FILE_TEST_EXISTS))
    return env;
  const char *def = X509_get_default_cert_file();
  if (def && g_file_test(def, G_FILE_TEST_EXISTS))
    return def;
  return {};
}

} // namespace

struct WsClient::Conn : std::enable_shared_from_this<WsClient::Conn> {
  WsOptions opts;
  WsUrl url;
  std::string address;     /* resolved IP */
  std::string host_header; /* host[:port], also used for SNI and the certificate check */

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> outq;
  size_t out_bytes = 0;
  bool closing = false;
  int close_code = 1000;
  std::string close_reason;
  bool started = false;  /* connect requested */
  bool finished = false; /* socket gone, or never made */
  bool opened = false;
  bool kick_pending = false;
  WsStats st;

  std::mutex cb_mu;
  WsCallbacks cb;
  bool detached = false;

  /* service thread only */
  lws *wsi = nullptr;
  std::string rx;
  bool rx_skip = false;
  int http_status = 0;
  int peer_code = 0;
  std::string peer_reason;
  bool terminal_reported = false;
  bool established = false;
  std::shared_ptr<Conn> keep; /* holds us while the wsi exists */
  std::vector<unsigned char> txbuf;

  void fire_open() {
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_open)
      cb.on_open();
  }
  void fire_message(std::string &&text) {
    std::lock_guard<std::mutex> g(cb_mu);
    if (!detached && cb.on_message)
      cb.on_message(std::move(text));
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
  void mark_finished() {
    std::lock_guard<std::mutex> g(mu);
    finished = true;
    opened = false;
    outq.clear();
    out_bytes = 0;
    st.queued_bytes = 0;
    cv.notify_all();
  }
};

namespace {

using Conn = WsClient::Conn;

class Service {
public:
  static std::shared_ptr<Service> get(GError **error);
  ~Service();

  void request_connect(const std::shared_ptr<Conn> &c);
  static void kick(const std::shared_ptr<Service> &svc, const std::shared_ptr<Conn> &c);
  static int callback(lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);

private:
  Service() = default;
  bool start(GError **error);
  static gpointer thread_main(gpointer data);
  void drain();
  lws_vhost *vhost_for(const std::string &ca_file);
  void do_connect(const std::shared_ptr<Conn> &c);
  int on_writeable(Conn *c);

  lws_context *ctx_ = nullptr;
  lws_vhost *default_vhost_ = nullptr;
  GThread *thread_ = nullptr;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::shared_ptr<Conn>> to_connect_;
  std::vector<std::shared_ptr<Conn>> to_kick_;
  std::map<std::string, lws_vhost *> vhosts_; /* service thread */
  int vhost_serial_ = 0;
};

std::mutex g_service_lock;
std::weak_ptr<Service> g_service;

const lws_protocols kProtocols[] = {
    {"pa-realtime", Service::callback, 0, 64 * 1024, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

std::shared_ptr<Service> Service::get(GError **error) {
  std::lock_guard<std::mutex> g(g_service_lock);
  if (auto s = g_service.lock())
    return s;
  std::shared_ptr<Service> s(new Service());
  if (!s->start(error))
    return nullptr;
  g_service = s;
  return s;
}

bool Service::start(GError **error) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(rtws_debug, "rtws", 0, "realtime model WebSocket client (libwebsockets)");
    lws_set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE, lws_log_to_gst);
    g_once_init_leave(&once, 1);
  }
  lws_context_creation_info info;
  memset(&info, 0, sizeof(info));
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.gid = -1;
  info.uid = -1;
  info.user = this;
  info.timeout_secs = 10;
  info.connect_timeout_secs = 10;
  info.protocols = kProtocols;
  ctx_ = lws_create_context(&info);
  if (!ctx_) {
    g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, "libwebsockets: could not create a context");
    return false;
  }
  default_vhost_ = vhost_for("");
  if (!default_vhost_) {
    g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, "libwebsockets: could not create a vhost");
    lws_context_destroy(ctx_);
    ctx_ = nullptr;
    return false;
  }
  thread_ = g_thread_new("rt-websocket", thread_main, this);
  return true;
}

Service::~Service() {
  if (thread_) {
    stop_ = true;
    lws_cancel_service(ctx_);
    g_thread_join(thread_);
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    to_connect_.clear();
    to_kick_.clear();
  }
  if (ctx_)
    lws_context_destroy(ctx_); /* closes what is left; WSI_DESTROY releases each Conn */
  GST_DEBUG("websocket service stopped");
}

gpointer Service::thread_main(gpointer data) {
  auto *self = static_cast<Service *>(data);
  while (!self->stop_) {
    if (lws_service(self->ctx_, 0) < 0)
      break;
  }
  return nullptr;
}

lws_vhost *Service::vhost_for(const std::string &ca_file) {
  auto it = vhosts_.find(ca_file);
  if (it != vhosts_.end())
    return it->second;
  std::string ca = ca_file.empty() ? default_ca_file() : ca_file;
  std::string name = "pa-rt-" + std::to_string(vhost_serial_++);
  lws_context_creation_info vi;
  memset(&vi, 0, sizeof(vi));
  vi.port = CONTEXT_PORT_NO_LISTEN;
  vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  vi.protocols = kProtocols;
  vi.vhost_name = name.c_str();
  vi.client_ssl_ca_filepath = ca.empty() ? nullptr : ca.c_str();
  vi.user = this;
  lws_vhost *vh = lws_create_vhost(ctx_, &vi);
  if (vh)
    vhosts_[ca_file] = vh;
  return vh;
}

void Service::request_connect(const std::shared_ptr<Conn> &c) {
  {
    std::lock_guard<std::mutex> g(mu_);
    to_connect_.push_back(c);
  }
  lws_cancel_service(ctx_);
}

/* @c has something to send: the service thread asks lws for a writable
 * callback. One wake-up of that thread serves every kick made before it
 * drains them; on a media thread the wake-up waits for the end of the
 * batch, so that the frames of every call handled at that wake-up leave
 * for the model with one wake-up of the service thread, not one each. */
void Service::kick(const std::shared_ptr<Service> &svc, const std::shared_ptr<Conn> &c) {
  bool first;
  {
    std::lock_guard<std::mutex> g(svc->mu_);
    {
      std::lock_guard<std::mutex> cg(c->mu);
      if (c->kick_pending)
        return;
      c->kick_pending = true;
    }
    svc->to_kick_.push_back(c);
    first = svc->to_kick_.size() == 1 && svc->to_connect_.empty();
  }
  if (!first)
    return; /* a wake-up is on its way and drains this one too */
  std::weak_ptr<Service> weak = svc;
  if (!pa::defer_to_batch_end(svc.get(), [weak] {
        if (auto s = weak.lock())
          lws_cancel_service(s->ctx_);
      }))
    lws_cancel_service(svc->ctx_);
}

void Service::drain() {
  std::vector<std::shared_ptr<Conn>> connect, kick;
  {
    std::lock_guard<std::mutex> g(mu_);
    connect.swap(to_connect_);
    kick.swap(to_kick_);
  }
  for (auto &c : connect)
    do_connect(c);
  for (auto &c : kick) {
    bool closing;
    {
      std::lock_guard<std::mutex> g(c->mu);
      c->kick_pending = false;
      closing = c->closing;
    }
    if (!c->wsi)
      continue;
    if (c->established)
      lws_callback_on_writable(c->wsi);
    else if (closing)
      lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC); /* still connecting: drop it */
  }
}

void Service::do_connect(const std::shared_ptr<Conn> &c) {
  {
    std::lock_guard<std::mutex> g(c->mu);
    if (c->closing) {
      c->finished = true;
      c->cv.notify_all();
      return;
    }
  }
  lws_vhost *vh = vhost_for(c->opts.ca_file);
  if (!vh) {
    c->fire_fail(0, "could not set up TLS for CA file " + c->opts.ca_file);
    c->mark_finished();
    return;
  }
  lws_client_connect_info i;
  memset(&i, 0, sizeof(i));
  i.context = ctx_;
  i.vhost = vh;
  i.address = c->address.c_str();
  i.port = c->url.port;
  i.path = c->url.path.c_str();
  i.host = c->host_header.c_str();
  i.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
  i.alpn = "http/1.1";
  i.local_protocol_name = kProtocols[0].name;
  i.opaque_user_data = c.get();
  i.pwsi = &c->wsi;
  i.retry_and_idle_policy = &kRetry;
  i.ietf_version_or_minus_one = -1;
  std::shared_ptr<Conn> hold = c;
  c->keep = c;
  GST_DEBUG("connecting to %s port %d (%s)", c->address.c_str(), c->url.port, c->url.tls ? "TLS" : "plain");
  if (!lws_client_connect_via_info(&i)) {
    c->wsi = nullptr;
    c->fire_fail(0, "could not start the connection");
    c->mark_finished();
    c->keep.reset();
  }
}

int Service::on_writeable(Conn *c) {
  std::string msg;
  bool have = false, close_now = false;
  int code = 1000;
  std::string reason;
  {
    std::lock_guard<std::mutex> g(c->mu);
    if (!c->outq.empty()) {
      msg = std::move(c->outq.front());
      c->outq.pop_front();
      c->out_bytes -= msg.size();
      c->st.queued_bytes = c->out_bytes;
      have = true;
    } else if (c->closing) {
      close_now = true;
      code = c->close_code;
      reason = c->close_reason;
    }
  }
  if (have) {
    c->txbuf.resize(LWS_PRE + msg.size());
    memcpy(c->txbuf.data() + LWS_PRE, msg.data(), msg.size());
    int n = lws_write(c->wsi, c->txbuf.data() + LWS_PRE, msg.size(), LWS_WRITE_TEXT);
    if (n < static_cast<int>(msg.size())) {
      GST_WARNING("write failed");
      return -1;
    }
    bool more;
    {
      std::lock_guard<std::mutex> g(c->mu);
      c->st.messages_out++;
      c->st.bytes_out += msg.size();
      more = !c->outq.empty() || c->closing;
    }
    if (more)
      lws_callback_on_writable(c->wsi);
    return 0;
  }
  if (close_now) {
    GST_DEBUG("closing with %d", code);
    lws_close_reason(c->wsi, static_cast<lws_close_status>(code),
                     reinterpret_cast<unsigned char *>(const_cast<char *>(reason.data())),
                     std::min<size_t>(reason.size(), 120));
    return -1;
  }
  return 0;
}

int Service::callback(lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
  auto *self = static_cast<Service *>(lws_context_user(lws_get_context(wsi)));
  auto *c = static_cast<Conn *>(lws_get_opaque_user_data(wsi));
  switch (reason) {
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    if (self)
      self->drain();
    return 0;
  case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
    return 0;
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
    if (!c)
      return 0;
    auto **p = static_cast<unsigned char **>(in);
    unsigned char *end = *p + len;
    for (const auto &[name, value] : c->opts.headers) {
      std::string n = name + ":";
      if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char *>(n.c_str()),
                                      reinterpret_cast<const unsigned char *>(value.data()),
                                      static_cast<int>(value.size()), p, end)) {
        GST_WARNING("handshake header %s does not fit", name.c_str()); /* name only: values are secret */
        return -1;
      }
    }
    return 0;
  }
  case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
    if (c)
      c->http_status = static_cast<int>(lws_http_client_http_response(wsi));
    return 0;
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (!c)
      return 0;
    c->established = true;
    {
      std::lock_guard<std::mutex> g(c->mu);
      c->opened = true;
    }
    GST_DEBUG("connection established");
    c->fire_open();
    {
      std::lock_guard<std::mutex> g(c->mu);
      if (!c->outq.empty() || c->closing)
        lws_callback_on_writable(wsi);
    }
    return 0;
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    if (!c)
      return 0;
    std::string why = in ? std::string(static_cast<const char *>(in), strnlen(static_cast<const char *>(in), len ? len : 256)) : "connection error";
    if (why.empty())
      why = "connection error";
    GST_DEBUG("connection error: %s (HTTP %d)", why.c_str(), c->http_status);
    c->fire_fail(c->http_status, why);
    c->mark_finished();
    return 0;
  }
  case LWS_CALLBACK_CLIENT_RECEIVE: {
    if (!c)
      return 0;
    if (lws_is_first_fragment(wsi)) {
      c->rx.clear();
      c->rx_skip = lws_frame_is_binary(wsi);
    }
    if (!c->rx_skip) {
      if (c->rx.size() + len > c->opts.max_message) {
        c->rx_skip = true;
        c->rx.clear();
        std::lock_guard<std::mutex> g(c->mu);
        c->st.oversized_dropped++;
      } else {
        c->rx.append(static_cast<const char *>(in), len);
      }
    }
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
      if (c->rx_skip) {
        if (lws_frame_is_binary(wsi)) {
          std::lock_guard<std::mutex> g(c->mu);
          c->st.binary_dropped++;
        }
        c->rx_skip = false;
        c->rx.clear();
        return 0;
      }
      {
        std::lock_guard<std::mutex> g(c->mu);
        c->st.messages_in++;
        c->st.bytes_in += c->rx.size();
      }
      std::string msg;
      msg.swap(c->rx);
      c->fire_message(std::move(msg));
    }
    return 0;
  }
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    if (!c || !self)
      return 0;
    return self->on_writeable(c);
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (c && in && len >= 2) {
      const auto *b = static_cast<const unsigned char *>(in);
      c->peer_code = (b[0] << 8) | b[1];
      c->peer_reason.assign(reinterpret_cast<const char *>(b + 2), len - 2);
    }
    return 0;
  case LWS_CALLBACK_CLIENT_CLOSED:
    if (c) {
      GST_DEBUG("closed (peer code %d)", c->peer_code);
      c->fire_closed(c->peer_code ? c->peer_code : 1006, c->peer_reason);
      c->mark_finished();
    }
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    if (c) {
      if (c->established)
        c->fire_closed(c->peer_code ? c->peer_code : 1006, c->peer_reason);
      else
        c->fire_fail(c->http_status, "connection closed before the upgrade");
      c->mark_finished();
      c->wsi = nullptr;
      lws_set_opaque_user_data(wsi, nullptr);
      std::shared_ptr<Conn> last = std::move(c->keep); /* may free c at scope end */
    }
    return 0;
  default:
    break;
  }
  (void)user;
  return 0;
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
  /* resolve here, not on the shared service thread */
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

  auto svc = Service::get(error);
  if (!svc)
    return false;
  svc_ = svc;
  {
    std::lock_guard<std::mutex> g(c.mu);
    if (c.closing) {
      g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, "closed before opening");
      return false;
    }
    c.started = true;
  }
  svc->request_connect(conn_);
  return true;
}

bool WsClient::send(std::string text) {
  std::shared_ptr<Service> svc = std::static_pointer_cast<Service>(svc_);
  {
    std::lock_guard<std::mutex> g(conn_->mu);
    if (conn_->closing || conn_->finished || !conn_->started)
      return false;
    conn_->out_bytes += text.size();
    conn_->st.queued_bytes = conn_->out_bytes;
    conn_->outq.push_back(std::move(text));
    if (!conn_->opened)
      return true; /* sent once established */
  }
  if (svc)
    Service::kick(svc, conn_);
  return true;
}

void WsClient::close(int code, const std::string &reason) {
  std::shared_ptr<Service> svc = std::static_pointer_cast<Service>(svc_);
  {
    std::lock_guard<std::mutex> g(conn_->mu);
    if (conn_->closing)
      return;
    conn_->closing = true;
    conn_->close_code = code;
    conn_->close_reason = reason;
    if (!conn_->started) {
      conn_->finished = true;
      conn_->cv.notify_all();
      return;
    }
  }
  if (svc)
    Service::kick(svc, conn_);
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
  return conn_->opened && !conn_->closing && !conn_->finished;
}

WsStats WsClient::stats() const {
  std::lock_guard<std::mutex> g(conn_->mu);
  return conn_->st;
}

} // namespace pa::rt
