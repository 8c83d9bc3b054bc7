/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-twiliosrc
 * @title: twiliosrc
 * @see_also: twiliosink, realtimemodel, bargein
 *
 * twiliosrc is a live source that outputs the caller's audio of a Twilio
 * phone call carried by a bidirectional Media Stream (`<Connect><Stream>`).
 *
 * Standalone (the default, ideal for gst-launch-1.0), it listens itself: it
 * answers Twilio's voice webhook (POST on #GstTwilioSrc:webhook-path) with
 * TwiML that opens the stream, and accepts the stream's WebSocket on
 * #GstTwilioSrc:stream-path. It takes one call per run: a second caller
 * during the call hears #GstTwilioSrc:busy-message and is hung up on. With
 * #GstTwilioSrc:auth-token set, webhooks and upgrades without a valid
 * X-Twilio-Signature get HTTP 403.
 *
 * When an application or the phone-agent server sets a "phoneagent.call"
 * #GstContext on the pipeline, twiliosrc takes that call instead and does
 * not listen. Under the server (media threads, pa_call_set_push()), after
 * the first buffer the thread that reads the call's socket, shared with
 * other calls, pushes each frame downstream itself while the streaming
 * thread stays parked: elements up to the first queue then run on that
 * thread and must not block. A push that took over 50 ms posts a warning.
 *
 * The call is shared with twiliosink through the same context, so
 * `twiliosrc ! twiliosink` is a complete echo line.
 *
 * Output is `audio/x-mulaw, rate=8000, channels=1` as Twilio sends it, or
 * S16LE at the rate downstream asks for, converted inside with GStreamer's
 * audio resampler. Buffers are 20 ms; timestamps follow Twilio's media
 * timestamps, and when those jump (silence suppression on some legs) the gap
 * is filled with silence (flagged GAP) so time downstream is continuous.
 *
 * ## Element messages
 *
 * - `twilio-listening`: standalone listener is up. `port` (gint),
 *   `webhook-path`, `stream-path`, `public-url` (gchararray).
 * - `twilio-call-started`: the stream started. `call-sid`, `stream-sid`,
 *   `account-sid`, `from`, `to` (gchararray; from/to come from the
 *   `from`/`to` stream parameters our TwiML adds), `tracks` (gchararray,
 *   comma-separated), `custom-parameters` (GstStructure of every
 *   `<Parameter>`), `running-time` (guint64).
 * - `twilio-dtmf`: a key press. `digit` (gchararray), `running-time`
 *   (guint64, position in the output stream).
 * - `twilio-call-stopped`: `reason` (gchararray: `stop` when Twilio ended
 *   the stream, `peer-closed`, `connection-lost` or `closed`), `call-sid`,
 *   `running-time` (guint64).
 *
 * A key press is also sent downstream as a serialized custom event
 * `phoneagent/dtmf` with the field `digit` (gchararray).
 *
 * Right after the stream's start message, a serialized custom event
 * `phoneagent/call-info` goes downstream with the fields `call-sid`,
 * `stream-sid`, `account-sid`, `from` and `to` (gchararray), so that
 * elements downstream (realtimemodel, for transfers) know the call.
 *
 * EOS follows the stream's stop or the socket closing.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 twiliosrc port=8080 ! twiliosink
 * ]| The echo agent: callers hear themselves. Point a Twilio number's voice
 * webhook at http(s)://YOUR-HOST/twilio/voice.
 * |[
 * gst-launch-1.0 -e twiliosrc port=8080 ! tee name=t ! queue ! twiliosink \
 *     t. ! queue ! wavenc ! filesink location=caller.wav
 * ]| The same, recording what the caller said.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gsttwiliosrc.h"

#include <gst/audio/audio.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "gsttwiliocall.h"
#include "gsttwilioelements.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "pa-listener.h"

GST_DEBUG_CATEGORY_STATIC(gst_twilio_src_debug);
#define GST_CAT_DEFAULT gst_twilio_src_debug

#define DEFAULT_ADDRESS "0.0.0.0"
#define DEFAULT_PORT 8080
#define DEFAULT_PUBLIC_URL nullptr
#define DEFAULT_WEBHOOK_PATH "/twilio/voice"
#define DEFAULT_STREAM_PATH "/twilio/media"
#define DEFAULT_BUSY_MESSAGE "Sorry, all our agents are busy right now. Please call again later. Goodbye."
#define DEFAULT_GREETING nullptr
#define DEFAULT_MAX_FRAME_SIZE (64 * 1024)
#define DEFAULT_STALL_TIMEOUT 10000
#define DEFAULT_MAX_GAP_FILL 60000
#define DEFAULT_MEDIA_THREAD FALSE

enum {
  PROP_0,
  PROP_ADDRESS,
  PROP_PORT,
  PROP_BOUND_PORT,
  PROP_PUBLIC_URL,
  PROP_WEBHOOK_PATH,
  PROP_STREAM_PATH,
  PROP_AUTH_TOKEN,
  PROP_BUSY_MESSAGE,
  PROP_GREETING,
  PROP_MAX_FRAME_SIZE,
  PROP_STALL_TIMEOUT,
  PROP_MAX_GAP_FILL,
  PROP_MEDIA_THREAD,
  PROP_CALL_SID,
  PROP_STATS,
};

static constexpr int kFrameSamples = 160; /* 20 ms at 8 kHz */
static constexpr int kGapTolerance = 80;  /* 10 ms of jitter is not a gap */
static constexpr gint64 kSlowPushUs = 50000; /* push mode: a push this long holds up other calls */

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-mulaw, rate = (int) 8000, channels = (int) 1; "
                    "audio/x-raw, format = (string) S16LE, layout = (string) interleaved, "
                    "rate = (int) [ 8000, 48000 ], channels = (int) 1"));

