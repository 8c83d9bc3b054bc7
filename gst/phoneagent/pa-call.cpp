/* gst-phone-agent: the call object shared by twiliosrc and twiliosink */
#include "pa-call.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

GST_DEBUG_CATEGORY_STATIC(pa_call_debug);
#define GST_CAT_DEFAULT pa_call_debug

namespace {

struct ItemProgress {
  const std::string *id = nullptr; /* its key in PaCallPrivate::items */
  uint64_t sent_bytes = 0;
  uint64_t played_bytes = 0;
  gint64 played_at_us = 0; /* arrival of the mark echo that set played_bytes */
  guint generation = 0;
};

/* A mark sent and not echoed yet. Its name is not kept: it is written again
 * from these fields when an echo is checked (mark_name()), which saves an
 * allocation and a cold line or two for every frame sent. */
struct PendingMark {
  uint64_t seq;         /* the name's ":m<seq>", increasing */
  ItemProgress *item;   /* in PaCallPrivate::items, whose entries are never removed */
  uint64_t item_bytes;  /* position in the item when the mark was sent */
  guint generation;
  gint64 sent_us;
};

struct Counters {
  guint64 messages = 0, media_frames = 0, media_bytes = 0, dtmf = 0;
  guint64 malformed_json = 0, binary_frames = 0, oversized_frames = 0, media_before_start = 0;
  guint64 wrong_stream_sid = 0, invalid_base64 = 0, unknown_events = 0, missing_fields = 0;
  guint64 inbound_dropped = 0;
  guint64 media_sent_frames = 0, media_sent_bytes = 0, marks_sent = 0, marks_played = 0;
  guint64 marks_cleared = 0, marks_unknown = 0, clears_sent = 0, stalls = 0;
};

enum class OutKind { Text, Close };
struct OutFrame {
  OutKind kind;
  std::string text;
  gushort code = 0;
  bool more = false; /* another frame follows at once: write both together */
};

} // namespace

struct PaCallPrivate {
  pa::CallConfig config;
  std::string serial;

  /* pa_call_set_inbound_notify: held while it runs, and to replace it */
  std::mutex notify_lock;
  std::function<void()> inbound_notify;

  std::mutex test_delivery; /* keeps test-transport frames in order */
  std::mutex lock; /* protects everything below */
  /* transport */
  std::shared_ptr<pa::CallTransport> transport;
  std::function<void(const std::string &)> test_send;
  std::function<void(gushort, const std::string &)> test_close;
  std::deque<OutFrame> out_queue; /* test transport only */
  bool closing = false;
  bool pull = true; /* the source reads the socket itself (pa_call_set_pull) */
  bool push = false; /* the source pushes from the reading thread (pa_call_set_push) */
  bool corked = false; /* pa_call_set_corked */

  /* stream */
  bool connected = false;
  bool started = false;
  bool ended = false;
  std::atomic<bool> ended_flag{false}; /* ended, for pa_call_is_ended() without the lock */
  std::string end_reason;
  pa::twilio::StartInfo start;

  /* source side */
  std::deque<pa::InboundItem> inbound;
  std::condition_variable inbound_cond;
  bool source_flushing = false;

  /* sink side */
  guint generation = 0;
  guint64 mark_seq = 0;
  std::string current_item;
  std::map<std::string, ItemProgress> items;
  ItemProgress *current = nullptr; /* items[current_item], once looked up */
  /* marks sent and not yet echoed, in the order sent (by seq); Twilio
   * echoes them in that order, so the one echoed is nearly always the first */
  std::deque<PendingMark> pending;
  gint64 last_echo_us = 0;
  std::condition_variable played_cond;
  bool sink_flushing = false;

  Counters c;
};

struct _PaCall {
  GObject parent;
  PaCallPrivate *priv;
};

G_DEFINE_TYPE(PaCall, pa_call, G_TYPE_OBJECT)

