/* gst-phone-agent
 * The Media Streams WebSocket, server side (RFC 6455), without libsoup.
 *
 * Why not SoupWebsocketConnection: measured under the server, libsoup's
 * WebSocket cost more than the whole rest of a call (a GSource and a main
 * loop round per read, a copy per message, debug formatting), every send
 * from a streaming thread needed a hop to the socket's main context, and
 * every socket added a file descriptor that GMainContext polls on every
 * wake-up, so the cost of one wake-up grew with the number of calls. Here:
 *
 *  - pa::SocketLoop puts all sockets of a listener behind one epoll file
 *    descriptor, which is a single GSource on the listener's GMainContext:
 *    one wake-up serves every socket that is ready, whatever their number;
 *  - frames are parsed and unmasked in place and handed to the PaCall on
 *    that context's thread (as before);
 *  - sends write to the socket directly from the thread that sends (the
 *    call's lock keeps messages ordered; a socket lock keeps frames whole),
 *    and only what the kernel does not take at once waits for EPOLLOUT.
 *
 * libsoup still serves HTTP: the webhook, /healthz and the upgrade request,
 * whose connection the listener steals once the 101 is written.
 */
#pragma once

#include <gio/gio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pa-api.h"

typedef struct _PaCall PaCall;

namespace pa {

/* An event loop that a media thread runs next to its own sockets, so that
 * another connection of a call (the model's, gst/realtime) is read on the
 * thread that reads the call's Twilio socket: no wake-up of another thread
 * per message, and no two threads on one socket. The host watches fd()
 * (level-triggered) and calls dispatch() on its thread when it is readable;
 * dispatch() must not block. */
class PA_API HostedLoop {
public:
  virtual ~HostedLoop() = default;
  virtual int fd() const = 0;
  virtual void dispatch() = 0;
  /* The host's thread has stopped and will never call dispatch() again
   * (called once, on the thread that stopped it): end what is in progress. */
  virtual void host_gone() = 0;
};

/* A media thread, as a host for HostedLoops. */
class PA_API MediaThread {
public:
  virtual ~MediaThread() = default;
  /* The loop this thread hosts under @key; the first call makes it with
   * @make (on the calling thread) and starts watching it. nullptr when the
   * thread has stopped, or @make gave nullptr. Any thread. */
  virtual std::shared_ptr<HostedLoop> host(const void *key,
                                           const std::function<std::shared_ptr<HostedLoop>()> &make) = 0;
  /* Runs @fn on this thread at @when_us (g_get_monotonic_time()) or a
   * little later: within the media wait, when it sleeps out one. For work
   * that must happen later without a thread of its own waiting for it (a
   * sink's audio that the lead holds back). @fn must not block. FALSE (and
   * @fn dropped, on the calling thread) when the thread has stopped. Any
   * thread. */
  virtual bool at(gint64 when_us, std::function<void()> fn) = 0;
};

/* What a call needs from its socket. */
class PA_API CallTransport {
public:
  virtual ~CallTransport() = default;
  /* Sends one text message, writing what the socket takes at once on the
   * calling thread. Never blocks. Any thread. With @more, the message waits
   * for the next one (sent without @more) so both go in one write. */
  virtual void send_text(std::string_view text, bool more = false) = 0;
  /* Writes what send_text(..., more) left waiting. Any thread. */
  virtual void flush() {}
  /* Sends a close frame (once); the socket ends when the peer answers, or
   * after a short timeout. Any thread. */
  virtual void close(uint16_t code, std::string_view reason) = 0;

