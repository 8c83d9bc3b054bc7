/* gst-phone-agent: the model-side WebSocket client (libwebsockets service
 * thread) against the mock realtime server on 127.0.0.1. */
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../common/pa-check.h"
#include "rt-mock-server.h"
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
    cb.on_message = [this](std::string &&t) {
      std::lock_guard<std::mutex> g(mu);
      messages.push_back(std::move(t));
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
  return s;
}

GST_CHECK_MAIN(rt_websocket)
