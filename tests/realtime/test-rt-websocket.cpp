/* gst-phone-agent: the model-side WebSocket client (its epoll thread, direct
 * sends) against the mock realtime server on 127.0.0.1, and against a raw
 * peer that writes exactly the bytes a test needs (fragments, pings, masked
 * or oversized frames, a wrong handshake). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../common/pa-check.h"
#include "rt-mock-server.h"
#include "pa-websocket.h"
#include "rt-websocket.h"

using namespace pa::rt;

namespace {
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  bool opened = false;
  int fail_status = -1;
  std::string fail_why;
  int closed_code = -1;
  std::vector<std::string> messages;
  WsCallbacks callbacks() {
    WsCallbacks cb;
    cb.on_open = [this] {
      std::lock_guard<std::mutex> g(mu);
      opened = true;
      cv.notify_all();
    };
    cb.on_message = [this](std::string_view t) {
      std::lock_guard<std::mutex> g(mu);
      messages.emplace_back(t);
      cv.notify_all();
    };
    cb.on_fail = [this](int status, const std::string &why) {
      std::lock_guard<std::mutex> g(mu);
      fail_status = status;
      fail_why = why;
      cv.notify_all();
    };
    cb.on_closed = [this](int code, const std::string &) {
      std::lock_guard<std::mutex> g(mu);
      closed_code = code;
      cv.notify_all();
    };
    return cb;
  }
  template <typename P> bool wait(P pred, int ms = 5000) {
    std::unique_lock<std::mutex> g(mu);
    return cv.wait_for(g, std::chrono::milliseconds(ms), pred);
  }
};
} // namespace

GST_START_TEST(test_open_send_receive_close) {
  rtmock::MockServer mock;
  fail_unless(mock.start());
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url() + "?model=m";
  o.headers = {{"Authorization", "Bearer sk-test-secret"}, {"X-Extra", "1"}};
  GError *err = nullptr;
  fail_unless(ws.open(o, nullptr, &err));
  /* queued before the upgrade: sent once open */
  fail_unless(ws.send(R"({"type":"input_audio_buffer.clear"})"));
  fail_unless(ev.wait([&] { return ev.opened && !ev.messages.empty(); }));
  fail_unless(ev.messages[0].find("session.created") != std::string::npos);
  fail_unless(mock.wait_for("input_audio_buffer.clear", 5000));
  auto h = mock.upgrade_headers(1);
  assert_str(h["authorization"], "Bearer sk-test-secret");
  assert_str(h["x-extra"], "1");
  /* order is kept across threads' sends */
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&ws, t] {
      for (int i = 0; i < 50; i++)
        ws.send("{\"type\":\"t" + std::to_string(t) + "\",\"i\":" + std::to_string(i) + "}");
    });
  for (auto &th : threads)
    th.join();
  for (int t = 0; t < 4; t++)
    fail_unless(mock.wait_for("t" + std::to_string(t), 5000, nullptr, 49));
  for (int t = 0; t < 4; t++) {
    auto got = mock.received("t" + std::to_string(t));
    fail_unless_equals_int(got.size(), 50);
    for (int i = 0; i < 50; i++)
      fail_unless(got[i].text.find("\"i\":" + std::to_string(i) + "}") != std::string::npos);
  }
  /* a large message from the server arrives whole */
  std::string big = R"({"type":"x","pad":")" + std::string(300000, 'a') + "\"}";
  mock.send(big);
  fail_unless(ev.wait([&] { return ev.messages.size() >= 2 && ev.messages.back().size() == big.size(); }));
  gint64 t0 = g_get_monotonic_time();
  ws.close(1000, "bye");
  fail_unless(ws.wait_closed(2 * G_USEC_PER_SEC));
  gint64 closed_at = 0;
  fail_unless(mock.wait_closed(1, 2000, &closed_at));
  fail_unless(closed_at - t0 < G_USEC_PER_SEC, "closed after %" G_GINT64_FORMAT " us", closed_at - t0);
  fail_if(ws.send("{}"));
  WsStats st = ws.stats();
  fail_unless(st.messages_out >= 201);
}
GST_END_TEST;

