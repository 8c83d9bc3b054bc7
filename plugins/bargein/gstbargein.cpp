/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-bargein
 * @title: bargein
 * @see_also: twiliosrc, realtimemodel, twiliosink
 *
 * bargein sits on the caller's audio between twiliosrc and realtimemodel,
 * passes the audio through untouched, and decides locally, without waiting
 * for the model's server VAD round trip, that the caller started talking
 * over the agent.
 *
 * Input and output: `audio/x-mulaw, rate=8000, channels=1` (decoded inside
 * for analysis only) or `audio/x-raw, format=S16LE, rate=8000|16000,
 * channels=1`.
 *
 * The audio is analysed in 10 ms frames: level (dBFS) against a tracked
 * noise floor, webrtc-audio-processing's voice activity detector, a pitch
 * (autocorrelation) check, and a Goertzel check for DTMF tones. A decision
 * takes two steps:
 *
 * 1. At the first sign of sound (#GstBargein:onset-ms of frames louder than
 *    the noise floor plus #GstBargein:snr-db, not DTMF) while the agent is
 *    audible, bargein sends `phoneagent/pause`: twiliosink stops sending new
 *    agent audio and holds it, and by default (its pause-clears) empties
 *    Twilio's queue, so the caller stops hearing the agent at once. (With
 *    pause-clears off, the caller still hears the little Twilio has queued,
 *    twiliosink's lead, unless the sound turns out voiced:
 *    #GstBargein:clear-voiced-ms, `phoneagent/pause-clear`.)
 * 2. Once the burst holds #GstBargein:min-speech-ms of sound, at least half
 *    of it voiced (VAD and pitch), it is a barge-in: bargein sends `phoneagent/barge-in` (realtimemodel cancels the
 *    response, clears twiliosink and truncates the conversation at what the
 *    caller heard), then `phoneagent/resume` (nothing is left to resume after
 *    the clear; this only ends the pause). If instead the burst ends (quiet for
 *    #GstBargein:hangover-ms, or for at least 350 ms once it holds 40 ms of
 *    voiced sound and #GstBargein:backchannel is off, so that the gap between
 *    two short words does not end it) before that, it was a cough, a click,
 *    a key press or a backchannel: bargein sends `phoneagent/resume` and twiliosink
 *    goes on exactly where it stopped, nothing lost. A burst loud for over a
 *    second without becoming speech (a change of line noise) is rejected
 *    too, as `not-speech`.
 *
 * Whether the agent is audible is asked at the start of each burst with the
 * `phoneagent/heard` query, which realtimemodel passes on to twiliosink: the
 * agent is audible when the current item has audio sent that Twilio has not
 * yet reported played. When nobody downstream answers, bargein assumes the
 * agent may be speaking, and realtimemodel (which ignores a barge-in while
 * nothing is queued, playing or being generated) has the last word.
 *
 * ## Guards against false barge-ins
 *
 * - coughs, clicks, line pops: no pitch, and shorter than
 *   #GstBargein:min-speech-ms;
 * - steady line noise: the noise floor follows it; it has no pitch;
 * - DTMF: frames where one DTMF row and one column frequency hold over 80 %
 *   of the energy are ignored, with 50 ms after them;
 * - echo of the agent's own voice: with #GstBargein:echo-cancel, an echo
 *   canceller (webrtc-audio-processing's AECM) takes the agent's voice out
 *   of the audio analysed, with what the caller heard as the far end (the
 *   `phoneagent/far-end` query, answered by twiliosink); until it has
 *   learnt the line (2 s of the agent), sound within 6 dB of the echo the
 *   far end predicts (its level at the line's delay, plus the line's loss)
 *   is ignored; then, with #GstBargein:echo-margin-db, sound
 *   more than that below the agent's level (the optional `level-db` field of
 *   the `phoneagent/heard` answer) is ignored; #GstBargein:min-level-db is an
 *   absolute floor; on a line that echoes, a pitch that is the agent's (its
 *   pitch and waveform at the line's delay) or that only the canceller's
 *   output has (a cough over the agent's voice) is not the caller's voice;
 * - backchannels ("mm-hm", "okay") with #GstBargein:backchannel: voiced
 *   bursts up to #GstBargein:backchannel-max-ms do not interrupt (a real
 *   barge-in then needs that much speech).
 *
 * ## Custom events sent downstream (all GST_EVENT_CUSTOM_DOWNSTREAM_OOB)
 *
 * - `phoneagent/pause`: `onset-running-time` (guint64, first sample of the
 *   burst), `running-time` (guint64), `source` (gchararray, "bargein").
 * - `phoneagent/resume`: `running-time` (guint64), `reason` (gchararray:
 *   "too-short", "backchannel", "dtmf", "not-speech", "barge-in", "eos",
 *   "flush", "mode", "caps"). Every pause is followed by exactly one resume.
 * - `phoneagent/pause-clear`: `onset-running-time`, `running-time`
 *   (guint64): the paused sound has #GstBargein:clear-voiced-ms of voiced
 *   sound; twiliosink clears Twilio's queue if its pause did not. At most
 *   one per pause; not with #GstBargein:backchannel.
 * - `phoneagent/barge-in`: `onset-running-time` (guint64),
 *   `decision-running-time` (guint64), `source` (gchararray, "local-vad").
 *
 * ## Custom queries sent downstream
 *
 * - `phoneagent/heard`: whether the agent is audible (see above).
 * - `phoneagent/far-end` (with #GstBargein:echo-cancel, once per buffer):
 *   in `running-time` (guint64), `samples` (guint, 8 kHz); out `audio`
 *   (GstBuffer, μ-law: what the caller heard from that time on).
 *
 * Running times are those of the caller audio (buffer timestamps through
 * the segment), so `decision-running-time - onset-running-time` is the
 * reaction time in the caller's timeline.
 *
 * ## Element messages
 *
 * - `barge-in`: `onset-running-time`, `decision-running-time`,
 *   `running-time` (guint64), `reason` (gchararray, "speech"), `speech-ms`,
 *   `voiced-ms` (guint, sound and voiced sound in the burst when decided).
 * - `barge-in-rejected`: a paused burst that was not a barge-in:
 *   `onset-running-time`, `running-time` (guint64), `reason` (as
 *   `phoneagent/resume`), `speech-ms`, `voiced-ms` (guint).
 *
 * ## Modes
 *
 * realtimemodel reacts to the model's own speech_started by itself, so
 * `local-vad` and `both` behave the same here; `model` makes bargein a
 * passthrough.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 twiliosrc port=8080 ! bargein ! realtimemodel ! twiliosink
 * ]| A phone agent on the embedded local model that stops talking as soon as
 * the caller talks over it.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstbargein.h"

#include <gst/audio/audio.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "bargein-detector.h"
#include "bargein-echo.h"
#include "gstbargeinelements.h"
#include "pa-audio.h"

GST_DEBUG_CATEGORY_STATIC(gst_bargein_debug);
#define GST_CAT_DEFAULT gst_bargein_debug

typedef enum {
  GST_BARGEIN_MODE_LOCAL_VAD,
  GST_BARGEIN_MODE_MODEL,
  GST_BARGEIN_MODE_BOTH,
} GstBargeinMode;

#define DEFAULT_MODE GST_BARGEIN_MODE_BOTH
#define DEFAULT_MIN_SPEECH_MS 200
#define DEFAULT_ONSET_MS 20
#define DEFAULT_HANGOVER_MS 120
#define DEFAULT_SNR_DB 12.0
#define DEFAULT_MIN_LEVEL_DB -50.0
#define DEFAULT_ECHO_MARGIN_DB 20.0
#define DEFAULT_VAD_AGGRESSIVENESS 2
#define DEFAULT_IGNORE_DTMF TRUE
#define DEFAULT_BACKCHANNEL FALSE
#define DEFAULT_BACKCHANNEL_MAX_MS 700
#define DEFAULT_ECHO_CANCEL TRUE
#define DEFAULT_CLEAR_VOICED_MS 40

enum {
  PROP_0,
  PROP_MODE,
  PROP_MIN_SPEECH_MS,
  PROP_ONSET_MS,
  PROP_HANGOVER_MS,
  PROP_SNR_DB,
  PROP_MIN_LEVEL_DB,
  PROP_ECHO_MARGIN_DB,
  PROP_VAD_AGGRESSIVENESS,
  PROP_IGNORE_DTMF,
  PROP_BACKCHANNEL,
  PROP_BACKCHANNEL_MAX_MS,
  PROP_ECHO_CANCEL,
  PROP_CLEAR_VOICED_MS,
  PROP_STATS,
};

#define BARGEIN_CAPS                                                                                           \
  "audio/x-mulaw, rate = (int) 8000, channels = (int) 1; "                                                     \
  "audio/x-raw, format = (string) S16LE, layout = (string) interleaved, rate = (int) { 8000, 16000 }, "        \
  "channels = (int) 1"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(BARGEIN_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(BARGEIN_CAPS));

GType gst_bargein_mode_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_BARGEIN_MODE_LOCAL_VAD, "Decide locally with the VAD", "local-vad"},
      {GST_BARGEIN_MODE_MODEL, "Do nothing: rely on the model's speech_started (realtimemodel)", "model"},
      {GST_BARGEIN_MODE_BOTH, "Decide locally; realtimemodel also follows the model's speech_started", "both"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstBargeinMode", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

namespace {
struct Settings {
  GstBargeinMode mode = DEFAULT_MODE;
  bool echo_cancel = DEFAULT_ECHO_CANCEL;
  guint clear_voiced_ms = DEFAULT_CLEAR_VOICED_MS;
  bargein::Params params;
};

struct Stats {
  guint64 pauses = 0, resumes = 0, barge_ins = 0, rejected = 0, ignored_bursts = 0, dtmf_frames = 0, frames = 0;
  guint64 pause_clears = 0;  /* phoneagent/pause-clear sent */
  /* the echo path's own counters are read from it (State::echo) */
};

struct State {
  bool raw = false;
  int rate = 8000;
  std::unique_ptr<bargein::Detector> det;
  std::vector<int16_t> acc;              /* PCM not yet analysed (less than a frame) */
  GstClockTime acc_rt = GST_CLOCK_TIME_NONE; /* running time of acc[0] */
  bool paused = false;                   /* a phoneagent/pause is out, resume owed */
  bool pause_cleared = false;            /* ... and a phoneagent/pause-clear after it */
  bool rebuild = false;                  /* new settings, or a pause ended from outside: new detector */
  std::unique_ptr<bargein::EchoPath> echo; /* the canceller and its guards (one line: one call) */
  std::vector<uint8_t> far_mu;           /* the far end of this buffer's frames (phoneagent/far-end) */
  std::vector<int16_t> far;
};
} // namespace

struct GstBargeinPrivate {
  std::mutex lock;
  Settings settings;
  Stats stats;
  State st;
};

struct _GstBargein {
  GstBaseTransform parent;
  GstBargeinPrivate *priv;
};

#define gst_bargein_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE(GstBargein, gst_bargein, GST_TYPE_BASE_TRANSFORM,
                        GST_DEBUG_CATEGORY_INIT(gst_bargein_debug, "bargein", 0, "Local barge-in detection"));
