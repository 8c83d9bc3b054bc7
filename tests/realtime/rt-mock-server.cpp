/* gst-phone-agent: scripted realtime server and HTTP mock for tests */
#include "rt-mock-server.h"

#include <json-glib/json-glib.h>

#include <chrono>

#include "pa-audio.h"

namespace rtmock {

using pa::rt::Dialect;

namespace {

std::string type_of(const std::string &text) {
  JsonParser *p = json_parser_new();
  std::string t;
  if (json_parser_load_from_data(p, text.data(), static_cast<gssize>(text.size()), nullptr)) {
    JsonNode *root = json_parser_get_root(p);
    if (root && JSON_NODE_HOLDS_OBJECT(root))
      t = json_object_get_string_member_with_default(json_node_get_object(root), "type", "");
  }
  g_object_unref(p);
  return t;
}

std::string audio_of(const std::string &text) {
  /* {"type":"input_audio_buffer.append","audio":"..."} */
  size_t k = text.find("\"audio\":\"");
  if (k == std::string::npos)
    return {};
  size_t s = k + 9, e = text.find('"', s);
  return e == std::string::npos ? std::string() : text.substr(s, e - s);
}

std::string esc(const std::string &s) {
  gchar *q = g_strescape(s.c_str(), nullptr);
  std::string out(q);
  g_free(q);
  return out;
}

} // namespace

MockServer::MockServer(Options o) : options(o) {}

MockServer::~MockServer() {
  if (thread_) {
    invoke([this] {
      std::vector<SoupWebsocketConnection *> open;
      {
        std::lock_guard<std::mutex> g(mu_);
        for (auto &[id, c] : conns_)
          if (c.ws && !c.closed)
            open.push_back(c.ws);
      }
      for (auto *ws : open)
        if (soup_websocket_connection_get_state(ws) == SOUP_WEBSOCKET_STATE_OPEN)
          soup_websocket_connection_close(ws, 1001, "server going away");
      soup_server_disconnect(server_);
      g_main_loop_quit(loop_);
    });
    g_thread_join(thread_);
  }
  for (auto &[id, c] : conns_)
    if (c.ws)
      g_object_unref(c.ws);
  if (server_)
    g_object_unref(server_);
  if (loop_)
    g_main_loop_unref(loop_);
  if (ctx_)
    g_main_context_unref(ctx_);
}

gpointer MockServer::thread_main(gpointer data) {
  auto *self = static_cast<MockServer *>(data);
  g_main_context_push_thread_default(self->ctx_);
  g_main_loop_run(self->loop_);
  /* let closes go out */
  for (int i = 0; i < 100 && g_main_context_iteration(self->ctx_, FALSE); i++) {
  }
  g_main_context_pop_thread_default(self->ctx_);
  return nullptr;
}

bool MockServer::start() {
  ctx_ = g_main_context_new();
  loop_ = g_main_loop_new(ctx_, FALSE);
  g_main_context_push_thread_default(ctx_);
  GError *err = nullptr;
  if (!options.tls_cert_file.empty()) {
    GTlsCertificate *cert =
        g_tls_certificate_new_from_files(options.tls_cert_file.c_str(), options.tls_key_file.c_str(), &err);
    if (!cert) {
      g_printerr("mock server: %s\n", err->message);
      g_clear_error(&err);
      g_main_context_pop_thread_default(ctx_);
      return false;
    }
    server_ = soup_server_new("tls-certificate", cert, nullptr);
    g_object_unref(cert);
  } else {
    server_ = soup_server_new(nullptr, nullptr);
  }
  if (options.reject_status)
    soup_server_add_handler(server_, "/v1/realtime", on_reject, this, nullptr);
  else
    soup_server_add_websocket_handler(server_, "/v1/realtime", nullptr, nullptr, on_ws, this, nullptr);
  bool ok = soup_server_listen_local(
      server_, 0,
      static_cast<SoupServerListenOptions>(SOUP_SERVER_LISTEN_IPV4_ONLY |
                                           (options.tls_cert_file.empty() ? 0 : SOUP_SERVER_LISTEN_HTTPS)),
      &err);
  if (ok) {
    GSList *uris = soup_server_get_uris(server_);
    port_ = g_uri_get_port(static_cast<GUri *>(uris->data));
    g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
  } else {
    g_printerr("mock server: %s\n", err->message);
    g_clear_error(&err);
  }
  g_main_context_pop_thread_default(ctx_);
  if (ok)
    thread_ = g_thread_new("rt-mock", thread_main, this);
  return ok;
}

std::string MockServer::url() const {
  /* TLS: the certificate names localhost (which resolves to 127.0.0.1) */
  if (!options.tls_cert_file.empty())
    return "wss://localhost:" + std::to_string(port_) + "/v1/realtime";
  return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/realtime";
}

void MockServer::invoke(std::function<void()> fn) {
  auto *f = new std::function<void()>(std::move(fn));
  g_main_context_invoke_full(
      ctx_, G_PRIORITY_DEFAULT,
      [](gpointer d) -> gboolean {
        (*static_cast<std::function<void()> *>(d))();
        return G_SOURCE_REMOVE;
      },
      f, [](gpointer d) { delete static_cast<std::function<void()> *>(d); });
}

void MockServer::on_reject(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer data) {
  auto *self = static_cast<MockServer *>(data);
  std::string body = R"({"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key","param":null}})";
  soup_server_message_set_status(msg, static_cast<guint>(self->options.reject_status), nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, body.data(), body.size());
  std::lock_guard<std::mutex> g(self->mu_);
  int id = self->next_conn_++;
  Conn &c = self->conns_[id];
  c.id = id;
  c.closed = true;
  c.closed_at = g_get_monotonic_time();
  soup_message_headers_foreach(
      soup_server_message_get_request_headers(msg),
      [](const char *name, const char *value, gpointer d) {
        gchar *lower = g_ascii_strdown(name, -1);
        (*static_cast<std::map<std::string, std::string> *>(d))[lower] = value;
        g_free(lower);
      },
      &c.headers);
  self->cv_.notify_all();
}

void MockServer::on_ws(SoupServer *, SoupServerMessage *msg, const char *, SoupWebsocketConnection *ws, gpointer data) {
  auto *self = static_cast<MockServer *>(data);
  int id;
  {
    std::lock_guard<std::mutex> g(self->mu_);
    id = self->next_conn_++;
    Conn &c = self->conns_[id];
    c.id = id;
    c.ws = SOUP_WEBSOCKET_CONNECTION(g_object_ref(ws));
    if (GSocket *sock = soup_server_message_get_socket(msg))
      c.fd = g_socket_get_fd(sock);
    soup_message_headers_foreach(
        soup_server_message_get_request_headers(msg),
        [](const char *name, const char *value, gpointer d) {
          gchar *lower = g_ascii_strdown(name, -1);
          (*static_cast<std::map<std::string, std::string> *>(d))[lower] = value;
          g_free(lower);
        },
        &c.headers);
  }
  soup_websocket_connection_set_max_incoming_payload_size(ws, 16 * 1024 * 1024);
  struct Ctx {
    MockServer *self;
    int id;
  };
  auto *mctx = new Ctx{self, id};
  g_signal_connect_data(
      ws, "message",
      G_CALLBACK(+[](SoupWebsocketConnection *, gint type, GBytes *message, gpointer d) {
        auto *c = static_cast<Ctx *>(d);
        if (type != SOUP_WEBSOCKET_DATA_TEXT)
          return;
        gsize n = 0;
        const char *p = static_cast<const char *>(g_bytes_get_data(message, &n));
        c->self->handle(c->id, std::string(p, n));
      }),
      mctx, [](gpointer d, GClosure *) { delete static_cast<Ctx *>(d); }, static_cast<GConnectFlags>(0));
  g_signal_connect(ws, "closed", G_CALLBACK(+[](SoupWebsocketConnection *w, gpointer d) {
                     auto *s = static_cast<MockServer *>(d);
                     std::lock_guard<std::mutex> g(s->mu_);
                     for (auto &[cid, c] : s->conns_)
                       if (c.ws == w && !c.closed) {
                         c.closed = true;
                         c.closed_at = g_get_monotonic_time();
                       }
                     s->cv_.notify_all();
                   }),
                   self);
  {
    std::lock_guard<std::mutex> g(self->mu_);
    self->cv_.notify_all();
  }
  if (self->options.send_session_created) {
    std::string sc = self->session_created();
    soup_websocket_connection_send_text(ws, sc.c_str());
  }
  if (self->on_connect)
    self->on_connect(id);
}

void MockServer::handle(int conn, const std::string &text) {
  Received r;
  r.conn = conn;
  r.type = type_of(text);
  r.at_us = g_get_monotonic_time();
  bool append = r.type == "input_audio_buffer.append";
  if (append) {
    std::vector<uint8_t> bytes;
    pa::base64_decode(audio_of(text), bytes);
    std::lock_guard<std::mutex> g(mu_);
    conns_[conn].appended += bytes.size();
  }
  if (!append || options.record_audio) {
    r.text = text;
    std::lock_guard<std::mutex> g(mu_);
    events_.push_back(r);
    cv_.notify_all();
  }
  if (r.type == "session.update" && options.answer_session_update) {
    std::string su = session_updated();
    if (SoupWebsocketConnection *ws = ws_for(conn))
      soup_websocket_connection_send_text(ws, su.c_str());
  }
  if (on_event)
    on_event(r);
}

SoupWebsocketConnection *MockServer::ws_for(int conn) {
  std::lock_guard<std::mutex> g(mu_);
  if (conn == 0) {
    if (conns_.empty())
      return nullptr;
    conn = conns_.rbegin()->first;
  }
  auto it = conns_.find(conn);
  if (it == conns_.end() || !it->second.ws ||
      soup_websocket_connection_get_state(it->second.ws) != SOUP_WEBSOCKET_STATE_OPEN)
    return nullptr;
  return it->second.ws;
}

void MockServer::send(const std::string &json, int conn) {
  invoke([this, json, conn] {
    if (SoupWebsocketConnection *ws = ws_for(conn))
      soup_websocket_connection_send_text(ws, json.c_str());
  });
}

bool MockServer::send_now(const std::string &json, int conn) {
  SoupWebsocketConnection *ws = ws_for(conn);
  if (!ws)
    return false;
  soup_websocket_connection_send_text(ws, json.c_str());
  return true;
}

std::vector<int> MockServer::open_connections() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<int> out;
  for (auto &[id, c] : conns_)
    if (c.ws && !c.closed)
      out.push_back(id);
  return out;
}