GST_START_TEST(test_peer_close_code) {
  rtmock::MockServer mock;
  fail_unless(mock.start());
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url();
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.opened; }));
  mock.close(1001, "session expired");
  fail_unless(ev.wait([&] { return ev.closed_code != -1; }));
  fail_unless_equals_int(ev.closed_code, 1001);
  fail_unless(ws.wait_closed(G_USEC_PER_SEC));
}
GST_END_TEST;

GST_START_TEST(test_rejected_upgrade) {
  rtmock::Options opt;
  opt.reject_status = 401;
  rtmock::MockServer mock(opt);
  fail_unless(mock.start());
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url();
  o.headers = {{"Authorization", "Bearer bad"}};
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }));
  fail_unless_equals_int(ev.fail_status, 401);
  fail_if(ev.opened);
}
GST_END_TEST;

GST_START_TEST(test_connection_refused_and_bad_url) {
  /* a port nobody listens on */
  GSocket *s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, nullptr);
  GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  GSocketAddress *sa = g_inet_socket_address_new(lo, 0);
  fail_unless(g_socket_bind(s, sa, TRUE, nullptr));
  GSocketAddress *bound = g_socket_get_local_address(s, nullptr);
  guint port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  g_object_unref(bound);
  g_object_unref(sa);
  g_object_unref(lo);
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/v1/realtime";
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }));
  fail_unless_equals_int(ev.fail_status, 0);
  g_object_unref(s);

  WsClient bad(WsCallbacks{});
  GError *err = nullptr;
  o.url = "http://127.0.0.1/";
  fail_if(bad.open(o, nullptr, &err));
  fail_unless(g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS));
  g_clear_error(&err);
}
GST_END_TEST;


/* A WebSocket server written by hand on a loopback socket: it answers the
 * upgrade (rightly, or with @bad_accept wrongly), then a test writes raw
 * frames and reads the client's, unmasked, with their masks. */
