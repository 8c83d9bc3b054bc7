/* twilio-emulator: WebSocket client over libsoup 3 */
#include <libsoup/soup.h>

#include "transport.h"

namespace emu {

namespace {

/* What Twilio accepts from a server is undocumented ("any size"); keep a
 * generous bound so a runaway server cannot exhaust memory. */
constexpr guint64 kMaxIncoming = 64u << 20;

class SoupTransport final : public Transport {
public:
  explicit SoupTransport(TransportHandler &h) : h_(h), cancel_(g_cancellable_new()) {}

  ~SoupTransport() override {
    g_cancellable_cancel(cancel_);
    g_object_unref(cancel_);
    if (conn_) {
      g_signal_handlers_disconnect_by_data(conn_, this);
      if (soup_websocket_connection_get_state(conn_) == SOUP_WEBSOCKET_STATE_OPEN)
        soup_websocket_connection_close(conn_, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, nullptr);
      g_object_unref(conn_);
    }
    if (msg_) {
      g_signal_handlers_disconnect_by_data(msg_, this);
      g_object_unref(msg_);
    }
    g_clear_object(&socket_);
  }

  void connect(const ConnectParams &p) override {
    msg_ = soup_message_new(SOUP_METHOD_GET, p.url.c_str());
    if (!msg_) {
      h_.on_transport_failed(0, "invalid WebSocket URL " + p.url);
      return;
    }
    SoupMessageHeaders *hdrs = soup_message_get_request_headers(msg_);
    if (!p.signature.empty())
      soup_message_headers_replace(hdrs, "X-Twilio-Signature", p.signature.c_str());
    if (!p.host_header.empty())
      soup_message_headers_replace(hdrs, "Host", p.host_header.c_str());
    g_signal_connect(msg_, "network-event", G_CALLBACK(on_network_event), this);
    soup_session_websocket_connect_async(p.session, msg_, nullptr, nullptr, G_PRIORITY_DEFAULT, cancel_,
                                         on_connected, this);
  }

  void send_text(const std::string &text) override {
    if (is_open())
      soup_websocket_connection_send_text(conn_, text.c_str());
  }

  void send_binary(const uint8_t *data, size_t len) override {
    if (is_open())
      soup_websocket_connection_send_binary(conn_, data, len);
  }

  void close(uint16_t code, const char *reason) override {
    if (!is_open())
      return;
    closing_by_us_ = true;
    close_code_ = code;
    soup_websocket_connection_close(conn_, code, reason);
  }

  void abort() override {
    if (!conn_ || closed_)
      return;
    aborted_ = true;
    GSocket *sock = socket_;
    if (!sock) /* libsoup keeps the socket of a stolen connection here */
      sock = G_SOCKET(g_object_get_data(G_OBJECT(soup_websocket_connection_get_io_stream(conn_)), "GSocket"));
    if (sock)
      g_socket_shutdown(sock, TRUE, TRUE, nullptr); /* FIN, no close frame; libsoup then sees EOF */
  }

  bool stop_reading() override { return false; }

  bool is_open() const override {
    return conn_ && !closed_ && soup_websocket_connection_get_state(conn_) == SOUP_WEBSOCKET_STATE_OPEN;
  }

private:
  static void on_network_event(SoupMessage *, GSocketClientEvent event, GIOStream *connection, gpointer data) {
    auto *self = static_cast<SoupTransport *>(data);
    if (event == G_SOCKET_CLIENT_CONNECTED && G_IS_SOCKET_CONNECTION(connection) && !self->socket_)
      self->socket_ = G_SOCKET(g_object_ref(g_socket_connection_get_socket(G_SOCKET_CONNECTION(connection))));
  }

  static void on_connected(GObject *source, GAsyncResult *res, gpointer data) {
    GError *err = nullptr;
    SoupWebsocketConnection *conn = soup_session_websocket_connect_finish(SOUP_SESSION(source), res, &err);
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
      g_error_free(err); /* the transport is gone: do not touch it */
      return;
    }
    auto *self = static_cast<SoupTransport *>(data);
    if (!conn) {
      int status = static_cast<int>(soup_message_get_status(self->msg_));
      std::string m = err ? err->message : "WebSocket upgrade failed";
      g_clear_error(&err);
      self->h_.on_transport_failed(status >= 100 ? status : 0, m);
      return;
    }
    self->conn_ = conn;
    soup_websocket_connection_set_max_incoming_payload_size(conn, kMaxIncoming);
    soup_websocket_connection_set_keepalive_interval(conn, 0);
    g_signal_connect(conn, "message", G_CALLBACK(on_message), self);
    g_signal_connect(conn, "closing", G_CALLBACK(on_closing), self);
    g_signal_connect(conn, "closed", G_CALLBACK(on_closed), self);
    g_signal_connect(conn, "error", G_CALLBACK(on_error), self);
    self->h_.on_transport_open();
  }

  static void on_message(SoupWebsocketConnection *, gint type, GBytes *message, gpointer data) {
    auto *self = static_cast<SoupTransport *>(data);
    gsize len = 0;
    const auto *p = static_cast<const uint8_t *>(g_bytes_get_data(message, &len));
    if (type == SOUP_WEBSOCKET_DATA_TEXT)
      self->h_.on_transport_text(reinterpret_cast<const char *>(p), len);
    else
      self->h_.on_transport_binary(p, len);
  }

  static void on_closing(SoupWebsocketConnection *, gpointer data) {
    auto *self = static_cast<SoupTransport *>(data);
    if (!self->closing_by_us_)
      self->server_started_close_ = true;
  }

  static void on_error(SoupWebsocketConnection *, GError *error, gpointer data) {
    auto *self = static_cast<SoupTransport *>(data);
    if (self->error_.empty() && error)
      self->error_ = error->message;
  }

  static void on_closed(SoupWebsocketConnection *conn, gpointer data) {
    auto *self = static_cast<SoupTransport *>(data);
    self->closed_ = true;
    CloseInfo info;
    info.server_code = soup_websocket_connection_get_close_code(conn);
    if (const char *r = soup_websocket_connection_get_close_data(conn))
      info.reason = r;
    info.error = self->error_;
    if (self->aborted_) {
      info.by_emulator = true;
      info.code = 1006;
    } else if (self->closing_by_us_ && !self->server_started_close_) {
      info.by_emulator = true;
      info.code = self->close_code_;
    } else {
      info.by_emulator = false;
      info.code = info.server_code ? info.server_code : 1006;
    }
    self->h_.on_transport_closed(info);
  }

  TransportHandler &h_;
  GCancellable *cancel_;
  SoupMessage *msg_ = nullptr;
  SoupWebsocketConnection *conn_ = nullptr;
  GSocket *socket_ = nullptr;
  std::string error_;
  bool closing_by_us_ = false;
  bool server_started_close_ = false;
  bool aborted_ = false;
  bool closed_ = false;
  uint16_t close_code_ = 0;
};

} // namespace

std::unique_ptr<Transport> make_soup_transport(TransportHandler &handler) {
  return std::make_unique<SoupTransport>(handler);
}

} // namespace emu