enum { SIGNAL_STARTED, SIGNAL_ENDED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void pa_call_finalize(GObject *object) {
  PaCall *call = PA_CALL(object);
  PaCallPrivate *p = call->priv;
  /* the socket holds the call until it is closed, so a call that is
   * finalized has no open socket left */
  delete p;
  G_OBJECT_CLASS(pa_call_parent_class)->finalize(object);
}

static void pa_call_class_init(PaCallClass *klass) {
  GObjectClass *gobject_class = G_OBJECT_CLASS(klass);
  gobject_class->finalize = pa_call_finalize;
  signals[SIGNAL_STARTED] = g_signal_new("started", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                                         nullptr, G_TYPE_NONE, 0);
  signals[SIGNAL_ENDED] = g_signal_new("ended", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                                       nullptr, G_TYPE_NONE, 1, G_TYPE_STRING);
  GST_DEBUG_CATEGORY_INIT(pa_call_debug, "phoneagentcall", 0, "Twilio Media Streams call");
}

static void pa_call_init(PaCall *call) {
  static std::atomic<guint> serial{0};
  call->priv = new PaCallPrivate();
  call->priv->serial = "call#" + std::to_string(++serial);
}

PaCall *pa_call_new(const pa::CallConfig &config) {
  PaCall *call = PA_CALL(g_object_new(PA_TYPE_CALL, nullptr));
  call->priv->config = config;
  return call;
}

GstContext *pa_call_context_new(PaCall *call) {
  GstContext *ctx = gst_context_new(PA_CALL_CONTEXT_TYPE, TRUE);
  GstStructure *s = gst_context_writable_structure(ctx);
  gst_structure_set(s, "call", PA_TYPE_CALL, call, nullptr);
  return ctx;
}

PaCall *pa_call_from_context(const GstContext *context) {
  if (!context || g_strcmp0(gst_context_get_context_type(context), PA_CALL_CONTEXT_TYPE) != 0)
    return nullptr;
  const GstStructure *s = gst_context_get_structure(context);
  PaCall *call = nullptr;
  if (!gst_structure_get(s, "call", PA_TYPE_CALL, &call, nullptr))
    return nullptr;
  return call;
}

std::string pa_call_get_name(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->start.call_sid.empty() ? call->priv->serial : call->priv->start.call_sid;
}

/* ------------------------------------------------------------ sending */

/* items[@id], knowing its own key */
static ItemProgress *item_locked(PaCallPrivate *p, const std::string &id) {
  auto it = p->items.try_emplace(id).first;
  it->second.id = &it->first;
  return &it->second;
}

/* items[current_item], looked up once per item rather than per frame. */
static ItemProgress &current_item_locked(PaCallPrivate *p) {
  if (!p->current)
    p->current = item_locked(p, p->current_item);
  return *p->current;
}

/* Writes the name of the mark sent after @item_bytes of @item (the item's
 * id, its position in 8 kHz ms, the generation and the sequence number:
 * "<item>:<ms>:g<gen>:m<seq>") into @out, which it resizes. */
static void mark_name(std::string &out, const std::string &item, uint64_t item_bytes, guint generation,
                      uint64_t seq) {
  out.resize(item.size() + 3 * 20 + 5);
  char *d = out.data(), *end = d + out.size();
  memcpy(d, item.data(), item.size());
  d += item.size();
  *d++ = ':';
  d = std::to_chars(d, end, item_bytes / 8).ptr;
  *d++ = ':';
  *d++ = 'g';
  d = std::to_chars(d, end, generation).ptr;
  *d++ = ':';
  *d++ = 'm';
  d = std::to_chars(d, end, seq).ptr;
  out.resize(static_cast<size_t>(d - out.data()));
}

/* The media or mark being sent is written here first: one buffer per
 * thread, warm from the last call this thread sent for, where one per call
 * was found cold at every frame. */
static std::string &out_text() {
  thread_local std::string text;
  return text;
}

/* The outstanding mark called @name (end() if none): found by the sequence
 * number at the end of the names we give them, then checked whole. */
static std::deque<PendingMark>::iterator find_pending_locked(PaCallPrivate *p, const std::string &name) {
  size_t at = name.rfind(":m");
  uint64_t seq = 0;
  if (at == std::string::npos ||
      std::from_chars(name.data() + at + 2, name.data() + name.size(), seq).ptr != name.data() + name.size())
    return p->pending.end();
  auto it = p->pending.begin();
  if (it == p->pending.end() || it->seq != seq)
    it = std::lower_bound(p->pending.begin(), p->pending.end(), seq,
                          [](const PendingMark &m, uint64_t s) { return m.seq < s; });
  if (it == p->pending.end() || it->seq != seq)
    return p->pending.end();
  thread_local std::string ours;
  mark_name(ours, *it->item->id, it->item_bytes, it->generation, it->seq);
  if (ours != name)
    return p->pending.end();
  return it;
}

/* Sends a frame: written to the socket at once, on this thread, so the
 * order on the wire is the order of the calls under the lock. Called with
 * the lock held. A test transport is delivered by deliver_test_frames()
 * once the lock is released. */
static void enqueue_locked(PaCall *call, OutFrame &&frame) {
  PaCallPrivate *p = call->priv;
  if (p->closing)
    return;
  if (frame.kind == OutKind::Close)
    p->closing = true;
  if (p->transport) {
    if (frame.kind == OutKind::Text)
      p->transport->send_text(frame.text, frame.more || p->corked);
    else
      p->transport->close(frame.code, frame.text);
    return;
  }
  if (p->test_send)
    p->out_queue.push_back(std::move(frame));
}

/* enqueue_locked() for out_text(): copied only for a test transport. */
static void enqueue_out_text_locked(PaCall *call, const std::string &text, bool more) {
  PaCallPrivate *p = call->priv;
  if (p->closing)
    return;
  if (p->transport)
    p->transport->send_text(text, more || p->corked);
  else if (p->test_send)
    p->out_queue.push_back({OutKind::Text, text, 0, more});
}

/* Test transport: hands queued frames to the test, outside the call lock
 * (the test may answer at once, e.g. echo a mark), in order. */
static void deliver_test_frames(PaCall *call) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> order(p->test_delivery);
  std::deque<OutFrame> frames;
  std::function<void(const std::string &)> send;
  std::function<void(gushort, const std::string &)> close;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (!p->test_send)
      return;
    frames.swap(p->out_queue);
    send = p->test_send;
    close = p->test_close;
  }
  for (auto &f : frames) {
    if (f.kind == OutKind::Text)
      send(f.text);
    else if (close)
      close(f.code, f.text);
  }
}

