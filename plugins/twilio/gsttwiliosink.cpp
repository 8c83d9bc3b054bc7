/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-twiliosink
 * @title: twiliosink
 * @see_also: twiliosrc, realtimemodel, bargein
 *
 * twiliosink plays audio to the caller of a Twilio bidirectional Media
 * Stream. It finds its call through the "phoneagent.call" #GstContext that
 * twiliosrc (or the phone-agent server) provides.
 *
 * Audio is sent as `media` messages with the call's streamSid, in frames of
 * #GstTwilioSink:frame-ms (multiples of 20 ms = 160 μ-law bytes), never more
 * than #GstTwilioSink:lead ms ahead of real time: Twilio plays what it gets
 * in order, so a small lead keeps what a `clear` throws away small and the
 * playback position known. When audio comes faster than real time (a model
 * streams its replies that way) the sink fills Twilio's queue up to the
 * lead, sleeps until half of it has played, and tops it up again: one
 * wake-up per lead/2 of audio rather than one per frame. When Twilio's
 * queue has run empty, audio that comes in real time (an echo's frames) is
 * gathered until there is #GstTwilioSink:min-lead ms of it, or until it has
 * waited that long, so that a frame that comes a little late still finds
 * audio playing instead of leaving a gap. Frames that can go
 * at once leave in one socket write, and a buffer list is taken whole before
 * sending (realtimemodel pushes a model delta's frames as one). On a server media
 * thread (twiliosrc, or realtimemodel, pushing from it) it never waits: what
 * the lead or a pause holds back goes out with a later buffer, or from a
 * timer on that media thread once half of the lead has played (or the
 * pause has timed out). After every #GstTwilioSink:mark-interval ms it
 * sends a `mark`; Twilio echoes it when the caller has heard up to there,
 * and between echoes what was heard moves on with the time that passed.
 * Marks carry a generation that each clear bumps, so the echoes Twilio sends
 * because of a clear are not taken as played.
 *
 * Input is `audio/x-mulaw, rate=8000, channels=1`, or S16LE mono at any rate,
 * converted inside with GStreamer's audio resampler.
 *
 * On EOS, twiliosink pads the last frame with silence, waits (up to
 * #GstTwilioSink:eos-timeout) until Twilio reports everything played, then
 * closes the stream when #GstTwilioSink:close-on-eos is set: with
 * `<Connect>` followed by `<Hangup/>` in the TwiML, that hangs up.
 *
 * ## Custom events (upstream elements send them downstream)
 *
 * - `phoneagent/item-start` (serialized): the audio that follows belongs to
 *   a new response item. Fields: `item-id` (gchararray, required),
 *   `response-id` (gchararray, optional). The pending partial frame of the
 *   previous item is padded with silence and sent first.
 * - `phoneagent/clear` (out-of-band, GST_EVENT_CUSTOM_DOWNSTREAM_OOB, so it
 *   overtakes queued audio): send Twilio `clear`, discard everything held,
 *   and drop the audio of the current item still on its way (until the next
 *   `phoneagent/item-start`). Fields: `reason` (gchararray, optional, for
 *   logs). A clear does not end a pause.
 * - `phoneagent/pause` (out-of-band, e.g. from bargein at the first sign of
 *   the caller's speech): stop sending media; audio that arrives is held
 *   (rendering blocks, so upstream queues it) and Twilio only plays out what
 *   it already has, at most #GstTwilioSink:lead (with
 *   #GstTwilioSink:pause-clears, nothing: the pause sends `clear` and keeps
 *   what Twilio had not played, to send again on resume). Fields: any
 *   (bargein sends `onset-running-time`, `running-time`, `source`); ignored
 *   here.
 * - `phoneagent/pause-clear` (out-of-band, from bargein once the sound that
 *   paused looks like a voice): while paused, do what
 *   #GstTwilioSink:pause-clears does at the pause, once per pause: send
 *   `clear` and keep what Twilio had not played, to send again on resume.
 *   Ignored when not paused, or when the pause already cleared. Fields:
 *   any (bargein sends `onset-running-time`, `running-time`).
 * - `phoneagent/resume` (out-of-band): end the pause; sending goes on exactly
 *   where it stopped, nothing lost (unless a clear came in between). Fields:
 *   any (bargein sends `running-time`, `reason`). A pause that nobody ends
 *   ends by itself after #GstTwilioSink:max-pause-ms.
 *
 * ## Custom query
 *
 * - `phoneagent/heard` (GST_QUERY_CUSTOM, answered on the sink pad): what
 *   the caller actually heard. In: `item-id` (gchararray, optional; default
 *   the current item). Out: `item-id` (gchararray), `played-ms` (guint64,
 *   audio of the item Twilio reported played: its marks), `heard-ms`
 *   (guint64, what the caller has heard by now: `played-ms`, and what
 *   played on since the last mark echo at the rate audio plays, up to the
 *   next mark not echoed yet and never past `sent-ms`; what to act on),
 *   `sent-ms` (guint64, audio of
 *   the item sent and not cleared), `generation` (guint), `known`
 *   (gboolean), `level-db` (gdouble, RMS level in dBFS of the agent audio
 *   sent lately, about the last 100 ms; -100 when none: bargein's echo
 *   guard), `held-ms` (guint64, audio received and not sent yet, held
 *   back by the lead, a pause or min-lead).
 * - `phoneagent/far-end` (GST_QUERY_CUSTOM, answered on the sink pad): the
 *   agent audio the caller hears at a given time, by twiliosink's pacing
 *   (sent audio plays back to back from when it is sent; a clear cuts what
 *   was not played), as the far end of an echo canceller. In:
 *   `running-time` (guint64, the pipeline's running time of the first
 *   sample), `samples` (guint, at most 8000). Out: `audio` (GstBuffer, that
 *   many μ-law bytes at 8 kHz; silence where nothing plays). twiliosink
 *   starts keeping this log (about 2 s of it) at the first such query.
 *
 * ## Element messages
 *
 * - `twilio-clear`: a clear was sent. `generation` (guint), `reason`
 *   (gchararray), `discarded-ms` (guint64, audio held here and dropped),
 *   `running-time` (guint64).
 * - `twilio-stream-closed`: the sink closed the stream after EOS.
 *   `all-played` (gboolean), `running-time` (guint64).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 twiliosrc port=8080 ! twiliosink lead=200
 * ]| The echo agent.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gsttwiliosink.h"

#include <gst/audio/audio.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "gsttwiliocall.h"
#include "gsttwilioelements.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "pa-playout.h"
#include "pa-websocket.h"

GST_DEBUG_CATEGORY_STATIC(gst_twilio_sink_debug);
#define GST_CAT_DEFAULT gst_twilio_sink_debug

#define DEFAULT_LEAD 200
#define DEFAULT_MIN_LEAD 40
#define DEFAULT_FRAME_MS 20
#define DEFAULT_MARK_INTERVAL 20
#define DEFAULT_EOS_TIMEOUT 10000
#define DEFAULT_CLOSE_ON_EOS TRUE
#define DEFAULT_MAX_PAUSE_MS 3000
#define DEFAULT_PAUSE_CLEARS TRUE
/* audio of the current item kept after it was sent, to send again what a
 * clearing pause made Twilio drop: what Twilio can hold (the lead) and the
 * marks' lag, twice over, and at least 500 ms (bytes) */
static size_t resend_window(guint lead_ms) { return std::max<size_t>(2u * lead_ms * 8u, 4000); }

enum {
  PROP_0,
  PROP_LEAD,
  PROP_MIN_LEAD,
  PROP_FRAME_MS,
  PROP_MARK_INTERVAL,
  PROP_EOS_TIMEOUT,
  PROP_CLOSE_ON_EOS,
  PROP_MAX_PAUSE_MS,
  PROP_PAUSE_CLEARS,
  PROP_STATS,
};

enum { SIGNAL_CLEAR, N_SIGNALS };
static guint sink_signals[N_SIGNALS];

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-mulaw, rate = (int) 8000, channels = (int) 1; "
                    "audio/x-raw, format = (string) S16LE, layout = (string) interleaved, "
                    "rate = (int) [ 8000, 48000 ], channels = (int) 1"));