GST_ELEMENT_REGISTER_DEFINE(bargein, "bargein", GST_RANK_NONE, GST_TYPE_BARGEIN);

/* ------------------------------------------------------------ properties */

static void gst_bargein_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
  GstBargein *self = GST_BARGEIN(object);
  std::lock_guard<std::mutex> g(self->priv->lock);
  Settings &s = self->priv->settings;
  bargein::Params &pp = s.params;
  switch (prop_id) {
  case PROP_MODE: s.mode = static_cast<GstBargeinMode>(g_value_get_enum(value)); break;
  case PROP_MIN_SPEECH_MS: pp.min_speech_ms = g_value_get_uint(value); break;
  case PROP_ONSET_MS: pp.onset_ms = g_value_get_uint(value); break;
  case PROP_HANGOVER_MS: pp.hangover_ms = g_value_get_uint(value); break;
  case PROP_SNR_DB: pp.snr_db = g_value_get_double(value); break;
  case PROP_MIN_LEVEL_DB: pp.min_level_db = g_value_get_double(value); break;
  case PROP_ECHO_MARGIN_DB: pp.echo_margin_db = g_value_get_double(value); break;
  case PROP_VAD_AGGRESSIVENESS: pp.vad_aggressiveness = g_value_get_int(value); break;
  case PROP_IGNORE_DTMF: pp.ignore_dtmf = g_value_get_boolean(value); break;
  case PROP_BACKCHANNEL: pp.backchannel = g_value_get_boolean(value); break;
  case PROP_BACKCHANNEL_MAX_MS: pp.backchannel_max_ms = g_value_get_uint(value); break;
  case PROP_ECHO_CANCEL: s.echo_cancel = g_value_get_boolean(value); break;
  case PROP_CLEAR_VOICED_MS: s.clear_voiced_ms = g_value_get_uint(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); return;
  }
  /* thresholds take effect at the next burst: a new detector (the noise
   * floor is learnt again in a second or two) */
  if (prop_id != PROP_MODE && prop_id != PROP_ECHO_CANCEL && prop_id != PROP_CLEAR_VOICED_MS)
    self->priv->st.rebuild = true;
}

