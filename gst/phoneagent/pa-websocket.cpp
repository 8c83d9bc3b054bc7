/* gst-phone-agent: the Media Streams WebSocket, server side (RFC 6455) */
#include "pa-websocket.h"

#include <gst/gst.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>
#include <time.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "pa-call.h"

GST_DEBUG_CATEGORY_STATIC(pa_ws_debug);
#define GST_CAT_DEFAULT pa_ws_debug

namespace pa {

/* ------------------------------------------------------------ codec */

namespace ws {

Decode decode_header(const uint8_t *data, size_t len, FrameHeader &h, std::string &error) {
  if (len < 2)
    return Decode::Incomplete;
  h.fin = data[0] & 0x80;
  if (data[0] & 0x70) {
    error = "reserved bits set (no extension was negotiated)";
    return Decode::Error;
  }
  uint8_t op = data[0] & 0x0f;
  switch (op) {
  case 0: case 1: case 2: case 8: case 9: case 10:
    h.opcode = static_cast<Opcode>(op);
    break;
  default:
    error = "unknown opcode " + std::to_string(op);
    return Decode::Error;
  }
  h.masked = data[1] & 0x80;
  uint64_t n = data[1] & 0x7f;
  size_t pos = 2;
  if (n == 126) {
    if (len < 4)
      return Decode::Incomplete;
    n = (uint64_t(data[2]) << 8) | data[3];
    pos = 4;
  } else if (n == 127) {
    if (len < 10)
      return Decode::Incomplete;
    n = 0;
    for (int i = 0; i < 8; i++)
      n = (n << 8) | data[2 + i];
    if (n >> 63) {
      error = "payload length with the top bit set";
      return Decode::Error;
    }
    pos = 10;
  }
  if (op >= 8 && (n > 125 || !h.fin)) {
    error = "fragmented or oversized control frame";
    return Decode::Error;
  }
  if (h.masked) {
    if (len < pos + 4)
      return Decode::Incomplete;
    memcpy(h.mask, data + pos, 4);
    pos += 4;
  }
  h.header_len = pos;
  h.payload_len = n;
  return Decode::Ok;
}

void unmask(uint8_t *data, size_t len, const uint8_t mask[4]) {
  uint32_t m;
  memcpy(&m, mask, 4);
  const uint64_t m8 = m | (static_cast<uint64_t>(m) << 32);
  size_t i = 0;
#if defined(__SSE2__)
  /* 16 bytes a step: a Twilio media message is about 400 */
  const __m128i m16 = _mm_set1_epi32(static_cast<int>(m));
  for (; i + 16 <= len; i += 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i *>(data + i));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(data + i), _mm_xor_si128(x, m16));
  }
#endif
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, data + i, 8);
    w ^= m8;
    memcpy(data + i, &w, 8);
  }
  for (; i < len; i++)
    data[i] ^= mask[i & 3];
}

void append_frame(std::string &out, Opcode opcode, std::string_view payload, const uint8_t *mask) {
  uint8_t hdr[14];
  size_t n = payload.size(), hl;
  hdr[0] = 0x80 | static_cast<uint8_t>(opcode);
  if (n < 126) {
    hdr[1] = static_cast<uint8_t>(n);
    hl = 2;
  } else if (n <= 0xffff) {
    hdr[1] = 126;
    hdr[2] = static_cast<uint8_t>(n >> 8);
    hdr[3] = static_cast<uint8_t>(n);
    hl = 4;
  } else {
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
      hdr[2 + i] = static_cast<uint8_t>(uint64_t(n) >> (56 - 8 * i));
    hl = 10;
  }
  if (mask) {
    hdr[1] |= 0x80;
    memcpy(hdr + hl, mask, 4);
    hl += 4;
  }
  out.append(reinterpret_cast<const char *>(hdr), hl);
  size_t start = out.size();
  out.append(payload);
  if (mask)
    unmask(reinterpret_cast<uint8_t *>(out.data()) + start, n, mask); /* XOR: masking is unmasking */
}

} // namespace ws

/* ------------------------------------------------------------ one socket */

/* Who reads a socket: the loop (epoll, on its context's thread) until a
 * streaming thread pulls (twiliosrc waiting for input, see pump()), and
 * again once it lets go. Whoever reads holds rlock_. Writes happen on any
 * thread under wlock_. The socket is finished (descriptor closed) by a
 * reader, or by the loop after waking the puller; what follows (telling the
 * owner, dropping the call) is "reaped" on the loop's thread. */
