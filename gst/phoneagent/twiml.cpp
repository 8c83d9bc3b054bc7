/* gst-phone-agent: TwiML */
#include "twiml.h"

#include <glib.h>

#include <cstring>

namespace pa::twilio {

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    case '\'': out += "&apos;"; break;
    default:
      /* control characters are not allowed in XML 1.0: drop them */
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
        break;
      out.push_back(c);
    }
  }
  return out;
}

std::string build_connect_stream(const ConnectStream &c) {
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>";
  if (!c.say_before.empty())
    x += "<Say>" + xml_escape(c.say_before) + "</Say>";
  x += "<Connect><Stream url=\"" + xml_escape(c.url) + "\"";
  if (!c.name.empty())
    x += " name=\"" + xml_escape(c.name) + "\"";
  if (!c.status_callback.empty())
    x += " statusCallback=\"" + xml_escape(c.status_callback) + "\"";
  x += ">";
  for (const auto &[k, v] : c.parameters)
    x += "<Parameter name=\"" + xml_escape(k) + "\" value=\"" + xml_escape(v) + "\"/>";
  x += "</Stream></Connect>";
  if (!c.say_after.empty())
    x += "<Say>" + xml_escape(c.say_after) + "</Say>";
  if (c.hangup_after)
    x += "<Hangup/>";
  x += "</Response>";
  return x;
}

std::string build_say_hangup(std::string_view message) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>" + xml_escape(message) +
         "</Say><Hangup/></Response>";
}

namespace {
std::string trim_slash(std::string_view s) {
  while (!s.empty() && s.back() == '/')
    s.remove_suffix(1);
  return std::string(s);
}
} // namespace

std::string stream_url(std::string_view public_url, std::string_view host_header, std::string_view stream_path) {
  if (!public_url.empty()) {
    std::string base = trim_slash(public_url);
    if (base.rfind("https://", 0) == 0)
      base = "wss://" + base.substr(8);
    else if (base.rfind("http://", 0) == 0)
      base = "ws://" + base.substr(7);
    else if (base.rfind("wss://", 0) != 0 && base.rfind("ws://", 0) != 0)
      base = "wss://" + base;
    return base + std::string(stream_path);
  }
  return "wss://" + std::string(host_header) + std::string(stream_path);
}

std::string request_url(std::string_view public_url, std::string_view scheme, std::string_view host_header,
                        std::string_view path, std::string_view raw_query) {
  std::string url;
  if (!public_url.empty())
    url = trim_slash(public_url) + std::string(path);
  else
    url = std::string(scheme) + "://" + std::string(host_header) + std::string(path);
  if (!raw_query.empty())
    url += "?" + std::string(raw_query);
  return url;
}

namespace {
struct ParseState {
  TwimlDocument *doc;
  std::vector<std::string> stack;
  std::string text;
  bool seen_connect = false;
};

void on_start(GMarkupParseContext *, const gchar *element, const gchar **names, const gchar **values,
              gpointer user_data, GError **) {
  auto *st = static_cast<ParseState *>(user_data);
  st->stack.emplace_back(element);
  st->text.clear();
  auto attr = [&](const char *n) -> const char * {
    for (int i = 0; names[i]; i++)
      if (strcmp(names[i], n) == 0)
        return values[i];
    return nullptr;
  };
  if (strcmp(element, "Connect") == 0) {
    st->seen_connect = true;
  } else if (strcmp(element, "Stream") == 0 && st->stack.size() >= 2 && st->stack[st->stack.size() - 2] == "Connect") {
    st->doc->has_stream = true;
    if (const char *u = attr("url"))
      st->doc->stream.url = u;
    if (const char *n = attr("name"))
      st->doc->stream.name = n;
    if (const char *cb = attr("statusCallback"))
      st->doc->stream.status_callback = cb;
  } else if (strcmp(element, "Parameter") == 0 && st->stack.size() >= 2 &&
             st->stack[st->stack.size() - 2] == "Stream") {
    const char *n = attr("name");
    const char *v = attr("value");
    if (n)
      st->doc->stream.parameters.emplace_back(n, v ? v : "");
  } else if (strcmp(element, "Hangup") == 0) {
    st->doc->hangup = true;
  }
}

void on_end(GMarkupParseContext *, const gchar *element, gpointer user_data, GError **) {
  auto *st = static_cast<ParseState *>(user_data);
  if (strcmp(element, "Say") == 0) {
    if (!st->doc->says.empty())
      st->doc->says += " | ";
    st->doc->says += st->text;
    if (st->seen_connect)
      st->doc->stream.say_after = st->text;
    else
      st->doc->stream.say_before = st->text;
  }
  if (!st->stack.empty())
    st->stack.pop_back();
}

void on_text(GMarkupParseContext *, const gchar *text, gsize len, gpointer user_data, GError **) {
  static_cast<ParseState *>(user_data)->text.append(text, len);
}
} // namespace

bool parse_twiml(std::string_view xml, TwimlDocument &out, std::string &error) {
  out = TwimlDocument();
  out.stream.hangup_after = false;
  /* GMarkup does not take the XML declaration: skip it */
  std::string_view body = xml;
  if (body.rfind("<?xml", 0) == 0) {
    size_t end = body.find("?>");
    if (end == std::string_view::npos) {
      error = "unterminated XML declaration";
      return false;
    }
    body = body.substr(end + 2);
  }
  GMarkupParser parser = {on_start, on_end, on_text, nullptr, nullptr};
  ParseState st{&out, {}, {}, false};
  GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, G_MARKUP_TREAT_CDATA_AS_TEXT, &st, nullptr);
  GError *err = nullptr;
  bool ok = g_markup_parse_context_parse(ctx, body.data(), static_cast<gssize>(body.size()), &err) &&
            g_markup_parse_context_end_parse(ctx, &err);
  g_markup_parse_context_free(ctx);
  if (!ok) {
    error = std::string("invalid TwiML: ") + (err ? err->message : "?");
    g_clear_error(&err);
    return false;
  }
  out.stream.hangup_after = out.hangup;
  return true;
}

} // namespace pa::twilio
