/* gst-phone-agent: the Twilio-facing HTTP/WebSocket listener */
#include "pa-listener.h"

#include <libsoup/soup.h>

#include <atomic>
#include <cstring>

#include "twilio-signature.h"
#include "twiml.h"

GST_DEBUG_CATEGORY_STATIC(pa_listener_debug);
#define GST_CAT_DEFAULT pa_listener_debug

namespace pa {

struct Listener::Impl {
  ListenerConfig config;
  Hooks hooks;
  SoupServer *server = nullptr;
  std::unique_ptr<SocketLoop> sockets;
  int bound_port = 0;
  std::atomic<guint64> webhooks{0}, admitted{0}, turned_away{0}, bad_signatures{0}, streams{0},
      streams_refused{0}, not_found{0}, bad_method{0};

  /* The URLs Twilio may have signed for a request to @path. */
  std::vector<std::string> candidate_urls(SoupServerMessage *msg, const char *path, bool websocket) {
    SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
    const char *host = soup_message_headers_get_one(h, "Host");
    GUri *uri = soup_server_message_get_uri(msg);
    const char *query = g_uri_get_query(uri);
    std::vector<std::string> out;
    if (websocket) {
      /* Twilio signs wss://host/path: no query, whatever a proxy says */
      std::string h_str;
      if (!config.public_url.empty()) {
        GUri *pub = g_uri_parse(config.public_url.c_str(), G_URI_FLAGS_NONE, nullptr);
        if (pub) {
          h_str = g_uri_get_host(pub);
          if (g_uri_get_port(pub) > 0)
            h_str += ":" + std::to_string(g_uri_get_port(pub));
          std::string prefix = g_uri_get_path(pub);
          while (!prefix.empty() && prefix.back() == '/')
            prefix.pop_back();
          out.push_back("wss://" + h_str + prefix + path);
          g_uri_unref(pub);
        }
      } else if (host) {
        out.push_back(std::string("wss://") + host + path);
      }
      return out;
    }
    if (!config.public_url.empty()) {
      out.push_back(twilio::request_url(config.public_url, "", "", path, query ? query : ""));
    } else if (host) {
      /* without a public URL we cannot know the scheme Twilio used */
      out.push_back(twilio::request_url("", "https", host, path, query ? query : ""));
      out.push_back(twilio::request_url("", "http", host, path, query ? query : ""));
    }
    return out;
  }

  bool signature_ok(SoupServerMessage *msg, const char *path, const twilio::Params &params, bool websocket) {
    if (config.auth_token.empty())
      return true;
    const char *sig =
        soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "X-Twilio-Signature");
    if (!sig || !*sig)
      return false;
    for (const auto &url : candidate_urls(msg, path, websocket))
      if (twilio::validate_request(config.auth_token, url, params, sig))
        return true;
    return false;
  }

  static void reply(SoupServerMessage *msg, guint status, const char *content_type, const std::string &body) {
    soup_server_message_set_status(msg, status, nullptr);
    /* one request per connection: libsoup 3.2's server never notices a
     * keep-alive connection the client closed after a response, and keeps
     * its socket forever (one per webhook or health check) */
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
    soup_server_message_set_response(msg, content_type, SOUP_MEMORY_COPY, body.data(), body.size());
  }

  static std::string peer(SoupServerMessage *msg) {
    const char *ip = soup_server_message_get_remote_host(msg);
    return ip ? ip : "?";
  }

