/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A WebSocket client for the model side (RFC 6455), on its own epoll loop.
 *
 * One thread serves every connection in the process (one per call), or,
 * under the phone-agent server, the media thread that reads the call's
 * Twilio socket (WsOptions::host), but it only reads: it connects, does the TLS and HTTP handshakes, reassembles
 * messages and hands them to the callbacks, which must return quickly.
 * A send is framed, masked, encrypted (wss://) and written to the socket on
 * the thread that sends, under the connection's lock; only what the kernel
 * does not take at once waits for the loop (EPOLLOUT). So a frame from the
 * caller goes to the model from the thread that pushed it (a server media
 * thread, say), with no hand-off and no wake-up of another thread, and 300
 * calls still cost one socket thread. This replaced libwebsockets, whose
 * sends had to be queued for its service thread (not thread-safe) and which
 * polled every socket at each of those wake-ups: that thread was half the
 * agent relay's CPU (docs/architecture.md).
 *
 * Host names are resolved on the calling thread (GResolver, cancellable)
 * before the loop is asked to connect. TLS (wss://) uses OpenSSL through
 * memory BIOs, with the system's CA store plus an optional extra CA file;
 * the certificate chain and the host name (or IP address) are checked. The
 * connection pings after 30 s of silence and gives up after 70 s; a
 * connection not open within 10 s fails (WsOptions).
 *
 * Header values (the API key) are never logged.
 */
#pragma once

#include <gio/gio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pa-websocket.h"
#include "rt-api.h"

namespace pa::rt {

struct WsUrl {
  bool tls = false;
  std::string host;  /* without brackets for IPv6 */
  int port = 0;
  std::string path;  /* path and query, at least "/" */
};

/* Parses ws:// and wss:// URLs. */
RT_API bool parse_ws_url(const std::string &url, WsUrl &out, std::string &error);

struct WsOptions {
  std::string url;
  /* Extra handshake headers: name (without colon), value. */
  std::vector<std::pair<std::string, std::string>> headers;
  std::string ca_file;          /* extra trusted CA (PEM), optional */
  size_t max_message = 16 * 1024 * 1024; /* larger inbound messages are dropped */
  /* Timing (tests shorten it): TCP, TLS and the upgrade must be done within
   * connect_timeout_ms; after ping_after_ms without a byte from the server
   * the client pings, and after dead_after_ms it gives up (closed, 1006). */
  unsigned connect_timeout_ms = 10000;
  unsigned ping_after_ms = 30000;
  unsigned dead_after_ms = 70000;
  /* Read the socket on this media thread of the phone-agent server (the
   * one reading the call's Twilio socket: pa_call_get_media_thread())
   * instead of the process-wide socket thread. nullptr, or a thread that
   * has stopped: the process-wide thread. */
  std::shared_ptr<pa::MediaThread> host;
};

struct WsCallbacks {
  std::function<void()> on_open;
  /* @text lies in the client's read buffer: valid during the call only */
  std::function<void(std::string_view text)> on_message;
  /* The connection could not be made (or the upgrade was refused).
   * @http_status is the upgrade's HTTP status when there was one, else 0. */
  std::function<void(int http_status, const std::string &why)> on_fail;
  /* An open connection closed; @code is the peer's close code (1006 if none). */
  std::function<void(int code, const std::string &reason)> on_closed;
};

struct WsStats {
  uint64_t messages_in = 0, bytes_in = 0, messages_out = 0, bytes_out = 0;
  uint64_t binary_dropped = 0, oversized_dropped = 0;
  size_t queued_bytes = 0;
  bool on_media_thread = false; /* read by a server media thread (WsOptions::host), not the shared thread */
};

class RT_API WsClient {
public:
  explicit WsClient(WsCallbacks callbacks);
  /* Detaches the callbacks and asks for a close (no wait). */
  ~WsClient();
  WsClient(const WsClient &) = delete;
  WsClient &operator=(const WsClient &) = delete;

  /* Resolves the host (blocking this thread, cancellable) and starts the
   * connection on the socket thread. Callbacks follow on that thread. */
  bool open(const WsOptions &options, GCancellable *cancellable, GError **error);
  /* Queues a text message; any thread. FALSE once closing or closed. */
  bool send(std::string text);
  /* Sends what is queued, then a close frame; any thread, idempotent. */
  void close(int code = 1000, const std::string &reason = "");
  /* Waits until the socket is gone (closed, failed or never opened). */
  bool wait_closed(int64_t timeout_us);
  /* No callback runs after this returns. */
  void detach();
  bool is_open() const;
  WsStats stats() const;
  /* stats().queued_bytes without taking the connection's lock (a caller
   * checks it before every message it sends) */
  size_t queued_bytes() const;

  struct Conn;

private:
  std::shared_ptr<Conn> conn_;
  std::shared_ptr<void> svc_; /* the process-wide service, held while we may use it */
};

} // namespace pa::rt
