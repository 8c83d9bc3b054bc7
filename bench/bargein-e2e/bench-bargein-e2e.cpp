/* gst-phone-agent: end-to-end barge-in benchmark.
 *
 * The agent pipeline, in this process, once per call:
 *   twiliosrc ! bargein ! realtimemodel (the embedded local model, served
 *   once for all calls on 127.0.0.1) ! twiliosink
 * called by the Twilio emulator (one process per call, each with its own
 * caller audio). The agent file (run.sh passes long-replies.json) makes
 * every answer a long sentence. Two modes run side by side, the same calls
 * in each:
 *   local: bargein's local VAD alone (realtimemodel interrupt-response=false,
 *     and turn-detection=none: the model needs no VAD here, and its
 *     transcriptions would only slow the agent's sentences down);
 *   model: the model's VAD alone (bargein mode=model).
 * Two sets:
 *   speech: every call has CYCLES caller utterances (espeak-ng voices and
 *     variants, -12..-30 dBFS, over line noise) 6.5 s apart. The agent is
 *     speaking at each: in local mode it is told to (the `respond` action)
 *     2 s before; in model mode it speaks first and then answers every
 *     caller turn (create-response), the answer interrupted by the next
 *     utterance. Every other call echoes the agent back 20 dB down, 50 ms
 *     late. Figures from the emulator's report: reaction times (onset
 *     to clear, onset to the agent's audio stopping at the caller), audio
 *     leaked after the clear, the truncate against what was played. An
 *     utterance that starts while the agent is silent (the model still
 *     transcribing) is not counted: the agent counts as speaking when what
 *     the caller heard in the 200 ms before the onset was above -45 dBFS;
 *   noise: NOISE_S seconds per call of noise while the agent speaks without
 *     a break (it is told to speak again whenever it runs out), with white
 *     and pink hiss, clicks, coughs, DTMF keys, music-like tones, and the
 *     agent's own voice echoed back 15-25 dB down through the emulator's
 *     --echo: false barge-ins and the agent audio they cost.
 * Prints figures, asserts nothing; talks to 127.0.0.1 only; bounded.
 *
 * usage: bench-bargein-e2e EMULATOR [--calls N] [--cycles K] [--noise-calls N]
 *            [--noise-s S] [--lead MS] [--bargein "PROP=VALUE ..."] [--sink "PROP=VALUE ..."]
 *            [--model "PROP=VALUE ..."] [--agent FILE]
 *            [--sets speech,noise] [--keep DIR]
 */
#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bargein-signals.h"
#include "local-engine.h"
#include "pa-audio.h"

namespace {

struct Args {
  std::string emulator;
  int calls = 4;       /* per mode, speech set */
  int cycles = 14;     /* interruptions per call (speech set) */
  int noise_calls = 6; /* per mode, noise set */
  int noise_s = 55;    /* noise per call (noise set) */
  int lead = -1;       /* twiliosink lead; -1: its default */
  bool speech = true, noise = true;
  std::string keep;    /* keep the files here */
  std::string bargein_props; /* more bargein properties, e.g. "onset-ms=10" */
  std::string sink_props;    /* more twiliosink properties, e.g. "pause-clears=true" */
  std::string model_props;   /* more realtimemodel properties, e.g. "idle-append-ms=0" */
  std::string agent;   /* the local model's agent JSON (long replies) */
};

/* ------------------------------------------------------------ signals */

sig::Pcm espeak_voice(const std::string &text, const std::string &voice, double db) {
  return sig::espeak(text, db, voice, true);
}

bool write_wav(const std::string &path, const sig::Pcm &x) {
  std::vector<uint8_t> mu = sig::to_mulaw(x);
  std::string err;
  if (!pa::wav_write_mulaw(path, mu.data(), mu.size(), err)) {
    g_printerr("bench: %s\n", err.c_str());
    return false;
  }
  return true;
}

const char *kReplies[] = {
    "Say: Our clinic offers general dentistry, cleanings, fillings, crowns and whitening, and we accept most "
    "insurance plans, including the ones offered by the larger employers in the area.",
    "Say: We are open from eight in the morning until six in the evening on weekdays, and from nine until one on "
    "Saturdays. On public holidays the clinic is closed, but the emergency line stays open.",
    "Say: Before your first visit, please bring a photo identification, your insurance card and a list of any "
    "medication you take, and plan to arrive about fifteen minutes early to fill in the forms.",
    "Say: If you need to cancel or move an appointment, please let us know at least one day in advance, so that "
    "we can offer the time to another patient who is waiting for a slot.",
};

/* ------------------------------------------------------------ one call */

/* a caller utterance every 6.5 s: about 2 s of speech, the model's turn
 * end (500 ms), its answer (transcription and synthesis: 1-2.5 s here),
 * then a second or more of the answer before the next interruption */
constexpr int kPeriodMs = 6500;

enum class Mode { Local, Model };
const char *mode_name(Mode m) { return m == Mode::Local ? "local" : "model"; }

struct Call {
  Mode mode;
  bool noise_set;
  int index;
  std::vector<int> onsets_ms; /* speech set: scheduled onsets (for the agent's replies) */
  struct Noise {
    const char *kind;
    int begin_ms, end_ms;
  };
  std::vector<Noise> noises;  /* noise set: what was played when */
  std::string wav, report, log, heard_dir;
  std::vector<std::string> emu_args;
  GstElement *pipeline = nullptr, *bargein = nullptr, *model = nullptr, *sink = nullptr;
  int port = 0;
  GSubprocess *emu = nullptr;
  bool emu_done = false, eos = false;
  int emu_rc = -1;
  gint64 t0_us = 0;           /* twilio-call-started seen: about stream time 0 */
  guint64 t0_rt = 0;          /* its running time */
  size_t next_reply = 0;
  gint64 last_respond_us = 0;
  int replies = 0;
  std::vector<GstStructure *> barge_ins; /* realtime-barge-in */
  guint64 pauses = 0, rejected = 0, local_barge_ins = 0, pause_clears = 0, resent_ms = 0;

