/* gst-phone-agent: end to end, the emulator calling the echo agent.
 *
 * The launch-line tests run gst-launch-1.0 as a user would; the others run
 * the same pipeline in this process so they can read the elements' stats
 * and bus messages. Everything talks to 127.0.0.1 and bounds itself. */
#include <gst/gst.h>
#include <libsoup/soup.h>

#include <cmath>
#include <cstdlib>

#include "../common/pa-e2e.h"
#include "pa-audio.h"
#include "twilio-signature.h"

using namespace pa_e2e;

namespace {

/* A caller whose exact μ-law bytes we know: a varying tone written as a
 * μ-law WAV (the emulator re-encodes it to the same bytes; 0x7F, the
 * negative-zero alias, is avoided). */
std::vector<uint8_t> write_caller(const std::string &path, int ms) {
  std::vector<uint8_t> u(static_cast<size_t>(ms) * 8);
  for (size_t i = 0; i < u.size(); i++) {
    double t = static_cast<double>(i) / 8000;
    double f = 300 + 200 * sin(2 * M_PI * 0.7 * t);
    uint8_t b = pa::mulaw_encode(static_cast<int16_t>(9000 * sin(2 * M_PI * f * t)));
    u[i] = b == 0x7F ? 0xFF : b;
  }
  std::string err;
  fail_unless(pa::wav_write_mulaw(path, u.data(), u.size(), err), "%s", err.c_str());
  return u;
}

size_t first_sound(const std::vector<uint8_t> &v, size_t from = 0) {
  for (size_t i = from; i < v.size(); i++)
    if (v[i] != 0xFF && v[i] != 0x7F)
      return i;
  return v.size();
}

std::vector<uint8_t> wav_mulaw_data(const std::string &path) {
  std::vector<uint8_t> f = read_bytes(path);
  /* find the data chunk */
  for (size_t p = 12; p + 8 <= f.size();) {
    uint32_t len = f[p + 4] | (f[p + 5] << 8) | (f[p + 6] << 16) | (static_cast<uint32_t>(f[p + 7]) << 24);
    if (memcmp(&f[p], "data", 4) == 0)
      return std::vector<uint8_t>(f.begin() + p + 8, f.begin() + std::min<size_t>(f.size(), p + 8 + len));
    p += 8 + len + (len & 1);
  }
  fail("%s has no data chunk", path.c_str());
  return {};
}

std::vector<std::string> gst_launch(const std::string &description_tail) {
  std::vector<std::string> argv = {"gst-launch-1.0", "-m", "-e"};
  gchar **tokens = nullptr;
  fail_unless(g_shell_parse_argv(description_tail.c_str(), nullptr, &tokens, nullptr));
  for (gchar **t = tokens; *t; t++)
    argv.emplace_back(*t);
  g_strfreev(tokens);
  return argv;
}

std::vector<std::string> emulator(int port, const std::vector<std::string> &extra) {
  std::vector<std::string> argv = {emulator_path(), "--url",
                                   "http://127.0.0.1:" + std::to_string(port) + "/twilio/voice", "--quiet",
                                   "--max-duration-s", "30"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

} // namespace

/* The core check: through gst-launch-1.0, the caller's audio comes
 * back bit-exact, in order, with the echo delay of a real-time loop. */
GST_START_TEST(test_gst_launch_echo_bitexact) {
  TempDir tmp;
  std::vector<uint8_t> sent = write_caller(tmp.file("caller.wav"), 3000);
  Background agent(gst_launch("twiliosrc port=0 address=127.0.0.1 ! twiliosink"), tmp.file("agent.log"));
  int port = wait_for_port(agent);
  fail_unless(port > 0);
  std::string out;
  int rc = run(emulator(port, {"--audio", tmp.file("caller.wav"), "--tail-ms", "1000", "--out-dir", tmp.path,
                               "--report", tmp.file("report.json")}),
               &out);
  fail_unless_equals_int(rc, 0);
  Report r(tmp.file("report.json"));
  assert_str(r.outcome(0), "completed");
  /* the pipeline ends with the call */
  fail_unless_equals_int(agent.wait(10000), 0);

  /* bit-exact and in order: what came back starts with exactly what was said */
  std::vector<uint8_t> received = read_bytes(tmp.file("call-1-received.ulaw"));
  fail_unless(received.size() >= sent.size(), "only %zu of %zu bytes came back", received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); i++)
    fail_unless(received[i] == sent[i], "byte %zu differs: sent 0x%02x, got 0x%02x", i, sent[i], received[i]);
  /* every media message was a multiple of 160 bytes */
  fail_unless_equals_int(received.size() % 160, 0);

  /* timing: the caller hears their first sound one echo delay later */
  std::vector<uint8_t> heard = wav_mulaw_data(tmp.file("call-1-heard.wav"));
  size_t said_at = first_sound(sent);
  size_t heard_at = first_sound(heard);
  fail_unless(heard_at < heard.size(), "the caller heard nothing");
  double delay_ms = (static_cast<double>(heard_at) - said_at) / 8;
  fail_unless(delay_ms >= 0 && delay_ms <= 250, "echo delay %.1f ms", delay_ms);
  /* and then the same audio, in order (underruns would insert silence) */
  guint64 underruns = json_object_get_int_member(r.call(0), "underruns");
  /* each underrun dated: as many gaps as underruns, as long in all */
  JsonArray *spans = json_object_get_array_member(r.call(0), "underrun_spans_us");
  fail_unless(spans != nullptr, "no underrun_spans_us in the report");
  fail_unless_equals_int(json_array_get_length(spans), underruns);
  gint64 gap_us = 0;
  for (guint i = 0; i < json_array_get_length(spans); i++) {
    JsonArray *span = json_array_get_array_element(spans, i);
    gint64 from = json_array_get_int_element(span, 0), to = json_array_get_int_element(span, 1);
    fail_unless(from > 0 && to > from);
    gap_us += to - from;
  }
  fail_unless(std::llabs(gap_us - static_cast<gint64>(json_object_get_double_member(r.call(0), "underrun_ms") * 1000)) <=
              100);
  if (underruns == 0) {
    size_t n = std::min(sent.size() - said_at, heard.size() - heard_at);
    fail_unless(n > 2000 * 8);
    fail_unless(memcmp(&sent[said_at], &heard[heard_at], n) == 0, "heard audio differs from what was said");
  }
}
GST_END_TEST;

/* The recording example of docs/quickstart.md, as written in
 * pipelines/echo-record.pipeline, records both directions. */
GST_START_TEST(test_recording_example) {
  TempDir tmp;
  std::vector<uint8_t> sent = write_caller(tmp.file("caller-in.wav"), 2000);
  gchar *contents = nullptr;
  fail_unless(g_file_get_contents((source_root() + "/pipelines/echo-record.pipeline").c_str(), &contents, nullptr,
                                  nullptr));
  std::string desc;
  gchar **lines = g_strsplit(contents, "\n", -1);
  for (gchar **l = lines; *l; l++)
    if ((*l)[0] != '#')
      desc += std::string(*l) + " ";
  g_strfreev(lines);
  g_free(contents);
  size_t p = desc.find("port=8080");
  fail_unless(p != std::string::npos);
  desc.replace(p, 9, "port=0 address=127.0.0.1");

  Background agent(gst_launch(desc), tmp.file("agent.log"), tmp.path.c_str());
  int port = wait_for_port(agent);
  fail_unless_equals_int(run(emulator(port, {"--audio", tmp.file("caller-in.wav"), "--tail-ms", "500"})), 0);
  fail_unless_equals_int(agent.wait(10000), 0);

  for (const char *name : {"caller.wav", "agent.wav"}) {
    std::vector<uint8_t> rec = wav_mulaw_data(tmp.file(name));
    fail_unless(rec.size() >= sent.size(), "%s: %zu bytes", name, rec.size());
    fail_unless(memcmp(rec.data(), sent.data(), sent.size()) == 0, "%s differs from what the caller said", name);
    pa::WavData w;
    std::string err;
    fail_unless(pa::wav_read(tmp.file(name), w, err), "%s", err.c_str());
    fail_unless_equals_int(w.rate, 8000);
    fail_unless_equals_int(w.channels, 1);
  }
}
GST_END_TEST;

/* ---------------------------------------------------------------------- */
/* In-process pipeline: stats and messages are readable. */

namespace {
struct Agent {
  GstElement *pipeline = nullptr;
  GstElement *src = nullptr;
  GstElement *sink = nullptr;
  int port = 0;