namespace {
struct Settings {
  guint lead = DEFAULT_LEAD;
  guint min_lead = DEFAULT_MIN_LEAD;
  guint frame_ms = DEFAULT_FRAME_MS;
  guint mark_interval = DEFAULT_MARK_INTERVAL;
  guint eos_timeout = DEFAULT_EOS_TIMEOUT;
  bool close_on_eos = DEFAULT_CLOSE_ON_EOS;
  guint max_pause_ms = DEFAULT_MAX_PAUSE_MS;
  bool pause_clears = DEFAULT_PAUSE_CLEARS;
};

/* μ-law waiting to be sent: appended at the end, sent from the front. A
 * send moves an offset instead of erasing the front, which moved all the
 * rest of the held audio (a model's reply arrives faster than it plays, so
 * seconds of it at every tick of the lead); the room in front is reused
 * once everything is sent, or taken back when an append would otherwise
 * grow the buffer, so each byte moves at most once. */
class HeldAudio {
public:
  size_t size() const { return buf_.size() - pos_; }
  bool empty() const { return buf_.size() == pos_; }
  const uint8_t *data() const { return buf_.data() + pos_; }
  /* room for @n more bytes at the end, to be written by the caller */
  uint8_t *extend(size_t n) {
    if (pos_ && buf_.size() + n > buf_.capacity()) {
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(pos_));
      pos_ = 0;
    }
    size_t old = buf_.size();
    buf_.resize(old + n);
    return buf_.data() + old;
  }
  void append(const uint8_t *d, size_t n) { std::copy(d, d + n, extend(n)); }
  /* @n bytes have been sent */
  void consume(size_t n) {
    pos_ += n;
    if (pos_ >= buf_.size())
      clear();
  }
  /* puts @n bytes back in front of what is held (sent again on resume) */
  void prepend(const uint8_t *d, size_t n) {
    if (n <= pos_) {
      pos_ -= n;
      std::copy(d, d + n, buf_.begin() + static_cast<long>(pos_));
    } else {
      buf_.insert(buf_.begin() + static_cast<long>(pos_), d, d + n);
    }
  }
  void clear() {
    buf_.clear();
    pos_ = 0;
  }

private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0; /* bytes in front already sent */
};

struct State {
  PaCall *call = nullptr;
  bool raw = false;
  std::unique_ptr<pa::StreamResampler> resampler;
  std::vector<int16_t> pcm8k;
  HeldAudio held;                   /* μ-law not yet sent (less than a frame, or waiting for the lead) */
  GstClockTime play_end = 0;        /* running time when Twilio will have played all we sent */
  GstClockTime gather_since = GST_CLOCK_TIME_NONE; /* min-lead: since when audio waits for Twilio's empty buffer */
  guint64 since_mark = 0;           /* bytes sent since the last mark */
  GstClockID wait_id = nullptr;     /* pending lead wait, unscheduled by clear/unlock */
  bool flushing = false;
  guint64 clear_epoch = 0;          /* bumped by each clear, to abandon a render in progress */
  bool dropping_item = false;       /* after clear: drop until the next item-start */
  bool paused = false;              /* phoneagent/pause: send nothing until resume */
  guint64 pause_serial = 0;         /* bumped by each pause, for the max-pause timeout */
  gint64 pause_deadline_us = 0;     /* when this pause ends by itself (max-pause-ms), monotonic */
  gint64 tick_due_us = 0;           /* the earliest media-thread timer that will call send_held(), 0: none */
  std::vector<uint8_t> recent;      /* the current item's last sent audio (for a clearing pause) */
  bool pause_cleared = false;       /* this pause emptied Twilio's queue: resume sends again */
  guint64 recent_start = 0;         /* its position in the item, bytes */
  guint64 item_pos = 0;             /* bytes of the item sent (back to what was played after a pause-clear) */
  std::string item_id;
  guint64 clears = 0, discarded_bytes = 0, dropped_after_clear = 0, padded_bytes = 0, not_started_bytes = 0;
  guint64 pauses = 0, pause_timeouts = 0, pause_clears = 0, resent_bytes = 0;
  /* the last 100 ms of audio sent, for level-db: copied as it is sent and
   * measured only when asked (a query now and then, not a sum per frame) */
  std::array<uint8_t, 800> level_ring{}; /* 100 ms of 8 kHz μ-law */
  size_t level_pos = 0, level_fill = 0;
  pa::Playout playout;              /* what plays when, once somebody asked (phoneagent/far-end) */
  bool playout_wanted = false;
};

/* the audio just sent, into the level window (oldest bytes overwritten) */
void level_note(State &st, const uint8_t *data, size_t n) {
  const size_t cap = st.level_ring.size();
  if (n >= cap) {
    std::copy(data + n - cap, data + n, st.level_ring.begin());
    st.level_pos = 0;
    st.level_fill = cap;
    return;
  }
  size_t first = std::min(n, cap - st.level_pos);
  std::copy(data, data + first, st.level_ring.begin() + static_cast<long>(st.level_pos));
  std::copy(data + first, data + n, st.level_ring.begin());
  st.level_pos = (st.level_pos + n) % cap;
  st.level_fill = std::min(cap, st.level_fill + n);
}
} // namespace