static void gst_bargein_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  GstBargein *self = GST_BARGEIN(object);
  std::lock_guard<std::mutex> g(self->priv->lock);
  const Settings &s = self->priv->settings;
  const bargein::Params &pp = s.params;
  switch (prop_id) {
  case PROP_MODE: g_value_set_enum(value, s.mode); break;
  case PROP_MIN_SPEECH_MS: g_value_set_uint(value, pp.min_speech_ms); break;
  case PROP_ONSET_MS: g_value_set_uint(value, pp.onset_ms); break;
  case PROP_HANGOVER_MS: g_value_set_uint(value, pp.hangover_ms); break;
  case PROP_SNR_DB: g_value_set_double(value, pp.snr_db); break;
  case PROP_MIN_LEVEL_DB: g_value_set_double(value, pp.min_level_db); break;
  case PROP_ECHO_MARGIN_DB: g_value_set_double(value, pp.echo_margin_db); break;
  case PROP_VAD_AGGRESSIVENESS: g_value_set_int(value, pp.vad_aggressiveness); break;
  case PROP_IGNORE_DTMF: g_value_set_boolean(value, pp.ignore_dtmf); break;
  case PROP_BACKCHANNEL: g_value_set_boolean(value, pp.backchannel); break;
  case PROP_BACKCHANNEL_MAX_MS: g_value_set_uint(value, pp.backchannel_max_ms); break;
  case PROP_ECHO_CANCEL: g_value_set_boolean(value, s.echo_cancel); break;
  case PROP_CLEAR_VOICED_MS: g_value_set_uint(value, s.clear_voiced_ms); break;
  case PROP_STATS: {
    const Stats &c = self->priv->stats;
    const bargein::EchoPath *e = self->priv->st.echo.get();
    const bool echoes = e && e->line_echoes();
    g_value_take_boxed(value,
        gst_structure_new("bargein-stats", "pauses", G_TYPE_UINT64, c.pauses, "resumes", G_TYPE_UINT64, c.resumes,
                          "barge-ins", G_TYPE_UINT64, c.barge_ins, "rejected", G_TYPE_UINT64, c.rejected,
                          "ignored-bursts", G_TYPE_UINT64, c.ignored_bursts, "dtmf-frames", G_TYPE_UINT64,
                          c.dtmf_frames, "frames", G_TYPE_UINT64, c.frames, "pause-clears", G_TYPE_UINT64,
                          c.pause_clears, "echo-frames", G_TYPE_UINT64,
                          static_cast<guint64>(e ? e->frames() : 0), "echo-taken-db", G_TYPE_DOUBLE,
                          e ? e->taken_avg_db() : 0.0, "line-echoes", G_TYPE_BOOLEAN, echoes, "echo-delay-ms",
                          G_TYPE_UINT, echoes ? e->presence().lag() * 10 : 0u, "echo-loss-db", G_TYPE_DOUBLE,
                          echoes ? e->presence().loss_db() : 0.0, nullptr));
    break;
  }
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

/* ------------------------------------------------------------ downstream */

static void push_oob(GstBargein *self, GstStructure *s) {
  GST_DEBUG_OBJECT(self, "sending %" GST_PTR_FORMAT, s);
  gst_pad_push_event(GST_BASE_TRANSFORM_SRC_PAD(self), gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB, s));
}