  void handle_webhook(SoupServerMessage *msg, const char *path) {
    webhooks++;
    const char *method = soup_server_message_get_method(msg);
    if (strcmp(method, "POST") != 0) {
      bad_method++;
      soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", "POST");
      reply(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "text/plain", "The voice webhook takes POST requests.\n");
      return;
    }
    SoupMessageBody *body = soup_server_message_get_request_body(msg);
    GBytes *bytes = soup_message_body_flatten(body);
    gsize len = 0;
    const char *data = static_cast<const char *>(g_bytes_get_data(bytes, &len));
    WebhookInfo info;
    info.form = twilio::parse_form(std::string_view(data ? data : "", len));
    g_bytes_unref(bytes);
    if (const char *q = g_uri_get_query(soup_server_message_get_uri(msg)))
      info.query = twilio::parse_form(q);
    if (!signature_ok(msg, path, info.form, false)) {
      bad_signatures++;
      GST_WARNING("webhook from %s refused: missing or invalid X-Twilio-Signature (check auth-token and public-url)",
                  peer(msg).c_str());
      reply(msg, SOUP_STATUS_FORBIDDEN, "text/plain", "Twilio request validation failed.\n");
      return;
    }
    for (const auto &[k, v] : info.form) {
      if (k == "CallSid")
        info.call_sid = v;
      else if (k == "From")
        info.from = v;
      else if (k == "To")
        info.to = v;
    }
    bool admit = hooks.admit ? hooks.admit(info) : true;
    if (!admit) {
      turned_away++;
      GST_INFO("call %s turned away: busy", info.call_sid.c_str());
      reply(msg, SOUP_STATUS_OK, "text/xml", twilio::build_say_hangup(config.busy_message));
      return;
    }
    admitted++;
    const char *host = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "Host");
    twilio::ConnectStream cs;
    cs.url = twilio::stream_url(config.public_url, host ? host : "localhost", config.stream_path);
    cs.say_before = config.greeting;
    cs.parameters = {{"from", info.from}, {"to", info.to}};
    if (hooks.stream_parameters)
      hooks.stream_parameters(info, cs.parameters);
    cs.hangup_after = true;
    GST_INFO("call %s from %s admitted, stream %s", info.call_sid.c_str(), info.from.c_str(), cs.url.c_str());
    reply(msg, SOUP_STATUS_OK, "text/xml", twilio::build_connect_stream(cs));
  }
};

static void on_default(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer user_data) {
  auto *impl = static_cast<Listener::Impl *>(user_data);
  if (g_strcmp0(path, "/healthz") == 0) {
    if (impl->hooks.ready && !impl->hooks.ready())
      Listener::Impl::reply(msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "text/plain", "draining\n");
    else
      Listener::Impl::reply(msg, SOUP_STATUS_OK, "text/plain", "ok\n");
    return;
  }
  if (impl->hooks.metrics && !impl->config.metrics_path.empty() && impl->config.metrics_path == path) {
    const char *method = soup_server_message_get_method(msg);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
      impl->bad_method++;
      soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", "GET, HEAD");
      Listener::Impl::reply(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "text/plain", "Metrics take GET requests.\n");
      return;
    }
    Listener::Impl::reply(msg, SOUP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", impl->hooks.metrics());
    return;
  }
  impl->not_found++;
  Listener::Impl::reply(msg, SOUP_STATUS_NOT_FOUND, "text/plain", std::string("No such path: ") + path + "\n");
}

static void on_webhook(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer user_data) {
  auto *impl = static_cast<Listener::Impl *>(user_data);
  if (impl->config.webhook_path != path) {
    on_default(nullptr, msg, path, nullptr, user_data);
    return;
  }
  impl->handle_webhook(msg, path);
}

/* Runs when the upgrade request's headers are read: refuse it with 403
 * before the 101 when the signature does not match. */
static void on_stream_early(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *,
                            gpointer user_data) {
  auto *impl = static_cast<Listener::Impl *>(user_data);
  if (impl->config.stream_path != path) {
    on_default(nullptr, msg, path, nullptr, user_data);
    return;
  }
  if (!impl->signature_ok(msg, path, {}, true)) {
    impl->bad_signatures++;
    GST_WARNING("stream upgrade from %s refused: missing or invalid X-Twilio-Signature", Listener::Impl::peer(msg).c_str());
    Listener::Impl::reply(msg, SOUP_STATUS_FORBIDDEN, "text/plain", "Twilio request validation failed.\n");
  }
}

/* The 101 has been written: take the connection from libsoup and give it
 * to the socket loop, with the call that takes the stream (or refuse it
 * with a close frame: 1013, try again later). */