struct GstTwilioSinkPrivate {
  std::mutex lock;
  std::condition_variable cond; /* pause ended, clear, flushing */
  Settings settings;
  State st;
};

struct _GstTwilioSink {
  GstBaseSink parent;
  GstTwilioSinkPrivate *priv;
};

#define gst_twilio_sink_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE(GstTwilioSink, gst_twilio_sink, GST_TYPE_BASE_SINK,
                        GST_DEBUG_CATEGORY_INIT(gst_twilio_sink_debug, "twiliosink", 0, "Twilio Media Streams sink"));
GST_ELEMENT_REGISTER_DEFINE(twiliosink, "twiliosink", GST_RANK_NONE, GST_TYPE_TWILIO_SINK);

static GstClockTime now_running(GstTwilioSink *self) {
  return gst_twilio_running_time(GST_ELEMENT(self));
}

/* ------------------------------------------------------------ properties */

static void gst_twilio_sink_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
  GstTwilioSink *self = GST_TWILIO_SINK(object);
  std::lock_guard<std::mutex> g(self->priv->lock);
  Settings &s = self->priv->settings;
  switch (prop_id) {
  case PROP_LEAD: s.lead = g_value_get_uint(value); break;
  case PROP_MIN_LEAD: s.min_lead = g_value_get_uint(value); break;
  case PROP_FRAME_MS: s.frame_ms = g_value_get_uint(value) / 20 * 20; break;
  case PROP_MARK_INTERVAL: s.mark_interval = g_value_get_uint(value); break;
  case PROP_EOS_TIMEOUT: s.eos_timeout = g_value_get_uint(value); break;
  case PROP_CLOSE_ON_EOS: s.close_on_eos = g_value_get_boolean(value); break;
  case PROP_MAX_PAUSE_MS: s.max_pause_ms = g_value_get_uint(value); break;
  case PROP_PAUSE_CLEARS: s.pause_clears = g_value_get_boolean(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static GstStructure *gst_twilio_sink_stats(GstTwilioSink *self) {
  GstTwilioSinkPrivate *p = self->priv;
  std::lock_guard<std::mutex> g(p->lock);
  GstStructure *s = p->st.call ? pa_call_get_stats(p->st.call) : gst_structure_new_empty("twiliosink-stats");
  gst_structure_set_name(s, "twiliosink-stats");
  gst_structure_set(s, "clears", G_TYPE_UINT64, p->st.clears, "discarded-ms", G_TYPE_UINT64,
                    p->st.discarded_bytes / 8, "dropped-after-clear-ms", G_TYPE_UINT64, p->st.dropped_after_clear / 8,
                    "padded-ms", G_TYPE_UINT64, p->st.padded_bytes / 8, "not-started-ms", G_TYPE_UINT64,
                    p->st.not_started_bytes / 8, "pauses", G_TYPE_UINT64, p->st.pauses, "pause-timeouts",
                    G_TYPE_UINT64, p->st.pause_timeouts, "pause-clears", G_TYPE_UINT64, p->st.pause_clears,
                    "resent-ms", G_TYPE_UINT64, p->st.resent_bytes / 8, nullptr);
  return s;
}

static void gst_twilio_sink_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  GstTwilioSink *self = GST_TWILIO_SINK(object);
  if (prop_id == PROP_STATS) {
    g_value_take_boxed(value, gst_twilio_sink_stats(self));
    return;
  }
  std::lock_guard<std::mutex> g(self->priv->lock);
  const Settings &s = self->priv->settings;
  switch (prop_id) {
  case PROP_LEAD: g_value_set_uint(value, s.lead); break;
  case PROP_MIN_LEAD: g_value_set_uint(value, s.min_lead); break;
  case PROP_FRAME_MS: g_value_set_uint(value, s.frame_ms); break;
  case PROP_MARK_INTERVAL: g_value_set_uint(value, s.mark_interval); break;
  case PROP_EOS_TIMEOUT: g_value_set_uint(value, s.eos_timeout); break;
  case PROP_CLOSE_ON_EOS: g_value_set_boolean(value, s.close_on_eos); break;
  case PROP_MAX_PAUSE_MS: g_value_set_uint(value, s.max_pause_ms); break;
  case PROP_PAUSE_CLEARS: g_value_set_boolean(value, s.pause_clears); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

/* ------------------------------------------------------------ sending */

/* Sends whole frames from st.held, waiting on the clock so that no more than
 * the lead is queued at Twilio. With @flush, a partial last frame is padded
 * with silence and sent too. With @no_wait, stops where it would wait
 * (the lead is full, or paused) instead. Called with the lock held
 * (released while waiting). Returns FALSE when flushing. */
/* Several frames in a row leave in one write: the call stays corked while
 * they are sent, never across a wait. */
struct Cork {
  PaCall *call;
  bool on = false;
  void set(bool v) {
    if (on != v)
      pa_call_set_corked(call, v);
    on = v;
  }
  ~Cork() { set(false); }
};

static gboolean send_held(GstTwilioSink *self, std::unique_lock<std::mutex> &g, bool flush, bool no_wait = false);

/* Audio held back on a media thread (the lead is full, or a pause) has no
 * thread of its own waiting to send it: a timer on the call's media thread
 * calls send_held() again when it may go on (the lead half played, the
 * pause's max-pause-ms over), as the blocking path would wake up then. A
 * timer already due sooner makes another needless (each one looks again
 * and sets the next); a later one does not (a resume before a pause's
 * timeout must not wait for it). Lock held. */
static void sink_tick(GstTwilioSink *self);

/* A pause that nobody ended within max-pause-ms ends by itself. Lock held. */
static void end_pause_by_timeout_locked(GstTwilioSink *self) {
  State &st = self->priv->st;
  GST_WARNING_OBJECT(self, "paused for %u ms without a resume: resuming", self->priv->settings.max_pause_ms);
  st.paused = false;
  st.pause_timeouts++;
}

static void schedule_tick_locked(GstTwilioSink *self, gint64 delay_us) {
  State &st = self->priv->st;
  gint64 due = g_get_monotonic_time() + std::max<gint64>(delay_us, 0);
  if (!st.call || (st.tick_due_us && st.tick_due_us <= due))
    return;
  std::shared_ptr<pa::MediaThread> mt = pa_call_get_media_thread(st.call);
  if (!mt)
    return; /* no media thread: renders wait on the clock instead */
  /* the timer holds a reference; it goes with the timer, run or dropped */
  std::shared_ptr<GstTwilioSink> ref(GST_TWILIO_SINK(gst_object_ref(self)),
                                     [](GstTwilioSink *s) { gst_object_unref(s); });
  if (mt->at(due, [ref] { sink_tick(ref.get()); }))
    st.tick_due_us = due;
}

static void sink_tick(GstTwilioSink *self) {
  GstTwilioSinkPrivate *p = self->priv;
  std::unique_lock<std::mutex> g(p->lock);
  State &st = p->st;
  if (st.tick_due_us <= g_get_monotonic_time())
    st.tick_due_us = 0; /* the earliest has come (a later one may still) */
  if (!st.call || st.flushing)
    return;
  if (st.paused && g_get_monotonic_time() >= st.pause_deadline_us)
    end_pause_by_timeout_locked(self);
  send_held(self, g, false, true);
}

/* The pipeline's clock and running time for send_held(): read once per
 * call (the frames of a batch leave within microseconds of each other, and
 * each read was two object locks, a reference on the clock all pipelines
 * share and the clock itself) and again after a wait. */
struct ClockNow {
  GstElement *element;
  GstClock *clock = nullptr;
  GstClockTime base = 0, running = 0;
  bool fresh = false;
  /* after a wait: the clock and the base time are read again too (a state
   * change may have come meanwhile) */
  void forget() {
    if (clock)
      gst_object_unref(clock);
    clock = nullptr;
    fresh = false;
  }
  /* FALSE: no clock (not playing) */
  bool read() {
    if (fresh)
      return clock != nullptr;
    if (!clock) {
      clock = gst_element_get_clock(element);
      base = gst_element_get_base_time(element);
    }
    if (clock) {
      GstClockTime now = gst_clock_get_time(clock);
      running = now > base ? now - base : 0;
    }
    fresh = true;
    return clock != nullptr;
  }
  ~ClockNow() {
    if (clock)
      gst_object_unref(clock);
  }
};

static gboolean send_held(GstTwilioSink *self, std::unique_lock<std::mutex> &g, bool flush, bool no_wait) {
  GstTwilioSinkPrivate *p = self->priv;
  State &st = p->st;
  const size_t frame = p->settings.frame_ms * 8;
  guint64 epoch = st.clear_epoch;
  ClockNow now{GST_ELEMENT(self)};
  Cork cork{st.call};
  /* what was sent leaves st.held when the lock is let go or at the end,
   * not frame by frame */
  struct Sent {
    HeldAudio &held;
    size_t n = 0;
    void drop() {
      held.consume(n);
      n = 0;
    }
    ~Sent() { drop(); }
  } sent{st.held};
  /* sleeps until running time @until on the pipeline clock, the lock let
   * go meanwhile (clear and unlock unschedule st.wait_id); what was sent
   * leaves st.held first */
  auto sleep_until = [&](GstClockTime until) {
    cork.set(false);
    sent.drop();
    st.wait_id = gst_clock_new_single_shot_id(now.clock, now.base + until);
    GstClockID id = st.wait_id;
    g.unlock();
    gst_clock_id_wait(id, nullptr);
    g.lock();
    gst_clock_id_unref(id);
    st.wait_id = nullptr;
    now.forget();
  };
  guint batch = 0; /* frames sent by this call */
  if (flush && !st.held.empty() && st.held.size() % 160) {
    size_t pad = 160 - st.held.size() % 160;
    uint8_t *end = st.held.extend(pad);
    std::fill(end, end + pad, pa::kMulawSilence);
    st.padded_bytes += pad;
  }
  while (st.held.size() > sent.n && (st.held.size() - sent.n >= frame || flush)) {
    if (st.flushing || epoch != st.clear_epoch)
      return !st.flushing;
    if (st.paused && no_wait) {
      schedule_tick_locked(self, st.pause_deadline_us - g_get_monotonic_time());
      break;
    }
    if (st.paused) {
      /* hold everything until resume (or clear, flushing, max-pause-ms) */
      cork.set(false);
      sent.drop();
      guint64 serial = st.pause_serial;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(p->settings.max_pause_ms);
      bool woken = p->cond.wait_until(g, deadline, [&st, epoch, serial] {
        return !st.paused || st.flushing || epoch != st.clear_epoch || serial != st.pause_serial;
      });
      if (!woken && st.paused && serial == st.pause_serial)
        end_pause_by_timeout_locked(self);
      now.forget();
      continue; /* re-check flushing, clear and the clock */
    }
    size_t n = std::min(frame, st.held.size() - sent.n);
    if (now.read()) {
      if (st.play_end < now.running)
        st.play_end = now.running; /* Twilio's buffer ran empty */
      if (p->settings.min_lead && !flush && st.play_end <= now.running &&
          st.held.size() - sent.n < p->settings.min_lead * 8u) {
        /* min-lead: Twilio's buffer is empty; start it with that much
         * audio, or with what came in that long, so that a frame that
         * comes a little late (the media wait, a busy machine) finds audio
         * still playing instead of a gap */
        if (!GST_CLOCK_TIME_IS_VALID(st.gather_since))
          st.gather_since = now.running;
        GstClockTime due = st.gather_since + p->settings.min_lead * GST_MSECOND;
        if (now.running < due && no_wait) {
          schedule_tick_locked(self, static_cast<gint64>((due - now.running) / GST_USECOND));
          break;
        }
        if (now.running < due) {
          /* no media thread: wait here, as for the lead; what comes
           * meanwhile waits upstream and follows at once */
          sleep_until(due);
          continue; /* re-check flushing, clear and the clock */
        }
      }
      st.gather_since = GST_CLOCK_TIME_NONE;
      GstClockTime lead = p->settings.lead * GST_MSECOND;
      if (st.play_end > now.running + lead && no_wait) {
        /* when half of the lead has played, as the wait below */
        schedule_tick_locked(self, static_cast<gint64>((st.play_end - lead / 2 - now.running) / GST_USECOND));
        break;
      }
      if (st.play_end > now.running + lead) {
        /* full: sleep until half of the lead has played, then top it up
         * again (one wake-up per lead/2 of audio, not one per frame) */
        sleep_until(st.play_end - lead / 2);
        continue; /* re-check flushing, clear and the clock */
      }
    }
    const uint8_t *head = st.held.data() + sent.n;
    if (st.held.size() - sent.n >= n + frame)
      cork.set(true); /* another frame follows at once */
    /* a mark due after this frame goes out in the same write */
    bool mark = st.since_mark + n >= p->settings.mark_interval * 8u;
    if (!(mark ? pa_call_send_media_and_mark : pa_call_send_media)(st.call, head, n)) {
      st.not_started_bytes += n;
    } else {
      level_note(st, head, n);
      /* what a clearing pause may have to send again (a pause can clear on
       * a later phoneagent/pause-clear, whatever pause-clears says) */
      st.recent.insert(st.recent.end(), head, head + n);
      const size_t window = resend_window(p->settings.lead);
      if (st.recent.size() > 2 * window) { /* trimmed now and then, not per frame */
        size_t excess = st.recent.size() - window;
        st.recent.erase(st.recent.begin(), st.recent.begin() + static_cast<long>(excess));
        st.recent_start += excess;
      }
      st.item_pos += n;
      if (st.playout_wanted)
        st.playout.add(st.play_end, head, n);
      st.play_end += gst_util_uint64_scale(n, GST_SECOND, 8000);
      st.since_mark = mark ? 0 : st.since_mark + n;
      batch++;
    }
    sent.n += n;
  }
  /* a mark also after the last frame held, at the end of an item (flush)
   * or of audio that came faster than it plays (more than a frame at once:
   * a model's reply, not an echo's frame by frame): Twilio then confirms
   * the end of what it had, a goodbye included */
  if (st.since_mark && (flush || (batch > 1 && st.held.size() - sent.n < frame))) {
    pa_call_send_mark(st.call);
    st.since_mark = 0;
  }
  return TRUE;
}

/* Adds @buffer's audio to what is held, as μ-law. FALSE: not for the
 * caller (the rest of a cleared item, or the call has ended). Lock held. */
static bool hold_buffer_locked(GstTwilioSink *self, GstBuffer *buffer) {
  GstTwilioSinkPrivate *p = self->priv;
  State &st = p->st;
  if (st.dropping_item) {
    st.dropped_after_clear += gst_buffer_get_size(buffer) / (st.raw ? 2 : 1);
    return false;
  }
  if (pa_call_is_ended(st.call)) {
    GST_DEBUG_OBJECT(self, "call ended; dropping audio");
    return false;
  }
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ))
    return false;
  if (!st.raw) {
    st.held.append(map.data, map.size);
  } else {
    const auto *pcm = reinterpret_cast<const int16_t *>(map.data);
    size_t n = map.size / 2;
    st.pcm8k.clear();
    if (st.resampler)
      st.resampler->process(pcm, n, st.pcm8k);
    else
      st.pcm8k.assign(pcm, pcm + n);
    pa::mulaw_encode_block(st.pcm8k.data(), st.held.extend(st.pcm8k.size()), st.pcm8k.size());
  }
  gst_buffer_unmap(buffer, &map);
  return true;
}

/* Holds the @n buffers @get gives, then sends what may go. A buffer list
 * (realtimemodel pushes the frames of a model delta as one) is held whole
 * first, so the frames that fit in the lead leave in one write. */
template <typename Get> static GstFlowReturn hold_and_send(GstTwilioSink *self, guint n, Get get) {
  GstTwilioSinkPrivate *p = self->priv;
  std::unique_lock<std::mutex> g(p->lock);
  if (!p->st.call)
    return GST_FLOW_ERROR;
  bool any = false;
  for (guint i = 0; i < n; i++)
    any = hold_buffer_locked(self, get(i)) || any;
  if (!any)
    return GST_FLOW_OK;
  /* on a media thread (twiliosrc in push mode under the server) never wait:
   * that thread serves other calls too; what cannot go now (lead full,
   * paused) is sent by a later render */
  return send_held(self, g, false, pa::on_media_thread()) ? GST_FLOW_OK : GST_FLOW_FLUSHING;
}

static GstFlowReturn gst_twilio_sink_render(GstBaseSink *sink, GstBuffer *buffer) {
  return hold_and_send(GST_TWILIO_SINK(sink), 1, [buffer](guint) { return buffer; });
}

static GstFlowReturn gst_twilio_sink_render_list(GstBaseSink *sink, GstBufferList *list) {
  return hold_and_send(GST_TWILIO_SINK(sink), gst_buffer_list_length(list),
                       [list](guint i) { return gst_buffer_list_get(list, i); });
}

/* What the caller has heard of the current item at a clear by @now, in
 * bytes: the marks lag (their echoes may be in flight, or wait unread in
 * the socket while the very thread that reads it decides to clear), and
 * the pacing knows how much of Twilio's queue has played. It runs ahead
 * when Twilio's playout fell behind it (a gap earlier in the item):
 * playing on from the last mark echo, at the rate audio plays, is then
 * nearer the truth, so the nearer of the two is taken, in whole frames.
 * Lock held. */
static guint64 heard_at_clear_locked(const State &st, const pa::Heard &heard, GstClockTime now) {
  guint64 played = heard.known ? heard.played_ms * 8 : st.recent_start;
  guint64 queued = GST_CLOCK_TIME_IS_VALID(now) && st.play_end > now
                       ? gst_util_uint64_scale(st.play_end - now, 8000, GST_SECOND)
                       : 0;
  if (st.item_pos > queued) {
    guint64 paced = st.item_pos - queued;
    if (heard.known && heard.played_at_us > 0) {
      gint64 since_us = g_get_monotonic_time() - heard.played_at_us;
      if (since_us >= 0 && since_us < 500000)
        paced = std::min(paced, played + static_cast<guint64>(since_us) * 8 / 1000);
    }
    played = std::max(played, paced / 160 * 160);
  }
  return played;
}

/* Clear: called from any thread (OOB event, action signal). */
static guint do_clear(GstTwilioSink *self, const char *reason) {
  GstTwilioSinkPrivate *p = self->priv;
  guint gen = 0;
  guint64 discarded;
  {
    std::lock_guard<std::mutex> g(p->lock);
    State &st = p->st;
    /* the caller stops hearing the item here: what they heard until now
     * stays played (the truncate asks for it next); taken before the
     * pacing below is reset */
    pa::Heard h;
    guint64 heard = 0;
    GstClockTime now = now_running(self);
    if (st.call && GST_CLOCK_TIME_IS_VALID(now)) {
      h = pa_call_get_heard(st.call, st.item_id);
      heard = heard_at_clear_locked(st, h, now);
    }
    discarded = st.held.size();
    st.discarded_bytes += discarded;
    st.held.clear();
    st.since_mark = 0;
    st.clear_epoch++;
    st.clears++;
    st.dropping_item = !st.item_id.empty();
    st.recent.clear();
    st.play_end = 0; /* Twilio's buffer is empty now */
    st.gather_since = GST_CLOCK_TIME_NONE;
    if (st.playout_wanted)
      st.playout.cut(now);
    st.level_fill = 0;
    st.level_pos = 0;
    if (st.wait_id)
      gst_clock_id_unschedule(st.wait_id);
    p->cond.notify_all();
    if (st.call) {
      if (h.known)
        pa_call_raise_played(st.call, h.item_id, heard);
      gen = pa_call_clear(st.call);
    }
  }
  GST_INFO_OBJECT(self, "clear (%s): generation %u, %" G_GUINT64_FORMAT " ms discarded here", reason, gen,
                  discarded / 8);
  gst_element_post_message(GST_ELEMENT(self),
      gst_message_new_element(GST_OBJECT(self),
          gst_structure_new("twilio-clear", "generation", G_TYPE_UINT, gen, "reason", G_TYPE_STRING, reason,
                            "discarded-ms", G_TYPE_UINT64, discarded / 8, "running-time", G_TYPE_UINT64,
                            now_running(self), nullptr)));
  return gen;
}

static void gst_twilio_sink_clear_action(GstTwilioSink *self) { do_clear(self, "action"); }

/* A clearing pause (pause-clears, or phoneagent/pause-clear): Twilio drops
 * what it holds (the caller stops hearing the agent now, not when the lead
 * has played out), and what it had not played yet goes back in front of
 * the held audio, to be sent again on resume. Called with the lock held. */
static void clear_for_pause(GstTwilioSink *self, State &st) {
  GstClockTime now = now_running(self);
  if (!st.call || !GST_CLOCK_TIME_IS_VALID(now) || st.play_end <= now)
    return; /* Twilio holds nothing of ours */
  guint64 played = heard_at_clear_locked(st, pa_call_get_heard(st.call, st.item_id), now);
  played = std::min(std::max(played, st.recent_start), st.item_pos);
  pa_call_raise_played(st.call, st.item_id, played);
  std::vector<uint8_t> again(st.recent.begin() + static_cast<long>(played - st.recent_start), st.recent.end());
  guint gen = pa_call_clear(st.call); /* also falls the call's sent position back to what was played */
  st.held.prepend(again.data(), again.size());
  st.recent.resize(played - st.recent_start);
  st.item_pos = played;
  st.play_end = 0;
  st.gather_since = GST_CLOCK_TIME_NONE;
  st.playout.cut(now);
  st.since_mark = 0;
  st.pause_clears++;
  st.pause_cleared = true;
  st.resent_bytes += again.size();
  GST_DEBUG_OBJECT(self, "pause: clear (generation %u), %zu ms to send again on resume", gen, again.size() / 8);
}

/* Pause / resume: called from any thread (OOB events). */
static void set_paused(GstTwilioSink *self, bool paused) {
  GstTwilioSinkPrivate *p = self->priv;
  std::unique_lock<std::mutex> g(p->lock);
  State &st = p->st;
  if (paused && !st.paused) {
    st.pause_serial++;
    st.pause_deadline_us = g_get_monotonic_time() + static_cast<gint64>(p->settings.max_pause_ms) * 1000;
    st.pauses++;
    st.pause_cleared = false;
    if (p->settings.pause_clears && !st.dropping_item)
      clear_for_pause(self, st);
  }
  GST_DEBUG_OBJECT(self, "%s (%zu bytes held)", paused ? "pause" : "resume", st.held.size());
  st.paused = paused;
  p->cond.notify_all();
  if (!paused && st.call && !st.held.empty() && !st.dropping_item &&
      (st.pause_cleared || pa_call_get_media_thread(st.call))) {
    /* what the pause made Twilio drop goes again now (it fits in the lead:
     * Twilio holds nothing); a render in progress sends the rest. On a
     * media thread no render waits: what the pause held back goes now, as
     * far as the lead allows, and a tick sends the rest */
    send_held(self, g, false, true);
  }
}

/* phoneagent/pause-clear: the sound that paused looks like a voice; empty
 * Twilio's queue now (once per pause). Any thread. */
static void clear_paused(GstTwilioSink *self) {
  GstTwilioSinkPrivate *p = self->priv;
  std::lock_guard<std::mutex> g(p->lock);
  State &st = p->st;
  if (st.paused && !st.pause_cleared && !st.dropping_item)
    clear_for_pause(self, st);
}

static gboolean gst_twilio_sink_event(GstBaseSink *sink, GstEvent *event) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  GstTwilioSinkPrivate *p = self->priv;
  const GstStructure *s = gst_event_get_structure(event);
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_DOWNSTREAM_OOB && s &&
      gst_structure_has_name(s, "phoneagent/clear")) {
    const char *reason = gst_structure_get_string(s, "reason");
    do_clear(self, reason ? reason : "event");
    gst_event_unref(event);
    return TRUE;
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_DOWNSTREAM_OOB && s &&
      (gst_structure_has_name(s, "phoneagent/pause") || gst_structure_has_name(s, "phoneagent/resume"))) {
    set_paused(self, gst_structure_has_name(s, "phoneagent/pause"));
    gst_event_unref(event);
    return TRUE;
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_DOWNSTREAM_OOB && s &&
      gst_structure_has_name(s, "phoneagent/pause-clear")) {
    clear_paused(self);
    gst_event_unref(event);
    return TRUE;
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_DOWNSTREAM && s &&
      gst_structure_has_name(s, "phoneagent/item-start")) {
    const char *item = gst_structure_get_string(s, "item-id");
    std::unique_lock<std::mutex> g(p->lock);
    if (p->st.call && !p->st.dropping_item)
      send_held(self, g, true); /* finish the previous item's last frame */
    p->st.dropping_item = false;
    p->st.item_id = item ? item : "";
    p->st.recent.clear();
    p->st.recent_start = 0;
    p->st.item_pos = 0;
    if (p->st.call)
      pa_call_begin_item(p->st.call, p->st.item_id);
    GST_DEBUG_OBJECT(self, "item %s starts", p->st.item_id.c_str());
    g.unlock();
    gst_event_unref(event);
    return TRUE;
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
    std::unique_lock<std::mutex> g(p->lock);
    State &st = p->st;
    if (st.call && !pa_call_is_ended(st.call)) {
      send_held(self, g, true);
      guint timeout = p->settings.eos_timeout;
      bool close = p->settings.close_on_eos;
      PaCall *call = PA_CALL(g_object_ref(st.call));
      g.unlock();
      gboolean played = pa_call_wait_played(call, static_cast<gint64>(timeout) * 1000);
      if (!played)
        GST_WARNING_OBJECT(self, "EOS: Twilio did not confirm playback of everything within %u ms", timeout);
      if (close && !pa_call_is_ended(call)) {
        pa_call_close(call, pa::ws::kNormal, "done");
        gst_element_post_message(GST_ELEMENT(self),
            gst_message_new_element(GST_OBJECT(self),
                gst_structure_new("twilio-stream-closed", "all-played", G_TYPE_BOOLEAN, played, "running-time",
                                  G_TYPE_UINT64, now_running(self), nullptr)));
      }
      g_object_unref(call);
    }
  }
  return GST_BASE_SINK_CLASS(parent_class)->event(sink, event);
}

