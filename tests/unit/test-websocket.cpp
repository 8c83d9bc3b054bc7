/* gst-phone-agent: unit tests of the Media Streams WebSocket (server side):
 * the frame codec, and pa::SocketLoop with a PaCall over a socket pair
 * (fragments, ping, bad frames, both close handshakes, refusal, and the
 * source pulling the socket on its own thread). */
#include "../common/pa-check.h"
#include "../common/pa-socket-call.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "pa-call.h"
#include "pa-websocket.h"
#include "twilio-protocol.h"

using namespace pa;

namespace {

/* A client frame: masked, as RFC 6455 requires of clients. */
std::string client_frame(ws::Opcode op, const std::string &payload, bool fin = true) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | static_cast<uint8_t>(op)));
  size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 0; i < 8; i++)
      f.push_back(static_cast<char>(uint64_t(n) >> (56 - 8 * i)));
  }
  const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(reinterpret_cast<const char *>(mask), 4);
  for (size_t i = 0; i < n; i++)
    f.push_back(static_cast<char>(payload[i] ^ mask[i & 3]));
  return f;
}

std::string close_payload(uint16_t code, const std::string &reason = "") {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  return p + reason;
}

struct ServerFrame {
  ws::Opcode op = ws::Opcode::Text;
  std::string payload;
  uint16_t code() const {
    return payload.size() >= 2 ? static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1])) : 0;
  }
};

/* One end of a socket pair plays Twilio; the other is adopted by the loop,
 * which runs on its own GMainContext, iterated by the test. */
struct Pair {
  GMainContext *ctx = g_main_context_new();
  std::unique_ptr<SocketLoop> loop;
  int client = -1;
  std::string inbox; /* bytes read from the server, not parsed yet */

