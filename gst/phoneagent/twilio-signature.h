/* gst-phone-agent
 * X-Twilio-Signature: computing and validating it as Twilio's official
 * validators do (PROTOCOLS.md section B).
 */
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pa-api.h"
#include "twilio-protocol.h"

namespace pa::twilio {

/* base64(HMAC-SHA1(token, url + sorted name+value pairs)). Duplicate pairs are
 * signed once each, sorted by name then value (python's sorted(set())). */
PA_API std::string compute_signature(std::string_view auth_token, std::string_view url, const Params &params);

/* The spellings of @url a validator tries: as given, without the port, with
 * the scheme's default port added, and each of those with the query string
 * re-encoded the way node's legacy querystring does. No duplicates. */
PA_API std::vector<std::string> url_variants(std::string_view url);

/* Validates a form-encoded webhook (or a GET with params in the query when
 * @params is empty). Constant-time comparison on every candidate. */
PA_API bool validate_request(std::string_view auth_token, std::string_view url, const Params &params,
                             std::string_view signature);

/* Validates a JSON-body webhook: the URL carries bodySHA256=<hex sha256 of the
 * raw body>; the signature covers the URL alone. */
PA_API bool validate_request_with_body(std::string_view auth_token, std::string_view url, std::string_view body,
                                       std::string_view signature);

/* Validates the Media Streams WebSocket upgrade: URL wss://<host><path>, no
 * query, no params (Twilio's own agent SDK), with the port variants. */
PA_API bool validate_websocket(std::string_view auth_token, std::string_view host, std::string_view path,
                               std::string_view signature);

/* application/x-www-form-urlencoded: decode (with '+' as space, keeping
 * duplicates and order) and encode. */
PA_API Params parse_form(std::string_view body);
PA_API std::string form_encode(const Params &params);
PA_API std::string percent_decode(std::string_view s, bool plus_is_space);

PA_API bool constant_time_equal(std::string_view a, std::string_view b);

/* Lower-case hex SHA-256 of @data. */
PA_API std::string sha256_hex(std::string_view data);

} // namespace pa::twilio