static gboolean gst_twilio_sink_query(GstBaseSink *sink, GstQuery *query) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  GstTwilioSinkPrivate *p = self->priv;
  if (GST_QUERY_TYPE(query) == GST_QUERY_CUSTOM) {
    GstStructure *s = gst_query_writable_structure(query);
    if (s && gst_structure_has_name(s, "phoneagent/heard")) {
      std::lock_guard<std::mutex> g(p->lock);
      if (!p->st.call)
        return FALSE;
      const char *item = gst_structure_get_string(s, "item-id");
      pa::Heard h = pa_call_get_heard(p->st.call, item ? item : "");
      double power = pa::mulaw_mean_square(p->st.level_ring.data(), p->st.level_fill);
      double level = power > 1e-10 ? 10.0 * std::log10(power) : -100.0;
      guint64 held_ms = (p->st.held.size() + 7) / 8;
      gst_structure_set(s, "item-id", G_TYPE_STRING, h.item_id.c_str(), "played-ms", G_TYPE_UINT64, h.played_ms,
                        "heard-ms", G_TYPE_UINT64, h.heard_ms, "sent-ms", G_TYPE_UINT64, h.sent_ms, "generation", G_TYPE_UINT, h.generation, "known",
                        G_TYPE_BOOLEAN, h.known, "level-db", G_TYPE_DOUBLE, level, "held-ms", G_TYPE_UINT64,
                        held_ms, nullptr);
      return TRUE;
    }
    if (s && gst_structure_has_name(s, "phoneagent/far-end")) {
      guint64 rt = 0;
      guint n = 0;
      if (!gst_structure_get_uint64(s, "running-time", &rt) || !gst_structure_get_uint(s, "samples", &n) ||
          n > 8000)
        return FALSE;
      GstBuffer *audio = gst_buffer_new_allocate(nullptr, n, nullptr);
      GstMapInfo map;
      gst_buffer_map(audio, &map, GST_MAP_WRITE);
      {
        std::lock_guard<std::mutex> g(p->lock);
        p->st.playout_wanted = true;
        p->st.playout.read(rt, n, map.data);
      }
      gst_buffer_unmap(audio, &map);
      gst_structure_set(s, "audio", GST_TYPE_BUFFER, audio, nullptr);
      gst_buffer_unref(audio);
      return TRUE;
    }
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_CONTEXT) {
    std::lock_guard<std::mutex> g(p->lock);
    if (gst_twilio_answer_context_query(query, p->st.call))
      return TRUE;
  }
  return GST_BASE_SINK_CLASS(parent_class)->query(sink, query);
}