namespace {

struct Settings {
  std::string address = DEFAULT_ADDRESS;
  int port = DEFAULT_PORT;
  std::string public_url;
  std::string webhook_path = DEFAULT_WEBHOOK_PATH;
  std::string stream_path = DEFAULT_STREAM_PATH;
  std::string auth_token;
  std::string busy_message = DEFAULT_BUSY_MESSAGE;
  std::string greeting;
  guint max_frame_size = DEFAULT_MAX_FRAME_SIZE;
  guint stall_timeout = DEFAULT_STALL_TIMEOUT;
  guint max_gap_fill = DEFAULT_MAX_GAP_FILL;
  bool media_thread = DEFAULT_MEDIA_THREAD;
};

/* The standalone listener and the thread that runs its main context. */
struct Standalone {
  GMainContext *context = nullptr;
  GMainLoop *loop = nullptr;
  GThread *thread = nullptr;
  std::unique_ptr<pa::Listener> listener;
  std::string reserved_call_sid; /* webhook admitted, stream not here yet */
  gint64 reserved_until = 0;
};

/* Streaming state, reset in start(). */
struct Stream {
  bool raw = false;       /* S16LE out instead of μ-law */
  int rate = 8000;
  std::unique_ptr<pa::StreamResampler> resampler;
  std::vector<int16_t> pcm, resampled;

  bool timing = false;     /* the first media frame fixed the time base */
  GstClockTime base_running = 0;
  guint64 base_sample = 0; /* Twilio position (8 kHz samples) of base_running */
  guint64 next_sample = 0; /* Twilio position of the next byte we output */
  guint64 out_samples = 0; /* samples output (at the output rate) */
  bool discont = true;
  bool filling = false;    /* inside a gap being filled */
  /* a media item waiting behind the silence that fills a gap */
  bool have_pending = false;
  pa::InboundItem pending;

  guint64 gaps = 0, gap_samples = 0, overlap_bytes = 0;
};

/* Push mode (pa_call_get_push: the server's media threads). The first
 * buffer goes out through basesrc as usual (caps, segment); after that
 * create() parks and the media thread that reads the call's socket pushes
 * what arrives itself, from the call's inbound notify (and what was queued
 * already, from a timer due at once): no streaming-thread wake-up per
 * frame. create() wakes again to
 * hand basesrc what ends the run (EOS, a failed push) or to renegotiate. */
struct Shared {
  std::mutex lock; /* below; held while the media thread pushes */
  std::condition_variable cond;      /* a parked create(): there is something to return */
  std::condition_variable idle_cond; /* the media thread stopped pushing */
  bool enabled = false;   /* this run (start..stop) is in push mode */
  bool pushed_one = false; /* basesrc pushed a buffer (the segment is out) */
  bool parked = false;    /* create() waits; the media thread pushes */
  bool flushing = false;  /* unlock() .. unlock_stop() */
  bool unpark = false;    /* downstream asked to renegotiate */
  bool pushing = false;   /* the media thread is producing and pushing */
  bool playing = false;   /* the element is PLAYING: push mode may park */
  bool slow_warned = false; /* a push took longer than kSlowPushUs (said once) */
  GstElement *top = nullptr; /* the top-level bin (or this element), found at start; not a reference */
  guint64 requests = 0;   /* inbound notifies (one per message queued) */
  GstFlowReturn flow = GST_FLOW_OK; /* for create() to return */
  std::atomic<guint64> pushed{0}; /* buffers pushed by the media thread */
};

} // namespace

struct GstTwilioSrcPrivate {
  std::mutex lock; /* settings and call */
  Settings settings;
  PaCall *call = nullptr;
  bool own_call = false;
  Standalone standalone;
  Stream stream;
  Shared shared;
};

struct _GstTwilioSrc {
  GstPushSrc parent;
  GstTwilioSrcPrivate *priv;
};

#define gst_twilio_src_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE(GstTwilioSrc, gst_twilio_src, GST_TYPE_PUSH_SRC,
                        GST_DEBUG_CATEGORY_INIT(gst_twilio_src_debug, "twiliosrc", 0, "Twilio Media Streams source"));
GST_ELEMENT_REGISTER_DEFINE(twiliosrc, "twiliosrc", GST_RANK_NONE, GST_TYPE_TWILIO_SRC);

/* ------------------------------------------------------------ properties */