class MediaSocket final : public CallTransport, public std::enable_shared_from_this<MediaSocket> {
public:
  MediaSocket(GSocket *socket, std::shared_ptr<SocketLoop::Impl> loop, int epfd, PaCall *call, size_t max_message,
              size_t max_backlog, std::function<void()> on_closed, GMainContext *owner,
              std::shared_ptr<std::atomic<bool>> owner_alive)
      : socket_(G_SOCKET(g_object_ref(socket))), fd_(g_socket_get_fd(socket)), epfd_(epfd),
        owner_(owner ? g_main_context_ref(owner) : nullptr), owner_alive_(std::move(owner_alive)),
        /* made now, not on the first pump(): a wake() must never be lost */
        evfd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), loop_(loop), call_(call ? PA_CALL(g_object_ref(call)) : nullptr),
        max_message_(max_message), max_backlog_(max_backlog), on_closed_(std::move(on_closed)) {}
  ~MediaSocket() override {
    if (owner_)
      g_main_context_unref(owner_);
    g_object_unref(socket_);
    if (call_)
      g_object_unref(call_);
    if (evfd_ >= 0)
      ::close(evfd_);
  }

  /* ---- CallTransport ---- */

  void send_text(std::string_view text, bool more) override {
    std::lock_guard<std::mutex> g(wlock_);
    if (fd_ < 0 || close_sent_)
      return;
    queue_frame_locked(ws::Opcode::Text, text, !more);
    if (want_write_ && wbuf_.size() - woff_ > max_backlog_ && !dropped_) {
      /* the peer has not read for a long while (the stall check should have
       * closed the call first): memory stays bounded whatever the settings */
      GST_WARNING("fd %d: %zu bytes the peer does not read; dropping the connection", fd_, wbuf_.size() - woff_);
      dropped_ = true;
      wbuf_.clear();
      woff_ = 0;
      ::shutdown(fd_, SHUT_RDWR); /* the reader sees the end and finishes */
    }
  }

  void close(uint16_t code, std::string_view reason) override {
    std::lock_guard<std::mutex> g(wlock_);
    send_close_locked(code, reason);
  }

  void flush() override {
    std::lock_guard<std::mutex> g(wlock_);
    if (fd_ >= 0 && !want_write_)
      flush_locked();
  }

  std::shared_ptr<MediaThread> media_thread() const override; /* after SocketLoop::Impl */

  bool pump(gint64 timeout_us) override {
    if (stop_pulling_)
      return false;
    std::unique_lock<std::mutex> r(rlock_);
    int fd, evfd;
    {
      std::lock_guard<std::mutex> g(wlock_);
      if (fd_ < 0 || !call_ || stop_pulling_ || evfd_ < 0)
        return false;
      if (!pulled_) {
        pulled_ = true;
        arm_locked();
      }
      fd = fd_;
      evfd = evfd_;
    }
    struct pollfd pfd[2] = {{fd, POLLIN, 0}, {evfd, POLLIN, 0}};
    int ms = timeout_us < 0 ? -1 : static_cast<int>(std::min<gint64>((timeout_us + 999) / 1000, G_MAXINT));
    int n = ::poll(pfd, 2, ms);
    if (n <= 0)
      return true;
    if (pfd[1].revents) {
      uint64_t v;
      if (::read(evfd, &v, sizeof v) < 0) {
        /* nothing to drain */
      }
    }
    if (pfd[0].revents) {
      uint8_t buf[16384];
      read_some(buf, sizeof buf);
    }
    return true;
  }

  void wake() override {
    std::lock_guard<std::mutex> g(wlock_);
    if (evfd_ >= 0) {
      uint64_t one = 1;
      if (::write(evfd_, &one, sizeof one) < 0) {
        /* the counter is already non-zero */
      }
    }
  }

  void release() override {
    std::lock_guard<std::mutex> r(rlock_);
    std::lock_guard<std::mutex> g(wlock_);
    if (pulled_ && fd_ >= 0) {
      pulled_ = false;
      arm_locked();
    }
  }

  /* ---- the loop's thread ---- */

  /* Handles readiness reported by epoll. @scratch: the loop's read buffer. */
  void on_ready(uint32_t events, uint8_t *scratch, size_t scratch_size) {
    bool pulled;
    {
      std::lock_guard<std::mutex> g(wlock_);
      pulled = pulled_;
      if (events & EPOLLOUT)
        flush_locked();
      /* a pulled socket is watched one-shot: keep watching while writes wait
       * (a hang-up is the puller's to see, and is reported once) */
      if (pulled && want_write_ && fd_ >= 0)
        arm_locked();
    }
    if (pulled || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
      return;
    std::unique_lock<std::mutex> r(rlock_, std::try_to_lock);
    if (!r.owns_lock())
      return; /* a streaming thread just started pulling */
    {
      std::lock_guard<std::mutex> g(wlock_);
      if (pulled_)
        return;
    }
    read_some(scratch, scratch_size);
  }

  /* Feeds bytes read before the loop took the socket. */
  void feed(std::string bytes) {
    std::lock_guard<std::mutex> r(rlock_);
    consume(reinterpret_cast<uint8_t *>(bytes.data()), bytes.size());
  }

  /* About twice a second: close timeouts and the call's stall check. */
  void sweep(gint64 now_us, guint close_timeout_ms) {
    gint64 sent_at;
    bool open;
    {
      std::lock_guard<std::mutex> g(wlock_);
      sent_at = close_sent_us_;
      open = fd_ >= 0;
    }
    if (!open)
      return;
    if (sent_at && now_us - sent_at > gint64(close_timeout_ms) * 1000) {
      GST_INFO("%s: no close frame from the peer within %u ms; dropping the connection", name().c_str(),
               close_timeout_ms);
      finish_from_outside(close_code_, close_reason_);
      return;
    }
    PaCall *call = nullptr;
    {
      std::lock_guard<std::mutex> g(wlock_);
      if (call_ && !sent_at)
        call = PA_CALL(g_object_ref(call_));
    }
    if (call) {
      pa_call_check_stall(call);
      g_object_unref(call);
    }
  }

  /* Ends the socket from a thread that does not read it (the loop's sweep,
   * the loop going away): the puller, if any, is woken and lets go first. */
  void finish_from_outside(uint16_t code, const std::string &reason) {
    stop_pulling_ = true;
    wake();
    std::lock_guard<std::mutex> r(rlock_);
    finish(code, reason);
  }

  /* Refuses the stream: a close frame and nothing else. */
  void refuse(uint16_t code, const std::string &reason) {
    std::lock_guard<std::mutex> g(wlock_);
    send_close_locked(code, reason);
  }

  /* What happens once the socket is finished, on the loop's thread: the
   * owner is told, and the call let go (it holds this socket). On a media
   * thread of its own the loop tells the owner on the owner's context,
   * unless @direct (the loop is going away, on the owner's thread). */
  void reap(bool direct = false) {
    if (on_closed_) {
      auto cb = std::move(on_closed_);
      on_closed_ = nullptr;
      if (owner_ && !direct) {
        /* skipped (and dropped) if the loop is gone by then: its owner is
         * too */
        auto alive = owner_alive_;
        auto *f = new std::function<void()>([alive, cb = std::move(cb)] {
          if (alive && *alive)
            cb();
        });
        g_main_context_invoke_full(owner_, G_PRIORITY_DEFAULT, [](gpointer d) -> gboolean {
          (*static_cast<std::function<void()> *>(d))();
          return G_SOURCE_REMOVE;
        }, f, [](gpointer d) { delete static_cast<std::function<void()> *>(d); });
      } else {
        cb();
      }
    }
    PaCall *c;
    {
      std::lock_guard<std::mutex> r(rlock_);
      std::lock_guard<std::mutex> g(wlock_);
      c = call_;
      call_ = nullptr;
    }
    if (c)
      g_object_unref(c);
  }

  void forget_owner() { on_closed_ = nullptr; }

private:
  /* For logs; call_ only changes when reaped, on the loop's thread, with
   * rlock_ held: callers hold rlock_ or are on that thread. */
  std::string name() { return call_ ? pa_call_get_name(call_) : "refused stream"; }

  /* ---- reading: rlock_ held ---- */

  /* The loop watches edges (EPOLLET): a read shorter than @size emptied
   * the socket, and new bytes make a new edge; after four full reads (a
   * burst: other sockets get their turn) the socket is armed again, which
   * reports it at once if bytes are still there. */
  void read_some(uint8_t *buf, size_t size) {
    for (int round = 0; round < 4; round++) {
      ssize_t n = ::recv(fd_, buf, size, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (n <= 0) {
        if (n < 0)
          GST_INFO("%s: socket error: %s", name().c_str(), g_strerror(errno));
        finish(ws::kAbnormal, "");
        return;
      }
      if (!consume(buf, static_cast<size_t>(n)))
        return;
      if (static_cast<size_t>(n) < size)
        return;
    }
    std::lock_guard<std::mutex> g(wlock_);
    if (fd_ >= 0 && !pulled_)
      arm_locked();
  }

  /* Handles the frames in what was just read: in place when nothing was
   * left over from the last read (the usual case: whole frames), else after
   * the leftover. Keeps an incomplete frame for next time. FALSE once
   * finished. */
  bool consume(uint8_t *data, size_t len) {
    size_t used = 0;
    if (rbuf_.empty()) {
      if (!parse(data, len, used))
        return false;
      rbuf_.assign(data + used, data + len);
    } else {
      rbuf_.insert(rbuf_.end(), data, data + len);
      if (!parse(rbuf_.data(), rbuf_.size(), used))
        return false;
      rbuf_.erase(rbuf_.begin(), rbuf_.begin() + static_cast<long>(used));
    }
    if (rbuf_.empty() && rbuf_.capacity() > 4096)
      rbuf_.shrink_to_fit();
    return true;
  }

  /* Handles every complete frame in @data; @used: the bytes they took.
   * FALSE once finished. */
  bool parse(uint8_t *data, size_t len, size_t &used) {
    size_t off = 0;
    while (true) {
      ws::FrameHeader h;
      std::string error;
      ws::Decode d = ws::decode_header(data + off, len - off, h, error);
      if (d == ws::Decode::Incomplete)
        break;
      if (d == ws::Decode::Error || !h.masked) {
        if (d == ws::Decode::Ok)
          error = "unmasked client frame";
        GST_WARNING("%s: WebSocket protocol error (%s); closing with 1002", name().c_str(), error.c_str());
        protocol_close(ws::kProtocolError, "protocol error");
        return false;
      }
      uint64_t total = (h.opcode == ws::Opcode::Continuation ? message_.size() : 0) + h.payload_len;
      if (h.payload_len > max_message_ || total > max_message_) {
        GST_WARNING("%s: a %" G_GUINT64_FORMAT "-byte message is over the %zu-byte hard limit; closing with 1009",
                    name().c_str(), total, max_message_);
        protocol_close(ws::kTooBig, "message too big");
        return false;
      }
      if (len - off < h.header_len + h.payload_len)
        break;
      uint8_t *payload = data + off + h.header_len;
      size_t n = static_cast<size_t>(h.payload_len);
      ws::unmask(payload, n, h.mask);
      off += h.header_len + n;
      if (!on_frame(h, payload, n))
        return false;
    }
    used = off;
    return true;
  }

  void deliver(bool text, const uint8_t *data, size_t len) {
    if (!call_)
      return;
    if (text)
      pa_call_handle_text(call_, reinterpret_cast<const char *>(data), len);
    else
      pa_call_handle_binary(call_, len);
  }

  bool on_frame(const ws::FrameHeader &h, const uint8_t *data, size_t len) {
    switch (h.opcode) {
    case ws::Opcode::Text:
    case ws::Opcode::Binary:
      if (in_message_) {
        GST_WARNING("%s: a new message inside a fragmented one; closing with 1002", name().c_str());
        protocol_close(ws::kProtocolError, "protocol error");
        return false;
      }
      if (h.fin) {
        deliver(h.opcode == ws::Opcode::Text, data, len);
      } else {
        in_message_ = true;
        message_text_ = h.opcode == ws::Opcode::Text;
        message_.assign(data, data + len);
      }
      return true;
    case ws::Opcode::Continuation:
      if (!in_message_) {
        GST_WARNING("%s: a continuation frame outside a message; closing with 1002", name().c_str());
        protocol_close(ws::kProtocolError, "protocol error");
        return false;
      }
      message_.insert(message_.end(), data, data + len);
      if (h.fin) {
        in_message_ = false;
        deliver(message_text_, message_.data(), message_.size());
        message_.clear();
        message_.shrink_to_fit();
      }
      return true;
    case ws::Opcode::Ping: {
      std::lock_guard<std::mutex> g(wlock_);
      if (fd_ >= 0 && !close_sent_) {
        queue_frame_locked(ws::Opcode::Pong, std::string_view(reinterpret_cast<const char *>(data), len), true);
      }
      return true;
    }
    case ws::Opcode::Pong:
      return true;
    case ws::Opcode::Close: {
      uint16_t code = len >= 2 ? static_cast<uint16_t>((data[0] << 8) | data[1]) : ws::kNoStatus;
      std::string reason = len > 2 ? std::string(reinterpret_cast<const char *>(data) + 2, len - 2) : "";
      GST_DEBUG("%s: close frame from the peer (%u %s)", name().c_str(), code, reason.c_str());
      {
        /* answer with the same code (RFC 6455 5.5.1), unless we started */
        std::lock_guard<std::mutex> g(wlock_);
        send_close_locked(code == ws::kNoStatus ? ws::kNormal : code, "");
      }
      finish(code, reason);
      return false;
    }
    }
    return true;
  }

  void protocol_close(uint16_t code, const char *reason) {
    {
      std::lock_guard<std::mutex> g(wlock_);
      send_close_locked(code, reason);
    }
    finish(code, reason);
  }

  /* Ends the connection now (rlock_ held): our close frame if none was
   * sent, then the descriptor; tells the call (with @code); the rest is
   * reaped on the loop's thread. */
  void finish(uint16_t code, const std::string &reason) {
    PaCall *call;
    {
      std::lock_guard<std::mutex> g(wlock_);
      if (fd_ < 0)
        return;
      GST_DEBUG("fd %d: connection ends (%u %s)", fd_, code, reason.c_str());
      if (code != ws::kAbnormal)
        send_close_locked(ws::kGoingAway, "going away");
      epoll_ctl(epfd_, EPOLL_CTL_DEL, fd_, nullptr);
      /* closes the descriptor whoever else holds the GSocket */
      g_socket_close(socket_, nullptr);
      fd_ = -1;
      call = call_ ? PA_CALL(g_object_ref(call_)) : nullptr;
    }
    if (call) {
      pa_call_handle_closed(call, code, reason);
      g_object_unref(call);
    }
    schedule_reap();
  }

  void schedule_reap();

  /* ---- writing: wlock_ held ---- */

  /* What epoll watches: reads unless a streaming thread pulls (then only a
   * one-shot hang-up), and writes while some are pending. Edge-triggered
   * (see read_some()); arming again reports what is ready now, so a
   * puller letting go (release()) hands back unread bytes too. */
  void arm_locked() {
    struct epoll_event ev = {};
    ev.events = (pulled_ ? uint32_t(EPOLLONESHOT) : uint32_t(EPOLLIN | EPOLLET)) | (want_write_ ? uint32_t(EPOLLOUT) : 0u);
    ev.data.ptr = this;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd_, &ev);
  }

  void send_close_locked(uint16_t code, std::string_view reason) {
    if (fd_ < 0 || close_sent_)
      return;
    GST_DEBUG("fd %d: sending close (%u %.*s)", fd_, code, static_cast<int>(reason.size()), reason.data());
    close_sent_ = true;
    close_sent_us_ = g_get_monotonic_time();
    close_code_ = code;
    close_reason_ = std::string(reason.substr(0, 123));
    std::string payload;
    payload.push_back(static_cast<char>(code >> 8));
    payload.push_back(static_cast<char>(code & 0xff));
    payload += close_reason_;
    queue_frame_locked(ws::Opcode::Close, payload, true);
  }

  /* Appends a frame and, with @flush, writes what the kernel takes now
   * (while writes wait for EPOLLOUT, that flushes everything in order). */
  void queue_frame_locked(ws::Opcode op, std::string_view payload, bool flush) {
    ws::append_frame(wbuf_, op, payload);
    if (flush && !want_write_)
      flush_locked();
  }

  /* Writes what the kernel takes; the rest waits for EPOLLOUT. */
  void flush_locked() {
    while (fd_ >= 0 && woff_ < wbuf_.size()) {
      ssize_t n = ::send(fd_, wbuf_.data() + woff_, wbuf_.size() - woff_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        woff_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!want_write_) {
          GST_LOG("fd %d: the peer is not taking more (%zu bytes wait for EPOLLOUT)", fd_, wbuf_.size() - woff_);
          want_write_ = true;
          arm_locked();
        }
        return;
      }
      /* EPIPE, ECONNRESET: the reader will see the end */
      break;
    }
    wbuf_.clear();
    woff_ = 0;
    if (want_write_ && fd_ >= 0) {
      want_write_ = false;
      arm_locked();
    }
  }

  std::mutex wlock_; /* below: the descriptor, the write side, the mode */
  GSocket *socket_;
  int fd_;
  int epfd_;
  GMainContext *owner_; /* a media thread's loop: where on_closed runs (nullptr: the loop's own context) */
  std::shared_ptr<std::atomic<bool>> owner_alive_; /* false once the SocketLoop is destroyed */
  int evfd_; /* wakes a puller (-1 if it could not be made: then nobody pulls) */
  std::string wbuf_;
  size_t woff_ = 0;
  bool want_write_ = false;
  bool dropped_ = false; /* shut down for a backlog over max_backlog_ */
  bool pulled_ = false;
  bool close_sent_ = false;
  gint64 close_sent_us_ = 0;
  uint16_t close_code_ = 0;
  std::string close_reason_;
  std::atomic<bool> stop_pulling_{false};
  std::weak_ptr<SocketLoop::Impl> loop_;

  std::mutex rlock_; /* below: the read side (and call_, which reaping drops) */
  PaCall *call_;
  size_t max_message_;
  size_t max_backlog_;
  std::vector<uint8_t> rbuf_;
  std::vector<uint8_t> message_;
  bool in_message_ = false, message_text_ = true;

  /* the loop's thread only */
  std::function<void()> on_closed_;
};