static void gst_twilio_sink_set_context(GstElement *element, GstContext *context) {
  GstTwilioSink *self = GST_TWILIO_SINK(element);
  if (PaCall *call = pa_call_from_context(context)) {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (!self->priv->st.call)
      self->priv->st.call = call;
    else
      g_object_unref(call);
  }
  GST_ELEMENT_CLASS(parent_class)->set_context(element, context);
}

static gboolean gst_twilio_sink_set_caps(GstBaseSink *sink, GstCaps *caps) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  std::lock_guard<std::mutex> g(self->priv->lock);
  State &st = self->priv->st;
  GstStructure *s = gst_caps_get_structure(caps, 0);
  st.raw = gst_structure_has_name(s, "audio/x-raw");
  int rate = 8000;
  if (st.raw && !gst_structure_get_int(s, "rate", &rate))
    return FALSE;
  st.resampler.reset(st.raw && rate != 8000 ? new pa::StreamResampler(rate, 8000) : nullptr);
  GST_INFO_OBJECT(self, "input %s at %d Hz", st.raw ? "S16LE" : "mu-law", rate);
  return TRUE;
}

/* basesink starts in NULL->READY, before twiliosrc (upstream) has made its
 * call: look for the call when going to PAUSED, when all are READY. */
static gboolean find_call(GstTwilioSink *self) {
  {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (self->priv->st.call)
      return TRUE;
  }
  PaCall *call = gst_twilio_find_call(GST_ELEMENT(self), GST_BASE_SINK_PAD(self));
  std::lock_guard<std::mutex> g(self->priv->lock);
  if (!self->priv->st.call)
    self->priv->st.call = call;
  else if (call)
    g_object_unref(call);
  if (!self->priv->st.call) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("twiliosink has no call to play to."),
                      ("No phoneagent.call context: put a twiliosrc in the same pipeline, or set the context from "
                       "the application or server"));
    return FALSE;
  }
  pa_call_set_sink_flushing(self->priv->st.call, FALSE);
  return TRUE;
}