  explicit Pair(PaCall *call, SocketLoop::Limits limits = SocketLoop::Limits(), uint16_t refuse = 0) {
    int sv[2];
    fail_unless(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    client = sv[0];
    GSocket *s = g_socket_new_from_fd(sv[1], nullptr);
    fail_unless(s != nullptr);
    g_main_context_push_thread_default(ctx);
    loop = std::make_unique<SocketLoop>(nullptr, limits);
    g_main_context_pop_thread_default(ctx);
    loop->adopt(s, "", call, refuse, "busy", nullptr);
    g_object_unref(s);
  }
  ~Pair() {
    g_main_context_push_thread_default(ctx);
    loop.reset();
    while (g_main_context_iteration(ctx, FALSE)) {
    }
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    if (client >= 0)
      close(client);
  }
  void send(const std::string &bytes) {
    fail_unless(::send(client, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  void text(const std::string &s) { send(client_frame(ws::Opcode::Text, s)); }
  /* Runs the loop's context until @done or @ms pass. */
  bool run_until(const std::function<bool()> &done, int ms = 2000) {
    gint64 end = g_get_monotonic_time() + ms * 1000;
    while (!done()) {
      if (g_get_monotonic_time() > end)
        return false;
      g_main_context_iteration(ctx, FALSE);
      g_usleep(1000);
    }
    return true;
  }
  /* The next frame from the server (unmasked), running the loop meanwhile;
   * false at EOF or after @ms. */
  bool next(ServerFrame &f, int ms = 2000) {
    gint64 end = g_get_monotonic_time() + ms * 1000;
    for (;;) {
      ws::FrameHeader h;
      std::string err;
      if (ws::decode_header(reinterpret_cast<const uint8_t *>(inbox.data()), inbox.size(), h, err) ==
              ws::Decode::Ok &&
          inbox.size() >= h.header_len + h.payload_len) {
        fail_if(h.masked, "server frames are not masked");
        f.op = h.opcode;
        f.payload = inbox.substr(h.header_len, h.payload_len);
        inbox.erase(0, h.header_len + h.payload_len);
        return true;
      }
      if (g_get_monotonic_time() > end)
        return false;
      g_main_context_iteration(ctx, FALSE);
      struct pollfd p = {client, POLLIN, 0};
      if (poll(&p, 1, 5) > 0) {
        char buf[4096];
        ssize_t n = recv(client, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
          return false;
        if (n > 0)
          inbox.append(buf, static_cast<size_t>(n));
      }
    }
  }
  /* TRUE once the server closed the connection (EOF), within @ms. */
  bool eof(int ms = 2000) {
    ServerFrame f;
    gint64 end = g_get_monotonic_time() + ms * 1000;
    while (g_get_monotonic_time() < end) {
      if (!next(f, 50)) {
        char c;
        struct pollfd p = {client, POLLIN, 0};
        if (poll(&p, 1, 0) > 0 && recv(client, &c, 1, MSG_DONTWAIT) == 0)
          return true;
      }
    }
    return false;
  }
};

void start_call(Pair &pair, PaCall *call) {
  twilio::StartInfo si;
  si.stream_sid = "MZ1";
  si.call_sid = "CA1";
  si.account_sid = "AC1";
  si.tracks = {"inbound"};
  pair.text(twilio::build_connected());
  pair.text(twilio::build_start(1, si));
  fail_unless(pair.run_until([&] { return pa_call_is_started(call); }), "no start");
}

std::string media(int chunk, uint8_t fill = 0x55) {
  std::vector<uint8_t> frame(160, fill);
  return twilio::build_inbound_media(chunk + 2, "MZ1", chunk, chunk * 20, frame.data(), frame.size());
}

guint64 stat(PaCall *call, const char *name) { return pa_check_stat(pa_call_get_stats(call), name); }

} // namespace

GST_START_TEST(test_codec) {
  for (size_t n : {size_t(0), size_t(125), size_t(126), size_t(65535), size_t(65536), size_t(70000)}) {
    std::string out;
    ws::append_frame(out, ws::Opcode::Text, std::string(n, 'x'));
    ws::FrameHeader h;
    std::string err;
    const auto *d = reinterpret_cast<const uint8_t *>(out.data());
    fail_unless(ws::decode_header(d, out.size(), h, err) == ws::Decode::Ok, "%zu: %s", n, err.c_str());
    fail_unless(h.fin && h.opcode == ws::Opcode::Text && !h.masked);
    fail_unless_equals_uint64(h.payload_len, n);
    fail_unless_equals_uint64(h.header_len + h.payload_len, out.size());
    /* every prefix of the header is incomplete, not an error */
    for (size_t k = 0; k < h.header_len; k++)
      fail_unless(ws::decode_header(d, k, h, err) == ws::Decode::Incomplete, "%zu: prefix %zu", n, k);
  }
  /* the library's masked frames are what a client sends */
  const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  std::vector<size_t> lengths = {300, 70000};
  for (size_t n = 0; n <= 40; n++)
    lengths.push_back(n); /* every tail of the 16- and 8-byte steps */
  for (size_t n : lengths) {
    std::string payload(n, 'q');
    for (size_t i = 0; i < n; i++)
      payload[i] = static_cast<char>(i * 31);
    std::string lib;
    ws::append_frame(lib, ws::Opcode::Binary, payload, key);
    assert_str(lib, client_frame(ws::Opcode::Binary, payload));
  }
  std::string masked = client_frame(ws::Opcode::Binary, "hello world");
  ws::FrameHeader h;
  std::string err;
  auto *d = reinterpret_cast<uint8_t *>(masked.data());
  fail_unless(ws::decode_header(d, masked.size(), h, err) == ws::Decode::Ok);
  fail_unless(h.masked && h.opcode == ws::Opcode::Binary);
  ws::unmask(d + h.header_len, h.payload_len, h.mask);
  assert_str(masked.substr(h.header_len), "hello world");

  const uint8_t reserved[] = {0xC1, 0x80, 0, 0, 0, 0};   /* RSV1: no extension was negotiated */
  const uint8_t opcode3[] = {0x83, 0x80, 0, 0, 0, 0};    /* a reserved opcode */
  const uint8_t frag_ping[] = {0x09, 0x80, 0, 0, 0, 0};  /* a control frame without FIN */
  const uint8_t long_ping[] = {0x89, 0xFE, 0, 200};      /* a control frame over 125 bytes */
  for (const uint8_t *bad : {reserved, opcode3, frag_ping, long_ping})
    fail_unless(ws::decode_header(bad, 4, h, err) == ws::Decode::Error && !err.empty());
}
GST_END_TEST;

GST_START_TEST(test_messages_in_and_out) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  /* a message in three fragments, with a ping between them */
  std::string m = media(1, 0x11);
  pair.send(client_frame(ws::Opcode::Text, m.substr(0, 10), false));
  pair.send(client_frame(ws::Opcode::Ping, "are you there"));
  pair.send(client_frame(ws::Opcode::Continuation, m.substr(10, 50), false));
  pair.send(client_frame(ws::Opcode::Continuation, m.substr(60), true));
  ServerFrame f;
  fail_unless(pair.next(f));
  fail_unless(f.op == ws::Opcode::Pong);
  assert_str(f.payload, "are you there");
  fail_unless(pair.run_until([&] { return stat(call, "media-frames-received") == 1; }));
  InboundItem item;
  fail_unless(pa_call_pop_inbound(call, item, 0)); /* start */
  fail_unless(pa_call_pop_inbound(call, item, 0));
  fail_unless(item.kind == InboundItem::Kind::Media);
  fail_unless_equals_int(item.payload.size(), 160);
  fail_unless_equals_int(item.payload[0], 0x11);
  /* a binary frame is counted and ignored */
  pair.send(client_frame(ws::Opcode::Binary, std::string(160, '\xff')));
  fail_unless(pair.run_until([&] { return stat(call, "binary-frames") == 1; }));

  /* sends from another thread reach the peer whole and in order; a mark
   * that follows media goes with it */
  std::thread sender([call] {
    uint8_t out[160];
    memset(out, 0x22, sizeof out);
    for (int i = 0; i < 5; i++)
      pa_call_send_media_and_mark(call, out, sizeof out);
  });
  sender.join();
  for (int i = 0; i < 10; i++) {
    fail_unless(pair.next(f), "frame %d missing", i);
    fail_unless(f.op == ws::Opcode::Text);
    twilio::OutboundMessage o;
    std::string err;
    fail_unless(twilio::parse_outbound(f.payload, o, err) == twilio::ParseResult::Ok, "%s", err.c_str());
    fail_unless(o.event == (i % 2 ? twilio::Event::Mark : twilio::Event::Media), "frame %d: %s", i,
                f.payload.c_str());
  }
  g_object_unref(call);
}
GST_END_TEST;

/* Twilio closes: the close is answered with the same code, the connection
 * ends, and the call ends as closed by the peer. */
GST_START_TEST(test_peer_close_handshake) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  pair.send(client_frame(ws::Opcode::Close, close_payload(1000, "bye")));
  ServerFrame f;
  fail_unless(pair.next(f));
  fail_unless(f.op == ws::Opcode::Close);
  fail_unless_equals_int(f.code(), 1000);
  fail_unless(pair.eof());
  fail_unless(pair.run_until([&] { return pa_call_is_ended(call); }));
  assert_str(pa_call_get_end_reason(call), "peer-closed");
  fail_unless(pair.run_until([&] { return pair.loop->size() == 0; }), "the socket was not reaped");
  g_object_unref(call);
}
GST_END_TEST;

/* We close: the close frame goes out, the connection ends when the peer
 * answers, or after the close timeout when it does not. */
GST_START_TEST(test_our_close_and_timeout) {
  SocketLoop::Limits limits;
  limits.close_timeout_ms = 300;
  {
    PaCall *call = pa_call_new(CallConfig());
    Pair pair(call, limits);
    start_call(pair, call);
    pa_call_close(call, 1000, "done");
    ServerFrame f;
    fail_unless(pair.next(f));
    fail_unless(f.op == ws::Opcode::Close && f.code() == 1000);
    assert_str(f.payload.substr(2), "done");
    pair.send(client_frame(ws::Opcode::Close, close_payload(1000)));
    fail_unless(pair.eof(1000), "no end after the peer answered");
    fail_unless(pa_call_is_ended(call));
    assert_str(pa_call_get_end_reason(call), "closed");
    g_object_unref(call);
  }
  {
    PaCall *call = pa_call_new(CallConfig());
    Pair pair(call, limits);
    start_call(pair, call);
    gint64 t0 = g_get_monotonic_time();
    pa_call_close(call, 1011, "pipeline error");
    ServerFrame f;
    fail_unless(pair.next(f));
    fail_unless_equals_int(f.code(), 1011);
    /* the peer never answers */
    fail_unless(pair.eof(3000), "the connection was not dropped");
    gint64 took_ms = (g_get_monotonic_time() - t0) / 1000;
    fail_unless(took_ms >= 300 && took_ms < 2500, "dropped after %" G_GINT64_FORMAT " ms", took_ms);
    g_object_unref(call);
  }
}
GST_END_TEST;

/* Bad frames end the connection with the code RFC 6455 gives them. */
GST_START_TEST(test_protocol_errors) {
  struct Case {
    std::string bytes;
    uint16_t code;
  };
  std::string unmasked = "\x81\x02hi";
  std::string reserved = client_frame(ws::Opcode::Text, "hi");
  reserved[0] = static_cast<char>(reserved[0] | 0x40);
  std::string stray = client_frame(ws::Opcode::Continuation, "hi");
  SocketLoop::Limits limits;
  limits.max_message = 4096;
  for (const Case &c : {Case{unmasked, 1002}, Case{reserved, 1002}, Case{stray, 1002},
                        Case{client_frame(ws::Opcode::Text, std::string(5000, 'x')), 1009}}) {
    PaCall *call = pa_call_new(CallConfig());
    Pair pair(call, limits);
    start_call(pair, call);
    pair.send(c.bytes);
    ServerFrame f;
    fail_unless(pair.next(f));
    fail_unless(f.op == ws::Opcode::Close);
    fail_unless_equals_int(f.code(), c.code);
    fail_unless(pair.eof());
    fail_unless(pair.run_until([&] { return pa_call_is_ended(call); }));
    g_object_unref(call);
  }
}
GST_END_TEST;

/* A peer that vanishes: the call ends as connection-lost. */
GST_START_TEST(test_dropped_connection) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  close(pair.client);
  pair.client = -1;
  fail_unless(pair.run_until([&] { return pa_call_is_ended(call); }));
  assert_str(pa_call_get_end_reason(call), "connection-lost");
  g_object_unref(call);
}
GST_END_TEST;

GST_START_TEST(test_refused_stream) {
  Pair pair(nullptr, SocketLoop::Limits(), 1013);
  ServerFrame f;
  fail_unless(pair.next(f));
  fail_unless(f.op == ws::Opcode::Close);
  fail_unless_equals_int(f.code(), 1013);
  assert_str(f.payload.substr(2), "busy");
  pair.send(client_frame(ws::Opcode::Close, close_payload(1013)));
  fail_unless(pair.eof());
}
GST_END_TEST;

/* The source's thread reads the socket itself while it waits for input
 * (the loop's context is not iterated at all), and once it stops waiting
 * (flushing), the loop reads again. */
GST_START_TEST(test_source_pulls_the_socket) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  InboundItem item;
  fail_unless(pa_call_pop_inbound(call, item, 0));
  fail_unless(item.kind == InboundItem::Kind::Start);