static void send_resume(GstBargein *self, GstClockTime rt, const char *reason) {
  push_oob(self, gst_structure_new("phoneagent/resume", "running-time", G_TYPE_UINT64, static_cast<guint64>(rt),
                                   "reason", G_TYPE_STRING, reason, nullptr));
}

/* Asks downstream (through realtimemodel, to twiliosink) whether the agent is
 * audible. Called on the streaming thread without our lock. */
static bargein::AgentState ask_agent(GstBargein *self) {
  bargein::AgentState a;
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM, gst_structure_new_empty("phoneagent/heard"));
  if (gst_pad_peer_query(GST_BASE_TRANSFORM_SRC_PAD(self), q)) {
    const GstStructure *s = gst_query_get_structure(q);
    gboolean known = FALSE;
    guint64 sent = 0, played = 0;
    gst_structure_get_boolean(s, "known", &known);
    gst_structure_get_uint64(s, "sent-ms", &sent);
    /* heard-ms: the marks, and what played on since the last echo (an
     * older sink answers played-ms alone) */
    if (!gst_structure_get_uint64(s, "heard-ms", &played))
      gst_structure_get_uint64(s, "played-ms", &played);
    a.speaking = known && sent > played;
    gdouble level;
    if (gst_structure_get_double(s, "level-db", &level))
      a.level_db = level;
    GST_LOG_OBJECT(self, "agent: known %d sent %" G_GUINT64_FORMAT " played %" G_GUINT64_FORMAT, known, sent, played);
  } else {
    GST_LOG_OBJECT(self, "nobody answered phoneagent/heard: assuming the agent may be speaking");
  }
  gst_query_unref(q);
  return a;
}

/* What the caller heard of the agent from @rt on, @n samples at 8 kHz, as
 * twiliosink paces it (phoneagent/far-end, through realtimemodel): false
 * when nobody downstream answers. Streaming thread, without our lock. */
static bool ask_far_end(GstBargein *self, GstClockTime rt, size_t n, std::vector<uint8_t> &out) {
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM,
      gst_structure_new("phoneagent/far-end", "running-time", G_TYPE_UINT64, static_cast<guint64>(rt), "samples",
                        G_TYPE_UINT, static_cast<guint>(n), nullptr));
  bool ok = false;
  if (gst_pad_peer_query(GST_BASE_TRANSFORM_SRC_PAD(self), q)) {
    const GstStructure *s = gst_query_get_structure(q);
    GstBuffer *audio = nullptr;
    if (gst_structure_get(s, "audio", GST_TYPE_BUFFER, &audio, nullptr) && audio) {
      if (gst_buffer_get_size(audio) == n) {
        out.resize(n);
        gst_buffer_extract(audio, 0, out.data(), n);
        ok = true;
      }
      gst_buffer_unref(audio);
    }
  }
  gst_query_unref(q);
  return ok;
}

/* One decision, turned into events and messages (no lock held). */
struct Outcome {
  bargein::Decision d;
  GstClockTime onset_rt, at_rt;
};

