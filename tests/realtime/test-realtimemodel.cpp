/* gst-phone-agent: realtimemodel with GstHarness against the scripted
 * realtime server (both dialects), plus mock HTTP servers for tool URLs and
 * Twilio's REST API. Everything on 127.0.0.1; every wait is bounded. */
#include <gst/check/gstharness.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include "../common/pa-check.h"
#include "../common/pa-socket-call.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "pa-websocket.h"
#include "twilio-protocol.h"
#include "rt-mock-server.h"
#include "test-rt-json.h"

using rtjson::Doc;
using pa::rt::Dialect;

#define MULAW_CAPS "audio/x-mulaw, rate=(int)8000, channels=(int)1"
#define PCM_CAPS "audio/x-raw, format=(string)S16LE, layout=(string)interleaved, rate=(int)24000, channels=(int)1"

static GstStaticPadTemplate mulaw_src = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(MULAW_CAPS));
static GstStaticPadTemplate mulaw_sink = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(MULAW_CAPS));
static GstStaticPadTemplate pcm_src = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(PCM_CAPS));
static GstStaticPadTemplate pcm_sink = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(PCM_CAPS));

namespace {

template <typename P> bool wait_until(P pred, int ms = 5000) {
  gint64 end = g_get_monotonic_time() + ms * 1000;
  while (!pred()) {
    if (g_get_monotonic_time() > end)
      return false;
    g_usleep(1000);
  }
  return true;
}

struct HeardAnswer {
  guint64 played = 0;
  bool known = true;
};

struct Fx {
  std::unique_ptr<rtmock::MockServer> mock;
  GstElement *el = nullptr; /* owned by the harness */
  GstHarness *h = nullptr;
  GstBus *bus = nullptr;
  std::mutex mu;
  std::vector<std::string> flow; /* what reached the harness sink: "buffer:N", "event:NAME" */
  std::map<std::string, HeardAnswer> heard;
  bool answer_heard = true;
  std::vector<GstStructure *> messages;
  std::vector<GstMessage *> errors, warnings;

  explicit Fx(rtmock::Options o = rtmock::Options()) : mock(std::make_unique<rtmock::MockServer>(o)) {
    fail_unless(mock->start());
    el = gst_element_factory_make("realtimemodel", nullptr);
    fail_unless(el != nullptr);
    bus = gst_bus_new();
    gst_element_set_bus(el, bus);
    g_object_set(el, "location", mock->url().c_str(), "api-key", "sk-test-key", nullptr);
  }
  ~Fx() {
    if (h)
      gst_harness_teardown(h);
    else
      gst_object_unref(el);
    for (auto *s : messages)
      gst_structure_free(s);
    for (auto *m : errors)
      gst_message_unref(m);
    for (auto *m : warnings)
      gst_message_unref(m);
    gst_object_unref(bus);
  }

  static GstPadProbeReturn probe(GstPad *, GstPadProbeInfo *info, gpointer data) {
    auto *f = static_cast<Fx *>(data);
    if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
      std::lock_guard<std::mutex> g(f->mu);
      f->flow.push_back("list:" + std::to_string(gst_buffer_list_length(GST_PAD_PROBE_INFO_BUFFER_LIST(info))));
    } else if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER) {
      std::lock_guard<std::mutex> g(f->mu);
      f->flow.push_back("buffer:" + std::to_string(gst_buffer_get_size(GST_PAD_PROBE_INFO_BUFFER(info))));
    } else if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_EVENT_BOTH) {
      GstEvent *e = GST_PAD_PROBE_INFO_EVENT(info);
      const GstStructure *s = gst_event_get_structure(e);
      std::string name = s && GST_EVENT_TYPE(e) >= GST_EVENT_CUSTOM_UPSTREAM ? gst_structure_get_name(s)
                                                                             : GST_EVENT_TYPE_NAME(e);
      std::lock_guard<std::mutex> g(f->mu);
      f->flow.push_back("event:" + name);
    } else if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM) {
      GstQuery *q = GST_PAD_PROBE_INFO_QUERY(info);
      if (GST_QUERY_TYPE(q) != GST_QUERY_CUSTOM)
        return GST_PAD_PROBE_OK;
      GstStructure *s = gst_query_writable_structure(q);
      if (!s || !gst_structure_has_name(s, "phoneagent/heard"))
        return GST_PAD_PROBE_OK;
      std::lock_guard<std::mutex> g(f->mu);
      if (!f->answer_heard)
        return GST_PAD_PROBE_OK;
      const char *item = gst_structure_get_string(s, "item-id");
      HeardAnswer a;
      bool known = item && f->heard.count(item);
      if (known)
        a = f->heard[item];
      gst_structure_set(s, "played-ms", G_TYPE_UINT64, a.played, "sent-ms", G_TYPE_UINT64, a.played, "known",
                        G_TYPE_BOOLEAN, known && a.known, "generation", G_TYPE_UINT, 0u, nullptr);
      return GST_PAD_PROBE_HANDLED;
    }
    return GST_PAD_PROBE_OK;
  }

  void start(bool pcm = false) {
    h = gst_harness_new_full(el, pcm ? &pcm_src : &mulaw_src, "sink", pcm ? &pcm_sink : &mulaw_sink, "src");
    gst_object_unref(el); /* the harness holds it now */
    gst_pad_add_probe(h->sinkpad,
                      static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                                   GST_PAD_PROBE_TYPE_EVENT_BOTH |
                                                   GST_PAD_PROBE_TYPE_EVENT_FLUSH | GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM),
                      probe, this, nullptr);
    gst_harness_set_src_caps_str(h, pcm ? PCM_CAPS : MULAW_CAPS);
  }
  /* starts and waits until the session is configured; returns the session.update */
  Doc *configured(bool pcm = false) {
    start(pcm);
    rtmock::Received r;
    fail_unless(mock->wait_for("session.update", 5000, &r), "no session.update");
    last_update = std::make_unique<Doc>(r.text);
    return last_update.get();
  }
  std::unique_ptr<Doc> last_update;

  size_t buffers() {
    std::lock_guard<std::mutex> g(mu);
    size_t n = 0;
    for (auto &s : flow)
      n += s.rfind("buffer:", 0) == 0;
    return n;
  }
  size_t flow_count(const std::string &what) {
    std::lock_guard<std::mutex> g(mu);
    return std::count(flow.begin(), flow.end(), what);
  }
  std::vector<std::string> flow_snapshot() {
    std::lock_guard<std::mutex> g(mu);
    return flow;
  }
  void set_heard(const std::string &item, guint64 played, bool known = true) {
    std::lock_guard<std::mutex> g(mu);
    heard[item] = {played, known};
  }

  void drain_bus() {
    while (GstMessage *m = gst_bus_pop(bus)) {
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT) {
        messages.push_back(gst_structure_copy(gst_message_get_structure(m)));
        gst_message_unref(m);
      } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
        errors.push_back(m);
      } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING) {
        warnings.push_back(m);
      } else {
        gst_message_unref(m);
      }
    }
  }
  /* The @nth element message called @name (waits). Owned by the fixture. */
  const GstStructure *message(const char *name, int ms = 5000, size_t nth = 0) {
    const GstStructure *found = nullptr;
    wait_until(
        [&] {
          drain_bus();
          size_t n = 0;
          for (auto *s : messages)
            if (gst_structure_has_name(s, name) && n++ == nth) {
              found = s;
              return true;
            }
          return false;
        },
        ms);
    return found;
  }
  size_t message_count(const char *name) {
    drain_bus();
    size_t n = 0;
    for (auto *s : messages)
      n += gst_structure_has_name(s, name);
    return n;
  }
  GstMessage *error(int ms = 5000) {
    wait_until(
        [&] {
          drain_bus();
          return !errors.empty();
        },
        ms);
    return errors.empty() ? nullptr : errors[0];
  }

  void push_audio(size_t bytes, uint8_t fill) {
    GstBuffer *b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
    gst_buffer_memset(b, 0, fill, bytes);
    fail_unless_equals_int(gst_harness_push(h, b), GST_FLOW_OK);
  }
  void push_bytes(const std::vector<uint8_t> &bytes) {
    fail_unless_equals_int(gst_harness_push(h, gst_buffer_new_memdup(bytes.data(), bytes.size())), GST_FLOW_OK);
  }
  void push_oob(GstStructure *s) {
    fail_unless(gst_harness_push_event(h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB, s)));
  }
  /* Model audio: response @resp, item @item, @bytes of @fill. */
  void model_audio(const std::string &resp, const std::string &item, size_t bytes, uint8_t fill = 0x55) {
    mock->send(mock->audio_delta(resp, item, std::vector<uint8_t>(bytes, fill)));
  }
  GstStructure *stats() {
    GstStructure *s = nullptr;
    g_object_get(el, "stats", &s, nullptr);
    return s;
  }
  guint64 stat(const char *field) {
    GstStructure *s = stats();
    guint64 v = 0;
    gst_structure_get_uint64(s, field, &v);
    gst_structure_free(s);
    return v;
  }
};

std::string function_item_added(const std::string &resp, const std::string &item, const std::string &call_id,
                                const std::string &name) {
  return R"({"type":"response.output_item.added","response_id":")" + resp +
         R"(","output_index":1,"item":{"id":")" + item + R"(","type":"function_call","name":")" + name +
         R"(","call_id":")" + call_id + R"(","arguments":""}})";
}

/* index of the @nth event of @type in what the mock received (-1: none) */
int index_of(rtmock::MockServer &m, const std::string &type, size_t nth = 0) {
  auto all = m.received();
  size_t n = 0;
  for (size_t i = 0; i < all.size(); i++)
    if (all[i].type == type && n++ == nth)
      return static_cast<int>(i);
  return -1;
}

std::vector<rtmock::Received> outputs(rtmock::MockServer &m) {
  std::vector<rtmock::Received> out;
  for (auto &r : m.received("conversation.item.create"))
    if (Doc(r.text).str("item.type") == "function_call_output")
      out.push_back(r);
  return out;
}

bool wait_outputs(rtmock::MockServer &m, size_t n, int ms = 5000) {
  return wait_until([&] { return outputs(m).size() >= n; }, ms);
}

} // namespace

/* ------------------------------------------------------------ session and audio */