  ~Call() {
    for (GstStructure *s : barge_ins)
      gst_structure_free(s);
    if (emu) {
      if (!emu_done)
        g_subprocess_force_exit(emu);
      g_subprocess_wait(emu, nullptr, nullptr);
      g_object_unref(emu);
    }
    if (pipeline) {
      gst_element_set_state(pipeline, GST_STATE_NULL);
      for (GstElement *e : {bargein, model, sink})
        gst_object_unref(e);
      gst_object_unref(pipeline);
    }
  }
};

guint64 stat_u64(GstElement *e, const char *field) {
  GstStructure *s = nullptr;
  g_object_get(e, "stats", &s, nullptr);
  guint64 v = 0;
  if (s) {
    gst_structure_get_uint64(s, field, &v);
    gst_structure_free(s);
  }
  return v;
}

/* the agent has nothing left to say: nothing queued in realtimemodel and
 * the current item played out at Twilio */
bool agent_idle(Call &c) {
  if (stat_u64(c.model, "output-queued-ms") > 0)
    return false;
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM, gst_structure_new_empty("phoneagent/heard"));
  GstPad *pad = gst_element_get_static_pad(c.sink, "sink");
  bool idle = true;
  if (gst_pad_query(pad, q)) {
    const GstStructure *s = gst_query_get_structure(q);
    gboolean known = FALSE;
    guint64 played = 0, sent = 0;
    gst_structure_get_boolean(s, "known", &known);
    gst_structure_get_uint64(s, "played-ms", &played);
    gst_structure_get_uint64(s, "sent-ms", &sent);
    idle = !known || played + 300 >= sent; /* queue the next sentence just before the end */
  }
  gst_object_unref(pad);
  gst_query_unref(q);
  return idle;
}

void respond(Call &c, gint64 now) {
  const char *text = kReplies[(c.index + c.replies) % G_N_ELEMENTS(kReplies)];
  if (g_getenv("BENCH_VERBOSE"))
    printf("%s %d +%.0f ms: respond\n", mode_name(c.mode), c.index, static_cast<double>(now - c.t0_us) / 1000);
  g_signal_emit_by_name(c.model, "respond", text);
  c.replies++;
  c.last_respond_us = now;
}

void pump(Call &c) {
  GstBus *bus = gst_element_get_bus(c.pipeline);
  while (GstMessage *m = gst_bus_pop_filtered(
             bus, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR))) {
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
      c.eos = true;
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
      GError *e = nullptr;
      gst_message_parse_error(m, &e, nullptr);
      g_printerr("bench: %s call %d: pipeline error: %s\n", mode_name(c.mode), c.index, e ? e->message : "?");
      g_clear_error(&e);
      c.eos = true;
    } else if (const GstStructure *s = gst_message_get_structure(m)) {
      if (gst_structure_has_name(s, "twilio-call-started")) {
        c.t0_us = g_get_monotonic_time();
        gst_structure_get_uint64(s, "running-time", &c.t0_rt);
      }
      else if (gst_structure_has_name(s, "realtime-barge-in"))
        c.barge_ins.push_back(gst_structure_copy(s));
      if (g_getenv("BENCH_VERBOSE") && c.t0_us &&
          (g_str_has_prefix(gst_structure_get_name(s), "realtime-") || g_str_has_prefix(gst_structure_get_name(s), "barge-in")) &&
          !gst_structure_has_name(s, "realtime-transcript") && !gst_structure_has_name(s, "realtime-usage")) {
        gchar *t = gst_structure_to_string(s);
        printf("%s %d +%.0f ms: %.300s\n", mode_name(c.mode), c.index,
               static_cast<double>(g_get_monotonic_time() - c.t0_us) / 1000, t);
        g_free(t);
      }
    }
    gst_message_unref(m);
  }
  gst_object_unref(bus);
}