namespace {
class RawPeer {
public:
  explicit RawPeer(bool bad_accept = false) : bad_accept_(bad_accept) {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fail_unless(bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
    fail_unless(listen(lfd_, 1) == 0);
    socklen_t len = sizeof(a);
    getsockname(lfd_, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~RawPeer() {
    if (fd_ >= 0)
      close(fd_);
    close(lfd_);
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/realtime"; }

  /* Accepts the client and reads its upgrade request, without answering. */
  void accept_only() {
    timeval tv{5, 0};
    setsockopt(lfd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    fd_ = accept(lfd_, nullptr, nullptr);
    fail_unless(fd_ >= 0, "no client");
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1; /* small writes leave as they are written */
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (buf_.find("\r\n\r\n") == std::string::npos)
      fail_unless(fill(), "no upgrade request");
  }
  /* TRUE once the client closed the connection (within 5 s). */
  bool wait_eof() {
    char b[4096];
    for (;;) {
      ssize_t n = recv(fd_, b, sizeof(b), 0);
      if (n == 0)
        return true;
      if (n < 0)
        return false;
    }
  }
  /* Accepts the client and answers its upgrade. */
  /* ... and @then (frames) in the same write as the answer */
  void accept_upgrade(const std::string &then = "") {
    accept_only();
    std::string req = buf_.substr(0, buf_.find("\r\n\r\n"));
    buf_.erase(0, req.size() + 4);
    size_t k = req.find("Sec-WebSocket-Key: ");
    fail_unless(k != std::string::npos);
    std::string key = req.substr(k + 19, req.find("\r\n", k) - k - 19);
    std::string s = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char *>(s.data()), s.size(), d);
    if (bad_accept_)
      d[0] ^= 1;
    gchar *acc = g_base64_encode(d, sizeof(d));
    write_all("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " + std::string(acc) + "\r\n\r\n" + then);
    g_free(acc);
  }
  void write_all(const std::string &bytes) {
    fail_unless(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  /* One frame as written on the wire: @first_byte is FIN|opcode. */
  static std::string frame(uint8_t first_byte, const std::string &payload, const uint8_t *mask = nullptr) {
    std::string f;
    pa::ws::append_frame(f, pa::ws::Opcode::Text, payload, mask);
    f[0] = static_cast<char>(first_byte);
    return f;
  }
  struct Frame {
    pa::ws::FrameHeader h;
    std::string payload; /* unmasked */
  };
  /* The client's next frame (fails the test after 5 s). */
  Frame read_frame() {
    for (;;) {
      Frame f;
      std::string err;
      auto d = pa::ws::decode_header(reinterpret_cast<const uint8_t *>(buf_.data()), buf_.size(), f.h, err);
      fail_if(d == pa::ws::Decode::Error, "%s", err.c_str());
      if (d == pa::ws::Decode::Ok && buf_.size() >= f.h.header_len + f.h.payload_len) {
        f.payload = buf_.substr(f.h.header_len, f.h.payload_len);
        if (f.h.masked)
          pa::ws::unmask(reinterpret_cast<uint8_t *>(f.payload.data()), f.payload.size(), f.h.mask);
        buf_.erase(0, f.h.header_len + f.h.payload_len);
        return f;
      }
      fail_unless(fill(), "no frame from the client");
    }
  }

private:
  bool fill() {
    char b[4096];
    ssize_t n = recv(fd_, b, sizeof(b), 0);
    if (n <= 0)
      return false;
    buf_.append(b, n);
    return true;
  }
  bool bad_accept_;
  int lfd_ = -1, fd_ = -1;
  int port_ = 0;
  std::string buf_;
};

/* A client of a RawPeer, opening with the given options (the URL filled
 * in). The references let a test read as if it had made the three itself. */
struct RawClient {
  RawPeer peer;
  Events ev;
  WsClient ws;
  explicit RawClient(WsOptions o = WsOptions(), bool bad_accept = false) : peer(bad_accept), ws(ev.callbacks()) {
    o.url = peer.url();
    fail_unless(ws.open(o, nullptr, nullptr));
  }
  /* The peer answers the upgrade; waits until the client sees it open. */
  void upgrade() {
    peer.accept_upgrade();
    fail_unless(ev.wait([this] { return ev.opened; }));
  }
};
} // namespace

/* What a server may send: fragments are put together, binary messages and
 * messages over max_message are dropped (and counted), pings are answered
 * with the same payload, a close is answered with its code; every frame
 * the client writes is masked, with a mask that changes. */
GST_START_TEST(test_server_frames) {
  WsOptions o;
  o.max_message = 1000;
  RawClient t(o);
  t.upgrade();
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  WsClient &ws = t.ws;

  fail_unless(ws.send("one"));
  fail_unless(ws.send("two"));
  RawPeer::Frame a = peer.read_frame(), b = peer.read_frame();
  assert_str(a.payload, "one");
  assert_str(b.payload, "two");
  fail_unless(a.h.masked && b.h.masked && a.h.opcode == pa::ws::Opcode::Text);
  fail_if(memcmp(a.h.mask, b.h.mask, 4) == 0, "the same mask twice");

  peer.write_all(RawPeer::frame(0x01, "{\"a\":") + RawPeer::frame(0x00, "1,") + RawPeer::frame(0x80, "\"b\":2}"));
  peer.write_all(RawPeer::frame(0x82, "binary"));
  peer.write_all(RawPeer::frame(0x81, std::string(5000, 'x')));         /* over max_message */
  peer.write_all(RawPeer::frame(0x01, std::string(600, 'y')) + RawPeer::frame(0x80, std::string(600, 'y')));
  peer.write_all(RawPeer::frame(0x89, "hi"));                            /* ping */
  peer.write_all(RawPeer::frame(0x81, "after"));
  fail_unless(ev.wait([&] { return ev.messages.size() >= 2; }));
  RawPeer::Frame pong = peer.read_frame();
  fail_unless(pong.h.opcode == pa::ws::Opcode::Pong && pong.h.masked);
  assert_str(pong.payload, "hi");
  {
    std::lock_guard<std::mutex> g(ev.mu);
    fail_unless_equals_int(ev.messages.size(), 2);
    assert_str(ev.messages[0], "{\"a\":1,\"b\":2}");
    assert_str(ev.messages[1], "after");
  }
  WsStats st = ws.stats();
  fail_unless_equals_int(st.binary_dropped, 1);
  fail_unless_equals_int(st.oversized_dropped, 2);
  fail_unless_equals_int(st.messages_in, 2);

  peer.write_all(RawPeer::frame(0x88, std::string("\x03\xe9", 2) + "going")); /* close 1001 */
  fail_unless(ev.wait([&] { return ev.closed_code != -1; }));
  fail_unless_equals_int(ev.closed_code, 1001);
  RawPeer::Frame answer = peer.read_frame();
  fail_unless(answer.h.opcode == pa::ws::Opcode::Close && answer.h.masked);
  fail_unless(answer.payload.size() >= 2 && (static_cast<uint8_t>(answer.payload[0]) << 8 |
                                             static_cast<uint8_t>(answer.payload[1])) == 1001);
  fail_unless(ws.wait_closed(G_USEC_PER_SEC));
  fail_if(ws.send("late"));
}
GST_END_TEST;

/* A server that breaks the protocol (a masked frame) is closed with 1002
 * and the client reports it. */
GST_START_TEST(test_masked_server_frame) {
  RawClient t;
  t.upgrade();
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  const uint8_t mask[4] = {1, 2, 3, 4};
  peer.write_all(RawPeer::frame(0x81, "masked", mask));
  fail_unless(ev.wait([&] { return ev.closed_code != -1; }));
  fail_unless_equals_int(ev.closed_code, 1002);
  RawPeer::Frame close = peer.read_frame();
  fail_unless(close.h.opcode == pa::ws::Opcode::Close);
  fail_unless((static_cast<uint8_t>(close.payload[0]) << 8 | static_cast<uint8_t>(close.payload[1])) == 1002);
  fail_unless(ev.messages.empty());
}
GST_END_TEST;

/* An upgrade answered with the wrong Sec-WebSocket-Accept fails: no open,
 * nothing queued is sent. */
GST_START_TEST(test_wrong_accept) {
  RawClient t(WsOptions(), true);
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  WsClient &ws = t.ws;
  fail_unless(ws.send("queued"));
  peer.accept_upgrade();
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }));
  fail_if(ev.opened);
  fail_unless(ev.fail_why.find("Sec-WebSocket-Accept") != std::string::npos, "%s", ev.fail_why.c_str());
  fail_unless(ws.wait_closed(G_USEC_PER_SEC));
}
GST_END_TEST;

/* Frames split anywhere by the network (inside a header, inside the
 * extended lengths, inside a payload) are put back together: the 16-bit
 * and 64-bit length forms, a fragmented message, a ping in the middle. */
GST_START_TEST(test_frames_split_anywhere) {
  RawClient t;
  t.upgrade();
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  std::string m1(300, 'a'), m2(70000, 'b');
  for (size_t i = 0; i < m2.size(); i += 997)
    m2[i] = static_cast<char>('0' + i % 10);
  std::string wire = RawPeer::frame(0x81, m1) + RawPeer::frame(0x01, "frag-") + RawPeer::frame(0x89, "p") +
                     RawPeer::frame(0x00, "ment") + RawPeer::frame(0x80, "ed") + RawPeer::frame(0x81, m2);
  size_t pos = 0, step = 1;
  while (pos < wire.size()) {
    size_t n = std::min(step, wire.size() - pos);
    peer.write_all(wire.substr(pos, n));
    pos += n;
    if (pos < 4000)
      g_usleep(200); /* separate reads while inside the headers */
    step = step >= 1000 ? 1 : step * 3 + 1;
  }
  fail_unless(ev.wait([&] { return ev.messages.size() >= 3; }));
  RawPeer::Frame pong = peer.read_frame();
  fail_unless(pong.h.opcode == pa::ws::Opcode::Pong);
  assert_str(pong.payload, "p");
  std::lock_guard<std::mutex> g(ev.mu);
  fail_unless_equals_int(ev.messages.size(), 3);
  fail_unless(ev.messages[0] == m1);
  assert_str(ev.messages[1], "frag-mented");
  fail_unless(ev.messages[2] == m2);
}
GST_END_TEST;

/* Frames that come in the same read as the upgrade's answer (a server
 * that greets at once), the last of them cut short, and its rest in a later
 * read; then, with nothing held, whole frames and one cut short in the
 * same read, and its rest: all arrive, in order. */
GST_START_TEST(test_frames_with_the_upgrade) {
  RawClient t;
  std::string cut = RawPeer::frame(0x81, std::string(3000, 'z')), cut2 = RawPeer::frame(0x81, std::string(900, 'w'));
  t.peer.accept_upgrade(RawPeer::frame(0x81, "first") + RawPeer::frame(0x81, "second") + cut.substr(0, 1000));
  fail_unless(t.ev.wait([&] { return t.ev.messages.size() >= 2; }));
  g_usleep(20000); /* the rest in a read of its own */
  t.peer.write_all(cut.substr(1000) + RawPeer::frame(0x81, "after"));
  fail_unless(t.ev.wait([&] { return t.ev.messages.size() >= 4; }));
  t.peer.write_all(RawPeer::frame(0x81, "fifth") + cut2.substr(0, 100));
  fail_unless(t.ev.wait([&] { return t.ev.messages.size() >= 5; }));
  g_usleep(20000);
  t.peer.write_all(cut2.substr(100));
  fail_unless(t.ev.wait([&] { return t.ev.messages.size() >= 6; }));
  std::lock_guard<std::mutex> g(t.ev.mu);
  fail_unless(t.ev.opened);
  fail_unless_equals_int(t.ev.messages.size(), 6);
  assert_str(t.ev.messages[0], "first");
  assert_str(t.ev.messages[1], "second");
  fail_unless(t.ev.messages[2] == std::string(3000, 'z'));
  assert_str(t.ev.messages[3], "after");
  assert_str(t.ev.messages[4], "fifth");
  fail_unless(t.ev.messages[5] == std::string(900, 'w'));
}
GST_END_TEST;

/* A burst far larger than one turn of reading (four reads of 64 KiB) with
 * nothing after it, read slowly enough that the socket's receive queue
 * fills: every message still arrives. The loop watches edges, so what is
 * left after a turn is reported only because the socket is armed again. */
GST_START_TEST(test_burst_larger_than_a_turn) {
  RawClient t;
  t.upgrade();
  Events &ev = t.ev;
  const int n = 120;
  std::string wire;
  for (int i = 0; i < n; i++)
    wire += RawPeer::frame(0x81, std::string(60000, static_cast<char>('A' + i % 26)));
  std::thread writer([&] { t.peer.write_all(wire); }); /* 7 MB: blocks while the client reads */
  fail_unless(ev.wait([&] { return static_cast<int>(ev.messages.size()) >= n; }, 10000), "%zu of %d messages",
              ev.messages.size(), n);
  writer.join();
  std::lock_guard<std::mutex> g(ev.mu);
  for (int i = 0; i < n; i++)
    fail_unless(ev.messages[i] == std::string(60000, static_cast<char>('A' + i % 26)), "message %d", i);
}
GST_END_TEST;

/* A server that goes silent is pinged, then given up on (1006); the
 * timings come from WsOptions. */
GST_START_TEST(test_silent_server_pinged_then_dropped) {
  WsOptions o;
  o.ping_after_ms = 200;
  o.dead_after_ms = 800;
  RawClient t(o);
  t.upgrade();
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  WsClient &ws = t.ws;
  gint64 t0 = g_get_monotonic_time();
  RawPeer::Frame ping = peer.read_frame();
  fail_unless(ping.h.opcode == pa::ws::Opcode::Ping && ping.h.masked);
  fail_unless(ev.wait([&] { return ev.closed_code != -1; }, 3000));
  fail_unless_equals_int(ev.closed_code, 1006);
  gint64 waited = g_get_monotonic_time() - t0;
  fail_unless(waited >= 500 * 1000, "gave up after %" G_GINT64_FORMAT " us", waited);
  fail_unless(peer.wait_eof());
  fail_unless(ws.wait_closed(G_USEC_PER_SEC));
}
GST_END_TEST;

/* A server that accepts the connection but never answers the upgrade: the
 * connection fails after connect_timeout_ms and the socket is closed. */
GST_START_TEST(test_upgrade_never_answered) {
  WsOptions o;
  o.connect_timeout_ms = 300;
  RawClient t(o);
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  peer.accept_only();
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }, 3000));
  fail_unless_equals_int(ev.fail_status, 0);
  fail_unless(ev.fail_why.find("timed out") != std::string::npos, "%s", ev.fail_why.c_str());
  fail_if(ev.opened);
  fail_unless(peer.wait_eof());
}
GST_END_TEST;