GST_START_TEST(test_session_opens_before_audio_ga) {
  Fx f;
  g_object_set(f.el, "voice", "marin", "instructions", "Be brief.", "input-transcription", "gpt-4o-mini-transcribe",
               "transcription-language", "en", nullptr);
  Doc *d = f.configured();
  /* no caller audio was pushed: the session opened with the pipeline */
  fail_unless_equals_int(f.mock->count("input_audio_buffer.append"), 0);
  assert_str(d->str("session.type"), "realtime");
  assert_str(d->str("session.model"), "gpt-realtime");
  assert_str(d->str("session.instructions"), "Be brief.");
  assert_str(d->str("session.audio.input.format.type"), "audio/pcmu");
  assert_str(d->str("session.audio.output.format.type"), "audio/pcmu");
  assert_str(d->str("session.audio.output.voice"), "marin");
  assert_str(d->str("session.audio.input.transcription.model"), "gpt-4o-mini-transcribe");
  assert_str(d->str("session.audio.input.transcription.language"), "en");
  assert_str(d->str("session.audio.input.turn_detection.type"), "server_vad");
  assert_str(d->str("session.output_modalities[0]"), "audio");
  assert_str(d->str("session.tools[0].name"), "end_call"); /* built in */
  fail_unless_equals_int(d->len("session.tools"), 1);       /* no transfer-number: no transfer tool */
  fail_unless(!d->has("session.modalities"));
  fail_unless(!d->has("session.temperature"));
  auto hdr = f.mock->upgrade_headers(1);
  assert_str(hdr["authorization"], "Bearer sk-test-key");
  fail_unless(!hdr.count("openai-beta"));
  const GstStructure *s = f.message("realtime-session");
  fail_unless(s != nullptr);
  fail_unless(gst_structure_has_field(s, "running-time"));
  fail_unless(f.message("realtime-session", 5000, 2) != nullptr); /* connecting, connected, configured */
  assert_str(gst_structure_get_string(f.message("realtime-session", 5000, 2), "state"), "configured");
  assert_str(gst_structure_get_string(f.message("realtime-session", 5000, 2), "dialect"), "ga");
  /* caller audio now goes out as it comes, bit-exact */
  f.push_audio(160, 0x42);
  fail_unless(wait_until([&] { return f.mock->appended_bytes(1) == 160; }));
  rtmock::Received a;
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 1000, &a));
  std::vector<uint8_t> bytes;
  fail_unless(pa::base64_decode(Doc(a.text).str("audio"), bytes));
  fail_unless(bytes == std::vector<uint8_t>(160, 0x42));
}
GST_END_TEST;

GST_START_TEST(test_wss_ca_file_and_extra_headers) {
  const char *root = g_getenv("PA_SOURCE_ROOT");
  fail_unless(root != nullptr);
  rtmock::Options o;
  o.tls_cert_file = std::string(root) + "/tests/realtime/tls/test-cert.pem";
  o.tls_key_file = std::string(root) + "/tests/realtime/tls/test-key.pem";
  Fx f(o);
  GstStructure *h = gst_structure_from_string("headers,OpenAI-Project=(string)proj_1", nullptr);
  fail_unless(h != nullptr);
  g_object_set(f.el, "ca-file", o.tls_cert_file.c_str(), "extra-headers", h, nullptr);
  gst_structure_free(h);
  f.configured();
  auto hdr = f.mock->upgrade_headers(1);
  assert_str(hdr["openai-project"], "proj_1");
  assert_str(hdr["authorization"], "Bearer sk-test-key");
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 160);
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
}
GST_END_TEST;

/* The audio of every append received, in order. */
static std::vector<std::vector<uint8_t>> appended_audio(rtmock::MockServer &m) {
  std::vector<std::vector<uint8_t>> out;
  for (auto &r : m.received("input_audio_buffer.append")) {
    out.emplace_back();
    fail_unless(pa::base64_decode(Doc(r.text).str("audio"), out.back()));
  }
  return out;
}

GST_START_TEST(test_audio_before_session_is_kept) {
  rtmock::Options o;
  o.send_session_created = false; /* the session is slow to come up */
  Fx f(o);
  f.start();
  fail_unless(f.mock->wait_connections(1, 5000));
  for (int i = 0; i < 5; i++)
    f.push_audio(160, static_cast<uint8_t>(0x10 + i)); /* never blocks, never lost */
  fail_unless_equals_int(f.mock->count("session.update"), 0);
  fail_unless_equals_int(f.mock->count("input_audio_buffer.append"), 0);
  f.mock->send(f.mock->session_created());
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 4));
  fail_unless(index_of(*f.mock, "session.update") < index_of(*f.mock, "input_audio_buffer.append"));
  auto appends = appended_audio(*f.mock);
  for (int i = 0; i < 5; i++)
    fail_unless(appends[i] == std::vector<uint8_t>(160, static_cast<uint8_t>(0x10 + i)), "chunk %d out of order", i);
}
GST_END_TEST;


/* append-ms: the caller's audio leaves in appends of at least that much,
 * in order and bit-exact; what is held when the caller ends is sent before
 * the socket closes */
GST_START_TEST(test_append_ms_collects) {
  Fx f;
  g_object_set(f.el, "append-ms", 100u, nullptr);
  f.configured();
  for (int i = 0; i < 12; i++)
    f.push_audio(160, static_cast<uint8_t>(0x10 + i));
  /* 12 buffers of 20 ms: two appends of 100 ms went, 40 ms is held */
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 2000, nullptr, 1));
  g_usleep(100 * 1000);
  fail_unless_equals_int(f.mock->count("input_audio_buffer.append"), 2);
  fail_unless(gst_harness_push_event(f.h, gst_event_new_eos()));
  fail_unless(f.mock->wait_closed(1, 2000, nullptr));
  auto appends = appended_audio(*f.mock);
  fail_unless_equals_int(appends.size(), 3);
  std::vector<uint8_t> all;
  for (size_t k = 0; k < appends.size(); k++) {
    fail_unless_equals_int(appends[k].size(), k < 2 ? 800 : 320);
    all.insert(all.end(), appends[k].begin(), appends[k].end());
  }
  for (int i = 0; i < 12; i++)
    for (int j = 0; j < 160; j++)
      fail_unless_equals_int(all[i * 160 + j], 0x10 + i);
}
GST_END_TEST;

/* idle-append-ms (100 by default): while the model's turn detection has the
 * caller silent, quiet frames (peak under -50 dBFS: μ-law 96 is quiet, 104
 * is a sound) are held for appends of 100 ms and a frame with a sound goes
 * at once with them; from speech_started to the turn's commit every frame
 * goes as it comes. Bit-exact and in order throughout. */
GST_START_TEST(test_idle_append_holds_quiet_audio) {
  Fx f;
  f.configured();
  std::vector<uint8_t> sent;
  auto push = [&](std::vector<uint8_t> frame) {
    sent.insert(sent.end(), frame.begin(), frame.end());
    f.push_bytes(frame);
  };
  auto quiet = [](uint8_t fill) { return std::vector<uint8_t>(160, fill); }; /* 0xF3..0xFF, 0x73..0x7F */
  for (uint8_t fill : {0xFF, 0xFE, 0xF3}) /* 0, 8, 96 */
    push(quiet(fill));
  std::vector<uint8_t> sound = quiet(0x7F); /* 0 */
  sound[80] = 0xF2; /* 104: one sample at -50 dBFS */
  push(sound);      /* the three quiet frames and this one, in one append */
  for (uint8_t fill : {0xFD, 0xFC, 0xFB, 0xFA, 0xF9, 0xF8, 0xF7})
    push(quiet(fill)); /* 100 ms: one append; 40 ms held */
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 1));
  f.mock->send(f.mock->speech_started(1000, "item_u"));
  fail_unless(f.message("realtime-speech-started") != nullptr);
  push(quiet(0xF6)); /* the caller's turn: what is held, and this, at once */
  push(quiet(0xF5));
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 3));
  /* the turn is committed (the transcript's message says the event before it was read) */
  f.mock->send(R"({"type":"input_audio_buffer.committed","event_id":"ev_c","previous_item_id":null,"item_id":"item_u"})");
  f.mock->send(f.mock->input_transcript("item_u", "Hello."));
  fail_unless(f.message("realtime-transcript") != nullptr);
  for (uint8_t fill : {0xF4, 0x7E, 0x7D, 0x7C, 0x7B})
    push(quiet(fill));
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 4));
  auto appends = appended_audio(*f.mock);
  std::vector<size_t> sizes;
  std::vector<uint8_t> all;
  for (auto &a : appends) {
    sizes.push_back(a.size());
    all.insert(all.end(), a.begin(), a.end());
  }
  fail_unless(sizes == (std::vector<size_t>{640, 800, 480, 160, 800}), "append sizes %zu %zu %zu ...", sizes[0],
              sizes[1], sizes.size() > 2 ? sizes[2] : 0);
  fail_unless(all == sent, "the caller's audio changed or moved");
  fail_unless_equals_uint64(f.stat("input-appends"), 5);
  fail_unless_equals_uint64(f.stat("input-sent-ms"), 18 * 20); /* every frame pushed */
}
GST_END_TEST;

/* PCM16 24 kHz: the same rule on S16LE samples (103 quiet, -104 a sound) */
GST_START_TEST(test_idle_append_pcm) {
  Fx f;
  f.configured(true);
  auto frame = [](int16_t v, int16_t last) { /* 20 ms at 24 kHz */
    std::vector<uint8_t> b;
    for (int i = 0; i < 480; i++) {
      int16_t s = i == 479 ? last : (i % 2 ? v : static_cast<int16_t>(-v));
      b.push_back(static_cast<uint8_t>(s & 0xFF));
      b.push_back(static_cast<uint8_t>((s >> 8) & 0xFF));
    }
    return b;
  };
  f.push_bytes(frame(103, 0));
  f.push_bytes(frame(50, -103));
  f.push_bytes(frame(0, -104));
  f.push_bytes(frame(0, 0));
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000));
  auto appends = appended_audio(*f.mock);
  fail_unless_equals_int(appends.size(), 1);
  fail_unless_equals_int(appends[0].size(), 3 * 960);
  fail_unless_equals_uint64(f.stat("input-appends"), 1);
}
GST_END_TEST;

/* A 20 ms μ-law frame whose samples alternate +v and -v (peak about v). */
static std::vector<uint8_t> mulaw_level(int16_t v) {
  std::vector<uint8_t> b(160);
  for (size_t i = 0; i < b.size(); i++)
    b[i] = pa::mulaw_encode(static_cast<int16_t>(i % 2 ? -v : v));
  return b;
}

/* turn-append-ms (40 by default): from speech_started to the commit, frames
 * with sound go in appends of 40 ms, and a frame as quiet as the line
 * between words goes at once with what was held, so the silence that ends
 * the turn is never held; what is held at the commit goes then. */
