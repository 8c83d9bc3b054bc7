/* gst-phone-agent: a scripted OpenAI-Realtime-compatible server for tests
 * and benchmarks (libsoup, 127.0.0.1, its own thread), plus a small HTTP
 * server for tool URLs and the Twilio REST API.
 *
 * The realtime server answers the upgrade (or refuses it with a status),
 * sends session.created in the GA or beta shape, answers session.update with
 * session.updated, records every client event, and sends whatever the test
 * scripts. Event helpers name events in the server's dialect.
 */
#pragma once

#include <libsoup/soup.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "rt-protocol.h"

namespace rtmock {

struct Options {
  pa::rt::Dialect dialect = pa::rt::Dialect::GA;
  int reject_status = 0;        /* answer the upgrade with this HTTP status instead */
  bool send_session_created = true;
  bool answer_session_update = true;
  bool record_audio = true;     /* keep input_audio_buffer.append events (the bench turns this off) */
  std::string tls_cert_file;    /* with tls_key_file: wss:// (url() then names localhost) */
  std::string tls_key_file;
};

struct Received {
  int conn = 0;
  std::string type;
  std::string text;
  gint64 at_us = 0;
};

class MockServer {
public:
  explicit MockServer(Options o = Options());
  ~MockServer();
  bool start();
  int port() const { return port_; }
  std::string url() const;

  /* ---- what clients sent ---- */
  std::vector<Received> received();
  std::vector<Received> received(const std::string &type);
  size_t count(const std::string &type);
  /* Waits for the @nth (0-based) event of @type. */
  bool wait_for(const std::string &type, int timeout_ms, Received *out = nullptr, size_t nth = 0);
  int connections();
  bool wait_connections(int n, int timeout_ms);
  /* Waits until connection @conn (1-based) is closed by either side. */
  bool wait_closed(int conn, int timeout_ms, gint64 *closed_at_us = nullptr);
  std::map<std::string, std::string> upgrade_headers(int conn);
  /* Total appended caller audio (decoded bytes) on @conn. */
  size_t appended_bytes(int conn);

  /* ---- scripting (any thread) ---- */
  void send(const std::string &json, int conn = 0); /* 0: the latest connection */
  /* Runs @fn on the server thread (the benchmark stamps and sends there). */
  void run(std::function<void()> fn) { invoke(std::move(fn)); }
  /* Server thread only: sends now. FALSE when @conn is not open. */
  bool send_now(const std::string &json, int conn);
  /* Ids of the open connections. */
  std::vector<int> open_connections();
  /* The socket of @conn (plain ws:// only), for a benchmark that writes
   * server frames itself once the session is set up; -1 if unknown. */
  int raw_fd(int conn);
  void close(int code, const std::string &reason, int conn = 0);
  /* Runs on the server thread for each client event (after recording). */
  std::function<void(const Received &)> on_event;
  /* Runs on the server thread when a connection opens. */
  std::function<void(int conn)> on_connect;

  /* ---- events in this server's dialect ---- */
  std::string session_created() const;
  std::string session_updated() const;
  std::string response_created(const std::string &resp) const;
  std::string output_item_added(const std::string &resp, const std::string &item) const;
  std::string audio_delta(const std::string &resp, const std::string &item, const std::vector<uint8_t> &audio) const;
  std::string audio_done(const std::string &resp, const std::string &item) const;
  std::string transcript_delta(const std::string &resp, const std::string &item, const std::string &d) const;
  std::string transcript_done(const std::string &resp, const std::string &item, const std::string &t) const;
  std::string function_call(const std::string &resp, const std::string &item, const std::string &call_id,
                            const std::string &name, const std::string &args) const;
  /* response.done; @items: {item id, type ("message"|"function_call"), name, call_id} */
  std::string response_done(const std::string &resp, const std::string &status = "completed",
                             const std::vector<std::vector<std::string>> &items = {},
                             const std::string &reason = "") const;
  std::string speech_started(int64_t audio_start_ms, const std::string &item) const;
  std::string speech_stopped(int64_t audio_end_ms, const std::string &item) const;
  std::string input_transcript(const std::string &item, const std::string &t) const;
  std::string error(const std::string &code, const std::string &message, const std::string &type = "invalid_request_error") const;

  Options options;

private:
  struct Conn {
    int id = 0;
    SoupWebsocketConnection *ws = nullptr;
    bool closed = false;
    gint64 closed_at = 0;
    std::map<std::string, std::string> headers;
    size_t appended = 0;
    int fd = -1;
  };
  static void on_ws(SoupServer *, SoupServerMessage *, const char *, SoupWebsocketConnection *, gpointer);
  static void on_reject(SoupServer *, SoupServerMessage *, const char *, GHashTable *, gpointer);
  static gpointer thread_main(gpointer);
  void handle(int conn, const std::string &text);
  void invoke(std::function<void()> fn);
  SoupWebsocketConnection *ws_for(int conn);

  GMainContext *ctx_ = nullptr;
  GMainLoop *loop_ = nullptr;
  GThread *thread_ = nullptr;
  SoupServer *server_ = nullptr;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> events_;
  std::map<int, Conn> conns_;
  int next_conn_ = 1;
};

/* A tiny HTTP server: records requests, answers with a scripted status and
 * body, optionally after a delay (for timeouts). */
struct HttpRequest {
  std::string method, path, body, content_type;
  std::map<std::string, std::string> headers;
};

class HttpMock {
public:
  HttpMock();
  ~HttpMock();
  bool start();
  std::string url(const std::string &path = "/") const;
  void respond(int status, const std::string &body, int delay_ms = 0,
               const std::string &content_type = "application/json");
  std::vector<HttpRequest> requests();
  bool wait_requests(size_t n, int timeout_ms);

private:
  static void on_request(SoupServer *, SoupServerMessage *, const char *, GHashTable *, gpointer);
  static gpointer thread_main(gpointer);
  GMainContext *ctx_ = nullptr;
  GMainLoop *loop_ = nullptr;
  GThread *thread_ = nullptr;
  SoupServer *server_ = nullptr;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<HttpRequest> requests_;
  int status_ = 200;
  std::string body_ = "{}";
  std::string content_type_ = "application/json";
  int delay_ms_ = 0;
};

} // namespace rtmock