  std::atomic<int> got{0};
  std::atomic<bool> stop{false};
  std::thread source([&] {
    InboundItem it;
    while (!stop) {
      if (pa_call_pop_inbound(call, it, -1) && it.kind == InboundItem::Kind::Media)
        got++;
    }
  });
  for (int i = 0; i < 20; i++)
    pair.text(media(i));
  gint64 end = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
  while (got < 20 && g_get_monotonic_time() < end)
    g_usleep(2000);
  fail_unless_equals_int(got.load(), 20);
  /* the source stops waiting: it lets go of the socket */
  stop = true;
  pa_call_set_source_flushing(call, TRUE);
  source.join();
  pa_call_set_source_flushing(call, FALSE);
  pair.text(media(20));
  fail_unless(pair.run_until([&] { return stat(call, "media-frames-received") == 21; }), "the loop does not read again");
  fail_unless(pa_call_pop_inbound(call, item, 0));
  fail_unless_equals_int(item.timestamp_ms, 400);
  g_object_unref(call);
}
GST_END_TEST;

/* Frames split at every byte boundary across reads still arrive whole. */
GST_START_TEST(test_split_reads) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  std::string bytes;
  for (int i = 0; i < 3; i++)
    bytes += client_frame(ws::Opcode::Text, media(i, static_cast<uint8_t>(0x30 + i)));
  for (size_t k = 0; k < bytes.size(); k++) {
    pair.send(bytes.substr(k, 1));
    g_main_context_iteration(pair.ctx, FALSE);
  }
  fail_unless(pair.run_until([&] { return stat(call, "media-frames-received") == 3; }));
  fail_unless_equals_int(stat(call, "malformed-json"), 0);
  InboundItem item;
  fail_unless(pa_call_pop_inbound(call, item, 0)); /* start */
  for (int i = 0; i < 3; i++) {
    fail_unless(pa_call_pop_inbound(call, item, 0));
    fail_unless_equals_int(item.payload[0], 0x30 + i);
  }
  g_object_unref(call);
}
GST_END_TEST;