static GstStateChangeReturn gst_twilio_sink_change_state(GstElement *element, GstStateChange transition) {
  GstTwilioSink *self = GST_TWILIO_SINK(element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && !find_call(self))
    return GST_STATE_CHANGE_FAILURE;
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (self->priv->st.call) {
      pa_call_set_sink_flushing(self->priv->st.call, TRUE);
      g_object_unref(self->priv->st.call);
      self->priv->st.call = nullptr;
    }
  }
  return ret;
}

static gboolean gst_twilio_sink_start(GstBaseSink *sink) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  std::lock_guard<std::mutex> g(self->priv->lock);
  State &st = self->priv->st;
  st.flushing = false;
  st.held.clear();
  st.play_end = 0;
  st.gather_since = GST_CLOCK_TIME_NONE;
  st.since_mark = 0;
  st.dropping_item = false;
  st.paused = false;
  st.playout.reset();
  st.playout_wanted = false;
  return TRUE;
}

static gboolean gst_twilio_sink_stop(GstBaseSink *sink) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  std::lock_guard<std::mutex> g(self->priv->lock);
  self->priv->st.held.clear();
  return TRUE;
}

static gboolean gst_twilio_sink_unlock(GstBaseSink *sink) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  std::lock_guard<std::mutex> g(self->priv->lock);
  State &st = self->priv->st;
  st.flushing = true;
  if (st.wait_id)
    gst_clock_id_unschedule(st.wait_id);
  self->priv->cond.notify_all();
  if (st.call)
    pa_call_set_sink_flushing(st.call, TRUE);
  return TRUE;
}