/* what the agent does, by the clock of the call */
void drive(Call &c) {
  if (!c.t0_us || c.emu_done)
    return;
  gint64 now = g_get_monotonic_time();
  gint64 t_ms = (now - c.t0_us) / 1000;
  if (!c.noise_set && c.mode == Mode::Model) {
    /* the agent speaks first; then the model answers each caller turn */
    if (c.replies == 0 && t_ms >= 800)
      respond(c, now);
  } else if (!c.noise_set) {
    /* no turns in the model: a sentence 2 s before each utterance */
    if (c.next_reply < c.onsets_ms.size() && t_ms >= c.onsets_ms[c.next_reply] - 2000) {
      respond(c, now);
      c.next_reply++;
    }
  } else if (t_ms >= 300 && now - c.last_respond_us > 1500 * 1000 && agent_idle(c)) {
    respond(c, now); /* without a break */
  }
}

bool start_call(Call &c, const std::string &url, int lead, const std::string &bargein_props,
                const std::string &sink_props, const std::string &model_props, const std::string &emulator) {
  std::string desc = "twiliosrc name=src port=0 address=127.0.0.1 ! bargein name=b " + bargein_props + " mode=" +
                     std::string(c.mode == Mode::Local ? "local-vad" : "model") +
                     " ! realtimemodel name=m location=" + url +
                     (c.mode == Mode::Local ? " interrupt-response=false turn-detection=none"
                                            : (c.noise_set ? " create-response=false" : " create-response=true")) +
                     (model_props.empty() ? std::string() : " " + model_props) +
                     " ! twiliosink name=sink " + sink_props +
                     (lead > 0 ? " lead=" + std::to_string(lead) : std::string());
  GError *err = nullptr;
  c.pipeline = gst_parse_launch(desc.c_str(), &err);
  if (!c.pipeline) {
    g_printerr("bench: %s\n", err ? err->message : "cannot build the pipeline");
    return false;
  }
  GstElement *src = gst_bin_get_by_name(GST_BIN(c.pipeline), "src");
  c.bargein = gst_bin_get_by_name(GST_BIN(c.pipeline), "b");
  c.model = gst_bin_get_by_name(GST_BIN(c.pipeline), "m");
  c.sink = gst_bin_get_by_name(GST_BIN(c.pipeline), "sink");
  if (gst_element_set_state(c.pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    gst_object_unref(src);
    g_printerr("bench: the pipeline did not start\n");
    return false;
  }
  g_object_get(src, "bound-port", &c.port, nullptr);
  gst_object_unref(src);
  std::vector<std::string> argv = {emulator, "--url", "http://127.0.0.1:" + std::to_string(c.port) + "/twilio/voice",
                                   "--quiet", "--audio", c.wav, "--tail-ms", "1500", "--report", c.report,
                                   "--max-duration-s", "150", "--out-dir", c.heard_dir};
  argv.insert(argv.end(), c.emu_args.begin(), c.emu_args.end());
  std::vector<const gchar *> a;
  for (auto &s : argv)
    a.push_back(s.c_str());
  a.push_back(nullptr);
  GSubprocessLauncher *l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_stdout_file_path(l, c.log.c_str());
  c.emu = g_subprocess_launcher_spawnv(l, a.data(), &err);
  g_object_unref(l);
  if (!c.emu) {
    g_printerr("bench: cannot run %s: %s\n", emulator.c_str(), err ? err->message : "?");
    return false;
  }
  return true;
}

/* ------------------------------------------------------------ figures */

struct Pct {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double at(double p) {
    if (v.empty())
      return NAN;
    std::sort(v.begin(), v.end());
    size_t k = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, k ? k - 1 : 0)];
  }
  double max() { return v.empty() ? NAN : *std::max_element(v.begin(), v.end()); }
  double sum() {
    double s = 0;
    for (double x : v)
      s += x;
    return s;
  }
};