int MockServer::raw_fd(int conn) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = conns_.find(conn);
  return it == conns_.end() || !options.tls_cert_file.empty() ? -1 : it->second.fd;
}

void MockServer::close(int code, const std::string &reason, int conn) {
  invoke([this, code, reason, conn] {
    if (SoupWebsocketConnection *ws = ws_for(conn))
      soup_websocket_connection_close(ws, static_cast<gushort>(code), reason.c_str());
  });
}

std::vector<Received> MockServer::received() {
  std::lock_guard<std::mutex> g(mu_);
  return events_;
}

std::vector<Received> MockServer::received(const std::string &type) {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Received> out;
  for (auto &e : events_)
    if (e.type == type)
      out.push_back(e);
  return out;
}

size_t MockServer::count(const std::string &type) { return received(type).size(); }

bool MockServer::wait_for(const std::string &type, int timeout_ms, Received *out, size_t nth) {
  std::unique_lock<std::mutex> g(mu_);
  bool ok = cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [&] {
    size_t n = 0;
    for (auto &e : events_)
      if (e.type == type && n++ == nth) {
        if (out)
          *out = e;
        return true;
      }
    return false;
  });
  return ok;
}

int MockServer::connections() {
  std::lock_guard<std::mutex> g(mu_);
  return static_cast<int>(conns_.size());
}

