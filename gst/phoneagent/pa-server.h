/* gst-phone-agent
 * PaServer: one pipeline per call, as gst-rtsp-server's media factory makes
 * one media per client.
 *
 * The server owns the Twilio-facing listener (pa::Listener): it answers the
 * voice webhook with TwiML <Connect><Stream> (or with the busy message when
 * it is full or draining), checks X-Twilio-Signature on the webhook and on
 * the WebSocket upgrade, and for every stream that connects creates a
 * PaCall. When the stream's `start` arrives it builds a pipeline from the
 * launch template with the call's variables substituted (escaped, see
 * pa_pipeline_template_expand()), sets the "phoneagent.call" GstContext on
 * it, runs it on the server's GMainContext with a bus watch, and tears it
 * down when the call ends (EOS, error, socket closed).
 *
 * Threads: the listener, the calls' sockets and the bookkeeping run on the
 * server's GMainContext (the "context" property, default the thread-default
 * context at pa_server_start()), which must be run with it pushed as
 * thread-default (libsoup needs that). Building a pipeline and its state
 * changes run on a few worker threads, so that an element that is slow to
 * start or stop holds up only its own call. Call pa_server_start/drain/stop
 * from the context's thread; pa_server_get_stats() from any thread. Every
 * signal is emitted on the context's thread.
 *
 * Signals:
 *   "call-admit"       gboolean (PaServer*, GstStructure *webhook, GstStructure *parameters)
 *       A webhook for a new call arrived and there is room. @webhook holds
 *       the form parameters Twilio sent (CallSid, From, To, ...). Fields set
 *       on @parameters (strings; it starts with the webhook URL's query
 *       parameters) become TwiML <Parameter>s and come back as
 *       ${param.NAME}, on whichever instance takes the stream. Return FALSE
 *       to turn the caller away with the busy message.
 *   "call-constructed" void (PaServer*, GstElement *pipeline, PaCall *call)
 *       The call's pipeline was just built (state NULL): the application may
 *       look up elements by name and set properties.
 *   "call-configure"   void (PaServer*, GstElement *pipeline, PaCall *call)
 *       The context is set and the bus watched; the pipeline goes to PLAYING
 *       right after this.
 *   "call-message"     void (PaServer*, GstElement *pipeline, PaCall *call, GstMessage *message)
 *       Every message of the call's bus (element messages such as
 *       twilio-call-started, errors, EOS, ...), after the server handled it.
 *   "call-ended"       void (PaServer*, GstElement *pipeline, PaCall *call, const gchar *reason)
 *       The call is over and its pipeline is in NULL (it is released right
 *       after). @pipeline is NULL when it never built. Reasons: `eos`
 *       (the pipeline finished: Twilio's stop or the socket closed),
 *       `error`, `build-failed`, `start-failed`, `end-timeout` (the pipeline
 *       did not finish after the call ended), `shutdown` (grace period over)
 *       and `server-stopped`.
 *   "drained"          void (PaServer*)
 *       After pa_server_drain(): no call is left.
 */
#pragma once

#include <gst/gst.h>

#include "pa-api.h"

G_BEGIN_DECLS

typedef struct _PaCall PaCall;

#define PA_TYPE_SERVER (pa_server_get_type())
PA_API GType pa_server_get_type(void);
G_DECLARE_FINAL_TYPE(PaServer, pa_server, PA, SERVER, GObject)

#define PA_SERVER_ERROR (pa_server_error_quark())
PA_API GQuark pa_server_error_quark(void);

typedef enum {
  PA_SERVER_ERROR_TEMPLATE,  /* the launch template is unreadable, has a bad variable, or does not parse */
  PA_SERVER_ERROR_LISTEN,    /* cannot listen (address, port in use) */
  PA_SERVER_ERROR_STATE,     /* already started, or no template */
  PA_SERVER_ERROR_CALL_LOG,  /* the call log cannot be opened or created */
} PaServerError;