/* A burst larger than the loop reads at one turn (four reads of 64 KiB)
 * with nothing after it: every message still arrives. The loop watches
 * edges, so the bytes left after its turn are reported only because it arms
 * the socket again; no new bytes come to report them. */
GST_START_TEST(test_burst_larger_than_a_turn) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  int big = 8 * 1024 * 1024; /* the socket pair holds what its sender's buffer allows */
  if (setsockopt(pair.client, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
    setsockopt(pair.client, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  const int n = 12;
  std::string burst;
  for (int i = 0; i < n; i++) {
    /* 5 s of audio, 53 kB of base64: under max-frame-size */
    std::vector<uint8_t> audio(40000, static_cast<uint8_t>(0x40 + i));
    burst += client_frame(ws::Opcode::Text,
                          twilio::build_inbound_media(i + 3, "MZ1", i + 1, i * 5000, audio.data(), audio.size()));
  }
  fail_unless(burst.size() > 2 * 4 * 65536, "%zu bytes", burst.size());
  ssize_t sent = ::send(pair.client, burst.data(), burst.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  fail_unless(sent == static_cast<ssize_t>(burst.size()), "the socket took %zd of %zu bytes at once", sent,
              burst.size());
  fail_unless(pair.run_until([&] { return stat(call, "media-frames-received") == n; }),
              "%" G_GUINT64_FORMAT " of %d messages arrived", stat(call, "media-frames-received"), n);
  InboundItem item;
  fail_unless(pa_call_pop_inbound(call, item, 0)); /* start */
  for (int i = 0; i < n; i++) {
    fail_unless(pa_call_pop_inbound(call, item, 0));
    fail_unless_equals_int(item.payload.size(), 40000);
    fail_unless_equals_int(item.payload[39999], 0x40 + i);
  }
  g_object_unref(call);
}
GST_END_TEST;

/* A peer that stops reading: sends never block the sender, what the kernel
 * does not take waits, and once the peer reads again everything arrives
 * whole and in order. */
GST_START_TEST(test_backpressure_then_resume) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  int small = 4096;
  setsockopt(pair.client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  start_call(pair, call);
  uint8_t frame[160];
  const int n = 2000; /* ~600 kB of JSON: far more than the socket buffers hold */
  gint64 t0 = g_get_monotonic_time();
  for (int i = 0; i < n; i++) {
    memset(frame, i & 0xff, sizeof frame);
    fail_unless(pa_call_send_media(call, frame, sizeof frame));
  }
  /* nothing blocked: 2000 sends took well under a second */
  fail_unless(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
  ServerFrame f;
  for (int i = 0; i < n; i++) {
    fail_unless(pair.next(f, 5000), "frame %d missing", i);
    twilio::OutboundMessage o;
    std::string err;
    fail_unless(twilio::parse_outbound(f.payload, o, err) == twilio::ParseResult::Ok, "%d: %s", i, err.c_str());
    fail_unless(o.event == twilio::Event::Media && o.payload.size() == 160);
    fail_unless_equals_int(o.payload[0], i & 0xff);
  }
  g_object_unref(call);
}
GST_END_TEST;

/* The source pulling, stopping (flush) and pulling again while frames keep
 * coming, the loop reading in between: every frame arrives once, in order,
 * and nothing deadlocks. (The queue holds them all: Twilio here sends far
 * faster than real time, and a source that falls behind by more than
 * max-inbound-queue loses the oldest, as test-call checks; on a loaded
 * machine the puller here can.) */
GST_START_TEST(test_pull_and_flush_churn) {
  const int total = 3000;
  CallConfig cfg;
  cfg.max_inbound_queue = total + 10;
  PaCall *call = pa_call_new(cfg);
  Pair pair(call);
  start_call(pair, call);
  InboundItem item;
  fail_unless(pa_call_pop_inbound(call, item, 0)); /* start */
  std::atomic<bool> done{false};
  std::thread loop([&] {
    while (!done) {
      g_main_context_iteration(pair.ctx, FALSE);
      g_usleep(200);
    }
  });
  std::thread twilio([&] {
    for (int i = 0; i < total; i++) {
      pair.text(media(i));
      if (i % 50 == 0)
        g_usleep(1000);
    }
  });
  std::thread flusher([&] {
    for (int i = 0; i < 200 && !done; i++) {
      g_usleep(2000);
      pa_call_set_source_flushing(call, TRUE);
      g_usleep(300);
      pa_call_set_source_flushing(call, FALSE);
    }
  });
  int next = 0;
  gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
  while (next < total && g_get_monotonic_time() < end) {
    if (!pa_call_pop_inbound(call, item, 50000))
      continue; /* flushing or a timeout: try again */
    fail_unless(item.kind == InboundItem::Kind::Media);
    fail_unless_equals_int(item.timestamp_ms, next * 20);
    next++;
  }
  done = true;
  twilio.join();
  flusher.join();
  loop.join();
  fail_unless_equals_int(next, total);
  fail_unless_equals_int(stat(call, "inbound-dropped"), 0);
  g_object_unref(call);
}
GST_END_TEST;

/* A peer that never reads again: past max-backlog the connection is
 * dropped and the call ends, so memory stays bounded. */
GST_START_TEST(test_backlog_limit) {
  SocketLoop::Limits limits;
  limits.max_backlog = 256 * 1024;
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call, limits);
  int small = 4096;
  setsockopt(pair.client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  start_call(pair, call);
  uint8_t frame[160];
  memset(frame, 0x11, sizeof frame);
  for (int i = 0; i < 10000 && !pa_call_is_ended(call); i++) {
    pa_call_send_media(call, frame, sizeof frame);
    if (i % 100 == 0)
      g_main_context_iteration(pair.ctx, FALSE);
  }
  fail_unless(pair.run_until([&] { return pa_call_is_ended(call); }, 3000), "the call did not end");
  assert_str(pa_call_get_end_reason(call), "connection-lost");
  g_object_unref(call);
}
GST_END_TEST;


/* Corked, frames wait in the socket's buffer; uncorked, they leave together,
 * whole and in order */
GST_START_TEST(test_corked_sends_leave_together) {
  PaCall *call = pa_call_new(CallConfig());
  Pair pair(call);
  start_call(pair, call);
  uint8_t out[160];
  memset(out, 0x33, sizeof out);
  pa_call_set_corked(call, TRUE);
  for (int i = 0; i < 5; i++)
    pa_call_send_media_and_mark(call, out, sizeof out);
  struct pollfd pfd = {pair.client, POLLIN, 0};
  fail_unless_equals_int(poll(&pfd, 1, 50), 0); /* nothing written yet */
  pa_call_set_corked(call, FALSE);
  ServerFrame f;
  for (int i = 0; i < 10; i++) {
    fail_unless(pair.next(f), "frame %d missing", i);
    twilio::OutboundMessage o;
    std::string err;
    fail_unless(twilio::parse_outbound(f.payload, o, err) == twilio::ParseResult::Ok, "%s", err.c_str());
    fail_unless(o.event == (i % 2 ? twilio::Event::Mark : twilio::Event::Media), "frame %d", i);
  }
  g_object_unref(call);
}
GST_END_TEST;

namespace {
/* A loop for a media thread to host: an eventfd that dispatch() drains. */
struct CountingLoop final : HostedLoop {
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<int> dispatched{0}, off_thread{0}, gone{0};
  std::atomic<pthread_t> thread{};
  ~CountingLoop() override { close(efd); }
  int fd() const override { return efd; }
  void dispatch() override {
    uint64_t v;
    if (read(efd, &v, sizeof v) != sizeof v)
      return;
    if (!on_media_thread())
      off_thread++;
    thread = pthread_self();
    dispatched++;
  }
  void host_gone() override { gone++; }
};
} // namespace

/* A call's media thread hosts another loop (the model's socket, under the
 * server): pa_call_get_media_thread() finds the thread reading the call's
 * socket, one loop per key is made once, dispatch() runs on that thread
 * (the one that delivers the call's frames) when the loop's descriptor is
 * readable, and when the SocketLoop goes away the loop hears it once and
 * the thread hosts nothing more. Calls without a media thread get none. */
GST_START_TEST(test_media_thread_hosts_a_loop) {
  PaCall *plain = pa_call_new(CallConfig());
  fail_if(pa_call_get_media_thread(plain));
  pa_call_set_test_transport(plain, [](const std::string &) {}, [](gushort, const std::string &) {});
  fail_if(pa_call_get_media_thread(plain));
  g_object_unref(plain);

  SocketLoop::Limits limits;
  limits.threads = 2;
  auto loop = std::make_unique<SocketLoop>(nullptr, limits);
  int sv[2];
  fail_unless(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  PaCall *call = pa_call_new(CallConfig());
  std::atomic<pthread_t> frame_thread{};
  std::atomic<int> frames{0};
  pa_call_set_inbound_notify(call, [&] {
    frame_thread = pthread_self();
    frames++;
  });
  GSocket *gs = g_socket_new_from_fd(sv[1], nullptr);
  loop->adopt(gs, "", call, 0, "", [] {});
  g_object_unref(gs);
  for (int i = 0; i < 400 && !pa_call_has_transport(call); i++)
    g_usleep(5000); /* adopted on the media thread */
  std::shared_ptr<MediaThread> mt = pa_call_get_media_thread(call);
  fail_unless(mt != nullptr);

  static const char key = 0, other_key = 0;
  int makes = 0;
  auto counting = std::make_shared<CountingLoop>();
  std::shared_ptr<HostedLoop> h = mt->host(&key, [&]() -> std::shared_ptr<HostedLoop> {
    makes++;
    return counting;
  });
  fail_unless(h == counting);
  fail_unless(mt->host(&key, [&]() -> std::shared_ptr<HostedLoop> {
    makes++;
    return nullptr;
  }) == counting);
  fail_unless_equals_int(makes, 1);
  fail_if(mt->host(&other_key, [] { return std::shared_ptr<HostedLoop>(); })); /* make gave nothing */

  twilio::StartInfo si;
  si.stream_sid = "MZ1";
  si.call_sid = "CA1";
  std::string start = client_frame(ws::Opcode::Text, twilio::build_start(1, si));
  fail_unless(::send(sv[0], start.data(), start.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(start.size()));
  for (int k = 1; k <= 3; k++) {
    uint64_t one = 1;
    fail_unless(write(counting->efd, &one, sizeof one) == sizeof one);
    for (int i = 0; i < 400 && counting->dispatched.load() < k; i++)
      g_usleep(5000);
    fail_unless_equals_int(counting->dispatched.load(), k);
  }
  for (int i = 0; i < 400 && frames.load() < 1; i++)
    g_usleep(5000);
  fail_unless(frames.load() >= 1);
  fail_unless_equals_int(counting->off_thread.load(), 0);
  fail_unless(pthread_equal(counting->thread.load(), frame_thread.load()), "hosted on another thread than the call's");

  /* timers: on that thread, in due order, not before they are due, and
   * an earlier one set from another thread wakes the sleeping thread */
  std::mutex order_lock;
  std::vector<int> order;
  std::atomic<int> early{0}, off_thread{0};
  gint64 t0 = g_get_monotonic_time();
  auto timer = [&](int id, gint64 when) {
    return mt->at(when, [&, id, when] {
      if (g_get_monotonic_time() < when)
        early++;
      if (!pthread_equal(pthread_self(), frame_thread.load()))
        off_thread++;
      std::lock_guard<std::mutex> g(order_lock);
      order.push_back(id);
    });
  };
  fail_unless(timer(3, t0 + 300000));
  fail_unless(timer(2, t0 + 150000));
  fail_unless(timer(1, t0 + 30000));
  for (int i = 0; i < 400; i++) {
    {
      std::lock_guard<std::mutex> g(order_lock);
      if (order.size() == 3)
        break;
      /* the 30 ms one must not wait for the thread's half-second sweep */
      fail_if(g_get_monotonic_time() - t0 > 250000 && order.empty(), "an early timer waited for a later one");
    }
    g_usleep(2000);
  }
  {
    std::lock_guard<std::mutex> g(order_lock);
    fail_unless(order == std::vector<int>({1, 2, 3}), "timers out of order or missing (%zu ran)", order.size());
  }
  fail_unless_equals_int(early.load(), 0);
  fail_unless_equals_int(off_thread.load(), 0);
  std::atomic<int> never{0};
  fail_unless(mt->at(g_get_monotonic_time() + 60 * G_USEC_PER_SEC, [&never] { never++; }));

  loop.reset();
  fail_unless_equals_int(counting->gone.load(), 1);
  fail_if(mt->host(&key, [&]() -> std::shared_ptr<HostedLoop> { return counting; }));
  fail_if(mt->at(g_get_monotonic_time(), [&never] { never++; }), "a stopped thread took a timer");
  fail_unless_equals_int(never.load(), 0);
  pa_call_set_inbound_notify(call, nullptr);
  g_object_unref(call);
  close(sv[0]);
}
GST_END_TEST;

/* A loop on media threads of its own: sockets spread over the threads, every
 * frame reaches its call, the call's inbound notify runs on a media thread,
 * the owner's on_closed runs on the owner's context, and the loop going away
 * closes what is still open (1001). */
GST_START_TEST(test_media_threads) {
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  SocketLoop::Limits limits;
  limits.threads = 2;
  limits.wait_us = 5000;
  auto loop = std::make_unique<SocketLoop>(nullptr, limits);
  g_main_context_pop_thread_default(ctx);
  fail_if(on_media_thread());

  const int n = 4;
  struct Client {
    int fd = -1;
    PaCall *call = nullptr;
    std::atomic<int> notified{0}, off_thread{0};
    bool closed = false;
  };
  std::vector<std::unique_ptr<Client>> clients;
  GThread *owner = g_thread_self();
  for (int i = 0; i < n; i++) {
    auto c = std::make_unique<Client>();
    int sv[2];
    fail_unless(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    c->fd = sv[0];
    c->call = pa_call_new(CallConfig());
    Client *cp = c.get();
    pa_call_set_inbound_notify(c->call, [cp] {
      cp->notified++;
      if (!on_media_thread())
        cp->off_thread++;
    });
    GSocket *gs = g_socket_new_from_fd(sv[1], nullptr);
    loop->adopt(gs, "", c->call, 0, "", [cp, owner] {
      fail_unless(g_thread_self() == owner, "on_closed ran off the owner's context");
      cp->closed = true;
    });
    g_object_unref(gs);
    clients.push_back(std::move(c));
  }
  auto send_all = [&](int fd, const std::string &bytes) {
    fail_unless(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  };
  twilio::StartInfo si;
  si.stream_sid = "MZ1";
  si.call_sid = "CA1";
  si.account_sid = "AC1";
  for (auto &c : clients) {
    send_all(c->fd, client_frame(ws::Opcode::Text, twilio::build_start(1, si)));
    for (int k = 1; k <= 20; k++)
      send_all(c->fd, client_frame(ws::Opcode::Text, media(k, static_cast<uint8_t>(k))));
  }
  for (auto &c : clients) {
    for (int i = 0; i < 400 && stat(c->call, "media-frames-received") < 20; i++)
      g_usleep(5000);
    fail_unless_equals_uint64(stat(c->call, "media-frames-received"), 20);
    for (int i = 0; i < 400 && c->notified.load() < 21; i++)
      g_usleep(5000);
    fail_unless_equals_int(c->notified.load(), 21); /* start and 20 media */
    fail_unless_equals_int(c->off_thread.load(), 0);
    /* everything queued, in order */
    InboundItem item;
    fail_unless(pa_call_pop_inbound(c->call, item, 0) && item.kind == InboundItem::Kind::Start);
    for (int k = 1; k <= 20; k++) {
      fail_unless(pa_call_pop_inbound(c->call, item, 0) && item.kind == InboundItem::Kind::Media);
      fail_unless_equals_int(item.payload[0], k);
    }
  }
  fail_unless_equals_int(loop->size(), n);
  SocketLoop::Stats st = loop->stats();
  fail_unless(st.wakeups > 0 && st.ready >= static_cast<guint64>(n));

  /* one peer closes: the call ends, on_closed runs on the owner's context */
  send_all(clients[0]->fd, client_frame(ws::Opcode::Close, std::string("\x03\xe8", 2)));
  gint64 end = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
  while (!clients[0]->closed && g_get_monotonic_time() < end)
    g_main_context_iteration(ctx, FALSE), g_usleep(1000);
  fail_unless(clients[0]->closed);
  fail_unless(pa_call_is_ended(clients[0]->call));

  /* another peer closes and its socket is reaped on the media thread, but
   * the owner's context does not run before the loop goes away: that
   * on_closed is dropped (its owner is gone too), not run late */
  send_all(clients[1]->fd, client_frame(ws::Opcode::Close, std::string("\x03\xe8", 2)));
  for (int i = 0; i < 400 && loop->size() > static_cast<size_t>(n - 2); i++)
    g_usleep(5000);
  fail_unless_equals_int(loop->size(), n - 2);

  /* the loop goes away: the others get 1001 and their calls end */
  g_main_context_push_thread_default(ctx);
  loop.reset();
  while (g_main_context_iteration(ctx, FALSE)) {
  }
  g_main_context_pop_thread_default(ctx);
  fail_unless(!clients[1]->closed, "on_closed ran after its loop was destroyed");
  fail_unless(pa_call_is_ended(clients[1]->call));
  for (int i = 2; i < n; i++) {
    fail_unless(clients[i]->closed);
    fail_unless(pa_call_is_ended(clients[i]->call));
    std::string got;
    char buf[4096];
    ssize_t r;
    while ((r = recv(clients[i]->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
      got.append(buf, static_cast<size_t>(r));
    fail_unless(got.find("\x03\xe9") != std::string::npos, "no 1001 close frame for client %d", i);
  }
  for (auto &c : clients) {
    pa_call_set_inbound_notify(c->call, nullptr);
    g_object_unref(c->call);
    close(c->fd);
  }
  g_main_context_unref(ctx);
}
GST_END_TEST;

/* Which media thread a new socket goes to (Limits::fill_permille): spread
 * evenly with no limit; packed on the first thread while it is under the
 * limit, by 1/100 of a CPU per socket before any load was measured; and
 * away from a thread whose measured CPU time is over the limit. */
namespace {
struct BurningLoop final : HostedLoop {
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::atomic<int> burned{0};
  ~BurningLoop() override { close(efd); }
  int fd() const override { return efd; }
  void dispatch() override {
    uint64_t v;
    if (read(efd, &v, sizeof v) != sizeof v)
      return;
    /* a second of this thread's CPU time, however long that takes */
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000000L);
    burned++;
  }
  void host_gone() override {}
};

struct FillCase {
  std::unique_ptr<SocketLoop> loop;
  std::vector<PaCall *> calls;
  std::vector<int> fds;
  explicit FillCase(guint fill) {
    SocketLoop::Limits limits;
    limits.threads = 2;
    limits.fill_permille = fill;
    loop = std::make_unique<SocketLoop>(nullptr, limits);
  }
  PaCall *add() {
    int peer = -1;
    PaCall *call = pa_check_socket_call(*loop, &peer);
    calls.push_back(call);
    fds.push_back(peer);
    return call;
  }
  std::vector<size_t> sockets() const { return loop->stats().sockets; }
  ~FillCase() {
    loop.reset();
    for (PaCall *c : calls)
      g_object_unref(c);
    for (int fd : fds)
      close(fd);
  }
};
} // namespace

GST_START_TEST(test_media_threads_fill) {
  {
    FillCase spread(0);
    for (int i = 0; i < 4; i++)
      spread.add();
    fail_unless(spread.sockets() == std::vector<size_t>({2, 2}), "no limit: not spread evenly");
  }
  {
    FillCase packed(500);
    for (int i = 0; i < 4; i++)
      packed.add();
    fail_unless(packed.sockets() == std::vector<size_t>({4, 0}), "under the limit: not packed on the first thread");
  }
  {
    FillCase small(15); /* 1.5 % of a CPU: two sockets at 1 % each before any measurement */
    small.add();
    small.add();
    fail_unless(small.sockets() == std::vector<size_t>({2, 0}));
    small.add();
    small.add();
    fail_unless(small.sockets() == std::vector<size_t>({2, 2}), "over the limit: the next thread was not used");
  }
  {
    FillCase loaded(200);
    PaCall *call0 = loaded.add();
    for (int i = 0; i < 400 && !pa_call_has_transport(call0); i++)
      g_usleep(5000);
    std::shared_ptr<MediaThread> mt = pa_call_get_media_thread(call0);
    fail_unless(mt != nullptr);
    static const char key = 0;
    auto burning = std::make_shared<BurningLoop>();
    fail_unless(mt->host(&key, [&]() -> std::shared_ptr<HostedLoop> { return burning; }) == burning);
    uint64_t one = 1;
    fail_unless(write(burning->efd, &one, sizeof one) == sizeof one);
    for (int i = 0; i < 2000 && burning->burned.load() < 1; i++)
      g_usleep(5000);
    fail_unless_equals_int(burning->burned.load(), 1);
    g_usleep(100000); /* the thread measures its load right after */
    loaded.add();
    fail_unless(loaded.sockets() == std::vector<size_t>({1, 1}), "a busy thread took another call");
  }
}
GST_END_TEST;

static Suite *websocket_suite(void) {
  Suite *s = suite_create("websocket");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_codec);
  tcase_add_test(tc, test_messages_in_and_out);
  tcase_add_test(tc, test_peer_close_handshake);
  tcase_add_test(tc, test_our_close_and_timeout);
  tcase_add_test(tc, test_protocol_errors);
  tcase_add_test(tc, test_dropped_connection);
  tcase_add_test(tc, test_refused_stream);
  tcase_add_test(tc, test_source_pulls_the_socket);
  tcase_add_test(tc, test_split_reads);
  tcase_add_test(tc, test_burst_larger_than_a_turn);
  tcase_add_test(tc, test_backpressure_then_resume);
  tcase_add_test(tc, test_pull_and_flush_churn);
  tcase_add_test(tc, test_backlog_limit);
  tcase_add_test(tc, test_corked_sends_leave_together);
  tcase_add_test(tc, test_media_threads);
  tcase_add_test(tc, test_media_threads_fill);
  tcase_add_test(tc, test_media_thread_hosts_a_loop);
  return s;
}

GST_CHECK_MAIN(websocket);
