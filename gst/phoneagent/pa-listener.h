/* gst-phone-agent
 * PaListener: the Twilio-facing HTTP side. Answers the voice webhook with
 * TwiML <Connect><Stream>, validates X-Twilio-Signature on the webhook and
 * on the WebSocket upgrade, accepts the Media Streams socket and hands it to
 * a PaCall. Used by twiliosrc (one call) and by the server (many calls).
 *
 * It runs on the GMainContext that is thread-default when start() is called.
 */
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <gst/gst.h>

#include "pa-api.h"
#include "pa-call.h"
#include "twilio-protocol.h"

namespace pa {

struct ListenerConfig {
  std::string address = "0.0.0.0";
  int port = 8080;                         /* 0 picks a free port */
  std::string public_url;                  /* e.g. https://agent.example.com; empty: use the Host header */
  std::string webhook_path = "/twilio/voice";
  std::string stream_path = "/twilio/media";
  std::string metrics_path;                /* GET answers Hooks::metrics (Prometheus text); empty: none */
  std::string auth_token;                  /* empty: no signature checks (warned once) */
  std::string busy_message = "Sorry, all our agents are busy right now. Please call again later. Goodbye.";
  std::string greeting;                    /* optional <Say> before <Connect> */
  guint media_threads = 0;                 /* pa::SocketLoop::Limits::threads */
  guint media_wait_us = 0;                 /* pa::SocketLoop::Limits::wait_us */
  guint media_fill_permille = 0;           /* pa::SocketLoop::Limits::fill_permille */
  CallConfig call;
};

/* Per-call data the webhook puts into <Parameter>s, so any instance can take
 * the stream: the caller's and callee's numbers and the call direction. */
struct WebhookInfo {
  twilio::Params form;   /* every form parameter as received */
  twilio::Params query;  /* the webhook URL's query parameters (signed by Twilio too) */
  std::string call_sid, from, to;
};

class PA_API Listener {
public:
  struct Hooks {
    /* A webhook arrived for a new call: TRUE admits it (TwiML Connect),
     * FALSE turns the caller away with the busy message. */
    std::function<bool(const WebhookInfo &)> admit;
    /* A stream connected: return a call (new reference) to attach the
     * socket to, or nullptr to refuse it (closed with 1008 "busy"). */
    std::function<PaCall *()> take_stream;
    /* Optional. An admitted call: may append <Parameter>s to the TwiML
     * (after from/to); they come back in the stream's start message. */
    std::function<void(const WebhookInfo &, twilio::Params &)> stream_parameters;
    /* Optional. FALSE makes GET /healthz answer 503 "draining" so that load
     * balancers stop sending new calls here. */
    std::function<bool()> ready;
    /* Optional. GET ListenerConfig::metrics_path: the body of the answer,
     * in Prometheus' text format. */
    std::function<std::string()> metrics;
    /* Optional. A stream's socket is gone (close handshake over, dropped,
     * or the listener stopped): the call that take_stream returned. */
    std::function<void(PaCall *)> socket_closed;
  };

  Listener(ListenerConfig config, Hooks hooks);
  ~Listener();
  Listener(const Listener &) = delete;
  Listener &operator=(const Listener &) = delete;

  /* Binds and starts serving on the thread-default GMainContext. */
  bool start(GError **error);
  void stop();
  int port() const;
  const ListenerConfig &config() const;

  /* Counters: a GstStructure named "twilio-listener-stats". */
  GstStructure *stats() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace pa