bool MockServer::wait_connections(int n, int timeout_ms) {
  std::unique_lock<std::mutex> g(mu_);
  return cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [&] { return static_cast<int>(conns_.size()) >= n; });
}

bool MockServer::wait_closed(int conn, int timeout_ms, gint64 *closed_at_us) {
  std::unique_lock<std::mutex> g(mu_);
  bool ok = cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [&] {
    auto it = conns_.find(conn);
    return it != conns_.end() && it->second.closed;
  });
  if (ok && closed_at_us)
    *closed_at_us = conns_[conn].closed_at;
  return ok;
}

std::map<std::string, std::string> MockServer::upgrade_headers(int conn) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = conns_.find(conn);
  return it == conns_.end() ? std::map<std::string, std::string>() : it->second.headers;
}

size_t MockServer::appended_bytes(int conn) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = conns_.find(conn);
  return it == conns_.end() ? 0 : it->second.appended;
}

/* ---- events ---- */

std::string MockServer::session_created() const {
  if (options.dialect == Dialect::GA)
    return R"({"type":"session.created","event_id":"ev_sc","session":{"type":"realtime","object":"realtime.session","id":"sess_mock","model":"gpt-realtime","output_modalities":["audio"],"audio":{"input":{"format":{"type":"audio/pcm","rate":24000}},"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"alloy"}}}})";
  return R"({"type":"session.created","event_id":"ev_sc","session":{"id":"sess_mock","object":"realtime.session","model":"mock-beta","modalities":["text","audio"],"voice":"alloy","input_audio_format":"pcm16","output_audio_format":"pcm16"}})";
}

