/* gst-phone-agent
 * PaCall: one Twilio Media Streams call, shared by twiliosrc and twiliosink
 * (and the server) through a GstContext of type "phoneagent.call".
 *
 * It owns the WebSocket (or a test transport), the streamSid, the queue of
 * what Twilio sent for the source, and the mark bookkeeping for the sink:
 * marks carry a generation that every clear bumps, so the echoes Twilio
 * sends because of a clear are not taken as "played".
 *
 * Threads: frames are handled on the thread of the listener's GMainContext
 * (pa::SocketLoop). Sends may come from any thread; they are written to the
 * socket on the sending thread, in the order the call's lock gives them, so
 * JSON frames are never interleaved.
 */
#pragma once

#include <gst/gst.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pa-api.h"
#include "pa-websocket.h"
#include "twilio-protocol.h"

#define PA_CALL_CONTEXT_TYPE "phoneagent.call"

#define PA_TYPE_CALL (pa_call_get_type())
PA_API GType pa_call_get_type(void);
G_DECLARE_FINAL_TYPE(PaCall, pa_call, PA, CALL, GObject)

namespace pa {

/* What twiliosrc takes from the call, in arrival order. */
struct InboundItem {
  enum class Kind { Start, Media, Dtmf, Stop, Closed };
  Kind kind = Kind::Media;
  int64_t timestamp_ms = -1;      /* media: Twilio's timestamp */
  std::vector<uint8_t> payload;   /* media: μ-law bytes */
  std::string digit;              /* dtmf */
  std::string reason;             /* stop / closed */
  /* start (apart: a frame's item stays small, a few to a deque node) */
  std::unique_ptr<twilio::StartInfo> start;
  gint64 arrival_us = 0;          /* g_get_monotonic_time() when it arrived */
};

/* What the caller has heard of one response item (twiliosink's query). */
struct Heard {
  std::string item_id;
  uint64_t sent_ms = 0;     /* audio of this item sent to Twilio */
  uint64_t played_ms = 0;   /* audio of this item Twilio reported played (marks) */
  int64_t played_at_us = 0; /* when the mark that said so arrived (monotonic µs), 0 if none did */
  uint64_t heard_ms = 0;    /* played_ms, and what played on since its echo at the rate audio
                             * plays: up to the next mark not echoed yet, never past sent_ms */
  guint generation = 0;     /* clear generation */
  bool known = false;       /* false when the item was never seen */
};

/* Limits and policies of a call, set before it starts. */
struct CallConfig {
  size_t max_frame_size = 64 * 1024;   /* inbound text frames above this are dropped */
  size_t max_inbound_queue = 1000;     /* items (20 s of audio) kept for a slow source */
  guint stall_timeout_ms = 10000;      /* no mark echo this long with marks pending: peer not reading */
};

} // namespace pa

/* ---- life cycle ---- */
PA_API PaCall *pa_call_new(const pa::CallConfig &config);
PA_API GstContext *pa_call_context_new(PaCall *call);
/* The call held by @context, with a new reference, or nullptr. */
PA_API PaCall *pa_call_from_context(const GstContext *context);

/* A short name for logs: the callSid once known, else a serial number. */
PA_API std::string pa_call_get_name(PaCall *call);

/* ---- transports ---- */
/* Hands the call its socket (pa::SocketLoop does). Frames then come in
 * through pa_call_handle_text/_binary/_closed on the loop's thread. */
PA_API void pa_call_attach_transport(PaCall *call, std::shared_ptr<pa::CallTransport> transport);
PA_API gboolean pa_call_has_transport(PaCall *call);
/* The media thread that reads the call's socket, to host the call's other
 * connections there (pa::HostedLoop); nullptr when there is none (no socket
 * yet, a socket on a GMainContext, a test transport). */
PA_API std::shared_ptr<pa::MediaThread> pa_call_get_media_thread(PaCall *call);
/* For tests: frames we send go to @send on the sending thread; @close is
 * called when the call closes its side. Incoming frames are fed with
 * pa_call_handle_text / pa_call_handle_closed. */
PA_API void pa_call_set_test_transport(PaCall *call, std::function<void(const std::string &)> send,
                                       std::function<void(gushort, const std::string &)> close);

/* ---- incoming (socket thread, or a test) ---- */
PA_API void pa_call_handle_text(PaCall *call, const char *data, size_t len);
PA_API void pa_call_handle_binary(PaCall *call, size_t len);
PA_API void pa_call_handle_closed(PaCall *call, gushort code, const std::string &reason);

/* ---- source side ---- */
/* Waits up to @timeout_us (-1: forever) for the next inbound item. Returns
 * FALSE on timeout or when flushing. While it waits, the calling thread
 * reads the socket itself (the transport's pull mode), so a frame costs one
 * thread wake-up, not two; frames, mark echoes and the close are then
 * handled on this thread. The socket loop reads again once nobody waits
 * here: after stop/close, when flushing, or after a timeout. @queued (if
 * set): the items still queued after this one (push mode then needs no
 * second look to find the queue empty). */