/* ------------------------------------------------------------ transport */

void pa_call_check_stall(PaCall *call) {
  PaCallPrivate *p = call->priv;
  bool stalled = false;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (p->ended || p->closing)
      return;
    gint64 now = g_get_monotonic_time();
    gint64 oldest = 0;
    for (const PendingMark &m : p->pending)
      if (m.generation == p->generation && (!oldest || m.sent_us < oldest))
        oldest = m.sent_us;
    gint64 limit = static_cast<gint64>(p->config.stall_timeout_ms) * 1000;
    if (oldest && now - oldest > limit && now - p->last_echo_us > limit) {
      stalled = true;
      p->c.stalls++;
    }
  }
  if (stalled) {
    GST_WARNING("%s: Twilio has not acknowledged any audio for %u ms: the peer stopped reading; closing the call",
                pa_call_get_name(call).c_str(), p->config.stall_timeout_ms);
    pa_call_close(call, pa::ws::kPolicyViolation, "peer not reading");
  }
}

void pa_call_attach_transport(PaCall *call, std::shared_ptr<pa::CallTransport> transport) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  g_return_if_fail(!call->priv->transport && !call->priv->test_send);
  call->priv->transport = std::move(transport);
}

gboolean pa_call_has_transport(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->transport != nullptr || static_cast<bool>(call->priv->test_send);
}

std::shared_ptr<pa::MediaThread> pa_call_get_media_thread(PaCall *call) {
  std::shared_ptr<pa::CallTransport> t;
  {
    std::lock_guard<std::mutex> g(call->priv->lock);
    t = call->priv->transport;
  }
  return t ? t->media_thread() : nullptr;
}

void pa_call_set_test_transport(PaCall *call, std::function<void(const std::string &)> send,
                                std::function<void(gushort, const std::string &)> close) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  call->priv->test_send = std::move(send);
  call->priv->test_close = std::move(close);
}

/* ------------------------------------------------------------ incoming */

static void push_inbound_locked(PaCallPrivate *p, pa::InboundItem &&item) {
  if (p->inbound.size() >= p->config.max_inbound_queue) {
    /* the source is not consuming: drop the oldest media to stay bounded */
    for (auto it = p->inbound.begin(); it != p->inbound.end(); ++it) {
      if (it->kind == pa::InboundItem::Kind::Media) {
        p->inbound.erase(it);
        p->c.inbound_dropped++;
        break;
      }
    }
  }
  p->inbound.push_back(std::move(item));
  /* the caller wakes the source once it released the lock, so that the
   * source does not wake up only to wait for the lock */
}

