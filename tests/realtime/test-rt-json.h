/* gst-phone-agent: reading JSON in realtime tests ("a.b.c" paths) */
#pragma once

#include <json-glib/json-glib.h>

#include <string>

namespace rtjson {

/* A parsed document; get("session.audio.input.format.type"). */
class Doc {
public:
  explicit Doc(const std::string &text) {
    parser_ = json_parser_new();
    ok_ = json_parser_load_from_data(parser_, text.data(), static_cast<gssize>(text.size()), nullptr);
  }
  ~Doc() { g_object_unref(parser_); }
  Doc(const Doc &) = delete;
  Doc &operator=(const Doc &) = delete;
  bool ok() const { return ok_; }

  /* The node at @path (dot-separated members, [n] for array elements), or nullptr. */
  JsonNode *node(const std::string &path) const {
    if (!ok_)
      return nullptr;
    JsonNode *n = json_parser_get_root(parser_);
    size_t i = 0;
    while (n && i < path.size()) {
      size_t dot = path.find('.', i);
      std::string part = path.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
      i = dot == std::string::npos ? path.size() : dot + 1;
      size_t br = part.find('[');
      std::string member = part.substr(0, br);
      if (!member.empty()) {
        if (!JSON_NODE_HOLDS_OBJECT(n) || !json_object_has_member(json_node_get_object(n), member.c_str()))
          return nullptr;
        n = json_object_get_member(json_node_get_object(n), member.c_str());
      }
      while (br != std::string::npos) {
        size_t close = part.find(']', br);
        guint idx = static_cast<guint>(std::stoul(part.substr(br + 1, close - br - 1)));
        if (!JSON_NODE_HOLDS_ARRAY(n) || idx >= json_array_get_length(json_node_get_array(n)))
          return nullptr;
        n = json_array_get_element(json_node_get_array(n), idx);
        br = part.find('[', close);
      }
    }
    return n;
  }
  bool has(const std::string &path) const { return node(path) != nullptr; }
  bool is_null(const std::string &path) const {
    JsonNode *n = node(path);
    return n && JSON_NODE_HOLDS_NULL(n);
  }
  std::string str(const std::string &path) const {
    JsonNode *n = node(path);
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
      return "<none>";
    return json_node_get_string(n);
  }
  gint64 num(const std::string &path) const {
    JsonNode *n = node(path);
    if (!n || !JSON_NODE_HOLDS_VALUE(n))
      return -12345;
    return json_node_get_value_type(n) == G_TYPE_DOUBLE ? static_cast<gint64>(json_node_get_double(n))
                                                        : json_node_get_int(n);
  }
  double dbl(const std::string &path) const {
    JsonNode *n = node(path);
    if (!n || !JSON_NODE_HOLDS_VALUE(n))
      return -12345;
    return json_node_get_value_type(n) == G_TYPE_DOUBLE ? json_node_get_double(n)
                                                        : static_cast<double>(json_node_get_int(n));
  }
  int boolean(const std::string &path) const {
    JsonNode *n = node(path);
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
      return -1;
    return json_node_get_boolean(n) ? 1 : 0;
  }
  guint len(const std::string &path) const {
    JsonNode *n = node(path);
    if (n && JSON_NODE_HOLDS_ARRAY(n))
      return json_array_get_length(json_node_get_array(n));
    if (n && JSON_NODE_HOLDS_OBJECT(n))
      return json_object_get_size(json_node_get_object(n));
    return 0;
  }

private:
  JsonParser *parser_ = nullptr;
  bool ok_ = false;
};

} // namespace rtjson