  explicit Agent(const std::string &src_props = "") {
    GError *err = nullptr;
    std::string desc = "twiliosrc name=src port=0 address=127.0.0.1 " + src_props + " ! twiliosink name=sink";
    pipeline = gst_parse_launch(desc.c_str(), &err);
    fail_unless(pipeline != nullptr, "%s", err ? err->message : "?");
    src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    fail_unless(gst_element_set_state(pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    g_object_get(src, "bound-port", &port, nullptr);
    fail_unless(port > 0);
  }
  ~Agent() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(src);
    gst_object_unref(sink);
    gst_object_unref(pipeline);
  }
  std::string url(const char *path = "/twilio/voice") const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  /* Waits for EOS (the call ended); returns the twilio-call-stopped reason. */
  std::string wait_end(int timeout_ms = 10000) {
    GstBus *bus = gst_element_get_bus(pipeline);
    std::string reason;
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000;
    bool eos = false;
    while (!eos && g_get_monotonic_time() < deadline) {
      GstMessage *m = gst_bus_timed_pop_filtered(
          bus, 50 * GST_MSECOND,
          static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR));
      if (!m)
        continue;
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS)
        eos = true;
      else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR)
        fail("pipeline error");
      else if (gst_structure_has_name(gst_message_get_structure(m), "twilio-call-stopped"))
        reason = gst_structure_get_string(gst_message_get_structure(m), "reason");
      gst_message_unref(m);
    }
    gst_object_unref(bus);
    fail_unless(eos, "no EOS within %d ms", timeout_ms);
    return reason;
  }
  guint64 stat(const char *field) {
    GstStructure *s = nullptr;
    g_object_get(src, "stats", &s, nullptr);
    guint64 v = 0;
    fail_unless(gst_structure_get_uint64(s, field, &v), "no stat %s", field);
    gst_structure_free(s);
    return v;
  }
  guint64 listener_stat(const char *field) {
    GstStructure *s = nullptr;
    g_object_get(src, "stats", &s, nullptr);
    const GstStructure *l = gst_value_get_structure(gst_structure_get_value(s, "listener"));
    guint64 v = 0;
    fail_unless(gst_structure_get_uint64(l, field, &v), "no listener stat %s", field);
    gst_structure_free(s);
    return v;
  }
};