/* ------------------------------------------------------------ the loop */

struct EpollSource {
  GSource source;
  SocketLoop::Impl *loop;
};

thread_local bool tls_media_thread = false;
thread_local const void *tls_media_loop = nullptr; /* the SocketLoop::Impl this media thread runs */

bool on_media_thread() { return tls_media_thread; }

/* One epoll set and the sockets in it: either a GSource on a GMainContext
 * (the listener's), or a media thread of its own (Limits::threads). */
struct SocketLoop::Impl : MediaThread, std::enable_shared_from_this<SocketLoop::Impl> {
  Limits limits;
  static constexpr size_t kScratch = 65536;
  std::unique_ptr<uint8_t[]> scratch{new uint8_t[kScratch]};
  GMainContext *context = nullptr; /* the loop's (no thread of its own) or the owner's (on_closed runs there) */
  int epfd = -1;
  GSource *source = nullptr;
  GSource *sweeper = nullptr;
  /* a media thread of its own */
  bool threaded = false;
  std::thread thread;
  int evfd = -1; /* wakes the thread for tasks */
  std::mutex tasks_lock;
  std::vector<std::function<void()>> tasks;
  std::atomic<bool> stopping{false};
  std::atomic<guint64> wakeups{0}, ready{0};
  std::shared_ptr<std::atomic<bool>> alive; /* the SocketLoop's, shared by its loops */
  /* the loop's thread only; size() reads n_sockets (on media threads
   * counted when given to the thread, before it takes them) */
  std::map<MediaSocket *, std::shared_ptr<MediaSocket>> sockets;
  std::atomic<size_t> n_sockets{0};
  /* media threads: the thread's CPU time over the last sweep period (1/1000
   * of a CPU) and how many sockets it had then (Limits::fill_permille) */
  std::atomic<guint> load_permille{0};
  std::atomic<size_t> load_sockets{0};
  std::atomic<bool> load_measured{false};
  gint64 load_cpu_us = 0, load_wall_us = 0; /* the thread only */
  bool closing = false;
  /* loops hosted here (MediaThread::host), by key; their epoll entries carry
   * the loop's address with the low bit set, to tell them from sockets */
  std::mutex hosted_lock;
  std::vector<std::pair<const void *, std::shared_ptr<HostedLoop>>> hosted;
  bool hosting_over = false; /* the thread has stopped: host() says no */
  /* MediaThread::at(): due time -> work, under hosted_lock */
  std::multimap<gint64, std::function<void()>> timers;