GST_START_TEST(test_turn_append_pairs_sound) {
  Fx f;
  f.configured();
  std::vector<uint8_t> sent;
  auto push = [&](int16_t v) {
    std::vector<uint8_t> frame = mulaw_level(v);
    sent.insert(sent.end(), frame.begin(), frame.end());
    f.push_bytes(frame);
  };
  for (int i = 0; i < 5; i++)
    push(32); /* the line, -60 dBFS: one idle append of 100 ms */
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 0));
  f.mock->send(f.mock->speech_started(100, "item_u"));
  fail_unless(f.message("realtime-speech-started") != nullptr);
  push(8000);
  push(8000); /* 40 ms of speech: one append */
  push(8000);
  push(20); /* a pause: at once, with the speech held */
  push(20);
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 3));
  push(8000); /* held at the commit */
  f.mock->send(R"({"type":"input_audio_buffer.committed","event_id":"ev_c","previous_item_id":null,"item_id":"item_u"})");
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 4));
  push(20); /* idle again: quiet frames held, a sound sends them */
  push(20);
  push(8000);
  fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, 5));
  std::vector<size_t> sizes;
  std::vector<uint8_t> all;
  for (auto &a : appended_audio(*f.mock)) {
    sizes.push_back(a.size());
    all.insert(all.end(), a.begin(), a.end());
  }
  fail_unless(sizes == (std::vector<size_t>{800, 320, 320, 160, 160, 480}), "%zu appends: %zu %zu %zu %zu ...",
              sizes.size(), sizes[0], sizes[1], sizes.size() > 2 ? sizes[2] : 0, sizes.size() > 3 ? sizes[3] : 0);
  fail_unless(all == sent, "the caller's audio changed or moved");
  fail_unless_equals_uint64(f.stat("input-appends"), 6);
}
GST_END_TEST;

/* On a noisy line (noise at -35 dBFS, louder than the -50 dBFS the idle
 * gathering takes for quiet), the quiet level in a turn follows the line's
 * noise floor: until the floor has risen to it the noise is gathered like
 * speech, then each frame of it goes at once, while speech is still
 * gathered. */
GST_START_TEST(test_turn_append_noisy_line) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->speech_started(0, "item_u"));
  fail_unless(f.message("realtime-speech-started") != nullptr);
  for (int i = 0; i < 60; i++)
    f.push_bytes(mulaw_level(600));
  f.push_bytes(mulaw_level(8000));
  f.push_bytes(mulaw_level(8000));
  fail_unless(wait_until([&] { return f.mock->appended_bytes(1) == 62 * 160; }));
  auto appends = appended_audio(*f.mock);
  fail_unless(appends.size() >= 12);
  fail_unless_equals_int(appends.front().size(), 320); /* the floor starts at -50 dBFS */
  for (size_t k = appends.size() - 11; k < appends.size() - 1; k++)
    fail_unless_equals_int(appends[k].size(), 160); /* the noise, once the floor has learned it */
  fail_unless_equals_int(appends.back().size(), 320);   /* speech */
  fail_unless(appends.size() > 40, "%zu appends: the noise was gathered like speech", appends.size());
}
GST_END_TEST;

/* A model that stops reading: once more than 2 MiB wait on its socket the
 * caller's audio is dropped and counted (input-dropped-ms), never piled up
 * without bound; when it reads again the audio flows again, and everything
 * counted as sent arrives, in order. */
GST_START_TEST(test_stalled_model_drops_caller_audio) {
  Fx f;
  f.configured();
  std::mutex mu;
  std::condition_variable cv;
  bool stalled = false, release = false;
  f.mock->run([&] { /* the server's thread stops reading until released */
    std::unique_lock<std::mutex> g(mu);
    stalled = true;
    cv.notify_all();
    cv.wait_for(g, std::chrono::seconds(30), [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> g(mu);
    fail_unless(cv.wait_for(g, std::chrono::seconds(5), [&] { return stalled; }));
  }
  /* 8 s buffers of μ-law codes 0x80 + k % 100, all loud: the caller is
   * silent for the model's turn detection, so each goes as it comes */
  auto code = [](int k) { return static_cast<uint8_t>(0x80 + k % 100); };
  int pushed = 0;
  for (; pushed < 600 && f.stat("input-dropped-ms") == 0; pushed++)
    f.push_audio(64000, code(pushed));
  guint64 dropped = f.stat("input-dropped-ms");
  fail_unless(dropped > 0, "nothing dropped after %d buffers of 8 s", pushed);
  fail_unless_equals_uint64(dropped, 8000); /* the buffer that found the backlog full, alone */
  fail_unless_equals_uint64(f.stat("input-sent-ms"), (pushed - 1) * 8000ull);
  {
    std::lock_guard<std::mutex> g(mu);
    release = true;
  }
  cv.notify_all();
  fail_unless(wait_until([&] { return f.mock->appended_bytes(1) == (pushed - 1) * 64000ull; }, 20000),
              "the model did not get what was counted as sent");
  f.push_audio(160, 0x10); /* drained: the call goes on */
  fail_unless(wait_until([&] { return f.mock->appended_bytes(1) == (pushed - 1) * 64000ull + 160; }, 5000));
  fail_unless_equals_uint64(f.stat("input-dropped-ms"), 8000);
  auto appends = appended_audio(*f.mock);
  fail_unless_equals_int(appends.size(), pushed);
  for (int k = 0; k + 1 < pushed; k++) /* in order, whole */
    fail_unless(appends[k] == std::vector<uint8_t>(64000, code(k)), "append %d is not buffer %d", k, k);
  fail_unless(appends.back() == std::vector<uint8_t>(160, 0x10));
}
GST_END_TEST;

/* Without the model's turn detection, or with idle-append-ms=0 (quiet
 * frames while the caller is silent) or turn-append-ms=0 (frames with sound
 * in a turn), every frame goes as it comes. */
GST_START_TEST(test_append_gathering_off) {
  for (int variant = 0; variant < 3; variant++) {
    Fx f;
    if (variant == 0)
      gst_util_set_object_arg(G_OBJECT(f.el), "turn-detection", "none");
    else
      g_object_set(f.el, variant == 1 ? "idle-append-ms" : "turn-append-ms", 0u, nullptr);
    f.configured();
    if (variant == 2) {
      f.mock->send(f.mock->speech_started(0, "item_u"));
      fail_unless(f.message("realtime-speech-started") != nullptr);
    }
    for (int i = 0; i < 3; i++)
      f.push_bytes(mulaw_level(variant == 1 ? 0 : 8000));
    if (variant == 0)
      for (int i = 0; i < 3; i++)
        f.push_audio(160, pa::kMulawSilence);
    size_t n = variant == 0 ? 6 : 3;
    fail_unless(f.mock->wait_for("input_audio_buffer.append", 5000, nullptr, n - 1), "variant %d", variant);
    for (auto &a : appended_audio(*f.mock))
      fail_unless_equals_int(a.size(), 160);
    fail_unless_equals_uint64(f.stat("input-appends"), n);
  }
}
GST_END_TEST;

GST_START_TEST(test_no_session_created_assumes_ga) {
  rtmock::Options o;
  o.send_session_created = false;
  Fx f(o);
  f.start();
  rtmock::Received r;
  fail_unless(f.mock->wait_for("session.update", 5000, &r));
  assert_str(Doc(r.text).str("session.type"), "realtime");
}
GST_END_TEST;

GST_START_TEST(test_model_audio_framed_with_item_start) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("resp_1"));
  f.mock->send(f.mock->output_item_added("resp_1", "item_1"));
  f.model_audio("resp_1", "item_1", 100, 0x11);
  f.model_audio("resp_1", "item_1", 300, 0x22);
  f.model_audio("resp_1", "item_1", 50, 0x33);
  f.mock->send(f.mock->audio_done("resp_1", "item_1"));
  f.mock->send(f.mock->response_done("resp_1", "completed", {{"item_1", "message"}}));
  fail_unless(wait_until([&] { return f.buffers() == 3; }));
  auto flow = f.flow_snapshot();
  auto first_buf = std::find_if(flow.begin(), flow.end(), [](auto &s) { return s.rfind("buffer:", 0) == 0; });
  auto item_start = std::find(flow.begin(), flow.end(), "event:phoneagent/item-start");
  fail_unless(item_start != flow.end() && item_start < first_buf, "item-start must precede the item's audio");
  fail_unless_equals_int(f.flow_count("buffer:160"), 3); /* 20 ms frames only */

  GstBuffer *b[3];
  for (auto &x : b)
    x = gst_harness_pull(f.h);
  std::vector<uint8_t> expect;
  expect.insert(expect.end(), 100, 0x11);
  expect.insert(expect.end(), 300, 0x22);
  expect.insert(expect.end(), 50, 0x33);
  expect.insert(expect.end(), 30, pa::kMulawSilence); /* the last frame padded with μ-law silence */
  for (int i = 0; i < 3; i++) {
    GstMapInfo map;
    gst_buffer_map(b[i], &map, GST_MAP_READ);
    fail_unless(memcmp(map.data, expect.data() + i * 160, 160) == 0, "frame %d differs", i);
    gst_buffer_unmap(b[i], &map);
    fail_unless_equals_uint64(GST_BUFFER_DURATION(b[i]), 20 * GST_MSECOND);
    if (i)
      fail_unless_equals_uint64(GST_BUFFER_PTS(b[i]), GST_BUFFER_PTS(b[i - 1]) + 20 * GST_MSECOND);
    gst_buffer_unref(b[i]);
  }
  GstEvent *e;
  bool seen = false;
  while ((e = gst_harness_try_pull_event(f.h))) {
    const GstStructure *s = gst_event_get_structure(e);
    if (GST_EVENT_TYPE(e) == GST_EVENT_CUSTOM_DOWNSTREAM && gst_structure_has_name(s, "phoneagent/item-start")) {
      assert_str(gst_structure_get_string(s, "item-id"), "item_1");
      assert_str(gst_structure_get_string(s, "response-id"), "resp_1");
      seen = true;
    }
    gst_event_unref(e);
  }
  fail_unless(seen);
  GstCaps *caps = gst_pad_get_current_caps(f.h->sinkpad);
  fail_unless(gst_structure_has_name(gst_caps_get_structure(caps, 0), "audio/x-mulaw"));
  gst_caps_unref(caps);
  fail_unless_equals_uint64(f.stat("output-received-ms"), 56);
  fail_unless(f.message("realtime-response-done") != nullptr);
  fail_unless(f.message("realtime-usage") != nullptr);
  gint64 total = 0;
  gst_structure_get_int64(f.message("realtime-usage"), "total-tokens", &total);
  fail_unless_equals_int64(total, 1523);
}
GST_END_TEST;

/* The frames of one model delta go downstream as buffer lists of at most
 * 100 ms (one push, and one write to Twilio in twiliosink, instead of one
 * per 20 ms frame), still 20 ms buffers with contiguous timestamps; a
 * response's first frame goes alone. */
GST_START_TEST(test_model_audio_pushed_as_lists) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("resp_1"));
  f.mock->send(f.mock->output_item_added("resp_1", "item_1"));
  f.model_audio("resp_1", "item_1", 160, 0x11);
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
  f.model_audio("resp_1", "item_1", 1600, 0x22); /* 200 ms */
  fail_unless(wait_until([&] { return f.buffers() == 11; }));
  auto flow = f.flow_snapshot();
  auto first_buf = std::find(flow.begin(), flow.end(), "buffer:160");
  auto first_list = std::find_if(flow.begin(), flow.end(), [](auto &s) { return s.rfind("list:", 0) == 0; });
  fail_unless(first_buf != flow.end() && first_buf < first_list, "the response's first frame went in a list");
  fail_unless_equals_int(f.flow_count("list:5"), 2);
  fail_unless_equals_int(f.flow_count("buffer:160"), 11);
  GstClockTime prev = GST_CLOCK_TIME_NONE;
  for (int i = 0; i < 11; i++) {
    GstBuffer *b = gst_harness_pull(f.h);
    fail_unless_equals_int(gst_buffer_get_size(b), 160);
    fail_unless_equals_uint64(GST_BUFFER_DURATION(b), 20 * GST_MSECOND);
    if (GST_CLOCK_TIME_IS_VALID(prev))
      fail_unless_equals_uint64(GST_BUFFER_PTS(b), prev + 20 * GST_MSECOND);
    prev = GST_BUFFER_PTS(b);
    gst_buffer_unref(b);
  }
  fail_unless(wait_until([&] { return f.stat("output-pushed-ms") == 220; }));
}
GST_END_TEST;