static void on_upgraded(SoupServerMessage *msg, gpointer user_data) {
  auto *impl = static_cast<Listener::Impl *>(user_data);
  std::string peer = Listener::Impl::peer(msg);
  g_object_ref(msg);
  GIOStream *stream = soup_server_message_steal_connection(msg);
  g_object_unref(msg);
  if (!stream)
    return;
  /* libsoup wraps the socket connection; its input may hold bytes it read
   * past the request: take them first */
  std::string initial;
  GInputStream *in = g_io_stream_get_input_stream(stream);
  if (G_IS_POLLABLE_INPUT_STREAM(in)) {
    char buf[4096];
    for (;;) {
      gssize n = g_pollable_input_stream_read_nonblocking(G_POLLABLE_INPUT_STREAM(in), buf, sizeof buf, nullptr,
                                                           nullptr);
      if (n <= 0)
        break;
      initial.append(buf, static_cast<size_t>(n));
    }
  }
  GIOStream *base = nullptr;
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(stream), "base-iostream"))
    g_object_get(stream, "base-iostream", &base, nullptr);
  GIOStream *conn_stream = base ? base : stream;
  GSocket *socket = nullptr;
  if (G_IS_SOCKET_CONNECTION(conn_stream))
    socket = G_SOCKET(g_object_ref(g_socket_connection_get_socket(G_SOCKET_CONNECTION(conn_stream))));
  if (base)
    g_object_unref(base);
  g_object_unref(stream);
  if (!socket) {
    GST_ERROR("stream from %s: cannot take the upgraded connection over (TLS is not supported here; put a "
              "TLS-terminating proxy in front)", peer.c_str());
    return;
  }
  PaCall *call = impl->hooks.take_stream ? impl->hooks.take_stream() : nullptr;
  if (!call) {
    impl->streams_refused++;
    GST_WARNING("stream from %s refused: no call can take it (busy)", peer.c_str());
    impl->sockets->adopt(socket, std::move(initial), nullptr, ws::kTryAgainLater, "busy", nullptr);
    g_object_unref(socket);
    return;
  }
  impl->streams++;
  std::function<void()> closed;
  if (impl->hooks.socket_closed) {
    /* the reference goes with the closure, whether it runs or not */
    std::shared_ptr<PaCall> ref(PA_CALL(g_object_ref(call)), [](PaCall *c) { g_object_unref(c); });
    auto hook = impl->hooks.socket_closed;
    closed = [hook, ref]() { hook(ref.get()); };
  }
  impl->sockets->adopt(socket, std::move(initial), call, 0, "", std::move(closed));
  g_object_unref(socket);
  g_object_unref(call);
}

static void on_stream(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer user_data) {
  auto *impl = static_cast<Listener::Impl *>(user_data);
  if (impl->config.stream_path != path) {
    on_default(nullptr, msg, path, nullptr, user_data);
    return;
  }
  GError *err = nullptr;
  if (!soup_websocket_server_check_handshake(msg, nullptr, nullptr, nullptr, &err)) {
    GST_WARNING("stream request from %s is not a WebSocket upgrade: %s", Listener::Impl::peer(msg).c_str(),
                err->message);
    Listener::Impl::reply(msg, SOUP_STATUS_BAD_REQUEST, "text/plain",
                          std::string("Expected a WebSocket upgrade: ") + err->message + "\n");
    g_error_free(err);
    return;
  }
  /* no extension is accepted (permessage-deflate would only cost CPU on
   * 160-byte frames) */
  soup_websocket_server_process_handshake(msg, nullptr, nullptr, nullptr, nullptr);
  g_signal_connect(msg, "wrote-informational", G_CALLBACK(on_upgraded), impl);
}

Listener::Listener(ListenerConfig config, Hooks hooks) : impl_(new Impl) {
  static gsize debug_once = 0;
  if (g_once_init_enter(&debug_once)) {
    GST_DEBUG_CATEGORY_INIT(pa_listener_debug, "phoneagentlistener", 0, "Twilio webhook and stream listener");
    g_once_init_leave(&debug_once, 1);
  }
  impl_->config = std::move(config);
  impl_->hooks = std::move(hooks);
}