guint http_status(const std::string &method, const std::string &url, const char *signature = nullptr,
                  bool websocket = false, const std::string &form = "", std::string *response = nullptr) {
  SoupSession *session = soup_session_new();
  SoupMessage *msg = soup_message_new(method.c_str(), url.c_str());
  if (signature)
    soup_message_headers_append(soup_message_get_request_headers(msg), "X-Twilio-Signature", signature);
  if (!form.empty()) {
    GBytes *b = g_bytes_new(form.data(), form.size());
    soup_message_set_request_body_from_bytes(msg, "application/x-www-form-urlencoded", b);
    g_bytes_unref(b);
  }
  GBytes *body = nullptr;
  if (websocket) {
    /* a real upgrade, on a private context: the status, then hang up */
    struct Done {
      bool done = false;
      SoupWebsocketConnection *ws = nullptr;
    } d;
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    g_object_unref(session);
    session = soup_session_new();
    soup_session_websocket_connect_async(
        session, msg, nullptr, nullptr, G_PRIORITY_DEFAULT, nullptr,
        [](GObject *src, GAsyncResult *res, gpointer data) {
          auto *dd = static_cast<Done *>(data);
          dd->ws = soup_session_websocket_connect_finish(SOUP_SESSION(src), res, nullptr);
          dd->done = true;
        },
        &d);
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (!d.done && g_get_monotonic_time() < deadline)
      g_main_context_iteration(ctx, FALSE) || (g_usleep(1000), true);
    if (d.ws) {
      soup_websocket_connection_close(d.ws, 1000, nullptr);
      g_object_unref(d.ws);
    }
    g_main_context_pop_thread_default(ctx);
    g_object_unref(session);
    session = nullptr;
    while (g_main_context_iteration(ctx, FALSE)) {
    }
    g_main_context_unref(ctx);
  } else {
    body = soup_session_send_and_read(session, msg, nullptr, nullptr);
  }
  guint status = soup_message_get_status(msg);
  if (body && response)
    *response = std::string(static_cast<const char *>(g_bytes_get_data(body, nullptr)), g_bytes_get_size(body));
  if (body)
    g_bytes_unref(body);
  g_object_unref(msg);
  if (session)
    g_object_unref(session);
  return status;
}
} // namespace