/* Under the server: the element takes the call from the phoneagent.call
 * context and its model socket is read by the media thread that reads the
 * call's socket (ws-on-media-thread); the session works there as anywhere.
 * Without the context, the shared socket thread reads it. */
GST_START_TEST(test_model_socket_on_the_calls_media_thread) {
  auto loop = pa_check_media_loop();
  int peer = -1;
  PaCall *call = pa_check_socket_call(*loop, &peer);
  fail_unless(wait_until([&] { return pa_call_has_transport(call); }));
  {
    Fx f;
    GstContext *ctx = pa_call_context_new(call);
    gst_element_set_context(f.el, ctx);
    gst_context_unref(ctx);
    f.configured();
    GstStructure *st = f.stats();
    gboolean hosted = FALSE;
    fail_unless(gst_structure_get_boolean(st, "ws-on-media-thread", &hosted));
    gst_structure_free(st);
    fail_unless(hosted, "the model socket is not on the call's media thread");
    /* events from the model still reach downstream */
    f.mock->send(f.mock->response_created("resp_1"));
    f.mock->send(f.mock->output_item_added("resp_1", "item_1"));
    f.model_audio("resp_1", "item_1", 320, 0x11);
    fail_unless(wait_until([&] { return f.buffers() == 2; }));
  }
  {
    Fx f;
    f.configured();
    GstStructure *st = f.stats();
    gboolean hosted = TRUE;
    fail_unless(gst_structure_get_boolean(st, "ws-on-media-thread", &hosted));
    gst_structure_free(st);
    fail_if(hosted);
  }
  loop.reset();
  g_object_unref(call);
  close(peer);
}
GST_END_TEST;

GST_START_TEST(test_beta_dialect_followed) {
  rtmock::Options o;
  o.dialect = Dialect::Beta;
  Fx f(o);
  Doc *d = f.configured(); /* protocol=auto: follows session.created */
  assert_str(d->str("session.input_audio_format"), "g711_ulaw");
  assert_str(d->str("session.output_audio_format"), "g711_ulaw");
  assert_str(d->str("session.modalities[1]"), "audio");
  assert_str(d->str("session.turn_detection.type"), "server_vad");
  fail_unless(!d->has("session.type"));
  fail_unless(!d->has("session.audio"));
  fail_unless(!d->has("session.model"));
  fail_unless(!f.mock->upgrade_headers(1).count("openai-beta")); /* auto sends no beta header */
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 320); /* response.audio.delta */
  fail_unless(wait_until([&] { return f.buffers() == 2; }));
  assert_str(gst_structure_get_string(f.message("realtime-session", 5000, 2), "dialect"), "beta");
}
GST_END_TEST;

GST_START_TEST(test_beta_forced_sends_header) {
  rtmock::Options o;
  o.dialect = Dialect::Beta;
  Fx f(o);
  g_object_set(f.el, "protocol", 2 /* beta */, "temperature", 0.7, nullptr);
  Doc *d = f.configured();
  assert_str(f.mock->upgrade_headers(1)["openai-beta"], "realtime=v1");
  assert_str(d->str("session.input_audio_format"), "g711_ulaw");
  fail_unless(d->dbl("session.temperature") > 0.69);
}
GST_END_TEST;

GST_START_TEST(test_pcm_path) {
  Fx f;
  Doc *d = f.configured(true);
  assert_str(d->str("session.audio.input.format.type"), "audio/pcm");
  fail_unless_equals_int(d->num("session.audio.input.format.rate"), 24000);
  assert_str(d->str("session.audio.output.format.type"), "audio/pcm");
  f.push_audio(960, 0x01);
  fail_unless(wait_until([&] { return f.mock->appended_bytes(1) == 960; }));
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 960 * 2 + 100);
  f.mock->send(f.mock->audio_done("r1", "i1"));
  fail_unless(wait_until([&] { return f.buffers() == 3; }));
  fail_unless_equals_int(f.flow_count("buffer:960"), 3); /* 20 ms at 24 kHz S16 */
  GstCaps *caps = gst_pad_get_current_caps(f.h->sinkpad);
  GstStructure *s = gst_caps_get_structure(caps, 0);
  fail_unless(gst_structure_has_name(s, "audio/x-raw"));
  gint rate = 0;
  gst_structure_get_int(s, "rate", &rate);
  fail_unless_equals_int(rate, 24000);
  gst_caps_unref(caps);
}
GST_END_TEST;

GST_START_TEST(test_transcripts_latency_and_greeting) {
  Fx f;
  g_object_set(f.el, "greeting", "Greet the caller.", nullptr);
  f.configured();
  fail_unless(f.message("realtime-session", 5000, 2) != nullptr); /* configured */
  g_usleep(100 * 1000);
  fail_unless_equals_int(f.mock->count("response.create"), 0); /* nobody to greet yet */
  f.push_audio(160, 0xff);                                     /* the caller is there */
  rtmock::Received g;
  fail_unless(f.mock->wait_for("response.create", 5000, &g));
  assert_str(Doc(g.text).str("response.instructions"), "Greet the caller.");
  fail_unless(index_of(*f.mock, "session.update") < index_of(*f.mock, "response.create"));
  f.mock->send(f.mock->response_created("r0"));
  f.mock->send(f.mock->response_done("r0"));
  f.mock->send(f.mock->speech_started(1000, "item_u"));
  f.mock->send(f.mock->speech_stopped(2000, "item_u"));
  f.mock->send(f.mock->input_transcript("item_u", "What are your hours?"));
  f.mock->send(f.mock->response_created("r1"));
  f.mock->send(f.mock->transcript_delta("r1", "item_a", "We open "));
  f.model_audio("r1", "item_a", 160);
  f.mock->send(f.mock->transcript_done("r1", "item_a", "We open at nine."));
  const GstStructure *lat = f.message("realtime-latency");
  fail_unless(lat != nullptr);
  assert_str(gst_structure_get_string(lat, "response-id"), "r1");
  gdouble server_ms = -1;
  gst_structure_get_double(lat, "server-ms", &server_ms);
  fail_unless(server_ms >= 0);
  fail_unless(gst_structure_has_field(lat, "latency-ms"));
  fail_unless(f.message("realtime-speech-started") != nullptr);
  fail_unless(f.message("realtime-speech-stopped") != nullptr);
  const GstStructure *t;
  bool user_final = false, agent_partial = false, agent_final = false;
  fail_unless(f.message("realtime-transcript", 5000, 2) != nullptr);
  for (size_t i = 0; (t = f.message("realtime-transcript", 100, i)); i++) {
    gboolean fin = FALSE;
    gst_structure_get_boolean(t, "final", &fin);
    std::string role = gst_structure_get_string(t, "role"), text = gst_structure_get_string(t, "text");
    user_final |= role == "user" && fin && text == "What are your hours?";
    agent_partial |= role == "assistant" && !fin && text == "We open ";
    agent_final |= role == "assistant" && fin && text == "We open at nine.";
  }
  fail_unless(user_final && agent_partial && agent_final);
}
GST_END_TEST;

/* ------------------------------------------------------------ function calls */

GST_START_TEST(test_tool_url_round_trip) {
  rtmock::HttpMock http;
  fail_unless(http.start());
  http.respond(200, R"({"temp":21,"unit":"C"})");
  Fx f;
  g_object_set(f.el, "tool-url", http.url("/tools").c_str(), nullptr);
  f.configured();
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/call-info", "call-sid", G_TYPE_STRING, "CA9", "stream-sid", G_TYPE_STRING, "MZ9",
                        "account-sid", G_TYPE_STRING, "AC9", nullptr))));
  f.mock->send(f.mock->response_created("resp_2"));
  f.mock->send(function_item_added("resp_2", "item_f", "call_1", "get_weather"));
  f.mock->send(f.mock->function_call("resp_2", "item_f", "call_1", "get_weather", R"({"city":"Paris"})"));
  fail_unless(http.wait_requests(1, 5000));
  auto req = http.requests()[0];
  assert_str(req.method, "POST");
  assert_str(req.path, "/tools");
  assert_str(req.content_type, "application/json");
  Doc body(req.body);
  assert_str(body.str("name"), "get_weather");
  assert_str(body.str("call_id"), "call_1");
  assert_str(body.str("arguments.city"), "Paris");
  assert_str(body.str("call_sid"), "CA9");
  assert_str(body.str("stream_sid"), "MZ9");
  /* the output waits for response.done */
  g_usleep(100 * 1000);
  fail_unless_equals_int(outputs(*f.mock).size(), 0);
  f.mock->send(f.mock->response_done("resp_2", "completed", {{"item_f", "function_call", "get_weather", "call_1"}}));
  fail_unless(wait_outputs(*f.mock, 1));
  Doc out(outputs(*f.mock)[0].text);
  assert_str(out.str("item.call_id"), "call_1");
  assert_str(out.str("item.output"), R"({"temp":21,"unit":"C"})");
  fail_unless(f.mock->wait_for("response.create", 5000));
  fail_unless(index_of(*f.mock, "conversation.item.create") < index_of(*f.mock, "response.create"));
  const GstStructure *c = f.message("realtime-function-call");
  assert_str(gst_structure_get_string(c, "handler"), "tool-url");
  assert_str(gst_structure_get_string(c, "arguments"), R"({"city":"Paris"})");
  const GstStructure *r = f.message("realtime-function-result");
  gboolean err = TRUE;
  gst_structure_get_boolean(r, "error", &err);
  fail_if(err);
}
GST_END_TEST;