std::string MockServer::session_updated() const {
  if (options.dialect == Dialect::GA)
    return R"({"type":"session.updated","event_id":"ev_su","session":{"type":"realtime","id":"sess_mock","audio":{}}})";
  return R"({"type":"session.updated","event_id":"ev_su","session":{"id":"sess_mock","modalities":["text","audio"],"input_audio_format":"g711_ulaw"}})";
}

std::string MockServer::response_created(const std::string &resp) const {
  return R"({"type":"response.created","event_id":"ev_rc","response":{"object":"realtime.response","id":")" + resp +
         R"(","status":"in_progress","output":[]}})";
}

std::string MockServer::output_item_added(const std::string &resp, const std::string &item) const {
  return R"({"type":"response.output_item.added","response_id":")" + resp + R"(","output_index":0,"item":{"id":")" +
         item + R"(","type":"message","role":"assistant","status":"in_progress","content":[]}})";
}

std::string MockServer::audio_delta(const std::string &resp, const std::string &item,
                                    const std::vector<uint8_t> &audio) const {
  const char *name = options.dialect == Dialect::GA ? "response.output_audio.delta" : "response.audio.delta";
  return std::string(R"({"type":")") + name + R"(","response_id":")" + resp + R"(","item_id":")" + item +
         R"(","output_index":0,"content_index":0,"delta":")" + pa::base64_encode(audio.data(), audio.size()) + "\"}";
}

std::string MockServer::audio_done(const std::string &resp, const std::string &item) const {
  const char *name = options.dialect == Dialect::GA ? "response.output_audio.done" : "response.audio.done";
  return std::string(R"({"type":")") + name + R"(","response_id":")" + resp + R"(","item_id":")" + item +
         R"(","output_index":0,"content_index":0})";
}

std::string MockServer::transcript_delta(const std::string &resp, const std::string &item,
                                         const std::string &d) const {
  const char *name = options.dialect == Dialect::GA ? "response.output_audio_transcript.delta"
                                                    : "response.audio_transcript.delta";
  return std::string(R"({"type":")") + name + R"(","response_id":")" + resp + R"(","item_id":")" + item +
         R"(","output_index":0,"content_index":0,"delta":")" + esc(d) + "\"}";
}

