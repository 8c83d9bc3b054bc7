/* twilio-emulator: WebSocket client on a plain GSocketClient connection, with
 * our own handshake and RFC 6455 framing. Reading can be stopped (the
 * `stop-reading` injection: the server's writes then back up in TCP), and what
 * one tick sends can leave in one write (--transport raw). */
#include <gio/gio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstring>

#include "pa-audio.h"
#include "transport.h"
#include "ws-frame.h"

namespace emu {

namespace {

constexpr size_t kReadChunk = 16384;
constexpr size_t kMaxHandshake = 16384;
/* After our close frame: how long to wait for the server's before dropping
 * the connection (libsoup waits 5 s too). */
constexpr guint kCloseWaitMs = 2000;

class RawTransport final : public Transport {
public:
  explicit RawTransport(TransportHandler &h) : h_(h), cancel_(g_cancellable_new()) {}

  ~RawTransport() override {
    g_cancellable_cancel(cancel_);
    stop_sources();
    if (close_timer_)
      g_source_remove(close_timer_);
    if (conn_) {
      g_io_stream_close(G_IO_STREAM(conn_), nullptr, nullptr);
      g_object_unref(conn_);
    }
    g_object_unref(cancel_);
  }

  void connect(const ConnectParams &p) override {
    GError *err = nullptr;
    GUri *uri = g_uri_parse(p.url.c_str(), G_URI_FLAGS_NONE, &err);
    if (!uri) {
      h_.on_transport_failed(0, "invalid WebSocket URL " + p.url + ": " + err->message);
      g_error_free(err);
      return;
    }
    bool tls = g_strcmp0(g_uri_get_scheme(uri), "wss") == 0;
    std::string host = g_uri_get_host(uri) ? g_uri_get_host(uri) : "";
    int port = g_uri_get_port(uri) > 0 ? g_uri_get_port(uri) : (tls ? 443 : 80);
    std::string path = g_uri_get_path(uri);
    if (path.empty())
      path = "/";
    g_uri_unref(uri);

    std::string host_header = p.host_header;
    if (host_header.empty()) {
      host_header = host.find(':') != std::string::npos ? "[" + host + "]" : host;
      if (port != (tls ? 443 : 80))
        host_header += ":" + std::to_string(port);
    }
    uint8_t nonce[16];
    for (auto &b : nonce)
      b = static_cast<uint8_t>(g_random_int_range(0, 256));
    key_ = pa::base64_encode(nonce, sizeof nonce);
    request_ = "GET " + path + " HTTP/1.1\r\nHost: " + host_header +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key_ +
               "\r\nSec-WebSocket-Version: 13\r\n";
    if (!p.signature.empty())
      request_ += "X-Twilio-Signature: " + p.signature + "\r\n";
    request_ += "\r\n";

    GSocketClient *client = g_socket_client_new();
    g_socket_client_set_tls(client, tls);
    g_socket_client_set_timeout(client, 15);
    g_socket_client_connect_to_host_async(client, host.c_str(), static_cast<guint16>(port), cancel_,
                                          on_connected, this);
    g_object_unref(client);
  }

  void send_text(const std::string &text) override { send_frame(ws::Text, text.data(), text.size()); }
  void send_binary(const uint8_t *data, size_t len) override { send_frame(ws::Binary, data, len); }

  void close(uint16_t code, const char *reason) override {
    if (!open_ || close_sent_)
      return;
    if (!close_received_) {
      by_emulator_ = true;
      close_code_ = code;
    }
    std::string body;
    body.push_back(static_cast<char>(code >> 8));
    body.push_back(static_cast<char>(code & 0xFF));
    if (reason)
      body += std::string(reason).substr(0, 120);
    send_frame(ws::Close, body.data(), body.size());
    close_sent_ = true;
    if (close_received_ || reading_stopped_)
      close_timer_ = g_timeout_add(reading_stopped_ ? 200 : 0, on_close_timer, this);
    else
      close_timer_ = g_timeout_add(kCloseWaitMs, on_close_timer, this);
  }