static void on_function_call(GstElement *el, const gchar *name, const gchar *call_id, const gchar *args, gpointer data) {
  auto *seen = static_cast<std::vector<std::string> *>(data);
  seen->push_back(std::string(name) + "|" + call_id + "|" + args);
  std::string id = call_id;
  gst_object_ref(el);
  /* answered later, from another thread */
  std::thread([el, id] {
    g_usleep(20 * 1000);
    gboolean ok = FALSE;
    g_signal_emit_by_name(el, "function-result", id.c_str(), "{\"ok\":1}", &ok);
    fail_unless(ok);
    gst_object_unref(el);
  }).detach();
}

GST_START_TEST(test_signal_round_trip_beta_and_answered_once) {
  rtmock::Options o;
  o.dialect = Dialect::Beta;
  Fx f(o);
  std::vector<std::string> seen;
  g_signal_connect(f.el, "function-call", G_CALLBACK(on_function_call), &seen);
  f.configured();
  f.mock->send(f.mock->response_created("r3"));
  f.mock->send(function_item_added("r3", "item_f2", "call_2", "lookup"));
  f.mock->send(f.mock->function_call("r3", "item_f2", "call_2", "lookup", R"({"q":"x"})")); /* beta: no name */
  f.mock->send(f.mock->response_done("r3"));
  fail_unless(wait_outputs(*f.mock, 1));
  fail_unless_equals_int(seen.size(), 1);
  assert_str(seen[0], R"(lookup|call_2|{"q":"x"})");
  assert_str(Doc(outputs(*f.mock)[0].text).str("item.output"), R"({"ok":1})");
  fail_unless(f.mock->wait_for("response.create", 5000));
  gboolean ok = TRUE;
  g_signal_emit_by_name(f.el, "function-result", "call_2", "{\"again\":1}", &ok);
  fail_if(ok); /* answered once */
  g_signal_emit_by_name(f.el, "function-result", "call_unknown", "{}", &ok);
  fail_if(ok);
  /* the model repeating the call does not get a second answer */
  f.mock->send(f.mock->function_call("r3", "item_f2", "call_2", "lookup", R"({"q":"x"})"));
  /* sentinel: another call, answered */
  f.mock->send(f.mock->response_created("r4"));
  f.mock->send(function_item_added("r4", "item_f3", "call_3", "lookup"));
  f.mock->send(f.mock->function_call("r4", "item_f3", "call_3", "lookup", "{}"));
  f.mock->send(f.mock->response_done("r4"));
  fail_unless(wait_outputs(*f.mock, 2));
  g_usleep(50 * 1000);
  auto outs = outputs(*f.mock);
  fail_unless_equals_int(outs.size(), 2);
  assert_str(Doc(outs[1].text).str("item.call_id"), "call_3");
}
GST_END_TEST;

GST_START_TEST(test_tool_errors) {
  rtmock::HttpMock http;
  fail_unless(http.start());
  http.respond(200, R"({"late":true})", 3000);
  Fx f;
  g_object_set(f.el, "tool-url", http.url("/t").c_str(), "tool-timeout", 300u, nullptr);
  f.configured();
  gint64 t0 = g_get_monotonic_time();
  f.mock->send(f.mock->response_created("r1"));
  f.mock->send(f.mock->function_call("r1", "i1", "call_slow", "slow", "{}"));
  f.mock->send(f.mock->response_done("r1"));
  fail_unless(wait_outputs(*f.mock, 1));
  fail_unless(g_get_monotonic_time() - t0 < 2 * G_USEC_PER_SEC);
  Doc o1(outputs(*f.mock)[0].text);
  fail_unless(Doc(o1.str("item.output")).has("error"), "%s", o1.str("item.output").c_str());

  http.respond(500, "boom");
  f.mock->send(f.mock->response_created("r2"));
  f.mock->send(f.mock->function_call("r2", "i2", "call_500", "broken", "{}"));
  f.mock->send(f.mock->response_done("r2"));
  fail_unless(wait_outputs(*f.mock, 2));
  Doc o2(Doc(outputs(*f.mock)[1].text).str("item.output"));
  fail_unless(o2.str("error").find("500") != std::string::npos);
  assert_str(o2.str("body"), "boom");
  fail_unless_equals_uint64(f.stat("tool-errors"), 2);
}
GST_END_TEST;

GST_START_TEST(test_no_handler_answers_error) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("r1"));
  f.mock->send(f.mock->function_call("r1", "i1", "call_x", "nobody", "{}"));
  f.mock->send(f.mock->response_done("r1"));
  fail_unless(wait_outputs(*f.mock, 1));
  Doc o(Doc(outputs(*f.mock)[0].text).str("item.output"));
  fail_unless(o.str("error").find("nobody") != std::string::npos);
  assert_str(gst_structure_get_string(f.message("realtime-function-call"), "handler"), "none");
}
GST_END_TEST;

/* ------------------------------------------------------------ barge-in */

GST_START_TEST(test_barge_in_event_truncates) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("resp_1"));
  f.model_audio("resp_1", "item_1", 800); /* 100 ms */
  f.mock->send(f.mock->audio_done("resp_1", "item_1"));
  f.model_audio("resp_1", "item_2", 480); /* 60 ms, queued after it */
  fail_unless(wait_until([&] { return f.buffers() == 8; }));
  f.set_heard("item_1", 40);
  f.set_heard("item_2", 0, false); /* never reached the sink */
  f.push_oob(gst_structure_new("phoneagent/barge-in", "onset-running-time", G_TYPE_UINT64,
                               static_cast<guint64>(1 * GST_SECOND), "decision-running-time", G_TYPE_UINT64,
                               static_cast<guint64>(1100 * GST_MSECOND), "source", G_TYPE_STRING, "bargein", nullptr));
  rtmock::Received c;
  fail_unless(f.mock->wait_for("response.cancel", 5000, &c));
  assert_str(Doc(c.text).str("response_id"), "resp_1");
  fail_unless(f.mock->wait_for("conversation.item.truncate", 5000, nullptr, 1));
  auto tr = f.mock->received("conversation.item.truncate");
  Doc t1(tr[0].text), t2(tr[1].text);
  assert_str(t1.str("item_id"), "item_1");
  fail_unless_equals_int(t1.num("content_index"), 0);
  fail_unless_equals_int(t1.num("audio_end_ms"), 40);
  assert_str(t2.str("item_id"), "item_2");
  fail_unless_equals_int(t2.num("audio_end_ms"), 0);
  fail_unless(wait_until([&] { return f.flow_count("event:phoneagent/clear") == 1; }));
  const GstStructure *m = f.message("realtime-barge-in");
  fail_unless(m != nullptr);
  assert_str(gst_structure_get_string(m, "source"), "bargein");
  assert_str(gst_structure_get_string(m, "item-id"), "item_1");
  guint64 v = 0;
  gst_structure_get_uint64(m, "onset-running-time", &v);
  fail_unless_equals_uint64(v, GST_SECOND);
  gst_structure_get_uint64(m, "decision-running-time", &v);
  fail_unless_equals_uint64(v, 1100 * GST_MSECOND);
  gst_structure_get_uint64(m, "audio-end-ms", &v);
  fail_unless_equals_uint64(v, 40);
  gst_structure_get_uint64(m, "generated-ms", &v);
  fail_unless_equals_uint64(v, 100);
  guint n = 0;
  gst_structure_get_uint(m, "truncated-items", &n);
  fail_unless_equals_int(n, 2);
  gboolean cancelled = FALSE;
  gst_structure_get_boolean(m, "cancelled", &cancelled);
  fail_unless(cancelled);
  /* late deltas of the cancelled response are dropped; a new response plays */
  f.model_audio("resp_1", "item_2", 800);
  f.mock->send(f.mock->response_created("resp_5"));
  f.model_audio("resp_5", "item_5", 160);
  fail_unless(wait_until([&] { return f.buffers() == 9; }));
  g_usleep(50 * 1000);
  fail_unless_equals_int(f.buffers(), 9);
  fail_unless_equals_uint64(f.stat("dropped-cancelled-ms"), 100);
  fail_unless_equals_uint64(f.stat("barge-ins"), 1);
}
GST_END_TEST;

/* The caller interrupts after our response.create, before response.created:
 * that response is cancelled when it appears and none of it is played. */
GST_START_TEST(test_barge_in_before_response_created) {
  Fx f;
  g_object_set(f.el, "greeting", "Hello.", nullptr);
  f.configured();
  f.push_audio(160, 0xff);
  rtmock::Received g;
  fail_unless(f.mock->wait_for("response.create", 5000, &g));
  assert_str(Doc(g.text).str("event_id").substr(0, 5), "resp-");
  f.push_oob(gst_structure_new("phoneagent/barge-in", "source", G_TYPE_STRING, "bargein", nullptr));
  rtmock::Received c;
  fail_unless(f.mock->wait_for("response.cancel", 5000, &c));
  fail_unless(!Doc(c.text).has("response_id"));
  f.mock->send(f.mock->response_created("r_g"));
  f.model_audio("r_g", "i_g", 800);
  fail_unless(f.mock->wait_for("response.cancel", 5000, &c, 1));
  assert_str(Doc(c.text).str("response_id"), "r_g");
  /* sentinel: a later response plays */
  f.mock->send(f.mock->response_created("r_2"));
  f.model_audio("r_2", "i_2", 160);
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
  fail_unless_equals_uint64(f.stat("dropped-cancelled-ms"), 100);
}
GST_END_TEST;