GST_START_TEST(test_signatures_accepted_and_rejected) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 500);
  g_unsetenv("TWILIO_AUTH_TOKEN");
  Agent agent("auth-token=s3cret-t0ken");
  /* a wrong token: the webhook gets 403, no stream */
  run(emulator(agent.port, {"--audio", tmp.file("caller.wav"), "--auth-token", "wrong", "--report",
                            tmp.file("bad.json")}));
  assert_str(Report(tmp.file("bad.json")).outcome(0), "http-403");
  /* unsigned webhook and unsigned upgrade: 403 */
  fail_unless_equals_int(http_status("POST", agent.url()), 403);
  fail_unless_equals_int(http_status("GET", agent.url("/twilio/media"), nullptr, true), 403);
  fail_unless_equals_int(http_status("GET", agent.url("/twilio/media"), "bm90IGEgc2lnbmF0dXJl", true), 403);
  fail_unless_equals_int(agent.listener_stat("bad-signatures"), 4);
  /* the right token: the call goes through (webhook and upgrade signed) */
  run(emulator(agent.port, {"--audio", tmp.file("caller.wav"), "--tail-ms", "300", "--auth-token", "s3cret-t0ken",
                            "--report", tmp.file("good.json")}));
  Report good(tmp.file("good.json"));
  assert_str(good.outcome(0), "completed");
  fail_unless(json_object_get_int_member(good.call(0), "bytes_received") >= 4000);
  agent.wait_end();
}
GST_END_TEST;

/* Behind a tunnel or proxy: Twilio signs the public URL, and the TwiML's
 * stream URL must be the public one too. */
GST_START_TEST(test_public_url_behind_proxy) {
  Agent agent("auth-token=s3cret public-url=https://agent.example.com");
  pa::twilio::Params form = {{"CallSid", "CA0123"}, {"From", "+14155551212"}, {"To", "+15005550006"},
                             {"AccountSid", "AC0123"}};
  std::string body = pa::twilio::form_encode(form);
  std::string sig = pa::twilio::compute_signature("s3cret", "https://agent.example.com/twilio/voice", form);
  std::string twiml;
  fail_unless_equals_int(http_status("POST", agent.url(), sig.c_str(), false, body, &twiml), 200);
  fail_unless(twiml.find("<Stream url=\"wss://agent.example.com/twilio/media\">") != std::string::npos, "%s",
              twiml.c_str());
  fail_unless(twiml.find("<Parameter name=\"from\" value=\"+14155551212\"/>") != std::string::npos);
  /* what the proxy hands us (http, 127.0.0.1) is not what Twilio signed */
  std::string local_sig = pa::twilio::compute_signature("s3cret", agent.url(), form);
  fail_unless_equals_int(http_status("POST", agent.url(), local_sig.c_str(), false, body), 403);
  /* the upgrade is signed as wss://public-host/path */
  std::string ws_sig = pa::twilio::compute_signature("s3cret", "wss://agent.example.com/twilio/media", {});
  fail_unless_equals_int(http_status("GET", agent.url("/twilio/media"), ws_sig.c_str(), true), 101);
}
GST_END_TEST;

GST_START_TEST(test_second_caller_turned_away) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 2500);
  Agent agent;
  /* two callers, the second 1 s after the first, while the first still talks */
  run(emulator(agent.port, {"--audio", tmp.file("caller.wav"), "--calls", "2", "--ramp-ms", "1000", "--tail-ms",
                            "300", "--report", tmp.file("report.json")}));
  Report r(tmp.file("report.json"));
  assert_str(r.outcome(0), "completed");
  assert_str(r.outcome(1), "busy");
  /* politely: spoken, then hang up */
  JsonObject *twiml = json_object_get_object_member(r.call(1), "twiml");
  fail_unless(twiml != nullptr);
  std::string says = json_object_get_string_member(twiml, "says");
  fail_unless(says.find("busy") != std::string::npos, "said '%s'", says.c_str());
  fail_unless(json_object_get_boolean_member(twiml, "hangup"));
  fail_unless_equals_int(agent.listener_stat("calls-turned-away"), 1);
  agent.wait_end();
}
GST_END_TEST;

