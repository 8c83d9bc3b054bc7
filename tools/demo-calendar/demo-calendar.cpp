/* gst-phone-agent: demo-calendar, the tool server of the example
 * receptionist (agents/receptionist-tools.json): a made-up dental calendar
 * that realtimemodel's tool-url can call, so that the offline demo books a
 * real (in-memory) appointment.
 *
 *   demo-calendar --port 0 [--bookings FILE]
 *   gst-launch-1.0 twiliosrc ! realtimemodel tools-file=agents/receptionist-tools.json \
 *       tool-url=http://127.0.0.1:PORT/tools ! twiliosink
 *
 * realtimemodel POSTs {"name", "call_id", "arguments", "call_sid", ...} and
 * takes the 2xx body as the result (docs/realtimemodel.md, "Tools"):
 *   findAvailability {day, period}  -> {"slots": ["tomorrow at 9:00 AM", ...]}
 *   bookAppointment  {slot, reason} -> {"slot": ..., "confirmation": "RD-1001"}
 *                                      or {"error": "..."} for a slot not free
 * Anything else gets HTTP 404 with {"error": ...}. Bookings live in memory
 * (and are appended to --bookings as JSON lines). Runs until SIGINT/SIGTERM.
 */
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

struct Calendar {
  std::set<std::string> offered, booked;
  int next_confirmation = 1001;
  std::string bookings_file;

  static std::string str_arg(JsonObject *args, const char *name, const char *fallback) {
    if (args && json_object_has_member(args, name)) {
      JsonNode *n = json_object_get_member(args, name);
      if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING) {
        const char *v = json_node_get_string(n);
        if (v && *v)
          return v;
      }
    }
    return fallback;
  }

  /* Two free slots in the period asked for, on the day asked for. */
  JsonNode *find(JsonObject *args) {
    std::string day = str_arg(args, "day", "the next available day");
    std::string period = str_arg(args, "period", "any time");
    if (day == "the next available day")
      day = "tomorrow";
    static const std::map<std::string, std::vector<const char *>> times = {
        {"morning", {"9:00 AM", "10:30 AM", "11:15 AM"}},
        {"afternoon", {"2:00 PM", "3:30 PM", "4:45 PM"}},
        {"evening", {"5:30 PM", "6:15 PM"}},
    };
    auto it = times.find(period);
    std::vector<const char *> candidates =
        it != times.end() ? it->second : std::vector<const char *>{"9:00 AM", "2:00 PM", "4:45 PM"};
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    std::vector<std::string> slots;
    for (const char *t : candidates) {
      std::string slot = day + " at " + t;
      if (!booked.count(slot) && slots.size() < 2)
        slots.push_back(slot);
    }
    if (slots.empty()) {
      json_builder_set_member_name(b, "error");
      json_builder_add_string_value(b, ("nothing is free " + day + " " + period).c_str());
    } else {
      json_builder_set_member_name(b, "slots");
      json_builder_begin_array(b);
      for (const auto &s : slots) {
        offered.insert(s);
        json_builder_add_string_value(b, s.c_str());
      }
      json_builder_end_array(b);
    }
    json_builder_end_object(b);
    JsonNode *out = json_builder_get_root(b);
    g_object_unref(b);
    return out;
  }

  JsonNode *book(JsonObject *args, const std::string &call_sid) {
    std::string slot = str_arg(args, "slot", "");
    std::string reason = str_arg(args, "reason", "");
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    if (slot.empty() || !offered.count(slot) || booked.count(slot)) {
      json_builder_set_member_name(b, "error");
      json_builder_add_string_value(b, slot.empty() ? "no slot given" : "that slot is not free");
    } else {
      booked.insert(slot);
      std::string confirmation = "RD-" + std::to_string(next_confirmation++);
      json_builder_set_member_name(b, "slot");
      json_builder_add_string_value(b, slot.c_str());
      json_builder_set_member_name(b, "confirmation");
      json_builder_add_string_value(b, confirmation.c_str());
      if (!bookings_file.empty()) {
        if (FILE *f = fopen(bookings_file.c_str(), "a")) {
          JsonBuilder *lb = json_builder_new();
          json_builder_begin_object(lb);
          json_builder_set_member_name(lb, "slot");
          json_builder_add_string_value(lb, slot.c_str());
          json_builder_set_member_name(lb, "confirmation");
          json_builder_add_string_value(lb, confirmation.c_str());
          json_builder_set_member_name(lb, "reason");
          json_builder_add_string_value(lb, reason.c_str());
          json_builder_set_member_name(lb, "call_sid");
          json_builder_add_string_value(lb, call_sid.c_str());
          json_builder_end_object(lb);
          JsonNode *line = json_builder_get_root(lb);
          gchar *text = json_to_string(line, FALSE);
          fprintf(f, "%s\n", text);
          g_free(text);
          json_node_unref(line);
          g_object_unref(lb);
          fclose(f);
        } else {
          g_printerr("demo-calendar: cannot append to %s\n", bookings_file.c_str());
        }
      }
    }
    json_builder_end_object(b);
    JsonNode *out = json_builder_get_root(b);
    g_object_unref(b);
    return out;
  }
};