/* close() while the upgrade is still unanswered drops the connection: the
 * failure is reported, wait_closed() returns, nothing queued is sent. */
GST_START_TEST(test_close_before_upgrade) {
  RawClient t;
  RawPeer &peer = t.peer;
  Events &ev = t.ev;
  WsClient &ws = t.ws;
  fail_unless(ws.send("queued"));
  peer.accept_only();
  ws.close(1000, "never mind");
  fail_unless(ws.wait_closed(2 * G_USEC_PER_SEC));
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }));
  fail_if(ev.opened);
  fail_unless(peer.wait_eof());
  fail_if(ws.send("late"));
}
GST_END_TEST;

/* Sends never block: what a server that does not read leaves unsent waits
 * (queued_bytes says how much) and goes out, whole and in order, once it
 * reads again. */
GST_START_TEST(test_backlog_drains_in_order) {
  RawClient t;
  t.upgrade();
  RawPeer &peer = t.peer;
  WsClient &ws = t.ws;
  const int n = 200;
  const std::string pad(64 * 1024, 'p');
  gint64 t0 = g_get_monotonic_time();
  for (int i = 0; i < n; i++)
    fail_unless(ws.send("{\"i\":" + std::to_string(i) + ",\"pad\":\"" + pad + "\"}"));
  gint64 took = g_get_monotonic_time() - t0;
  fail_unless(ws.stats().queued_bytes > 0, "12.8 MB all taken by the kernel at once?");
  fail_unless(ws.queued_bytes() > 0); /* the copy read without the lock */
  fail_unless(took < G_USEC_PER_SEC, "sending blocked for %" G_GINT64_FORMAT " us", took);
  for (int i = 0; i < n; i++) {
    RawPeer::Frame f = peer.read_frame();
    std::string head = "{\"i\":" + std::to_string(i) + ",";
    fail_unless(f.payload.compare(0, head.size(), head) == 0 && f.payload.size() == head.size() + pad.size() + 9,
                "frame %d: %.20s (%zu bytes)", i, f.payload.c_str(), f.payload.size());
  }
  for (int i = 0; i < 100 && ws.stats().queued_bytes; i++)
    g_usleep(10000);
  fail_unless_equals_int(ws.stats().queued_bytes, 0);
  fail_unless_equals_int(ws.queued_bytes(), 0);
}
GST_END_TEST;

