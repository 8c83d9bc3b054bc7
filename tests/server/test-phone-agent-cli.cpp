/* gst-phone-agent: the phone-agent command line, as a deployer runs it.
 *
 * Startup errors must say what is wrong; SIGTERM/SIGINT shut down
 * gracefully; the auth token never shows in the output. The server and the
 * emulator are subprocesses; everything is 127.0.0.1 and bounded. */
#include <gst/gst.h>
#include <libsoup/soup.h>

#include <csignal>

#include "../common/pa-e2e.h"
#include "../common/pa-calllog-query.h"
#include "pa-audio.h"

using namespace pa_e2e;

namespace {

std::string phone_agent_path() { return build_root() + "/tools/phone-agent/phone-agent"; }
std::string echo_template() { return source_root() + "/pipelines/echo.pipeline"; }

std::vector<std::string> serve(const std::vector<std::string> &extra) {
  std::vector<std::string> argv = {phone_agent_path(), "serve", "--address", "127.0.0.1", "--port", "0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

/* The server's port from its "listening on 127.0.0.1:PORT" line. */
int wait_for_listening(Background &b) {
  std::string rest = b.wait_for("phone-agent: listening on 127.0.0.1:", 10000);
  return atoi(rest.c_str());
}

std::vector<std::string> emulator(int port, const std::vector<std::string> &extra) {
  std::vector<std::string> argv = {emulator_path(), "--url",
                                   "http://127.0.0.1:" + std::to_string(port) + "/twilio/voice", "--quiet",
                                   "--max-duration-s", "30"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

void write_caller(const std::string &path, int ms) {
  std::vector<uint8_t> u(static_cast<size_t>(ms) * 8);
  for (size_t i = 0; i < u.size(); i++) {
    uint8_t b = pa::mulaw_encode(static_cast<int16_t>(8000 * sin(2 * M_PI * 330 * static_cast<double>(i) / 8000)));
    u[i] = b == 0x7F ? 0xFF : b;
  }
  std::string err;
  fail_unless(pa::wav_write_mulaw(path, u.data(), u.size(), err), "%s", err.c_str());
}

/* A blocking HTTP request (the server is another process). */
guint http(const char *method, const std::string &url, const std::string &form = "", std::string *body = nullptr) {
  SoupSession *session = soup_session_new_with_options("timeout", 10, nullptr);
  SoupMessage *msg = soup_message_new(method, url.c_str());
  if (!form.empty()) {
    GBytes *b = g_bytes_new(form.data(), form.size());
    soup_message_set_request_body_from_bytes(msg, "application/x-www-form-urlencoded", b);
    g_bytes_unref(b);
  }
  GBytes *r = soup_session_send_and_read(session, msg, nullptr, nullptr);
  guint status = soup_message_get_status(msg);
  if (r && body)
    body->assign(static_cast<const char *>(g_bytes_get_data(r, nullptr)), g_bytes_get_size(r));
  if (r)
    g_bytes_unref(r);
  g_object_unref(msg);
  g_object_unref(session);
  return status;
}

void signal_process(Background &b, int sig) {
  const char *id = g_subprocess_get_identifier(b.proc);
  fail_unless(id != nullptr, "the server already exited:\n%s", b.output().c_str());
  kill(static_cast<pid_t>(atoi(id)), sig);
}

} // namespace

GST_START_TEST(test_usage_and_startup_errors) {
  TempDir tmp;
  std::string out;
  fail_unless_equals_int(run({phone_agent_path()}, &out), 2);
  fail_unless(out.find("Usage: phone-agent serve") != std::string::npos, "%s", out.c_str());
  fail_unless_equals_int(run({phone_agent_path(), "frobnicate"}, &out), 2);
  fail_unless(out.find("unknown command 'frobnicate'") != std::string::npos, "%s", out.c_str());
  fail_unless_equals_int(run({phone_agent_path(), "serve"}, &out), 2);
  fail_unless(out.find("--pipeline FILE is required") != std::string::npos, "%s", out.c_str());
  fail_unless_equals_int(run(serve({"--pipeline", echo_template(), "--log-level", "loud"}), &out), 2);
  fail_unless(out.find("unknown level 'loud'") != std::string::npos, "%s", out.c_str());
  fail_unless_equals_int(run(serve({"--pipeline", echo_template(), "--media-fill", "101"}), &out), 2);
  fail_unless(out.find("--media-fill must be between 0 and 100 percent") != std::string::npos, "%s", out.c_str());

  /* the template: missing, broken, bad variable, good */
  fail_unless_equals_int(run(serve({"--pipeline", tmp.file("missing.pipeline")}), &out), 1);
  fail_unless(out.find("cannot read the pipeline template") != std::string::npos, "%s", out.c_str());
  g_file_set_contents(tmp.file("typo.pipeline").c_str(), "# a typo\ntwiliosrc ! twiliosinc\n", -1, nullptr);
  fail_unless_equals_int(run(serve({"--pipeline", tmp.file("typo.pipeline")}), &out), 1);
  fail_unless(out.find("does not parse: no element \"twiliosinc\"") != std::string::npos, "%s", out.c_str());
  g_file_set_contents(tmp.file("var.pipeline").c_str(),
                      "twiliosrc ! tee name=t ! twiliosink t. ! queue ! wavenc ! filesink location=${callsid}.wav",
                      -1, nullptr);
  fail_unless_equals_int(run(serve({"--pipeline", tmp.file("var.pipeline")}), &out), 1);
  fail_unless(out.find("unknown variable ${callsid}") != std::string::npos, "%s", out.c_str());
  /* the call log cannot be created */
  fail_unless_equals_int(run(serve({"--pipeline", echo_template(), "--call-log", tmp.file("no/such/dir/calls.sqlite")}),
                             &out), 1);
  fail_unless(out.find("cannot open the call log " + tmp.file("no/such/dir/calls.sqlite")) != std::string::npos, "%s",
              out.c_str());
  fail_unless_equals_int(run(serve({"--pipeline", echo_template(), "--check"}), &out), 0);
  fail_unless(out.find("is a valid template: twiliosrc ! twiliosink") != std::string::npos, "%s", out.c_str());

  /* the port is taken */
  GSocket *sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, nullptr);
  GSocketAddress *addr = g_inet_socket_address_new_from_string("127.0.0.1", 0);
  fail_unless(g_socket_bind(sock, addr, FALSE, nullptr) && g_socket_listen(sock, nullptr));
  GSocketAddress *bound = g_socket_get_local_address(sock, nullptr);
  int port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  std::vector<std::string> argv = {phone_agent_path(), "serve", "--address", "127.0.0.1", "--port",
                                   std::to_string(port), "--pipeline", echo_template()};
  fail_unless_equals_int(run(argv, &out), 1);
  fail_unless(out.find("already in use") != std::string::npos && out.find("--port") != std::string::npos, "%s",
              out.c_str());
  g_object_unref(bound);
  g_object_unref(addr);
  g_object_unref(sock);
}
GST_END_TEST;

/* SIGTERM with a call in progress: new callers hear the busy message,
 * /healthz says 503, the call goes on for the grace period and is then
 * ended cleanly; the process exits 0. The auth token never appears. */
GST_START_TEST(test_sigterm_graceful) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 20000);
  const char *token = "s3cret-t0ken-XYZ";
  Background server(serve({"--pipeline", echo_template(), "--grace-period", "1", "--auth-token", token,
                           "--log-level", "debug", "--out-dir", tmp.path}),
                    tmp.file("server.log"));
  int port = wait_for_listening(server);
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string body;
  fail_unless_equals_int(http("GET", base + "/healthz", "", &body), 200);
  assert_str(body, "ok\n");

  Background call(emulator(port, {"--audio", tmp.file("caller.wav"), "--auth-token", token, "--report",
                                  tmp.file("report.json")}),
                  tmp.file("emulator.log"));
  server.wait_for(" started (from ", 10000);
  gint64 t0 = g_get_monotonic_time();
  signal_process(server, SIGTERM);
  server.wait_for("shutting down", 5000);
  fail_unless_equals_int(http("GET", base + "/healthz", "", &body), 503);
  /* unsigned: refused before the busy check, as any unsigned webhook */
  fail_unless_equals_int(http("POST", base + "/twilio/voice", "CallSid=CA1"), 403);
  /* the metrics say so: draining, the call still up, the refusal counted */
  fail_unless_equals_int(http("GET", base + "/metrics", "", &body), 200);
  for (const char *want : {"\nphoneagent_draining 1\n", "\nphoneagent_calls_active 1\n",
                           "\nphoneagent_bad_signatures_total 1\n"})
    fail_unless(body.find(want) != std::string::npos, "no '%s' in the metrics:\n%s", want + 1, body.c_str());

  fail_unless_equals_int(server.wait(10000), 0);
  double took = static_cast<double>(g_get_monotonic_time() - t0) / 1e6;
  fail_unless(took >= 1.0 && took < 7.0, "exited %.1f s after SIGTERM", took);
  fail_unless_equals_int(call.wait(10000), 0);
  Report r(tmp.file("report.json"));
  assert_str(r.outcome(0), "completed");
  assert_str(json_object_get_string_member(r.call(0), "closed_by"), "server");
  fail_unless_equals_int(json_object_get_int_member(r.call(0), "close_code"), 1000);
  std::string out = server.output();
  fail_unless(out.find("ended: shutdown") != std::string::npos, "%s", out.c_str());
  fail_unless(out.find("phone-agent: stopped (1 calls, 0 failed") != std::string::npos, "%s", out.c_str());
  fail_unless(out.find(token) == std::string::npos, "the auth token appeared in the output");
  /* the call log, by default in --out-dir: the call, ended by the shutdown */
  fail_unless(out.find("phone-agent: call log: " + tmp.file("calls.sqlite") + "\n") != std::string::npos, "%s",
              out.c_str());
  auto rows = query(tmp.file("calls.sqlite"), "SELECT call_sid, end_reason FROM calls");
  fail_unless_equals_int(rows.size(), 1);
  assert_str(rows[0][0], json_object_get_string_member(r.call(0), "call_sid"));
  assert_str(rows[0][1], "shutdown");
}
GST_END_TEST;

/* A second signal ends every call at once (1001, going away). */
GST_START_TEST(test_second_signal_ends_calls_now) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 20000);
  Background server(serve({"--pipeline", echo_template(), "--grace-period", "60", "--metrics-path", "/m",
                           "--call-log", ""}),
                    tmp.file("server.log"));
  int port = wait_for_listening(server);
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  fail_unless_equals_int(http("GET", base + "/metrics"), 404);
  fail_unless_equals_int(http("GET", base + "/m"), 200);
  Background call(emulator(port, {"--audio", tmp.file("caller.wav"), "--report", tmp.file("report.json")}),
                  tmp.file("emulator.log"));
  server.wait_for(" started (from ", 10000);
  signal_process(server, SIGINT);
  server.wait_for("shutting down", 5000);
  gint64 t0 = g_get_monotonic_time();
  signal_process(server, SIGINT);
  fail_unless_equals_int(server.wait(5000), 0);
  fail_unless(g_get_monotonic_time() - t0 < 3 * G_USEC_PER_SEC);
  fail_unless_equals_int(call.wait(10000), 0);
  Report r(tmp.file("report.json"));
  assert_str(json_object_get_string_member(r.call(0), "closed_by"), "server");
  fail_unless_equals_int(json_object_get_int_member(r.call(0), "close_code"), 1001);
  fail_unless(server.output().find("ended: server-stopped") != std::string::npos, "%s", server.output().c_str());
  fail_unless(server.output().find("call log:") == std::string::npos, "--call-log \"\" kept a call log");
}
GST_END_TEST;

static Suite *cli_suite(void) {
  Suite *s = suite_create("phone-agent-cli");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_usage_and_startup_errors);
  tcase_add_test(tc, test_sigterm_graceful);
  tcase_add_test(tc, test_second_signal_ends_calls_now);
  return s;
}

GST_CHECK_MAIN(cli);