static void act(GstBargein *self, const Outcome &o) {
  GstElement *el = GST_ELEMENT(self);
  switch (o.d.action) {
  case bargein::Action::Pause:
    GST_INFO_OBJECT(self, "possible barge-in at %" GST_TIME_FORMAT ": pause", GST_TIME_ARGS(o.onset_rt));
    push_oob(self, gst_structure_new("phoneagent/pause", "onset-running-time", G_TYPE_UINT64,
                                     static_cast<guint64>(o.onset_rt), "running-time", G_TYPE_UINT64,
                                     static_cast<guint64>(o.at_rt), "source", G_TYPE_STRING, "bargein", nullptr));
    break;
  case bargein::Action::Confirm:
    GST_INFO_OBJECT(self, "barge-in: onset %" GST_TIME_FORMAT ", decided %" GST_TIME_FORMAT " (%u ms of sound, %u voiced)",
                    GST_TIME_ARGS(o.onset_rt), GST_TIME_ARGS(o.at_rt), o.d.sound_ms, o.d.voiced_ms);
    push_oob(self, gst_structure_new("phoneagent/barge-in", "onset-running-time", G_TYPE_UINT64,
                                     static_cast<guint64>(o.onset_rt), "decision-running-time", G_TYPE_UINT64,
                                     static_cast<guint64>(o.at_rt), "source", G_TYPE_STRING, "local-vad", nullptr));
    /* realtimemodel has cleared twiliosink by now (it handles the event on
     * this thread); this only ends the pause, also when realtimemodel found
     * nothing to interrupt */
    send_resume(self, o.at_rt, "barge-in");
    gst_element_post_message(el, gst_message_new_element(GST_OBJECT(self),
        gst_structure_new("barge-in", "onset-running-time", G_TYPE_UINT64, static_cast<guint64>(o.onset_rt),
                          "decision-running-time", G_TYPE_UINT64, static_cast<guint64>(o.at_rt), "running-time",
                          G_TYPE_UINT64, static_cast<guint64>(o.at_rt), "reason", G_TYPE_STRING, o.d.reason,
                          "speech-ms", G_TYPE_UINT, o.d.sound_ms, "voiced-ms", G_TYPE_UINT, o.d.voiced_ms, nullptr)));
    break;
  case bargein::Action::Resume:
    GST_INFO_OBJECT(self, "not a barge-in (%s, %u ms of sound, %u voiced): resume", o.d.reason, o.d.sound_ms,
                    o.d.voiced_ms);
    send_resume(self, o.at_rt, o.d.reason);
    gst_element_post_message(el, gst_message_new_element(GST_OBJECT(self),
        gst_structure_new("barge-in-rejected", "onset-running-time", G_TYPE_UINT64, static_cast<guint64>(o.onset_rt),
                          "running-time", G_TYPE_UINT64, static_cast<guint64>(o.at_rt), "reason", G_TYPE_STRING,
                          o.d.reason, "speech-ms", G_TYPE_UINT, o.d.sound_ms, "voiced-ms", G_TYPE_UINT, o.d.voiced_ms,
                          nullptr)));
    break;
  case bargein::Action::None: break;
  }
}

/* Ends an open pause (EOS, flush, mode change). */
static void end_pause(GstBargein *self, const char *reason) {
  GstClockTime rt;
  {
    std::lock_guard<std::mutex> g(self->priv->lock);
    State &st = self->priv->st;
    if (!st.paused)
      return;
    st.paused = false;
    rt = st.acc_rt;
    self->priv->stats.resumes++;
    st.rebuild = true; /* the streaming thread replaces the detector */
  }
  send_resume(self, GST_CLOCK_TIME_IS_VALID(rt) ? rt : 0, reason);
}

/* ------------------------------------------------------------ analysis */

/* a pause-clear also needs this much more sound than clear-voiced-ms (the
 * echo's residue and line blips are 20-40 ms of sound) */