Listener::~Listener() { stop(); }

bool Listener::start(GError **error) {
  Impl *p = impl_.get();
  if (p->config.auth_token.empty())
    GST_WARNING("no Twilio auth token set: webhook and stream signatures are NOT checked; anyone who finds this "
                "URL can place calls (set auth-token or TWILIO_AUTH_TOKEN)");
  p->server = soup_server_new("server-header", "gst-phone-agent", nullptr);
  soup_server_add_handler(p->server, nullptr, on_default, p, nullptr);
  soup_server_add_handler(p->server, p->config.webhook_path.c_str(), on_webhook, p, nullptr);
  soup_server_add_early_handler(p->server, p->config.stream_path.c_str(), on_stream_early, p, nullptr);
  soup_server_add_handler(p->server, p->config.stream_path.c_str(), on_stream, p, nullptr);
  GSocketAddress *addr = g_inet_socket_address_new_from_string(p->config.address.c_str(),
                                                               static_cast<guint>(p->config.port));
  if (!addr) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "'%s' is not an IP address to listen on",
                p->config.address.c_str());
    return false;
  }
  gboolean ok = soup_server_listen(p->server, addr, static_cast<SoupServerListenOptions>(0), error);
  g_object_unref(addr);
  if (!ok)
    return false;
  SocketLoop::Limits limits;
  /* we enforce our own (smaller) limit with a warning; this hard cap (close
   * 1009) only protects memory from absurd messages */
  limits.max_message = std::max<size_t>(p->config.call.max_frame_size * 16, 1024 * 1024);
  limits.threads = p->config.media_threads;
  limits.wait_us = p->config.media_wait_us;
  limits.fill_permille = p->config.media_fill_permille;
  p->sockets = std::make_unique<SocketLoop>(nullptr, limits);
  GSList *listeners = soup_server_get_listeners(p->server);
  if (listeners) {
    GSocketAddress *local = g_socket_get_local_address(G_SOCKET(listeners->data), nullptr);
    if (local) {
      p->bound_port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
      g_object_unref(local);
    }
  }
  g_slist_free(listeners);
  GST_INFO("listening on %s:%d (webhook %s, stream %s)", p->config.address.c_str(), p->bound_port,
           p->config.webhook_path.c_str(), p->config.stream_path.c_str());
  return true;
}

void Listener::stop() {
  if (impl_ && impl_->server) {
    soup_server_disconnect(impl_->server);
    g_object_unref(impl_->server);
    impl_->server = nullptr;
  }
  if (impl_)
    impl_->sockets.reset();
}

int Listener::port() const { return impl_->bound_port; }

const ListenerConfig &Listener::config() const { return impl_->config; }

GstStructure *Listener::stats() const {
  const Impl *p = impl_.get();
  GstStructure *st = gst_structure_new("twilio-listener-stats",
      "webhooks", G_TYPE_UINT64, p->webhooks.load(),
      "calls-admitted", G_TYPE_UINT64, p->admitted.load(),
      "calls-turned-away", G_TYPE_UINT64, p->turned_away.load(),
      "bad-signatures", G_TYPE_UINT64, p->bad_signatures.load(),
      "streams-accepted", G_TYPE_UINT64, p->streams.load(),
      "streams-refused", G_TYPE_UINT64, p->streams_refused.load(),
      "not-found", G_TYPE_UINT64, p->not_found.load(),
      "method-not-allowed", G_TYPE_UINT64, p->bad_method.load(),
      nullptr);
  if (p->sockets && p->config.media_threads) {
    SocketLoop::Stats ms = p->sockets->stats();
    gst_structure_set(st, "media-wakeups", G_TYPE_UINT64, ms.wakeups, "media-ready", G_TYPE_UINT64, ms.ready,
                      nullptr);
    /* how many media threads have calls: the fill policy at work */
    guint busy = 0;
    for (size_t n : ms.sockets)
      busy += n > 0;
    gst_structure_set(st, "media-threads-busy", G_TYPE_UINT, busy, nullptr);
  }
  return st;
}

} // namespace pa