  void abort() override {
    if (!conn_ || finished_)
      return;
    by_emulator_ = true;
    close_code_ = 1006;
    GSocket *sock = g_socket_connection_get_socket(G_SOCKET_CONNECTION(base_conn()));
    g_socket_shutdown(sock, TRUE, TRUE, nullptr);
    finish("");
  }

  bool stop_reading() override {
    reading_stopped_ = true;
    if (in_source_) {
      g_source_destroy(in_source_);
      g_source_unref(in_source_);
      in_source_ = nullptr;
    }
    return true;
  }

  bool is_open() const override { return open_ && !close_sent_ && !finished_; }

  void begin_batch() override { batching_ = true; }
  void end_batch() override {
    batching_ = false;
    if (open_)
      flush();
  }

private:
  GIOStream *base_conn() const {
    /* with TLS the socket connection sits under the TLS connection */
    if (G_IS_TLS_CONNECTION(conn_)) {
      GIOStream *base = nullptr;
      g_object_get(conn_, "base-io-stream", &base, nullptr);
      g_object_unref(base); /* still owned by the TLS connection */
      return base;
    }
    return G_IO_STREAM(conn_);
  }

  static void on_connected(GObject *source, GAsyncResult *res, gpointer data) {
    GError *err = nullptr;
    GSocketConnection *conn = g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(source), res, &err);
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
      g_error_free(err);
      return;
    }
    auto *self = static_cast<RawTransport *>(data);
    if (!conn) {
      std::string m = err->message;
      g_error_free(err);
      self->h_.on_transport_failed(0, m);
      return;
    }
    self->conn_ = conn;
    GSocket *sock = g_socket_connection_get_socket(G_SOCKET_CONNECTION(self->base_conn()));
    /* real-time frames go out as written (libsoup's client does the same) */
    g_socket_set_option(sock, IPPROTO_TCP, TCP_NODELAY, TRUE, nullptr);
    /* the client's connect timeout must not become an idle timeout: a server
     * may stay silent for long */
    g_socket_set_timeout(sock, 0);
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
    g_output_stream_write_all_async(out, self->request_.data(), self->request_.size(), G_PRIORITY_DEFAULT,
                                    self->cancel_, on_request_written, self);
  }