static const unsigned kClearMoreSoundMs = 20;
static GstFlowReturn gst_bargein_transform_ip(GstBaseTransform *trans, GstBuffer *buf) {
  GstBargein *self = GST_BARGEIN(trans);
  GstBargeinPrivate *p = self->priv;
  GstBargeinMode mode;
  {
    std::lock_guard<std::mutex> g(p->lock);
    mode = p->settings.mode;
  }
  if (mode == GST_BARGEIN_MODE_MODEL) {
    end_pause(self, "mode");
    return GST_FLOW_OK;
  }

  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ))
    return GST_FLOW_ERROR;
  GstClockTime buf_rt = gst_segment_to_running_time(&trans->segment, GST_FORMAT_TIME, GST_BUFFER_PTS(buf));

  std::unique_lock<std::mutex> g(p->lock);
  State &st = p->st;
  /* a new detector between bursts only (or when a pause was ended from outside) */
  if (!st.det || (st.rebuild && !st.paused)) {
    st.det.reset(new bargein::Detector(st.rate, p->settings.params));
    st.rebuild = false;
  }
  const GstClockTime frame_dur = 10 * GST_MSECOND;
  const size_t n = st.det->frame_samples();
  /* a jump in time (or a discont) starts a new frame */
  if (GST_CLOCK_TIME_IS_VALID(buf_rt)) {
    GstClockTime expect = GST_CLOCK_TIME_IS_VALID(st.acc_rt)
                              ? st.acc_rt + gst_util_uint64_scale(st.acc.size(), GST_SECOND, st.rate)
                              : GST_CLOCK_TIME_NONE;
    if (!GST_CLOCK_TIME_IS_VALID(expect) || GST_BUFFER_IS_DISCONT(buf) ||
        (expect > buf_rt ? expect - buf_rt : buf_rt - expect) > 5 * GST_MSECOND) {
      st.acc.clear();
      st.acc_rt = buf_rt;
    }
  } else if (!GST_CLOCK_TIME_IS_VALID(st.acc_rt)) {
    st.acc_rt = 0;
  }
  size_t old = st.acc.size();
  if (st.raw) {
    const auto *pcm = reinterpret_cast<const int16_t *>(map.data);
    st.acc.insert(st.acc.end(), pcm, pcm + map.size / 2);
  } else {
    st.acc.resize(old + map.size);
    pa::mulaw_decode_block(map.data, st.acc.data() + old, map.size);
  }
  gst_buffer_unmap(buf, &map);

  /* the echo canceller's far end: what the caller heard meanwhile */
  const size_t frames = st.acc.size() / n;
  bool cancel = false;
  if (p->settings.echo_cancel && frames && GST_CLOCK_TIME_IS_VALID(st.acc_rt)) {
    GstClockTime from = st.acc_rt;
    g.unlock();
    bool got = ask_far_end(self, from, frames * 80, st.far_mu);
    g.lock();
    if (got && st.acc.size() / n >= frames) {
      st.far.resize(st.far_mu.size());
      pa::mulaw_decode_block(st.far_mu.data(), st.far.data(), st.far_mu.size());
      if (!st.echo || st.echo->frame_samples() != n) {
        st.echo.reset(new bargein::EchoPath(st.rate));
        if (!st.echo->ok())
          GST_WARNING_OBJECT(self, "webrtc echo canceller unavailable: the agent's echo is only guarded by the far "
                                   "end (its level and pitch at the line's delay)");
      }
      cancel = true;
    }
  }

  size_t off = 0;
  for (size_t f = 0; st.acc.size() - off >= n; f++) {
    const int16_t *frame = st.acc.data() + off;
    if (cancel && f < frames) {
      bargein::EchoPath &e = *st.echo;
      const bool echoed = e.line_echoes();
      frame = e.frame(st.far.data() + f * 80, frame, *st.det);
      if (e.line_echoes() && !echoed) {
        GST_INFO_OBJECT(self, "the caller's line echoes the agent (level correlation %.2f, %u ms late, %.1f dB)",
                        e.presence().correlation(), e.presence().lag() * 10, e.presence().loss_db());
      }
      if (e.ran())
        GST_LOG_OBJECT(self, "echo canceller: far %.1f dBFS, near %.1f dBFS, took %.1f dB%s", e.far_db(), e.near_db(),
                       e.taken_db(), frame != st.acc.data() + off ? " (the detector hears what is left)" : "");
    }
    GstClockTime frame_rt = st.acc_rt;
    uint64_t frame_start = st.det->position();
    /* the agent query goes downstream: never with our lock held */
    bargein::AgentState agent;
    bool asked = false;
    auto ask = [&]() -> bargein::AgentState {
      g.unlock();
      agent = ask_agent(self);
      g.lock();
      asked = true;
      return agent;
    };
    bargein::Decision d = st.det->process(frame, ask);
    off += n;
    st.acc_rt += frame_dur;
    p->stats.frames++;
    if (st.det->last().dtmf)
      p->stats.dtmf_frames++;
    if (asked && !agent.speaking)
      p->stats.ignored_bursts++;
    /* a paused sound that sounds like a voice: empty Twilio's queue too
     * (not with backchannel: an "mm-hm" must not cost the agent a gap) */
    const guint clear_ms = p->settings.clear_voiced_ms;
    const bool pausing = d.action == bargein::Action::Pause || (d.action == bargein::Action::None && st.paused);
    bool voice_clear = clear_ms && !p->settings.params.backchannel && pausing && !st.pause_cleared &&
                       d.voiced_ms >= clear_ms && d.sound_ms >= clear_ms + kClearMoreSoundMs &&
                       d.tonal_ms < d.voiced_ms;
    if (d.action == bargein::Action::None && !voice_clear)
      continue;
    auto to_rt = [&](uint64_t pos) -> GstClockTime {
      gint64 delta = static_cast<gint64>(pos) - static_cast<gint64>(frame_start);
      gint64 t = static_cast<gint64>(frame_rt) + delta * static_cast<gint64>(GST_SECOND) / st.rate;
      return t > 0 ? static_cast<GstClockTime>(t) : 0;
    };
    Outcome o{d, to_rt(d.onset), to_rt(d.at)};
    switch (d.action) {
    case bargein::Action::Pause:
      st.paused = true;
      st.pause_cleared = false;
      p->stats.pauses++;
      break;
    case bargein::Action::Confirm:
      st.paused = false;
      p->stats.barge_ins++;
      p->stats.resumes++;
      break;
    case bargein::Action::Resume:
      st.paused = false;
      p->stats.rejected++;
      p->stats.resumes++;
      break;
    case bargein::Action::None: break;
    }
    if (voice_clear) {
      st.pause_cleared = true;
      p->stats.pause_clears++;
    }
    g.unlock();
    act(self, o);
    if (voice_clear) {
      GST_DEBUG_OBJECT(self, "the paused sound is voiced (%u ms): pause-clear", d.voiced_ms);
      push_oob(self, gst_structure_new("phoneagent/pause-clear", "onset-running-time", G_TYPE_UINT64,
                                       static_cast<guint64>(o.onset_rt), "running-time", G_TYPE_UINT64,
                                       static_cast<guint64>(o.at_rt), nullptr));
    }
    g.lock();
  }
  st.acc.erase(st.acc.begin(), st.acc.begin() + static_cast<long>(off));
  return GST_FLOW_OK;
}