  /* Pull mode. The thread that consumes the call's input (twiliosrc's
   * streaming thread, in pa_call_pop_inbound) reads the socket itself
   * instead of waiting for another thread to read and hand frames over:
   * one wake-up per frame instead of two, as udpsrc reads its socket in its
   * own create(). Waits up to @timeout_us (-1: no limit) for input and
   * handles it (frames reach the call through pa_call_handle_*). FALSE when
   * this transport cannot pull (any more): the caller waits instead. */
  virtual bool pump(gint64 timeout_us) { (void)timeout_us; return false; }
  /* Makes a pump() in progress return at once. Any thread. */
  virtual void wake() {}
  /* The puller stops pulling: the socket loop reads again. Called by the
   * puller's thread. */
  virtual void release() {}
  /* The media thread that reads this socket; nullptr when there is none
   * (the loop runs on a GMainContext, or a test transport). */
  virtual std::shared_ptr<MediaThread> media_thread() const { return nullptr; }
};

namespace ws {

/* Close codes (RFC 6455 7.4.1). */
constexpr uint16_t kNormal = 1000, kGoingAway = 1001, kProtocolError = 1002, kNoStatus = 1005,
                   kAbnormal = 1006, kPolicyViolation = 1008, kTooBig = 1009, kTryAgainLater = 1013;

enum class Opcode : uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

struct FrameHeader {
  bool fin = false;
  Opcode opcode = Opcode::Text;
  bool masked = false;
  uint8_t mask[4] = {0, 0, 0, 0};
  size_t header_len = 0;
  uint64_t payload_len = 0;
};

enum class Decode { Incomplete, Ok, Error };

/* Reads a frame header from @data. Error (with @error set) for reserved
 * bits, unknown opcodes, fragmented or oversized control frames. */
PA_API Decode decode_header(const uint8_t *data, size_t len, FrameHeader &h, std::string &error);
/* XORs @len bytes with the mask, in place. */
PA_API void unmask(uint8_t *data, size_t len, const uint8_t mask[4]);
/* Appends a frame with FIN set: unmasked (a server's) or, with @mask, masked
 * with those four bytes (a client's). */
PA_API void append_frame(std::string &out, Opcode opcode, std::string_view payload,
                         const uint8_t *mask = nullptr);

} // namespace ws

class MediaSocket;

/* All Media Streams sockets of one listener, on one GMainContext. */
class PA_API SocketLoop {
public:
  struct Limits {
    size_t max_message = 1024 * 1024;  /* larger messages close the socket with 1009 */
    size_t max_backlog = 4 * 1024 * 1024; /* more unsent than this: the peer is gone, drop it */
    guint close_timeout_ms = 2000;     /* after our close frame, wait this long for the peer's */
    /* 0: the loop is a GSource on @context. N: the loop runs on N media
     * threads of its own (sockets spread over them) and the frames of a
     * call are handled there; the owner's callbacks (on_closed) still run
     * on @context. */
    guint threads = 0;
    /* On media threads: after a wake-up that found sockets ready, sleep
     * this long (from the wake-up) before looking again, so that one
     * wake-up serves the frames of many calls (adds up to this much
     * latency). 0: handle each frame as soon as it arrives. */
    guint wait_us = 0;
    /* On media threads: which thread a new socket goes to. 0: the one
     * with the fewest sockets (spread evenly). N: the first thread whose
     * load is under N/1000 of a CPU, else the least loaded one. A thread's
     * load is its CPU time over the last half second, scaled to the
     * sockets it has now (at least 1/200 of a CPU per socket; before it
     * was ever measured, 1/100). Every wake-up of a thread has a cost of its own, whatever
     * it then does, so a light load served by few threads costs less CPU
     * than the same load spread over all of them. */
    guint fill_permille = 0;
  };
  /* Attaches to @context (nullptr: the thread-default one). */
  SocketLoop(GMainContext *context, Limits limits);
  /* Ends every socket still open (close 1001, then the connection) and
   * detaches. Call it on the context's thread. */
  ~SocketLoop();
  SocketLoop(const SocketLoop &) = delete;
  SocketLoop &operator=(const SocketLoop &) = delete;

  /* Takes over @socket, an upgraded connection (the 101 already sent), with
   * @initial bytes already read from it, and closes it when done. Frames go to @call (a new
   * reference is taken; nullptr: the socket is closed at once with @refuse_code
   * and @refuse_reason). @on_closed runs on the context's thread once the
   * connection is gone. */
  void adopt(GSocket *socket, std::string initial, PaCall *call, uint16_t refuse_code, std::string refuse_reason,
             std::function<void()> on_closed);

  size_t size() const;

  /* Media threads only: how often they woke up, and how many sockets were
   * ready in all at those wake-ups. */
  struct Stats {
    guint64 wakeups = 0, ready = 0;
    std::vector<size_t> sockets; /* per media thread, in order */
  };
  Stats stats() const;

  struct Impl;

private:
  std::vector<std::shared_ptr<Impl>> loops_;
};

/* TRUE on a SocketLoop's media thread: code that runs there (downstream of
 * a twiliosrc pushing from it) must never block, or every call on that
 * thread stops. */
PA_API bool on_media_thread();

} // namespace pa