GST_START_TEST(test_truncate_at_generated_when_played_more) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 800); /* 100 ms so far; still being generated */
  fail_unless(wait_until([&] { return f.buffers() == 5; }));
  f.set_heard("i1", 120); /* the sink's frames are padded: more than generated */
  f.mock->send(f.mock->speech_started(5000, "item_u"));
  rtmock::Received t;
  fail_unless(f.mock->wait_for("conversation.item.truncate", 5000, &t));
  fail_unless_equals_int(Doc(t.text).num("audio_end_ms"), 100); /* min(played, generated) */
  assert_str(gst_structure_get_string(f.message("realtime-barge-in"), "source"), "server-vad");
}
GST_END_TEST;

GST_START_TEST(test_speech_while_silent_is_not_barge_in) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 160);
  f.mock->send(f.mock->audio_done("r1", "i1"));
  f.mock->send(f.mock->response_done("r1", "completed", {{"i1", "message"}}));
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
  f.set_heard("i1", 20); /* all of it heard */
  fail_unless(f.message("realtime-response-done") != nullptr);
  f.mock->send(f.mock->speech_started(5000, "item_u"));
  fail_unless(f.message("realtime-speech-started") != nullptr);
  f.push_oob(gst_structure_new("phoneagent/barge-in", "source", G_TYPE_STRING, "bargein", nullptr));
  g_usleep(100 * 1000);
  fail_unless_equals_int(f.mock->count("response.cancel"), 0);
  fail_unless_equals_int(f.mock->count("conversation.item.truncate"), 0);
  fail_unless_equals_int(f.flow_count("event:phoneagent/clear"), 0);
  fail_unless_equals_int(f.message_count("realtime-barge-in"), 0);
}
GST_END_TEST;

GST_START_TEST(test_pause_resume_forwarded) {
  Fx f;
  f.configured();
  f.push_oob(gst_structure_new("phoneagent/pause", "reason", G_TYPE_STRING, "hold", nullptr));
  f.push_oob(gst_structure_new("phoneagent/resume", "reason", G_TYPE_STRING, "hold", nullptr));
  fail_unless(wait_until([&] { return f.flow_count("event:phoneagent/resume") == 1; }));
  fail_unless_equals_int(f.flow_count("event:phoneagent/pause"), 1);
  bool pause = false;
  while (GstEvent *e = gst_harness_try_pull_event(f.h)) {
    const GstStructure *s = gst_event_get_structure(e);
    if (s && gst_structure_has_name(s, "phoneagent/pause")) {
      fail_unless_equals_int(GST_EVENT_TYPE(e), GST_EVENT_CUSTOM_DOWNSTREAM_OOB);
      assert_str(gst_structure_get_string(s, "reason"), "hold");
      pause = true;
    }
    gst_event_unref(e);
  }
  fail_unless(pause);
}
GST_END_TEST;

GST_START_TEST(test_dtmf_forwarded_and_told) {
  Fx f;
  f.configured();
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/dtmf", "digit", G_TYPE_STRING, "5", nullptr))));
  rtmock::Received r;
  fail_unless(f.mock->wait_for("conversation.item.create", 5000, &r));
  Doc d(r.text);
  assert_str(d.str("item.role"), "user");
  fail_unless(d.str("item.content[0].text").find("5") != std::string::npos);
  fail_unless(f.mock->wait_for("response.create", 5000));
  fail_unless(wait_until([&] { return f.flow_count("event:phoneagent/dtmf") == 1; }));
}
GST_END_TEST;

/* ------------------------------------------------------------ built-in tools */

static void end_call_response(Fx &f, const std::string &call_id) {
  f.mock->send(f.mock->response_created("r_bye"));
  f.mock->send(f.mock->output_item_added("r_bye", "i_bye"));
  f.model_audio("r_bye", "i_bye", 1600); /* 200 ms goodbye */
  f.mock->send(f.mock->audio_done("r_bye", "i_bye"));
  f.mock->send(function_item_added("r_bye", "i_fn", call_id, "end_call"));
  f.mock->send(f.mock->function_call("r_bye", "i_fn", call_id, "end_call", R"({"reason":"caller is done"})"));
  f.mock->send(f.mock->response_done("r_bye", "completed",
                                     {{"i_bye", "message"}, {"i_fn", "function_call", "end_call", call_id}}));
}

GST_START_TEST(test_end_call_after_goodbye_heard) {
  Fx f;
  f.configured();
  f.set_heard("i_bye", 0);
  end_call_response(f, "call_end");
  fail_unless(wait_until([&] { return f.buffers() == 10; }));
  g_usleep(300 * 1000);
  fail_unless_equals_int(f.flow_count("event:eos"), 0); /* the goodbye is not heard yet */
  fail_unless_equals_int(outputs(*f.mock).size(), 0);
  f.set_heard("i_bye", 120);
  g_usleep(100 * 1000);
  fail_unless_equals_int(f.flow_count("event:eos"), 0);
  gint64 t0 = g_get_monotonic_time();
  f.set_heard("i_bye", 200);
  fail_unless(wait_until([&] { return f.flow_count("event:eos") == 1; }, 2000));
  gint64 closed_at = 0;
  fail_unless(f.mock->wait_closed(1, 2000, &closed_at));
  fail_unless(closed_at - t0 < G_USEC_PER_SEC);
  auto outs = outputs(*f.mock);
  fail_unless_equals_int(outs.size(), 1);
  assert_str(Doc(outs[0].text).str("item.call_id"), "call_end");
  const GstStructure *m = f.message("realtime-call-end");
  assert_str(gst_structure_get_string(m, "action"), "end-call");
  assert_str(gst_structure_get_string(m, "reason"), "caller is done");
}
GST_END_TEST;

GST_START_TEST(test_end_call_not_if_interrupted) {
  Fx f;
  f.configured();
  f.set_heard("i_bye", 60);
  end_call_response(f, "call_end2");
  fail_unless(wait_until([&] { return f.buffers() == 10; }));
  fail_unless(f.message("realtime-response-done") != nullptr);
  f.push_oob(gst_structure_new("phoneagent/barge-in", "source", G_TYPE_STRING, "bargein", nullptr));
  fail_unless(wait_outputs(*f.mock, 1));
  Doc o(Doc(outputs(*f.mock)[0].text).str("item.output"));
  fail_unless(o.str("error").find("interrupted") != std::string::npos);
  rtmock::Received t;
  fail_unless(f.mock->wait_for("conversation.item.truncate", 5000, &t));
  fail_unless_equals_int(Doc(t.text).num("audio_end_ms"), 60);
  f.set_heard("i_bye", 200);
  g_usleep(300 * 1000);
  fail_unless_equals_int(f.flow_count("event:eos"), 0);
  fail_if(f.mock->wait_closed(1, 10));
  fail_unless_equals_int(f.message_count("realtime-call-end"), 0);
}
GST_END_TEST;

GST_START_TEST(test_transfer_to_human) {
  g_unsetenv("TWILIO_ACCOUNT_SID");
  g_unsetenv("TWILIO_AUTH_TOKEN");
  rtmock::HttpMock twilio;
  fail_unless(twilio.start());
  twilio.respond(200, R"({"sid":"CA1","status":"in-progress"})");
  Fx f;
  g_object_set(f.el, "transfer-number", "+14155550100", "twilio-auth-token", "tok-secret", "twilio-api-base-url",
               twilio.url("").c_str(), nullptr);
  Doc *d = f.configured();
  assert_str(d->str("session.tools[1].name"), "transfer_to_human");
  fail_unless(gst_harness_push_event(f.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
      gst_structure_new("phoneagent/call-info", "call-sid", G_TYPE_STRING, "CA1", "stream-sid", G_TYPE_STRING, "MZ1",
                        "account-sid", G_TYPE_STRING, "AC1", "from", G_TYPE_STRING, "+1", "to", G_TYPE_STRING, "+2",
                        nullptr))));
  f.set_heard("i_tr", 0);
  f.mock->send(f.mock->response_created("r_tr"));
  f.model_audio("r_tr", "i_tr", 800);
  f.mock->send(f.mock->audio_done("r_tr", "i_tr"));
  f.mock->send(f.mock->function_call("r_tr", "i_fn", "call_tr", "transfer_to_human", R"({"reason":"billing"})"));
  f.mock->send(f.mock->response_done("r_tr"));
  g_usleep(200 * 1000);
  fail_unless_equals_int(twilio.requests().size(), 0); /* not before the sentence is heard */
  f.set_heard("i_tr", 100);
  fail_unless(twilio.wait_requests(1, 5000));
  auto req = twilio.requests()[0];
  assert_str(req.method, "POST");
  assert_str(req.path, "/2010-04-01/Accounts/AC1/Calls/CA1.json");
  std::string creds = "AC1:tok-secret";
  assert_str(req.headers["authorization"],
             "Basic " + pa::base64_encode(reinterpret_cast<const uint8_t *>(creds.data()), creds.size()));
  fail_unless(req.content_type == "application/x-www-form-urlencoded");
  GHashTable *form = soup_form_decode(req.body.c_str());
  assert_str(static_cast<const char *>(g_hash_table_lookup(form, "Twiml")),
             "<Response><Say>Connecting you now.</Say><Dial>+14155550100</Dial></Response>");
  g_hash_table_unref(form);
  fail_unless(wait_outputs(*f.mock, 1));
  fail_unless_equals_int(Doc(Doc(outputs(*f.mock)[0].text).str("item.output")).boolean("ok"), 1);
  const GstStructure *m = f.message("realtime-call-end");
  assert_str(gst_structure_get_string(m, "action"), "transfer");
  assert_str(gst_structure_get_string(m, "number"), "+14155550100");
  assert_str(gst_structure_get_string(m, "reason"), "billing");
  fail_unless(f.mock->wait_closed(1, 2000));
}
GST_END_TEST;

GST_START_TEST(test_transfer_failure_told_to_model) {
  rtmock::HttpMock twilio;
  fail_unless(twilio.start());
  twilio.respond(404, R"({"code":20404,"message":"not found","status":404})");
  Fx f;
  g_object_set(f.el, "transfer-number", "+14155550100", "twilio-auth-token", "t", "twilio-account-sid", "AC2",
               "call-sid", "CA2", "twilio-api-base-url", twilio.url("/").c_str(), nullptr);
  f.configured();
  f.mock->send(f.mock->response_created("r1"));
  f.mock->send(f.mock->function_call("r1", "i_fn", "call_t", "transfer_to_human", R"({"reason":"x"})"));
  f.mock->send(f.mock->response_done("r1"));
  fail_unless(twilio.wait_requests(1, 5000));
  assert_str(twilio.requests()[0].path, "/2010-04-01/Accounts/AC2/Calls/CA2.json");
  fail_unless(wait_outputs(*f.mock, 1));
  fail_unless(Doc(Doc(outputs(*f.mock)[0].text).str("item.output")).str("error").find("404") != std::string::npos);
  fail_unless(f.mock->wait_for("response.create", 5000)); /* the model tells the caller */
  assert_str(gst_structure_get_string(f.message("realtime-error"), "code"), "transfer-failed");
}
GST_END_TEST;