static gboolean gst_bargein_set_caps(GstBaseTransform *trans, GstCaps *incaps, GstCaps *outcaps) {
  GstBargein *self = GST_BARGEIN(trans);
  GstStructure *s = gst_caps_get_structure(incaps, 0);
  int rate = 8000;
  if (!gst_structure_get_int(s, "rate", &rate) || (rate != 8000 && rate != 16000))
    return FALSE;
  bool raw = gst_structure_has_name(s, "audio/x-raw");
  bool paused;
  {
    std::lock_guard<std::mutex> g(self->priv->lock);
    State &st = self->priv->st;
    paused = st.paused;
    if (st.det && st.raw == raw && st.rate == rate)
      return TRUE;
    st.raw = raw;
    st.rate = rate;
    st.acc.clear();
    st.acc_rt = GST_CLOCK_TIME_NONE;
    st.det.reset(new bargein::Detector(rate, self->priv->settings.params));
    if (!st.det->vad_is_webrtc())
      GST_WARNING_OBJECT(self, "webrtc VAD unavailable: deciding on level alone");
  }
  if (paused)
    end_pause(self, "caps");
  GST_INFO_OBJECT(self, "analysing %s at %d Hz", raw ? "S16LE" : "mu-law", rate);
  return TRUE;
}

static gboolean gst_bargein_sink_event(GstBaseTransform *trans, GstEvent *event) {
  GstBargein *self = GST_BARGEIN(trans);
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_EOS: end_pause(self, "eos"); break;
  case GST_EVENT_FLUSH_START: end_pause(self, "flush"); break;
  case GST_EVENT_FLUSH_STOP:
  case GST_EVENT_SEGMENT: {
    std::lock_guard<std::mutex> g(self->priv->lock);
    self->priv->st.acc.clear();
    self->priv->st.acc_rt = GST_CLOCK_TIME_NONE;
    break;
  }
  default: break;
  }
  return GST_BASE_TRANSFORM_CLASS(parent_class)->sink_event(trans, event);
}

static gboolean gst_bargein_start(GstBaseTransform *trans) {
  GstBargein *self = GST_BARGEIN(trans);
  std::lock_guard<std::mutex> g(self->priv->lock);
  State &st = self->priv->st;
  st.acc.clear();
  st.acc_rt = GST_CLOCK_TIME_NONE;
  st.paused = false;
  st.pause_cleared = false;
  st.det.reset();
  /* a new call, maybe a new line: the canceller learns it again */
  st.echo.reset();
  self->priv->stats = Stats();
  return TRUE;
}

static gboolean gst_bargein_stop(GstBaseTransform *trans) {
  GstBargein *self = GST_BARGEIN(trans);
  std::lock_guard<std::mutex> g(self->priv->lock);
  self->priv->st.det.reset();
  self->priv->st.acc.clear();
  return TRUE;
}

/* ------------------------------------------------------------ class */