static rtmock::Options tls_options() {
  const char *root = g_getenv("PA_SOURCE_ROOT");
  fail_unless(root != nullptr, "PA_SOURCE_ROOT is not set");
  rtmock::Options o;
  o.tls_cert_file = std::string(root) + "/tests/realtime/tls/test-cert.pem";
  o.tls_key_file = std::string(root) + "/tests/realtime/tls/test-key.pem";
  return o;
}

/* wss:// with the server's certificate trusted through ca_file */
GST_START_TEST(test_tls_verified) {
  rtmock::MockServer mock(tls_options());
  fail_unless(mock.start());
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url();
  o.ca_file = mock.options.tls_cert_file;
  o.headers = {{"Authorization", "Bearer sk-tls"}};
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.opened && !ev.messages.empty(); }), "fail: %d %s", ev.fail_status,
              ev.fail_why.c_str());
  fail_unless(ev.messages[0].find("session.created") != std::string::npos);
  assert_str(mock.upgrade_headers(1)["authorization"], "Bearer sk-tls");
  ws.send(R"({"type":"input_audio_buffer.clear"})");
  fail_unless(mock.wait_for("input_audio_buffer.clear", 5000));
}
GST_END_TEST;

/* an untrusted certificate is refused: nothing is sent */
GST_START_TEST(test_tls_untrusted_refused) {
  rtmock::MockServer mock(tls_options());
  fail_unless(mock.start());
  Events ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url(); /* system store only: the test certificate is not in it */
  o.headers = {{"Authorization", "Bearer sk-tls"}};
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.fail_status != -1; }));
  fail_if(ev.opened);
  fail_unless(mock.upgrade_headers(1).empty()); /* the key never left */
}
GST_END_TEST;