/* Properties (set before pa_server_start() unless noted):
 *   address (string, "0.0.0.0"), port (int, 8080; 0 picks a free port),
 *   bound-port (int, read-only), public-url (string), webhook-path
 *   ("/twilio/voice"), stream-path ("/twilio/media"), metrics-path
 *   ("/metrics"; empty: none), call-log (string: an SQLite file, created if
 *   missing; empty, the default: none), auth-token (string,
 *   write-only, never logged; empty: no signature checks), busy-message,
 *   greeting, max-calls (uint, 0 = no limit), reservation-timeout (uint ms),
 *   start-timeout (uint ms), end-timeout (uint ms), close-timeout (uint ms),
 *   out-dir (string), pipeline (string: the expanded-comment-free template;
 *   prefer pa_server_set_pipeline_template() which checks it), context
 *   (GMainContext), draining (boolean, read-only), stats (GstStructure,
 *   read-only). */
PA_API PaServer *pa_server_new(void);

/* Sets the launch template after checking it: known variables only, each in
 * a property value, and the description parses with dummy values. */
PA_API gboolean pa_server_set_pipeline_template(PaServer *server, const gchar *description, GError **error);
/* Reads a template file (lines starting with '#' are comments) and sets it. */
PA_API gboolean pa_server_load_pipeline_template(PaServer *server, const gchar *path, GError **error);

/* Binds and starts serving on the server's context. */
PA_API gboolean pa_server_start(PaServer *server, GError **error);
/* Graceful shutdown: from now on webhooks get the busy TwiML, GET /healthz
 * answers 503 and only streams of calls already admitted are taken. Calls
 * in progress may finish for @grace_ms; then each is ended cleanly (EOS
 * into its pipeline: twiliosink plays out what it holds and closes the
 * stream), and forced after end-timeout. "drained" is emitted when no call
 * is left. */
PA_API void pa_server_drain(PaServer *server, guint grace_ms);
/* Ends every call now (pipelines to NULL, sockets closed with 1001) and stops
 * listening. Synchronous; lets close frames go out when it can iterate the
 * server's context. */
PA_API void pa_server_stop(PaServer *server);

PA_API gint pa_server_get_bound_port(PaServer *server);
/* A GstStructure named "phoneagent-server-stats" (see docs/server.md). */
PA_API GstStructure *pa_server_get_stats(PaServer *server);
/* The same in Prometheus' text format (version 0.0.4), what GET on the
 * metrics-path answers: each field a metric phoneagent_<field> with '_' for
 * '-', the 64-bit ones counters ("_total"), the others gauges. Free with
 * g_free(). Any thread. */
PA_API gchar *pa_server_get_metrics(PaServer *server);

/* ---- launch templates ----
 * A template is a gst-launch description with ${NAME} variables. Values are
 * substituted escaped, so that whatever a caller controls (numbers, custom
 * parameters) stays inside one property value and cannot add elements,
 * links or properties. Rules, checked when the template is set:
 *   - ${call_sid}, ${stream_sid}, ${account_sid}, ${from}, ${to},
 *     ${out_dir} (alias ${recordings_dir}) and ${param.NAME}, optionally
 *     with a default: ${param.voice:-alloy};
 *   - a variable must be part of a property value (name=...${x}...), and
 *     never inside quotes: the server quotes for you;
 *   - $$ is a literal $. */

/* Removes comment lines (first non-blank character '#'); newlines become
 * spaces. */
PA_API gchar *pa_pipeline_template_strip_comments(const gchar *text);
/* Expands @tmpl with @variables (string -> string; NULL: every variable is
 * empty). Unknown variables are an error; a ${param.NAME} that is not in
 * @variables expands to its default or to nothing. */
PA_API gchar *pa_pipeline_template_expand(const gchar *tmpl, GHashTable *variables, GError **error);
/* The escaped form of @value as substituted into a property value. */
PA_API gchar *pa_pipeline_template_escape_value(const gchar *value);

G_END_DECLS
