/* twilio-emulator: one call, as Twilio plays it.
 *
 *   webhook POST -> TwiML -> WebSocket upgrade -> [wait for the next tick]
 *   -> streaming (one step per tick) -> stop + close -> done
 *
 * The run's shared tick drives everything time-related: on each of its ticks
 * (every 20 ms, at the offset of the call's phase with --phases, phases.h) a
 * streaming call sends what the script has due and advances its playout
 * buffer by one 20 ms frame. Everything else is event-driven (libsoup
 * callbacks on the same GMainContext).
 */
#pragma once

#include <libsoup/soup.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "options.h"
#include "playout.h"
#include "report.h"
#include "script.h"
#include "transport.h"
#include "twiml.h"

namespace emu {

class Call;
class CaptureWriter;

/* What a call needs from the run (implemented by Runner). */
class CallHost {
public:
  virtual ~CallHost() = default;
  virtual SoupSession *session() = 0;
  virtual CaptureWriter *capture() = 0; /* nullptr without --capture */
  virtual int64_t run_start_us() const = 0;
  virtual void call_finished(Call &call) = 0;
};

class Call final : public TransportHandler {
public:
  Call(CallHost &host, const Options &opt, const Script &script, int index);
  ~Call() override;
  Call(const Call &) = delete;
  Call &operator=(const Call &) = delete;

  /* POSTs the webhook. */
  void start();
  /* One of this call's ticks: @tick counts the run's 20 ms frames, @ideal_us
   * is the deadline of this call's phase of that frame (monotonic µs; what its
   * pacing and stream times are measured against). In two steps: send what
   * the script has due (the stream starts on the first tick after
   * the WebSocket opened), then play one 20 ms frame and echo the marks it
   * reached. on_tick() does both, as one write where the transport batches;
   * the run may instead do every call's tick_send() before any tick_play(),
   * so that the media frames (whose timing is measured) leave first. An
   * underrun found at a tick is dated from @ideal_us. */
  void on_tick(int64_t tick, int64_t ideal_us);
  void tick_send(int64_t tick, int64_t ideal_us);
  void tick_play(int64_t ideal_us);
  /* Ends the call now (max duration, SIGINT): stop + close if streaming,
   * cancel otherwise. The outcome becomes @outcome. */
  void shutdown(const char *outcome);
  /* Ends the call at once, whatever its state (after the shutdown grace). */
  void force_finish(const char *outcome);

  bool started() const { return state_ != State::Idle; }
  bool finished() const { return state_ == State::Done; }
  bool ticking() const { return state_ == State::Ready || state_ == State::Streaming; }
  /* Final figures (analysis done in finish()). */
  const CallReport &report() const { return report_; }
  CallReport &report() { return report_; }

  /* TransportHandler */
  void on_transport_open() override;
  void on_transport_failed(int http_status, const std::string &message) override;
  void on_transport_text(const char *data, size_t len) override;
  void on_transport_binary(const uint8_t *data, size_t len) override;
  void on_transport_closed(const CloseInfo &info) override;

private:
  enum class State { Idle, Webhook, Connecting, Ready, Streaming, Closing, Done };

  static void on_webhook_reply(GObject *source, GAsyncResult *res, gpointer data);
  void handle_twiml(int status, const std::string &body);
  bool stream_target(const std::string &twiml_url, std::string &connect_url, std::string &signed_url,
                     std::string &host_header);
  void begin_stream(int64_t tick, int64_t ideal_us);
  void send_event(const CallerEvent &e, int64_t ideal_us);
  void send_inject(InjectKind kind, int64_t t_ms);
  void send_text(const std::string &text, const char *inject = nullptr);
  void echo_mark(const std::string &name);
  void protocol_error(const char *kind, const std::string &detail, const char *data, size_t len);
  void end_stream();
  void finish(const std::string &outcome, const std::string &error = {});
  void analyse();
  void write_files();
  int64_t stream_time_us() const;

  CallHost &host_;
  const Options &opt_;
  const Script &script_;
  State state_ = State::Idle;

  CallReport report_;
  std::string account_sid_;
  pa::twilio::Params params_;
  pa::twilio::TwimlDocument twiml_;

  GCancellable *cancel_ = nullptr;
  SoupMessage *webhook_msg_ = nullptr;
  std::unique_ptr<Transport> transport_;
  int64_t webhook_start_us_ = 0;
  int64_t connect_start_us_ = 0;

  /* streaming */
  int64_t t0_us_ = 0;        /* stream start: the tick that sent connected/start */
  int64_t first_tick_ = 0;
  size_t next_event_ = 0;
  int64_t seq_ = 0;          /* Twilio's sequenceNumber (last one used) */
  int64_t last_chunk_ = 0;
  bool stop_sent_ = false;
  bool reading_stopped_ = false;
  std::string pending_outcome_;

  pa::twilio::OutboundMessage rx_msg_; /* parse buffer, reused */
  PlayoutBuffer playout_;
  std::vector<std::string> released_; /* reused per tick */
  std::vector<float> heard_db_;       /* level of each played frame */
  std::vector<uint8_t> heard_server_; /* server audio bytes in each played frame */
  std::vector<uint8_t> echo_ring_;    /* --echo: the last played frames, frame k at k % slots */
  std::vector<uint8_t> echo_frame_;   /* --echo: the caller's frame with the echo mixed in */
  std::vector<uint8_t> heard_;        /* what the caller heard (only with --out-dir) */
  std::vector<uint8_t> received_;     /* raw received payloads (only with --out-dir) */
  /* capture lines from before the stream start, written once its time is known */
  struct PendingLine {
    int64_t abs_us;
    std::function<std::string(int64_t rel_us)> build;
  };
  std::vector<PendingLine> pre_stream_;
};

} // namespace emu