static void gst_twilio_src_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
  GstTwilioSrc *self = GST_TWILIO_SRC(object);
  std::lock_guard<std::mutex> g(self->priv->lock);
  Settings &s = self->priv->settings;
  auto str = [value] {
    const char *v = g_value_get_string(value);
    return std::string(v ? v : "");
  };
  switch (prop_id) {
  case PROP_ADDRESS: s.address = str(); break;
  case PROP_PORT: s.port = g_value_get_int(value); break;
  case PROP_PUBLIC_URL: s.public_url = str(); break;
  case PROP_WEBHOOK_PATH: s.webhook_path = str(); break;
  case PROP_STREAM_PATH: s.stream_path = str(); break;
  case PROP_AUTH_TOKEN: s.auth_token = str(); break;
  case PROP_BUSY_MESSAGE: s.busy_message = str(); break;
  case PROP_GREETING: s.greeting = str(); break;
  case PROP_MAX_FRAME_SIZE: s.max_frame_size = g_value_get_uint(value); break;
  case PROP_STALL_TIMEOUT: s.stall_timeout = g_value_get_uint(value); break;
  case PROP_MAX_GAP_FILL: s.max_gap_fill = g_value_get_uint(value); break;
  case PROP_MEDIA_THREAD: s.media_thread = g_value_get_boolean(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static GstStructure *gst_twilio_src_stats(GstTwilioSrc *self);

static void gst_twilio_src_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  GstTwilioSrc *self = GST_TWILIO_SRC(object);
  if (prop_id == PROP_STATS) {
    g_value_take_boxed(value, gst_twilio_src_stats(self));
    return;
  }
  std::lock_guard<std::mutex> g(self->priv->lock);
  const Settings &s = self->priv->settings;
  auto nullable = [](const std::string &v) { return v.empty() ? nullptr : v.c_str(); };
  switch (prop_id) {
  case PROP_ADDRESS: g_value_set_string(value, s.address.c_str()); break;
  case PROP_PORT: g_value_set_int(value, s.port); break;
  case PROP_BOUND_PORT:
    g_value_set_int(value, self->priv->standalone.listener ? self->priv->standalone.listener->port() : 0);
    break;
  case PROP_PUBLIC_URL: g_value_set_string(value, nullable(s.public_url)); break;
  case PROP_WEBHOOK_PATH: g_value_set_string(value, s.webhook_path.c_str()); break;
  case PROP_STREAM_PATH: g_value_set_string(value, s.stream_path.c_str()); break;
  case PROP_BUSY_MESSAGE: g_value_set_string(value, s.busy_message.c_str()); break;
  case PROP_GREETING: g_value_set_string(value, nullable(s.greeting)); break;
  case PROP_MAX_FRAME_SIZE: g_value_set_uint(value, s.max_frame_size); break;
  case PROP_STALL_TIMEOUT: g_value_set_uint(value, s.stall_timeout); break;
  case PROP_MAX_GAP_FILL: g_value_set_uint(value, s.max_gap_fill); break;
  case PROP_MEDIA_THREAD: g_value_set_boolean(value, s.media_thread); break;
  case PROP_CALL_SID:
    if (self->priv->call) {
      std::string sid = pa_call_get_start_info(self->priv->call).call_sid;
      g_value_set_string(value, sid.empty() ? nullptr : sid.c_str());
    } else {
      g_value_set_string(value, nullptr);
    }
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static GstStructure *gst_twilio_src_stats(GstTwilioSrc *self) {
  GstTwilioSrcPrivate *p = self->priv;
  GstStructure *s;
  PaCall *call = nullptr;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (p->call)
      call = PA_CALL(g_object_ref(p->call));
  }
  if (call) {
    s = pa_call_get_stats(call);
    gst_structure_set_name(s, "twiliosrc-stats");
    g_object_unref(call);
  } else {
    s = gst_structure_new_empty("twiliosrc-stats");
  }
  GST_OBJECT_LOCK(self);
  gst_structure_set(s, "gaps-filled", G_TYPE_UINT64, p->stream.gaps, "gap-fill-ms", G_TYPE_UINT64,
                    p->stream.gap_samples / 8, "overlap-bytes-dropped", G_TYPE_UINT64, p->stream.overlap_bytes,
                    "media-thread-buffers", G_TYPE_UINT64, p->shared.pushed.load(), nullptr);
  GST_OBJECT_UNLOCK(self);
  {
    std::lock_guard<std::mutex> g(p->shared.lock);
    gst_structure_set(s, "push-mode", G_TYPE_BOOLEAN, p->shared.enabled, "parked", G_TYPE_BOOLEAN,
                      p->shared.parked, nullptr);
  }
  std::lock_guard<std::mutex> g(p->lock);
  if (p->standalone.listener) {
    GstStructure *ls = p->standalone.listener->stats();
    gst_structure_set(s, "listener", GST_TYPE_STRUCTURE, ls, nullptr);
    gst_structure_free(ls);
  }
  return s;
}

/* ------------------------------------------------------------ context */

static void gst_twilio_src_set_context(GstElement *element, GstContext *context) {
  GstTwilioSrc *self = GST_TWILIO_SRC(element);
  if (PaCall *call = pa_call_from_context(context)) {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (!self->priv->call) {
      GST_INFO_OBJECT(self, "using the call set on the pipeline (%s); not listening", pa_call_get_name(call).c_str());
      self->priv->call = call;
      self->priv->own_call = false;
    } else {
      g_object_unref(call);
    }
  }
  GST_ELEMENT_CLASS(parent_class)->set_context(element, context);
}

static gboolean gst_twilio_src_query(GstBaseSrc *src, GstQuery *query) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  switch (GST_QUERY_TYPE(query)) {
  case GST_QUERY_CONTEXT: {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (gst_twilio_answer_context_query(query, self->priv->call))
      return TRUE;
    break;
  }
  case GST_QUERY_LATENCY:
    /* a frame is 20 ms of audio that has passed when it arrives */
    gst_query_set_latency(query, TRUE, 20 * GST_MSECOND, GST_CLOCK_TIME_NONE);
    return TRUE;
  default:
    break;
  }
  return GST_BASE_SRC_CLASS(parent_class)->query(src, query);
}

/* ------------------------------------------------------------ standalone */

static gpointer listener_thread(gpointer data) {
  auto *sa = static_cast<Standalone *>(data);
  g_main_context_push_thread_default(sa->context);
  g_main_loop_run(sa->loop);
  g_main_context_pop_thread_default(sa->context);
  return nullptr;
}

static gboolean start_standalone(GstTwilioSrc *self) {
  GstTwilioSrcPrivate *p = self->priv;
  pa::ListenerConfig lc;
  pa::CallConfig cc;
  {
    std::lock_guard<std::mutex> g(p->lock);
    const Settings &s = p->settings;
    cc.max_frame_size = s.max_frame_size;
    cc.stall_timeout_ms = s.stall_timeout;
    lc.address = s.address;
    lc.port = s.port;
    lc.public_url = s.public_url;
    lc.webhook_path = s.webhook_path;
    lc.stream_path = s.stream_path;
    lc.auth_token = s.auth_token.empty() ? (g_getenv("TWILIO_AUTH_TOKEN") ? g_getenv("TWILIO_AUTH_TOKEN") : "")
                                         : s.auth_token;
    lc.busy_message = s.busy_message;
    lc.greeting = s.greeting;
    lc.call = cc;
    if (s.media_thread) {
      /* as the phone-agent server runs a call by default */
      lc.media_threads = 1;
      lc.media_wait_us = 10000;
    }
    p->call = pa_call_new(cc);
    if (s.media_thread)
      pa_call_set_push(p->call, TRUE);
    p->own_call = true;
  }
  if (lc.auth_token.empty())
    GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS, ("No Twilio auth token: webhook signatures are not checked."),
                        ("Set the auth-token property or TWILIO_AUTH_TOKEN so that only Twilio can place calls "
                         "to this pipeline."));

  pa::Listener::Hooks hooks;
  /* One call per run: admit the first caller, turn the others away. */
  hooks.admit = [self](const pa::WebhookInfo &info) {
    GstTwilioSrcPrivate *pp = self->priv;
    std::lock_guard<std::mutex> g(pp->lock);
    Standalone &sa = pp->standalone;
    if (!pp->call || pa_call_has_transport(pp->call))
      return false;
    gint64 now = g_get_monotonic_time();
    if (!sa.reserved_call_sid.empty() && sa.reserved_call_sid != info.call_sid && now < sa.reserved_until)
      return false;
    sa.reserved_call_sid = info.call_sid;
    sa.reserved_until = now + 30 * G_USEC_PER_SEC; /* Twilio connects within seconds */
    return true;
  };
  hooks.take_stream = [self]() -> PaCall * {
    GstTwilioSrcPrivate *pp = self->priv;
    std::lock_guard<std::mutex> g(pp->lock);
    if (!pp->call || pa_call_has_transport(pp->call))
      return nullptr;
    return PA_CALL(g_object_ref(pp->call));
  };

  Standalone &sa = p->standalone;
  sa.context = g_main_context_new();
  sa.loop = g_main_loop_new(sa.context, FALSE);
  sa.listener = std::make_unique<pa::Listener>(lc, hooks);
  GError *err = nullptr;
  g_main_context_push_thread_default(sa.context);
  bool ok = sa.listener->start(&err);
  g_main_context_pop_thread_default(sa.context);
  if (!ok) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ,
                      ("Could not listen for Twilio on %s port %d.", lc.address.c_str(), lc.port),
                      ("%s (is another program using the port? set the port property)", err->message));
    g_clear_error(&err);
    return FALSE;
  }
  sa.thread = g_thread_new("twiliosrc-http", listener_thread, &sa);
  int port = sa.listener->port();
  GST_INFO_OBJECT(self, "listening on %s:%d, webhook %s, stream %s", lc.address.c_str(), port,
                  lc.webhook_path.c_str(), lc.stream_path.c_str());
  gst_element_post_message(GST_ELEMENT(self),
      gst_message_new_element(GST_OBJECT(self),
          gst_structure_new("twilio-listening", "port", G_TYPE_INT, port, "webhook-path", G_TYPE_STRING,
                            lc.webhook_path.c_str(), "stream-path", G_TYPE_STRING, lc.stream_path.c_str(),
                            "public-url", G_TYPE_STRING, lc.public_url.c_str(), nullptr)));
  /* let twiliosink (and anyone else in the pipeline) find the call */
  GstContext *ctx = pa_call_context_new(p->call);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_have_context(GST_OBJECT(self), ctx));
  return TRUE;
}