  std::shared_ptr<HostedLoop> host(const void *key,
                                   const std::function<std::shared_ptr<HostedLoop>()> &make) override {
    std::lock_guard<std::mutex> g(hosted_lock);
    if (!threaded || hosting_over || stopping)
      return nullptr;
    for (auto &[k, l] : hosted)
      if (k == key)
        return l;
    std::shared_ptr<HostedLoop> l = make();
    if (!l)
      return nullptr;
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = reinterpret_cast<uintptr_t>(l.get()) | 1u;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, l->fd(), &ev) != 0) {
      GST_WARNING("cannot host a loop on a media thread: %s", g_strerror(errno));
      return nullptr;
    }
    hosted.emplace_back(key, l);
    return l;
  }

  bool at(gint64 when_us, std::function<void()> fn) override {
    bool earliest;
    {
      std::lock_guard<std::mutex> g(hosted_lock);
      if (!threaded || hosting_over || stopping)
        return false;
      auto it = timers.emplace(when_us, std::move(fn));
      earliest = it == timers.begin();
    }
    if (earliest && tls_media_loop != this) {
      /* the thread may be asleep with a later deadline */
      uint64_t one = 1;
      if (::write(evfd, &one, sizeof one) < 0) {
        /* the counter is already non-zero */
      }
    }
    return true;
  }

  /* The thread's next deadline: @until, or an earlier timer's. */
  gint64 next_deadline(gint64 until) {
    std::lock_guard<std::mutex> g(hosted_lock);
    return timers.empty() ? until : std::min(until, timers.begin()->first);
  }

  /* On the thread: runs the timers that are due. */
  void run_timers(gint64 now) {
    std::vector<std::function<void()>> due;
    {
      std::lock_guard<std::mutex> g(hosted_lock);
      while (!timers.empty() && timers.begin()->first <= now) {
        due.push_back(std::move(timers.begin()->second));
        timers.erase(timers.begin());
      }
    }
    for (auto &fn : due)
      fn();
  }

  /* The thread has stopped: the hosted loops end what they have. */
  void end_hosting() {
    std::vector<std::pair<const void *, std::shared_ptr<HostedLoop>>> all;
    std::multimap<gint64, std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> g(hosted_lock);
      hosting_over = true;
      all.swap(hosted);
      dropped.swap(timers);
    }
    dropped.clear(); /* what they hold is released here, without the lock */
    for (auto &[k, l] : all) {
      epoll_ctl(epfd, EPOLL_CTL_DEL, l->fd(), nullptr);
      l->host_gone();
    }
  }

  /* Handles what is ready now; the number of sockets that were. */
  int dispatch() {
    struct epoll_event events[256];
    int n = epoll_wait(epfd, events, 256, 0);
    return handle(events, n);
  }

  /* The sockets of one round are handled through the pointer epoll gives
   * back, with no lookup: a socket leaves `sockets` only in reap(), which
   * runs as a task, and tasks run after the round. */
  int handle(struct epoll_event *events, int n) {
    int io = 0;
    bool tasks = false;
    for (int i = 0; i < n && !closing; i++) {
      if (events[i].data.u64 & 1u) {
        /* a hosted loop: alive while registered (end_hosting() runs after
         * this thread has stopped) */
        reinterpret_cast<HostedLoop *>(static_cast<uintptr_t>(events[i].data.u64 & ~uint64_t(1)))->dispatch();
        io++;
        continue;
      }
      if (events[i].data.ptr == this) {
        uint64_t v;
        if (::read(evfd, &v, sizeof v) < 0) {
          /* nothing to drain */
        }
        tasks = true;
        continue;
      }
      static_cast<MediaSocket *>(events[i].data.ptr)->on_ready(events[i].events, scratch.get(), kScratch);
      io++;
    }
    if (tasks)
      run_tasks();
    return io;
  }

  void run_tasks() {
    std::vector<std::function<void()>> todo;
    {
      std::lock_guard<std::mutex> g(tasks_lock);
      todo.swap(tasks);
    }
    for (auto &f : todo)
      f();
  }

  /* Runs @f on the loop's thread, later. */
  void post(std::function<void()> f) {
    if (threaded) {
      {
        std::lock_guard<std::mutex> g(tasks_lock);
        tasks.push_back(std::move(f));
      }
      uint64_t one = 1;
      if (::write(evfd, &one, sizeof one) < 0) {
        /* the counter is already non-zero */
      }
      return;
    }
    GSource *src = g_idle_source_new();
    g_source_set_priority(src, G_PRIORITY_HIGH);
    g_source_set_callback(src, [](gpointer d) -> gboolean {
      (*static_cast<std::function<void()> *>(d))();
      return G_SOURCE_REMOVE;
    }, new std::function<void()>(std::move(f)), [](gpointer d) { delete static_cast<std::function<void()> *>(d); });
    g_source_attach(src, context);
    g_source_unref(src);
  }

  /* A media thread: wait for sockets, handle every one that is ready, and
   * with Limits::wait_us, sleep out the rest of that time before looking
   * again, so that one wake-up serves the frames of many calls (as
   * GStreamer's threadshare "context-wait"). Idle, it sleeps in epoll. */
  void run() {
    tls_media_thread = true;
    tls_media_loop = this;
    gint64 next_sweep = g_get_monotonic_time() + 500000;
    measure_load(g_get_monotonic_time());
    struct epoll_event events[256];
    while (!stopping) {
      gint64 now = g_get_monotonic_time();
      gint64 deadline = next_deadline(next_sweep);
      int timeout = deadline > now ? static_cast<int>((deadline - now + 999) / 1000) : 0;
      int n = epoll_wait(epfd, events, 256, timeout);
      if (n < 0 && errno != EINTR)
        g_error("epoll_wait: %s", g_strerror(errno)); /* only for a bad descriptor: a bug */
      gint64 woke = g_get_monotonic_time();
      wakeups.fetch_add(1, std::memory_order_relaxed);
      int io = handle(events, std::max(n, 0));
      ready.fetch_add(static_cast<guint64>(io), std::memory_order_relaxed);
      run_timers(g_get_monotonic_time());
      if (woke >= next_sweep) {
        measure_load(woke);
        sweep();
        next_sweep = woke + 500000;
      }
      if (limits.wait_us && io > 0 && !stopping) {
        gint64 until = woke + limits.wait_us;
        struct timespec ts = {static_cast<time_t>(until / G_USEC_PER_SEC),
                              static_cast<long>(until % G_USEC_PER_SEC) * 1000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
        }
      }
    }
  }

  static gint64 thread_cpu_us() {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<gint64>(ts.tv_sec) * G_USEC_PER_SEC + ts.tv_nsec / 1000;
  }

  /* On the thread, once per sweep period: what it has cost since the last. */
  void measure_load(gint64 now) {
    gint64 cpu = thread_cpu_us();
    if (load_wall_us && now > load_wall_us) {
      load_permille = static_cast<guint>(std::min<gint64>((cpu - load_cpu_us) * 1000 / (now - load_wall_us), 1000));
      load_sockets = sockets.size();
      load_measured = true;
    }
    load_cpu_us = cpu;
    load_wall_us = now;
  }

  /* Any thread: the load to expect with the sockets it has now (counted
   * as soon as they are given to it), in 1/1000 of a CPU. */
  double expected_load() const {
    double n = static_cast<double>(n_sockets.load());
    size_t m = load_sockets.load();
    if (!load_measured || !m)
      return std::max<double>(load_permille.load(), n * 10.0);
    return n * std::max(5.0, static_cast<double>(load_permille.load()) / static_cast<double>(m));
  }

  void sweep() {
    gint64 now = g_get_monotonic_time();
    std::vector<std::shared_ptr<MediaSocket>> all;
    all.reserve(sockets.size());
    for (auto &[ptr, s] : sockets)
      all.push_back(s);
    for (auto &s : all)
      s->sweep(now, limits.close_timeout_ms);
  }

  void reap(MediaSocket *socket) {
    auto it = sockets.find(socket);
    if (it == sockets.end())
      return;
    std::shared_ptr<MediaSocket> s = std::move(it->second);
    sockets.erase(it);
    if (threaded)
      n_sockets--; /* counted by SocketLoop::adopt(), before the thread took it */
    else
      n_sockets = sockets.size();
    s->reap(closing); /* the loop going away tells the owner at once */
  }

  /* Ends every socket (the loop is going away; its thread, if any, has
   * stopped): on the owner's thread, on_closed called at once. */
  void close_all() {
    closing = true;
    if (threaded)
      run_tasks(); /* adoptions still queued */
    auto all = std::move(sockets);
    n_sockets = 0;
    for (auto &[ptr, s] : all) {
      s->finish_from_outside(ws::kGoingAway, "going away");
      s->reap(true);
    }
  }

  void adopt(GSocket *socket, std::string initial, PaCall *call, uint16_t refuse_code, std::string refuse_reason,
             std::function<void()> on_closed) {
    int fd = g_socket_get_fd(socket);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    auto s = std::make_shared<MediaSocket>(socket, shared_from_this(), epfd, call, limits.max_message,
                                           limits.max_backlog, std::move(on_closed), threaded ? context : nullptr,
                                           alive);
    sockets[s.get()] = s;
    if (!threaded)
      n_sockets = sockets.size(); /* on media threads SocketLoop::adopt() counted it already */
    struct epoll_event ev = {};
    ev.events = EPOLLIN | EPOLLET; /* see MediaSocket::read_some() */
    ev.data.ptr = s.get();
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      GST_WARNING("cannot watch a stream's socket: %s", g_strerror(errno));
      s->finish_from_outside(ws::kAbnormal, "");
      return;
    }
    if (call)
      pa_call_attach_transport(call, s);
    else
      s->refuse(refuse_code, refuse_reason);
    if (!initial.empty())
      s->feed(std::move(initial));
  }
};