namespace {
/* A stand-in for a server media thread: one thread watching the hosted
 * loops' descriptors, as pa::SocketLoop's media threads do. */
class TestHost final : public pa::MediaThread {
public:
  TestHost() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.ptr = nullptr;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &e);
    thread_ = std::thread([this] { run(); });
    id_ = thread_.get_id();
  }
  ~TestHost() override {
    stop();
    ::close(epfd_);
    ::close(evfd_);
  }
  std::shared_ptr<pa::HostedLoop> host(const void *key,
                                       const std::function<std::shared_ptr<pa::HostedLoop>()> &make) override {
    std::lock_guard<std::mutex> g(mu_);
    if (stopped_)
      return nullptr;
    if (loop_)
      return key == key_ ? loop_ : nullptr;
    loop_ = make();
    key_ = key;
    makes++;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.ptr = loop_.get();
    epoll_ctl(epfd_, EPOLL_CTL_ADD, loop_->fd(), &e);
    return loop_;
  }
  /* the WebSocket client sets no timers */
  bool at(gint64, std::function<void()>) override { return false; }
  /* Stops the thread; the hosted loop hears it (host_gone) on this thread. */
  void stop() {
    std::shared_ptr<pa::HostedLoop> l;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stopped_)
        return;
      stopped_ = true;
      l = std::move(loop_);
    }
    uint64_t one = 1;
    (void)!write(evfd_, &one, sizeof one);
    thread_.join();
    if (l)
      l->host_gone();
  }
  std::thread::id id() const { return id_; }
  std::atomic<int> dispatches{0};
  int makes = 0;