void reply(SoupServerMessage *msg, guint status, JsonNode *body) {
  gchar *text = json_to_string(body, FALSE);
  soup_server_message_set_status(msg, status, nullptr);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_TAKE, text, strlen(text));
  json_node_unref(body);
}

JsonNode *error_node(const std::string &message) {
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "error", message.c_str());
  json_node_take_object(n, o);
  return n;
}

void on_tools(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer data) {
  auto *cal = static_cast<Calendar *>(data);
  if (g_strcmp0(soup_server_message_get_method(msg), "POST") != 0) {
    reply(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, error_node("POST a tool call"));
    return;
  }
  SoupMessageBody *body = soup_server_message_get_request_body(msg);
  GBytes *bytes = soup_message_body_flatten(body);
  gsize len = 0;
  const char *data_ptr = static_cast<const char *>(g_bytes_get_data(bytes, &len));
  JsonParser *parser = json_parser_new();
  GError *err = nullptr;
  bool ok = json_parser_load_from_data(parser, data_ptr ? data_ptr : "", static_cast<gssize>(len), &err) &&
            JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser));
  g_bytes_unref(bytes);
  if (!ok) {
    reply(msg, SOUP_STATUS_BAD_REQUEST, error_node(err ? err->message : "the body is not a JSON object"));
    g_clear_error(&err);
    g_object_unref(parser);
    return;
  }
  JsonObject *call = json_node_get_object(json_parser_get_root(parser));
  std::string name = json_object_has_member(call, "name") ? json_object_get_string_member(call, "name") : "";
  std::string call_sid =
      json_object_has_member(call, "call_sid") && json_object_get_string_member(call, "call_sid")
          ? json_object_get_string_member(call, "call_sid")
          : "";
  /* arguments: an object, or the model's raw string */
  JsonObject *args = nullptr;
  JsonParser *arg_parser = nullptr;
  if (json_object_has_member(call, "arguments")) {
    JsonNode *a = json_object_get_member(call, "arguments");
    if (JSON_NODE_HOLDS_OBJECT(a)) {
      args = json_node_get_object(a);
    } else if (JSON_NODE_HOLDS_VALUE(a) && json_node_get_value_type(a) == G_TYPE_STRING) {
      arg_parser = json_parser_new();
      if (json_parser_load_from_data(arg_parser, json_node_get_string(a), -1, nullptr) &&
          JSON_NODE_HOLDS_OBJECT(json_parser_get_root(arg_parser)))
        args = json_node_get_object(json_parser_get_root(arg_parser));
    }
  }
  JsonNode *result = nullptr;
  guint status = SOUP_STATUS_OK;
  if (name == "findAvailability") {
    result = cal->find(args);
  } else if (name == "bookAppointment") {
    result = cal->book(args, call_sid);
  } else {
    status = SOUP_STATUS_NOT_FOUND;
    result = error_node("this calendar has no tool named '" + name + "'");
  }
  gchar *shown = json_to_string(result, FALSE);
  g_print("demo-calendar: %s -> %s\n", name.c_str(), shown);
  g_free(shown);
  reply(msg, status, result);
  if (arg_parser)
    g_object_unref(arg_parser);
  g_object_unref(parser);
}

