/* twilio-emulator: capture writer and reader */
#include "capture.h"

#include <json-glib/json-glib.h>

#include <cerrno>
#include <cstring>

#include "pa-audio.h"

namespace emu {

namespace {

void quoted(std::string &out, std::string_view s) {
  out.push_back('"');
  pa::twilio::json_escape_append(out, s);
  out.push_back('"');
}

std::string head(int call, int64_t t_us, const char *from, const char *type) {
  char t[48];
  g_snprintf(t, sizeof t, "%.3f", static_cast<double>(t_us) / 1000.0);
  std::string s = "{\"call\":" + std::to_string(call) + ",\"t_ms\":" + t + ",\"from\":\"" + from +
                  "\",\"type\":\"" + type + "\"";
  return s;
}

} // namespace

CaptureWriter::~CaptureWriter() { close(); }

bool CaptureWriter::open(const std::string &path, std::string &error) {
  close();
  file_ = fopen(path.c_str(), "w");
  if (!file_) {
    error = "cannot open capture file " + path + ": " + strerror(errno);
    return false;
  }
  return true;
}

void CaptureWriter::write_line(const std::string &line) {
  if (!file_)
    return;
  fwrite(line.data(), 1, line.size(), file_);
  fputc('\n', file_);
}

void CaptureWriter::close() {
  if (file_) {
    fclose(file_);
    file_ = nullptr;
  }
}

std::string CaptureWriter::text_line(int call, int64_t t_us, const char *from, std::string_view text,
                                     const char *inject) {
  std::string s = head(call, t_us, from, "text");
  if (inject) {
    s += ",\"inject\":";
    quoted(s, inject);
  }
  s += ",\"data\":";
  quoted(s, text);
  s += "}";
  return s;
}

std::string CaptureWriter::binary_line(int call, int64_t t_us, const char *from, const uint8_t *data, size_t len,
                                       const char *inject) {
  std::string s = head(call, t_us, from, "binary");
  if (inject) {
    s += ",\"inject\":";
    quoted(s, inject);
  }
  s += ",\"data_b64\":\"" + pa::base64_encode(data, len) + "\"}";
  return s;
}

std::string CaptureWriter::close_line(int call, int64_t t_us, const char *from, int code, std::string_view reason) {
  std::string s = head(call, t_us, from, "close");
  s += ",\"code\":" + std::to_string(code) + ",\"reason\":";
  quoted(s, reason);
  s += "}";
  return s;
}

std::string CaptureWriter::webhook_line(int call, int64_t t_us, std::string_view url,
                                        const pa::twilio::Params &params) {
  std::string s = head(call, t_us, "twilio", "webhook");
  s += ",\"url\":";
  quoted(s, url);
  s += ",\"params\":{";
  for (size_t i = 0; i < params.size(); i++) {
    if (i)
      s += ",";
    quoted(s, params[i].first);
    s += ":";
    quoted(s, params[i].second);
  }
  s += "}}";
  return s;
}

std::string CaptureWriter::twiml_line(int call, int64_t t_us, int status, std::string_view body) {
  std::string s = head(call, t_us, "server", "twiml");
  s += ",\"status\":" + std::to_string(status) + ",\"body\":";
  quoted(s, body);
  s += "}";
  return s;
}

bool read_capture(const std::string &path, int call, std::vector<CapturedMessage> &out, std::string &error) {
  out.clear();
  gchar *contents = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &contents, &len, &err)) {
    error = std::string("cannot read capture: ") + err->message;
    g_error_free(err);
    return false;
  }
  std::string_view all(contents, len);
  JsonParser *parser = json_parser_new();
  int chosen = call;
  size_t line_no = 0;
  bool ok = true;
  for (size_t pos = 0; pos < all.size() && ok;) {
    size_t nl = all.find('\n', pos);
    std::string_view line = all.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? all.size() : nl + 1;
    line_no++;
    if (line.empty())
      continue;
    if (!json_parser_load_from_data(parser, line.data(), static_cast<gssize>(line.size()), &err)) {
      error = path + ":" + std::to_string(line_no) + ": " + err->message;
      g_clear_error(&err);
      ok = false;
      break;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
      error = path + ":" + std::to_string(line_no) + ": not a JSON object";
      ok = false;
      break;
    }
    JsonObject *o = json_node_get_object(root);
    int c = static_cast<int>(json_object_get_int_member_with_default(o, "call", 1));
    if (chosen == 0)
      chosen = c;
    if (c != chosen)
      continue;
    const char *from = json_object_get_string_member_with_default(o, "from", "");
    const char *type = json_object_get_string_member_with_default(o, "type", "");
    if (strcmp(from, "twilio") != 0 || strcmp(type, "text") != 0 || json_object_has_member(o, "inject"))
      continue;
    CapturedMessage m;
    m.t_us = static_cast<int64_t>(json_object_get_double_member_with_default(o, "t_ms", 0) * 1000.0);
    m.text = json_object_get_string_member_with_default(o, "data", "");
    out.push_back(std::move(m));
  }
  g_object_unref(parser);
  g_free(contents);
  if (ok && out.empty()) {
    error = path + ": no messages from Twilio for call " + std::to_string(call);
    ok = false;
  }
  return ok;
}

} // namespace emu