std::shared_ptr<MediaThread> MediaSocket::media_thread() const {
  std::shared_ptr<SocketLoop::Impl> loop = loop_.lock();
  if (!loop || !loop->threaded)
    return nullptr;
  return loop;
}

void MediaSocket::schedule_reap() {
  std::shared_ptr<SocketLoop::Impl> loop = loop_.lock();
  if (!loop || loop->closing)
    return; /* the loop is going away and reaps everything itself */
  std::weak_ptr<SocketLoop::Impl> weak = loop;
  loop->post([weak, self = this] {
    if (auto l = weak.lock())
      l->reap(self);
  });
}

static gboolean epoll_source_dispatch(GSource *source, GSourceFunc, gpointer) {
  reinterpret_cast<EpollSource *>(source)->loop->dispatch();
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs epoll_source_funcs = {nullptr, nullptr, epoll_source_dispatch, nullptr, nullptr, nullptr};

SocketLoop::SocketLoop(GMainContext *context, Limits limits) {
  static gsize debug_once = 0;
  if (g_once_init_enter(&debug_once)) {
    GST_DEBUG_CATEGORY_INIT(pa_ws_debug, "phoneagentws", 0, "Twilio Media Streams WebSocket (server side)");
    g_once_init_leave(&debug_once, 1);
  }
  guint n = std::max(1u, limits.threads);
  auto alive = std::make_shared<std::atomic<bool>>(true);
  for (guint i = 0; i < n; i++) {
    auto impl = std::make_shared<Impl>();
    Impl *p = impl.get();
    p->alive = alive;
    p->limits = limits;
    p->context = context ? g_main_context_ref(context) : g_main_context_ref_thread_default();
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
      g_error("epoll_create1: %s", g_strerror(errno)); /* only without memory or descriptors */
    if (limits.threads) {
      p->threaded = true;
      p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (p->evfd < 0)
        g_error("eventfd: %s", g_strerror(errno));
      struct epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.ptr = p;
      epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev);
      p->thread = std::thread([p, i] {
        std::string name = "pa-media-" + std::to_string(i);
        pthread_setname_np(pthread_self(), name.c_str());
        p->run();
      });
    } else {
      p->source = g_source_new(&epoll_source_funcs, sizeof(EpollSource));
      reinterpret_cast<EpollSource *>(p->source)->loop = p;
      g_source_set_name(p->source, "phoneagent media sockets");
      g_source_set_priority(p->source, G_PRIORITY_HIGH);
      g_source_add_unix_fd(p->source, p->epfd, G_IO_IN);
      g_source_attach(p->source, p->context);
      p->sweeper = g_timeout_source_new(500);
      g_source_set_name(p->sweeper, "phoneagent media sockets sweep");
      g_source_set_callback(p->sweeper, [](gpointer d) -> gboolean {
        static_cast<Impl *>(d)->sweep();
        return G_SOURCE_CONTINUE;
      }, p, nullptr);
      g_source_attach(p->sweeper, p->context);
    }
    loops_.push_back(std::move(impl));
  }
}

