/* gst-phone-agent: the fast paths of pa::twilio::parse_inbound (media and
 * mark messages in Twilio's exact layout, then in any layout, without
 * json-glib, added for the server's CPU budget) must give exactly what the
 * json-glib reference gives, for well-formed messages and for every mutation
 * of them. */
#include <random>

#include "../common/pa-check.h"
#include "../common/pa-mutate.h"
#include "twilio-protocol.h"

using namespace pa::twilio;

namespace {

std::string describe(const InboundMessage &m) {
  std::string s = std::string(event_name(m.event)) + "|" + m.event_name + "|" + m.stream_sid + "|" +
                  std::to_string(m.sequence_number) + "|" + m.protocol + "|" + m.version + "|" + m.track + "|" +
                  std::to_string(m.chunk) + "|" + std::to_string(m.timestamp_ms) + "|" + m.digit + "|" +
                  m.mark_name + "|" + m.stop_account_sid + "|" + m.stop_call_sid + "|payload:";
  for (uint8_t b : m.payload)
    s += std::to_string(b) + ",";
  s += "|start:" + m.start.account_sid + "," + m.start.stream_sid + "," + m.start.call_sid + "," + m.start.encoding +
       "," + std::to_string(m.start.sample_rate) + "," + std::to_string(m.start.channels);
  for (const auto &t : m.start.tracks)
    s += ",t=" + t;
  for (const auto &[k, v] : m.start.custom_parameters)
    s += ",p=" + k + "=" + v;
  return s;
}

/* A message with every field set, as the one parsed before may leave it. */
InboundMessage used_message() {
  InboundMessage m;
  m.event = Event::Stop;
  m.event_name = m.stream_sid = m.protocol = m.version = m.track = m.digit = m.mark_name = "left over";
  m.stop_account_sid = m.stop_call_sid = "left over";
  m.sequence_number = m.chunk = m.timestamp_ms = 99;
  m.payload = {1, 2, 3};
  m.start.account_sid = m.start.stream_sid = m.start.call_sid = m.start.encoding = "left over";
  m.start.tracks = {"left over"};
  m.start.custom_parameters = {{"left", "over"}};
  m.start.sample_rate = m.start.channels = 99;
  return m;
}

/* Both parsers on @text: same result, same message, same error; and the
 * same message when parsed into one that held another (as the server's
 * reading thread reuses one). */
void check_same(const std::string &text) {
  InboundMessage a, b, c = used_message();
  std::string ea, eb, ec;
  ParseResult ra = parse_inbound(text, a, ea);
  ParseResult rb = parse_inbound_reference(text, b, eb);
  ParseResult rc = parse_inbound(text, c, ec);
  fail_unless(ra == rb, "'%s': %s vs reference %s", text.c_str(), parse_result_name(ra), parse_result_name(rb));
  fail_unless(rc == ra, "'%s': %s into a used message, %s into a new one", text.c_str(), parse_result_name(rc),
              parse_result_name(ra));
  if (ra == ParseResult::Ok) {
    assert_str(describe(a), describe(b));
    assert_str(describe(c), describe(a));
  } else {
    assert_str(ea, eb);
  }
}

/* A media message laid out as Twilio sends it, with these values as they are. */
std::string exact_media(const char *seq, const char *sid, const char *track, const char *ts, const char *payload) {
  return std::string("{\"event\":\"media\",\"sequenceNumber\":\"") + seq + "\",\"streamSid\":\"" + sid +
         "\",\"media\":{\"track\":\"" + track + "\",\"chunk\":\"2\",\"timestamp\":\"" + ts + "\",\"payload\":\"" +
         payload + "\"}}";
}

std::vector<std::string> corpus() {
  std::vector<uint8_t> audio(160);
  for (size_t i = 0; i < audio.size(); i++)
    audio[i] = static_cast<uint8_t>(i * 7);
  StartInfo si;
  si.account_sid = "AC1";
  si.stream_sid = "MZ1";
  si.call_sid = "CA1";
  si.tracks = {"inbound"};
  si.custom_parameters = {{"from", "+14155551212"}, {"tenant", "acme"}};
  return {
      build_inbound_media(3, "MZ1", 2, 20, audio.data(), audio.size()),
      build_inbound_media(4, "MZ1", 3, 40, audio.data(), 1),
      build_inbound_media(5, "MZ1", 4, 60, audio.data(), 0),
      build_mark_echo(6, "MZ1", "item:120:g0:m7"),
      build_mark_echo(7, "MZ1", ""),
      build_connected(),
      build_start(1, si),
      build_dtmf(8, "MZ1", "5"),
      build_stop(9, "MZ1", "AC1", "CA1"),
      /* Twilio's exact layout (read by the exact path) with edge values */
      exact_media("999999999999999999", "MZ1", "inbound", "0020", "AAEC"),
      exact_media("9223372036854775807", "MZ1", "inbound", "20", "AAEC"),
      exact_media("9999999999999999999", "MZ1", "inbound", "20", "AAEC"),
      exact_media("", "MZ1", "inbound", "20", "AAEC"),
      exact_media("3", "", "", "20", ""),
      exact_media("3", "MZ\\\"1", "inbound", "20", "AAEC"),
      exact_media("3", "MZ1", "in\\u0062ound", "20", "AAEC"),
      exact_media("3", "MZ1", "inbound", "2 0", "AAEC"),
      exact_media("3", "MZ1", "inbound", "20", "AAE"),
      exact_media("3", "MZ1", "inbound", "20", "AA=C"),
      exact_media("3", "MZ1", "inbound", "20", "AAEC\\u0041"),
      exact_media("3", "MZ1", "inbound", "20", "AAEC") + " ",
      exact_media("3", "MZ1", "inbound", "20", "AAEC") + "}",
      "{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a:1:g0:m2\"}}",
      "{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\\u0041\"}}",
      "{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\"},\"x\":\"y\"}",
      /* spellings json-glib accepts */
      "{ \"event\" : \"media\" , \"streamSid\":\"MZ1\",\"media\":{ \"timestamp\":\"20\",\"payload\":\"AAEC\" } }",
      "{\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"20\"},\"event\":\"media\"}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":20}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\" 20\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"+20\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"20x\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"-20\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"0020\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"999999999999999999\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"9223372036854775807\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"9223372036854775808\"}}",
      "{\"event\":\"media\",\"sequenceNumber\":\"x\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"20\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAE\",\"timestamp\":\"20\"}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\"}}",
      "{\"event\":\"media\",\"media\":\"AAEC\"}",
      "{\"event\":\"media\",\"event\":\"mark\",\"mark\":{\"name\":\"n\"}}",
      "{\"event\":\"mark\",\"mark\":{\"name\":\"a\",\"name\":\"b\"}}",
      "{\"event\":\"mark\",\"mark\":{\"name\":\"a\\\"b\"}}",
      "{\"event\":\"mark\",\"mark\":{\"name\":\"caf\xc3\xa9\"}}",
      "{\"event\":\"mark\",\"mark\":{\"name\":7}}",
      "{\"event\":\"mark\",\"mark\":{}}",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"20\"}} x",
      "{\"event\":\"media\",\"media\":{\"payload\":\"AAEC\",\"timestamp\":\"20\"},}",
      "[]",
      "",
      "{}",
  };
}

} // namespace

GST_START_TEST(test_corpus) {
  for (const auto &t : corpus())
    check_same(t);
}
GST_END_TEST;

/* Random edits of every corpus message: byte flips, deletions, insertions
 * of JSON-significant characters. */
GST_START_TEST(test_mutations) {
  std::mt19937 rng(7);
  for (const auto &base : corpus())
    pa_for_each_json_mutation(base, 600, rng, check_same);
}
GST_END_TEST;

static Suite *inbound_parser_suite(void) {
  Suite *s = suite_create("inbound-parser");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_corpus);
  tcase_add_test(tc, test_mutations);
  return s;
}

GST_CHECK_MAIN(inbound_parser);