std::string MockServer::transcript_done(const std::string &resp, const std::string &item,
                                        const std::string &t) const {
  const char *name = options.dialect == Dialect::GA ? "response.output_audio_transcript.done"
                                                    : "response.audio_transcript.done";
  return std::string(R"({"type":")") + name + R"(","response_id":")" + resp + R"(","item_id":")" + item +
         R"(","output_index":0,"content_index":0,"transcript":")" + esc(t) + "\"}";
}

std::string MockServer::function_call(const std::string &resp, const std::string &item, const std::string &call_id,
                                      const std::string &name, const std::string &args) const {
  std::string out = R"({"type":"response.function_call_arguments.done","response_id":")" + resp +
                    R"(","item_id":")" + item + R"(","output_index":1,"call_id":")" + call_id + "\"";
  if (options.dialect == Dialect::GA)
    out += R"(,"name":")" + name + "\"";
  out += R"(,"arguments":")" + esc(args) + "\"}";
  return out;
}

std::string MockServer::response_done(const std::string &resp, const std::string &status,
                                      const std::vector<std::vector<std::string>> &items,
                                      const std::string &reason) const {
  std::string out = R"({"type":"response.done","event_id":"ev_rd","response":{"object":"realtime.response","id":")" +
                    resp + R"(","status":")" + status + "\"";
  out += reason.empty() ? R"(,"status_details":null)"
                        : R"(,"status_details":{"type":")" + status + R"(","reason":")" + reason + "\"}";
  out += R"(,"output":[)";
  bool first = true;
  for (auto &it : items) {
    if (!first)
      out += ",";
    first = false;
    if (it.size() >= 2 && it[1] == "function_call")
      out += R"({"type":"function_call","id":")" + it[0] + R"(","name":")" + (it.size() > 2 ? it[2] : "") +
             R"(","call_id":")" + (it.size() > 3 ? it[3] : "") + R"(","arguments":"{}","status":"completed"})";
    else
      out += R"({"type":"message","role":"assistant","id":")" + it[0] +
             R"(","status":"completed","content":[{"type":")" +
             (options.dialect == Dialect::GA ? "output_audio" : "audio") + R"(","transcript":"hi"}]})";
  }
  out += R"(],"usage":{"total_tokens":1523,"input_tokens":1207,"output_tokens":316,"input_token_details":{"text_tokens":1001,"audio_tokens":206,"cached_tokens":832},"output_token_details":{"text_tokens":71,"audio_tokens":245}}}})";
  return out;
}

std::string MockServer::speech_started(int64_t audio_start_ms, const std::string &item) const {
  return R"({"type":"input_audio_buffer.speech_started","event_id":"ev_ss","audio_start_ms":)" +
         std::to_string(audio_start_ms) + R"(,"item_id":")" + item + "\"}";
}

std::string MockServer::speech_stopped(int64_t audio_end_ms, const std::string &item) const {
  return R"({"type":"input_audio_buffer.speech_stopped","event_id":"ev_sp","audio_end_ms":)" +
         std::to_string(audio_end_ms) + R"(,"item_id":")" + item + "\"}";
}

std::string MockServer::input_transcript(const std::string &item, const std::string &t) const {
  return R"({"type":"conversation.item.input_audio_transcription.completed","item_id":")" + item +
         R"(","content_index":0,"transcript":")" + esc(t) + "\"}";
}

std::string MockServer::error(const std::string &code, const std::string &message, const std::string &type) const {
  return R"({"type":"error","event_id":"ev_err","error":{"type":")" + type + R"(","code":")" + code +
         R"(","message":")" + esc(message) + R"(","param":null}})";
}

/* ------------------------------------------------------------ HttpMock */

HttpMock::HttpMock() = default;

HttpMock::~HttpMock() {
  if (thread_) {
    g_main_context_invoke(
        ctx_,
        [](gpointer d) -> gboolean {
          auto *self = static_cast<HttpMock *>(d);
          soup_server_disconnect(self->server_);
          g_main_loop_quit(self->loop_);
          return G_SOURCE_REMOVE;
        },
        this);
    g_thread_join(thread_);
  }
  if (server_)
    g_object_unref(server_);
  if (loop_)
    g_main_loop_unref(loop_);
  if (ctx_)
    g_main_context_unref(ctx_);
}