/* Runs the inbound notify, if any (without the call's lock). */
static void notify_inbound(PaCallPrivate *p) {
  std::lock_guard<std::mutex> g(p->notify_lock);
  if (p->inbound_notify)
    p->inbound_notify();
}

/* Marks the call ended (once) and wakes everyone waiting on it. */
static bool end_locked(PaCallPrivate *p, const std::string &reason) {
  if (p->ended)
    return false;
  p->ended = true;
  p->ended_flag.store(true, std::memory_order_release);
  p->end_reason = reason;
  p->played_cond.notify_all();
  return true;
}

void pa_call_handle_text(PaCall *call, const char *data, size_t len) {
  PaCallPrivate *p = call->priv;
  if (len > p->config.max_frame_size) {
    std::lock_guard<std::mutex> g(p->lock);
    p->c.oversized_frames++;
    GST_WARNING("%s: dropped a %zu-byte frame, over the %zu-byte limit (max-frame-size)", p->serial.c_str(), len,
                p->config.max_frame_size);
    return;
  }
  /* parsed into this thread's scratch message, whose strings keep their
   * storage from one message to the next (a nested call, e.g. a test
   * transport echoing a mark from inside a push, gets its own) */
  thread_local pa::twilio::InboundMessage scratch;
  thread_local bool scratch_busy = false;
  std::unique_ptr<pa::twilio::InboundMessage> own;
  if (scratch_busy)
    own = std::make_unique<pa::twilio::InboundMessage>();
  pa::twilio::InboundMessage &msg = own ? *own : scratch;
  struct Busy {
    bool &flag, was;
    explicit Busy(bool &f) : flag(f), was(f) { flag = true; }
    ~Busy() { flag = was; }
  } busy(scratch_busy);
  std::string error;
  pa::twilio::ParseResult r = pa::twilio::parse_inbound(std::string_view(data, len), msg, error);

  using pa::twilio::Event;
  using pa::twilio::ParseResult;
  bool emit_started = false, emit_ended = false, pushed = false;
  std::string end_reason;
  {
    std::lock_guard<std::mutex> g(p->lock);
    const char *name = p->started ? p->start.call_sid.c_str() : p->serial.c_str();
    p->c.messages++;
    switch (r) {
    case ParseResult::Ok:
      break;
    case ParseResult::MalformedJson:
      p->c.malformed_json++;
      GST_WARNING("%s: ignored a frame that is not valid JSON (%s)", name, error.c_str());
      return;
    case ParseResult::InvalidBase64:
      p->c.invalid_base64++;
      GST_WARNING("%s: ignored a media frame: %s", name, error.c_str());
      return;
    case ParseResult::UnknownEvent:
      p->c.unknown_events++;
      GST_INFO("%s: ignored %s", name, error.c_str());
      return;
    case ParseResult::MissingField:
      p->c.missing_fields++;
      GST_WARNING("%s: ignored a message: %s", name, error.c_str());
      return;
    }
    if (msg.event != Event::Connected && msg.event != Event::Start && p->started &&
        msg.stream_sid != p->start.stream_sid) {
      p->c.wrong_stream_sid++;
      GST_WARNING("%s: ignored a '%s' message for stream '%s' (this call's stream is '%s')", name,
                  msg.event_name.c_str(), msg.stream_sid.c_str(), p->start.stream_sid.c_str());
      return;
    }
    if (p->ended && msg.event != Event::Mark) {
      GST_INFO("%s: ignored '%s' after the stream ended", name, msg.event_name.c_str());
      return;
    }
    pa::InboundItem item;
    item.arrival_us = g_get_monotonic_time();
    switch (msg.event) {
    case Event::Connected:
      p->connected = true;
      return;
    case Event::Start:
      if (p->started) {
        p->c.unknown_events++;
        GST_WARNING("%s: ignored a second 'start' message", name);
        return;
      }
      p->started = true;
      p->start = msg.start;
      if (p->start.encoding != "audio/x-mulaw" || p->start.sample_rate != 8000 || p->start.channels != 1)
        GST_WARNING("%s: stream announces %s/%d/%d; Twilio streams are audio/x-mulaw/8000/1, treating it as such",
                    p->start.call_sid.c_str(), p->start.encoding.c_str(), p->start.sample_rate, p->start.channels);
      item.kind = pa::InboundItem::Kind::Start;
      item.start = std::make_unique<pa::twilio::StartInfo>(msg.start);
      push_inbound_locked(p, std::move(item));
      pushed = true;
      emit_started = true;
      GST_INFO("%s: stream %s started", p->start.call_sid.c_str(), p->start.stream_sid.c_str());
      break;
    case Event::Media:
      if (!p->started) {
        p->c.media_before_start++;
        GST_WARNING("%s: ignored media that arrived before 'start'", name);
        return;
      }
      p->c.media_frames++;
      p->c.media_bytes += msg.payload.size();
      item.kind = pa::InboundItem::Kind::Media;
      item.timestamp_ms = msg.timestamp_ms;
      item.payload = std::move(msg.payload);
      push_inbound_locked(p, std::move(item));
      pushed = true;
      break;
    case Event::Dtmf:
      if (!p->started) {
        p->c.media_before_start++;
        GST_WARNING("%s: ignored dtmf that arrived before 'start'", name);
        return;
      }
      p->c.dtmf++;
      item.kind = pa::InboundItem::Kind::Dtmf;
      item.digit = msg.digit;
      push_inbound_locked(p, std::move(item));
      pushed = true;
      break;
    case Event::Mark: {
      auto it = find_pending_locked(p, msg.mark_name);
      if (it == p->pending.end()) {
        p->c.marks_unknown++;
        GST_INFO("%s: echo of a mark we did not send (%s)", name, msg.mark_name.c_str());
        return;
      }
      p->last_echo_us = item.arrival_us;
      if (it->generation != p->generation) {
        /* echoed because of a clear: not played */
        p->c.marks_cleared++;
      } else {
        p->c.marks_played++;
        ItemProgress &ip = *it->item;
        if (ip.generation == it->generation && it->item_bytes > ip.played_bytes) {
          ip.played_bytes = it->item_bytes;
          ip.played_at_us = item.arrival_us;
        }
      }
      p->pending.erase(it);
      p->played_cond.notify_all();
      return;
    }
    case Event::Stop:
      item.kind = pa::InboundItem::Kind::Stop;
      item.reason = "stop";
      push_inbound_locked(p, std::move(item));
      pushed = true;
      emit_ended = end_locked(p, "stop");
      end_reason = "stop";
      break;
    default:
      return;
    }
  }
  if (pushed) {
    p->inbound_cond.notify_one();
    notify_inbound(p);
  }
  if (emit_started)
    g_signal_emit(call, signals[SIGNAL_STARTED], 0);
  if (emit_ended)
    g_signal_emit(call, signals[SIGNAL_ENDED], 0, end_reason.c_str());
}