/* ------------------------------------------------------------ faults */

static void check_auth_error(GstMessage *m, const char *code, int status) {
  fail_unless(m != nullptr, "no error message");
  GError *err = nullptr;
  gchar *dbg = nullptr;
  gst_message_parse_error(m, &err, &dbg);
  fail_unless(g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_AUTHORIZED), "%s", err->message);
  fail_unless(strstr(err->message, "API key") != nullptr);
  const GstStructure *details = nullptr;
  gst_message_parse_error_details(m, &details);
  fail_unless(details != nullptr);
  assert_str(gst_structure_get_string(details, "provider-code"), code);
  gint st = -1;
  gst_structure_get_int(details, "http-status", &st);
  fail_unless_equals_int(st, status);
  fail_unless(strstr(dbg, "sk-") == nullptr);
  g_error_free(err);
  g_free(dbg);
}

GST_START_TEST(test_rejected_key_on_upgrade) {
  rtmock::Options o;
  o.reject_status = 401;
  Fx f(o);
  f.start();
  check_auth_error(f.error(), "http_401", 401);
  g_usleep(300 * 1000);
  fail_unless_equals_int(f.mock->connections(), 1); /* no retry with a bad key */
}
GST_END_TEST;

GST_START_TEST(test_rejected_key_event) {
  Fx f;
  rtmock::MockServer *m = f.mock.get();
  m->on_connect = [m](int) { m->send(m->error("invalid_api_key", "Incorrect API key provided.", "invalid_request_error")); };
  f.start();
  check_auth_error(f.error(), "invalid_api_key", 0);
  fail_unless(f.mock->wait_closed(1, 2000));
}
GST_END_TEST;

GST_START_TEST(test_session_expired_reconnects) {
  Fx f;
  f.configured();
  f.mock->send(f.mock->input_transcript("item_u", "My account number is 42."));
  f.mock->send(f.mock->response_created("r1"));
  f.mock->send(f.mock->transcript_done("r1", "item_a", "Thanks, one moment."));
  f.mock->send(f.mock->response_done("r1"));
  fail_unless(f.message("realtime-response-done") != nullptr);
  f.mock->send(f.mock->error("session_expired", "Your session hit the maximum duration of 60 minutes."));
  f.mock->close(1001, "session expired");
  fail_unless(f.mock->wait_connections(2, 5000));
  fail_unless(f.mock->wait_for("session.update", 5000, nullptr, 1));
  f.push_audio(160, 0x10); /* kept or sent, never lost (a sound: not held as quiet audio) */
  fail_unless(wait_until([&] { return f.mock->appended_bytes(2) == 160; }));
  auto updates = f.mock->received("session.update");
  fail_unless_equals_int(updates[1].conn, 2);
  assert_str(Doc(updates[1].text).str("session.audio.input.format.type"), "audio/pcmu"); /* the same configuration */
  assert_str(Doc(updates[1].text).str("session.tools[0].name"), "end_call");
  bool summary = false;
  for (auto &r : f.mock->received("conversation.item.create"))
    if (r.conn == 2) {
      Doc d(r.text);
      std::string text = d.str("item.content[0].text");
      summary = d.str("item.role") == "system" && text.find("My account number is 42.") != std::string::npos &&
                text.find("Thanks, one moment.") != std::string::npos;
    }
  fail_unless(summary, "the new session was not told the conversation so far");
  fail_unless_equals_uint64(f.stat("reconnects"), 1);
  fail_unless(f.error(10) == nullptr);
  bool reconnecting = false;
  for (size_t i = 0; const GstStructure *s = f.message("realtime-session", 100, i); i++)
    reconnecting |= g_strcmp0(gst_structure_get_string(s, "state"), "reconnecting") == 0;
  fail_unless(reconnecting);
}
GST_END_TEST;

GST_START_TEST(test_socket_drop_reconnects) {
  Fx f;
  f.configured();
  f.mock->close(1011, "internal error");
  fail_unless(f.mock->wait_connections(2, 5000));
  fail_unless(f.mock->wait_for("session.update", 5000, nullptr, 1));
  f.mock->send(f.mock->response_created("r1"), 2);
  f.model_audio("r1", "i1", 160);
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
}
GST_END_TEST;

GST_START_TEST(test_gives_up_cleanly_after_a_working_session) {
  Fx f;
  g_object_set(f.el, "reconnect-attempts", 1u, nullptr);
  f.configured();
  f.mock.reset(); /* the server goes away for good */
  fail_unless(wait_until([&] { return f.flow_count("event:eos") == 1; }, 5000));
  fail_unless(f.error(10) == nullptr);
  fail_unless(!f.warnings.empty());
  bool failed = false;
  for (size_t i = 0; const GstStructure *s = f.message("realtime-session", 100, i); i++)
    failed |= g_strcmp0(gst_structure_get_string(s, "state"), "failed") == 0;
  fail_unless(failed);
}
GST_END_TEST;

GST_START_TEST(test_never_connected_is_an_error) {
  Fx f;
  std::string url = f.mock->url();
  f.mock.reset();
  g_object_set(f.el, "location", url.c_str(), "reconnect-attempts", 1u, nullptr);
  f.start();
  GstMessage *m = f.error();
  fail_unless(m != nullptr);
  GError *err = nullptr;
  gst_message_parse_error(m, &err, nullptr);
  fail_unless(g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ_WRITE));
  g_error_free(err);
}
GST_END_TEST;

GST_START_TEST(test_caller_eos_closes_socket) {
  Fx f;
  f.configured();
  gint64 t0 = g_get_monotonic_time();
  fail_unless(gst_harness_push_event(f.h, gst_event_new_eos()));
  gint64 closed_at = 0;
  fail_unless(f.mock->wait_closed(1, 1000, &closed_at));
  fail_unless(closed_at - t0 < G_USEC_PER_SEC);
  fail_unless(wait_until([&] { return f.flow_count("event:eos") == 1; }));
  g_usleep(300 * 1000);
  fail_unless_equals_int(f.mock->connections(), 1); /* no reconnect */
}
GST_END_TEST;

GST_START_TEST(test_stop_closes_socket) {
  Fx f;
  f.configured();
  gint64 t0 = g_get_monotonic_time();
  gst_element_set_state(f.el, GST_STATE_NULL);
  gint64 closed_at = 0;
  fail_unless(f.mock->wait_closed(1, 1000, &closed_at));
  fail_unless(closed_at - t0 < G_USEC_PER_SEC);
  fail_unless(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
}
GST_END_TEST;

GST_START_TEST(test_bad_events_ignored) {
  Fx f;
  f.configured();
  f.mock->send("{not json");
  f.mock->send("[1,2,3]");
  f.mock->send(R"({"no_type":true})");
  f.mock->send(R"({"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"%%%"})");
  f.mock->send(R"({"type":"response.brand_new_thing","x":1})");
  f.mock->send(f.mock->response_created("r1"));
  f.model_audio("r1", "i1", 160);
  fail_unless(wait_until([&] { return f.buffers() == 1; }));
  fail_unless_equals_uint64(f.stat("malformed-events"), 4);
  fail_unless_equals_uint64(f.stat("unknown-events"), 1);
  fail_unless(f.error(10) == nullptr);
  /* a provider error is a message, not the end */
  f.mock->send(f.mock->error("invalid_value", "Invalid voice", "invalid_request_error"));
  const GstStructure *e = f.message("realtime-error");
  fail_unless(e != nullptr);
  assert_str(gst_structure_get_string(e, "code"), "invalid_value");
  f.mock->send(f.mock->error("response_cancel_not_active", "no active response"));
  f.model_audio("r1", "i1", 160);
  fail_unless(wait_until([&] { return f.buffers() == 2; }));
  fail_unless_equals_int(f.message_count("realtime-error"), 1); /* the benign race is not reported */
}
GST_END_TEST;

/* The API key never appears in the log, even at level 9. */
static std::atomic<int> g_key_hits{0};
static std::atomic<int> g_log_lines{0};
static std::atomic<bool> g_capturing{false};
/* Installed once and never removed: removing a log function while other
 * threads (the shared WebSocket service thread) are logging races inside
 * GStreamer; a flag turns it off instead. */
static void key_log(GstDebugCategory *, GstDebugLevel, const gchar *, const gchar *, gint, GObject *,
                    GstDebugMessage *message, gpointer) {
  if (!g_capturing)
    return;
  const gchar *text = gst_debug_message_get(message);
  g_log_lines++;
  if (text && (strstr(text, "sk-SECRET-never-log") || strstr(text, "tw-SECRET-token")))
    g_key_hits++;
}

GST_START_TEST(test_api_key_never_logged) {
  rtmock::HttpMock twilio;
  fail_unless(twilio.start());
  gst_debug_remove_log_function(gst_debug_log_default);
  gst_debug_add_log_function(key_log, nullptr, nullptr);
  g_capturing = true;
  gst_debug_set_threshold_for_name("*", GST_LEVEL_MEMDUMP);
  {
    Fx f;
    g_object_set(f.el, "api-key", "sk-SECRET-never-log", "twilio-auth-token", "tw-SECRET-token", "transfer-number",
                 "+1555", "twilio-account-sid", "AC1", "call-sid", "CA1", "twilio-api-base-url",
                 twilio.url("").c_str(), nullptr);
    f.configured();
    assert_str(f.mock->upgrade_headers(1)["authorization"], "Bearer sk-SECRET-never-log");
    f.mock->send(f.mock->function_call("r1", "i1", "c1", "transfer_to_human", "{}"));
    f.mock->send(f.mock->response_done("r1"));
    fail_unless(twilio.wait_requests(1, 5000));
  }
  gst_debug_set_threshold_for_name("*", GST_LEVEL_WARNING);
  g_capturing = false;
  fail_unless(g_log_lines > 100, "the test did not see the log (%d lines)", g_log_lines.load());
  fail_unless_equals_int(g_key_hits.load(), 0);
}
GST_END_TEST;

/* ------------------------------------------------------------ with the real twiliosink */

namespace {
/* appsrc ! realtimemodel ! twiliosink, the call on a test transport */
struct Line {
  rtmock::MockServer mock;
  PaCall *call = nullptr;
  GstElement *pipe = nullptr, *model = nullptr;
  std::mutex mu;
  std::vector<pa::twilio::OutboundMessage> sent;
  std::vector<gushort> closes;
  int seq = 10;

