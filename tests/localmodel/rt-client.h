/* gst-phone-agent: a minimal Realtime protocol client for the local model
 * tests (libsoup WebSocket on the test thread's default main context). */
#pragma once

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <functional>
#include <string>
#include <vector>

#include "../common/pa-check.h"

class RtClient {
public:
  RtClient() = default;
  RtClient(const RtClient &) = delete;
  RtClient &operator=(const RtClient &) = delete;

  ~RtClient() {
    if (ws_) {
      g_signal_handlers_disconnect_by_data(ws_, this);
      if (soup_websocket_connection_get_state(ws_) == SOUP_WEBSOCKET_STATE_OPEN)
        soup_websocket_connection_close(ws_, SOUP_WEBSOCKET_CLOSE_NORMAL, nullptr);
      g_object_unref(ws_);
    }
    for (auto *n : log_)
      json_node_unref(n);
    if (session_)
      g_object_unref(session_);
  }

  /* Connects to @url (ws://...), with the beta header when asked. */
  bool connect(const std::string &url, bool beta_header = false, const char *const *protocols = nullptr,
               int timeout_ms = 5000) {
    session_ = soup_session_new();
    SoupMessage *msg = soup_message_new("GET", url.c_str());
    if (!msg)
      return false;
    SoupMessageHeaders *h = soup_message_get_request_headers(msg);
    soup_message_headers_append(h, "Authorization", "Bearer sk-test-not-a-secret");
    if (beta_header)
      soup_message_headers_append(h, "OpenAI-Beta", "realtime=v1");
    bool done = false;
    struct Ctx {
      RtClient *self;
      bool *done;
    } c{this, &done};
    soup_session_websocket_connect_async(
        session_, msg, nullptr, const_cast<char **>(protocols), G_PRIORITY_DEFAULT, nullptr,
        [](GObject *src, GAsyncResult *res, gpointer d) {
          auto *ctx = static_cast<Ctx *>(d);
          GError *err = nullptr;
          ctx->self->ws_ = soup_session_websocket_connect_finish(SOUP_SESSION(src), res, &err);
          if (err) {
            GST_WARNING("websocket connect failed: %s", err->message);
            g_error_free(err);
          }
          *ctx->done = true;
        },
        &c);
    run_until([&] { return done; }, timeout_ms);
    g_object_unref(msg);
    if (!ws_)
      return false;
    soup_websocket_connection_set_max_incoming_payload_size(ws_, 64 * 1024 * 1024);
    g_signal_connect(ws_, "message", G_CALLBACK(on_message), this);
    g_signal_connect(ws_, "closed", G_CALLBACK(on_closed), this);
    return true;
  }

  std::string protocol() const {
    const char *p = ws_ ? soup_websocket_connection_get_protocol(ws_) : nullptr;
    return p ? p : "";
  }
  void send(const std::string &json) { soup_websocket_connection_send_text(ws_, json.c_str()); }
  void send_binary(const void *data, size_t len) { soup_websocket_connection_send_binary(ws_, data, len); }

  /* Iterates the default context until @cond or the timeout; TRUE if @cond. */
  static bool run_until(const std::function<bool()> &cond, int timeout_ms) {
    bool timed_out = false;
    GSource *t = g_timeout_source_new(static_cast<guint>(timeout_ms));
    g_source_set_callback(
        t,
        [](gpointer d) -> gboolean {
          *static_cast<bool *>(d) = true;
          return G_SOURCE_REMOVE;
        },
        &timed_out, nullptr);
    g_source_attach(t, nullptr);
    while (!cond() && !timed_out)
      g_main_context_iteration(nullptr, TRUE);
    g_source_destroy(t);
    g_source_unref(t);
    return cond();
  }

  /* The next event of @type after the cursor (which moves past it), or NULL. */
  JsonObject *wait_for(const std::string &type, int timeout_ms = 10000) {
    size_t found = SIZE_MAX;
    run_until(
        [&] {
          for (size_t i = cursor_; i < log_.size(); i++)
            if (type_of(i) == type) {
              found = i;
              return true;
            }
          return closed_;
        },
        timeout_ms);
    if (found == SIZE_MAX)
      return nullptr;
    cursor_ = found + 1;
    return json_node_get_object(log_[found]);
  }