static void stop_standalone(GstTwilioSrc *self) {
  Standalone &sa = self->priv->standalone;
  if (sa.thread) {
    g_main_loop_quit(sa.loop);
    g_thread_join(sa.thread);
    sa.thread = nullptr;
  }
  if (sa.listener) {
    g_main_context_push_thread_default(sa.context);
    sa.listener.reset();
    /* let libsoup finish closing its sockets on this context */
    while (g_main_context_iteration(sa.context, FALSE)) {
    }
    g_main_context_pop_thread_default(sa.context);
  }
  if (sa.loop) {
    g_main_loop_unref(sa.loop);
    sa.loop = nullptr;
  }
  if (sa.context) {
    g_main_context_unref(sa.context);
    sa.context = nullptr;
  }
  sa.reserved_call_sid.clear();
}

static GstStateChangeReturn gst_twilio_src_change_state(GstElement *element, GstStateChange transition) {
  GstTwilioSrc *self = GST_TWILIO_SRC(element);
  GstTwilioSrcPrivate *p = self->priv;
  if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
    bool have_call;
    {
      std::lock_guard<std::mutex> g(p->lock);
      have_call = p->call != nullptr;
    }
    if (!have_call && !start_standalone(self)) {
      stop_standalone(self);
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  if (transition == GST_STATE_CHANGE_PAUSED_TO_PLAYING || transition == GST_STATE_CHANGE_PLAYING_TO_PAUSED) {
    /* push mode pushes only in PLAYING; in PAUSED create() waits for
     * input as in pull mode and basesrc holds what it returns until
     * PLAYING (a live source's usual way) */
    Shared &sh = p->shared;
    std::lock_guard<std::mutex> g(sh.lock);
    sh.playing = transition == GST_STATE_CHANGE_PAUSED_TO_PLAYING;
    if (!sh.playing && sh.parked) {
      sh.parked = false;
      sh.cond.notify_all();
    }
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    PaCall *call = nullptr;
    bool own;
    {
      std::lock_guard<std::mutex> g(p->lock);
      own = p->own_call;
      if (own) {
        call = p->call;
        p->call = nullptr;
      }
    }
    if (call) {
      if (pa_call_has_transport(call) && !pa_call_is_ended(call))
        pa_call_close(call, pa::ws::kNormal, "pipeline stopped");
    }
    stop_standalone(self);
    if (call)
      g_object_unref(call);
  }
  return ret;
}

/* ------------------------------------------------------------ streaming */

static gboolean gst_twilio_src_set_caps(GstBaseSrc *src, GstCaps *caps) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  Stream &st = self->priv->stream;
  GstStructure *s = gst_caps_get_structure(caps, 0);
  st.raw = gst_structure_has_name(s, "audio/x-raw");
  st.rate = 8000;
  if (st.raw && !gst_structure_get_int(s, "rate", &st.rate))
    return FALSE;
  st.resampler.reset(st.raw && st.rate != 8000 ? new pa::StreamResampler(8000, st.rate) : nullptr);
  GST_INFO_OBJECT(self, "output %s at %d Hz", st.raw ? "S16LE" : "mu-law", st.rate);
  return TRUE;
}

static GstCaps *gst_twilio_src_fixate(GstBaseSrc *src, GstCaps *caps) {
  caps = gst_caps_truncate(caps); /* first structure: μ-law when downstream takes it */
  caps = gst_caps_make_writable(caps);
  GstStructure *s = gst_caps_get_structure(caps, 0);
  gst_structure_fixate_field_nearest_int(s, "rate", 8000);
  gst_structure_fixate_field_nearest_int(s, "channels", 1);
  return GST_BASE_SRC_CLASS(parent_class)->fixate(src, caps);
}

static void shared_drain(GstTwilioSrc *self);

