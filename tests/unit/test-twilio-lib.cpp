/* gst-phone-agent: unit tests of the Twilio library (protocol, signatures,
 * TwiML, audio helpers) */
#include "../common/pa-check.h"

#include <glib/gstdio.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "pa-audio.h"
#include "pa-playout.h"
#include "twilio-protocol.h"
#include "twilio-signature.h"
#include "twiml.h"

using namespace pa;
using namespace pa::twilio;

/* ------------------------------------------------------------ signatures */

static const char *kToken = "12345";
static const char *kUrl = "https://mycompany.com/myapp.php?foo=1&bar=2";

static Params vector_params() {
  return {{"CallSid", "CA1234567890ABCDE"},
          {"Caller", "+14158675309"},
          {"Digits", "1234"},
          {"From", "+14158675309"},
          {"To", "+18005551212"}};
}

GST_START_TEST(test_signature_vectors) {
  /* PROTOCOLS.md B.2, from twilio-python's test suite */
  assert_str(compute_signature(kToken, kUrl, vector_params()).c_str(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
  assert_str(
      compute_signature(kToken, "https://mycompany.com:443/myapp.php?foo=1&bar=2", vector_params()).c_str(),
      "kvajT1Ptam85bY51eRf/AJRuM3w=");
  assert_str(
      compute_signature(kToken, "http://mycompany.com:80/myapp.php?foo=1&bar=2", vector_params()).c_str(),
      "0ZXoZLH/DfblKGATFgpif+LLRf4=");
  assert_str(
      compute_signature(kToken, "http://mycompany.com:1234/myapp.php?foo=1&bar=2", vector_params()).c_str(),
      "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
  /* repeated keys: deduplicated and sorted by value */
  Params dup = {{"Sid", "CA123"}, {"SidAccount", "AC123"}, {"Digits", "5678"}, {"Digits", "1234"}, {"Digits", "1234"}};
  assert_str(compute_signature(kToken, kUrl, dup).c_str(), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
  /* the WebSocket upgrade (B.5) */
  assert_str(compute_signature(kToken, "wss://example.com/media-stream", {}).c_str(),
                            "XFfwGS2Ev7f9qAP9MmRoMS7C724=");
}
GST_END_TEST;

GST_START_TEST(test_signature_validation_variants) {
  Params p = vector_params();
  /* Twilio signed without the port; we see the default port, and vice versa */
  fail_unless(validate_request(kToken, kUrl, p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  fail_unless(validate_request(kToken, "https://mycompany.com:443/myapp.php?foo=1&bar=2", p,
                               "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  fail_unless(validate_request(kToken, kUrl, p, "kvajT1Ptam85bY51eRf/AJRuM3w="));
  fail_unless(validate_request(kToken, "http://mycompany.com/myapp.php?foo=1&bar=2", p, "0ZXoZLH/DfblKGATFgpif+LLRf4="));
  /* a non-standard port is kept as given */
  fail_unless(validate_request(kToken, "http://mycompany.com:1234/myapp.php?foo=1&bar=2", p,
                               "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="));
  /* wrong token, wrong params, wrong scheme, empty signature: refused */
  fail_if(validate_request("54321", kUrl, p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  Params tampered = p;
  tampered[1].second = "+14158675310";
  fail_if(validate_request(kToken, kUrl, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  fail_if(validate_request(kToken, "http://mycompany.com/myapp.php?foo=1&bar=2", p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  fail_if(validate_request(kToken, kUrl, p, ""));
  fail_if(validate_request("", kUrl, p, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
  /* the upgrade: with and without :443 */
  fail_unless(validate_websocket(kToken, "example.com", "/media-stream", "XFfwGS2Ev7f9qAP9MmRoMS7C724="));
  fail_unless(validate_websocket(kToken, "example.com:443", "/media-stream", "XFfwGS2Ev7f9qAP9MmRoMS7C724="));
  fail_if(validate_websocket(kToken, "example.com", "/other", "XFfwGS2Ev7f9qAP9MmRoMS7C724="));
}
GST_END_TEST;

GST_START_TEST(test_signature_body_sha256) {
  const char *body = "{\"property\": \"value\", \"boolean\": true}";
  std::string hash = sha256_hex(body);
  assert_str(hash.c_str(), "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
  std::string url = std::string(kUrl) + "&bodySHA256=" + hash;
  fail_unless(validate_request_with_body(kToken, url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
  /* a changed body no longer matches its hash */
  fail_if(validate_request_with_body(kToken, url, "{\"property\": \"other\"}", "a9nBmqA0ju/hNViExpshrM61xv4="));
  fail_if(validate_request_with_body(kToken, kUrl, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
}
GST_END_TEST;

GST_START_TEST(test_form_parsing) {
  Params p = parse_form("From=%2B14155551212&Caller=+14155551212&FromCity=SAN+FRANCISCO&Empty=&Flag&A=1&A=2");
  fail_unless_equals_int(p.size(), 7);
  assert_str(p[0].second.c_str(), "+14155551212"); /* %2B is a plus */
  assert_str(p[1].second.c_str(), " 14155551212"); /* a literal + is a space */
  assert_str(p[2].second.c_str(), "SAN FRANCISCO");
  assert_str(p[3].second.c_str(), "");
  assert_str(p[4].first.c_str(), "Flag");
  /* round trip through our encoder */
  Params q = {{"To", "+1 (415) & co"}, {"X", "é"}};
  Params r = parse_form(form_encode(q));
  fail_unless(r == q);
}
GST_END_TEST;

/* ------------------------------------------------------------ protocol */

GST_START_TEST(test_parse_twilio_messages) {
  InboundMessage m;
  std::string err;
  fail_unless(parse_inbound("{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}", m, err) ==
              ParseResult::Ok);
  fail_unless(m.event == Event::Connected);
  assert_str(m.protocol.c_str(), "Call");
  fail_unless_equals_int(m.sequence_number, -1);

  const char *start =
      "{\"event\":\"start\",\"sequenceNumber\":\"1\",\"streamSid\":\"MZ18ad\",\"start\":{\"accountSid\":\"AC1\","
      "\"streamSid\":\"MZ18ad\",\"callSid\":\"CA9\",\"tracks\":[\"inbound\"],\"customParameters\":{\"tenant\":"
      "\"acme\",\"from\":\"+1415\"},\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,"
      "\"channels\":1}}}";
  fail_unless(parse_inbound(start, m, err) == ParseResult::Ok, "%s", err.c_str());
  fail_unless(m.event == Event::Start);
  fail_unless_equals_int(m.sequence_number, 1);
  assert_str(m.start.call_sid.c_str(), "CA9");
  assert_str(m.start.account_sid.c_str(), "AC1");
  fail_unless_equals_int(m.start.custom_parameters.size(), 2);
  fail_unless_equals_int(m.start.sample_rate, 8000);
  fail_unless_equals_int(m.start.tracks.size(), 1);

  /* numeric-looking fields are strings; numbers are accepted too */
  const char *media = "{\"event\":\"media\",\"sequenceNumber\":\"3\",\"streamSid\":\"MZ18ad\",\"media\":{\"track\":"
                      "\"inbound\",\"chunk\":\"2\",\"timestamp\":\"20\",\"payload\":\"//7+/g==\"}}";
  fail_unless(parse_inbound(media, m, err) == ParseResult::Ok, "%s", err.c_str());
  fail_unless_equals_int(m.timestamp_ms, 20);
  fail_unless_equals_int(m.chunk, 2);
  fail_unless_equals_int(m.payload.size(), 4);
  fail_unless_equals_int(m.payload[0], 0xFF);
  fail_unless(parse_inbound("{\"event\":\"media\",\"streamSid\":\"MZ\",\"media\":{\"timestamp\":40,\"payload\":\"\"}}",
                            m, err) == ParseResult::Ok);
  fail_unless_equals_int(m.timestamp_ms, 40);

  fail_unless(parse_inbound("{\"event\":\"dtmf\",\"streamSid\":\"MZ\",\"sequenceNumber\":\"5\",\"dtmf\":{\"track\":"
                            "\"inbound_track\",\"digit\":\"1\"}}",
                            m, err) == ParseResult::Ok);
  assert_str(m.digit.c_str(), "1");
  fail_unless(parse_inbound("{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ\",\"mark\":{\"name\":"
                            "\"a:1\"}}",
                            m, err) == ParseResult::Ok);
  assert_str(m.mark_name.c_str(), "a:1");
  fail_unless(parse_inbound("{\"event\":\"stop\",\"sequenceNumber\":\"5\",\"streamSid\":\"MZ\",\"stop\":{"
                            "\"accountSid\":\"AC\",\"callSid\":\"CA\"}}",
                            m, err) == ParseResult::Ok);
  fail_unless(m.event == Event::Stop);
  assert_str(m.stop_call_sid.c_str(), "CA");
}
GST_END_TEST;

GST_START_TEST(test_parse_bad_messages) {
  InboundMessage m;
  std::string err;
  fail_unless(parse_inbound("{not json", m, err) == ParseResult::MalformedJson);
  fail_if(err.empty());
  fail_unless(parse_inbound("[1,2]", m, err) == ParseResult::MalformedJson);
  fail_unless(parse_inbound("{\"foo\":1}", m, err) == ParseResult::MissingField);
  fail_unless(parse_inbound("{\"event\":\"media\",\"streamSid\":\"MZ\"}", m, err) == ParseResult::MissingField);
  fail_unless(parse_inbound("{\"event\":\"media\",\"streamSid\":\"MZ\",\"media\":{\"timestamp\":\"x\",\"payload\":"
                            "\"AAAA\"}}",
                            m, err) == ParseResult::MissingField);
  fail_unless(parse_inbound("{\"event\":\"media\",\"streamSid\":\"MZ\",\"media\":{\"timestamp\":\"0\",\"payload\":"
                            "\"@@@@\"}}",
                            m, err) == ParseResult::InvalidBase64);
  fail_unless(parse_inbound("{\"event\":\"media\",\"streamSid\":\"MZ\",\"media\":{\"timestamp\":\"0\",\"payload\":"
                            "\"AAA\"}}",
                            m, err) == ParseResult::InvalidBase64);
  fail_unless(parse_inbound("{\"event\":\"bogus\",\"streamSid\":\"MZ\"}", m, err) == ParseResult::UnknownEvent);
  assert_str(m.event_name.c_str(), "bogus");
}
GST_END_TEST;

GST_START_TEST(test_build_outbound_exact_fields) {
  const uint8_t data[3] = {0xFF, 0x7F, 0x00};
  assert_str(build_media("MZ1", data, 3).c_str(),
                            "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"/38A\"}}");
  assert_str(build_mark("MZ1", "it\"em:20").c_str(),
                            "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"it\\\"em:20\"}}");
  /* the builders' short cut for strings with nothing to escape, and the rest */
  assert_str(build_mark("MZ1", "item:20:g0:m1").c_str(),
             "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"item:20:g0:m1\"}}");
  assert_str(build_mark("M\\Z1", "").c_str(), "{\"event\":\"mark\",\"streamSid\":\"M\\\\Z1\",\"mark\":{\"name\":\"\"}}");
  assert_str(build_media("M\"Z1", data, 3).c_str(),
             "{\"event\":\"media\",\"streamSid\":\"M\\\"Z1\",\"media\":{\"payload\":\"/38A\"}}");
  std::string two = build_mark("MZ1", "a");
  append_media(two, "MZ1", data, 3);
  assert_str(two.c_str(), "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"a\"}}"
                          "{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"/38A\"}}");
  assert_str(build_clear("MZ1").c_str(), "{\"event\":\"clear\",\"streamSid\":\"MZ1\"}");
  /* the emulator's strict reader accepts exactly these, and nothing more */
  OutboundMessage o;
  std::string err;
  fail_unless(parse_outbound(build_media("MZ1", data, 3), o, err) == ParseResult::Ok);
  fail_unless_equals_int(o.payload.size(), 3);
  fail_unless(parse_outbound("{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"/38A\","
                             "\"track\":\"outbound\"}}",
                             o, err) != ParseResult::Ok);
  fail_unless(parse_outbound("{\"event\":\"clear\",\"streamSid\":\"MZ1\",\"x\":1}", o, err) != ParseResult::Ok);
  /* what the emulator builds, our parser reads back */
  StartInfo si;
  si.stream_sid = "MZ2";
  si.call_sid = "CA2";
  si.account_sid = "AC2";
  si.tracks = {"inbound"};
  si.custom_parameters = {{"from", "+1 \"quoted\""}};
  InboundMessage m;
  fail_unless(parse_inbound(build_start(1, si), m, err) == ParseResult::Ok, "%s", err.c_str());
  assert_str(m.start.custom_parameters[0].second.c_str(), "+1 \"quoted\"");
  fail_unless(parse_inbound(build_inbound_media(2, "MZ2", 1, 0, data, 3), m, err) == ParseResult::Ok);
  fail_unless(m.payload == std::vector<uint8_t>(data, data + 3));
}
GST_END_TEST;

/* ------------------------------------------------------------ TwiML */

GST_START_TEST(test_twiml) {
  ConnectStream cs;
  cs.url = "wss://a.example.com/twilio/media";
  cs.parameters = {{"from", "+1<script>&\"'"}, {"to", "+2"}};
  cs.say_before = "Hi & welcome";
  std::string x = build_connect_stream(cs);
  fail_unless(x.find("value=\"+1&lt;script&gt;&amp;&quot;&apos;\"") != std::string::npos, "%s", x.c_str());
  fail_unless(x.find("<Say>Hi &amp; welcome</Say>") != std::string::npos);
  fail_unless(x.find("</Connect><Hangup/></Response>") != std::string::npos);
  TwimlDocument doc;
  std::string err;
  fail_unless(parse_twiml(x, doc, err), "%s", err.c_str());
  fail_unless(doc.has_stream);
  assert_str(doc.stream.url.c_str(), "wss://a.example.com/twilio/media");
  assert_str(doc.stream.parameters[0].second.c_str(), "+1<script>&\"'");
  fail_unless(doc.hangup);

  fail_unless(parse_twiml(build_say_hangup("Busy <now>"), doc, err));
  fail_if(doc.has_stream);
  assert_str(doc.says.c_str(), "Busy <now>");
  fail_if(parse_twiml("<Response><Connect>", doc, err));

  /* stream URL: public URL wins and keeps its path prefix; else Host */
  assert_str(stream_url("https://x.ngrok.app/", "h:1", "/twilio/media").c_str(),
                            "wss://x.ngrok.app/twilio/media");
  assert_str(stream_url("http://127.0.0.1:8080/agent", "", "/m").c_str(), "ws://127.0.0.1:8080/agent/m");
  assert_str(stream_url("", "example.com:8443", "/m").c_str(), "wss://example.com:8443/m");
}
GST_END_TEST;

/* ------------------------------------------------------------ audio */

GST_START_TEST(test_mulaw) {
  /* G.711 reference points */
  fail_unless_equals_int(mulaw_decode(0xFF), 0);
  fail_unless_equals_int(mulaw_decode(0x7F), 0);
  fail_unless_equals_int(mulaw_decode(0x80), 32124);
  fail_unless_equals_int(mulaw_decode(0x00), -32124);
  fail_unless_equals_int(mulaw_encode(0), 0xFF);
  /* every code decodes and re-encodes to itself (except the -0 alias 0x7F) */
  for (int i = 0; i < 256; i++) {
    if (i == 0x7F)
      continue;
    fail_unless_equals_int(mulaw_encode(mulaw_decode(static_cast<uint8_t>(i))), i);
  }
  /* block versions match the scalar ones */
  std::vector<int16_t> pcm(65536);
  for (int i = 0; i < 65536; i++)
    pcm[i] = static_cast<int16_t>(i - 32768);
  std::vector<uint8_t> u(pcm.size());
  mulaw_encode_block(pcm.data(), u.data(), pcm.size());
  for (size_t i = 0; i < pcm.size(); i += 97)
    fail_unless_equals_int(u[i], mulaw_encode(pcm[i]));
}
GST_END_TEST;

GST_START_TEST(test_mulaw_mean_square) {
  std::vector<uint8_t> u(1000);
  for (size_t i = 0; i < u.size(); i++)
    u[i] = static_cast<uint8_t>(i * 7 + 3);
  double ref = 0;
  for (uint8_t b : u) {
    double v = mulaw_decode(b) / 32768.0;
    ref += v * v;
  }
  ref /= static_cast<double>(u.size());
  fail_unless(std::fabs(mulaw_mean_square(u.data(), u.size()) - ref) < 1e-6 * ref, "%g", ref);
  std::vector<uint8_t> silence(160, kMulawSilence);
  fail_unless(mulaw_mean_square(silence.data(), silence.size()) == 0.0);
  fail_unless(mulaw_mean_square(nullptr, 0) == 0.0);
}
GST_END_TEST;

/* the peak without decoding: every byte alone, and the loudest of a block
 * wherever it sits; S16LE by bytes, -32768 included, an odd byte ignored */
GST_START_TEST(test_audio_peak) {
  fail_unless_equals_int(mulaw_peak(nullptr, 0), 0);
  for (int b = 0; b < 256; b++) {
    uint8_t u = static_cast<uint8_t>(b);
    fail_unless_equals_int(mulaw_peak(&u, 1), std::abs(static_cast<int>(mulaw_decode(u))));
  }
  const int loud = std::abs(static_cast<int>(mulaw_decode(mulaw_encode(-1000))));
  for (size_t n : {size_t{7}, size_t{160}, size_t{171}}) { /* blocks of 16 and the bytes after them */
    std::vector<uint8_t> block(n, kMulawSilence);
    fail_unless_equals_int(mulaw_peak(block.data(), block.size()), 0);
    for (size_t at : {size_t{0}, size_t{5}, size_t{77}, size_t{159}, size_t{170}}) {
      if (at >= n)
        continue;
      std::vector<uint8_t> u = block;
      u[at] = mulaw_encode(-1000);
      u[(at + 1) % n] = mulaw_encode(300);
      u[(at + 2) % n] = 0x7F; /* -0 */
      fail_unless_equals_int(mulaw_peak(u.data(), u.size()), loud);
      u[at] = mulaw_encode(1000);
      fail_unless_equals_int(mulaw_peak(u.data(), u.size()), loud);
    }
  }
  const int16_t samples[] = {0, 103, -104, 12, -32768, 32767};
  std::vector<uint8_t> le;
  for (int16_t v : samples) {
    le.push_back(static_cast<uint8_t>(v & 0xFF));
    le.push_back(static_cast<uint8_t>((v >> 8) & 0xFF));
  }
  fail_unless_equals_int(s16le_peak(le.data(), 0), 0);
  fail_unless_equals_int(s16le_peak(le.data(), 4), 103);
  fail_unless_equals_int(s16le_peak(le.data(), 6), 104);
  fail_unless_equals_int(s16le_peak(le.data(), 9), 104); /* the 5th sample's first byte alone is not a sample */
  fail_unless_equals_int(s16le_peak(le.data(), 10), 32768);
  fail_unless_equals_int(s16le_peak(le.data() + 10, 2), 32767);
}
GST_END_TEST;

/* Names go through JSON escaping intact: plain text (the fast path), then
 * quotes, backslashes and control characters anywhere in it. */
GST_START_TEST(test_json_escaping_roundtrip) {
  for (std::string name : {std::string("item_1:240:g0:m12"), std::string("say \"hi\" \\ bye"),
                           std::string("tab\there\nnew line\x01\x1f end"), std::string("\"leading quote"),
                           std::string(""), std::string("caf\xc3\xa9 \xe2\x82\xac")}) {
    std::string msg = twilio::build_mark("MZ\"odd\\sid", name);
    twilio::OutboundMessage o;
    std::string err;
    fail_unless(twilio::parse_outbound(msg, o, err) == twilio::ParseResult::Ok, "%s: %s", msg.c_str(), err.c_str());
    assert_str(o.mark_name, name);
    assert_str(o.stream_sid, "MZ\"odd\\sid");
  }
}
GST_END_TEST;

GST_START_TEST(test_base64) {
  for (size_t len = 0; len < 40; len++) {
    std::vector<uint8_t> in(len);
    for (size_t i = 0; i < len; i++)
      in[i] = static_cast<uint8_t>(i * 37 + 11);
    std::string enc = base64_encode(in.data(), in.size());
    gchar *ref = g_base64_encode(in.data(), in.size());
    assert_str(enc.c_str(), ref);
    g_free(ref);
    std::vector<uint8_t> out;
    fail_unless(base64_decode(enc, out));
    fail_unless(out == in);
    std::string appended = "prefix:";
    base64_encode_append(appended, in.data(), in.size());
    assert_str(appended, "prefix:" + enc);
  }
  /* every length up to a few frames, random bytes, against GLib both ways */
  std::mt19937 rng(3);
  for (size_t len = 0; len < 500; len++) {
    std::vector<uint8_t> in(len);
    for (auto &b : in)
      b = static_cast<uint8_t>(rng());
    std::string enc = base64_encode(in.data(), in.size());
    gchar *ref = g_base64_encode(in.data(), in.size());
    assert_str(enc.c_str(), ref);
    g_free(ref);
    std::vector<uint8_t> out;
    fail_unless(base64_decode(enc, out) && out == in, "length %zu does not decode back", len);
  }
  /* a byte that is not base64, at every position of the first, a middle and
   * the last quad */
  for (int c = 0; c < 256; c++) {
    if (g_ascii_isalnum(c) || c == '+' || c == '/')
      continue;
    for (size_t pos : {0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35}) {
      std::string t = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="; /* base64 of A..Z */
      if (pos >= t.size() || (c == '=' && pos >= t.size() - 1))
        continue;
      t[pos] = static_cast<char>(c);
      std::vector<uint8_t> out = {1};
      fail_if(base64_decode(t, out), "byte %d at %zu accepted", c, pos);
      fail_unless(out.empty());
    }
  }
  std::vector<uint8_t> out;
  fail_if(base64_decode("abc", out));
  fail_if(base64_decode("ab!d", out));
  fail_if(base64_decode("a===", out));
  fail_if(base64_decode("ab=d", out));
  /* non-zero bits under the padding: "/w==" is 0xff, "/x==" is not canonical */
  fail_unless(base64_decode("/w==", out) && out.size() == 1 && out[0] == 0xff);
  fail_if(base64_decode("/x==", out));
  fail_unless(base64_decode("//8=", out) && out.size() == 2);
  fail_if(base64_decode("//9=", out));
}
GST_END_TEST;

/* Each codec (the SSSE3 one works 16 characters at a time, the scalar one
 * finishes what is left) against GLib, and against bad input in every lane
 * of a Twilio-sized payload. */
GST_START_TEST(test_base64_codecs) {
  std::vector<Base64Impl> impls = {Base64Impl::Scalar};
  if (base64_impl_available(Base64Impl::SSSE3))
    impls.push_back(Base64Impl::SSSE3);
  else
    g_print("test_base64_codecs: this CPU has no SSSE3; only the scalar codec is tested\n");
  std::mt19937 rng(7);
  for (Base64Impl impl : impls) {
    for (size_t len = 0; len < 300; len++) {
      std::vector<uint8_t> in(len);
      for (auto &b : in)
        b = static_cast<uint8_t>(rng());
      std::string enc = "x";
      base64_encode_append_with(impl, enc, in.data(), in.size());
      gchar *ref = g_base64_encode(in.data(), in.size());
      assert_str(enc.c_str() + 1, ref);
      std::vector<uint8_t> out;
      fail_unless(base64_decode_with(impl, ref, out) && out == in, "impl %d: length %zu does not decode back",
                  static_cast<int>(impl), len);
      g_free(ref);
    }
    /* all 256 byte values, so every character of the alphabet is met in
     * every lane */
    std::vector<uint8_t> all(256 * 3);
    for (size_t i = 0; i < all.size(); i++)
      all[i] = static_cast<uint8_t>(i * 7 + i / 256);
    std::string enc;
    base64_encode_append_with(impl, enc, all.data(), all.size());
    gchar *ref = g_base64_encode(all.data(), all.size());
    assert_str(enc.c_str(), ref);
    g_free(ref);
    std::vector<uint8_t> out;
    fail_unless(base64_decode_with(impl, enc, out) && out == all);
    /* one bad byte anywhere in a 160-byte frame's 216 characters */
    std::vector<uint8_t> frame(kTwilioFrameBytes);
    for (auto &b : frame)
      b = static_cast<uint8_t>(rng());
    std::string good;
    base64_encode_append_with(impl, good, frame.data(), frame.size());
    for (int c = 0; c < 256; c++) {
      if (g_ascii_isalnum(c) || c == '+' || c == '/')
        continue;
      for (size_t pos = 0; pos < good.size(); pos++) {
        if (c == '=' && pos >= good.size() - 2)
          continue; /* the padding itself */
        std::string t = good;
        t[pos] = static_cast<char>(c);
        out = {1};
        fail_if(base64_decode_with(impl, t, out), "impl %d: byte %d at %zu accepted", static_cast<int>(impl), c, pos);
        fail_unless(out.empty());
      }
    }
  }
}
GST_END_TEST;

GST_START_TEST(test_wav_and_resample) {
  /* 1 s of a 440 Hz tone at 44.1 kHz stereo, through a file, to μ-law 8 kHz */
  const int rate = 44100;
  std::vector<int16_t> st(rate * 2);
  for (int i = 0; i < rate; i++)
    st[2 * i] = st[2 * i + 1] = static_cast<int16_t>(8000 * sin(2 * M_PI * 440 * i / rate));
  gchar *dir = g_dir_make_tmp("pa-wav-XXXXXX", nullptr);
  std::string path = std::string(dir) + "/tone.wav";
  /* write a stereo file by hand through the mono writer: interleave as 2x rate */
  std::string err;
  fail_unless(wav_write_s16(path, st.data(), st.size(), rate * 2, err), "%s", err.c_str());
  WavData w;
  fail_unless(wav_read(path, w, err), "%s", err.c_str());
  fail_unless_equals_int(w.rate, rate * 2);
  fail_unless(w.samples == st);
  /* resample as what it really is: stereo 44.1 kHz */
  std::vector<int16_t> mono = resample_to_mono(st, rate, 2, 8000);
  fail_unless(std::abs(static_cast<int>(mono.size()) - 8000) <= 1, "%zu samples", mono.size());
  /* a real resampler keeps the tone: count zero crossings (880 for 440 Hz) */
  int crossings = 0;
  for (size_t i = 200; i + 1 < mono.size() - 200; i++)
    crossings += (mono[i] < 0) != (mono[i + 1] < 0);
  int expected = static_cast<int>(880 * (mono.size() - 400) / mono.size());
  fail_unless(crossings > expected - 10 && crossings < expected + 10, "%d crossings, expected %d", crossings, expected);
  /* and its level: RMS of 8000/sqrt(2) within 5% */
  double sum = 0;
  for (size_t i = 200; i < mono.size() - 200; i++)
    sum += static_cast<double>(mono[i]) * mono[i];
  double rms = sqrt(sum / (mono.size() - 400));
  fail_unless(fabs(rms - 8000 / M_SQRT2) < 0.05 * 8000 / M_SQRT2, "rms %f", rms);

  /* and keeps time: an impulse at 100 ms comes out at 100 ms (800 at 8 kHz) */
  for (int in_rate : {16000, 44100, 48000}) {
    std::vector<int16_t> imp(in_rate / 2, 0);
    imp[in_rate / 10] = 30000;
    std::vector<int16_t> o = resample_to_mono(imp, in_rate, 1, 8000);
    size_t peak = 0;
    for (size_t i = 0; i < o.size(); i++)
      if (std::abs(o[i]) > std::abs(o[peak]))
        peak = i;
    fail_unless(peak >= 799 && peak <= 801, "%d Hz: impulse at 800 came out at %zu", in_rate, peak);
  }

  std::string upath = std::string(dir) + "/u.wav";
  std::vector<uint8_t> u(mono.size());
  mulaw_encode_block(mono.data(), u.data(), u.size());
  fail_unless(wav_write_mulaw(upath, u.data(), u.size(), err));
  fail_unless(wav_read(upath, w, err));
  fail_unless_equals_int(w.rate, 8000);
  fail_unless_equals_int(w.samples.size(), u.size());
  fail_unless_equals_int(w.samples[100], mulaw_decode(u[100]));
  fail_if(wav_read(std::string(dir) + "/missing.wav", w, err));
  g_unlink(path.c_str());
  g_unlink(upath.c_str());
  g_rmdir(dir);
  g_free(dir);
}
GST_END_TEST;

/* pa::Playout: twiliosink's log of what plays when (bargein's far end) */
GST_START_TEST(test_playout_log) {
  pa::Playout p(1000);
  std::vector<uint8_t> a(160, 0x10), b(160, 0x20), out(480);
  /* two frames back to back from 1 s on, then one after a 20 ms gap */
  p.add(GST_SECOND, a.data(), a.size());
  p.add(GST_SECOND + 20 * GST_MSECOND, b.data(), b.size());
  p.add(GST_SECOND + 60 * GST_MSECOND, a.data(), a.size());
  fail_unless_equals_uint64(p.end_rt(), GST_SECOND + 80 * GST_MSECOND);
  /* from 10 ms before: 80 bytes of silence, then the frames */
  p.read(GST_SECOND - 10 * GST_MSECOND, 480, out.data());
  for (size_t i = 0; i < 480; i++) {
    uint8_t want = i < 80 ? 0xFF : i < 240 ? 0x10 : i < 400 ? 0x20 : 0xFF; /* the gap */
    fail_unless_equals_int(out[i], want);
  }
  p.read(GST_SECOND + 60 * GST_MSECOND, 240, out.data());
  fail_unless_equals_int(out[0], 0x10);
  fail_unless_equals_int(out[159], 0x10);
  fail_unless_equals_int(out[160], 0xFF); /* nothing after the end */
  /* a clear 5 ms into the last frame: the rest of it never plays */
  p.cut(GST_SECOND + 65 * GST_MSECOND);
  p.read(GST_SECOND + 60 * GST_MSECOND, 160, out.data());
  fail_unless_equals_int(out[39], 0x10);
  fail_unless_equals_int(out[40], 0xFF);
  /* an overlap overwrites what was scheduled */
  p.add(GST_SECOND + 10 * GST_MSECOND, b.data(), 80);
  p.read(GST_SECOND, 160, out.data());
  fail_unless_equals_int(out[79], 0x10);
  fail_unless_equals_int(out[80], 0x20);
  /* only about keep_ms of the past is kept */
  for (int k = 0; k < 200; k++)
    p.add(2 * GST_SECOND + k * 20 * GST_MSECOND, a.data(), a.size());
  p.read(GST_SECOND, 160, out.data());
  fail_unless_equals_int(out[100], 0xFF);
  p.read(5 * GST_SECOND + 900 * GST_MSECOND, 160, out.data());
  fail_unless_equals_int(out[100], 0x10);
  p.reset();
  fail_unless_equals_uint64(p.end_rt(), 0);
}
GST_END_TEST;

static Suite *twilio_lib_suite(void) {
  Suite *s = suite_create("twilio-lib");
  TCase *tc = tcase_create("general");
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_signature_vectors);
  tcase_add_test(tc, test_playout_log);
  tcase_add_test(tc, test_signature_validation_variants);
  tcase_add_test(tc, test_signature_body_sha256);
  tcase_add_test(tc, test_form_parsing);
  tcase_add_test(tc, test_parse_twilio_messages);
  tcase_add_test(tc, test_parse_bad_messages);
  tcase_add_test(tc, test_build_outbound_exact_fields);
  tcase_add_test(tc, test_twiml);
  tcase_add_test(tc, test_mulaw);
  tcase_add_test(tc, test_mulaw_mean_square);
  tcase_add_test(tc, test_audio_peak);
  tcase_add_test(tc, test_json_escaping_roundtrip);
  tcase_add_test(tc, test_base64);
  tcase_add_test(tc, test_base64_codecs);
  tcase_add_test(tc, test_wav_and_resample);
  return s;
}

GST_CHECK_MAIN(twilio_lib);