private:
  void run() {
    epoll_event evs[8];
    for (;;) {
      int n = epoll_wait(epfd_, evs, 8, -1);
      for (int i = 0; i < n; i++) {
        if (!evs[i].data.ptr)
          return;
        static_cast<pa::HostedLoop *>(evs[i].data.ptr)->dispatch();
        dispatches++;
      }
    }
  }
  int epfd_ = -1, evfd_ = -1;
  std::thread thread_;
  std::thread::id id_;
  std::mutex mu_;
  bool stopped_ = false;
  std::shared_ptr<pa::HostedLoop> loop_;
  const void *key_ = nullptr;
};

/* Events, and the thread each callback ran on. */
struct ThreadEvents : Events {
  std::mutex tmu;
  std::vector<std::thread::id> threads;
  std::vector<std::string> names;
  void record() {
    char name[32] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    std::lock_guard<std::mutex> g(tmu);
    threads.push_back(std::this_thread::get_id());
    names.push_back(name);
  }
  bool all_named(const std::string &n) {
    std::lock_guard<std::mutex> g(tmu);
    for (const auto &x : names)
      if (x != n)
        return false;
    return !names.empty();
  }
  WsCallbacks callbacks() {
    WsCallbacks cb = Events::callbacks();
    auto wrap = [this](auto fn) {
      return [this, fn](auto &&...args) {
        record();
        fn(std::forward<decltype(args)>(args)...);
      };
    };
    cb.on_open = wrap(cb.on_open);
    cb.on_message = [this, m = cb.on_message](std::string_view t) {
      record();
      m(t);
    };
    cb.on_closed = wrap(cb.on_closed);
    cb.on_fail = wrap(cb.on_fail);
    return cb;
  }
  bool all_on(std::thread::id id) {
    std::lock_guard<std::mutex> g(tmu);
    for (auto t : threads)
      if (t != id)
        return false;
    return !threads.empty();
  }
};
} // namespace