void pa_call_handle_binary(PaCall *call, size_t len) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> g(p->lock);
  p->c.binary_frames++;
  GST_WARNING("%s: ignored a %zu-byte binary frame (Twilio sends JSON in text frames only)", p->serial.c_str(), len);
}

void pa_call_handle_closed(PaCall *call, gushort code, const std::string &reason) {
  PaCallPrivate *p = call->priv;
  bool emit;
  std::string why;
  {
    std::lock_guard<std::mutex> g(p->lock);
    why = p->closing ? "closed" : (code == 0 || code == pa::ws::kAbnormal ? "connection-lost" : "peer-closed");
    pa::InboundItem item;
    item.kind = pa::InboundItem::Kind::Closed;
    item.reason = why;
    item.arrival_us = g_get_monotonic_time();
    push_inbound_locked(p, std::move(item));
    emit = end_locked(p, why);
    p->closing = true;
    GST_INFO("%s: socket closed (code %u%s%s)", p->serial.c_str(), code, reason.empty() ? "" : ", ", reason.c_str());
  }
  p->inbound_cond.notify_one();
  notify_inbound(p);
  if (emit)
    g_signal_emit(call, signals[SIGNAL_ENDED], 0, why.c_str());
}

/* ------------------------------------------------------------ source side */

gboolean pa_call_pop_inbound(PaCall *call, pa::InboundItem &out, gint64 timeout_us, size_t *queued) {
  PaCallPrivate *p = call->priv;
  /* no clock read for a look without waiting (push mode: twice a frame) */
  gint64 deadline = timeout_us > 0 ? g_get_monotonic_time() + timeout_us : -1;
  std::unique_lock<std::mutex> g(p->lock);
  std::shared_ptr<pa::CallTransport> transport = p->pull ? p->transport : nullptr;
  bool pulling = static_cast<bool>(transport);
  for (;;) {
    if (p->source_flushing || !p->inbound.empty() || timeout_us == 0)
      break;
    gint64 left = deadline < 0 ? -1 : deadline - g_get_monotonic_time();
    if (deadline >= 0 && left <= 0)
      break;
    if (transport && !p->ended) {
      /* read the socket on this thread (the lock is not held while waiting:
       * frames take it to queue themselves) */
      g.unlock();
      bool ok = transport->pump(left);
      g.lock();
      if (!ok)
        transport = nullptr; /* the socket loop reads from now on */
      continue;
    }
    if (left < 0)
      p->inbound_cond.wait(g);
    else
      p->inbound_cond.wait_for(g, std::chrono::microseconds(left));
  }
  bool got = !p->source_flushing && !p->inbound.empty();
  if (got) {
    out = std::move(p->inbound.front());
    p->inbound.pop_front();
  }
  if (queued)
    *queued = p->inbound.size();
  /* let the socket loop read while nobody pulls: after the last item, when
   * flushing (the source stops or pauses), or once pulling failed */
  bool let_go = pulling && (!got || out.kind == pa::InboundItem::Kind::Stop ||
                            out.kind == pa::InboundItem::Kind::Closed);
  std::shared_ptr<pa::CallTransport> t = let_go ? p->transport : nullptr;
  g.unlock();
  if (t)
    t->release();
  return got;
}

