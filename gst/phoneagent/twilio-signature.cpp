/* gst-phone-agent: X-Twilio-Signature */
#include "twilio-signature.h"

#include <glib.h>

#include <algorithm>

#include "pa-audio.h"

namespace pa::twilio {

std::string compute_signature(std::string_view auth_token, std::string_view url, const Params &params) {
  Params sorted = params;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string data(url);
  for (const auto &[k, v] : sorted) {
    data += k;
    data += v;
  }
  GHmac *hmac = g_hmac_new(G_CHECKSUM_SHA1, reinterpret_cast<const guchar *>(auth_token.data()), auth_token.size());
  g_hmac_update(hmac, reinterpret_cast<const guchar *>(data.data()), static_cast<gssize>(data.size()));
  guint8 digest[20];
  gsize len = sizeof digest;
  g_hmac_get_digest(hmac, digest, &len);
  g_hmac_unref(hmac);
  return base64_encode(digest, len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); i++)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && g_ascii_isxdigit(s[i + 1]) && g_ascii_isxdigit(s[i + 2])) {
      out.push_back(static_cast<char>((g_ascii_xdigit_value(s[i + 1]) << 4) | g_ascii_xdigit_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Params parse_form(std::string_view body) {
  Params out;
  size_t pos = 0;
  while (pos <= body.size() && !body.empty()) {
    size_t amp = body.find('&', pos);
    std::string_view pair = body.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos)
        out.emplace_back(percent_decode(pair, true), "");
      else
        out.emplace_back(percent_decode(pair.substr(0, eq), true), percent_decode(pair.substr(eq + 1), true));
    }
    if (amp == std::string_view::npos)
      break;
    pos = amp + 1;
  }
  return out;
}

namespace {
/* Characters node's querystring.escape leaves alone. */
bool qs_unreserved(unsigned char c) {
  return g_ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '!' || c == '~' || c == '*' || c == '\'' ||
         c == '(' || c == ')';
}

std::string qs_escape(std::string_view s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (qs_unreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

struct UrlParts {
  std::string scheme;    /* "https" */
  std::string authority; /* user info + host, without port */
  std::string port;      /* "" when absent */
  std::string path;      /* path, possibly empty */
  std::string query;     /* without '?', has_query tells if present */
  bool has_query = false;
  std::string fragment;  /* with '#' */
};

bool split_url(std::string_view url, UrlParts &p) {
  size_t se = url.find("://");
  if (se == std::string_view::npos)
    return false;
  p.scheme = std::string(url.substr(0, se));
  std::string_view rest = url.substr(se + 3);
  size_t pe = rest.find_first_of("/?#");
  std::string_view hostport = rest.substr(0, pe);
  rest = pe == std::string_view::npos ? std::string_view() : rest.substr(pe);
  size_t colon = hostport.rfind(':');
  size_t bracket = hostport.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    p.authority = std::string(hostport.substr(0, colon));
    p.port = std::string(hostport.substr(colon + 1));
  } else {
    p.authority = std::string(hostport);
  }
  size_t hash = rest.find('#');
  if (hash != std::string_view::npos) {
    p.fragment = std::string(rest.substr(hash));
    rest = rest.substr(0, hash);
  }
  size_t q = rest.find('?');
  if (q != std::string_view::npos) {
    p.has_query = true;
    p.query = std::string(rest.substr(q + 1));
    rest = rest.substr(0, q);
  }
  p.path = std::string(rest);
  return true;
}

std::string join_url(const UrlParts &p, const std::string &port, const std::string &query) {
  std::string s = p.scheme + "://" + p.authority;
  if (!port.empty())
    s += ":" + port;
  s += p.path;
  if (p.has_query)
    s += "?" + query;
  s += p.fragment;
  return s;
}

std::string default_port(const std::string &scheme) {
  gchar *lower = g_ascii_strdown(scheme.c_str(), -1);
  std::string l(lower);
  g_free(lower);
  return (l == "https" || l == "wss") ? "443" : "80";
}
} // namespace

std::vector<std::string> url_variants(std::string_view url) {
  std::vector<std::string> out;
  auto add = [&out](std::string s) {
    if (std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(std::move(s));
  };
  UrlParts p;
  if (!split_url(url, p)) {
    add(std::string(url));
    return out;
  }
  std::string with_port = p.port.empty() ? default_port(p.scheme) : p.port;
  std::string legacy;
  if (p.has_query) {
    Params q = parse_form(p.query);
    for (size_t i = 0; i < q.size(); i++) {
      if (i)
        legacy += "&";
      legacy += qs_escape(q[i].first) + "=" + qs_escape(q[i].second);
    }
  }
  add(std::string(url));
  add(join_url(p, "", p.query));
  add(join_url(p, with_port, p.query));
  if (p.has_query) {
    add(join_url(p, "", legacy));
    add(join_url(p, with_port, legacy));
  }
  return out;
}

bool validate_request(std::string_view auth_token, std::string_view url, const Params &params,
                      std::string_view signature) {
  if (auth_token.empty() || signature.empty())
    return false;
  bool ok = false;
  for (const auto &candidate : url_variants(url))
    ok |= constant_time_equal(compute_signature(auth_token, candidate, params), signature);
  return ok;
}

std::string sha256_hex(std::string_view data) {
  gchar *hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(data.data()),
                                           data.size());
  std::string s(hex);
  g_free(hex);
  return s;
}

bool validate_request_with_body(std::string_view auth_token, std::string_view url, std::string_view body,
                                std::string_view signature) {
  UrlParts p;
  if (!split_url(url, p) || !p.has_query)
    return false;
  std::string hash;
  for (const auto &[k, v] : parse_form(p.query))
    if (k == "bodySHA256")
      hash = v;
  if (hash.empty())
    return false;
  bool sig_ok = validate_request(auth_token, url, {}, signature);
  bool body_ok = constant_time_equal(sha256_hex(body), hash);
  return sig_ok && body_ok;
}

bool validate_websocket(std::string_view auth_token, std::string_view host, std::string_view path,
                        std::string_view signature) {
  std::string url = "wss://" + std::string(host) + std::string(path);
  return validate_request(auth_token, url, {}, signature);
}

std::string form_encode(const Params &params) {
  std::string out;
  for (size_t i = 0; i < params.size(); i++) {
    if (i)
      out += "&";
    out += qs_escape(params[i].first) + "=" + qs_escape(params[i].second);
  }
  return out;
}

} // namespace pa::twilio