gboolean on_signal(gpointer loop) {
  g_main_loop_quit(static_cast<GMainLoop *>(loop));
  return G_SOURCE_REMOVE;
}

} // namespace

int main(int argc, char **argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0); /* scripts wait for the "serving" line */
  gchar *address = nullptr, *bookings = nullptr;
  gint port = 8770;
  GOptionEntry entries[] = {
      {"address", 'a', 0, G_OPTION_ARG_STRING, &address, "Address to listen on (default 127.0.0.1)", "IP"},
      {"port", 'p', 0, G_OPTION_ARG_INT, &port, "Port to listen on, 0 for any free port (default 8770)", "PORT"},
      {"bookings", 0, 0, G_OPTION_ARG_FILENAME, &bookings, "Append each booking to FILE as a JSON line", "FILE"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  GOptionContext *octx = g_option_context_new("- the example receptionist's calendar tools (tool-url)");
  g_option_context_set_summary(octx,
                               "Answers findAvailability and bookAppointment (agents/receptionist-tools.json) "
                               "POSTed by realtimemodel's tool-url, from a made-up calendar kept in memory.");
  g_option_context_add_main_entries(octx, entries, nullptr);
  GError *err = nullptr;
  if (!g_option_context_parse(octx, &argc, &argv, &err)) {
    g_printerr("demo-calendar: %s\n", err->message);
    g_error_free(err);
    g_option_context_free(octx);
    return 2;
  }
  g_option_context_free(octx);

  Calendar cal;
  if (bookings)
    cal.bookings_file = bookings;
  std::string addr = address ? address : "127.0.0.1";
  g_free(address);
  g_free(bookings);

  SoupServer *server = soup_server_new("server-header", "demo-calendar", nullptr);
  soup_server_add_handler(server, "/tools", on_tools, &cal, nullptr);
  GSocketAddress *sa = g_inet_socket_address_new_from_string(addr.c_str(), static_cast<guint>(port));
  if (!sa) {
    g_printerr("demo-calendar: '%s' is not an IP address\n", addr.c_str());
    g_object_unref(server);
    return 2;
  }
  if (!soup_server_listen(server, sa, static_cast<SoupServerListenOptions>(0), &err)) {
    g_printerr("demo-calendar: cannot listen on %s:%d: %s\n", addr.c_str(), port, err->message);
    g_error_free(err);
    g_object_unref(sa);
    g_object_unref(server);
    return 1;
  }
  g_object_unref(sa);
  int bound = port;
  GSList *listeners = soup_server_get_listeners(server);
  if (listeners) {
    GSocketAddress *local = g_socket_get_local_address(G_SOCKET(listeners->data), nullptr);
    if (local) {
      bound = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
      g_object_unref(local);
    }
  }
  g_slist_free(listeners);
  g_print("demo-calendar: serving http://%s:%d/tools\n", addr.c_str(), bound);

  GMainLoop *loop = g_main_loop_new(nullptr, FALSE);
  g_unix_signal_add(SIGINT, on_signal, loop);
  g_unix_signal_add(SIGTERM, on_signal, loop);
  g_main_loop_run(loop);
  g_main_loop_unref(loop);
  soup_server_disconnect(server);
  g_object_unref(server);
  g_print("demo-calendar: %zu booking(s)\n", cal.booked.size());
  return 0;
}