void pa_call_set_source_flushing(PaCall *call, gboolean flushing) {
  std::shared_ptr<pa::CallTransport> t;
  {
    std::lock_guard<std::mutex> g(call->priv->lock);
    call->priv->source_flushing = flushing;
    call->priv->inbound_cond.notify_all();
    /* only a puller holds the socket (in push mode a media thread reads it
     * and may be pushing, holding its read lock: do not wait for it) */
    if (flushing && call->priv->pull)
      t = call->priv->transport;
  }
  if (t) {
    /* a source that stops or pauses may never wait here again (an EOS
     * event ends its task): give the socket back to the loop now, so that
     * mark echoes and the close are still read */
    t->wake();
    t->release();
  }
}

void pa_call_set_pull(PaCall *call, gboolean pull) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  call->priv->pull = pull;
}

void pa_call_set_push(PaCall *call, gboolean push) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  call->priv->push = push;
  if (push)
    call->priv->pull = false;
}

gboolean pa_call_get_push(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->push;
}

void pa_call_set_inbound_notify(PaCall *call, std::function<void()> notify) {
  std::lock_guard<std::mutex> g(call->priv->notify_lock);
  call->priv->inbound_notify = std::move(notify);
}

/* ------------------------------------------------------------ state */

gboolean pa_call_is_started(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->started;
}

gboolean pa_call_is_ended(PaCall *call) {
  /* asked per frame by the sink: no lock (set once, never cleared) */
  return call->priv->ended_flag.load(std::memory_order_acquire);
}

std::string pa_call_get_end_reason(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->end_reason;
}

pa::twilio::StartInfo pa_call_get_start_info(PaCall *call) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  return call->priv->start;
}

GstStructure *pa_call_get_stats(PaCall *call) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> g(p->lock);
  const Counters &c = p->c;
  return gst_structure_new("twilio-call-stats",
      "call-sid", G_TYPE_STRING, p->start.call_sid.c_str(),
      "stream-sid", G_TYPE_STRING, p->start.stream_sid.c_str(),
      "messages-received", G_TYPE_UINT64, c.messages,
      "media-frames-received", G_TYPE_UINT64, c.media_frames,
      "media-bytes-received", G_TYPE_UINT64, c.media_bytes,
      "dtmf-received", G_TYPE_UINT64, c.dtmf,
      "malformed-json", G_TYPE_UINT64, c.malformed_json,
      "binary-frames", G_TYPE_UINT64, c.binary_frames,
      "oversized-frames", G_TYPE_UINT64, c.oversized_frames,
      "media-before-start", G_TYPE_UINT64, c.media_before_start,
      "wrong-stream-sid", G_TYPE_UINT64, c.wrong_stream_sid,
      "invalid-base64", G_TYPE_UINT64, c.invalid_base64,
      "unknown-events", G_TYPE_UINT64, c.unknown_events,
      "missing-fields", G_TYPE_UINT64, c.missing_fields,
      "inbound-dropped", G_TYPE_UINT64, c.inbound_dropped,
      "media-frames-sent", G_TYPE_UINT64, c.media_sent_frames,
      "media-bytes-sent", G_TYPE_UINT64, c.media_sent_bytes,
      "marks-sent", G_TYPE_UINT64, c.marks_sent,
      "marks-played", G_TYPE_UINT64, c.marks_played,
      "marks-cleared", G_TYPE_UINT64, c.marks_cleared,
      "marks-unknown", G_TYPE_UINT64, c.marks_unknown,
      "clears-sent", G_TYPE_UINT64, c.clears_sent,
      "stalls", G_TYPE_UINT64, c.stalls,
      nullptr);
}