SocketLoop::~SocketLoop() {
  /* on_closed calls still queued on the owner's context are skipped: the
   * owner is going away (this runs on its thread, as they would) */
  *loops_.front()->alive = false;
  for (auto &impl : loops_) {
    Impl *p = impl.get();
    if (p->threaded) {
      p->stopping = true;
      uint64_t one = 1;
      if (::write(p->evfd, &one, sizeof one) < 0) {
        /* the counter is already non-zero */
      }
      p->thread.join();
    } else {
      g_source_destroy(p->sweeper);
      g_source_unref(p->sweeper);
      g_source_destroy(p->source);
      g_source_unref(p->source);
    }
  }
  for (auto &impl : loops_) {
    Impl *p = impl.get();
    p->end_hosting();
    p->close_all();
    ::close(p->epfd);
    if (p->evfd >= 0)
      ::close(p->evfd);
    g_main_context_unref(p->context);
  }
}

void SocketLoop::adopt(GSocket *socket, std::string initial, PaCall *call, uint16_t refuse_code,
                       std::string refuse_reason, std::function<void()> on_closed) {
  /* on media threads: to the first one under the fill limit (else the
   * least loaded), or with no limit to the one with the fewest sockets */
  std::shared_ptr<Impl> target = loops_.front();
  const guint fill = target->limits.fill_permille;
  if (target->threaded && fill) {
    double least = target->expected_load();
    for (auto &impl : loops_) {
      double load = impl->expected_load();
      if (load < fill) {
        target = impl;
        break;
      }
      if (load < least) {
        least = load;
        target = impl;
      }
    }
  } else {
    for (auto &impl : loops_)
      if (impl->n_sockets < target->n_sockets)
        target = impl;
  }
  if (!target->threaded) {
    target->adopt(socket, std::move(initial), call, refuse_code, std::move(refuse_reason), std::move(on_closed));
    return;
  }
  target->n_sockets++; /* counted now, so that the next adoption goes elsewhere */
  g_object_ref(socket);
  if (call)
    g_object_ref(call);
  Impl *p = target.get();
  p->post([p, socket, call, initial = std::move(initial), refuse_code, refuse_reason = std::move(refuse_reason),
           on_closed = std::move(on_closed)]() mutable {
    p->adopt(socket, std::move(initial), call, refuse_code, std::move(refuse_reason), std::move(on_closed));
    g_object_unref(socket);
    if (call)
      g_object_unref(call);
  });
}

size_t SocketLoop::size() const {
  size_t n = 0;
  for (auto &impl : loops_)
    n += impl->n_sockets;
  return n;
}

SocketLoop::Stats SocketLoop::stats() const {
  Stats st;
  for (auto &impl : loops_) {
    st.wakeups += impl->wakeups.load(std::memory_order_relaxed);
    st.ready += impl->ready.load(std::memory_order_relaxed);
    if (impl->threaded)
      st.sockets.push_back(impl->n_sockets.load());
  }
  return st;
}

} // namespace pa