PA_API gboolean pa_call_pop_inbound(PaCall *call, pa::InboundItem &out, gint64 timeout_us, size_t *queued = nullptr);
PA_API void pa_call_set_source_flushing(PaCall *call, gboolean flushing);
/* TRUE by default. FALSE: the socket loop always reads, and the source only
 * waits for what it queued (one more thread hand-off per frame). */
PA_API void pa_call_set_pull(PaCall *call, gboolean pull);
/* FALSE by default. TRUE (the server, with media threads): the socket is
 * read on a media thread shared by many calls (pa::SocketLoop::Limits::threads),
 * and twiliosrc pushes the call's audio downstream on that thread, from
 * the notify below, instead of waking a streaming thread of its own per
 * frame. Set before the pipeline starts. */
PA_API void pa_call_set_push(PaCall *call, gboolean push);
PA_API gboolean pa_call_get_push(PaCall *call);
/* @notify runs on the thread that queued inbound items (without the call's
 * lock), once per message it queued. Replacing it (nullptr: none) waits
 * until a notify in progress on another thread has returned. */
PA_API void pa_call_set_inbound_notify(PaCall *call, std::function<void()> notify);

/* ---- state ---- */
PA_API gboolean pa_call_is_started(PaCall *call);
PA_API gboolean pa_call_is_ended(PaCall *call);
PA_API pa::twilio::StartInfo pa_call_get_start_info(PaCall *call);
/* Why the call ended ("stop", "connection-lost", "peer-closed", "closed"),
 * or "" while it goes on. */
PA_API std::string pa_call_get_end_reason(PaCall *call);
/* Closes the call (1008) when Twilio has not echoed a mark for
 * stall_timeout_ms while audio is outstanding: the peer stopped reading.
 * The socket loop calls it about twice a second. */
PA_API void pa_call_check_stall(PaCall *call);
/* Counters: a GstStructure named "twilio-call-stats". */
PA_API GstStructure *pa_call_get_stats(PaCall *call);

/* ---- sink side ---- */
/* Queues a media message of @len μ-law bytes for the current item. FALSE
 * when the stream is not started or has ended. */
PA_API gboolean pa_call_send_media(PaCall *call, const uint8_t *mulaw, size_t len);
/* The same, followed by a mark at the new position, both in one write to
 * the socket. */
PA_API gboolean pa_call_send_media_and_mark(PaCall *call, const uint8_t *mulaw, size_t len);
/* Starts a new response item: what follows is counted against @item_id. */
PA_API void pa_call_begin_item(PaCall *call, const std::string &item_id);
/* Sends a mark at the current position of the current item. */
PA_API void pa_call_send_mark(PaCall *call);
/* Corked, what the call sends waits in the socket's buffer; uncorking
 * writes it all at once: several frames sent in a row cost one write
 * instead of one each. Never leave a call corked across a wait. */
PA_API void pa_call_set_corked(PaCall *call, gboolean corked);
/* Sends clear: bumps the generation; pending marks are now "cleared". Returns
 * the new generation. */
PA_API guint pa_call_clear(PaCall *call);
/* Raises what the caller is known to have heard of @item_id to @bytes (not
 * past what was sent), when the sender knows better than the marks: right
 * before a clear, marks in flight are lost, but the pacing says how much of
 * the queue Twilio has played. */
PA_API void pa_call_raise_played(PaCall *call, const std::string &item_id, uint64_t bytes);
/* What the caller has heard of @item_id (empty: the current item), by
 * @now_us (monotonic µs; 0: now) for heard_ms. */
PA_API pa::Heard pa_call_get_heard(PaCall *call, const std::string &item_id, gint64 now_us = 0);
/* Audio sent and played in this generation, in bytes (for the sink). */
PA_API uint64_t pa_call_get_pending_bytes(PaCall *call);
/* Blocks until every mark of the current generation has been echoed, the
 * call ends, the sink flushes or @timeout_us passes. TRUE if all played. */
PA_API gboolean pa_call_wait_played(PaCall *call, gint64 timeout_us);
PA_API void pa_call_set_sink_flushing(PaCall *call, gboolean flushing);

/* Closes our side of the socket (Twilio then runs the TwiML after
 * </Connect>, which hangs up). Safe from any thread; idempotent. */
PA_API void pa_call_close(PaCall *call, gushort code, const char *reason);

/* Signals, emitted on the thread that read the message: the socket loop's
 * (the listener's GMainContext) or, in pull mode, the source's streaming
 * thread:
 *   "started"  void (PaCall*)                 : the start message arrived
 *   "ended"    void (PaCall*, const gchar *reason) : stop, close or error
 */