/* ------------------------------------------------------------ sink side */

/* Called with the lock held. The name is "<item>:<ms>:g<generation>:m<seq>". */
static void send_mark_locked(PaCall *call) {
  PaCallPrivate *p = call->priv;
  ItemProgress &ip = current_item_locked(p);
  uint64_t seq = ++p->mark_seq;
  thread_local std::string name; /* its storage kept from mark to mark */
  mark_name(name, *ip.id, ip.sent_bytes, p->generation, seq);
  gint64 now = g_get_monotonic_time();
  if (p->pending.empty())
    p->last_echo_us = now; /* stall timing starts from the first outstanding mark */
  p->c.marks_sent++;
  std::string &text = out_text();
  text.clear();
  pa::twilio::append_mark(text, p->start.stream_sid, name);
  enqueue_out_text_locked(call, text, false);
  p->pending.push_back(PendingMark{seq, &ip, ip.sent_bytes, p->generation, now});
}

static gboolean send_media(PaCall *call, const uint8_t *mulaw, size_t len, bool mark) {
  PaCallPrivate *p = call->priv;
  bool test;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (!p->started || p->ended || p->closing)
      return FALSE;
    ItemProgress &ip = current_item_locked(p);
    if (ip.generation != p->generation) {
      /* the item was cleared: what follows starts a new playback run */
      ip.generation = p->generation;
    }
    ip.sent_bytes += len;
    p->c.media_sent_frames++;
    p->c.media_sent_bytes += len;
    std::string &text = out_text();
    text.clear();
    pa::twilio::append_media(text, p->start.stream_sid, mulaw, len);
    enqueue_out_text_locked(call, text, mark);
    if (mark)
      send_mark_locked(call);
    test = static_cast<bool>(p->test_send);
  }
  if (test)
    deliver_test_frames(call);
  return TRUE;
}

gboolean pa_call_send_media(PaCall *call, const uint8_t *mulaw, size_t len) {
  return send_media(call, mulaw, len, false);
}

gboolean pa_call_send_media_and_mark(PaCall *call, const uint8_t *mulaw, size_t len) {
  return send_media(call, mulaw, len, true);
}

void pa_call_begin_item(PaCall *call, const std::string &item_id) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> g(p->lock);
  p->current_item = item_id;
  p->current = item_locked(p, item_id);
  p->current->generation = p->generation;
}

void pa_call_send_mark(PaCall *call) {
  PaCallPrivate *p = call->priv;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (!p->started || p->ended || p->closing)
      return;
    send_mark_locked(call);
  }
  deliver_test_frames(call);
}

void pa_call_set_corked(PaCall *call, gboolean corked) {
  PaCallPrivate *p = call->priv;
  std::shared_ptr<pa::CallTransport> t;
  {
    std::lock_guard<std::mutex> g(p->lock);
    if (p->corked == static_cast<bool>(corked))
      return;
    p->corked = corked;
    if (!corked)
      t = p->transport;
  }
  if (t)
    t->flush();
}

guint pa_call_clear(PaCall *call) {
  PaCallPrivate *p = call->priv;
  guint gen;
  {
  std::lock_guard<std::mutex> g(p->lock);
  gen = ++p->generation;
  if (p->started && !p->ended && !p->closing) {
    p->c.clears_sent++;
    enqueue_locked(call, {OutKind::Text, pa::twilio::build_clear(p->start.stream_sid), 0});
  }
  /* what was sent but not played is gone: sent positions fall back to
   * played; what plays of the item from now on counts from its own echoes */
  for (auto &[id, ip] : p->items) {
    ip.sent_bytes = ip.played_bytes;
    ip.played_at_us = 0;
  }
  p->played_cond.notify_all();
  }
  deliver_test_frames(call);
  return gen;
}