struct ModeFigures {
  int turns = 0, detected = 0, missed = 0, silent = 0, extra_clears = 0, calls_failed = 0;
  Pct clear_ms, stop_ms, leaked_ms, trunc_err_ms;
  /* noise set */
  int false_barge_ins = 0;
  double lost_ms = 0, agent_played_ms = 0, noise_call_ms = 0;
  std::map<std::string, int> false_by_kind;
  guint64 underruns = 0;
  double underrun_ms = 0;
  guint64 pauses = 0, rejected = 0, pause_clears = 0, resent_ms = 0;
  int trunc_unmatched = 0;
  bool fell_behind = false;
};

double num(JsonObject *o, const char *name, double dflt = NAN) {
  JsonNode *n = json_object_get_member(o, name);
  return n && !JSON_NODE_HOLDS_NULL(n) ? json_node_get_double(n) : dflt;
}

void collect(Call &c, ModeFigures &f) {
  f.pauses += c.pauses;
  f.rejected += c.rejected;
  f.pause_clears += c.pause_clears;
  f.resent_ms += c.resent_ms;
  JsonParser *p = json_parser_new();
  if (c.emu_rc != 0 || !json_parser_load_from_file(p, c.report.c_str(), nullptr)) {
    g_printerr("bench: %s call %d: emulator exit %d, no report (log %s)\n", mode_name(c.mode), c.index, c.emu_rc,
               c.log.c_str());
    f.calls_failed++;
    g_object_unref(p);
    return;
  }
  JsonObject *root = json_node_get_object(json_parser_get_root(p));
  f.fell_behind = f.fell_behind || json_object_get_boolean_member(json_object_get_object_member(root, "totals"),
                                                                   "fell_behind");
  JsonObject *call = json_array_get_object_element(json_object_get_array_member(root, "calls"), 0);
  JsonArray *clears = json_object_get_array_member(call, "clears");
  JsonArray *turns = json_object_get_array_member(call, "turns");
  guint nclears = json_array_get_length(clears);
  f.underruns += static_cast<guint64>(num(call, "underruns", 0));
  f.underrun_ms += num(call, "underrun_ms", 0);
  /* a barge-in's onset in the caller's stream time (ms): its
   * onset-running-time, else when it was decided */
  auto onset_ms = [&c](const GstStructure *s) {
    guint64 rt = GST_CLOCK_TIME_NONE;
    if (!gst_structure_get_uint64(s, "onset-running-time", &rt) || !GST_CLOCK_TIME_IS_VALID(rt))
      gst_structure_get_uint64(s, "running-time", &rt);
    return (static_cast<double>(rt) - static_cast<double>(c.t0_rt)) / 1e6;
  };
  if (c.noise_set) {
    f.false_barge_ins += static_cast<int>(c.barge_ins.size());
    /* what was playing around each barge-in: at bargein's onset (the
     * clears also count the pauses' own, twiliosink pause-clears, let go);
     * in model mode, in the 700 ms before each clear (only barge-ins clear
     * there, and the model's speech_started has no onset of ours) */
    std::vector<double> at;
    if (c.mode == Mode::Local)
      for (GstStructure *b : c.barge_ins)
        at.push_back(onset_ms(b) + 20); /* the detector's onset, a frame early at most */
    else
      for (guint k = 0; k < nclears; k++)
        at.push_back(num(json_array_get_object_element(clears, k), "t_ms"));
    for (double t : at) {
      std::string kind = "echo";
      for (const auto &n : c.noises)
        if (n.begin_ms < t && n.end_ms > t - 700)
          kind = n.kind;
      f.false_by_kind[kind]++;
    }
    for (GstStructure *s : c.barge_ins) {
      guint64 gen = 0, end = 0;
      gst_structure_get_uint64(s, "generated-ms", &gen);
      gst_structure_get_uint64(s, "audio-end-ms", &end);
      f.lost_ms += static_cast<double>(gen - std::min(gen, end));
    }
    f.agent_played_ms += num(call, "played_ms", 0);
    f.noise_call_ms += num(call, "stream_ms", 0);
  } else {
    std::vector<bool> used(nclears, false);
    /* what the caller heard: was the agent audible just before each onset? */
    std::vector<uint8_t> heard;
    std::string werr;
    pa::wav_to_mulaw8k(c.heard_dir + "/call-1-heard.wav", heard, werr);
    auto audible_before = [&](double onset) {
      for (int k = static_cast<int>(onset / 20) - 10; k < static_cast<int>(onset / 20); k++) {
        if (k < 0 || static_cast<size_t>(k + 1) * 160 > heard.size())
          continue;
        double e = 0;
        for (size_t i = 0; i < 160; i++) {
          double v = pa::mulaw_decode(heard[static_cast<size_t>(k) * 160 + i]);
          e += v * v;
        }
        if (10 * std::log10(e / 160 + 1e-9) - 20 * std::log10(32768.0) > -45)
          return true;
      }
      return false;
    };
    for (guint t = 0; t < json_array_get_length(turns); t++) {
      double onset = num(json_array_get_object_element(turns, t), "onset_ms");
      f.turns++;
      if (!audible_before(onset)) {
        f.silent++; /* the agent was not speaking (still thinking): no interruption to make */
        for (guint k = 0; k < nclears; k++) {
          JsonObject *cl = json_array_get_object_element(clears, k);
          if (std::fabs(num(cl, "t_ms") - num(cl, "since_onset_ms", -1e9) - onset) <= 0.5)
            used[k] = true;
        }
        continue;
      }
      /* the turn's clears: the first stops the agent at the caller (the
       * pause's own with twiliosink pause-clears, else the barge-in's); the
       * last is the barge-in's, after which nothing may leak */
      bool found = false;
      JsonObject *first = nullptr, *last = nullptr;
      guint first_k = 0;
      for (guint k = 0; k < nclears; k++) {
        JsonObject *cl = json_array_get_object_element(clears, k);
        double since = num(cl, "since_onset_ms");
        if (used[k] || std::isnan(since) || std::fabs(num(cl, "t_ms") - since - onset) > 0.5)
          continue;
        used[k] = found = true;
        if (!first) {
          first = cl;
          first_k = k;
        }
        last = cl;
      }
      if (found) {
        JsonObject *cl = first;
        f.clear_ms.add(num(cl, "since_onset_ms"));
        f.stop_ms.add(num(cl, "audio_stop_since_onset_ms"));
        f.leaked_ms.add(num(last, "leaked_ms", 0)); /* the barge-in's clear is the turn's last */
        /* the turn's barge-in: in local mode the one whose onset is
         * nearest; what the caller had heard at the first clear is the
         * truth */
        const GstStructure *b = nullptr;
        double best = 400;
        if (c.mode == Mode::Local) {
          for (const GstStructure *x : c.barge_ins)
            if (std::fabs(onset_ms(x) - onset) < best) {
              best = std::fabs(onset_ms(x) - onset);
              b = x;
            }
        } else if (first_k < c.barge_ins.size()) {
          b = c.barge_ins[first_k]; /* only barge-ins clear here: the k-th clear is the k-th barge-in's */
        }
        /* the emulator counts what it played since the last clear (a
         * "run"): a clear earlier in this response (a pause let go, whose
         * clear and resend start a new run) leaves no truth to compare
         * with; the response started at most 4 s before the onset */
        bool run_whole = true;
        for (guint k = 0; k < nclears; k++) {
          double tc = num(json_array_get_object_element(clears, k), "t_ms");
          run_whole = run_whole && !(tc > onset - 4000 && tc < onset);
        }
        if (b && !run_whole) {
          f.trunc_unmatched++;
        } else if (b) {
          guint64 end = 0;
          gst_structure_get_uint64(b, "audio-end-ms", &end);
          if (g_getenv("BENCH_VERBOSE"))
            printf("%s %d turn at %.0f ms: barge-in onset %.0f ms, audio-end %" G_GUINT64_FORMAT
                   " ms; played at the first clear %.0f ms, at the last %.0f ms\n",
                   mode_name(c.mode), c.index, onset, onset_ms(b), end, num(cl, "played_ms_at_clear"),
                   num(last, "played_ms_at_clear"));
          f.trunc_err_ms.add(std::fabs(static_cast<double>(end) - num(cl, "played_ms_at_clear")));
        } else {
          f.trunc_unmatched++;
        }
      }
      found ? f.detected++ : f.missed++;
      if (g_getenv("BENCH_VERBOSE_MISSED") && (!found || num(first, "audio_stop_since_onset_ms") > 1000)) {
        printf("%s call %d turn at %.0f ms %s\n", mode_name(c.mode), c.index, onset, found ? "LATE" : "MISSED");
        for (guint k = 0; k < nclears; k++) {
          JsonObject *cl = json_array_get_object_element(clears, k);
          double tc = num(cl, "t_ms");
          if (tc > onset - 3000 && tc < onset + 8000)
            printf("   clear at %.0f since_onset %.0f\n", tc, num(cl, "since_onset_ms"));
        }
        for (const GstStructure *x : c.barge_ins)
          if (onset_ms(x) > onset - 3000 && onset_ms(x) < onset + 8000) {
            gchar *str = gst_structure_to_string(x);
            printf("   barge-in onset %.0f: %s\n", onset_ms(x), str);
            g_free(str);
          }
        for (guint t2 = 0; t2 < json_array_get_length(turns); t2++) {
          double o2 = num(json_array_get_object_element(turns, t2), "onset_ms");
          if (o2 > onset - 6000 && o2 < onset + 8000)
            printf("   turn onset %.0f\n", o2);
        }
      }
    }
    for (guint k = 0; k < nclears; k++)
      f.extra_clears += !used[k];
  }
  g_object_unref(p);
}

