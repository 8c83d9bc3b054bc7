/* twilio-emulator: the Media Streams WebSocket, client side.
 *
 * Two implementations behind one interface:
 *  - SoupTransport: libsoup 3 (soup_session_websocket_connect_async), used
 *    for every call by default;
 *  - RawTransport: GSocketClient + our own handshake and framing. Used for
 *    calls with a `stop-reading` injection (libsoup's WebSocket always reads
 *    whatever arrives and has no way to stop), and for every call with
 *    --transport raw: it gathers what one tick sends into one write and
 *    reads many frames per read, which costs less CPU per call.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

typedef struct _SoupSession SoupSession;

namespace emu {

struct CloseInfo {
  bool by_emulator = false; /* who started closing (or dropped the connection) */
  int code = 1006;          /* the close code that started it; 1006: no close frame */
  std::string reason;
  int server_code = 0;      /* the server's close frame code, 0 if none */
  std::string error;        /* transport error, if any */
};

class TransportHandler {
public:
  virtual ~TransportHandler() = default;
  virtual void on_transport_open() = 0;
  /* The upgrade failed: @http_status is the server's answer (0 if none). */
  virtual void on_transport_failed(int http_status, const std::string &message) = 0;
  virtual void on_transport_text(const char *data, size_t len) = 0;
  virtual void on_transport_binary(const uint8_t *data, size_t len) = 0;
  virtual void on_transport_closed(const CloseInfo &info) = 0;
};

struct ConnectParams {
  std::string url;         /* ws:// or wss:// URL to open */
  std::string host_header; /* Host header (empty: from the URL) */
  std::string signature;   /* X-Twilio-Signature (empty: none) */
  SoupSession *session = nullptr;
};

class Transport {
public:
  virtual ~Transport() = default;
  virtual void connect(const ConnectParams &p) = 0;
  virtual void send_text(const std::string &text) = 0;
  virtual void send_binary(const uint8_t *data, size_t len) = 0;
  /* Starts the closing handshake; on_transport_closed follows. */
  virtual void close(uint16_t code, const char *reason) = 0;
  /* Drops the TCP connection without a close frame. */
  virtual void abort() = 0;
  /* Stops reading from the socket for good (only RawTransport can). */
  virtual bool stop_reading() = 0;
  virtual bool is_open() const = 0;
  /* Between these, sends may be gathered into one write (RawTransport);
   * libsoup writes every frame at once. */
  virtual void begin_batch() {}
  virtual void end_batch() {}
};

std::unique_ptr<Transport> make_soup_transport(TransportHandler &handler);
std::unique_ptr<Transport> make_raw_transport(TransportHandler &handler);

} // namespace emu