  /* Waits a little and reports whether an event of @type arrived after the cursor. */
  bool saw_within(const std::string &type, int ms) {
    size_t start = cursor_;
    JsonObject *o = wait_for(type, ms);
    if (!o)
      cursor_ = start;
    return o != nullptr;
  }

  /* Event types received from index @from (all of them by default). */
  std::vector<std::string> types(size_t from = 0) const {
    std::vector<std::string> t;
    for (size_t i = from; i < log_.size(); i++)
      t.push_back(type_of(i));
    return t;
  }
  size_t size() const { return log_.size(); }
  size_t cursor() const { return cursor_; }
  void set_cursor(size_t c) { cursor_ = c; }
  JsonObject *at(size_t i) const { return json_node_get_object(log_[i]); }
  bool closed() const { return closed_; }
  gushort close_code() const { return close_code_; }

  std::string type_of(size_t i) const {
    JsonObject *o = json_node_get_object(log_[i]);
    return json_object_has_member(o, "type") ? json_object_get_string_member(o, "type") : "";
  }

private:
  static void on_message(SoupWebsocketConnection *, gint type, GBytes *message, gpointer d) {
    auto *self = static_cast<RtClient *>(d);
    fail_unless(type == SOUP_WEBSOCKET_DATA_TEXT, "server sent a binary frame");
    gsize len = 0;
    const char *data = static_cast<const char *>(g_bytes_get_data(message, &len));
    JsonParser *p = json_parser_new();
    GError *err = nullptr;
    fail_unless(json_parser_load_from_data(p, data, static_cast<gssize>(len), &err), "server sent bad JSON: %.200s",
                data);
    JsonNode *root = json_parser_get_root(p);
    fail_unless(root && JSON_NODE_HOLDS_OBJECT(root), "server event is not an object");
    JsonObject *o = json_node_get_object(root);
    fail_unless(json_object_has_member(o, "type") && json_object_has_member(o, "event_id"),
                "event without type/event_id: %.200s", data);
    self->log_.push_back(json_node_copy(root));
    g_object_unref(p);
  }
  static void on_closed(SoupWebsocketConnection *ws, gpointer d) {
    auto *self = static_cast<RtClient *>(d);
    self->closed_ = true;
    self->close_code_ = soup_websocket_connection_get_close_code(ws);
  }

  SoupSession *session_ = nullptr;
  SoupWebsocketConnection *ws_ = nullptr;
  std::vector<JsonNode *> log_;
  size_t cursor_ = 0;
  bool closed_ = false;
  gushort close_code_ = 0;
};

/* Small JSON accessors for assertions. */
inline JsonObject *jobj(JsonObject *o, const char *k) {
  fail_unless(o && json_object_has_member(o, k), "missing object member %s", k);
  JsonNode *n = json_object_get_member(o, k);
  fail_unless(JSON_NODE_HOLDS_OBJECT(n), "%s is not an object", k);
  return json_node_get_object(n);
}
inline std::string jstr(JsonObject *o, const char *k) {
  fail_unless(o && json_object_has_member(o, k), "missing string member %s", k);
  JsonNode *n = json_object_get_member(o, k);
  fail_unless(JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING, "%s is not a string", k);
  return json_node_get_string(n);
}
inline gint64 jint(JsonObject *o, const char *k) {
  fail_unless(o && json_object_has_member(o, k), "missing number member %s", k);
  return json_object_get_int_member(o, k);
}
inline JsonArray *jarr(JsonObject *o, const char *k) {
  fail_unless(o && json_object_has_member(o, k), "missing array member %s", k);
  JsonNode *n = json_object_get_member(o, k);
  fail_unless(JSON_NODE_HOLDS_ARRAY(n), "%s is not an array", k);
  return json_node_get_array(n);
}
inline bool jnull(JsonObject *o, const char *k) {
  return o && json_object_has_member(o, k) && JSON_NODE_HOLDS_NULL(json_object_get_member(o, k));
}