std::vector<std::string> split(const std::string &s) {
  std::vector<std::string> out;
  gchar **v = g_strsplit(s.c_str(), ",", -1);
  for (gchar **p = v; *p; p++)
    out.push_back(*p);
  g_strfreev(v);
  return out;
}

} // namespace

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--calls") a.calls = atoi(val().c_str());
    else if (k == "--cycles") a.cycles = atoi(val().c_str());
    else if (k == "--noise-s") a.noise_s = atoi(val().c_str());
    else if (k == "--noise-calls") a.noise_calls = atoi(val().c_str());
    else if (k == "--lead") a.lead = atoi(val().c_str());
    else if (k == "--keep") a.keep = val();
    else if (k == "--bargein") a.bargein_props = val();
    else if (k == "--sink") a.sink_props = val();
    else if (k == "--model") a.model_props = val();
    else if (k == "--agent") a.agent = val();
    else if (k == "--sets") {
      auto sets = split(val());
      a.speech = std::find(sets.begin(), sets.end(), "speech") != sets.end();
      a.noise = std::find(sets.begin(), sets.end(), "noise") != sets.end();
    } else if (a.emulator.empty() && k[0] != '-') a.emulator = k;
    else {
      g_printerr("usage: bench-bargein-e2e EMULATOR [--calls N] [--cycles K] [--noise-calls N] [--noise-s S] [--lead MS] "
                 "[--bargein PROPS] [--sink PROPS] [--model PROPS] [--agent FILE] [--sets speech,noise] [--keep DIR]\n");
      return 2;
    }
  }
  if (a.emulator.empty() || a.calls < 1 || a.calls > 20 || a.noise_calls < 1 || a.noise_calls > 20 || a.cycles < 1 ||
      a.cycles > 30 || a.noise_s < 5 || a.noise_s > 120) {
    g_printerr("bench: EMULATOR is required; --calls and --noise-calls 1..20, --cycles 1..30, --noise-s 5..120\n");
    return 2;
  }
  if (espeak_voice("test", "en-us", -20).empty()) {
    g_printerr("bench: espeak-ng is needed\n");
    return 2;
  }
  gchar *tmpd = g_dir_make_tmp("bench-bargein-e2e-XXXXXX", nullptr);
  std::string dir = a.keep.empty() ? tmpd : a.keep;
  g_mkdir_with_parents(dir.c_str(), 0755);

  pa::local::EngineConfig cfg;
  cfg.agent_file = a.agent;
  pa::local::Engine engine(cfg);
  GError *err = nullptr;
  if (!engine.start(&err)) {
    g_printerr("bench: the local model did not start: %s\n", err->message);
    return 1;
  }

  guint lead_default = 0;
  {
    GstElement *s = gst_element_factory_make("twiliosink", nullptr);
    if (!s) {
      g_printerr("bench: no twiliosink (GST_PLUGIN_PATH?)\n");
      return 2;
    }
    g_object_get(s, "lead", &lead_default, nullptr);
    gst_object_unref(s);
  }
  printf("bargein end-to-end benchmark: speech set %d calls per mode, %d interruptions each; noise set %d calls per "
         "mode, %d s each; twiliosink lead %d ms%s%s%s%s%s%s\n",
         a.calls, a.cycles, a.noise_calls, a.noise_s, a.lead > 0 ? a.lead : static_cast<int>(lead_default),
         a.bargein_props.empty() ? "" : "; bargein ", a.bargein_props.c_str(), a.sink_props.empty() ? "" : "; twiliosink ",
         a.sink_props.c_str(), a.model_props.empty() ? "" : "; realtimemodel ", a.model_props.c_str());
  double load0[3];
  getloadavg(load0, 3);

  std::map<Mode, ModeFigures> figs;
  for (int set = 0; set < 2; set++) {
    bool noise_set = set == 1;
    if ((noise_set && !a.noise) || (!noise_set && !a.speech))
      continue;
    std::vector<std::unique_ptr<Call>> calls;
    for (int i = 0; i < (noise_set ? a.noise_calls : a.calls); i++) {
      /* the caller's audio, the same for both modes */
      guint32 seed = static_cast<guint32>(100 * set + i + 1);
      std::string wav = dir + "/" + (noise_set ? "noise-" : "speech-") + std::to_string(i + 1) + ".wav";
      std::vector<int> onsets;
      std::vector<std::string> emu_args;
      std::vector<Call::Noise> noises;
      if (!noise_set) {
        int total = 3000 + a.cycles * kPeriodMs;
        sig::Pcm x = (i % 2) ? sig::pink(total, -62 + 2 * (i % 4), seed) : sig::noise(total, -60 + 2 * (i % 4), seed);
        for (int j = 0; j < a.cycles; j++) {
          int onset = 3000 + j * kPeriodMs + ((i * 7 + j * 13) % 11) * 30; /* jittered against the frames */
          int n = i * a.cycles + j;
          const char *voice = sig::kE2eVoices[n % G_N_ELEMENTS(sig::kE2eVoices)];
          double db = -12.0 - (n * 7 % 19); /* -12 .. -30 dBFS */
          sig::Pcm sp = espeak_voice(sig::kE2ePhrases[n % G_N_ELEMENTS(sig::kE2ePhrases)], voice, db);
          if (sp.empty()) {
            g_printerr("bench: espeak-ng failed for voice %s\n", voice);
            return 1;
          }
          sig::mix(x, sp, onset);
          onsets.push_back(onset);
        }
        if (!write_wav(wav, x))
          return 1;
        /* every other call over a line that echoes the agent back 20 dB
         * down: a real interruption is double talk */
        if (i % 2)
          emu_args = {"--echo", "-20:50"};
      } else {
        std::vector<sig::NoiseEvent> played;
        sig::Pcm x = sig::noise_call(i, a.noise_s * 1000, seed, played);
        for (const sig::NoiseEvent &e : played)
          if (e.kind != sig::kNoiseKindCount - 1) /* not the line alone */
            noises.push_back({sig::kNoiseKinds[e.kind], e.begin_ms, e.begin_ms + e.len_ms});
        if (!write_wav(wav, x))
          return 1;
        /* the agent's own voice back, 15 to 25 dB down, 40-60 ms late */
        emu_args = {"--echo", std::to_string(-15 - 5 * (i % 3)) + ":" + std::to_string(40 + 20 * (i % 2))};
      }
      for (Mode m : {Mode::Local, Mode::Model}) {
        auto c = std::make_unique<Call>();
        c->mode = m;
        c->noise_set = noise_set;
        c->index = i + 1;
        c->onsets_ms = onsets;
        c->wav = wav;
        c->emu_args = emu_args;
        if (noise_set)
          c->noises = noises;
        std::string base = dir + "/" + (noise_set ? "noise-" : "speech-") + mode_name(m) + "-" + std::to_string(i + 1);
        c->report = base + ".json";
        c->log = base + ".log";
        c->heard_dir = base + "-heard";
        calls.push_back(std::move(c));
      }
    }
    printf("%s set: %zu calls running...\n", noise_set ? "noise" : "speech", calls.size());
    fflush(stdout);
    gint64 started = g_get_monotonic_time();
    for (auto &c : calls)
      if (!start_call(*c, engine.url(), a.lead, a.bargein_props, a.sink_props, a.model_props, a.emulator))
        return 1;
    /* bounded: the emulators stop themselves within --max-duration-s */
    gint64 deadline = started + 180 * G_USEC_PER_SEC;
    bool all_done = false;
    while (!all_done && g_get_monotonic_time() < deadline) {
      all_done = true;
      for (auto &c : calls) {
        pump(*c);
        drive(*c);
        if (!c->emu_done && !g_subprocess_get_identifier(c->emu)) {
          g_subprocess_wait(c->emu, nullptr, nullptr);
          c->emu_done = true;
          c->emu_rc = g_subprocess_get_if_exited(c->emu) ? g_subprocess_get_exit_status(c->emu) : -1;
        }
        all_done = all_done && c->emu_done;
      }
      g_usleep(10000);
    }
    for (auto &c : calls) {
      c->pauses = stat_u64(c->bargein, "pauses");
      c->rejected = stat_u64(c->bargein, "rejected");
      c->local_barge_ins = stat_u64(c->bargein, "barge-ins");
      c->pause_clears = stat_u64(c->sink, "pause-clears");
      c->resent_ms = stat_u64(c->sink, "resent-ms");
      collect(*c, figs[c->mode]);
    }
    printf("%s set done in %.0f s\n", noise_set ? "noise" : "speech",
           static_cast<double>(g_get_monotonic_time() - started) / G_USEC_PER_SEC);
    calls.clear();
  }
  engine.stop();
  double load1[3];
  getloadavg(load1, 3);

  for (Mode m : {Mode::Local, Mode::Model}) {
    ModeFigures &f = figs[m];
    printf("\n== mode %s (%s)%s\n", mode_name(m),
           m == Mode::Local ? "bargein's local VAD alone: realtimemodel interrupt-response=false turn-detection=none"
                            : "the model's VAD alone: bargein mode=model",
           f.fell_behind ? "  [the emulator fell behind real time: timings suspect]" : "");
    if (f.calls_failed)
      printf("   %d call(s) failed (see above)\n", f.calls_failed);
    if (a.speech) {
      printf("   speech set: %d caller turns over the agent's speech: %d interrupted, %d missed; %d other clears; %d "
             "more turns came while the agent was silent (not counted)\n",
             f.detected + f.missed, f.detected, f.missed, f.extra_clears, f.silent);
      printf("   onset -> clear at the caller:        p50 %4.0f  p95 %4.0f  max %4.0f ms\n", f.clear_ms.at(50),
             f.clear_ms.at(95), f.clear_ms.max());
      printf("   onset -> agent audio stops (heard):  p50 %4.0f  p95 %4.0f  max %4.0f ms   (target p95 <= 100)\n",
             f.stop_ms.at(50), f.stop_ms.at(95), f.stop_ms.max());
      printf("   audio leaked after the clear:        p50 %4.0f  p95 %4.0f  max %4.0f ms   (target <= 20)\n",
             f.leaked_ms.at(50), f.leaked_ms.at(95), f.leaked_ms.max());
      printf("   |truncate audio_end_ms - played|:    p50 %4.0f  p95 %4.0f  max %4.0f ms%s\n", f.trunc_err_ms.at(50),
             f.trunc_err_ms.at(95), f.trunc_err_ms.max(),
             f.trunc_unmatched ? "  (not measurable for some: see README)" : "");
      if (f.trunc_unmatched)
        printf("   ... over %d interruptions; %d others had no barge-in message to compare, or a clear earlier "
               "in the response\n",
               static_cast<int>(f.trunc_err_ms.v.size()), f.trunc_unmatched);
    }
    if (a.noise) {
      printf("   noise set: %.0f s of noise, the agent heard for %.0f s of it: %d false barge-in(s) (%.1f per minute of "
             "agent speech), %.1f s of agent audio lost (target 0 and 0)\n",
             f.noise_call_ms / 1000, f.agent_played_ms / 1000, f.false_barge_ins,
             f.agent_played_ms > 0 ? f.false_barge_ins * 60000.0 / f.agent_played_ms : 0.0, f.lost_ms / 1000);
      if (!f.false_by_kind.empty()) {
        printf("   false barge-ins, by what played around their onset (echo: only the line and the echo):");
        for (const auto &[k, v] : f.false_by_kind)
          printf(" %s %d", k.c_str(), v);
        printf("\n");
      }
    }
    printf("   gaps in the agent's audio at the caller, both sets (underruns; with bargein mostly pauses that were let "
           "go): %" G_GUINT64_FORMAT " (%.0f ms)\n",
           f.underruns, f.underrun_ms);
    if (m == Mode::Local)
      printf("   bargein, both sets: %" G_GUINT64_FORMAT " pauses, %" G_GUINT64_FORMAT " rejected as not speech\n",
             f.pauses, f.rejected);
    printf("   twiliosink, both sets: %" G_GUINT64_FORMAT " pauses cleared Twilio's queue (each an audible gap if "
           "let go), %.1f s sent again after them\n",
           f.pause_clears, static_cast<double>(f.resent_ms) / 1000);
  }
  printf("\nload average (1 min) %.2f at the start, %.2f at the end (2 CPUs; other work skews the tails)\n", load0[0],
         load1[0]);
  if (a.keep.empty()) {
    GDir *d = g_dir_open(tmpd, 0, nullptr);
    if (d) {
      while (const char *n = g_dir_read_name(d))
        g_unlink((std::string(tmpd) + "/" + n).c_str());
      g_dir_close(d);
    }
    g_rmdir(tmpd);
  } else {
    printf("files kept in %s\n", dir.c_str());
  }
  g_free(tmpd);
  return 0;
}