void pa_call_raise_played(PaCall *call, const std::string &item_id, uint64_t bytes) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> g(p->lock);
  auto it = p->items.find(item_id);
  if (it == p->items.end() || it->second.generation != p->generation)
    return;
  it->second.played_bytes = std::max(it->second.played_bytes, std::min(bytes, it->second.sent_bytes));
}

/* What the caller has heard of @ip by @now, in bytes: what the marks
 * confirmed, and since the echo that said so, what played on at the rate
 * audio plays (Twilio plays what it holds back to back), but not past a
 * mark sent and not echoed yet (what comes before it may still be queued
 * at Twilio, or the playout ran dry since), nor past what was sent. Marks
 * a few frames apart and this between them tell about as much as a mark
 * per frame would, for a fraction of the messages. The echo arrives a
 * network delay after the audio played, as every mark does. */
static uint64_t heard_bytes_locked(PaCallPrivate *p, const ItemProgress &ip, gint64 now) {
  uint64_t played = std::min(ip.played_bytes, ip.sent_bytes);
  if (ip.generation != p->generation || ip.played_at_us <= 0 || now <= ip.played_at_us)
    return played;
  uint64_t cap = ip.sent_bytes;
  for (const PendingMark &m : p->pending) {
    if (m.item == &ip && m.generation == p->generation && m.item_bytes > played) {
      cap = std::min(cap, m.item_bytes); /* pending marks are in the order sent: the nearest */
      break;
    }
  }
  uint64_t on = static_cast<uint64_t>(now - ip.played_at_us) * 8 / 1000;
  return std::max(played, std::min(cap, played + on));
}

pa::Heard pa_call_get_heard(PaCall *call, const std::string &item_id, gint64 now_us) {
  PaCallPrivate *p = call->priv;
  if (!now_us)
    now_us = g_get_monotonic_time();
  std::lock_guard<std::mutex> g(p->lock);
  pa::Heard h;
  h.item_id = item_id.empty() ? p->current_item : item_id;
  h.generation = p->generation;
  auto it = p->items.find(h.item_id);
  if (it == p->items.end())
    return h;
  h.known = true;
  h.sent_ms = it->second.sent_bytes / 8;
  h.played_ms = it->second.played_bytes / 8;
  h.played_at_us = it->second.played_at_us;
  h.heard_ms = heard_bytes_locked(p, it->second, now_us) / 8;
  return h;
}

uint64_t pa_call_get_pending_bytes(PaCall *call) {
  PaCallPrivate *p = call->priv;
  std::lock_guard<std::mutex> g(p->lock);
  uint64_t n = 0;
  for (const auto &[id, ip] : p->items)
    if (ip.generation == p->generation)
      n += ip.sent_bytes - std::min(ip.sent_bytes, ip.played_bytes);
  return n;
}

gboolean pa_call_wait_played(PaCall *call, gint64 timeout_us) {
  PaCallPrivate *p = call->priv;
  std::unique_lock<std::mutex> g(p->lock);
  auto done = [p] {
    if (p->ended || p->sink_flushing)
      return true;
    for (const PendingMark &m : p->pending)
      if (m.generation == p->generation)
        return false;
    return true;
  };
  p->played_cond.wait_for(g, std::chrono::microseconds(timeout_us), done);
  for (const PendingMark &m : p->pending)
    if (m.generation == p->generation)
      return FALSE;
  return !p->sink_flushing;
}

void pa_call_set_sink_flushing(PaCall *call, gboolean flushing) {
  std::lock_guard<std::mutex> g(call->priv->lock);
  call->priv->sink_flushing = flushing;
  call->priv->played_cond.notify_all();
}

void pa_call_close(PaCall *call, gushort code, const char *reason) {
  PaCallPrivate *p = call->priv;
  {
    std::lock_guard<std::mutex> g(p->lock);
    GST_INFO("%s: closing the stream (%u %s)", p->serial.c_str(), code, reason ? reason : "");
    enqueue_locked(call, {OutKind::Close, reason ? reason : "", code});
  }
  deliver_test_frames(call);
}
