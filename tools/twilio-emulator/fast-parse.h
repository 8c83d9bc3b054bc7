/* twilio-emulator: a fast path for the two messages a server sends ~50 times
 * a second per call, in the exact canonical spelling pa::twilio::build_media
 * and build_mark produce:
 *   {"event":"media","streamSid":"MZ...","media":{"payload":"<base64>"}}
 *   {"event":"mark","streamSid":"MZ...","mark":{"name":"<printable ASCII>"}}
 * Anything else (other key order, whitespace, escapes, other events, bad
 * base64) returns false and goes through pa::twilio::parse_outbound, which
 * stays the judge of what is valid. On true, @out is what parse_outbound
 * would have produced. Reuses @out's payload buffer (no allocation per frame
 * once warm). */
#pragma once

#include <string_view>

#include "twilio-protocol.h"

namespace emu {

bool parse_outbound_fast(std::string_view text, pa::twilio::OutboundMessage &out);

} // namespace emu