gpointer HttpMock::thread_main(gpointer data) {
  auto *self = static_cast<HttpMock *>(data);
  g_main_context_push_thread_default(self->ctx_);
  g_main_loop_run(self->loop_);
  g_main_context_pop_thread_default(self->ctx_);
  return nullptr;
}

bool HttpMock::start() {
  ctx_ = g_main_context_new();
  loop_ = g_main_loop_new(ctx_, FALSE);
  g_main_context_push_thread_default(ctx_);
  server_ = soup_server_new(nullptr, nullptr);
  soup_server_add_handler(server_, nullptr, on_request, this, nullptr);
  GError *err = nullptr;
  bool ok = soup_server_listen_local(server_, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &err);
  if (ok) {
    GSList *uris = soup_server_get_uris(server_);
    port_ = g_uri_get_port(static_cast<GUri *>(uris->data));
    g_slist_free_full(uris, reinterpret_cast<GDestroyNotify>(g_uri_unref));
  } else {
    g_clear_error(&err);
  }
  g_main_context_pop_thread_default(ctx_);
  if (ok)
    thread_ = g_thread_new("http-mock", thread_main, this);
  return ok;
}

std::string HttpMock::url(const std::string &path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpMock::respond(int status, const std::string &body, int delay_ms, const std::string &content_type) {
  std::lock_guard<std::mutex> g(mu_);
  status_ = status;
  body_ = body;
  delay_ms_ = delay_ms;
  content_type_ = content_type;
}

void HttpMock::on_request(SoupServer *, SoupServerMessage *msg, const char *path, GHashTable *, gpointer data) {
  auto *self = static_cast<HttpMock *>(data);
  HttpRequest r;
  r.method = soup_server_message_get_method(msg);
  r.path = path;
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  GBytes *bytes = soup_message_body_flatten(body);
  gsize n = 0;
  const char *p = static_cast<const char *>(g_bytes_get_data(bytes, &n));
  r.body.assign(p ? p : "", n);
  g_bytes_unref(bytes);
  soup_message_headers_foreach(
      soup_server_message_get_request_headers(msg),
      [](const char *name, const char *value, gpointer d) {
        gchar *lower = g_ascii_strdown(name, -1);
        (*static_cast<std::map<std::string, std::string> *>(d))[lower] = value;
        g_free(lower);
      },
      &r.headers);
  const char *ct = soup_message_headers_get_content_type(soup_server_message_get_request_headers(msg), nullptr);
  r.content_type = ct ? ct : "";
  int status, delay;
  std::string reply, type;
  {
    std::lock_guard<std::mutex> g(self->mu_);
    self->requests_.push_back(r);
    self->cv_.notify_all();
    status = self->status_;
    reply = self->body_;
    delay = self->delay_ms_;
    type = self->content_type_;
  }
  soup_server_message_set_status(msg, static_cast<guint>(status), nullptr);
  soup_server_message_set_response(msg, type.c_str(), SOUP_MEMORY_COPY, reply.data(), reply.size());
  if (delay > 0) {
    soup_server_message_pause(msg);
    GSource *t = g_timeout_source_new(static_cast<guint>(delay));
    g_source_set_callback(
        t,
        [](gpointer d) -> gboolean {
          soup_server_message_unpause(SOUP_SERVER_MESSAGE(d));
          return G_SOURCE_REMOVE;
        },
        g_object_ref(msg), g_object_unref);
    g_source_attach(t, self->ctx_);
    g_source_unref(t);
  }
}

std::vector<HttpRequest> HttpMock::requests() {
  std::lock_guard<std::mutex> g(mu_);
  return requests_;
}

bool HttpMock::wait_requests(size_t n, int timeout_ms) {
  std::unique_lock<std::mutex> g(mu_);
  return cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [&] { return requests_.size() >= n; });
}

} // namespace rtmock