/* WsOptions::host: the connection is read on the host's thread (every
 * callback runs there), two connections share one hosted loop, the timers
 * work there (a silent server is pinged, then dropped), and when the host
 * stops, what it hosted ends and a new connection uses the process-wide
 * thread instead. */
GST_START_TEST(test_hosted_on_a_media_thread) {
  auto host = std::make_shared<TestHost>();
  rtmock::MockServer mock;
  fail_unless(mock.start());
  ThreadEvents ev;
  WsClient ws(ev.callbacks());
  WsOptions o;
  o.url = mock.url();
  o.host = host;
  fail_unless(ws.open(o, nullptr, nullptr));
  fail_unless(ev.wait([&] { return ev.opened && !ev.messages.empty(); }));
  fail_unless(ws.send(R"({"type":"input_audio_buffer.clear"})"));
  fail_unless(mock.wait_for("input_audio_buffer.clear", 5000));
  mock.send(R"({"type":"x.y"})");
  fail_unless(ev.wait([&] { return ev.messages.size() >= 2; }));
  fail_unless(ev.all_on(host->id()), "a callback ran off the host's thread");
  fail_unless(host->dispatches > 0);

  /* a second connection: the same hosted loop; its timers run there */
  WsOptions o2;
  o2.ping_after_ms = 200;
  o2.dead_after_ms = 800;
  o2.host = host;
  RawPeer peer;
  ThreadEvents ev2;
  WsClient ws2(ev2.callbacks());
  o2.url = peer.url();
  fail_unless(ws2.open(o2, nullptr, nullptr));
  peer.accept_upgrade();
  fail_unless(ev2.wait([&] { return ev2.opened; }));
  RawPeer::Frame ping = peer.read_frame();
  fail_unless(ping.h.opcode == pa::ws::Opcode::Ping);
  fail_unless(ev2.wait([&] { return ev2.closed_code != -1; }, 3000));
  fail_unless_equals_int(ev2.closed_code, 1006);
  fail_unless(ws2.wait_closed(G_USEC_PER_SEC));
  fail_unless(ev2.all_on(host->id()));
  fail_unless_equals_int(host->makes, 1);

  /* the host stops: the open connection ends (wait_closed returns) */
  host->stop();
  fail_unless(ws.wait_closed(G_USEC_PER_SEC));
  fail_if(ws.is_open());

  /* a stopped host: the process-wide thread serves the next one */
  ThreadEvents ev3;
  WsClient ws3(ev3.callbacks());
  fail_unless(ws3.open(o, nullptr, nullptr));
  fail_unless(ev3.wait([&] { return ev3.opened; }));
  fail_unless(ev3.all_named("rt-websocket"));
  fail_unless_equals_int(host->makes, 1);
  ws3.close(1000, "bye");
  fail_unless(ws3.wait_closed(2 * G_USEC_PER_SEC));
}
GST_END_TEST;

static Suite *rt_websocket_suite(void) {
  Suite *s = suite_create("rt-websocket");
  TCase *tc = tcase_create("websocket");
  tcase_set_timeout(tc, 30);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_open_send_receive_close);
  tcase_add_test(tc, test_peer_close_code);
  tcase_add_test(tc, test_rejected_upgrade);
  tcase_add_test(tc, test_connection_refused_and_bad_url);
  tcase_add_test(tc, test_tls_verified);
  tcase_add_test(tc, test_tls_untrusted_refused);
  tcase_add_test(tc, test_server_frames);
  tcase_add_test(tc, test_masked_server_frame);
  tcase_add_test(tc, test_wrong_accept);
  tcase_add_test(tc, test_frames_split_anywhere);
  tcase_add_test(tc, test_frames_with_the_upgrade);
  tcase_add_test(tc, test_burst_larger_than_a_turn);
  tcase_add_test(tc, test_silent_server_pinged_then_dropped);
  tcase_add_test(tc, test_upgrade_never_answered);
  tcase_add_test(tc, test_close_before_upgrade);
  tcase_add_test(tc, test_backlog_drains_in_order);
  tcase_add_test(tc, test_hosted_on_a_media_thread);
  return s;
}

GST_CHECK_MAIN(rt_websocket)