static gboolean gst_twilio_src_start(GstBaseSrc *src) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  GST_OBJECT_LOCK(self);
  Stream &st = self->priv->stream;
  bool raw = st.raw;
  int rate = st.rate;
  st = Stream();
  st.raw = raw;
  st.rate = rate;
  GST_OBJECT_UNLOCK(self);
  std::lock_guard<std::mutex> g(self->priv->lock);
  if (!self->priv->call) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No call to read from."),
                      ("twiliosrc has neither its own listener nor a phoneagent.call context"));
    return FALSE;
  }
  PaCall *call = self->priv->call;
  bool push = pa_call_get_push(call);
  {
    Shared &sh = self->priv->shared;
    std::lock_guard<std::mutex> s(sh.lock);
    sh.enabled = push;
    sh.pushed_one = sh.parked = sh.flushing = sh.unpark = false;
    GstObject *top = GST_OBJECT(self);
    while (GstObject *parent = GST_OBJECT_PARENT(top))
      top = parent;
    sh.top = GST_IS_ELEMENT(top) ? GST_ELEMENT(top) : nullptr;
    sh.flow = GST_FLOW_OK;
  }
  if (push) {
    GST_DEBUG_OBJECT(self, "push mode: the call's media thread pushes");
    pa_call_set_inbound_notify(call, [self] { shared_drain(self); });
  }
  pa_call_set_source_flushing(call, FALSE);
  return TRUE;
}

/* Push mode: stops the media thread pushing (waits for a push in
 * progress) and wakes a parked create(). */
static void shared_set_flushing(GstTwilioSrc *self, bool flushing) {
  Shared &sh = self->priv->shared;
  std::lock_guard<std::mutex> g(sh.lock);
  sh.flushing = flushing;
  if (flushing) {
    sh.parked = false;
    sh.cond.notify_all();
  }
}

/* Push mode: waits until the media thread is done pushing (the pad is
 * deactivated by then, so a push in progress returns at once). */
static void shared_wait_idle(GstTwilioSrc *self) {
  Shared &sh = self->priv->shared;
  std::unique_lock<std::mutex> g(sh.lock);
  sh.idle_cond.wait(g, [&sh] { return !sh.pushing; });
}

static gboolean gst_twilio_src_stop(GstBaseSrc *src) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  shared_set_flushing(self, true);
  PaCall *call = nullptr;
  {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (self->priv->call)
      call = PA_CALL(g_object_ref(self->priv->call));
  }
  if (call) {
    pa_call_set_inbound_notify(call, nullptr); /* waits for a notify in progress */
    pa_call_set_source_flushing(call, TRUE);
    g_object_unref(call);
  }
  shared_wait_idle(self);
  return TRUE;
}

static gboolean gst_twilio_src_unlock(GstBaseSrc *src) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  shared_set_flushing(self, true);
  std::lock_guard<std::mutex> g(self->priv->lock);
  if (self->priv->call)
    pa_call_set_source_flushing(self->priv->call, TRUE);
  return TRUE;
}

static gboolean gst_twilio_src_unlock_stop(GstBaseSrc *src) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  shared_set_flushing(self, false);
  std::lock_guard<std::mutex> g(self->priv->lock);
  if (self->priv->call)
    pa_call_set_source_flushing(self->priv->call, FALSE);
  return TRUE;
}

static void post_call_started(GstTwilioSrc *self, const pa::twilio::StartInfo &info) {
  std::string from, to, tracks;
  GstStructure *params = gst_structure_new_empty("custom-parameters");
  for (const auto &[k, v] : info.custom_parameters) {
    if (k == "from")
      from = v;
    else if (k == "to")
      to = v;
    /* GstStructure field names must be valid: skip names it refuses */
    if (!k.empty() && g_ascii_isalpha(k[0]))
      gst_structure_set(params, k.c_str(), G_TYPE_STRING, v.c_str(), nullptr);
  }
  for (const auto &t : info.tracks)
    tracks += (tracks.empty() ? "" : ",") + t;
  GstStructure *s = gst_structure_new("twilio-call-started", "call-sid", G_TYPE_STRING, info.call_sid.c_str(),
      "stream-sid", G_TYPE_STRING, info.stream_sid.c_str(), "account-sid", G_TYPE_STRING, info.account_sid.c_str(),
      "from", G_TYPE_STRING, from.c_str(), "to", G_TYPE_STRING, to.c_str(), "tracks", G_TYPE_STRING, tracks.c_str(),
      "custom-parameters", GST_TYPE_STRUCTURE, params, "running-time", G_TYPE_UINT64,
      gst_twilio_running_time(GST_ELEMENT(self)), nullptr);
  gst_structure_free(params);
  GST_INFO_OBJECT(self, "call %s started (stream %s, from %s)", info.call_sid.c_str(), info.stream_sid.c_str(),
                  from.c_str());
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

/* Tells downstream which call this is (serialized, before the call's audio). */
static void push_call_info(GstTwilioSrc *self, const pa::twilio::StartInfo &info) {
  std::string from, to;
  for (const auto &[k, v] : info.custom_parameters) {
    if (k == "from")
      from = v;
    else if (k == "to")
      to = v;
  }
  gst_pad_push_event(GST_BASE_SRC_PAD(self),
      gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
          gst_structure_new("phoneagent/call-info", "call-sid", G_TYPE_STRING, info.call_sid.c_str(), "stream-sid",
                            G_TYPE_STRING, info.stream_sid.c_str(), "account-sid", G_TYPE_STRING,
                            info.account_sid.c_str(), "from", G_TYPE_STRING, from.c_str(), "to", G_TYPE_STRING,
                            to.c_str(), nullptr)));
}

/* Running time of Twilio position @sample (8 kHz samples). */
static GstClockTime position_time(const Stream &st, guint64 sample) {
  return st.base_running + gst_util_uint64_scale(sample - st.base_sample, GST_SECOND, 8000);
}

/* Wraps @n μ-law bytes at Twilio position st.next_sample in a buffer of the
 * negotiated format. */
static GstBuffer *make_buffer(GstTwilioSrc *self, const guint8 *data, size_t n, bool gap) {
  Stream &st = self->priv->stream;
  GstBuffer *buf;
  GstClockTime pts, duration;
  if (!st.raw) {
    buf = gst_buffer_new_memdup(data, n);
    pts = position_time(st, st.next_sample);
    duration = gst_util_uint64_scale(n, GST_SECOND, 8000);
    GST_BUFFER_OFFSET(buf) = st.out_samples;
    st.out_samples += n;
  } else {
    st.pcm.resize(n);
    pa::mulaw_decode_block(data, st.pcm.data(), n);
    st.resampled.clear();
    if (st.resampler)
      st.resampler->process(st.pcm.data(), n, st.resampled);
    else
      st.resampled = st.pcm;
    buf = gst_buffer_new_memdup(st.resampled.data(), st.resampled.size() * 2);
    pts = st.base_running + gst_util_uint64_scale(st.out_samples, GST_SECOND, st.rate);
    GST_BUFFER_OFFSET(buf) = st.out_samples;
    st.out_samples += st.resampled.size();
    duration = st.base_running + gst_util_uint64_scale(st.out_samples, GST_SECOND, st.rate) - pts;
  }
  GST_BUFFER_OFFSET_END(buf) = st.out_samples;
  GST_BUFFER_PTS(buf) = pts;
  GST_BUFFER_DURATION(buf) = duration;
  if (gap)
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_GAP);
  if (st.discont) {
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
    st.discont = false;
  }
  st.next_sample += n;
  return buf;
}

