/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-realtimemodel
 * @title: realtimemodel
 * @see_also: twiliosrc, twiliosink, bargein
 *
 * realtimemodel connects a phone caller to a realtime speech model that
 * speaks the OpenAI Realtime WebSocket protocol: OpenAI and Azure (GA event
 * names), and compatible servers that still speak the beta names (speaches,
 * xAI-style servers). The sink pad takes the caller's audio, the source pad
 * gives the agent's audio. With no #GstRealtimeModel:location it runs the
 * project's embedded local model engine in-process (when built with it), so a
 * pipeline works offline.
 *
 * The model session opens when the element goes to PAUSED, before the caller
 * speaks. Caller audio never waits for the connection: what arrives before the
 * session is configured is kept (up to #GstRealtimeModel:max-pending-input-ms)
 * and sent once it is. With the model's turn detection, buffers are gathered
 * into larger `input_audio_buffer.append`s where that delays nothing the
 * model decides on. While it has the caller silent (from the session's start
 * and each turn's commit to the next `speech_started`), buffers with no sound
 * in them (peak under -50 dBFS) go in appends of
 * #GstRealtimeModel:idle-append-ms and one with sound goes at once with them;
 * in the caller's turn, buffers with sound go in appends of
 * #GstRealtimeModel:turn-append-ms and one as quiet as the line between words
 * goes at once with them. So neither the start nor the end of a turn waits.
 * Without turn detection each buffer is an append.
 *
 * ## Audio
 *
 * When the peers accept `audio/x-mulaw, rate=8000, channels=1` (twiliosrc and
 * twiliosink do), the session uses G.711 μ-law both ways and the bytes are
 * relayed untouched: no decoding, no resampling. Otherwise the session uses
 * PCM16 at 24 kHz (`audio/x-raw, format=S16LE, rate=24000, channels=1`), the
 * only PCM rate the GA protocol accepts. Input and output formats are chosen
 * separately from what each peer accepts.
 *
 * The model's audio is pushed downstream as soon as it arrives, from the
 * element's own source-pad task, in 20 ms buffers (the last one of an item is
 * padded with silence); the frames of one model delta go as one buffer list
 * (up to 100 ms), a response's first frame alone. The queue between the model
 * socket and that task is bounded by #GstRealtimeModel:max-queue-ms; the
 * socket's thread never waits for downstream.
 *
 * ## Threads
 *
 * The model socket is read by one thread shared by every realtimemodel in
 * the process, except under the phone-agent server: there the element finds
 * its call in the `phoneagent.call` #GstContext the server sets on the
 * pipeline, and the media thread that reads the caller's socket reads the
 * model's too, so a model event wakes no other thread. That thread also
 * pushes the model's audio itself when the element is linked straight to
 * twiliosink (which never waits there, and sends what its lead holds back
 * from timers on the same thread) and the pipeline is PLAYING: the
 * source-pad task then sleeps, and the agent's audio wakes no thread at all
 * (stat `output-pushed-on-media-thread-ms`). Item starts while twiliosink
 * still holds audio, forwarded events and EOS go through the task.
 *
 * ## Custom events and queries
 *
 * Sent downstream:
 *
 * - `phoneagent/item-start` (serialized, GST_EVENT_CUSTOM_DOWNSTREAM), before
 *   the first audio of every response item: `item-id` (gchararray),
 *   `response-id` (gchararray).
 * - `phoneagent/clear` (GST_EVENT_CUSTOM_DOWNSTREAM_OOB) on a barge-in:
 *   `reason` (gchararray, "barge-in").
 * - `phoneagent/heard` (GST_QUERY_CUSTOM), asked of downstream (twiliosink)
 *   on a barge-in and while a goodbye or transfer sentence plays: in
 *   `item-id`; out `heard-ms` (or else `played-ms`), `sent-ms` (guint64),
 *   `known` (gboolean);
 *   and, pushing from a media thread, before an item start: out `held-ms`
 *   (guint64).
 *
 * Received on the sink pad:
 *
 * - `phoneagent/barge-in` (GST_EVENT_CUSTOM_DOWNSTREAM_OOB, e.g. from
 *   bargein): the caller started talking over the agent. Fields:
 *   `onset-running-time` (guint64, when the caller's speech began),
 *   `decision-running-time` (guint64, when it was recognised as a barge-in),
 *   `source` (gchararray, who decided). Consumed.
 * - `phoneagent/pause` and `phoneagent/resume` (GST_EVENT_CUSTOM_DOWNSTREAM_OOB):
 *   forwarded unchanged out of the source pad.
 * - `phoneagent/call-info` (serialized, from twiliosrc): `call-sid`,
 *   `stream-sid`, `account-sid`, `from`, `to` (gchararray). The CallSid and
 *   AccountSid are used for transfers. Forwarded downstream.
 * - `phoneagent/dtmf` (serialized, from twiliosrc): `digit`. Told to the
 *   model as a user message when #GstRealtimeModel:dtmf-to-model is set.
 *   Forwarded downstream.
 *
 * ## Barge-in
 *
 * On the model's `input_audio_buffer.speech_started` while agent audio is
 * queued, playing or being generated, or on a `phoneagent/barge-in` event:
 * `response.cancel` if a response is in progress, `phoneagent/clear`
 * downstream, the queued agent audio dropped, and for every response item the
 * caller has not fully heard a `conversation.item.truncate` with
 * `audio_end_ms` = min(heard-ms reported by `phoneagent/heard`, audio
 * generated for the item); items that never reached the sink are truncated at
 * 0. Late audio deltas of the cancelled response are dropped. With
 * #GstRealtimeModel:interrupt-response off, `speech_started` does not
 * interrupt (the server does not cancel either): only `phoneagent/barge-in`
 * does, so `bargein ! realtimemodel interrupt-response=false` interrupts on
 * bargein's local VAD alone.
 *
 * ## Function calls
 *
 * A function call the model makes is posted as JSON to
 * #GstRealtimeModel:tool-url (`{"name","call_id","arguments","call_sid",
 * "stream_sid","session_id"}`; the response body is the result) or, without a
 * tool URL, emitted as #GstRealtimeModel::function-call for the application to
 * answer with #GstRealtimeModel::function-result. The result (or an error
 * JSON on a timeout, an HTTP error or when nobody handles the call) goes back
 * as `function_call_output` after the response is done, followed by
 * `response.create`. Every call_id is answered once.
 *
 * Two tools are built in (#GstRealtimeModel:builtin-tools): `end_call` and,
 * when #GstRealtimeModel:transfer-number is set, `transfer_to_human`. They
 * act only once the caller has heard the goodbye or transfer sentence (the
 * element asks twiliosink with `phoneagent/heard`), and not at all if the
 * caller interrupts it. Ending pushes EOS downstream (twiliosink closes the
 * stream after playback and Twilio hangs up); transferring redirects the live
 * call with Twilio's REST API (`<Say>` + `<Dial>`).
 *
 * ## Faults
 *
 * - A rejected API key (HTTP 401/403 on the upgrade, or an `invalid_api_key`
 *   error event) is a GST_RESOURCE_ERROR_NOT_AUTHORIZED element error whose
 *   details carry `provider-code` and `http-status`.
 * - When the model socket drops or the session expires (`session_expired`,
 *   the 60 min cap), the element opens a new session, re-sends the
 *   configuration and a summary of the conversation so far, and goes on;
 *   caller audio meanwhile is kept (bounded). After
 *   #GstRealtimeModel:reconnect-attempts failures it gives up: an error if no
 *   session ever worked, else a warning and EOS downstream, which ends the call
 *   cleanly after the audio already queued.
 * - EOS on the sink pad (the caller hung up) or a state change to READY/NULL
 *   closes the model socket at once.
 * - Malformed or unknown model events, and audio of a cancelled response, are
 *   logged, counted in #GstRealtimeModel:stats and ignored.
 *
 * ## Element messages
 *
 * Every message has a `running-time` (guint64) field.
 *
 * - `realtime-session`: `state` (connecting, connected, configured,
 *   reconnecting, closed, failed), `dialect` ("ga"/"beta"), `session-id`,
 *   `model`, `url` (without query), `attempt` (guint), `reason`.
 * - `realtime-speech-started` / `realtime-speech-stopped`: `item-id`,
 *   `audio-start-ms` / `audio-end-ms` (gint64, offsets in the session's input).
 * - `realtime-transcript`: `role` ("user"/"assistant"), `item-id`,
 *   `response-id`, `text`, `final` (gboolean; partial texts are deltas).
 * - `realtime-function-call`: `name`, `call-id`, `arguments`, `handler`
 *   ("tool-url", "signal", "builtin", "none").
 * - `realtime-function-result`: `name`, `call-id`, `output`, `error`
 *   (gboolean), `elapsed-ms` (gdouble).
 * - `realtime-latency`: `response-id`, `latency-ms` (gdouble, caller stopped
 *   speaking → first agent audio pushed downstream), `server-ms` (gdouble,
 *   speech_stopped received → first audio delta received),
 *   `speech-end-running-time` (guint64).
 * - `realtime-usage`: `response-id`, `total-tokens`, `input-tokens`,
 *   `output-tokens`, `input-audio-tokens`, `output-audio-tokens`,
 *   `cached-tokens` (gint64, this response) and `session-total-tokens`.
 * - `realtime-response-done`: `response-id`, `status`, `reason`.
 * - `realtime-error`: `code`, `type`, `message`, `param`, `event-id`
 *   (provider errors that do not stop the element).
 * - `realtime-barge-in`: `source`, `onset-running-time`,
 *   `decision-running-time`, `response-id`, `cancelled` (gboolean), `item-id`,
 *   `audio-end-ms`, `generated-ms`, `played-ms` (guint64, for the first item
 *   truncated), `truncated-items` (guint), `dropped-queued-ms` (guint64).
 * - `realtime-call-end`: `action` ("end-call"/"transfer"), `reason`,
 *   `number`, `call-id`.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 twiliosrc port=8080 ! realtimemodel ! twiliosink
 * ]| A phone agent on the embedded local model (no account needed).
 * |[
 * OPENAI_API_KEY=sk-... gst-launch-1.0 -m twiliosrc port=8080 ! \
 *     realtimemodel location="wss://api.openai.com/v1/realtime?model=gpt-realtime" \
 *       voice=marin instructions="You are Acme's phone agent. Keep answers short." \
 *       greeting="Greet the caller and ask how you can help." \
 *       input-transcription=gpt-4o-mini-transcribe ! twiliosink
 * ]| An OpenAI agent that speaks first, with transcripts on the bus.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstrealtimemodel.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "gstrealtimeelements.h"
#include "pa-audio.h"
#include "pa-call.h"
#include "rt-protocol.h"
#include "rt-websocket.h"
#include "rt-worker.h"

#ifdef HAVE_LOCALMODEL
#include "local-engine.h"
#endif

GST_DEBUG_CATEGORY_STATIC(gst_realtime_model_debug);
#define GST_CAT_DEFAULT gst_realtime_model_debug

using pa::rt::AudioFormat;
using pa::rt::Dialect;
using pa::rt::EventKind;

/* ------------------------------------------------------------ enums */

typedef enum {
  PROTOCOL_AUTO,
  PROTOCOL_GA,
  PROTOCOL_BETA,
} RealtimeProtocol;

typedef enum {
  TURN_SERVER_VAD,
  TURN_SEMANTIC_VAD,
  TURN_NONE,
} RealtimeTurnDetection;

typedef enum {
  EAGERNESS_AUTO,
  EAGERNESS_LOW,
  EAGERNESS_MEDIUM,
  EAGERNESS_HIGH,
} RealtimeEagerness;

typedef enum {
  NOISE_NONE,
  NOISE_NEAR_FIELD,
  NOISE_FAR_FIELD,
} RealtimeNoiseReduction;

GType gst_realtime_model_protocol_get_type(void) {
  static gsize id = 0;
  static const GEnumValue values[] = {
      {PROTOCOL_AUTO, "Follow the server (session.created shape and event names)", "auto"},
      {PROTOCOL_GA, "GA: nested audio config, response.output_audio.* (OpenAI, Azure)", "ga"},
      {PROTOCOL_BETA, "Beta: flat session, response.audio.*, OpenAI-Beta header (compatible servers)", "beta"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&id))
    g_once_init_leave(&id, g_enum_register_static("GstRealtimeModelProtocol", values));
  return id;
}

GType gst_realtime_model_turn_detection_get_type(void) {
  static gsize id = 0;
  static const GEnumValue values[] = {
      {TURN_SERVER_VAD, "Server VAD: silence ends the caller's turn", "server-vad"},
      {TURN_SEMANTIC_VAD, "Semantic VAD: the model decides when the caller is done", "semantic-vad"},
      {TURN_NONE, "None: no automatic turns", "none"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&id))
    g_once_init_leave(&id, g_enum_register_static("GstRealtimeModelTurnDetection", values));
  return id;
}

GType gst_realtime_model_eagerness_get_type(void) {
  static gsize id = 0;
  static const GEnumValue values[] = {
      {EAGERNESS_AUTO, "Auto", "auto"},
      {EAGERNESS_LOW, "Low (waits up to 8 s)", "low"},
      {EAGERNESS_MEDIUM, "Medium (up to 4 s)", "medium"},
      {EAGERNESS_HIGH, "High (up to 2 s)", "high"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&id))
    g_once_init_leave(&id, g_enum_register_static("GstRealtimeModelEagerness", values));
  return id;
}

GType gst_realtime_model_noise_reduction_get_type(void) {
  static gsize id = 0;
  static const GEnumValue values[] = {
      {NOISE_NONE, "None (server default)", "none"},
      {NOISE_NEAR_FIELD, "Near field (headsets)", "near-field"},
      {NOISE_FAR_FIELD, "Far field (speaker phones)", "far-field"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&id))
    g_once_init_leave(&id, g_enum_register_static("GstRealtimeModelNoiseReduction", values));
  return id;
}

/* ------------------------------------------------------------ defaults */

#define DEFAULT_LOCATION nullptr
#define DEFAULT_MODEL "gpt-realtime"
#define DEFAULT_VOICE nullptr
#define DEFAULT_TOOL_TIMEOUT 10000
#define DEFAULT_PROTOCOL PROTOCOL_AUTO
#define DEFAULT_TURN_DETECTION TURN_SERVER_VAD
#define DEFAULT_THRESHOLD 0.5
#define DEFAULT_PREFIX_PADDING_MS 300
#define DEFAULT_SILENCE_DURATION_MS 500
#define DEFAULT_IDLE_TIMEOUT_MS 0
#define DEFAULT_EAGERNESS EAGERNESS_AUTO
#define DEFAULT_INTERRUPT_RESPONSE TRUE
#define DEFAULT_CREATE_RESPONSE TRUE
#define DEFAULT_MAX_OUTPUT_TOKENS 0
#define DEFAULT_SPEED 1.0
#define DEFAULT_NOISE_REDUCTION NOISE_NONE
#define DEFAULT_TEMPERATURE -1.0
#define DEFAULT_TOOL_CHOICE "auto"
#define DEFAULT_BUILTIN_TOOLS TRUE
#define DEFAULT_TRANSFER_MESSAGE "Connecting you now."
#define DEFAULT_TWILIO_API_BASE_URL "https://api.twilio.com"
#define DEFAULT_RECONNECT_ATTEMPTS 3
#define DEFAULT_CONNECT_TIMEOUT 10000
#define DEFAULT_MAX_QUEUE_MS 30000
#define DEFAULT_MAX_PENDING_INPUT_MS 10000
#define DEFAULT_APPEND_MS 0
#define DEFAULT_IDLE_APPEND_MS 100
#define DEFAULT_TURN_APPEND_MS 40
#define DEFAULT_PARTIAL_TRANSCRIPTS TRUE
#define DEFAULT_DTMF_TO_MODEL TRUE

enum {
  PROP_0,
  PROP_LOCATION,
  PROP_API_KEY,
  PROP_MODEL,
  PROP_VOICE,
  PROP_INSTRUCTIONS,
  PROP_INSTRUCTIONS_FILE,
  PROP_TOOLS_FILE,
  PROP_TOOL_URL,
  PROP_TOOL_TIMEOUT,
  PROP_PROTOCOL,
  PROP_TURN_DETECTION,
  PROP_THRESHOLD,
  PROP_PREFIX_PADDING_MS,
  PROP_SILENCE_DURATION_MS,
  PROP_IDLE_TIMEOUT_MS,
  PROP_EAGERNESS,
  PROP_INTERRUPT_RESPONSE,
  PROP_CREATE_RESPONSE,
  PROP_GREETING,
  PROP_INPUT_TRANSCRIPTION,
  PROP_TRANSCRIPTION_LANGUAGE,
  PROP_MAX_OUTPUT_TOKENS,
  PROP_SPEED,
  PROP_NOISE_REDUCTION,
  PROP_TEMPERATURE,
  PROP_TOOL_CHOICE,
  PROP_LOCAL_AGENT,
  PROP_BUILTIN_TOOLS,
  PROP_TRANSFER_NUMBER,
  PROP_TRANSFER_MESSAGE,
  PROP_TWILIO_ACCOUNT_SID,
  PROP_TWILIO_AUTH_TOKEN,
  PROP_TWILIO_API_BASE_URL,
  PROP_CALL_SID,
  PROP_EXTRA_HEADERS,
  PROP_CA_FILE,
  PROP_RECONNECT_ATTEMPTS,
  PROP_CONNECT_TIMEOUT,
  PROP_MAX_QUEUE_MS,
  PROP_MAX_PENDING_INPUT_MS,
  PROP_APPEND_MS,
  PROP_IDLE_APPEND_MS,
  PROP_TURN_APPEND_MS,
  PROP_PARTIAL_TRANSCRIPTS,
  PROP_DTMF_TO_MODEL,
  PROP_STATS,
};

enum { SIGNAL_FUNCTION_CALL, SIGNAL_FUNCTION_RESULT, SIGNAL_RESPOND, N_SIGNALS };
static guint model_signals[N_SIGNALS];

#define PA_CAPS_MULAW "audio/x-mulaw, rate = (int) 8000, channels = (int) 1"
#define PA_CAPS_PCM "audio/x-raw, format = (string) S16LE, layout = (string) interleaved, rate = (int) 24000, channels = (int) 1"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(PA_CAPS_MULAW "; " PA_CAPS_PCM));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(PA_CAPS_MULAW "; " PA_CAPS_PCM));

static constexpr guint kFrameMs = 20;
static constexpr size_t kMaxItemsTracked = 16;
static constexpr size_t kMaxHistoryChars = 4000;
static constexpr guint kHeardPollMs = 40;
static constexpr guint kSessionCreatedWaitMs = 1500;
static constexpr size_t kMaxSocketBacklog = 2 * 1024 * 1024; /* bytes waiting to be written to the model */
/* idle-append-ms: a frame whose peak stays under -50 dBFS (104 of 32768) has
 * no sound in it that could start a turn */
static constexpr int kQuietPeak = 104;
/* turn-append-ms: inside a turn, a frame whose peak is under four times the
 * line's noise floor (the lowest recent frame peak; at least kQuietPeak, at
 * most -26 dBFS) is the silence that may end the turn: it goes at once */
static constexpr int kTurnQuietMax = 1660;

namespace {

struct Settings {
  std::string location;
  std::string api_key;
  std::string model = DEFAULT_MODEL;
  std::string voice;
  std::string instructions;
  std::string instructions_file;
  std::string tools_file;
  std::string tool_url;
  guint tool_timeout = DEFAULT_TOOL_TIMEOUT;
  int protocol = DEFAULT_PROTOCOL;
  int turn_detection = DEFAULT_TURN_DETECTION;
  double threshold = DEFAULT_THRESHOLD;
  guint prefix_padding_ms = DEFAULT_PREFIX_PADDING_MS;
  guint silence_duration_ms = DEFAULT_SILENCE_DURATION_MS;
  guint idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  int eagerness = DEFAULT_EAGERNESS;
  bool interrupt_response = DEFAULT_INTERRUPT_RESPONSE;
  bool create_response = DEFAULT_CREATE_RESPONSE;
  std::string greeting;
  std::string input_transcription;
  std::string transcription_language;
  guint max_output_tokens = DEFAULT_MAX_OUTPUT_TOKENS;
  double speed = DEFAULT_SPEED;
  int noise_reduction = DEFAULT_NOISE_REDUCTION;
  double temperature = DEFAULT_TEMPERATURE;
  std::string tool_choice = DEFAULT_TOOL_CHOICE;
  std::string local_agent;
  bool builtin_tools = DEFAULT_BUILTIN_TOOLS;
  std::string transfer_number;
  std::string transfer_message = DEFAULT_TRANSFER_MESSAGE;
  std::string twilio_account_sid;
  std::string twilio_auth_token;
  std::string twilio_api_base_url = DEFAULT_TWILIO_API_BASE_URL;
  std::string call_sid;
  GstStructure *extra_headers = nullptr;
  std::string ca_file;
  guint reconnect_attempts = DEFAULT_RECONNECT_ATTEMPTS;
  guint connect_timeout = DEFAULT_CONNECT_TIMEOUT;
  guint max_queue_ms = DEFAULT_MAX_QUEUE_MS;
  guint max_pending_input_ms = DEFAULT_MAX_PENDING_INPUT_MS;
  guint append_ms = DEFAULT_APPEND_MS;
  guint idle_append_ms = DEFAULT_IDLE_APPEND_MS;
  guint turn_append_ms = DEFAULT_TURN_APPEND_MS;
  bool partial_transcripts = DEFAULT_PARTIAL_TRANSCRIPTS;
  bool dtmf_to_model = DEFAULT_DTMF_TO_MODEL;
};

enum class Phase { Idle, Connecting, Open, Configured, Ended };

/* What the source-pad task pushes, in order. */
struct OutItem {
  enum class Kind { Buffer, ItemStart, Event, Eos } kind = Kind::Buffer;
  GstBuffer *buffer = nullptr;
  GstEvent *event = nullptr;
  std::string item_id, response_id;
  gint64 arrival_us = 0; /* when the delta that completed this frame arrived */
  size_t bytes = 0;      /* a buffer's size, once it is pushed */
  bool first_of_response = false;
};

/* A response item with audio. */
struct ItemTrack {
  std::string response_id;
  guint64 generated = 0; /* bytes of audio received for it (not dropped) */
  guint64 queued = 0;    /* bytes waiting in the output queue */
  guint64 pushed = 0;    /* bytes pushed downstream */
  bool start_queued = false;
  bool truncated = false;
  bool complete = false; /* audio done: no more will come */
  bool heard = false;    /* complete, and downstream reported all of it played */
};

struct FnCall {
  enum class How { Url, Signal, EndCall, Transfer, None } how = How::None;
  std::string call_id, name, arguments, response_id, item_id;
  bool have_output = false, error = false, answered = false;
  std::string output;
  gint64 started_us = 0;
  guint timer = 0;
};

struct Action {
  enum class Kind { None, End, Transfer } kind = Kind::None;
  std::string call_id, item_id, reason;
  gint64 started_us = 0, deadline_us = 0;
  bool interrupted = false, executing = false;
  guint timer = 0;
};

struct Stats {
  guint64 events_in = 0, malformed = 0, unknown = 0, errors = 0;
  guint64 appended_bytes = 0, appends = 0, pending_dropped_bytes = 0, send_failed = 0;
  guint64 audio_in_bytes = 0, pushed_bytes = 0, dropped_cancelled_bytes = 0, dropped_queue_bytes = 0,
          padded_bytes = 0, pushed_direct_bytes = 0;
  guint64 responses = 0, cancelled_responses = 0, barge_ins = 0, truncates = 0;
  guint64 function_calls = 0, tool_errors = 0;
  guint64 sessions = 0, reconnects = 0;
  gint64 total_tokens = 0, input_tokens = 0, output_tokens = 0;
};

/* Runtime state; everything under Private::lock. */
struct Runtime {
  Phase phase = Phase::Idle;
  bool stopping = false;
  bool ended = false;        /* the call is over for us: no reconnects */
  std::shared_ptr<pa::rt::WsClient> ws;
  guint serial = 0;          /* current connection; callbacks of older ones are ignored */
  bool configured_once = false;
  guint attempt = 0;         /* consecutive failed attempts */
  guint connect_timer = 0, created_timer = 0, reconnect_timer = 0;
  bool expired = false;

  Dialect dialect = Dialect::GA;
  bool dialect_known = false;
  pa::rt::SessionConfig config;
  std::vector<std::string> user_tools;
  std::string session_id, server_model;
  bool greeted = false;
  bool session_ready = false; /* session.updated seen on the current socket */
  bool caller_present = false; /* caller audio or phoneagent/call-info seen */
  guint cfg_serial = 0;

  AudioFormat in_fmt = AudioFormat::PCMU, out_fmt = AudioFormat::PCMU;
  AudioFormat session_in = AudioFormat::PCMU;
  bool caps_sent = false;

  /* caller audio before the session is configured */
  std::deque<std::vector<uint8_t>> pending;
  size_t pending_bytes = 0;
  std::vector<uint8_t> append_held; /* caller audio for the next append (append-ms, idle/turn-append-ms) */
  /* the line's noise floor: the lowest recent frame peak, rising by 1/64 a
   * frame while frames are louder (turn-append-ms) */
  int line_floor = kQuietPeak;
  /* the model's turn detection has the caller silent: since the session was
   * configured or the last input_audio_buffer.committed, until speech_started
   * (never without turn detection) */
  bool caller_idle = false;
  guint64 session_appended = 0; /* bytes appended on the current socket */
  GstClockTime last_input_end = GST_CLOCK_TIME_NONE;

  /* output queue (to the source-pad task, or pushed from a media thread) */
  std::deque<OutItem> outq;
  size_t outq_bytes = 0;
  bool out_flushing = true;
  GstFlowReturn direct_flow = GST_FLOW_OK; /* a push_direct() failed: the task handles it */
  bool eos_queued = false;
  bool queue_warned = false;
  bool backlog_warned = false;
  std::vector<uint8_t> acc; /* a frame being completed */
  std::string acc_item, acc_response;
  GstClockTime next_pts = 0;
  bool stream_started = false;
  gint64 last_push_us = 0;

  /* responses and items */
  bool response_active = false;
  std::string active_response;
  bool response_wanted = false;
  bool cancel_next_created = false; /* barge-in before our response.create was answered */
  guint resp_serial = 0;
  std::string wanted_instructions, wanted_purpose;
  std::set<std::string> cancelled, done_responses, first_pushed;
  std::map<std::string, ItemTrack> items;
  std::deque<std::string> item_order;
  std::string last_audio_item;
  std::map<std::string, std::string> call_names; /* item id or call id → function name (beta) */
  std::map<std::string, FnCall> calls;
  std::set<std::string> answered;
  Action action;

  /* latency of the current turn */
  bool turn_open = false;
  GstClockTime speech_end_rt = GST_CLOCK_TIME_NONE;
  gint64 speech_stopped_us = 0, first_delta_us = 0;
  std::string turn_response;

  /* conversation so far, for a new session after a drop */
  std::deque<std::pair<std::string, std::string>> history;
  size_t history_chars = 0;

  /* the call (phoneagent/call-info) */
  std::string call_sid, account_sid, stream_sid;

  Stats st;
};

} // namespace

struct GstRealtimeModelPrivate {
  std::mutex lock;
  std::condition_variable out_cond;
  std::mutex barge_lock; /* one barge-in at a time */
  std::atomic<bool> wake{false}; /* items queued: wake the task once the lock is released */
  std::mutex push_lock;          /* the task and push_direct() take turns pushing; before lock */
  std::atomic<bool> playing{false}; /* PLAYING: push_direct() may push */
  Settings settings;
  Runtime rt;
  std::unique_ptr<pa::rt::Worker> worker = std::make_unique<pa::rt::Worker>("rtmodel-ctl"); /* lives as long as the element */
#ifdef HAVE_LOCALMODEL
  std::unique_ptr<pa::local::Engine> engine;
#endif
  GCancellable *cancel = nullptr; /* connect (name lookup) */
  PaCall *call = nullptr;         /* from the phoneagent.call context, under lock: its media thread reads our socket */
  GstSegment in_segment;          /* caller side, under lock */
};

struct _GstRealtimeModel {
  GstElement parent;
  GstPad *sinkpad;
  GstPad *srcpad;
  GstRealtimeModelPrivate *priv;
};

#define gst_realtime_model_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE(GstRealtimeModel, gst_realtime_model, GST_TYPE_ELEMENT,
                        GST_DEBUG_CATEGORY_INIT(gst_realtime_model_debug, "realtimemodel", 0,
                                                "Realtime speech model (OpenAI Realtime protocol)"));
GST_ELEMENT_REGISTER_DEFINE(realtimemodel, "realtimemodel", GST_RANK_NONE, GST_TYPE_REALTIME_MODEL);

/* ------------------------------------------------------------ helpers */

namespace {

GstClockTime running_time(GstElement *element) {
  GstClock *clock = gst_element_get_clock(element);
  if (!clock)
    return GST_CLOCK_TIME_NONE;
  GstClockTime now = gst_clock_get_time(clock);
  gst_object_unref(clock);
  GstClockTime base = gst_element_get_base_time(element);
  return now >= base ? now - base : 0;
}

} // namespace

static bool push_direct(GstRealtimeModel *self);

/* Names of the messages posted several times a turn (the transcripts) and
 * of the field every message carries, interned once in class_init, as
 * GStreamer's own hot paths do (GST_QUARK): a name given as a string is
 * looked up in GLib's global quark table on each use, and by the next
 * message that table is cold again (docs/performance.md, "Session 26"). */
static struct {
  GQuark transcript, role, item_id, response_id, text, final, running_time;
} quarks;

namespace {

/* Messages and work collected under the lock, done after it is released. */
struct Outbox {
  GstRealtimeModel *self;
  std::vector<GstStructure *> messages;
  std::vector<std::function<void()>> after;
  explicit Outbox(GstRealtimeModel *s) : self(s) {}
  Outbox(const Outbox &) = delete;
  ~Outbox() { flush(); }
  void post(GstStructure *s) {
    gst_structure_id_set(s, quarks.running_time, G_TYPE_UINT64, running_time(GST_ELEMENT(self)), nullptr);
    messages.push_back(s);
  }
  void later(std::function<void()> fn) { after.push_back(std::move(fn)); }
  void flush() {
    GstRealtimeModelPrivate *p = self->priv;
    if (p->wake.exchange(false) && !push_direct(self))
      p->out_cond.notify_one(); /* after the lock: the task does not wake into a held mutex */
    auto msgs = std::move(messages);
    messages.clear();
    for (GstStructure *s : msgs)
      gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
    auto fns = std::move(after);
    after.clear();
    for (auto &fn : fns)
      fn();
  }
};

std::string strip_query(const std::string &url) {
  size_t q = url.find('?');
  return q == std::string::npos ? url : url.substr(0, q);
}

bool read_text_file(const std::string &path, std::string &out, std::string &error) {
  gchar *data = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &data, &len, &err)) {
    error = err->message;
    g_error_free(err);
    return false;
  }
  out.assign(data, len);
  g_free(data);
  return true;
}

std::string json_string(const std::string &s) {
  JsonNode *n = json_node_new(JSON_NODE_VALUE);
  json_node_set_string(n, s.c_str());
  gchar *t = json_to_string(n, FALSE);
  std::string out(t);
  g_free(t);
  json_node_unref(n);
  return out;
}

/* {"error": msg} */
std::string error_json(const std::string &msg) { return "{\"error\":" + json_string(msg) + "}"; }


GstCaps *caps_for(AudioFormat f) {
  return gst_caps_from_string(f == AudioFormat::PCMU ? PA_CAPS_MULAW : PA_CAPS_PCM);
}

/* Does the peer of @pad accept μ-law 8 kHz? Unlinked pads say yes. */
bool peer_takes_mulaw(GstPad *pad) {
  if (!gst_pad_is_linked(pad))
    return true;
  GstCaps *filter = caps_for(AudioFormat::PCMU);
  GstCaps *peer = gst_pad_peer_query_caps(pad, filter);
  bool ok = peer && !gst_caps_is_empty(peer);
  if (peer)
    gst_caps_unref(peer);
  gst_caps_unref(filter);
  return ok;
}

std::string env_or(const std::string &v, const char *env) {
  if (!v.empty())
    return v;
  const char *e = g_getenv(env);
  return e ? e : "";
}

} // namespace

/* ------------------------------------------------------------ properties */

static void gst_realtime_model_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(object);
  std::lock_guard<std::mutex> g(self->priv->lock);
  Settings &s = self->priv->settings;
  auto str = [value] {
    const char *v = g_value_get_string(value);
    return std::string(v ? v : "");
  };
  switch (prop_id) {
  case PROP_LOCATION: s.location = str(); break;
  case PROP_API_KEY: s.api_key = str(); break;
  case PROP_MODEL: s.model = str(); break;
  case PROP_VOICE: s.voice = str(); break;
  case PROP_INSTRUCTIONS: s.instructions = str(); break;
  case PROP_INSTRUCTIONS_FILE: s.instructions_file = str(); break;
  case PROP_TOOLS_FILE: s.tools_file = str(); break;
  case PROP_TOOL_URL: s.tool_url = str(); break;
  case PROP_TOOL_TIMEOUT: s.tool_timeout = g_value_get_uint(value); break;
  case PROP_PROTOCOL: s.protocol = g_value_get_enum(value); break;
  case PROP_TURN_DETECTION: s.turn_detection = g_value_get_enum(value); break;
  case PROP_THRESHOLD: s.threshold = g_value_get_double(value); break;
  case PROP_PREFIX_PADDING_MS: s.prefix_padding_ms = g_value_get_uint(value); break;
  case PROP_SILENCE_DURATION_MS: s.silence_duration_ms = g_value_get_uint(value); break;
  case PROP_IDLE_TIMEOUT_MS: s.idle_timeout_ms = g_value_get_uint(value); break;
  case PROP_EAGERNESS: s.eagerness = g_value_get_enum(value); break;
  case PROP_INTERRUPT_RESPONSE: s.interrupt_response = g_value_get_boolean(value); break;
  case PROP_CREATE_RESPONSE: s.create_response = g_value_get_boolean(value); break;
  case PROP_GREETING: s.greeting = str(); break;
  case PROP_INPUT_TRANSCRIPTION: s.input_transcription = str(); break;
  case PROP_TRANSCRIPTION_LANGUAGE: s.transcription_language = str(); break;
  case PROP_MAX_OUTPUT_TOKENS: s.max_output_tokens = g_value_get_uint(value); break;
  case PROP_SPEED: s.speed = g_value_get_double(value); break;
  case PROP_NOISE_REDUCTION: s.noise_reduction = g_value_get_enum(value); break;
  case PROP_TEMPERATURE: s.temperature = g_value_get_double(value); break;
  case PROP_TOOL_CHOICE: s.tool_choice = str(); break;
  case PROP_LOCAL_AGENT: s.local_agent = str(); break;
  case PROP_BUILTIN_TOOLS: s.builtin_tools = g_value_get_boolean(value); break;
  case PROP_TRANSFER_NUMBER: s.transfer_number = str(); break;
  case PROP_TRANSFER_MESSAGE: s.transfer_message = str(); break;
  case PROP_TWILIO_ACCOUNT_SID: s.twilio_account_sid = str(); break;
  case PROP_TWILIO_AUTH_TOKEN: s.twilio_auth_token = str(); break;
  case PROP_TWILIO_API_BASE_URL: s.twilio_api_base_url = str(); break;
  case PROP_CALL_SID: s.call_sid = str(); break;
  case PROP_EXTRA_HEADERS: {
    const GstStructure *h = gst_value_get_structure(value);
    if (s.extra_headers)
      gst_structure_free(s.extra_headers);
    s.extra_headers = h ? gst_structure_copy(h) : nullptr;
    break;
  }
  case PROP_CA_FILE: s.ca_file = str(); break;
  case PROP_RECONNECT_ATTEMPTS: s.reconnect_attempts = g_value_get_uint(value); break;
  case PROP_CONNECT_TIMEOUT: s.connect_timeout = g_value_get_uint(value); break;
  case PROP_MAX_QUEUE_MS: s.max_queue_ms = g_value_get_uint(value); break;
  case PROP_MAX_PENDING_INPUT_MS: s.max_pending_input_ms = g_value_get_uint(value); break;
  case PROP_APPEND_MS: s.append_ms = g_value_get_uint(value); break;
  case PROP_IDLE_APPEND_MS: s.idle_append_ms = g_value_get_uint(value); break;
  case PROP_TURN_APPEND_MS: s.turn_append_ms = g_value_get_uint(value); break;
  case PROP_PARTIAL_TRANSCRIPTS: s.partial_transcripts = g_value_get_boolean(value); break;
  case PROP_DTMF_TO_MODEL: s.dtmf_to_model = g_value_get_boolean(value); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static GstStructure *gst_realtime_model_stats(GstRealtimeModel *self);

static void gst_realtime_model_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(object);
  if (prop_id == PROP_STATS) {
    g_value_take_boxed(value, gst_realtime_model_stats(self));
    return;
  }
  std::lock_guard<std::mutex> g(self->priv->lock);
  const Settings &s = self->priv->settings;
  auto nullable = [](const std::string &v) { return v.empty() ? nullptr : v.c_str(); };
  switch (prop_id) {
  case PROP_LOCATION: g_value_set_string(value, nullable(s.location)); break;
  case PROP_MODEL: g_value_set_string(value, nullable(s.model)); break;
  case PROP_VOICE: g_value_set_string(value, nullable(s.voice)); break;
  case PROP_INSTRUCTIONS: g_value_set_string(value, nullable(s.instructions)); break;
  case PROP_INSTRUCTIONS_FILE: g_value_set_string(value, nullable(s.instructions_file)); break;
  case PROP_TOOLS_FILE: g_value_set_string(value, nullable(s.tools_file)); break;
  case PROP_TOOL_URL: g_value_set_string(value, nullable(s.tool_url)); break;
  case PROP_TOOL_TIMEOUT: g_value_set_uint(value, s.tool_timeout); break;
  case PROP_PROTOCOL: g_value_set_enum(value, s.protocol); break;
  case PROP_TURN_DETECTION: g_value_set_enum(value, s.turn_detection); break;
  case PROP_THRESHOLD: g_value_set_double(value, s.threshold); break;
  case PROP_PREFIX_PADDING_MS: g_value_set_uint(value, s.prefix_padding_ms); break;
  case PROP_SILENCE_DURATION_MS: g_value_set_uint(value, s.silence_duration_ms); break;
  case PROP_IDLE_TIMEOUT_MS: g_value_set_uint(value, s.idle_timeout_ms); break;
  case PROP_EAGERNESS: g_value_set_enum(value, s.eagerness); break;
  case PROP_INTERRUPT_RESPONSE: g_value_set_boolean(value, s.interrupt_response); break;
  case PROP_CREATE_RESPONSE: g_value_set_boolean(value, s.create_response); break;
  case PROP_GREETING: g_value_set_string(value, nullable(s.greeting)); break;
  case PROP_INPUT_TRANSCRIPTION: g_value_set_string(value, nullable(s.input_transcription)); break;
  case PROP_TRANSCRIPTION_LANGUAGE: g_value_set_string(value, nullable(s.transcription_language)); break;
  case PROP_MAX_OUTPUT_TOKENS: g_value_set_uint(value, s.max_output_tokens); break;
  case PROP_SPEED: g_value_set_double(value, s.speed); break;
  case PROP_NOISE_REDUCTION: g_value_set_enum(value, s.noise_reduction); break;
  case PROP_TEMPERATURE: g_value_set_double(value, s.temperature); break;
  case PROP_TOOL_CHOICE: g_value_set_string(value, nullable(s.tool_choice)); break;
  case PROP_LOCAL_AGENT: g_value_set_string(value, nullable(s.local_agent)); break;
  case PROP_BUILTIN_TOOLS: g_value_set_boolean(value, s.builtin_tools); break;
  case PROP_TRANSFER_NUMBER: g_value_set_string(value, nullable(s.transfer_number)); break;
  case PROP_TRANSFER_MESSAGE: g_value_set_string(value, nullable(s.transfer_message)); break;
  case PROP_TWILIO_ACCOUNT_SID: g_value_set_string(value, nullable(s.twilio_account_sid)); break;
  case PROP_TWILIO_API_BASE_URL: g_value_set_string(value, nullable(s.twilio_api_base_url)); break;
  case PROP_CALL_SID:
    g_value_set_string(value, nullable(s.call_sid.empty() ? self->priv->rt.call_sid : s.call_sid));
    break;
  case PROP_EXTRA_HEADERS: gst_value_set_structure(value, s.extra_headers); break;
  case PROP_CA_FILE: g_value_set_string(value, nullable(s.ca_file)); break;
  case PROP_RECONNECT_ATTEMPTS: g_value_set_uint(value, s.reconnect_attempts); break;
  case PROP_CONNECT_TIMEOUT: g_value_set_uint(value, s.connect_timeout); break;
  case PROP_MAX_QUEUE_MS: g_value_set_uint(value, s.max_queue_ms); break;
  case PROP_MAX_PENDING_INPUT_MS: g_value_set_uint(value, s.max_pending_input_ms); break;
  case PROP_APPEND_MS: g_value_set_uint(value, s.append_ms); break;
  case PROP_IDLE_APPEND_MS: g_value_set_uint(value, s.idle_append_ms); break;
  case PROP_TURN_APPEND_MS: g_value_set_uint(value, s.turn_append_ms); break;
  case PROP_PARTIAL_TRANSCRIPTS: g_value_set_boolean(value, s.partial_transcripts); break;
  case PROP_DTMF_TO_MODEL: g_value_set_boolean(value, s.dtmf_to_model); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec); break;
  }
}

static const char *phase_name(Phase p) {
  switch (p) {
  case Phase::Idle: return "idle";
  case Phase::Connecting: return "connecting";
  case Phase::Open: return "connected";
  case Phase::Configured: return "configured";
  case Phase::Ended: return "ended";
  }
  return "?";
}

static GstStructure *gst_realtime_model_stats(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  std::shared_ptr<pa::rt::WsClient> ws;
  GstStructure *s;
  {
    std::lock_guard<std::mutex> g(p->lock);
    const Runtime &rt = p->rt;
    const Stats &st = rt.st;
    unsigned in_bpm = pa::rt::bytes_per_ms(rt.in_fmt), out_bpm = pa::rt::bytes_per_ms(rt.out_fmt);
    ws = rt.ws;
    s = gst_structure_new("realtimemodel-stats", "state", G_TYPE_STRING, phase_name(rt.phase), "dialect",
        G_TYPE_STRING, pa::rt::dialect_name(rt.dialect), "session-id", G_TYPE_STRING, rt.session_id.c_str(),
        "input-format", G_TYPE_STRING, pa::rt::audio_format_name(rt.in_fmt), "output-format", G_TYPE_STRING,
        pa::rt::audio_format_name(rt.out_fmt), "sessions", G_TYPE_UINT64, st.sessions, "reconnects", G_TYPE_UINT64,
        st.reconnects, "events-received", G_TYPE_UINT64, st.events_in, "malformed-events", G_TYPE_UINT64,
        st.malformed, "unknown-events", G_TYPE_UINT64, st.unknown, "provider-errors", G_TYPE_UINT64, st.errors,
        "input-sent-ms", G_TYPE_UINT64, st.appended_bytes / in_bpm, "input-appends", G_TYPE_UINT64, st.appends,
        "input-pending-ms", G_TYPE_UINT64,
        static_cast<guint64>(rt.pending_bytes / in_bpm), "input-dropped-ms", G_TYPE_UINT64,
        st.pending_dropped_bytes / in_bpm, "output-received-ms", G_TYPE_UINT64, st.audio_in_bytes / out_bpm,
        "output-pushed-ms", G_TYPE_UINT64, st.pushed_bytes / out_bpm, "output-pushed-on-media-thread-ms",
        G_TYPE_UINT64, st.pushed_direct_bytes / out_bpm, "output-queued-ms", G_TYPE_UINT64,
        static_cast<guint64>(rt.outq_bytes / out_bpm), "dropped-cancelled-ms", G_TYPE_UINT64,
        st.dropped_cancelled_bytes / out_bpm, "dropped-queue-full-ms", G_TYPE_UINT64,
        st.dropped_queue_bytes / out_bpm, "padded-ms", G_TYPE_UINT64, st.padded_bytes / out_bpm, "responses",
        G_TYPE_UINT64, st.responses, "cancelled-responses", G_TYPE_UINT64, st.cancelled_responses, "barge-ins",
        G_TYPE_UINT64, st.barge_ins, "truncates", G_TYPE_UINT64, st.truncates, "function-calls", G_TYPE_UINT64,
        st.function_calls, "tool-errors", G_TYPE_UINT64, st.tool_errors, "total-tokens", G_TYPE_INT64,
        st.total_tokens, "input-tokens", G_TYPE_INT64, st.input_tokens, "output-tokens", G_TYPE_INT64,
        st.output_tokens, nullptr);
  }
  if (ws) {
    pa::rt::WsStats w = ws->stats();
    gst_structure_set(s, "ws-messages-in", G_TYPE_UINT64, w.messages_in, "ws-messages-out", G_TYPE_UINT64,
                      w.messages_out, "ws-bytes-in", G_TYPE_UINT64, w.bytes_in, "ws-bytes-out", G_TYPE_UINT64,
                      w.bytes_out, "ws-queued-bytes", G_TYPE_UINT64, static_cast<guint64>(w.queued_bytes),
                      "ws-on-media-thread", G_TYPE_BOOLEAN, static_cast<gboolean>(w.on_media_thread), nullptr);
  }
  return s;
}

/* ------------------------------------------------------------ output queue (lock held) */

static size_t frame_bytes(AudioFormat f) { return pa::rt::bytes_per_ms(f) * kFrameMs; }

static void enqueue_locked(GstRealtimeModelPrivate *p, OutItem &&item) {
  Runtime &rt = p->rt;
  if (item.kind == OutItem::Kind::Buffer) {
    size_t n = gst_buffer_get_size(item.buffer);
    rt.outq_bytes += n;
    auto it = rt.items.find(item.item_id);
    if (it != rt.items.end())
      it->second.queued += n;
  }
  rt.outq.push_back(std::move(item));
  p->wake = true; /* notified by the Outbox, or explicitly, after unlocking */
}

static void free_out_item(OutItem &item) {
  if (item.buffer)
    gst_buffer_unref(item.buffer);
  if (item.event)
    gst_event_unref(item.event);
  item.buffer = nullptr;
  item.event = nullptr;
}

/* Drops queued audio and item starts (events and EOS stay). Returns bytes dropped. */
static size_t drop_queued_audio_locked(GstRealtimeModelPrivate *p) {
  Runtime &rt = p->rt;
  size_t dropped = 0;
  std::deque<OutItem> keep;
  for (auto &item : rt.outq) {
    if (item.kind == OutItem::Kind::Buffer || item.kind == OutItem::Kind::ItemStart) {
      if (item.buffer)
        dropped += gst_buffer_get_size(item.buffer);
      free_out_item(item);
    } else {
      keep.push_back(std::move(item));
    }
  }
  rt.outq.swap(keep);
  rt.outq_bytes = 0;
  for (auto &[id, t] : rt.items)
    t.queued = 0;
  rt.acc.clear();
  rt.acc_item.clear();
  rt.acc_response.clear();
  return dropped;
}

static void clear_queue_locked(GstRealtimeModelPrivate *p) {
  for (auto &item : p->rt.outq)
    free_out_item(item);
  p->rt.outq.clear();
  p->rt.outq_bytes = 0;
  p->rt.acc.clear();
  p->rt.acc_item.clear();
}

static void queue_frame_locked(GstRealtimeModelPrivate *p, const uint8_t *data, size_t n, gint64 arrival_us) {
  Runtime &rt = p->rt;
  size_t limit = static_cast<size_t>(p->settings.max_queue_ms) * pa::rt::bytes_per_ms(rt.out_fmt);
  if (rt.outq_bytes + n > limit) {
    rt.st.dropped_queue_bytes += n;
    if (!rt.queue_warned) {
      GST_WARNING("output queue full (%u ms): dropping model audio (is downstream stuck?)",
                  p->settings.max_queue_ms);
      rt.queue_warned = true;
    }
    return;
  }
  rt.queue_warned = false;
  OutItem item;
  item.kind = OutItem::Kind::Buffer;
  item.buffer = gst_buffer_new_memdup(data, n);
  item.item_id = rt.acc_item;
  item.response_id = rt.acc_response;
  item.arrival_us = arrival_us;
  if (!rt.acc_response.empty() && !rt.first_pushed.count(rt.acc_response)) {
    rt.first_pushed.insert(rt.acc_response);
    item.first_of_response = true;
  }
  enqueue_locked(p, std::move(item));
}

/* Pads the partial frame of the current item with silence and queues it. */
static void flush_acc_locked(GstRealtimeModelPrivate *p, gint64 arrival_us) {
  Runtime &rt = p->rt;
  if (rt.acc.empty())
    return;
  size_t fb = frame_bytes(rt.out_fmt);
  size_t pad = fb - rt.acc.size() % fb;
  if (pad != fb) {
    rt.acc.insert(rt.acc.end(), pad, rt.out_fmt == AudioFormat::PCMU ? pa::kMulawSilence : 0);
    rt.st.padded_bytes += pad;
  }
  queue_frame_locked(p, rt.acc.data(), rt.acc.size(), arrival_us);
  rt.acc.clear();
}

static void track_item_locked(Runtime &rt, const std::string &item_id, const std::string &response_id) {
  if (item_id.empty() || rt.items.count(item_id))
    return;
  ItemTrack t;
  t.response_id = response_id;
  rt.items[item_id] = t;
  rt.item_order.push_back(item_id);
  while (rt.item_order.size() > kMaxItemsTracked) {
    rt.items.erase(rt.item_order.front());
    rt.item_order.pop_front();
  }
}

static void queue_audio_locked(GstRealtimeModelPrivate *p, const std::string &item_id, const std::string &response_id,
                               const std::vector<uint8_t> &audio, gint64 arrival_us) {
  Runtime &rt = p->rt;
  if (item_id != rt.acc_item || !rt.items.count(item_id) || !rt.items[item_id].start_queued) {
    flush_acc_locked(p, arrival_us);
    track_item_locked(rt, item_id, response_id);
    ItemTrack &t = rt.items[item_id];
    if (!t.start_queued) {
      OutItem start;
      start.kind = OutItem::Kind::ItemStart;
      start.item_id = item_id;
      start.response_id = response_id;
      enqueue_locked(p, std::move(start));
      t.start_queued = true;
    }
    rt.acc_item = item_id;
    rt.acc_response = response_id;
  }
  rt.items[item_id].generated += audio.size();
  rt.last_audio_item = item_id;
  size_t fb = frame_bytes(rt.out_fmt);
  size_t off = 0;
  if (!rt.acc.empty()) {
    size_t take = std::min(fb - rt.acc.size(), audio.size());
    rt.acc.insert(rt.acc.end(), audio.begin(), audio.begin() + static_cast<long>(take));
    off = take;
    if (rt.acc.size() == fb) {
      queue_frame_locked(p, rt.acc.data(), fb, arrival_us);
      rt.acc.clear();
    }
  }
  while (audio.size() - off >= fb) {
    queue_frame_locked(p, audio.data() + off, fb, arrival_us);
    off += fb;
  }
  if (off < audio.size())
    rt.acc.assign(audio.begin() + static_cast<long>(off), audio.end());
}

static void queue_event_locked(GstRealtimeModelPrivate *p, GstEvent *event) {
  OutItem item;
  item.kind = OutItem::Kind::Event;
  item.event = event;
  enqueue_locked(p, std::move(item));
}

static void queue_eos_locked(GstRealtimeModelPrivate *p) {
  if (p->rt.eos_queued)
    return;
  flush_acc_locked(p, g_get_monotonic_time());
  OutItem item;
  item.kind = OutItem::Kind::Eos;
  enqueue_locked(p, std::move(item));
  p->rt.eos_queued = true;
}

/* ------------------------------------------------------------ sending (lock held) */

/* The model's turn detection says when the caller speaks (speech_started,
 * input_audio_buffer.committed): the idle and turn gatherings follow it. */
static bool model_detects_turns(const Runtime &rt) {
  return rt.config.turn_detection != pa::rt::TurnDetection::None;
}

/* Sends @len bytes of caller audio as one input_audio_buffer.append, unless
 * the model has stopped reading (more than kMaxSocketBacklog waiting on its
 * socket): then the audio is dropped and counted, with one warning until the
 * socket drains, so that the caller's audio does not pile up. Checked when
 * audio is sent, not for each buffer that is held. */
static void append_audio_locked(GstRealtimeModel *self, const uint8_t *data, size_t len) {
  Runtime &rt = self->priv->rt;
  if (!rt.ws) {
    rt.st.send_failed++;
    return;
  }
  if (rt.ws->queued_bytes() > kMaxSocketBacklog) {
    rt.st.pending_dropped_bytes += len;
    if (!rt.backlog_warned) {
      GST_WARNING_OBJECT(self, "the model socket is not draining: dropping caller audio");
      rt.backlog_warned = true;
    }
    return;
  }
  rt.backlog_warned = false;
  if (rt.ws->send(pa::rt::build_input_audio_append(data, len))) {
    rt.st.appended_bytes += len;
    rt.st.appends++;
    rt.session_appended += len;
  } else {
    rt.st.send_failed++;
  }
}

/* Sends the caller audio held for append-ms, idle- or turn-append-ms, if any. */
static void flush_append_locked(GstRealtimeModel *self) {
  Runtime &rt = self->priv->rt;
  if (rt.append_held.empty())
    return;
  append_audio_locked(self, rt.append_held.data(), rt.append_held.size());
  rt.append_held.clear();
}

static bool send_locked(GstRealtimeModel *self, std::string text) {
  Runtime &rt = self->priv->rt;
  flush_append_locked(self); /* the caller's audio first: messages stay in order */
  if (!rt.ws || !rt.ws->send(std::move(text))) {
    rt.st.send_failed++;
    return false;
  }
  return true;
}

static void post_session_locked(GstRealtimeModel *self, Outbox &out, const char *state, const std::string &reason) {
  Runtime &rt = self->priv->rt;
  const Settings &s = self->priv->settings;
  std::string url = strip_query(s.location.empty() ? std::string("(local engine)") : s.location);
  out.post(gst_structure_new("realtime-session", "state", G_TYPE_STRING, state, "dialect", G_TYPE_STRING,
                             pa::rt::dialect_name(rt.dialect), "session-id", G_TYPE_STRING, rt.session_id.c_str(),
                             "model", G_TYPE_STRING, rt.server_model.empty() ? s.model.c_str() : rt.server_model.c_str(),
                             "url", G_TYPE_STRING, url.c_str(), "attempt", G_TYPE_UINT, rt.attempt, "reason",
                             G_TYPE_STRING, reason.c_str(), nullptr));
}

/* response.create now, or once the active response is done. */
static void request_response_locked(GstRealtimeModel *self, const std::string &instructions, const std::string &purpose) {
  Runtime &rt = self->priv->rt;
  if (rt.phase != Phase::Configured || rt.response_active) {
    rt.response_wanted = true;
    rt.wanted_instructions = instructions;
    rt.wanted_purpose = purpose;
    return;
  }
  rt.response_wanted = false;
  send_locked(self, pa::rt::build_response_create(rt.dialect, instructions, "resp-" + std::to_string(++rt.resp_serial),
                                                  purpose));
  /* active from now: a second request waits for this one's response.done */
  rt.response_active = true;
  rt.active_response.clear();
}

/* The agent speaks first once the session is ready and the caller is there
 * (a standalone twiliosrc starts the pipeline long before a call arrives). */
static void maybe_greet_locked(GstRealtimeModel *self) {
  Runtime &rt = self->priv->rt;
  const std::string &greeting = self->priv->settings.greeting;
  if (rt.greeted || greeting.empty() || !rt.session_ready || !rt.caller_present || rt.ended)
    return;
  rt.greeted = true;
  GST_INFO_OBJECT(self, "greeting the caller");
  request_response_locked(self, greeting, "greeting");
}

static void add_history_locked(Runtime &rt, const char *who, const std::string &text) {
  if (text.empty())
    return;
  rt.history.emplace_back(who, text);
  rt.history_chars += text.size();
  while (rt.history_chars > kMaxHistoryChars && rt.history.size() > 1) {
    rt.history_chars -= rt.history.front().second.size();
    rt.history.pop_front();
  }
}

static void flush_pending_locked(GstRealtimeModel *self) {
  Runtime &rt = self->priv->rt;
  flush_append_locked(self);
  while (!rt.pending.empty()) {
    const auto &chunk = rt.pending.front();
    append_audio_locked(self, chunk.data(), chunk.size());
    rt.pending_bytes -= chunk.size();
    rt.pending.pop_front();
  }
}

/* Sends session.update (and, on a new session after a drop, the conversation
 * so far), then the caller audio kept meanwhile. */
static void configure_locked(GstRealtimeModel *self, Outbox &out) {
  Runtime &rt = self->priv->rt;
  if (rt.phase != Phase::Open)
    return;
  if (rt.created_timer) {
    self->priv->worker->cancel_timer(rt.created_timer);
    rt.created_timer = 0;
  }
  rt.config.input_format = rt.in_fmt;
  rt.config.output_format = rt.out_fmt;
  rt.session_in = rt.in_fmt;
  rt.config.model = rt.dialect == Dialect::GA ? self->priv->settings.model : "";
  std::string update = pa::rt::build_session_update(rt.config, rt.dialect, "cfg-" + std::to_string(++rt.cfg_serial));
  GST_INFO_OBJECT(self, "configuring the session (%s dialect, input %s, output %s)", pa::rt::dialect_name(rt.dialect),
                  pa::rt::audio_format_name(rt.in_fmt), pa::rt::audio_format_name(rt.out_fmt));
  send_locked(self, std::move(update));
  bool reseed = rt.configured_once;
  rt.configured_once = true;
  rt.attempt = 0;
  rt.st.sessions++;
  if (reseed && !rt.history.empty()) {
    std::string summary = "The phone call continues on a new connection. The conversation so far:\n";
    for (const auto &[who, text] : rt.history)
      summary += who + ": " + text + "\n";
    summary += "Continue from here; do not greet the caller again.";
    send_locked(self, pa::rt::build_text_item(rt.dialect, "system", summary));
  }
  rt.phase = Phase::Configured;
  rt.session_appended = 0;
  rt.caller_idle = model_detects_turns(rt);
  flush_pending_locked(self);
  (void)out;
}

/* ------------------------------------------------------------ forward declarations */

static void do_barge_in(GstRealtimeModel *self, const std::string &source, GstClockTime onset, GstClockTime decision);
static void start_function_call_locked(GstRealtimeModel *self, Outbox &out, FnCall &call);
static void response_done_calls_locked(GstRealtimeModel *self, Outbox &out, const std::string &response_id, bool ok);
static void connect_attempt(GstRealtimeModel *self, guint serial);

/* ------------------------------------------------------------ faults (lock held) */

static void fatal_auth_locked(GstRealtimeModel *self, Outbox &out, int http_status, const std::string &code,
                              const std::string &message) {
  Runtime &rt = self->priv->rt;
  rt.ended = true;
  rt.phase = Phase::Ended;
  if (rt.ws)
    rt.ws->close(1000, "unauthorized");
  post_session_locked(self, out, "failed", "unauthorized");
  out.later([self, http_status, code, message] {
    GST_ELEMENT_ERROR_WITH_DETAILS(self, RESOURCE, NOT_AUTHORIZED,
        ("The realtime model refused the API key. Check the api-key property or the OPENAI_API_KEY environment "
         "variable."),
        ("%s (HTTP status %d, provider code '%s')", message.c_str(), http_status, code.c_str()),
        ("provider-code", G_TYPE_STRING, code.c_str(), "http-status", G_TYPE_INT, http_status, nullptr));
  });
}

static void give_up_locked(GstRealtimeModel *self, Outbox &out, const std::string &reason) {
  Runtime &rt = self->priv->rt;
  rt.ended = true;
  rt.phase = Phase::Ended;
  post_session_locked(self, out, "failed", reason);
  std::string url = strip_query(self->priv->settings.location);
  guint attempts = self->priv->settings.reconnect_attempts + 1;
  if (!rt.configured_once) {
    out.later([self, url, reason, attempts] {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ_WRITE,
                        ("Could not connect to the realtime model%s%s.", url.empty() ? "" : " at ", url.c_str()),
                        ("%s (gave up after %u attempts)", reason.c_str(), attempts));
    });
  } else {
    /* a clean end: what is queued plays, then twiliosink closes the stream */
    queue_eos_locked(self->priv);
    out.later([self, reason, attempts] {
      GST_ELEMENT_WARNING(self, RESOURCE, READ, ("Lost the connection to the realtime model; ending the call."),
                          ("%s (no new session after %u attempts)", reason.c_str(), attempts));
    });
  }
}

/* Retires the current socket and opens a new session after @delay_ms.
 * @count: a failure (counts against reconnect-attempts) rather than an
 * expected renewal (session_expired, a dialect switch). */
static void schedule_reconnect_locked(GstRealtimeModel *self, Outbox &out, const std::string &reason, bool count) {
  GstRealtimeModelPrivate *p = self->priv;
  Runtime &rt = p->rt;
  if (rt.ended || rt.stopping)
    return;
  guint delay = 0;
  if (count) {
    if (rt.attempt >= p->settings.reconnect_attempts) {
      give_up_locked(self, out, reason);
      return;
    }
    rt.attempt++;
    delay = std::min<guint>(250u << (rt.attempt - 1), 4000);
  }
  GST_INFO_OBJECT(self, "new session in %u ms: %s", delay, reason.c_str());
  std::shared_ptr<pa::rt::WsClient> old = std::move(rt.ws);
  rt.serial++;
  rt.phase = Phase::Connecting;
  for (guint *t : {&rt.connect_timer, &rt.created_timer}) {
    if (*t)
      p->worker->cancel_timer(*t);
    *t = 0;
  }
  /* what the old session was doing is gone with it */
  if (rt.response_active && !rt.active_response.empty())
    rt.cancelled.insert(rt.active_response);
  rt.response_active = false;
  rt.active_response.clear();
  rt.cancel_next_created = false;
  flush_acc_locked(p, g_get_monotonic_time());
  for (auto &[id, c] : rt.calls)
    rt.answered.insert(id);
  rt.calls.clear();
  rt.turn_open = false;
  rt.session_id.clear();
  rt.session_ready = false;
  if (rt.configured_once)
    rt.st.reconnects++;
  post_session_locked(self, out, "reconnecting", reason);
  guint serial = rt.serial;
  rt.reconnect_timer = p->worker->add_timer(std::max<guint>(delay, 1), [self, serial, old]() mutable {
    if (old) {
      old->detach();
      old->close(1000, "reconnecting");
      old.reset();
    }
    connect_attempt(self, serial);
    return false;
  });
}

/* ------------------------------------------------------------ server events (lock held) */

static GstStructure *transcript(const char *role, const std::string &item, const std::string &response,
                                const std::string &text, bool final) {
  return gst_structure_new_id(quarks.transcript, quarks.role, G_TYPE_STRING, role, quarks.item_id, G_TYPE_STRING,
                              item.c_str(), quarks.response_id, G_TYPE_STRING, response.c_str(), quarks.text,
                              G_TYPE_STRING, text.c_str(), quarks.final, G_TYPE_BOOLEAN, final, 0);
}

/* Running time of the caller audio at session offset @ms (input_audio_buffer
 * offsets count all audio appended on this socket). */
static GstClockTime input_time_at(GstRealtimeModel *self, int64_t ms) {
  Runtime &rt = self->priv->rt;
  GstClockTime end = rt.last_input_end;
  if (!GST_CLOCK_TIME_IS_VALID(end))
    end = running_time(GST_ELEMENT(self));
  if (!GST_CLOCK_TIME_IS_VALID(end) || ms < 0)
    return end;
  guint64 appended_ms = (rt.session_appended + rt.append_held.size()) / pa::rt::bytes_per_ms(rt.session_in);
  guint64 lag = appended_ms > static_cast<guint64>(ms) ? appended_ms - static_cast<guint64>(ms) : 0;
  return end > lag * GST_MSECOND ? end - lag * GST_MSECOND : 0;
}

static void handle_error_locked(GstRealtimeModel *self, const pa::rt::ServerEvent &ev, Outbox &out) {
  GstRealtimeModelPrivate *p = self->priv;
  Runtime &rt = p->rt;
  const pa::rt::ErrorInfo &e = ev.error;
  if (e.code == pa::rt::kErrCancelNotActive) {
    GST_DEBUG_OBJECT(self, "response.cancel raced the end of the response (ignored)");
    return;
  }
  rt.st.errors++;
  out.post(gst_structure_new("realtime-error", "code", G_TYPE_STRING, e.code.c_str(), "type", G_TYPE_STRING,
                             e.type.c_str(), "message", G_TYPE_STRING, e.message.c_str(), "param", G_TYPE_STRING,
                             e.param.c_str(), "event-id", G_TYPE_STRING, e.event_id.c_str(), nullptr));
  if (e.code == pa::rt::kErrInvalidApiKey) {
    fatal_auth_locked(self, out, 0, e.code, e.message);
  } else if (e.code == pa::rt::kErrSessionExpired) {
    GST_INFO_OBJECT(self, "the model session expired: opening a new one");
    rt.expired = true;
    schedule_reconnect_locked(self, out, "session expired", false);
  } else if (e.code == pa::rt::kErrBetaShapeDisabled) {
    if (p->settings.protocol == PROTOCOL_AUTO && rt.dialect == Dialect::Beta) {
      GST_INFO_OBJECT(self, "the server refuses the beta protocol: switching to GA");
      rt.dialect = Dialect::GA;
      rt.dialect_known = true;
      schedule_reconnect_locked(self, out, "switching to the GA protocol", false);
    } else {
      rt.ended = true;
      rt.phase = Phase::Ended;
      std::string msg = e.message;
      out.later([self, msg] {
        GST_ELEMENT_ERROR_WITH_DETAILS(self, RESOURCE, SETTINGS,
            ("The realtime model no longer accepts the beta protocol. Set protocol=ga (or auto)."),
            ("%s", msg.c_str()), ("provider-code", G_TYPE_STRING, pa::rt::kErrBetaShapeDisabled, nullptr));
      });
    }
  } else if (e.code == pa::rt::kErrActiveResponse) {
    /* ours waits for the active one's response.done */
    rt.response_wanted = true;
    rt.cancel_next_created = false;
  } else {
    if (g_str_has_prefix(e.event_id.c_str(), "resp-")) {
      rt.cancel_next_created = false; /* our response.create was refused: nothing to cancel */
      if (rt.active_response.empty())
        rt.response_active = false;
    }
    GST_WARNING_OBJECT(self, "model error %s (%s): %s", e.code.c_str(), e.type.c_str(), e.message.c_str());
  }
}

static void handle_event_locked(GstRealtimeModel *self, pa::rt::ServerEvent &ev, Outbox &out, gint64 arrival_us) {
  GstRealtimeModelPrivate *p = self->priv;
  Runtime &rt = p->rt;
  const Settings &s = p->settings;
  rt.st.events_in++;
  if (s.protocol == PROTOCOL_AUTO && ev.family != pa::rt::NameFamily::Common) {
    Dialect d = ev.family == pa::rt::NameFamily::GAOnly ? Dialect::GA : Dialect::Beta;
    if (rt.dialect != d)
      GST_INFO_OBJECT(self, "the server names events in the %s dialect: following it", pa::rt::dialect_name(d));
    rt.dialect = d;
    rt.dialect_known = true;
  }
  switch (ev.kind) {
  case EventKind::Unknown:
    rt.st.unknown++;
    GST_INFO_OBJECT(self, "ignoring an unknown model event '%s'", ev.type.c_str());
    break;
  case EventKind::SessionCreated:
    rt.session_id = ev.session.id;
    rt.server_model = ev.session.model;
    if (s.protocol == PROTOCOL_AUTO) {
      rt.dialect = ev.session.shape_known ? ev.session.shape : Dialect::GA;
      rt.dialect_known = true;
    }
    GST_INFO_OBJECT(self, "session %s created (model %s, %s dialect)", rt.session_id.c_str(), rt.server_model.c_str(),
                    pa::rt::dialect_name(rt.dialect));
    configure_locked(self, out);
    break;
  case EventKind::SessionUpdated:
    if (ev.session.id.size())
      rt.session_id = ev.session.id;
    post_session_locked(self, out, "configured", "");
    rt.session_ready = true;
    maybe_greet_locked(self);
    break;
  case EventKind::SpeechStarted: {
    GstClockTime onset = input_time_at(self, ev.audio_start_ms);
    out.post(gst_structure_new("realtime-speech-started", "item-id", G_TYPE_STRING, ev.item_id.c_str(),
                               "audio-start-ms", G_TYPE_INT64, static_cast<gint64>(ev.audio_start_ms), nullptr));
    rt.turn_open = false;
    rt.caller_idle = false;
    /* with interrupt-response off, the model's VAD does not interrupt the
     * agent: only phoneagent/barge-in does (bargein's local VAD alone) */
    if (s.interrupt_response)
      out.later([self, onset] { do_barge_in(self, "server-vad", onset, running_time(GST_ELEMENT(self))); });
    else
      GST_DEBUG_OBJECT(self, "speech_started: interrupt-response is off, no barge-in");
    break;
  }
  case EventKind::SpeechStopped:
    out.post(gst_structure_new("realtime-speech-stopped", "item-id", G_TYPE_STRING, ev.item_id.c_str(),
                               "audio-end-ms", G_TYPE_INT64, static_cast<gint64>(ev.audio_end_ms), nullptr));
    rt.turn_open = true;
    rt.speech_end_rt = input_time_at(self, ev.audio_end_ms);
    rt.speech_stopped_us = arrival_us;
    rt.first_delta_us = 0;
    rt.turn_response.clear();
    break;
  case EventKind::InputCommitted:
    /* the turn detection has ended the caller's turn (semantic VAD may wait
     * past speech_stopped; without turn detection the commit was ours).
     * What the turn's gathering held goes now, not with the next sound */
    rt.caller_idle = model_detects_turns(rt);
    if (rt.phase == Phase::Configured)
      flush_append_locked(self);
    break;
  case EventKind::InputTranscriptionDelta:
  case EventKind::InputTranscriptionSegment:
    if (s.partial_transcripts)
      out.post(transcript("user", ev.item_id, "", ev.delta.empty() ? ev.text : ev.delta, false));
    break;
  case EventKind::InputTranscriptionCompleted:
    out.post(transcript("user", ev.item_id, "", ev.text, true));
    add_history_locked(rt, "Caller", ev.text);
    break;
  case EventKind::InputTranscriptionFailed:
    rt.st.errors++;
    out.post(gst_structure_new("realtime-error", "code", G_TYPE_STRING, ev.error.code.c_str(), "type", G_TYPE_STRING,
                               "transcription_failed", "message", G_TYPE_STRING, ev.error.message.c_str(), "param",
                               G_TYPE_STRING, "", "event-id", G_TYPE_STRING, ev.event_id.c_str(), nullptr));
    break;
  case EventKind::ResponseCreated:
    rt.st.responses++;
    if (rt.cancel_next_created) {
      /* the caller interrupted before this response existed */
      rt.cancel_next_created = false;
      rt.cancelled.insert(ev.response.id);
      send_locked(self, pa::rt::build_response_cancel(ev.response.id));
      break;
    }
    rt.response_active = true;
    rt.active_response = ev.response.id;
    if (rt.turn_open && rt.turn_response.empty())
      rt.turn_response = ev.response.id;
    break;
  case EventKind::OutputItemAdded:
  case EventKind::OutputItemDone:
  case EventKind::ItemAdded:
  case EventKind::ItemDone:
    if (ev.item.type == "function_call" && !ev.item.name.empty()) {
      rt.call_names[ev.item.id] = ev.item.name;
      if (!ev.item.call_id.empty())
        rt.call_names[ev.item.call_id] = ev.item.name;
    }
    break;
  case EventKind::AudioDelta: {
    std::string resp = ev.response_id.empty() ? rt.active_response : ev.response_id;
    if (rt.cancelled.count(resp) || rt.ended) {
      rt.st.dropped_cancelled_bytes += ev.audio.size();
      GST_LOG_OBJECT(self, "dropping %zu bytes of audio of cancelled response %s", ev.audio.size(), resp.c_str());
      break;
    }
    rt.st.audio_in_bytes += ev.audio.size();
    if (rt.turn_open && !rt.first_delta_us && (rt.turn_response.empty() || rt.turn_response == resp)) {
      rt.first_delta_us = arrival_us;
      rt.turn_response = resp;
    }
    queue_audio_locked(p, ev.item_id, resp, ev.audio, arrival_us);
    break;
  }
  case EventKind::AudioDone:
    if (ev.item_id == rt.acc_item)
      flush_acc_locked(p, arrival_us);
    if (rt.items.count(ev.item_id))
      rt.items[ev.item_id].complete = true;
    break;
  case EventKind::AudioTranscriptDelta:
  case EventKind::TextDelta:
    if (s.partial_transcripts && !rt.cancelled.count(ev.response_id))
      out.post(transcript("assistant", ev.item_id, ev.response_id, ev.delta, false));
    break;
  case EventKind::AudioTranscriptDone:
  case EventKind::TextDone:
    out.post(transcript("assistant", ev.item_id, ev.response_id, ev.text, true));
    add_history_locked(rt, "Agent", ev.text);
    break;
  case EventKind::FunctionCallArgumentsDone: {
    if (ev.call_id.empty()) {
      rt.st.malformed++;
      GST_WARNING_OBJECT(self, "function call without a call_id: ignored");
      break;
    }
    if (rt.calls.count(ev.call_id) || rt.answered.count(ev.call_id)) {
      GST_WARNING_OBJECT(self, "function call %s seen twice: answered once only", ev.call_id.c_str());
      break;
    }
    FnCall c;
    c.call_id = ev.call_id;
    c.name = ev.name;
    if (c.name.empty() && rt.call_names.count(ev.item_id))
      c.name = rt.call_names[ev.item_id];
    if (c.name.empty() && rt.call_names.count(ev.call_id))
      c.name = rt.call_names[ev.call_id];
    c.arguments = ev.text;
    c.response_id = ev.response_id.empty() ? rt.active_response : ev.response_id;
    c.item_id = ev.item_id;
    c.started_us = arrival_us;
    FnCall &stored = rt.calls[c.call_id] = c;
    start_function_call_locked(self, out, stored);
    break;
  }
  case EventKind::ResponseDone: {
    const std::string &id = ev.response.id;
    if (rt.acc_response == id)
      flush_acc_locked(p, arrival_us);
    rt.done_responses.insert(id);
    for (auto &[item_id, t] : rt.items)
      if (t.response_id == id)
        t.complete = true;
    if (rt.active_response == id || rt.active_response.empty()) {
      rt.response_active = false;
      rt.active_response.clear();
    }
    bool ok = ev.response.status == "completed" || ev.response.status == "incomplete" || ev.response.status.empty();
    if (ev.response.status == "cancelled") {
      rt.cancelled.insert(id);
      rt.st.cancelled_responses++;
    }
    if (rt.turn_response == id && !rt.first_pushed.count(id))
      rt.turn_response.clear(); /* no audio (a tool call): the next response answers the turn */
    const pa::rt::Usage &u = ev.response.usage;
    if (u.present) {
      rt.st.total_tokens += u.total_tokens;
      rt.st.input_tokens += u.input_tokens;
      rt.st.output_tokens += u.output_tokens;
      out.post(gst_structure_new("realtime-usage", "response-id", G_TYPE_STRING, id.c_str(), "total-tokens",
                                 G_TYPE_INT64, u.total_tokens, "input-tokens", G_TYPE_INT64, u.input_tokens,
                                 "output-tokens", G_TYPE_INT64, u.output_tokens, "input-audio-tokens", G_TYPE_INT64,
                                 u.input_audio_tokens, "output-audio-tokens", G_TYPE_INT64, u.output_audio_tokens,
                                 "cached-tokens", G_TYPE_INT64, u.input_cached_tokens, "session-total-tokens",
                                 G_TYPE_INT64, rt.st.total_tokens, nullptr));
    }
    out.post(gst_structure_new("realtime-response-done", "response-id", G_TYPE_STRING, id.c_str(), "status",
                               G_TYPE_STRING, ev.response.status.c_str(), "reason", G_TYPE_STRING,
                               ev.response.reason.c_str(), nullptr));
    response_done_calls_locked(self, out, id, ok);
    if (rt.response_wanted && !rt.response_active && !rt.ended)
      request_response_locked(self, rt.wanted_instructions, rt.wanted_purpose);
    break;
  }
  case EventKind::Error:
    handle_error_locked(self, ev, out);
    break;
  default:
    GST_LOG_OBJECT(self, "event %s", ev.type.c_str());
    break;
  }
}

/* ------------------------------------------------------------ socket callbacks (the model socket thread) */

static void on_ws_open(GstRealtimeModel *self, guint serial) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  if (serial != rt.serial || rt.stopping || rt.ended)
    return;
  if (rt.connect_timer) {
    p->worker->cancel_timer(rt.connect_timer);
    rt.connect_timer = 0;
  }
  rt.phase = Phase::Open;
  GST_INFO_OBJECT(self, "connected to the model");
  post_session_locked(self, out, "connected", "");
  if (p->settings.protocol != PROTOCOL_AUTO) {
    configure_locked(self, out); /* the dialect is fixed: no need to wait for session.created */
  } else {
    rt.created_timer = p->worker->add_timer(kSessionCreatedWaitMs, [self, serial] {
      Outbox o(self);
      std::lock_guard<std::mutex> lg(self->priv->lock);
      Runtime &r = self->priv->rt;
      r.created_timer = 0;
      if (serial == r.serial && r.phase == Phase::Open) {
        GST_INFO_OBJECT(self, "no session.created: assuming the GA protocol");
        r.dialect = Dialect::GA;
        r.dialect_known = true;
        configure_locked(self, o);
      }
      return false;
    });
  }
}

static void on_ws_message(GstRealtimeModel *self, guint serial, std::string_view text) {
  gint64 arrival = g_get_monotonic_time();
  pa::rt::ServerEvent ev;
  std::string err;
  pa::rt::ParseStatus st = pa::rt::parse_server_event(text.data(), text.size(), ev, err);
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  if (serial != rt.serial || rt.stopping)
    return;
  if (st != pa::rt::ParseStatus::Ok) {
    rt.st.malformed++;
    GST_WARNING_OBJECT(self, "ignoring a malformed model event (%s): %.*s", err.c_str(),
                       static_cast<int>(std::min<size_t>(text.size(), 120)), text.data());
    return;
  }
  handle_event_locked(self, ev, out, arrival);
}

static void on_ws_fail(GstRealtimeModel *self, guint serial, int status, const std::string &why) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  if (serial != rt.serial || rt.stopping || rt.ended)
    return;
  GST_WARNING_OBJECT(self, "could not connect to the model: %s (HTTP %d)", why.c_str(), status);
  if (status == 401 || status == 403 || why.find("unauthorized") != std::string::npos)
    fatal_auth_locked(self, out, status ? status : 401, status == 403 ? "http_403" : "http_401", why);
  else
    schedule_reconnect_locked(self, out, why, true);
}

static void on_ws_closed(GstRealtimeModel *self, guint serial, int code, const std::string &reason) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  if (serial != rt.serial || rt.stopping || rt.ended)
    return;
  GST_WARNING_OBJECT(self, "the model closed the connection (%d %s)", code, reason.c_str());
  bool renewal = rt.expired;
  rt.expired = false;
  schedule_reconnect_locked(self, out, "connection closed (" + std::to_string(code) + (reason.empty() ? "" : " ") +
                                           reason + ")",
                            !renewal);
}

/* ------------------------------------------------------------ connecting (worker thread) */

static void connect_attempt(GstRealtimeModel *self, guint serial) {
  GstRealtimeModelPrivate *p = self->priv;
  pa::rt::WsOptions opts;
  std::string location, local_agent, model, key;
  guint timeout;
  int protocol;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (serial != p->rt.serial || p->rt.stopping || p->rt.ended)
      return;
    const Settings &s = p->settings;
    location = s.location;
    local_agent = s.local_agent;
    model = s.model;
    key = env_or(s.api_key, "OPENAI_API_KEY");
    timeout = s.connect_timeout;
    protocol = s.protocol;
    opts.ca_file = s.ca_file;
    if (s.extra_headers) {
      for (gint i = 0; i < gst_structure_n_fields(s.extra_headers); i++) {
        const char *name = gst_structure_nth_field_name(s.extra_headers, i);
        const char *value = gst_structure_get_string(s.extra_headers, name);
        if (value)
          opts.headers.emplace_back(name, value);
      }
    }
  }
  if (location.empty()) {
#ifdef HAVE_LOCALMODEL
    if (!p->engine) {
      pa::local::EngineConfig ec;
      ec.agent_file = local_agent;
      auto engine = std::make_unique<pa::local::Engine>(ec);
      GError *err = nullptr;
      if (!engine->start(&err)) {
        {
          std::lock_guard<std::mutex> g(p->lock);
          p->rt.ended = true;
          p->rt.phase = Phase::Ended;
        }
        GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ_WRITE, ("Could not start the embedded local model."),
                          ("%s", err ? err->message : "unknown error"));
        g_clear_error(&err);
        return;
      }
      p->engine = std::move(engine);
      GST_INFO_OBJECT(self, "embedded local model listening at %s", p->engine->url().c_str());
    }
    location = p->engine->url();
#else
    {
      std::lock_guard<std::mutex> g(p->lock);
      p->rt.ended = true;
      p->rt.phase = Phase::Ended;
    }
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
                      ("No model location is set, and this build has no embedded local model."),
                      ("Set location=wss://... (for example wss://api.openai.com/v1/realtime?model=gpt-realtime)"));
    return;
#endif
  }
  (void)local_agent;
  opts.url = location;
  if (!model.empty() && location.find("model=") == std::string::npos && location.find("intent=") == std::string::npos)
    opts.url += std::string(location.find('?') == std::string::npos ? "?" : "&") + "model=" + model;
  if (!key.empty())
    opts.headers.emplace_back("Authorization", "Bearer " + key);
  {
    PaCall *call;
    {
      std::lock_guard<std::mutex> g(p->lock);
      call = p->call ? PA_CALL(g_object_ref(p->call)) : nullptr;
    }
    if (call) {
      /* under the phone-agent server: the thread that reads the caller's
       * socket reads the model's too (no hand-off between threads per event) */
      opts.host = pa_call_get_media_thread(call);
      g_object_unref(call);
      GST_DEBUG_OBJECT(self, "model socket on %s", opts.host ? "the call's media thread" : "the model socket thread");
    }
  }
  if (protocol == PROTOCOL_BETA)
    opts.headers.emplace_back("OpenAI-Beta", "realtime=v1");

  pa::rt::WsCallbacks cb;
  cb.on_open = [self, serial] { on_ws_open(self, serial); };
  cb.on_message = [self, serial](std::string_view text) { on_ws_message(self, serial, text); };
  cb.on_fail = [self, serial](int status, const std::string &why) { on_ws_fail(self, serial, status, why); };
  cb.on_closed = [self, serial](int code, const std::string &reason) { on_ws_closed(self, serial, code, reason); };
  auto ws = std::make_shared<pa::rt::WsClient>(std::move(cb));
  {
    Outbox out(self);
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    if (serial != rt.serial || rt.stopping || rt.ended)
      return; /* ws is dropped unopened */
    rt.ws = ws;
    rt.phase = Phase::Connecting;
    rt.connect_timer = p->worker->add_timer(timeout, [self, serial] {
      Outbox o(self);
      std::lock_guard<std::mutex> lg(self->priv->lock);
      Runtime &r = self->priv->rt;
      r.connect_timer = 0;
      if (serial == r.serial && r.phase == Phase::Connecting)
        schedule_reconnect_locked(self, o, "connection timed out", true);
      return false;
    });
    post_session_locked(self, out, "connecting", "");
  }
  GST_INFO_OBJECT(self, "connecting to %s", strip_query(opts.url).c_str());
  GError *err = nullptr;
  if (!ws->open(opts, p->cancel, &err)) {
    Outbox out(self);
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    bool bad_url = g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS);
    std::string msg = err ? err->message : "could not connect";
    g_clear_error(&err);
    if (serial == rt.serial && !rt.stopping && !rt.ended) {
      if (bad_url) {
        rt.ended = true;
        rt.phase = Phase::Ended;
        out.later([self, msg] {
          GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("The model location is not a valid ws:// or wss:// URL."),
                            ("%s", msg.c_str()));
        });
      } else {
        schedule_reconnect_locked(self, out, msg, true);
      }
    }
  }
}

/* ------------------------------------------------------------ what the caller heard */

namespace {
struct HeardResult {
  bool answered = false, known = false;
  guint64 played_ms = 0, sent_ms = 0;
};
} // namespace

static HeardResult query_heard(GstRealtimeModel *self, const std::string &item_id) {
  HeardResult r;
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM,
                                     gst_structure_new("phoneagent/heard", "item-id", G_TYPE_STRING, item_id.c_str(), nullptr));
  if (gst_pad_peer_query(self->srcpad, q)) {
    const GstStructure *s = gst_query_get_structure(q);
    gboolean known = FALSE;
    r.answered = true;
    gst_structure_get_boolean(s, "known", &known);
    r.known = known;
    /* heard-ms: the marks, and what played on since the last echo; an
     * older sink answers played-ms alone */
    if (!gst_structure_get_uint64(s, "heard-ms", &r.played_ms))
      gst_structure_get_uint64(s, "played-ms", &r.played_ms);
    gst_structure_get_uint64(s, "sent-ms", &r.sent_ms);
  }
  gst_query_unref(q);
  return r;
}

/* ------------------------------------------------------------ function calls (lock held) */

static void post_result_locked(Outbox &out, const FnCall &c) {
  out.post(gst_structure_new("realtime-function-result", "name", G_TYPE_STRING, c.name.c_str(), "call-id",
                             G_TYPE_STRING, c.call_id.c_str(), "output", G_TYPE_STRING, c.output.c_str(), "error",
                             G_TYPE_BOOLEAN, c.error, "elapsed-ms", G_TYPE_DOUBLE,
                             (g_get_monotonic_time() - c.started_us) / 1000.0, nullptr));
}

/* Sends function_call_output (once per call_id). */
static void answer_call_locked(GstRealtimeModel *self, Outbox &out, FnCall &c) {
  Runtime &rt = self->priv->rt;
  if (c.answered || rt.answered.count(c.call_id))
    return;
  c.answered = true;
  rt.answered.insert(c.call_id);
  if (c.error)
    rt.st.tool_errors++;
  send_locked(self, pa::rt::build_function_call_output(c.call_id, c.output));
  GST_INFO_OBJECT(self, "function %s (%s) answered%s", c.name.c_str(), c.call_id.c_str(), c.error ? " with an error" : "");
  post_result_locked(out, c);
}

/* Once @response_id is done and every call it made has a result: the
 * outputs, then response.create. */
static void try_answer_locked(GstRealtimeModel *self, Outbox &out, const std::string &response_id) {
  Runtime &rt = self->priv->rt;
  if (!rt.done_responses.count(response_id))
    return;
  bool any = false;
  for (auto &[id, c] : rt.calls) {
    if (c.response_id != response_id || c.answered || c.how == FnCall::How::EndCall || c.how == FnCall::How::Transfer)
      continue;
    if (!c.have_output)
      return;
    any = true;
  }
  if (!any)
    return;
  for (auto it = rt.calls.begin(); it != rt.calls.end();) {
    FnCall &c = it->second;
    if (c.response_id == response_id && !c.answered && c.how != FnCall::How::EndCall &&
        c.how != FnCall::How::Transfer) {
      answer_call_locked(self, out, c);
      it = rt.calls.erase(it);
    } else {
      ++it;
    }
  }
  if (!rt.cancelled.count(response_id) && !rt.ended)
    request_response_locked(self, "", "");
}

static void on_tool_http_result(GstRealtimeModel *self, const std::string &call_id, const pa::rt::HttpResult &r);
static gboolean set_call_result(GstRealtimeModel *self, const std::string &call_id, const std::string &output,
                                bool error);

static void start_function_call_locked(GstRealtimeModel *self, Outbox &out, FnCall &c) {
  GstRealtimeModelPrivate *p = self->priv;
  Runtime &rt = p->rt;
  const Settings &s = p->settings;
  rt.st.function_calls++;
  const char *handler = "none";
  if (s.builtin_tools && c.name == "end_call") {
    c.how = FnCall::How::EndCall;
    handler = "builtin";
  } else if (s.builtin_tools && c.name == "transfer_to_human" && !s.transfer_number.empty()) {
    c.how = FnCall::How::Transfer;
    handler = "builtin";
  } else if (!s.tool_url.empty()) {
    c.how = FnCall::How::Url;
    handler = "tool-url";
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, c.name.c_str());
    json_builder_set_member_name(b, "call_id");
    json_builder_add_string_value(b, c.call_id.c_str());
    json_builder_set_member_name(b, "arguments");
    JsonParser *jp = json_parser_new();
    if (json_parser_load_from_data(jp, c.arguments.data(), static_cast<gssize>(c.arguments.size()), nullptr) &&
        json_parser_get_root(jp))
      json_builder_add_value(b, json_node_copy(json_parser_get_root(jp)));
    else
      json_builder_add_string_value(b, c.arguments.c_str());
    g_object_unref(jp);
    std::string call_sid = s.call_sid.empty() ? rt.call_sid : s.call_sid;
    json_builder_set_member_name(b, "call_sid");
    json_builder_add_string_value(b, call_sid.c_str());
    json_builder_set_member_name(b, "stream_sid");
    json_builder_add_string_value(b, rt.stream_sid.c_str());
    json_builder_set_member_name(b, "session_id");
    json_builder_add_string_value(b, rt.session_id.c_str());
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    gchar *body = json_to_string(root, FALSE);
    std::string call_id = c.call_id;
    p->worker->http_post(s.tool_url, "application/json", body, {}, s.tool_timeout,
                         [self, call_id](pa::rt::HttpResult r) { on_tool_http_result(self, call_id, r); });
    g_free(body);
    json_node_unref(root);
    g_object_unref(b);
  } else if (g_signal_has_handler_pending(self, model_signals[SIGNAL_FUNCTION_CALL], 0, TRUE)) {
    c.how = FnCall::How::Signal;
    handler = "signal";
    std::string name = c.name, call_id = c.call_id, args = c.arguments;
    p->worker->invoke([self, name, call_id, args] {
      g_signal_emit(self, model_signals[SIGNAL_FUNCTION_CALL], 0, name.c_str(), call_id.c_str(), args.c_str());
    });
    guint timeout = s.tool_timeout;
    c.timer = p->worker->add_timer(timeout, [self, call_id, timeout] {
      set_call_result(self, call_id,
                      error_json("The application did not answer within " + std::to_string(timeout) + " ms."), true);
      return false;
    });
  } else {
    c.how = FnCall::How::None;
    c.have_output = true;
    c.error = true;
    c.output = error_json("No handler is configured for the function " + c.name + ".");
  }
  GST_INFO_OBJECT(self, "function call %s (%s) → %s", c.name.c_str(), c.call_id.c_str(), handler);
  out.post(gst_structure_new("realtime-function-call", "name", G_TYPE_STRING, c.name.c_str(), "call-id",
                             G_TYPE_STRING, c.call_id.c_str(), "arguments", G_TYPE_STRING, c.arguments.c_str(),
                             "handler", G_TYPE_STRING, handler, nullptr));
}

static gboolean set_call_result(GstRealtimeModel *self, const std::string &call_id, const std::string &output,
                                bool error) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  auto it = rt.calls.find(call_id);
  if (it == rt.calls.end() || it->second.have_output || it->second.answered) {
    GST_INFO_OBJECT(self, "result for call %s ignored: unknown or already answered", call_id.c_str());
    return FALSE;
  }
  FnCall &c = it->second;
  if (c.how == FnCall::How::EndCall || c.how == FnCall::How::Transfer)
    return FALSE;
  c.have_output = true;
  c.output = output.empty() ? "{}" : output;
  c.error = error;
  if (c.timer)
    p->worker->cancel_timer(c.timer);
  c.timer = 0;
  try_answer_locked(self, out, c.response_id);
  return TRUE;
}

static void on_tool_http_result(GstRealtimeModel *self, const std::string &call_id, const pa::rt::HttpResult &r) {
  if (r.cancelled)
    return; /* stopping */
  std::string output;
  bool error = false;
  if (r.status >= 200 && r.status < 300) {
    output = r.body.empty() ? "{}" : r.body;
  } else if (r.status > 0) {
    error = true;
    output = "{\"error\":" + json_string("The tool server answered HTTP " + std::to_string(r.status) + ".") +
             ",\"body\":" + json_string(r.body.substr(0, 2000)) + "}";
  } else {
    error = true;
    output = error_json(r.timed_out ? "The tool did not answer in time." : "The tool server could not be reached: " + r.error);
  }
  set_call_result(self, call_id, output, error);
}

/* ------------------------------------------------------------ end_call and transfer_to_human */

static std::string arg_field(const std::string &args, const char *field) {
  std::string out;
  JsonParser *jp = json_parser_new();
  if (json_parser_load_from_data(jp, args.data(), static_cast<gssize>(args.size()), nullptr)) {
    JsonNode *root = json_parser_get_root(jp);
    if (root && JSON_NODE_HOLDS_OBJECT(root))
      out = json_object_get_string_member_with_default(json_node_get_object(root), field, "");
  }
  g_object_unref(jp);
  return out;
}

static bool poll_action(GstRealtimeModel *self);

static void builtin_done_locked(GstRealtimeModel *self, Outbox &out, FnCall &c, bool error, const std::string &output,
                                bool respond) {
  c.have_output = true;
  c.error = error;
  c.output = output;
  std::string id = c.call_id;
  answer_call_locked(self, out, c);
  self->priv->rt.calls.erase(id); /* c is gone */
  if (respond)
    request_response_locked(self, "", "");
}

static void schedule_action_locked(GstRealtimeModel *self, Outbox &out, FnCall &c) {
  GstRealtimeModelPrivate *p = self->priv;
  Runtime &rt = p->rt;
  const Settings &s = p->settings;
  if (rt.action.kind != Action::Kind::None) {
    builtin_done_locked(self, out, c, true, error_json("The call is already ending or being transferred."), false);
    return;
  }
  if (c.how == FnCall::How::Transfer) {
    std::string missing;
    if (env_or(s.twilio_account_sid, "TWILIO_ACCOUNT_SID").empty() && rt.account_sid.empty())
      missing += " twilio-account-sid";
    if (env_or(s.twilio_auth_token, "TWILIO_AUTH_TOKEN").empty())
      missing += " twilio-auth-token";
    if (s.call_sid.empty() && rt.call_sid.empty())
      missing += " call-sid";
    if (!missing.empty()) {
      GST_WARNING_OBJECT(self, "cannot transfer: missing%s", missing.c_str());
      builtin_done_locked(self, out, c, true,
                          error_json("The transfer is not available right now (not configured: missing" + missing + ")."),
                          true);
      return;
    }
  }
  Action a;
  a.kind = c.how == FnCall::How::EndCall ? Action::Kind::End : Action::Kind::Transfer;
  a.call_id = c.call_id;
  a.reason = arg_field(c.arguments, "reason");
  /* the goodbye/transfer sentence: this response's last audio item, else
   * the last one still playing */
  for (auto it = rt.item_order.rbegin(); it != rt.item_order.rend(); ++it) {
    const ItemTrack &t = rt.items[*it];
    if (t.response_id == c.response_id && t.generated > 0) {
      a.item_id = *it;
      break;
    }
  }
  if (a.item_id.empty() && !rt.last_audio_item.empty() && rt.items.count(rt.last_audio_item)) {
    const ItemTrack &t = rt.items[rt.last_audio_item];
    if (!t.truncated && !t.heard)
      a.item_id = rt.last_audio_item;
  }
  guint64 gen_ms = a.item_id.empty() ? 0 : rt.items[a.item_id].generated / pa::rt::bytes_per_ms(rt.out_fmt);
  a.started_us = g_get_monotonic_time();
  a.deadline_us = a.started_us + static_cast<gint64>(gen_ms + 15000) * 1000;
  GST_INFO_OBJECT(self, "%s requested; waiting until the caller heard item %s (%" G_GUINT64_FORMAT " ms)",
                  a.kind == Action::Kind::End ? "end_call" : "transfer_to_human", a.item_id.c_str(), gen_ms);
  rt.calls.erase(a.call_id); /* c is gone */
  rt.answered.insert(a.call_id);
  a.timer = p->worker->add_timer(kHeardPollMs, [self] { return poll_action(self); });
  rt.action = a;
}

static void response_done_calls_locked(GstRealtimeModel *self, Outbox &out, const std::string &response_id, bool ok) {
  Runtime &rt = self->priv->rt;
  try_answer_locked(self, out, response_id);
  std::vector<std::string> builtins;
  for (auto &[id, c] : rt.calls)
    if (c.response_id == response_id && (c.how == FnCall::How::EndCall || c.how == FnCall::How::Transfer))
      builtins.push_back(id);
  for (const auto &id : builtins) {
    FnCall &c = rt.calls[id];
    if (!ok)
      builtin_done_locked(self, out, c, true, error_json("The response was interrupted; nothing was done."), false);
    else
      schedule_action_locked(self, out, c);
  }
}

static void on_transfer_result(GstRealtimeModel *self, const pa::rt::HttpResult &r);

static void answer_action_locked(GstRealtimeModel *self, Outbox &out, bool error, const std::string &output,
                                 bool respond) {
  Runtime &rt = self->priv->rt;
  FnCall c;
  c.call_id = rt.action.call_id;
  c.name = rt.action.kind == Action::Kind::End ? "end_call" : "transfer_to_human";
  c.started_us = rt.action.started_us;
  c.have_output = true;
  c.error = error;
  c.output = output;
  rt.answered.erase(c.call_id); /* reserved at schedule time */
  answer_call_locked(self, out, c);
  rt.action = Action();
  if (respond)
    request_response_locked(self, "", "");
}

static void end_locked(GstRealtimeModel *self, Outbox &out, const char *action, const std::string &reason,
                       const std::string &number, const std::string &call_id) {
  Runtime &rt = self->priv->rt;
  out.post(gst_structure_new("realtime-call-end", "action", G_TYPE_STRING, action, "reason", G_TYPE_STRING,
                             reason.c_str(), "number", G_TYPE_STRING, number.c_str(), "call-id", G_TYPE_STRING,
                             call_id.c_str(), nullptr));
  rt.ended = true;
  rt.phase = Phase::Ended;
  if (rt.ws)
    rt.ws->close(1000, "call ended");
  post_session_locked(self, out, "closed", action);
}

static void execute_action(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  const Settings &s = p->settings;
  if (rt.action.kind == Action::Kind::End) {
    std::string call_id = rt.action.call_id, reason = rt.action.reason;
    answer_action_locked(self, out, false, "{\"ok\":true}", false);
    GST_INFO_OBJECT(self, "ending the call (%s)", reason.c_str());
    queue_eos_locked(p);
    end_locked(self, out, "end-call", reason, "", call_id);
    return;
  }
  rt.action.executing = true;
  std::string account = env_or(s.twilio_account_sid, "TWILIO_ACCOUNT_SID");
  if (account.empty())
    account = rt.account_sid;
  std::string token = env_or(s.twilio_auth_token, "TWILIO_AUTH_TOKEN");
  std::string call_sid = s.call_sid.empty() ? rt.call_sid : s.call_sid;
  std::string base = s.twilio_api_base_url;
  while (!base.empty() && base.back() == '/')
    base.pop_back();
  std::string url = base + "/2010-04-01/Accounts/" + account + "/Calls/" + call_sid + ".json";
  gchar *number = g_markup_escape_text(s.transfer_number.c_str(), -1);
  std::string twiml = "<Response>";
  if (!s.transfer_message.empty()) {
    gchar *say = g_markup_escape_text(s.transfer_message.c_str(), -1);
    twiml += std::string("<Say>") + say + "</Say>";
    g_free(say);
  }
  twiml += std::string("<Dial>") + number + "</Dial></Response>";
  g_free(number);
  gchar *form = soup_form_encode("Twiml", twiml.c_str(), nullptr);
  std::string creds = account + ":" + token;
  std::string auth = "Basic " + pa::base64_encode(reinterpret_cast<const uint8_t *>(creds.data()), creds.size());
  GST_INFO_OBJECT(self, "transferring call %s to %s", call_sid.c_str(), s.transfer_number.c_str());
  p->worker->http_post(url, "application/x-www-form-urlencoded", form, {{"Authorization", auth}}, 10000,
                       [self](pa::rt::HttpResult r) { on_transfer_result(self, r); });
  g_free(form);
}

static void on_transfer_result(GstRealtimeModel *self, const pa::rt::HttpResult &r) {
  if (r.cancelled)
    return;
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  if (rt.action.kind != Action::Kind::Transfer)
    return;
  std::string call_id = rt.action.call_id, reason = rt.action.reason, number = p->settings.transfer_number;
  if (r.status >= 200 && r.status < 300) {
    answer_action_locked(self, out, false, "{\"ok\":true}", false);
    end_locked(self, out, "transfer", reason, number, call_id);
    return;
  }
  std::string why = r.status ? "Twilio answered HTTP " + std::to_string(r.status) : r.error;
  GST_WARNING_OBJECT(self, "transfer failed: %s %.200s", why.c_str(), r.body.c_str());
  rt.st.errors++;
  out.post(gst_structure_new("realtime-error", "code", G_TYPE_STRING, "transfer-failed", "type", G_TYPE_STRING,
                             "twilio", "message", G_TYPE_STRING, (why + " " + r.body.substr(0, 500)).c_str(), "param",
                             G_TYPE_STRING, "", "event-id", G_TYPE_STRING, "", nullptr));
  answer_action_locked(self, out, true, error_json("The transfer failed (" + why + "). Apologise to the caller."), true);
}

/* Worker timer: has the caller heard the goodbye/transfer sentence? */
static bool poll_action(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  std::string item;
  guint64 gen_ms = 0, queued = 0;
  gint64 deadline;
  {
    Outbox out(self);
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    Action &a = rt.action;
    if (a.kind == Action::Kind::None || a.executing || rt.stopping)
      return false;
    if (a.interrupted || rt.ended) {
      GST_INFO_OBJECT(self, "the caller interrupted: not %s", a.kind == Action::Kind::End ? "ending" : "transferring");
      answer_action_locked(self, out,
                           true, error_json("The caller interrupted before hearing it; the call continues."), false);
      return false;
    }
    item = a.item_id;
    deadline = a.deadline_us;
    auto it = rt.items.find(item);
    if (it != rt.items.end()) {
      unsigned bpm = pa::rt::bytes_per_ms(rt.out_fmt);
      gen_ms = it->second.generated / bpm;
      queued = it->second.queued + (rt.acc_item == item ? rt.acc.size() : 0);
      if (rt.acc_item == item && !rt.acc.empty() && !rt.response_active)
        flush_acc_locked(p, g_get_monotonic_time());
    } else {
      item.clear();
    }
    if (item.empty())
      queued = rt.outq_bytes;
  }
  bool heard;
  if (queued > 0) {
    heard = false;
  } else if (item.empty()) {
    heard = true;
  } else {
    HeardResult h = query_heard(self, item);
    /* without a twiliosink downstream nobody can tell: the queue is empty */
    heard = !h.answered || !h.known || h.played_ms + kFrameMs >= gen_ms;
  }
  if (!heard && g_get_monotonic_time() < deadline)
    return true;
  if (!heard)
    GST_WARNING_OBJECT(self, "playback of the last sentence was not confirmed in time; acting anyway");
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (p->rt.action.interrupted)
      return true; /* next tick answers it */
  }
  execute_action(self);
  return false;
}

/* ------------------------------------------------------------ barge-in */

static void do_barge_in(GstRealtimeModel *self, const std::string &source, GstClockTime onset, GstClockTime decision) {
  GstRealtimeModelPrivate *p = self->priv;
  std::lock_guard<std::mutex> bg(p->barge_lock);
  struct Cand {
    std::string id;
    guint64 gen_ms, pushed_ms;
    bool complete;
  };
  std::vector<Cand> cands;
  bool queued, in_progress;
  std::string resp;
  gint64 since_push;
  {
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    if (rt.ended || rt.stopping || rt.phase == Phase::Idle)
      return;
    unsigned bpm = pa::rt::bytes_per_ms(rt.out_fmt);
    queued = rt.outq_bytes > 0 || !rt.acc.empty();
    in_progress = rt.response_active && !rt.cancelled.count(rt.active_response);
    resp = rt.active_response;
    for (const auto &id : rt.item_order) {
      const ItemTrack &t = rt.items[id];
      if (t.generated > 0 && !t.truncated && !t.heard)
        cands.push_back({id, t.generated / bpm, t.pushed / bpm, t.complete});
    }
    since_push = rt.last_push_us ? g_get_monotonic_time() - rt.last_push_us : G_MAXINT64;
  }
  if (!queued && !in_progress) {
    bool audible = false;
    for (const auto &c : cands) {
      HeardResult h = query_heard(self, c.id);
      if (h.answered ? (h.known && (h.played_ms + kFrameMs < c.gen_ms || !c.complete))
                     : since_push < G_USEC_PER_SEC) {
        audible = true;
      } else if (h.answered && c.complete) {
        std::lock_guard<std::mutex> g(p->lock);
        if (p->rt.items.count(c.id))
          p->rt.items[c.id].heard = true;
      }
    }
    if (!audible) {
      GST_DEBUG_OBJECT(self, "speech (%s) while the agent is silent: no barge-in", source.c_str());
      return;
    }
  }
  size_t dropped;
  unsigned out_bpm;
  {
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    out_bpm = pa::rt::bytes_per_ms(rt.out_fmt);
    if (in_progress) {
      send_locked(self, pa::rt::build_response_cancel(resp));
      if (!resp.empty())
        rt.cancelled.insert(resp);
      else
        rt.cancel_next_created = true; /* requested, not created yet */
      rt.response_active = false;
      rt.active_response.clear();
    }
    dropped = drop_queued_audio_locked(p);
    if (rt.action.kind != Action::Kind::None && !rt.action.executing)
      rt.action.interrupted = true;
    rt.response_wanted = false; /* the caller speaks: the model answers that */
    rt.st.barge_ins++;
    rt.turn_open = false;
  }
  GST_INFO_OBJECT(self, "barge-in (%s): cancel %s, %zu ms of queued audio dropped", source.c_str(),
                  in_progress ? resp.c_str() : "(none)", dropped / out_bpm);
  gst_pad_push_event(self->srcpad, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_OOB,
                                                        gst_structure_new("phoneagent/clear", "reason", G_TYPE_STRING,
                                                                          "barge-in", nullptr)));
  guint truncated = 0;
  std::string first_item;
  guint64 first_end = 0, first_gen = 0, first_played = 0;
  for (const auto &c : cands) {
    HeardResult h = query_heard(self, c.id);
    guint64 end;
    if (h.answered) {
      if (!h.known)
        end = 0; /* never reached the caller */
      else if (h.played_ms >= c.gen_ms && c.complete) {
        std::lock_guard<std::mutex> g(p->lock);
        p->rt.items[c.id].heard = true;
        continue;
      } else
        end = std::min(h.played_ms, c.gen_ms);
    } else {
      end = std::min(c.pushed_ms, c.gen_ms); /* nobody downstream can tell: what left this element */
    }
    {
      std::lock_guard<std::mutex> g(p->lock);
      send_locked(self, pa::rt::build_truncate(c.id, 0, static_cast<int64_t>(end)));
      p->rt.items[c.id].truncated = true;
      p->rt.st.truncates++;
    }
    GST_INFO_OBJECT(self, "truncated %s at %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " ms", c.id.c_str(), end,
                    c.gen_ms);
    if (!truncated++) {
      first_item = c.id;
      first_end = end;
      first_gen = c.gen_ms;
      first_played = h.played_ms;
    }
  }
  GstStructure *s = gst_structure_new("realtime-barge-in", "source", G_TYPE_STRING, source.c_str(),
      "onset-running-time", G_TYPE_UINT64, onset, "decision-running-time", G_TYPE_UINT64, decision, "response-id",
      G_TYPE_STRING, resp.c_str(), "cancelled", G_TYPE_BOOLEAN, in_progress, "item-id", G_TYPE_STRING,
      first_item.c_str(), "audio-end-ms", G_TYPE_UINT64, first_end, "generated-ms", G_TYPE_UINT64, first_gen,
      "played-ms", G_TYPE_UINT64, first_played, "truncated-items", G_TYPE_UINT, truncated, "dropped-queued-ms",
      G_TYPE_UINT64, static_cast<guint64>(dropped / out_bpm), "running-time", G_TYPE_UINT64,
      running_time(GST_ELEMENT(self)), nullptr);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

/* ------------------------------------------------------------ source-pad task */

static void push_stream_start(GstRealtimeModel *self, AudioFormat fmt) {
  gchar *id = gst_pad_create_stream_id(self->srcpad, GST_ELEMENT(self), "agent");
  GstEvent *ss = gst_event_new_stream_start(id);
  gst_event_set_group_id(ss, gst_util_group_id_next());
  g_free(id);
  gst_pad_push_event(self->srcpad, ss);
  GstCaps *caps = caps_for(fmt);
  gst_pad_push_event(self->srcpad, gst_event_new_caps(caps));
  gst_caps_unref(caps);
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  gst_pad_push_event(self->srcpad, gst_event_new_segment(&seg));
}

/* Takes the front of the output queue (lock held). */
static OutItem pop_out_item_locked(Runtime &rt) {
  OutItem item = std::move(rt.outq.front());
  rt.outq.pop_front();
  if (item.kind == OutItem::Kind::Buffer) {
    size_t n = gst_buffer_get_size(item.buffer);
    rt.outq_bytes -= std::min(rt.outq_bytes, n);
    auto it = rt.items.find(item.item_id);
    if (it != rt.items.end())
      it->second.queued -= std::min<guint64>(it->second.queued, n);
  }
  return item;
}

/* At most this much audio goes downstream in one buffer list. */
constexpr guint kListMaxMs = 100;

/* Takes the next thing to push from the output queue: an item and, after a
 * frame, the frames that follow it at once (lock held). */
static void pop_batch_locked(Runtime &rt, OutItem &item, std::vector<OutItem> &more, AudioFormat &fmt, bool &start) {
  fmt = rt.out_fmt;
  item = pop_out_item_locked(rt);
  /* the frames of a model delta arrive together: one push, one wake-up of
   * the sink, one write to Twilio, instead of one per 20 ms. A response's
   * first frame goes alone (its latency is measured when it has gone). */
  if (item.kind == OutItem::Kind::Buffer && !item.first_of_response) {
    size_t bytes = gst_buffer_get_size(item.buffer);
    const size_t max = kListMaxMs * pa::rt::bytes_per_ms(fmt);
    while (!rt.outq.empty() && rt.outq.front().kind == OutItem::Kind::Buffer && !rt.outq.front().first_of_response &&
           bytes + gst_buffer_get_size(rt.outq.front().buffer) <= max) {
      bytes += gst_buffer_get_size(rt.outq.front().buffer);
      more.push_back(pop_out_item_locked(rt));
    }
  }
  start = !rt.stream_started;
  rt.stream_started = true;
}

/* Pushes what pop_batch_locked() took (push_lock held, not the lock). */
static GstFlowReturn push_batch(GstRealtimeModel *self, OutItem &item, std::vector<OutItem> &more, AudioFormat fmt,
                                bool start) {
  GstRealtimeModelPrivate *p = self->priv;
  if (start)
    push_stream_start(self, fmt);

  GstFlowReturn ret = GST_FLOW_OK;
  switch (item.kind) {
  case OutItem::Kind::Buffer: {
    GstClockTime now = running_time(GST_ELEMENT(self));
    GstBufferList *list = more.empty() ? nullptr : gst_buffer_list_new_sized(more.size() + 1);
    size_t total = 0;
    {
      std::lock_guard<std::mutex> g(p->lock);
      GstClockTime pts = p->rt.next_pts;
      if (GST_CLOCK_TIME_IS_VALID(now) && now > pts)
        pts = now; /* the agent was silent: a gap */
      for (size_t i = 0; i <= more.size(); i++) {
        OutItem &it = i ? more[i - 1] : item;
        size_t n = gst_buffer_get_size(it.buffer);
        it.bytes = n;
        GstClockTime dur = gst_util_uint64_scale(n, GST_MSECOND, pa::rt::bytes_per_ms(fmt));
        GST_BUFFER_PTS(it.buffer) = pts;
        GST_BUFFER_DURATION(it.buffer) = dur;
        pts += dur;
        total += n;
        if (list) {
          gst_buffer_list_add(list, it.buffer);
          it.buffer = nullptr;
        }
      }
      p->rt.next_pts = pts;
    }
    if (list) {
      ret = gst_pad_push_list(self->srcpad, list);
    } else {
      GstBuffer *buf = item.buffer;
      item.buffer = nullptr;
      ret = gst_pad_push(self->srcpad, buf);
    }
    Outbox out(self);
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    rt.st.pushed_bytes += total;
    rt.last_push_us = g_get_monotonic_time();
    for (size_t i = 0; i <= more.size(); i++) {
      const OutItem &pushed = i ? more[i - 1] : item;
      auto it = rt.items.find(pushed.item_id);
      if (it != rt.items.end())
        it->second.pushed += pushed.bytes;
    }
    if (item.first_of_response && rt.turn_open && rt.turn_response == item.response_id) {
      rt.turn_open = false;
      GstClockTime pushed_at = running_time(GST_ELEMENT(self));
      double latency = (GST_CLOCK_TIME_IS_VALID(pushed_at) && GST_CLOCK_TIME_IS_VALID(rt.speech_end_rt) &&
                        pushed_at >= rt.speech_end_rt)
                           ? (pushed_at - rt.speech_end_rt) / 1e6
                           : -1.0;
      double server = rt.first_delta_us ? (rt.first_delta_us - rt.speech_stopped_us) / 1000.0 : -1.0;
      out.post(gst_structure_new("realtime-latency", "response-id", G_TYPE_STRING, item.response_id.c_str(),
                                 "latency-ms", G_TYPE_DOUBLE, latency, "server-ms", G_TYPE_DOUBLE, server,
                                 "speech-end-running-time", G_TYPE_UINT64, rt.speech_end_rt, nullptr));
    }
    break;
  }
  case OutItem::Kind::ItemStart:
    GST_DEBUG_OBJECT(self, "item %s starts", item.item_id.c_str());
    gst_pad_push_event(self->srcpad,
        gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
            gst_structure_new("phoneagent/item-start", "item-id", G_TYPE_STRING, item.item_id.c_str(), "response-id",
                              G_TYPE_STRING, item.response_id.c_str(), nullptr)));
    break;
  case OutItem::Kind::Event:
    gst_pad_push_event(self->srcpad, item.event);
    item.event = nullptr;
    break;
  case OutItem::Kind::Eos:
    GST_INFO_OBJECT(self, "pushing EOS");
    gst_pad_push_event(self->srcpad, gst_event_new_eos());
    ret = GST_FLOW_EOS;
    break;
  }
  free_out_item(item);
  return ret;
}

static void src_loop(gpointer data) {
  auto *self = GST_REALTIME_MODEL(data);
  GstRealtimeModelPrivate *p = self->priv;
  OutItem item;
  std::vector<OutItem> more; /* frames that follow item at once: pushed with it as one list */
  bool start = false;
  AudioFormat fmt;
  GstFlowReturn ret = GST_FLOW_OK;
  {
    std::unique_lock<std::mutex> g(p->lock);
    p->out_cond.wait(g, [p] {
      return p->rt.out_flushing || !p->rt.outq.empty() || p->rt.direct_flow != GST_FLOW_OK;
    });
    if (p->rt.out_flushing) {
      g.unlock();
      gst_pad_pause_task(self->srcpad);
      return;
    }
  }
  /* pushes from here and from a media thread (push_direct) take turns */
  std::lock_guard<std::mutex> pushing(p->push_lock);
  {
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    if (rt.direct_flow != GST_FLOW_OK) {
      ret = rt.direct_flow; /* a push on the media thread failed: handled here */
      rt.direct_flow = GST_FLOW_OK;
    } else if (rt.outq.empty() || rt.out_flushing) {
      return; /* a media thread pushed it meanwhile */
    } else {
      pop_batch_locked(rt, item, more, fmt, start);
    }
  }
  if (ret == GST_FLOW_OK)
    ret = push_batch(self, item, more, fmt, start);
  if (ret == GST_FLOW_OK)
    return;
  if (ret == GST_FLOW_FLUSHING || ret == GST_FLOW_EOS) {
    GST_DEBUG_OBJECT(self, "pausing the task: %s", gst_flow_get_name(ret));
  } else if (ret == GST_FLOW_NOT_LINKED || ret < GST_FLOW_EOS) {
    GST_ELEMENT_FLOW_ERROR(self, ret);
    gst_pad_push_event(self->srcpad, gst_event_new_eos());
  }
  gst_pad_pause_task(self->srcpad);
}

/* TRUE when the agent's audio may be pushed from a server media thread
 * (push_direct): the element and its pipeline are PLAYING (a sink on its way
 * to PAUSED would hold the push in its preroll), and what it pushes into
 * is twiliosink itself, which never waits on a media thread (a queue or
 * anything else there may). A hint read without locks, checked before
 * every push; the task does the rest. */
static bool may_push_direct(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  if (!p->playing.load())
    return false;
  GstObject *top = GST_OBJECT(self);
  while (GST_OBJECT_PARENT(top))
    top = GST_OBJECT_PARENT(top);
  if (GST_IS_ELEMENT(top) && GST_STATE_TARGET(GST_ELEMENT(top)) != GST_STATE_PLAYING)
    return false;
  GstPad *peer = gst_pad_get_peer(self->srcpad);
  if (!peer)
    return false;
  GstObject *sink = gst_pad_get_parent(peer);
  /* by name: the twilio plugin is not a dependency (registered once
   * loaded; a GType never changes) */
  static std::atomic<GType> twiliosink_type{0};
  GType type = twiliosink_type.load(std::memory_order_relaxed);
  if (!type)
    twiliosink_type.store(type = g_type_from_name("GstTwilioSink"), std::memory_order_relaxed);
  bool ok = sink && type && G_TYPE_CHECK_INSTANCE_TYPE(sink, type);
  if (sink)
    gst_object_unref(sink);
  gst_object_unref(peer);
  return ok;
}

/* How much audio twiliosink holds back now (its heard query; 0 when nobody
 * answers). */
static guint64 query_held_ms(GstRealtimeModel *self) {
  guint64 held = 0;
  GstQuery *q = gst_query_new_custom(GST_QUERY_CUSTOM, gst_structure_new_empty("phoneagent/heard"));
  if (gst_pad_peer_query(self->srcpad, q))
    gst_structure_get_uint64(gst_query_get_structure(q), "held-ms", &held);
  gst_query_unref(q);
  return held;
}

namespace {
thread_local bool tls_pushing_direct = false;
}

/* Under the server, the model's socket is read on the call's media thread
 * (ws-on-media-thread): the audio it brings is pushed from there at once,
 * into twiliosink, which never waits on a media thread and sends what the
 * lead holds back from a timer on that thread. The task then sleeps: no
 * thread wake-up for the agent's audio at all. An item start while
 * twiliosink still holds audio, events, EOS and failed pushes are left to
 * the task (it may wait; a media thread may not). FALSE when this thread
 * may not push: the caller wakes the task instead. */
static bool push_direct(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  if (!pa::on_media_thread() || tls_pushing_direct || !may_push_direct(self))
    return false;
  std::unique_lock<std::mutex> pushing(p->push_lock, std::try_to_lock);
  if (!pushing.owns_lock())
    return false; /* the task is pushing: it takes this too */
  tls_pushing_direct = true;
  bool wake_task = false;
  for (;;) {
    OutItem item;
    std::vector<OutItem> more;
    AudioFormat fmt;
    bool start = false;
    {
      std::unique_lock<std::mutex> g(p->lock);
      Runtime &rt = p->rt;
      if (rt.out_flushing || rt.outq.empty())
        break;
      OutItem::Kind kind = rt.outq.front().kind;
      if (kind == OutItem::Kind::Event || kind == OutItem::Kind::Eos) {
        wake_task = true;
        break;
      }
      if (kind == OutItem::Kind::ItemStart) {
        /* twiliosink sends what it holds of the previous item before the
         * new one starts, waiting if it must: not here */
        g.unlock();
        guint64 held = query_held_ms(self);
        g.lock();
        if (held > 0) {
          wake_task = true;
          break;
        }
        if (rt.outq.empty() || rt.outq.front().kind != OutItem::Kind::ItemStart)
          continue; /* it changed meanwhile (a barge-in dropped it) */
      }
      pop_batch_locked(rt, item, more, fmt, start);
      if (item.kind == OutItem::Kind::Buffer) {
        size_t n = gst_buffer_get_size(item.buffer);
        for (const auto &m : more)
          n += gst_buffer_get_size(m.buffer);
        rt.st.pushed_direct_bytes += n;
      }
    }
    GstFlowReturn ret = push_batch(self, item, more, fmt, start);
    if (ret != GST_FLOW_OK) {
      std::lock_guard<std::mutex> g(p->lock);
      p->rt.direct_flow = ret;
      wake_task = true;
      break;
    }
  }
  tls_pushing_direct = false;
  pushing.unlock();
  if (wake_task)
    p->out_cond.notify_one();
  return true;
}

static gboolean src_activate_mode(GstPad *pad, GstObject *parent, GstPadMode mode, gboolean active) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(parent);
  if (mode != GST_PAD_MODE_PUSH)
    return FALSE;
  {
    std::lock_guard<std::mutex> g(self->priv->lock);
    self->priv->rt.out_flushing = !active;
    if (active)
      self->priv->rt.direct_flow = GST_FLOW_OK;
    self->priv->out_cond.notify_all();
  }
  if (active)
    return gst_pad_start_task(pad, src_loop, self, nullptr);
  return gst_pad_stop_task(pad);
}

static gboolean src_query(GstPad *pad, GstObject *parent, GstQuery *query) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(parent);
  switch (GST_QUERY_TYPE(query)) {
  case GST_QUERY_CAPS: {
    GstCaps *filter = nullptr;
    gst_query_parse_caps(query, &filter);
    GstCaps *caps;
    {
      std::lock_guard<std::mutex> g(self->priv->lock);
      caps = self->priv->rt.phase != Phase::Idle ? caps_for(self->priv->rt.out_fmt) : gst_pad_get_pad_template_caps(pad);
    }
    if (filter) {
      GstCaps *tmp = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
      gst_caps_unref(caps);
      caps = tmp;
    }
    gst_query_set_caps_result(query, caps);
    gst_caps_unref(caps);
    return TRUE;
  }
  case GST_QUERY_LATENCY:
    /* audio is pushed as it arrives; a frame is 20 ms */
    gst_query_set_latency(query, TRUE, kFrameMs * GST_MSECOND, GST_CLOCK_TIME_NONE);
    return TRUE;
  default:
    return gst_pad_query_default(pad, parent, query);
  }
}

static gboolean src_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_RECONFIGURE:
  case GST_EVENT_QOS:
  case GST_EVENT_LATENCY:
  case GST_EVENT_NAVIGATION:
  case GST_EVENT_SEEK: {
    bool seek = GST_EVENT_TYPE(event) == GST_EVENT_SEEK;
    gst_event_unref(event);
    return !seek;
  }
  default:
    return gst_pad_event_default(pad, parent, event);
  }
}

/* ------------------------------------------------------------ sink pad */

static GstFlowReturn sink_chain(GstPad *pad, GstObject *parent, GstBuffer *buf) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(parent);
  GstRealtimeModelPrivate *p = self->priv;
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    return GST_FLOW_ERROR;
  }
  {
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    if (GST_BUFFER_PTS_IS_VALID(buf)) {
      GstClockTime end = GST_BUFFER_PTS(buf) + (GST_BUFFER_DURATION_IS_VALID(buf) ? GST_BUFFER_DURATION(buf) : 0);
      GstClockTime rtime = gst_segment_to_running_time(&p->in_segment, GST_FORMAT_TIME, end);
      if (GST_CLOCK_TIME_IS_VALID(rtime))
        rt.last_input_end = rtime;
    }
    if (!rt.caller_present) {
      rt.caller_present = true;
      maybe_greet_locked(self);
    }
    if (rt.ended || rt.stopping) {
      /* the call is over for the model: drop */
    } else if (rt.phase == Phase::Configured && rt.ws) {
      /* append-ms; with the model's turn detection, idle-append-ms for a
       * quiet frame while the caller is silent and turn-append-ms for a frame
       * with sound in the caller's turn: collect, and send once there is that
       * much. A frame that ends the gathering (a sound while idle, the line's
       * silence in a turn) goes at once, with what was held before it */
      guint hold_ms = p->settings.append_ms;
      const Settings &s = p->settings;
      if (model_detects_turns(rt) &&
          std::max(s.idle_append_ms, s.turn_append_ms) > hold_ms) {
        int peak = rt.in_fmt == AudioFormat::PCMU ? pa::mulaw_peak(map.data, map.size)
                                                  : pa::s16le_peak(map.data, map.size);
        rt.line_floor = peak < rt.line_floor ? peak : rt.line_floor + (rt.line_floor >> 6) + 1;
        if (rt.caller_idle) {
          if (peak < kQuietPeak)
            hold_ms = std::max(hold_ms, s.idle_append_ms);
        } else if (peak >= std::clamp(4 * rt.line_floor, kQuietPeak, kTurnQuietMax)) {
          hold_ms = std::max(hold_ms, s.turn_append_ms);
        }
      }
      if (hold_ms || !rt.append_held.empty()) {
        rt.append_held.insert(rt.append_held.end(), map.data, map.data + map.size);
        if (rt.append_held.size() >= hold_ms * pa::rt::bytes_per_ms(rt.in_fmt))
          flush_append_locked(self);
      } else {
        append_audio_locked(self, map.data, map.size);
      }
    } else {
      if (!rt.append_held.empty()) {
        /* held for a session that is gone: kept for the next one */
        rt.pending_bytes += rt.append_held.size();
        rt.pending.emplace_back(std::move(rt.append_held));
        rt.append_held.clear();
      }
      rt.pending.emplace_back(map.data, map.data + map.size);
      rt.pending_bytes += map.size;
      size_t limit = static_cast<size_t>(p->settings.max_pending_input_ms) * pa::rt::bytes_per_ms(rt.in_fmt);
      while (rt.pending_bytes > limit && !rt.pending.empty()) {
        rt.pending_bytes -= rt.pending.front().size();
        rt.st.pending_dropped_bytes += rt.pending.front().size();
        rt.pending.pop_front();
      }
    }
  }
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  return GST_FLOW_OK;
}

static void caller_eos(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  Outbox out(self);
  std::lock_guard<std::mutex> g(p->lock);
  Runtime &rt = p->rt;
  GST_INFO_OBJECT(self, "EOS from the caller side: closing the model session");
  queue_eos_locked(p);
  if (rt.ended)
    return;
  if (rt.phase == Phase::Configured)
    flush_append_locked(self);
  rt.ended = true;
  rt.phase = Phase::Ended;
  if (rt.action.kind != Action::Kind::None && rt.action.timer)
    p->worker->cancel_timer(rt.action.timer);
  rt.action = Action();
  if (rt.ws)
    rt.ws->close(1000, "call ended");
  post_session_locked(self, out, "closed", "caller-eos");
}

static void on_call_info(GstRealtimeModel *self, const GstStructure *s) {
  std::lock_guard<std::mutex> g(self->priv->lock);
  Runtime &rt = self->priv->rt;
  if (const char *v = gst_structure_get_string(s, "call-sid"))
    rt.call_sid = v;
  if (const char *v = gst_structure_get_string(s, "account-sid"))
    rt.account_sid = v;
  if (const char *v = gst_structure_get_string(s, "stream-sid"))
    rt.stream_sid = v;
  rt.caller_present = true;
  maybe_greet_locked(self);
  GST_INFO_OBJECT(self, "call %s (stream %s)", rt.call_sid.c_str(), rt.stream_sid.c_str());
}

static void on_dtmf(GstRealtimeModel *self, const GstStructure *s) {
  const char *digit = gst_structure_get_string(s, "digit");
  std::lock_guard<std::mutex> g(self->priv->lock);
  Runtime &rt = self->priv->rt;
  if (!digit || !self->priv->settings.dtmf_to_model || rt.phase != Phase::Configured)
    return;
  send_locked(self, pa::rt::build_text_item(rt.dialect, "user",
                                            std::string("(The caller pressed the key ") + digit +
                                                " on the phone keypad.)"));
  request_response_locked(self, "", "dtmf");
}

static gboolean sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(parent);
  GstRealtimeModelPrivate *p = self->priv;
  const GstStructure *s = gst_event_get_structure(event);
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_CAPS: {
    GstCaps *caps;
    gst_event_parse_caps(event, &caps);
    AudioFormat f = gst_structure_has_name(gst_caps_get_structure(caps, 0), "audio/x-mulaw") ? AudioFormat::PCMU
                                                                                             : AudioFormat::PCM16;
    {
      std::lock_guard<std::mutex> g(p->lock);
      Runtime &rt = p->rt;
      if (f != rt.in_fmt) {
        GST_INFO_OBJECT(self, "caller audio is %s", pa::rt::audio_format_name(f));
        /* what was kept in the old format is of no use */
        rt.pending.clear();
        rt.pending_bytes = 0;
      }
      rt.in_fmt = f;
      if (rt.phase == Phase::Configured && f != rt.session_in) {
        send_locked(self, pa::rt::build_format_update(rt.dialect, f, rt.out_fmt));
        rt.session_in = f;
      }
    }
    gst_event_unref(event);
    return TRUE;
  }
  case GST_EVENT_SEGMENT: {
    std::lock_guard<std::mutex> g(p->lock);
    gst_event_copy_segment(event, &p->in_segment);
    gst_event_unref(event);
    return TRUE;
  }
  case GST_EVENT_EOS:
    caller_eos(self);
    gst_event_unref(event);
    return TRUE;
  case GST_EVENT_FLUSH_START: {
    {
      std::lock_guard<std::mutex> g(p->lock);
      p->rt.out_flushing = true;
      p->out_cond.notify_all();
    }
    gst_pad_push_event(self->srcpad, event);
    gst_pad_pause_task(self->srcpad);
    return TRUE;
  }
  case GST_EVENT_FLUSH_STOP: {
    {
      std::lock_guard<std::mutex> g(p->lock);
      clear_queue_locked(p);
      p->rt.out_flushing = false;
      p->rt.eos_queued = false;
      p->rt.direct_flow = GST_FLOW_OK;
    }
    gst_pad_push_event(self->srcpad, event);
    gst_pad_start_task(self->srcpad, src_loop, self, nullptr);
    return TRUE;
  }
  case GST_EVENT_CUSTOM_DOWNSTREAM_OOB:
    if (s && gst_structure_has_name(s, "phoneagent/barge-in")) {
      guint64 onset = GST_CLOCK_TIME_NONE, decision = GST_CLOCK_TIME_NONE;
      gst_structure_get_uint64(s, "onset-running-time", &onset);
      gst_structure_get_uint64(s, "decision-running-time", &decision);
      const char *source = gst_structure_get_string(s, "source");
      std::string src = source ? source : "event";
      gst_event_unref(event);
      do_barge_in(self, src, onset, decision);
      return TRUE;
    }
    /* phoneagent/pause, phoneagent/resume and anything else out-of-band: on */
    return gst_pad_push_event(self->srcpad, event);
  case GST_EVENT_CUSTOM_DOWNSTREAM:
    if (s && gst_structure_has_name(s, "phoneagent/call-info"))
      on_call_info(self, s);
    else if (s && gst_structure_has_name(s, "phoneagent/dtmf"))
      on_dtmf(self, s);
    {
      std::lock_guard<std::mutex> g(p->lock);
      queue_event_locked(p, event); /* in order with our audio */
    }
    if (p->wake.exchange(false))
      p->out_cond.notify_one();
    return TRUE;
  case GST_EVENT_STREAM_START:
  case GST_EVENT_TAG:
  case GST_EVENT_GAP:
  case GST_EVENT_SEGMENT_DONE:
    gst_event_unref(event); /* the agent's stream is our own */
    return TRUE;
  default:
    if (GST_EVENT_IS_SERIALIZED(event)) {
      gst_event_unref(event);
      return TRUE;
    }
    return gst_pad_event_default(pad, parent, event);
  }
}

/* ------------------------------------------------------------ session life */

static gboolean load_config(GstRealtimeModel *self, pa::rt::SessionConfig &cfg, std::vector<std::string> &tools) {
  GstRealtimeModelPrivate *p = self->priv;
  Settings s;
  {
    std::lock_guard<std::mutex> g(p->lock);
    s = p->settings;
    s.extra_headers = nullptr;
  }
  std::string err;
  cfg = pa::rt::SessionConfig();
  cfg.instructions = s.instructions;
  if (!s.instructions_file.empty() && !read_text_file(s.instructions_file, cfg.instructions, err)) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not read the instructions file %s.", s.instructions_file.c_str()),
                      ("%s", err.c_str()));
    return FALSE;
  }
  cfg.voice = s.voice;
  cfg.speed = s.speed;
  cfg.turn_detection = s.turn_detection == TURN_SERVER_VAD     ? pa::rt::TurnDetection::ServerVad
                       : s.turn_detection == TURN_SEMANTIC_VAD ? pa::rt::TurnDetection::SemanticVad
                                                               : pa::rt::TurnDetection::None;
  cfg.threshold = s.threshold;
  cfg.prefix_padding_ms = static_cast<int>(s.prefix_padding_ms);
  cfg.silence_duration_ms = static_cast<int>(s.silence_duration_ms);
  cfg.idle_timeout_ms = static_cast<int>(s.idle_timeout_ms);
  static const char *eagerness[] = {"auto", "low", "medium", "high"};
  cfg.eagerness = eagerness[s.eagerness];
  cfg.create_response = s.create_response;
  cfg.interrupt_response = s.interrupt_response;
  cfg.transcription_model = s.input_transcription;
  cfg.transcription_language = s.transcription_language;
  cfg.noise_reduction = s.noise_reduction == NOISE_NEAR_FIELD ? "near_field"
                        : s.noise_reduction == NOISE_FAR_FIELD ? "far_field"
                                                               : "";
  cfg.temperature = s.temperature;
  cfg.max_output_tokens = static_cast<int>(s.max_output_tokens);
  cfg.tool_choice = s.tool_choice;
  std::string tools_json;
  tools.clear();
  if (!s.tools_file.empty()) {
    std::string text;
    if (!read_text_file(s.tools_file, text, err)) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not read the tools file %s.", s.tools_file.c_str()),
                        ("%s", err.c_str()));
      return FALSE;
    }
    if (!pa::rt::normalize_tools(text, tools_json, tools, err)) {
      GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("The tools file %s is not valid.", s.tools_file.c_str()),
                        ("%s", err.c_str()));
      return FALSE;
    }
  }
  std::vector<std::string> extra;
  if (s.builtin_tools) {
    if (std::find(tools.begin(), tools.end(), "end_call") == tools.end())
      extra.push_back(pa::rt::builtin_end_call_tool());
    if (!s.transfer_number.empty() &&
        std::find(tools.begin(), tools.end(), "transfer_to_human") == tools.end())
      extra.push_back(pa::rt::builtin_transfer_tool());
  }
  cfg.tools_json = extra.empty() ? tools_json : pa::rt::append_tools(tools_json, extra);
  return TRUE;
}

static gboolean start_session(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  pa::rt::SessionConfig cfg;
  std::vector<std::string> tools;
  if (!load_config(self, cfg, tools))
    return FALSE;
  AudioFormat in = peer_takes_mulaw(self->sinkpad) ? AudioFormat::PCMU : AudioFormat::PCM16;
  AudioFormat out = peer_takes_mulaw(self->srcpad) ? AudioFormat::PCMU : AudioFormat::PCM16;
  p->cancel = g_cancellable_new();
  p->worker->start();
  {
    std::lock_guard<std::mutex> g(p->lock);
    Runtime &rt = p->rt;
    clear_queue_locked(p);
    rt = Runtime();
    rt.config = cfg;
    rt.user_tools = tools;
    rt.in_fmt = rt.session_in = in;
    rt.out_fmt = out;
    int protocol = p->settings.protocol;
    rt.dialect = protocol == PROTOCOL_BETA ? Dialect::Beta : Dialect::GA;
    rt.dialect_known = protocol != PROTOCOL_AUTO;
    rt.phase = Phase::Connecting;
    rt.serial = 1;
    gst_segment_init(&p->in_segment, GST_FORMAT_TIME);
  }
  GST_INFO_OBJECT(self, "starting: caller audio %s, agent audio %s", pa::rt::audio_format_name(in),
                  pa::rt::audio_format_name(out));
  p->worker->invoke([self] { connect_attempt(self, 1); });
  return TRUE;
}

static void stop_session(GstRealtimeModel *self) {
  GstRealtimeModelPrivate *p = self->priv;
  std::shared_ptr<pa::rt::WsClient> ws;
  {
    std::lock_guard<std::mutex> g(p->lock);
    p->rt.stopping = true;
    p->rt.serial++;
    ws = std::move(p->rt.ws);
  }
  if (p->cancel)
    g_cancellable_cancel(p->cancel);
  if (ws) {
    ws->detach();
    ws->close(1000, "pipeline stopped");
    /* not on a media thread: it may be the one that reads this socket (and
     * it serves other calls); the close goes on without us there */
    if (!pa::on_media_thread() && !ws->wait_closed(500 * G_TIME_SPAN_MILLISECOND))
      GST_DEBUG_OBJECT(self, "the model did not finish the close handshake in time");
    ws.reset();
  }
  /* joins the thread; the object stays (other threads may still call it
   * under the lock: every method is a no-op once stopped) */
  p->worker->stop();
#ifdef HAVE_LOCALMODEL
  if (p->engine) {
    p->engine->stop();
    p->engine.reset();
  }
#endif
  if (p->cancel) {
    g_object_unref(p->cancel);
    p->cancel = nullptr;
  }
  std::lock_guard<std::mutex> g(p->lock);
  clear_queue_locked(p);
  p->rt.phase = Phase::Idle;
  p->rt.pending.clear();
  p->rt.pending_bytes = 0;
  p->rt.append_held.clear();
}

static GstStateChangeReturn gst_realtime_model_change_state(GstElement *element, GstStateChange transition) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && !start_session(self)) {
    stop_session(self);
    return GST_STATE_CHANGE_FAILURE;
  }
  if (transition == GST_STATE_CHANGE_PLAYING_TO_PAUSED)
    self->priv->playing = false; /* before the sink can go to PAUSED */
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE)
    return ret;
  switch (transition) {
  case GST_STATE_CHANGE_PAUSED_TO_PLAYING:
    self->priv->playing = true;
    break;
  case GST_STATE_CHANGE_READY_TO_PAUSED:
  case GST_STATE_CHANGE_PLAYING_TO_PAUSED:
    /* the agent's audio comes when the model sends it, like a live source */
    ret = GST_STATE_CHANGE_NO_PREROLL;
    break;
  case GST_STATE_CHANGE_PAUSED_TO_READY:
    stop_session(self);
    break;
  default:
    break;
  }
  return ret;
}

/* ------------------------------------------------------------ signals */

static gboolean gst_realtime_model_function_result(GstRealtimeModel *self, const gchar *call_id, const gchar *output) {
  if (!call_id)
    return FALSE;
  return set_call_result(self, call_id, output ? output : "{}", false);
}

static void gst_realtime_model_respond(GstRealtimeModel *self, const gchar *instructions) {
  std::lock_guard<std::mutex> g(self->priv->lock);
  if (self->priv->rt.ended)
    return;
  request_response_locked(self, instructions ? instructions : "", "application");
}

/* ------------------------------------------------------------ class */

static void gst_realtime_model_set_context(GstElement *element, GstContext *context) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(element);
  if (PaCall *call = pa_call_from_context(context)) {
    std::lock_guard<std::mutex> g(self->priv->lock);
    if (self->priv->call)
      g_object_unref(self->priv->call);
    self->priv->call = call;
  }
  GST_ELEMENT_CLASS(parent_class)->set_context(element, context);
}

static void gst_realtime_model_finalize(GObject *object) {
  GstRealtimeModel *self = GST_REALTIME_MODEL(object);
  stop_session(self);
  if (self->priv->call)
    g_object_unref(self->priv->call);
  if (self->priv->settings.extra_headers)
    gst_structure_free(self->priv->settings.extra_headers);
  delete self->priv;
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_realtime_model_init(GstRealtimeModel *self) {
  self->priv = new GstRealtimeModelPrivate();
  gst_segment_init(&self->priv->in_segment, GST_FORMAT_TIME);
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, GST_DEBUG_FUNCPTR(sink_chain));
  gst_pad_set_event_function(self->sinkpad, GST_DEBUG_FUNCPTR(sink_event));
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_activatemode_function(self->srcpad, GST_DEBUG_FUNCPTR(src_activate_mode));
  gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(src_query));
  gst_pad_set_event_function(self->srcpad, GST_DEBUG_FUNCPTR(src_event));
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

static void gst_realtime_model_class_init(GstRealtimeModelClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS(klass);

  gobject_class->set_property = gst_realtime_model_set_property;
  gobject_class->get_property = gst_realtime_model_get_property;
  gobject_class->finalize = gst_realtime_model_finalize;
  element_class->set_context = GST_DEBUG_FUNCPTR(gst_realtime_model_set_context);

  quarks.transcript = g_quark_from_static_string("realtime-transcript");
  quarks.role = g_quark_from_static_string("role");
  quarks.item_id = g_quark_from_static_string("item-id");
  quarks.response_id = g_quark_from_static_string("response-id");
  quarks.text = g_quark_from_static_string("text");
  quarks.final = g_quark_from_static_string("final");
  quarks.running_time = g_quark_from_static_string("running-time");

  const auto rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  const auto wo = static_cast<GParamFlags>(G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  const auto live = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);

  g_object_class_install_property(gobject_class, PROP_LOCATION,
      g_param_spec_string("location", "Location",
                          "WebSocket URL of the realtime model, e.g. wss://api.openai.com/v1/realtime?model=gpt-realtime "
                          "(?model= is added from the model property when missing). Empty: the embedded local model",
                          DEFAULT_LOCATION, rw));
  g_object_class_install_property(gobject_class, PROP_API_KEY,
      g_param_spec_string("api-key", "API key",
                          "Sent as Authorization: Bearer (default: $OPENAI_API_KEY; write-only, never logged)", nullptr,
                          wo));
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model", "Model name (URL query and GA session.model)", DEFAULT_MODEL, rw));
  g_object_class_install_property(gobject_class, PROP_VOICE,
      g_param_spec_string("voice", "Voice",
                          "Output voice (alloy ash ballad coral echo sage shimmer verse marin cedar, or a provider's "
                          "own); empty: the server's default. Cannot change after the first audio",
                          DEFAULT_VOICE, rw));
  g_object_class_install_property(gobject_class, PROP_INSTRUCTIONS,
      g_param_spec_string("instructions", "Instructions", "System instructions for the agent", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_INSTRUCTIONS_FILE,
      g_param_spec_string("instructions-file", "Instructions file",
                          "Text file with the instructions (replaces the instructions property when set)", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TOOLS_FILE,
      g_param_spec_string("tools-file", "Tools file",
                          "JSON file with function tool definitions: an array (or {\"tools\": [...]}) of "
                          "{type,name,description,parameters}; Chat Completions' nested form is accepted",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TOOL_URL,
      g_param_spec_string("tool-url", "Tool URL",
                          "Function calls are POSTed here as JSON and the response body is the result; empty: the "
                          "function-call signal",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TOOL_TIMEOUT,
      g_param_spec_uint("tool-timeout", "Tool timeout",
                        "Longest wait (ms) for a tool result (URL or signal); then the model gets an error", 100,
                        600000, DEFAULT_TOOL_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_PROTOCOL,
      g_param_spec_enum("protocol", "Protocol", "Realtime protocol dialect", GST_TYPE_REALTIME_MODEL_PROTOCOL,
                        DEFAULT_PROTOCOL, rw));
  g_object_class_install_property(gobject_class, PROP_TURN_DETECTION,
      g_param_spec_enum("turn-detection", "Turn detection", "How the caller's turns end",
                        GST_TYPE_REALTIME_MODEL_TURN_DETECTION, DEFAULT_TURN_DETECTION, rw));
  g_object_class_install_property(gobject_class, PROP_THRESHOLD,
      g_param_spec_double("threshold", "VAD threshold", "Server VAD activation threshold (higher: needs louder speech)",
                          0.0, 1.0, DEFAULT_THRESHOLD, rw));
  g_object_class_install_property(gobject_class, PROP_PREFIX_PADDING_MS,
      g_param_spec_uint("prefix-padding-ms", "Prefix padding", "Server VAD: audio kept before detected speech (ms)", 0,
                        10000, DEFAULT_PREFIX_PADDING_MS, rw));
  g_object_class_install_property(gobject_class, PROP_SILENCE_DURATION_MS,
      g_param_spec_uint("silence-duration-ms", "Silence duration",
                        "Server VAD: silence (ms) that ends the caller's turn", 0, 10000, DEFAULT_SILENCE_DURATION_MS,
                        rw));
  g_object_class_install_property(gobject_class, PROP_IDLE_TIMEOUT_MS,
      g_param_spec_uint("idle-timeout-ms", "Idle timeout",
                        "Server VAD (GA): prompt the model after this much caller silence (ms); 0: off", 0, 600000,
                        DEFAULT_IDLE_TIMEOUT_MS, rw));
  g_object_class_install_property(gobject_class, PROP_EAGERNESS,
      g_param_spec_enum("eagerness", "Eagerness", "Semantic VAD: how soon the model answers",
                        GST_TYPE_REALTIME_MODEL_EAGERNESS, DEFAULT_EAGERNESS, rw));
  g_object_class_install_property(gobject_class, PROP_INTERRUPT_RESPONSE,
      g_param_spec_boolean("interrupt-response", "Interrupt response",
                           "The caller's speech as the model's VAD hears it (speech_started) interrupts the agent: the server "
                           "cancels its response and this element clears and truncates. Off: only phoneagent/barge-in "
                           "events (bargein) interrupt",
                           DEFAULT_INTERRUPT_RESPONSE, rw));
  g_object_class_install_property(gobject_class, PROP_CREATE_RESPONSE,
      g_param_spec_boolean("create-response", "Create response",
                           "The server answers automatically at the end of each caller turn", DEFAULT_CREATE_RESPONSE,
                           rw));
  g_object_class_install_property(gobject_class, PROP_GREETING,
      g_param_spec_string("greeting", "Greeting",
                          "When set, the agent speaks first: response.create with these instructions once the session "
                          "is configured and the caller is there (first caller audio or phoneagent/call-info), e.g. "
                          "\"Greet the caller and ask how you can help.\"",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_INPUT_TRANSCRIPTION,
      g_param_spec_string("input-transcription", "Input transcription",
                          "Transcription model for the caller's speech (e.g. gpt-4o-mini-transcribe, whisper-1); "
                          "empty: off",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TRANSCRIPTION_LANGUAGE,
      g_param_spec_string("transcription-language", "Transcription language",
                          "ISO-639-1 language of the caller (helps transcription); empty: detect", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_OUTPUT_TOKENS,
      g_param_spec_uint("max-output-tokens", "Max output tokens", "Per response; 0: no limit (\"inf\")", 0, 4096,
                        DEFAULT_MAX_OUTPUT_TOKENS, rw));
  g_object_class_install_property(gobject_class, PROP_SPEED,
      g_param_spec_double("speed", "Speed", "Speaking rate of the voice", 0.25, 4.0, DEFAULT_SPEED, rw));
  g_object_class_install_property(gobject_class, PROP_NOISE_REDUCTION,
      g_param_spec_enum("noise-reduction", "Noise reduction", "Server-side input noise reduction",
                        GST_TYPE_REALTIME_MODEL_NOISE_REDUCTION, DEFAULT_NOISE_REDUCTION, rw));
  g_object_class_install_property(gobject_class, PROP_TEMPERATURE,
      g_param_spec_double("temperature", "Temperature", "Sampling temperature (beta dialect only); < 0: not sent",
                          -1.0, 2.0, DEFAULT_TEMPERATURE, rw));
  g_object_class_install_property(gobject_class, PROP_TOOL_CHOICE,
      g_param_spec_string("tool-choice", "Tool choice", "auto, none or required (sent with tools)",
                          DEFAULT_TOOL_CHOICE, rw));
  g_object_class_install_property(gobject_class, PROP_LOCAL_AGENT,
      g_param_spec_string("local-agent", "Local agent",
                          "Agent JSON (intents, replies, tool calls) for the embedded local model; empty: its "
                          "built-in example",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_BUILTIN_TOOLS,
      g_param_spec_boolean("builtin-tools", "Built-in tools",
                           "Offer end_call (and transfer_to_human when transfer-number is set) and carry them out",
                           DEFAULT_BUILTIN_TOOLS, rw));
  g_object_class_install_property(gobject_class, PROP_TRANSFER_NUMBER,
      g_param_spec_string("transfer-number", "Transfer number",
                          "Phone number (E.164) transfer_to_human dials; empty: no transfer tool", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TRANSFER_MESSAGE,
      g_param_spec_string("transfer-message", "Transfer message",
                          "What Twilio says (<Say>) before dialling the transfer number; empty: nothing",
                          DEFAULT_TRANSFER_MESSAGE, rw));
  g_object_class_install_property(gobject_class, PROP_TWILIO_ACCOUNT_SID,
      g_param_spec_string("twilio-account-sid", "Twilio account SID",
                          "For transfers (default: $TWILIO_ACCOUNT_SID, else the call's own AccountSid)", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_TWILIO_AUTH_TOKEN,
      g_param_spec_string("twilio-auth-token", "Twilio auth token",
                          "For transfers (default: $TWILIO_AUTH_TOKEN; write-only, never logged)", nullptr, wo));
  g_object_class_install_property(gobject_class, PROP_TWILIO_API_BASE_URL,
      g_param_spec_string("twilio-api-base-url", "Twilio API base URL", "Base URL of Twilio's REST API",
                          DEFAULT_TWILIO_API_BASE_URL, rw));
  g_object_class_install_property(gobject_class, PROP_CALL_SID,
      g_param_spec_string("call-sid", "Call SID",
                          "The Twilio CallSid (normally learnt from twiliosrc's phoneagent/call-info event)", nullptr,
                          live));
  g_object_class_install_property(gobject_class, PROP_EXTRA_HEADERS,
      g_param_spec_boxed("extra-headers", "Extra headers",
                         "More handshake headers, one string field each (e.g. OpenAI-Project, or api-key for Azure); "
                         "values are never logged",
                         GST_TYPE_STRUCTURE, rw));
  g_object_class_install_property(gobject_class, PROP_CA_FILE,
      g_param_spec_string("ca-file", "CA file",
                          "Extra trusted CA certificates (PEM) for wss:// besides the system store", nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_RECONNECT_ATTEMPTS,
      g_param_spec_uint("reconnect-attempts", "Reconnect attempts",
                        "New sessions tried after a failure before giving up", 0, 100, DEFAULT_RECONNECT_ATTEMPTS, rw));
  g_object_class_install_property(gobject_class, PROP_CONNECT_TIMEOUT,
      g_param_spec_uint("connect-timeout", "Connect timeout", "Longest wait (ms) for the WebSocket upgrade", 100,
                        120000, DEFAULT_CONNECT_TIMEOUT, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_QUEUE_MS,
      g_param_spec_uint("max-queue-ms", "Max queue",
                        "Most agent audio (ms) held for downstream; more is dropped with a warning", 200, 600000,
                        DEFAULT_MAX_QUEUE_MS, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_PENDING_INPUT_MS,
      g_param_spec_uint("max-pending-input-ms", "Max pending input",
                        "Most caller audio (ms) kept while the session is not ready; the oldest is dropped", 0,
                        600000, DEFAULT_MAX_PENDING_INPUT_MS, rw));
  g_object_class_install_property(gobject_class, PROP_APPEND_MS,
      g_param_spec_uint("append-ms", "Append size",
                        "Send the caller's audio to the model in appends of at least this many ms (0: every buffer "
                        "as it comes, 20 ms from Twilio). Larger appends cost less CPU per call and add up to this "
                        "much latency to the model's turn detection",
                        0, 1000, DEFAULT_APPEND_MS, rw));
  g_object_class_install_property(gobject_class, PROP_IDLE_APPEND_MS,
      g_param_spec_uint("idle-append-ms", "Idle append size",
                        "While the model's turn detection has the caller silent (before the first speech_started, and "
                        "from each turn's input_audio_buffer.committed to the next speech_started), send caller "
                        "audio with no sound in it (peak under -50 dBFS) in appends of this many ms; a buffer with "
                        "sound goes at once, with what was held. 0: off. Never with turn-detection=none",
                        0, 1000, DEFAULT_IDLE_APPEND_MS, rw));
  g_object_class_install_property(gobject_class, PROP_TURN_APPEND_MS,
      g_param_spec_uint("turn-append-ms", "Turn append size",
                        "In the caller's turn, as the model's turn detection has it (from speech_started to "
                        "input_audio_buffer.committed), send caller audio with sound in it in appends of this many "
                        "ms; a buffer as quiet as the line is between words (peak under four times the line's noise "
                        "floor, at least -50 and at most -26 dBFS) goes at once with what was held, so the silence "
                        "that ends a turn is never held. 0: off. Never with turn-detection=none",
                        0, 1000, DEFAULT_TURN_APPEND_MS, rw));
  g_object_class_install_property(gobject_class, PROP_PARTIAL_TRANSCRIPTS,
      g_param_spec_boolean("partial-transcripts", "Partial transcripts",
                           "Post realtime-transcript messages for deltas too, not only final texts",
                           DEFAULT_PARTIAL_TRANSCRIPTS, live));
  g_object_class_install_property(gobject_class, PROP_DTMF_TO_MODEL,
      g_param_spec_boolean("dtmf-to-model", "DTMF to model",
                           "Tell the model about key presses (phoneagent/dtmf) as user messages",
                           DEFAULT_DTMF_TO_MODEL, live));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "Counters: sessions, reconnects, events, malformed/unknown events, provider errors, audio "
                         "sent/received/pushed/dropped (ms), responses, barge-ins, truncates, function calls, tokens, "
                         "the model socket's messages and bytes, whether the call's media thread reads it "
                         "(ws-on-media-thread) and how much audio it pushed itself (output-pushed-on-media-thread-ms)",
                         GST_TYPE_STRUCTURE, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstRealtimeModel::function-call:
   * @self: the element
   * @name: function name
   * @call_id: the call to answer
   * @arguments: JSON arguments as the model sent them
   *
   * The model calls a function and no #GstRealtimeModel:tool-url is set.
   * Emitted from the element's own thread; answer (from any thread, now or
   * later) with #GstRealtimeModel::function-result. Without an answer
   * within #GstRealtimeModel:tool-timeout the model gets an error.
   */
  model_signals[SIGNAL_FUNCTION_CALL] = g_signal_new("function-call", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0,
                                                     nullptr, nullptr, nullptr, G_TYPE_NONE, 3, G_TYPE_STRING,
                                                     G_TYPE_STRING, G_TYPE_STRING);
  /**
   * GstRealtimeModel::function-result:
   * @self: the element
   * @call_id: the call answered
   * @output: the result (normally JSON text)
   *
   * Action signal: answers a #GstRealtimeModel::function-call. Returns FALSE
   * when the call is unknown or already answered (each call_id is answered
   * once).
   */
  model_signals[SIGNAL_FUNCTION_RESULT] = g_signal_new_class_handler("function-result", G_TYPE_FROM_CLASS(klass),
      static_cast<GSignalFlags>(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION), G_CALLBACK(gst_realtime_model_function_result),
      nullptr, nullptr, nullptr, G_TYPE_BOOLEAN, 2, G_TYPE_STRING, G_TYPE_STRING);
  /**
   * GstRealtimeModel::respond:
   * @self: the element
   * @instructions: (nullable): instructions for this response only
   *
   * Action signal: makes the agent speak now (response.create), or as soon
   * as the response in progress is done.
   */
  model_signals[SIGNAL_RESPOND] = g_signal_new_class_handler("respond", G_TYPE_FROM_CLASS(klass),
      static_cast<GSignalFlags>(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION), G_CALLBACK(gst_realtime_model_respond), nullptr,
      nullptr, nullptr, G_TYPE_NONE, 1, G_TYPE_STRING);

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Realtime speech model", "Filter/Audio/Network",
                                        "Connects a phone caller to a realtime speech model speaking the OpenAI "
                                        "Realtime WebSocket protocol (GA or beta), or to the embedded local model",
                                        "gst-phone-agent contributors");
  element_class->change_state = GST_DEBUG_FUNCPTR(gst_realtime_model_change_state);

  gst_type_mark_as_plugin_api(GST_TYPE_REALTIME_MODEL_PROTOCOL, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GST_TYPE_REALTIME_MODEL_TURN_DETECTION, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GST_TYPE_REALTIME_MODEL_EAGERNESS, static_cast<GstPluginAPIFlags>(0));
  gst_type_mark_as_plugin_api(GST_TYPE_REALTIME_MODEL_NOISE_REDUCTION, static_cast<GstPluginAPIFlags>(0));
}