GST_START_TEST(test_http_errors) {
  Agent agent;
  fail_unless_equals_int(http_status("GET", agent.url()), 405);
  fail_unless_equals_int(http_status("PUT", agent.url()), 405);
  fail_unless_equals_int(http_status("GET", agent.url("/nowhere")), 404);
  fail_unless_equals_int(http_status("POST", agent.url("/twilio/voice/extra")), 404);
  fail_unless_equals_int(http_status("GET", agent.url("/healthz")), 200);
  fail_unless_equals_int(agent.listener_stat("method-not-allowed"), 2);
}
GST_END_TEST;

/* Every kind of bad input in one call: each is counted and ignored, the
 * call goes on and completes, audio still comes back. */
GST_START_TEST(test_bad_input_call_goes_on) {
  TempDir tmp;
  std::vector<uint8_t> sent = write_caller(tmp.file("caller.wav"), 2000);
  Agent agent("max-frame-size=32768");
  const char *kinds[] = {"media-before-start@0", "malformed-json@300", "binary@400",  "oversized@500",
                         "wrong-stream-sid@600", "invalid-base64@700", "unknown-event@800"};
  std::vector<std::string> args = {"--audio", tmp.file("caller.wav"), "--tail-ms", "500", "--out-dir", tmp.path,
                                   "--report", tmp.file("report.json")};
  for (const char *k : kinds) {
    args.push_back("--inject");
    args.push_back(k);
  }
  run(emulator(agent.port, args));
  Report r(tmp.file("report.json"));
  std::string outcome = r.outcome(0);
  fail_unless(outcome == "completed" || outcome == "injected", "outcome %s", outcome.c_str());
  assert_str(agent.wait_end(), "stop");
  for (const char *counter : {"media-before-start", "malformed-json", "binary-frames", "oversized-frames",
                              "wrong-stream-sid", "invalid-base64", "unknown-events"})
    fail_unless_equals_int(agent.stat(counter), 1);
  /* nothing was lost: the caller's audio came back whole */
  std::vector<uint8_t> received = read_bytes(tmp.file("call-1-received.ulaw"));
  fail_unless(received.size() >= sent.size());
  fail_unless(memcmp(received.data(), sent.data(), sent.size()) == 0);
}
GST_END_TEST;

GST_START_TEST(test_abrupt_close_ends_call) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 3000);
  Agent agent;
  run(emulator(agent.port, {"--audio", tmp.file("caller.wav"), "--inject", "abrupt-close@800"}));
  assert_str(agent.wait_end(), "connection-lost");
  /* the process is fine and the element still answers */
  fail_unless_equals_int(http_status("GET", agent.url("/healthz")), 200);
}
GST_END_TEST;

GST_START_TEST(test_peer_stops_reading) {
  TempDir tmp;
  write_caller(tmp.file("caller.wav"), 6000);
  Agent agent("stall-timeout=1500");
  run(emulator(agent.port, {"--audio", tmp.file("caller.wav"), "--inject", "stop-reading@500", "--max-duration-s",
                            "15"}));
  agent.wait_end(15000);
  fail_unless_equals_int(agent.stat("stalls"), 1);
}
GST_END_TEST;

static Suite *echo_e2e_suite(void) {
  Suite *s = suite_create("echo-e2e");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_gst_launch_echo_bitexact);
  tcase_add_test(tc, test_recording_example);
  tcase_add_test(tc, test_signatures_accepted_and_rejected);
  tcase_add_test(tc, test_public_url_behind_proxy);
  tcase_add_test(tc, test_second_caller_turned_away);
  tcase_add_test(tc, test_http_errors);
  tcase_add_test(tc, test_bad_input_call_goes_on);
  tcase_add_test(tc, test_abrupt_close_ends_call);
  tcase_add_test(tc, test_peer_stops_reading);
  return s;
}

GST_CHECK_MAIN(echo_e2e);