/* The next buffer (or what ends the stream) from what Twilio sent: waits up
 * to @timeout_us (-1: no limit) for it. With @timeout_us 0 and nothing
 * queued, sets *@empty (when given) and returns GST_FLOW_OK without a
 * buffer. Called by one thread at a time: create(), or the media thread
 * while create() is parked. */
static GstFlowReturn produce(GstTwilioSrc *self, PaCall *call, GstBuffer **outbuf, gint64 timeout_us,
                             bool *empty = nullptr, bool *drained = nullptr) {
  GstTwilioSrcPrivate *p = self->priv;
  guint max_gap;
  {
    std::lock_guard<std::mutex> g(p->lock);
    max_gap = p->settings.max_gap_fill;
  }
  Stream &st = p->stream;

  for (;;) {
    pa::InboundItem item;
    size_t left = 1; /* items the call still has queued (unknown: some) */
    if (st.have_pending) {
      item = std::move(st.pending);
      st.have_pending = false;
    } else if (!pa_call_pop_inbound(call, item, timeout_us, &left)) {
      if (timeout_us >= 0 && empty) {
        *empty = true;
        return GST_FLOW_OK;
      }
      return GST_FLOW_FLUSHING;
    }
    switch (item.kind) {
    case pa::InboundItem::Kind::Start:
      post_call_started(self, *item.start);
      push_call_info(self, *item.start);
      continue;
    case pa::InboundItem::Kind::Dtmf: {
      GstClockTime rt = st.timing ? position_time(st, st.next_sample) : gst_twilio_running_time(GST_ELEMENT(self));
      GST_INFO_OBJECT(self, "dtmf %s", item.digit.c_str());
      gst_element_post_message(GST_ELEMENT(self),
          gst_message_new_element(GST_OBJECT(self),
              gst_structure_new("twilio-dtmf", "digit", G_TYPE_STRING, item.digit.c_str(), "running-time",
                                G_TYPE_UINT64, rt, nullptr)));
      gst_pad_push_event(GST_BASE_SRC_PAD(self),
          gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
              gst_structure_new("phoneagent/dtmf", "digit", G_TYPE_STRING, item.digit.c_str(), nullptr)));
      continue;
    }
    case pa::InboundItem::Kind::Stop:
    case pa::InboundItem::Kind::Closed: {
      GST_INFO_OBJECT(self, "call ended: %s", item.reason.c_str());
      std::string sid = pa_call_get_start_info(call).call_sid;
      gst_element_post_message(GST_ELEMENT(self),
          gst_message_new_element(GST_OBJECT(self),
              gst_structure_new("twilio-call-stopped", "reason", G_TYPE_STRING, item.reason.c_str(), "call-sid",
                                G_TYPE_STRING, sid.c_str(), "running-time", G_TYPE_UINT64,
                                gst_twilio_running_time(GST_ELEMENT(self)), nullptr)));
      return GST_FLOW_EOS;
    }
    case pa::InboundItem::Kind::Media:
      break;
    }

    if (item.payload.empty() || item.timestamp_ms < 0)
      continue;
    guint64 sample = static_cast<guint64>(item.timestamp_ms) * 8;
    if (!st.timing) {
      /* time base: this frame started 20 ms before it arrived */
      GstClockTime now = gst_twilio_running_time(GST_ELEMENT(self));
      GstClockTime dur = gst_util_uint64_scale(item.payload.size(), GST_SECOND, 8000);
      st.base_running = (GST_CLOCK_TIME_IS_VALID(now) && now > dur) ? now - dur : 0;
      st.base_sample = sample;
      st.next_sample = sample;
      st.timing = true;
    }
    if (sample > st.next_sample + kGapTolerance) {
      guint64 gap = sample - st.next_sample;
      if (gap > static_cast<guint64>(max_gap) * 8) {
        /* too long to fill: jump, and say so */
        GST_WARNING_OBJECT(self, "media timestamps jumped by %" G_GUINT64_FORMAT " ms; not filling", gap / 8);
        st.base_running = position_time(st, st.next_sample);
        st.base_sample = sample;
        st.next_sample = sample;
        st.discont = true;
        if (st.resampler)
          st.resampler->reset();
      } else {
        /* fill with silence, 20 ms at a time, then the frame itself */
        size_t n = std::min<guint64>(gap, kFrameSamples);
        static const std::vector<guint8> silence(kFrameSamples, pa::kMulawSilence);
        GST_OBJECT_LOCK(self);
        if (!st.filling) {
          st.gaps++;
          st.filling = true;
        }
        st.gap_samples += n;
        GST_OBJECT_UNLOCK(self);
        st.pending = std::move(item);
        st.have_pending = true;
        *outbuf = make_buffer(self, silence.data(), n, true);
        return GST_FLOW_OK;
      }
    }
    st.filling = false;
    size_t skip = 0;
    if (sample + kGapTolerance < st.next_sample) {
      guint64 overlap = st.next_sample - sample;
      if (overlap >= item.payload.size()) {
        GST_OBJECT_LOCK(self);
        st.overlap_bytes += item.payload.size();
        GST_OBJECT_UNLOCK(self);
        continue; /* a duplicate or a late frame we already covered */
      }
      skip = overlap;
      GST_OBJECT_LOCK(self);
      st.overlap_bytes += overlap;
      GST_OBJECT_UNLOCK(self);
    }
    *outbuf = make_buffer(self, item.payload.data() + skip, item.payload.size() - skip, false);
    if (drained)
      *drained = left == 0;
    return GST_FLOW_OK;
  }
}

