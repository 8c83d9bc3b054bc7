/* gst-phone-agent: tools/demo-calendar, the example receptionist's tool
 * server: the calls realtimemodel POSTs to tool-url get the results the
 * scripted agent expects (agents/receptionist.json), a slot is booked once,
 * and bookings are written down. */
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>

#include "../common/pa-check.h"
#include "../common/pa-e2e.h"

using namespace pa_e2e;

namespace {

struct Result {
  guint status = 0;
  JsonParser *parser = nullptr;
  JsonObject *obj = nullptr;
  ~Result() {
    if (parser)
      g_object_unref(parser);
  }
  std::string str(const char *member) const {
    fail_unless(obj && json_object_has_member(obj, member), "no '%s' in the result", member);
    return json_object_get_string_member(obj, member);
  }
};

/* What realtimemodel sends (docs/realtimemodel.md, "Tools"). */
void call_tool(SoupSession *session, const std::string &url, const std::string &body, Result &r) {
  SoupMessage *msg = soup_message_new("POST", url.c_str());
  GBytes *b = g_bytes_new(body.data(), body.size());
  soup_message_set_request_body_from_bytes(msg, "application/json", b);
  g_bytes_unref(b);
  GError *err = nullptr;
  GBytes *reply = soup_session_send_and_read(session, msg, nullptr, &err);
  fail_unless(reply != nullptr, "POST %s: %s", url.c_str(), err ? err->message : "?");
  r.status = soup_message_get_status(msg);
  r.parser = json_parser_new();
  gsize len = 0;
  const char *data = static_cast<const char *>(g_bytes_get_data(reply, &len));
  fail_unless(json_parser_load_from_data(r.parser, data, static_cast<gssize>(len), nullptr), "not JSON: %.*s",
              static_cast<int>(len), data);
  r.obj = json_node_get_object(json_parser_get_root(r.parser));
  g_bytes_unref(reply);
  g_object_unref(msg);
}

} // namespace

GST_START_TEST(test_find_book_and_refuse) {
  TempDir tmp;
  Background cal({build_root() + "/tools/demo-calendar/demo-calendar", "--port", "0", "--bookings",
                  tmp.file("bookings.jsonl")},
                 tmp.file("calendar.log"));
  std::string rest = cal.wait_for("demo-calendar: serving ", 5000);
  std::string url = rest.substr(0, rest.find('\n'));
  fail_unless(g_str_has_prefix(url.c_str(), "http://127.0.0.1:"), "%s", url.c_str());
  SoupSession *session = soup_session_new();

  /* arguments as an object (what realtimemodel sends when they parse) */
  Result free1;
  call_tool(session, url,
            R"({"name":"findAvailability","call_id":"c1","arguments":{"day":"tomorrow","period":"morning"},"call_sid":"CA1"})",
            free1);
  fail_unless_equals_int(free1.status, 200);
  JsonArray *slots = json_object_get_array_member(free1.obj, "slots");
  fail_unless_equals_int(json_array_get_length(slots), 2);
  std::string offered = json_array_get_string_element(slots, 0);
  assert_str(offered, "tomorrow at 9:00 AM");

  /* arguments as the model's raw string */
  Result booked;
  call_tool(session, url,
            R"({"name":"bookAppointment","call_id":"c2","arguments":"{\"slot\":\"tomorrow at 9:00 AM\",\"reason\":\"a cleaning\"}","call_sid":"CA1"})",
            booked);
  fail_unless_equals_int(booked.status, 200);
  assert_str(booked.str("slot"), offered);
  assert_str(booked.str("confirmation"), "RD-1001");

  /* the same slot again: an error result the agent speaks (on_error) */
  Result again;
  call_tool(session, url, R"({"name":"bookAppointment","call_id":"c3","arguments":{"slot":"tomorrow at 9:00 AM"}})",
            again);
  fail_unless_equals_int(again.status, 200);
  fail_unless(!again.str("error").empty());
  fail_if(json_object_has_member(again.obj, "confirmation"));

  /* a slot never offered cannot be booked either */
  Result unoffered;
  call_tool(session, url, R"({"name":"bookAppointment","arguments":{"slot":"Sunday at 3:00 AM"}})", unoffered);
  fail_unless(!unoffered.str("error").empty());

  /* the booked slot is no longer offered */
  Result free2;
  call_tool(session, url, R"({"name":"findAvailability","arguments":{"day":"tomorrow","period":"morning"}})", free2);
  slots = json_object_get_array_member(free2.obj, "slots");
  for (guint i = 0; i < json_array_get_length(slots); i++)
    fail_if(offered == json_array_get_string_element(slots, i), "a booked slot was offered again");

  /* unknown tools and bad bodies get HTTP errors with a reason */
  Result unknown;
  call_tool(session, url, R"({"name":"launchRocket","arguments":{}})", unknown);
  fail_unless_equals_int(unknown.status, 404);
  fail_unless(!unknown.str("error").empty());
  Result bad;
  call_tool(session, url, "[1,2,3]", bad);
  fail_unless_equals_int(bad.status, 400);

  /* the booking was written down, once */
  gchar *contents = nullptr;
  fail_unless(g_file_get_contents(tmp.file("bookings.jsonl").c_str(), &contents, nullptr, nullptr));
  std::string lines = contents;
  g_free(contents);
  fail_unless_equals_int(std::count(lines.begin(), lines.end(), '\n'), 1);
  fail_unless(lines.find("\"confirmation\":\"RD-1001\"") != std::string::npos, "%s", lines.c_str());
  fail_unless(lines.find("\"call_sid\":\"CA1\"") != std::string::npos, "%s", lines.c_str());
  g_object_unref(session);
}
GST_END_TEST;

static Suite *demo_calendar_suite(void) {
  Suite *s = suite_create("demo-calendar");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_find_book_and_refuse);
  return s;
}

GST_CHECK_MAIN(demo_calendar);