static gboolean gst_twilio_sink_unlock_stop(GstBaseSink *sink) {
  GstTwilioSink *self = GST_TWILIO_SINK(sink);
  std::lock_guard<std::mutex> g(self->priv->lock);
  self->priv->st.flushing = false;
  if (self->priv->st.call)
    pa_call_set_sink_flushing(self->priv->st.call, FALSE);
  return TRUE;
}

/* ------------------------------------------------------------ class */

static void gst_twilio_sink_finalize(GObject *object) {
  GstTwilioSink *self = GST_TWILIO_SINK(object);
  if (self->priv->st.call)
    g_object_unref(self->priv->st.call);
  delete self->priv;
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_twilio_sink_init(GstTwilioSink *self) {
  self->priv = new GstTwilioSinkPrivate();
  /* pacing is ours (the lead), not basesink's sync */
  gst_base_sink_set_sync(GST_BASE_SINK(self), FALSE);
  gst_base_sink_set_async_enabled(GST_BASE_SINK(self), FALSE);
  /* nobody needs the last buffer of a phone call kept alive */
  gst_base_sink_set_last_sample_enabled(GST_BASE_SINK(self), FALSE);
}

static void gst_twilio_sink_class_init(GstTwilioSinkClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
  GstBaseSinkClass *basesink_class = GST_BASE_SINK_CLASS(klass);

  gobject_class->set_property = gst_twilio_sink_set_property;
  gobject_class->get_property = gst_twilio_sink_get_property;
  gobject_class->finalize = gst_twilio_sink_finalize;

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_LEAD,
      g_param_spec_uint("lead", "Lead",
                        "Most audio (ms) sent ahead of real time; what a clear throws away at Twilio is at most this",
                        20, 10000, DEFAULT_LEAD, rw));
  g_object_class_install_property(gobject_class, PROP_MIN_LEAD,
      g_param_spec_uint("min-lead", "Minimum lead",
                        "When Twilio's buffer has run empty, gather this much audio (ms; or wait this long for it) "
                        "before sending, so that a 20 ms frame that comes up to min-lead - 20 ms later than usual "
                        "still plays without a gap: a jitter buffer for audio that comes in real time (an echo, a "
                        "bridge), which it delays by min-lead - 20 ms; a model's replies, which come faster than "
                        "real time, start at once. 0: off",
                        0, 1000, DEFAULT_MIN_LEAD, rw));
  g_object_class_install_property(gobject_class, PROP_FRAME_MS,
      g_param_spec_uint("frame-ms", "Frame duration",
                        "Audio per media message (ms, rounded down to a multiple of 20 = 160 bytes)", 20, 1000,
                        DEFAULT_FRAME_MS, rw));
  g_object_class_install_property(gobject_class, PROP_MARK_INTERVAL,
      g_param_spec_uint("mark-interval", "Mark interval",
                        "Send a mark after this much audio (ms): Twilio confirms the played position this often "
                        "(between confirmations it moves on with the time that passed)",
                        20, 10000, DEFAULT_MARK_INTERVAL, rw));
  g_object_class_install_property(gobject_class, PROP_EOS_TIMEOUT,
      g_param_spec_uint("eos-timeout", "EOS timeout",
                        "On EOS, longest wait (ms) for Twilio to confirm the queued audio was played", 0, G_MAXUINT,
                        DEFAULT_EOS_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_CLOSE_ON_EOS,
      g_param_spec_boolean("close-on-eos", "Close on EOS",
                           "Close the stream after EOS once everything played (hangs up with the default TwiML)",
                           DEFAULT_CLOSE_ON_EOS, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_PAUSE_MS,
      g_param_spec_uint("max-pause-ms", "Maximum pause",
                        "A phoneagent/pause that no phoneagent/resume ends within this (ms) ends by itself", 100,
                        600000, DEFAULT_MAX_PAUSE_MS, rw));
  g_object_class_install_property(gobject_class, PROP_PAUSE_CLEARS,
      g_param_spec_boolean("pause-clears", "Pause clears",
                           "On phoneagent/pause, also make Twilio drop what it holds (clear), so the caller stops "
                           "hearing the agent at once; on resume, send again what Twilio had not played (from the "
                           "last echoed mark played on at the rate audio plays, or where the pacing says the queue "
                           "had played if that is less; whole frames). Every pause let go is then an audible gap. "
                           "Without it, a pause clears only when phoneagent/pause-clear follows (bargein sends it "
                           "once the sound looks like a voice)",
                           DEFAULT_PAUSE_CLEARS, rw));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Counters: media frames and bytes sent, marks sent/played/cleared, clears, audio discarded "
                         "by clears, audio dropped before the stream started, pauses, pauses ended by max-pause-ms, "
                         "pauses that cleared Twilio's queue (pause-clears) and the audio sent again after them",
                         GST_TYPE_STRUCTURE, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstTwilioSink::clear:
   *
   * Action signal: send Twilio `clear` now and discard everything held, as
   * the `phoneagent/clear` event does.
   */
  sink_signals[SIGNAL_CLEAR] = g_signal_new_class_handler("clear", G_TYPE_FROM_CLASS(klass),
      static_cast<GSignalFlags>(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION), G_CALLBACK(gst_twilio_sink_clear_action),
      nullptr, nullptr, nullptr, G_TYPE_NONE, 0);

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_set_static_metadata(element_class, "Twilio Media Streams sink", "Sink/Audio/Network",
                                        "Plays audio to a phone caller over a Twilio bidirectional Media Stream, "
                                        "paced with a bounded lead, with marks and clear",
                                        "gst-phone-agent contributors");

  element_class->set_context = GST_DEBUG_FUNCPTR(gst_twilio_sink_set_context);
  element_class->change_state = GST_DEBUG_FUNCPTR(gst_twilio_sink_change_state);
  basesink_class->start = GST_DEBUG_FUNCPTR(gst_twilio_sink_start);
  basesink_class->stop = GST_DEBUG_FUNCPTR(gst_twilio_sink_stop);
  basesink_class->unlock = GST_DEBUG_FUNCPTR(gst_twilio_sink_unlock);
  basesink_class->unlock_stop = GST_DEBUG_FUNCPTR(gst_twilio_sink_unlock_stop);
  basesink_class->render = GST_DEBUG_FUNCPTR(gst_twilio_sink_render);
  basesink_class->render_list = GST_DEBUG_FUNCPTR(gst_twilio_sink_render_list);
  basesink_class->event = GST_DEBUG_FUNCPTR(gst_twilio_sink_event);
  basesink_class->query = GST_DEBUG_FUNCPTR(gst_twilio_sink_query);
  basesink_class->set_caps = GST_DEBUG_FUNCPTR(gst_twilio_sink_set_caps);
}