/* Push mode: FALSE once the pipeline is on its way out of PLAYING (its
 * target state, set before any element changes): a sink may go to PAUSED
 * before this element does, and a push would then wait in its preroll on
 * the media thread. basesrc's streaming thread takes over until PLAYING
 * again (a read without the lock: a hint, checked before every push). */
static bool pipeline_wants_playing(GstTwilioSrc *self) {
  GstElement *top = self->priv->shared.top;
  return !top || GST_STATE_TARGET(top) == GST_STATE_PLAYING;
}

/* Push mode: the media thread pushes what the call queued while create()
 * is parked (runs from the call's inbound notify, on the thread that read
 * the socket). The lock is not held while pushing: like basesrc's
 * streaming thread, a push may wait downstream (a sink going to PAUSED)
 * while unlock() must not. */
static void shared_drain(GstTwilioSrc *self) {
  GstTwilioSrcPrivate *p = self->priv;
  Shared &sh = p->shared;
  GstPad *pad = GST_BASE_SRC_PAD(self);
  std::unique_lock<std::mutex> g(sh.lock);
  sh.requests++;
  if (sh.pushing)
    return; /* the thread pushing takes this item too */
  sh.pushing = true;
  for (;;) {
    guint64 seen = sh.requests;
    GstFlowReturn ret = GST_FLOW_OK;
    while (sh.parked && !sh.flushing) {
      if (gst_pad_needs_reconfigure(pad) || !pipeline_wants_playing(self)) {
        /* basesrc renegotiates before create() returns the next buffer;
         * or the pipeline leaves PLAYING: its streaming thread takes over */
        sh.unpark = true;
        sh.parked = false;
        break;
      }
      g.unlock();
      GstBuffer *buf = nullptr;
      bool empty = false, drained = false;
      ret = produce(self, p->call, &buf, 0, &empty, &drained);
      if (!empty && ret == GST_FLOW_OK) {
        gint64 t0 = g_get_monotonic_time();
        ret = gst_pad_push(pad, buf);
        gint64 took = g_get_monotonic_time() - t0;
        if (G_UNLIKELY(took > kSlowPushUs) && !sh.slow_warned) {
          /* read without the lock: a warning at most one frame late */
          sh.slow_warned = true;
          GST_ELEMENT_WARNING(self, CORE, THREAD, ("Audio of this call waited %" G_GINT64_FORMAT " ms downstream "
              "of twiliosrc on a media thread shared with other calls.", took / 1000),
              ("an element after twiliosrc blocks, which holds up every call on the same media thread: put a "
               "queue after twiliosrc, or run the server with media-threads=0"));
        }
      }
      g.lock();
      if (empty)
        break;
      if (ret != GST_FLOW_OK) {
        /* create() hands it to basesrc, which ends the task as for its
         * own push (EOS downstream, an error message for a fatal flow) */
        GST_DEBUG_OBJECT(self, "push mode ends: %s", gst_flow_get_name(ret));
        sh.flow = ret;
        sh.parked = false;
        break;
      }
      sh.pushed++;
      if (drained)
        break; /* the call had nothing more: no second look (what it queues since notifies: requests) */
    }
    if (sh.requests == seen || !sh.parked || sh.flushing)
      break;
  }
  sh.pushing = false;
  sh.idle_cond.notify_all();
  if (sh.flow != GST_FLOW_OK || sh.unpark)
    sh.cond.notify_one();
}

/* Push mode: has the call's media thread push what is queued now, as if
 * a frame had just arrived (a timer due at once, holding a reference to
 * the element; after a stop it finds nothing to do). Shared lock held. */
static void kick_drain_locked(GstTwilioSrc *self, const std::shared_ptr<pa::MediaThread> &mt) {
  std::shared_ptr<GstTwilioSrc> ref(GST_TWILIO_SRC(gst_object_ref(self)),
                                    [](GstTwilioSrc *s) { gst_object_unref(s); });
  mt->at(g_get_monotonic_time(), [ref] { shared_drain(ref.get()); });
}

static GstFlowReturn gst_twilio_src_create(GstPushSrc *src, GstBuffer **outbuf) {
  GstTwilioSrc *self = GST_TWILIO_SRC(src);
  GstTwilioSrcPrivate *p = self->priv;
  PaCall *call;
  {
    std::lock_guard<std::mutex> g(p->lock);
    call = p->call ? PA_CALL(g_object_ref(p->call)) : nullptr;
  }
  if (!call)
    return GST_FLOW_ERROR;
  std::unique_ptr<PaCall, decltype(&g_object_unref)> call_ref(call, g_object_unref);
  Shared &sh = p->shared;
  std::unique_lock<std::mutex> g(sh.lock);
  if (sh.enabled) {
    for (;;) {
      if (sh.flushing)
        return GST_FLOW_FLUSHING;
      if (sh.pushing) {
        sh.idle_cond.wait(g); /* the media thread is still at it */
        continue;
      }
      if (sh.flow != GST_FLOW_OK) {
        GstFlowReturn ret = sh.flow;
        sh.flow = GST_FLOW_OK;
        return ret;
      }
      if (sh.unpark) {
        sh.unpark = false;
        break;
      }
      if (!sh.parked) {
        if (!sh.pushed_one || !sh.playing || !pipeline_wants_playing(self)) {
          GST_LOG_OBJECT(self, "not parking: %s", !sh.pushed_one ? "first buffer" : "not PLAYING");
          break; /* the first buffer goes through basesrc (caps, segment); in PAUSED, wait here */
        }
        std::shared_ptr<pa::MediaThread> mt = pa_call_get_media_thread(call);
        if (!mt) {
          /* nobody to hand a backlog to: park once the queue is empty */
          bool empty = false;
          GstFlowReturn ret = produce(self, call, outbuf, 0, &empty);
          if (!empty) {
            GST_LOG_OBJECT(self, "not parking: audio is queued");
            return ret;
          }
        } else {
          /* park now, and have the media thread push what is queued
           * already (audio that came while the pipeline started): this
           * thread taking it frame by frame, one wake-up each, could
           * stay behind for good on a busy machine */
          kick_drain_locked(self, mt);
        }
        GST_DEBUG_OBJECT(self, "parked: the media thread pushes");
        sh.parked = true; /* from now on the media thread pushes */
      }
      sh.cond.wait(g);
    }
  }
  g.unlock();
  GstFlowReturn ret = produce(self, call, outbuf, -1);
  if (ret == GST_FLOW_OK) {
    g.lock();
    sh.pushed_one = sh.enabled;
  }
  return ret;
}