  static void on_request_written(GObject *source, GAsyncResult *res, gpointer data) {
    GError *err = nullptr;
    if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), res, nullptr, &err)) {
      if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        g_error_free(err);
        return;
      }
      auto *self = static_cast<RawTransport *>(data);
      std::string m = err->message;
      g_error_free(err);
      self->h_.on_transport_failed(0, m);
      return;
    }
    static_cast<RawTransport *>(data)->read_handshake();
  }

  void read_handshake() {
    hs_buf_.resize(hs_len_ + 2048);
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(conn_));
    g_input_stream_read_async(in, &hs_buf_[hs_len_], 2048, G_PRIORITY_DEFAULT, cancel_, on_handshake_read, this);
  }

  static void on_handshake_read(GObject *source, GAsyncResult *res, gpointer data) {
    GError *err = nullptr;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), res, &err);
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
      g_error_free(err);
      return;
    }
    auto *self = static_cast<RawTransport *>(data);
    if (n <= 0) {
      std::string m = err ? err->message : "connection closed during the WebSocket handshake";
      g_clear_error(&err);
      self->h_.on_transport_failed(0, m);
      return;
    }
    self->hs_len_ += static_cast<size_t>(n);
    self->hs_buf_.resize(self->hs_len_);
    size_t end = self->hs_buf_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (self->hs_len_ > kMaxHandshake) {
        self->h_.on_transport_failed(0, "WebSocket handshake response too long");
        return;
      }
      self->read_handshake();
      return;
    }
    self->handshake_done(end + 4);
  }

  void handshake_done(size_t header_len) {
    std::string head = hs_buf_.substr(0, header_len);
    int status = 0;
    if (head.rfind("HTTP/1.", 0) == 0 && head.size() > 12)
      status = std::atoi(head.c_str() + 9);
    if (status != 101) {
      h_.on_transport_failed(status, "the server did not accept the WebSocket handshake (HTTP " +
                                         std::to_string(status) + ")");
      return;
    }
    std::string accept;
    size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string::npos) {
      pos += 2;
      size_t colon = head.find(':', pos);
      size_t eol = head.find("\r\n", pos);
      if (colon == std::string::npos || eol == std::string::npos || colon > eol)
        continue;
      if (g_ascii_strncasecmp(head.c_str() + pos, "Sec-WebSocket-Accept", colon - pos) == 0 &&
          colon - pos == strlen("Sec-WebSocket-Accept")) {
        accept = head.substr(colon + 1, eol - colon - 1);
        while (!accept.empty() && accept.front() == ' ')
          accept.erase(0, 1);
        while (!accept.empty() && (accept.back() == ' ' || accept.back() == '\t'))
          accept.pop_back();
      }
    }
    if (accept != ws::accept_key(key_)) {
      h_.on_transport_failed(101, "bad Sec-WebSocket-Accept in the server's handshake");
      return;
    }
    parser_.feed(hs_buf_.data() + header_len, hs_buf_.size() - header_len);
    hs_buf_.clear();
    hs_buf_.shrink_to_fit();
    open_ = true;
    h_.on_transport_open();
    if (finished_)
      return;
    process_frames();
    if (!finished_ && !reading_stopped_)
      start_input();
  }

  void start_input() {
    if (in_source_ || reading_stopped_ || finished_)
      return;
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(conn_));
    in_source_ = g_pollable_input_stream_create_source(G_POLLABLE_INPUT_STREAM(in), nullptr);
    g_source_set_callback(in_source_, G_SOURCE_FUNC(on_input_ready), this, nullptr);
    g_source_attach(in_source_, nullptr);
  }

  static gboolean on_input_ready(GObject *, gpointer data) {
    static_cast<RawTransport *>(data)->on_readable();
    return G_SOURCE_CONTINUE;
  }

  static gboolean on_output_ready(GObject *, gpointer data) {
    auto *self = static_cast<RawTransport *>(data);
    g_source_unref(self->out_source_);
    self->out_source_ = nullptr;
    self->flush();
    return G_SOURCE_REMOVE;
  }

  void on_readable() {
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(conn_));
    char buf[kReadChunk];
    while (!finished_ && !reading_stopped_) {
      GError *err = nullptr;
      gssize n = g_pollable_input_stream_read_nonblocking(G_POLLABLE_INPUT_STREAM(in), buf, sizeof buf, nullptr, &err);
      if (n < 0) {
        bool would_block = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
        std::string m = err->message;
        g_error_free(err);
        if (!would_block)
          finish(m);
        return;
      }
      if (n == 0) {
        finish(close_received_ ? "" : "connection closed by the server without a close frame");
        return;
      }
      parser_.feed(buf, static_cast<size_t>(n));
      process_frames();
    }
  }

  void process_frames() {
    ws::Frame f;
    std::string err;
    while (!finished_) {
      auto r = parser_.next(f, err);
      if (r == ws::FrameParser::Result::NeedMore)
        return;
      if (r == ws::FrameParser::Result::Error) {
        close(1002, "protocol error");
        error_ = err;
        return;
      }
      handle_frame(f);
    }
  }

  void handle_frame(ws::Frame &f) {
    switch (f.opcode) {
    case ws::Continuation:
      if (!in_message_) {
        close(1002, "unexpected continuation frame");
        return;
      }
      message_ += f.payload;
      break;
    case ws::Text:
    case ws::Binary:
      if (in_message_) {
        close(1002, "new message inside a fragmented one");
        return;
      }
      in_message_ = true;
      message_opcode_ = f.opcode;
      message_ = std::move(f.payload);
      break;
    case ws::Ping:
      send_frame(ws::Pong, f.payload.data(), f.payload.size());
      return;
    case ws::Pong:
      return;
    case ws::Close: {
      close_received_ = true;
      server_code_ = f.payload.size() >= 2
                         ? (static_cast<uint8_t>(f.payload[0]) << 8) | static_cast<uint8_t>(f.payload[1])
                         : 1005;
      if (f.payload.size() > 2)
        reason_ = f.payload.substr(2);
      if (!close_sent_) {
        by_emulator_ = false;
        close_code_ = server_code_;
        close(server_code_ == 1005 ? 1000 : static_cast<uint16_t>(server_code_), nullptr);
      } else {
        finish("");
      }
      return;
    }
    default:
      close(1002, "unknown opcode");
      return;
    }
    if (!f.fin)
      return;
    in_message_ = false;
    if (message_opcode_ == ws::Text)
      h_.on_transport_text(message_.data(), message_.size());
    else
      h_.on_transport_binary(reinterpret_cast<const uint8_t *>(message_.data()), message_.size());
    message_.clear();
  }

  void send_frame(uint8_t opcode, const void *data, size_t len) {
    if (!open_ || close_sent_ || finished_)
      return;
    ws::append_frame(out_, opcode, data, len, g_random_int());
    if (!batching_ || opcode == ws::Close)
      flush();
  }

  void flush() {
    if (finished_ || out_source_)
      return;
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn_));
    while (out_pos_ < out_.size()) {
      GError *err = nullptr;
      gssize n = g_pollable_output_stream_write_nonblocking(G_POLLABLE_OUTPUT_STREAM(out), out_.data() + out_pos_,
                                                            out_.size() - out_pos_, nullptr, &err);
      if (n < 0) {
        bool would_block = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
        std::string m = err->message;
        g_error_free(err);
        if (!would_block) {
          finish(m);
          return;
        }
        out_source_ = g_pollable_output_stream_create_source(G_POLLABLE_OUTPUT_STREAM(out), nullptr);
        g_source_set_callback(out_source_, G_SOURCE_FUNC(on_output_ready), this, nullptr);
        g_source_attach(out_source_, nullptr);
        return;
      }
      out_pos_ += static_cast<size_t>(n);
    }
    out_.clear();
    out_pos_ = 0;
  }

  static gboolean on_close_timer(gpointer data) {
    auto *self = static_cast<RawTransport *>(data);
    self->close_timer_ = 0;
    self->finish(self->close_received_ ? "" : "no close frame from the server");
    return G_SOURCE_REMOVE;
  }

  void stop_sources() {
    if (in_source_) {
      g_source_destroy(in_source_);
      g_source_unref(in_source_);
      in_source_ = nullptr;
    }
    if (out_source_) {
      g_source_destroy(out_source_);
      g_source_unref(out_source_);
      out_source_ = nullptr;
    }
  }

  /* The end: close the socket and report once. */
  void finish(const std::string &error) {
    if (finished_)
      return;
    finished_ = true;
    stop_sources();
    if (close_timer_) {
      g_source_remove(close_timer_);
      close_timer_ = 0;
    }
    if (conn_)
      g_io_stream_close(G_IO_STREAM(conn_), nullptr, nullptr);
    CloseInfo info;
    info.by_emulator = by_emulator_;
    info.code = close_code_ ? close_code_ : (close_received_ ? server_code_ : 1006);
    info.server_code = close_received_ ? server_code_ : 0;
    info.reason = reason_;
    info.error = error_.empty() ? error : error_;
    if (!by_emulator_ && !close_received_)
      info.code = 1006;
    h_.on_transport_closed(info);
  }

  TransportHandler &h_;
  GCancellable *cancel_;
  GSocketConnection *conn_ = nullptr;
  std::string key_, request_;
  std::string hs_buf_;
  size_t hs_len_ = 0;
  ws::FrameParser parser_;
  GSource *in_source_ = nullptr;
  GSource *out_source_ = nullptr;
  guint close_timer_ = 0;
  std::string out_;
  size_t out_pos_ = 0;
  bool in_message_ = false;
  uint8_t message_opcode_ = ws::Text;
  std::string message_;
  bool open_ = false, close_sent_ = false, close_received_ = false, finished_ = false;
  bool reading_stopped_ = false, by_emulator_ = false, batching_ = false;
  int close_code_ = 0, server_code_ = 0;
  std::string reason_, error_;
};

} // namespace

std::unique_ptr<Transport> make_raw_transport(TransportHandler &handler) {
  return std::make_unique<RawTransport>(handler);
}

} // namespace emu