  Line() {
    fail_unless(mock.start());
    call = pa_call_new(pa::CallConfig());
    pa_call_set_test_transport(
        call,
        [this](const std::string &text) {
          pa::twilio::OutboundMessage o;
          std::string err;
          fail_unless(pa::twilio::parse_outbound(text, o, err) == pa::twilio::ParseResult::Ok, "%s", err.c_str());
          std::lock_guard<std::mutex> g(mu);
          sent.push_back(o);
        },
        [this](gushort code, const std::string &) {
          std::lock_guard<std::mutex> g(mu);
          closes.push_back(code);
        });
    pa::twilio::StartInfo si;
    si.stream_sid = "MZ7";
    si.call_sid = "CA7";
    feed(pa::twilio::build_start(1, si));
    std::string desc = "appsrc name=src is-live=true format=time caps=\"" MULAW_CAPS "\" ! realtimemodel name=m "
                       "location=" + mock.url() + " ! twiliosink lead=1000 mark-interval=20 eos-timeout=2000";
    GError *err = nullptr;
    pipe = gst_parse_launch(desc.c_str(), &err);
    fail_unless(pipe != nullptr, "%s", err ? err->message : "");
    model = gst_bin_get_by_name(GST_BIN(pipe), "m");
    GstContext *ctx = pa_call_context_new(call);
    gst_element_set_context(pipe, ctx);
    gst_context_unref(ctx);
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    fail_unless(mock.wait_for("session.update", 5000));
  }
  ~Line() {
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(model);
    gst_object_unref(pipe);
    g_object_unref(call);
  }
  void feed(const std::string &s) { pa_call_handle_text(call, s.data(), s.size()); }
  size_t media_bytes() {
    std::lock_guard<std::mutex> g(mu);
    size_t n = 0;
    for (auto &o : sent)
      if (o.event == pa::twilio::Event::Media)
        n += o.payload.size();
    return n;
  }
  size_t count(pa::twilio::Event e) {
    std::lock_guard<std::mutex> g(mu);
    return std::count_if(sent.begin(), sent.end(), [e](auto &o) { return o.event == e; });
  }
  /* Twilio reports playback up to @ms of @item (mark names are item:ms:gN:mN) */
  void echo_marks(const std::string &item, guint64 up_to_ms) {
    std::vector<std::string> names;
    {
      std::lock_guard<std::mutex> g(mu);
      for (auto &o : sent)
        if (o.event == pa::twilio::Event::Mark) {
          gchar **parts = g_strsplit(o.mark_name.c_str(), ":", -1);
          if (g_strv_length(parts) >= 2 && item == parts[0] && g_ascii_strtoull(parts[1], nullptr, 10) <= up_to_ms)
            names.push_back(o.mark_name);
          g_strfreev(parts);
        }
    }
    for (auto &n : names)
      feed(pa::twilio::build_mark_echo(seq++, "MZ7", n));
  }
};
} // namespace

GST_START_TEST(test_twiliosink_barge_in_truncates_at_heard) {
  Line l;
  l.mock.send(l.mock.response_created("r1"));
  l.mock.send(l.mock.audio_delta("r1", "i1", std::vector<uint8_t>(3200, 0x21))); /* 400 ms */
  fail_unless(wait_until([&] { return l.media_bytes() == 3200; }));
  l.echo_marks("i1", 120);
  GstPad *sink = gst_element_get_static_pad(l.model, "sink");
  fail_unless(gst_pad_send_event(sink, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
      gst_structure_new("phoneagent/barge-in", "source", G_TYPE_STRING, "test", nullptr))));
  gst_object_unref(sink);
  rtmock::Received t;
  fail_unless(l.mock.wait_for("conversation.item.truncate", 5000, &t));
  Doc d(t.text);
  assert_str(d.str("item_id"), "i1");
  fail_unless_equals_int(d.num("audio_end_ms"), 120); /* what Twilio confirmed played */
  fail_unless(l.mock.wait_for("response.cancel", 5000));
  fail_unless(wait_until([&] { return l.count(pa::twilio::Event::Clear) == 1; }));
}
GST_END_TEST;

GST_START_TEST(test_twiliosink_end_call_hangs_up_after_goodbye) {
  Line l;
  l.mock.send(l.mock.response_created("r_bye"));
  l.mock.send(l.mock.audio_delta("r_bye", "i_bye", std::vector<uint8_t>(1600, 0x21))); /* 200 ms */
  l.mock.send(l.mock.audio_done("r_bye", "i_bye"));
  l.mock.send(l.mock.function_call("r_bye", "i_fn", "call_e", "end_call", "{}"));
  l.mock.send(l.mock.response_done("r_bye"));
  fail_unless(wait_until([&] { return l.media_bytes() == 1600; }));
  l.echo_marks("i_bye", 100);
  g_usleep(200 * 1000);
  {
    std::lock_guard<std::mutex> g(l.mu);
    fail_unless(l.closes.empty(), "hung up before the goodbye was heard");
  }
  l.echo_marks("i_bye", 200);
  fail_unless(wait_until([&] {
    std::lock_guard<std::mutex> g(l.mu);
    return !l.closes.empty();
  }));
  fail_unless_equals_int(l.closes[0], 1000); /* twiliosink closed the stream after EOS: Twilio hangs up */
  fail_unless(l.mock.wait_closed(1, 2000));
}
GST_END_TEST;

#ifdef HAVE_LOCALMODEL
/* No location: the embedded local model, in-process, same protocol path. */
GST_START_TEST(test_embedded_local_engine) {
  Fx f;
  g_object_set(f.el, "location", nullptr, "greeting", "Greet the caller.", nullptr);
  f.start();
  bool configured = wait_until(
      [&] {
        for (size_t i = 0; const GstStructure *s = f.message("realtime-session", 10, i); i++)
          if (g_strcmp0(gst_structure_get_string(s, "state"), "configured") == 0)
            return true;
        return false;
      },
      15000);
  fail_unless(configured, "the local engine did not come up");
  f.push_audio(160, 0xff); /* the caller is there: the agent greets */
  fail_unless(wait_until([&] { return f.buffers() >= 10; }, 15000), "no greeting audio");
  fail_unless(f.flow_count("event:phoneagent/item-start") >= 1);
  fail_unless(f.message("realtime-response-done", 15000) != nullptr);
  fail_unless_equals_int(f.mock->connections(), 0); /* the mock was not used */
  fail_unless(f.error(10) == nullptr);
}
GST_END_TEST;
#endif

static Suite *realtimemodel_suite(void) {
  Suite *s = suite_create("realtimemodel");
  TCase *tc = tcase_create("session");
  tcase_set_timeout(tc, 30);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_session_opens_before_audio_ga);
  tcase_add_test(tc, test_wss_ca_file_and_extra_headers);
  tcase_add_test(tc, test_audio_before_session_is_kept);
  tcase_add_test(tc, test_append_ms_collects);
  tcase_add_test(tc, test_idle_append_holds_quiet_audio);
  tcase_add_test(tc, test_idle_append_pcm);
  tcase_add_test(tc, test_turn_append_pairs_sound);
  tcase_add_test(tc, test_turn_append_noisy_line);
  tcase_add_test(tc, test_append_gathering_off);
  tcase_add_test(tc, test_stalled_model_drops_caller_audio);
  tcase_add_test(tc, test_no_session_created_assumes_ga);
  tcase_add_test(tc, test_model_audio_framed_with_item_start);
  tcase_add_test(tc, test_model_audio_pushed_as_lists);
  tcase_add_test(tc, test_model_socket_on_the_calls_media_thread);
  tcase_add_test(tc, test_beta_dialect_followed);
  tcase_add_test(tc, test_beta_forced_sends_header);
  tcase_add_test(tc, test_pcm_path);
  tcase_add_test(tc, test_transcripts_latency_and_greeting);

  TCase *fn = tcase_create("functions");
  tcase_set_timeout(fn, 30);
  suite_add_tcase(s, fn);
  tcase_add_test(fn, test_tool_url_round_trip);
  tcase_add_test(fn, test_signal_round_trip_beta_and_answered_once);
  tcase_add_test(fn, test_tool_errors);
  tcase_add_test(fn, test_no_handler_answers_error);
  tcase_add_test(fn, test_end_call_after_goodbye_heard);
  tcase_add_test(fn, test_end_call_not_if_interrupted);
  tcase_add_test(fn, test_transfer_to_human);
  tcase_add_test(fn, test_transfer_failure_told_to_model);

  TCase *bi = tcase_create("barge-in");
  tcase_set_timeout(bi, 30);
  suite_add_tcase(s, bi);
  tcase_add_test(bi, test_barge_in_event_truncates);
  tcase_add_test(bi, test_barge_in_before_response_created);
  tcase_add_test(bi, test_truncate_at_generated_when_played_more);
  tcase_add_test(bi, test_speech_while_silent_is_not_barge_in);
  tcase_add_test(bi, test_pause_resume_forwarded);
  tcase_add_test(bi, test_dtmf_forwarded_and_told);

  TCase *fa = tcase_create("faults");
  tcase_set_timeout(fa, 30);
  suite_add_tcase(s, fa);
  tcase_add_test(fa, test_rejected_key_on_upgrade);
  tcase_add_test(fa, test_rejected_key_event);
  tcase_add_test(fa, test_session_expired_reconnects);
  tcase_add_test(fa, test_socket_drop_reconnects);
  tcase_add_test(fa, test_gives_up_cleanly_after_a_working_session);
  tcase_add_test(fa, test_never_connected_is_an_error);
  tcase_add_test(fa, test_caller_eos_closes_socket);
  tcase_add_test(fa, test_stop_closes_socket);
  tcase_add_test(fa, test_bad_events_ignored);
  tcase_add_test(fa, test_api_key_never_logged);

  TCase *ts = tcase_create("with-twiliosink");
  tcase_set_timeout(ts, 30);
  suite_add_tcase(s, ts);
  tcase_add_test(ts, test_twiliosink_barge_in_truncates_at_heard);
  tcase_add_test(ts, test_twiliosink_end_call_hangs_up_after_goodbye);
#ifdef HAVE_LOCALMODEL
  TCase *lm = tcase_create("local-engine");
  tcase_set_timeout(lm, 60);
  suite_add_tcase(s, lm);
  tcase_add_test(lm, test_embedded_local_engine);
#endif
  return s;
}

GST_CHECK_MAIN(realtimemodel)