/* ------------------------------------------------------------ class */

static void gst_twilio_src_finalize(GObject *object) {
  GstTwilioSrc *self = GST_TWILIO_SRC(object);
  stop_standalone(self);
  if (self->priv->call)
    g_object_unref(self->priv->call);
  delete self->priv;
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_twilio_src_init(GstTwilioSrc *self) {
  self->priv = new GstTwilioSrcPrivate();
  gst_base_src_set_live(GST_BASE_SRC(self), TRUE);
  gst_base_src_set_format(GST_BASE_SRC(self), GST_FORMAT_TIME);
  gst_base_src_set_do_timestamp(GST_BASE_SRC(self), FALSE);
}

static void gst_twilio_src_class_init(GstTwilioSrcClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS(klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS(klass);

  gobject_class->set_property = gst_twilio_src_set_property;
  gobject_class->get_property = gst_twilio_src_get_property;
  gobject_class->finalize = gst_twilio_src_finalize;

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  const auto ro = static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_property(gobject_class, PROP_ADDRESS,
      g_param_spec_string("address", "Address", "IP address to listen on for Twilio's webhook and stream",
                          DEFAULT_ADDRESS, rw));
  g_object_class_install_property(gobject_class, PROP_PORT,
      g_param_spec_int("port", "Port", "TCP port to listen on (0 picks a free port; see bound-port)", 0, 65535,
                       DEFAULT_PORT, rw));
  g_object_class_install_property(gobject_class, PROP_BOUND_PORT,
      g_param_spec_int("bound-port", "Bound port", "The port actually listened on (from READY), 0 when not listening",
                       0, 65535, 0, ro));
  g_object_class_install_property(gobject_class, PROP_PUBLIC_URL,
      g_param_spec_string("public-url", "Public URL",
                          "The URL Twilio reaches this host at, e.g. https://agent.example.com (used for the stream "
                          "URL in TwiML and for signature checks; empty: from the request's Host header)",
                          DEFAULT_PUBLIC_URL, rw));
  g_object_class_install_property(gobject_class, PROP_WEBHOOK_PATH,
      g_param_spec_string("webhook-path", "Webhook path", "HTTP path of the voice webhook (POST)",
                          DEFAULT_WEBHOOK_PATH, rw));
  g_object_class_install_property(gobject_class, PROP_STREAM_PATH,
      g_param_spec_string("stream-path", "Stream path", "HTTP path of the Media Streams WebSocket",
                          DEFAULT_STREAM_PATH, rw));
  g_object_class_install_property(gobject_class, PROP_AUTH_TOKEN,
      g_param_spec_string("auth-token", "Auth token",
                          "Twilio auth token for X-Twilio-Signature checks (default: $TWILIO_AUTH_TOKEN; write-only, "
                          "never logged)",
                          nullptr,
                          static_cast<GParamFlags>(G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS |
                                                   GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(gobject_class, PROP_BUSY_MESSAGE,
      g_param_spec_string("busy-message", "Busy message",
                          "What a caller hears (TwiML <Say>, then hang-up) while this pipeline already has a call",
                          DEFAULT_BUSY_MESSAGE, rw));
  g_object_class_install_property(gobject_class, PROP_GREETING,
      g_param_spec_string("greeting", "Greeting",
                          "Optional text Twilio speaks (<Say>) before connecting the stream", DEFAULT_GREETING, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_FRAME_SIZE,
      g_param_spec_uint("max-frame-size", "Max frame size",
                        "Inbound WebSocket frames larger than this (bytes) are dropped with a warning", 1024,
                        16 * 1024 * 1024, DEFAULT_MAX_FRAME_SIZE, rw));
  g_object_class_install_property(gobject_class, PROP_STALL_TIMEOUT,
      g_param_spec_uint("stall-timeout", "Stall timeout",
                        "Close the call when Twilio has acknowledged no audio (marks) for this long (ms) while audio "
                        "is outstanding: the peer stopped reading",
                        1000, G_MAXUINT, DEFAULT_STALL_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_GAP_FILL,
      g_param_spec_uint("max-gap-fill", "Max gap fill",
                        "Longest jump in media timestamps (ms) filled with silence; longer jumps are passed on as a "
                        "discontinuity",
                        0, G_MAXUINT, DEFAULT_MAX_GAP_FILL, rw));
  g_object_class_install_property(gobject_class, PROP_MEDIA_THREAD,
      g_param_spec_boolean("media-thread", "Media thread",
                           "Standalone: read the call's socket on a media thread that pushes the audio downstream "
                           "itself, as the phone-agent server runs every call by default (media-threads, "
                           "media-wait 10 ms), instead of on this element's streaming thread. To try a template "
                           "the way the server will run it",
                           DEFAULT_MEDIA_THREAD, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                                          GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(gobject_class, PROP_CALL_SID,
      g_param_spec_string("call-sid", "Call SID", "The current call's CallSid, once the stream started", nullptr, ro));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Counters: messages and media received, and every kind of bad input ignored "
                         "(malformed-json, binary-frames, oversized-frames, media-before-start, wrong-stream-sid, "
                         "invalid-base64, unknown-events, missing-fields), gaps filled, listener counters",
                         GST_TYPE_STRUCTURE, ro));

  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Twilio Media Streams source", "Source/Audio/Network",
                                        "Receives a phone caller's audio from a Twilio bidirectional Media Stream, "
                                        "answering the voice webhook itself when standalone",
                                        "gst-phone-agent contributors");

  element_class->change_state = GST_DEBUG_FUNCPTR(gst_twilio_src_change_state);
  element_class->set_context = GST_DEBUG_FUNCPTR(gst_twilio_src_set_context);
  basesrc_class->start = GST_DEBUG_FUNCPTR(gst_twilio_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR(gst_twilio_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR(gst_twilio_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR(gst_twilio_src_unlock_stop);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR(gst_twilio_src_set_caps);
  basesrc_class->fixate = GST_DEBUG_FUNCPTR(gst_twilio_src_fixate);
  basesrc_class->query = GST_DEBUG_FUNCPTR(gst_twilio_src_query);
  pushsrc_class->create = GST_DEBUG_FUNCPTR(gst_twilio_src_create);
}