static void gst_bargein_finalize(GObject *object) {
  GstBargein *self = GST_BARGEIN(object);
  delete self->priv;
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_bargein_init(GstBargein *self) {
  self->priv = new GstBargeinPrivate();
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}

static void gst_bargein_class_init(GstBargeinClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS(klass);

  gobject_class->set_property = gst_bargein_set_property;
  gobject_class->get_property = gst_bargein_get_property;
  gobject_class->finalize = gst_bargein_finalize;

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode",
                        "Who decides that the caller interrupts: this element (local-vad, both) or only the model's "
                        "own speech_started, handled by realtimemodel (model: this element passes audio through)",
                        GST_TYPE_BARGEIN_MODE, DEFAULT_MODE, rw));
  g_object_class_install_property(gobject_class, PROP_MIN_SPEECH_MS,
      g_param_spec_uint("min-speech-ms", "Minimum speech",
                        "Sound (ms, at least half of it voiced) a burst needs to be a barge-in; shorter sounds "
                        "(coughs, clicks) only pause the agent briefly",
                        10, 5000, DEFAULT_MIN_SPEECH_MS, rw));
  g_object_class_install_property(gobject_class, PROP_ONSET_MS,
      g_param_spec_uint("onset-ms", "Onset",
                        "Loud audio (ms) in a row before the agent is paused (first sign of speech)", 10, 1000,
                        DEFAULT_ONSET_MS, rw));
  g_object_class_install_property(gobject_class, PROP_HANGOVER_MS,
      g_param_spec_uint("hangover-ms", "Hangover",
                        "Quiet (ms) that ends a burst; a paused burst that ends before min-speech-ms resumes the agent. "
                        "A burst with 40 ms of voiced sound ends after at least 350 ms (unless backchannel is set)",
                        10, 2000, DEFAULT_HANGOVER_MS, rw));
  g_object_class_install_property(gobject_class, PROP_SNR_DB,
      g_param_spec_double("snr-db", "Signal to noise",
                          "How far (dB) above the tracked noise floor a frame must be to count as sound", 0, 60,
                          DEFAULT_SNR_DB, rw));
  g_object_class_install_property(gobject_class, PROP_MIN_LEVEL_DB,
      g_param_spec_double("min-level-db", "Minimum level",
                          "Frames quieter than this (dBFS, RMS) never count as speech", -100, 0, DEFAULT_MIN_LEVEL_DB,
                          rw));
  g_object_class_install_property(gobject_class, PROP_ECHO_MARGIN_DB,
      g_param_spec_double("echo-margin-db", "Echo margin",
                          "Sound more than this (dB) below the agent's level, when downstream reports it (level-db in "
                          "phoneagent/heard), is taken as echo of the agent's voice",
                          0, 100, DEFAULT_ECHO_MARGIN_DB, rw));
  g_object_class_install_property(gobject_class, PROP_VAD_AGGRESSIVENESS,
      g_param_spec_int("vad-aggressiveness", "VAD aggressiveness",
                       "webrtc VAD mode: 0 (lets most sound count as voice) to 3 (strictest)", 0, 3,
                       DEFAULT_VAD_AGGRESSIVENESS, rw));
  g_object_class_install_property(gobject_class, PROP_IGNORE_DTMF,
      g_param_spec_boolean("ignore-dtmf", "Ignore DTMF", "Key-press tones (DTMF) never count as speech",
                           DEFAULT_IGNORE_DTMF, rw));
  g_object_class_install_property(gobject_class, PROP_BACKCHANNEL,
      g_param_spec_boolean("backchannel", "Backchannel",
                           "Short voiced bursts (\"mm-hm\", \"okay\", up to backchannel-max-ms) do not interrupt; a "
                           "barge-in then needs more than backchannel-max-ms of speech",
                           DEFAULT_BACKCHANNEL, rw));
  g_object_class_install_property(gobject_class, PROP_BACKCHANNEL_MAX_MS,
      g_param_spec_uint("backchannel-max-ms", "Backchannel maximum",
                        "With backchannel: longest voiced burst (ms) taken as a backchannel", 50, 5000,
                        DEFAULT_BACKCHANNEL_MAX_MS, rw));
  g_object_class_install_property(gobject_class, PROP_ECHO_CANCEL,
      g_param_spec_boolean("echo-cancel", "Echo cancel",
                           "Take the agent's own voice out of the caller's audio before deciding (webrtc's echo "
                           "canceller, with what twiliosink says the caller heard as the far end; only for the "
                           "analysis: the audio passes through untouched)",
                           DEFAULT_ECHO_CANCEL, rw));
  g_object_class_install_property(gobject_class, PROP_CLEAR_VOICED_MS,
      g_param_spec_uint("clear-voiced-ms", "Clear after voiced ms",
                        "Voiced sound (ms) in a paused burst (with 20 ms more of sound in all) after which bargein "
                        "sends phoneagent/pause-clear, so "
                        "twiliosink empties Twilio's queue too and the caller stops hearing the agent at once (a "
                        "cough or a hiss, without voicing, only pauses). Only matters with twiliosink "
                        "pause-clears=false, whose pause does not clear by itself. 0: never",
                        0, 1000, DEFAULT_CLEAR_VOICED_MS, rw));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Counters: pauses, resumes, barge-ins, rejected bursts, bursts ignored because the agent was "
                         "silent, DTMF frames, frames analysed, pause-clears sent, frames through the echo canceller "
                         "(echo-frames) and "
                         "how much it took out of them while the agent spoke (echo-taken-db, average), whether the "
                         "caller's line was found to echo the agent (line-echoes), and if so how late "
                         "(echo-delay-ms) and how much quieter than the agent (echo-loss-db)",
                         GST_TYPE_STRUCTURE, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Barge-in detector", "Filter/Analyzer/Audio",
                                        "Detects a phone caller talking over the agent with a local VAD and pauses, "
                                        "interrupts or resumes the agent's audio",
                                        "gst-phone-agent contributors");

  trans_class->passthrough_on_same_caps = TRUE;
  trans_class->transform_ip_on_passthrough = TRUE;
  trans_class->transform_ip = GST_DEBUG_FUNCPTR(gst_bargein_transform_ip);
  trans_class->set_caps = GST_DEBUG_FUNCPTR(gst_bargein_set_caps);
  trans_class->sink_event = GST_DEBUG_FUNCPTR(gst_bargein_sink_event);
  trans_class->start = GST_DEBUG_FUNCPTR(gst_bargein_start);
  trans_class->stop = GST_DEBUG_FUNCPTR(gst_bargein_stop);

  gst_type_mark_as_plugin_api(GST_TYPE_BARGEIN_MODE, static_cast<GstPluginAPIFlags>(0));
}
