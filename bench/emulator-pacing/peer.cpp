/* emulator-pacing-peer: a trivial loopback server for the emulator's pacing
 * benchmark. Answers the voice webhook with <Connect><Stream>, and on the
 * stream echoes every media payload straight back, followed by one mark per
 * frame. Listens on 127.0.0.1 only, prints "PORT <n>" once listening, and
 * prints its own CPU time when it gets SIGTERM/SIGINT (or after
 * --max-duration-s):
 *   PEER_CPU user_s=<u> sys_s=<s> max_rss_kb=<k> messages=<n>
 *
 * Kept deliberately cheap (no JSON parser on the media path) so that the
 * emulator, not the peer, is what the benchmark measures.
 */
#include <glib-unix.h>
#include <libsoup/soup.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "twilio-protocol.h"
#include "twiml.h"

namespace {

struct Peer {
  GMainLoop *loop = nullptr;
  int port = 0;
  guint64 messages = 0;
};

struct Stream {
  Peer *peer;
  SoupWebsocketConnection *conn;
  std::string sid;
  guint64 frames = 0;
  std::string out; /* reused message buffer */
};

void on_voice(SoupServer *, SoupServerMessage *msg, const char *, GHashTable *, gpointer data) {
  auto *peer = static_cast<Peer *>(data);
  if (g_strcmp0(soup_server_message_get_method(msg), "POST") != 0) {
    soup_server_message_set_status(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, nullptr);
    return;
  }
  pa::twilio::ConnectStream cs;
  cs.url = "wss://127.0.0.1:" + std::to_string(peer->port) + "/media";
  cs.parameters = {{"peer", "emulator-pacing"}};
  std::string xml = pa::twilio::build_connect_stream(cs);
  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  soup_server_message_set_response(msg, "text/xml", SOUP_MEMORY_COPY, xml.data(), xml.size());
}

/* The value of "name":"..." in @text (no escapes expected in what we look for). */
std::string_view field(std::string_view text, std::string_view name) {
  std::string key = "\"" + std::string(name) + "\":\"";
  size_t p = text.find(key);
  if (p == std::string_view::npos)
    return {};
  p += key.size();
  size_t e = text.find('"', p);
  return e == std::string_view::npos ? std::string_view() : text.substr(p, e - p);
}

void on_message(SoupWebsocketConnection *conn, gint type, GBytes *message, gpointer data) {
  auto *st = static_cast<Stream *>(data);
  st->peer->messages++;
  if (type != SOUP_WEBSOCKET_DATA_TEXT)
    return;
  gsize len = 0;
  const char *p = static_cast<const char *>(g_bytes_get_data(message, &len));
  std::string_view text(p, len);
  std::string_view event = field(text, "event");
  if (event == "media") {
    if (st->sid.empty())
      return;
    std::string_view payload = field(text, "payload");
    st->out.clear();
    st->out += "{\"event\":\"media\",\"streamSid\":\"";
    st->out += st->sid;
    st->out += "\",\"media\":{\"payload\":\"";
    st->out += payload;
    st->out += "\"}}";
    soup_websocket_connection_send_text(conn, st->out.c_str());
    st->out = pa::twilio::build_mark(st->sid, "frame-" + std::to_string(++st->frames));
    soup_websocket_connection_send_text(conn, st->out.c_str());
  } else if (event == "start") {
    pa::twilio::InboundMessage in;
    std::string err;
    if (pa::twilio::parse_inbound(text, in, err) == pa::twilio::ParseResult::Ok)
      st->sid = in.stream_sid;
  }
}

void on_closed(SoupWebsocketConnection *conn, gpointer data) {
  auto *st = static_cast<Stream *>(data);
  g_signal_handlers_disconnect_by_data(conn, st);
  g_object_unref(conn);
  delete st;
}

void on_websocket(SoupServer *, SoupServerMessage *, const char *, SoupWebsocketConnection *conn, gpointer data) {
  auto *st = new Stream{static_cast<Peer *>(data), conn, {}, 0, {}};
  g_object_ref(conn);
  g_signal_connect(conn, "message", G_CALLBACK(on_message), st);
  g_signal_connect(conn, "closed", G_CALLBACK(on_closed), st);
}

gboolean on_stop(gpointer data) {
  g_main_loop_quit(static_cast<Peer *>(data)->loop);
  return G_SOURCE_REMOVE;
}

} // namespace

int main(int argc, char **argv) {
  int port = 0, max_duration_s = 300;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-duration-s") && i + 1 < argc)
      max_duration_s = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--port N] [--max-duration-s S]\n", argv[0]);
      return 2;
    }
  }
  /* one socket per call: make sure the open-file limit allows hundreds */
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  Peer peer;
  peer.loop = g_main_loop_new(nullptr, FALSE);
  SoupServer *server = soup_server_new("server-header", "emulator-pacing-peer", nullptr);
  soup_server_add_handler(server, "/voice", on_voice, &peer, nullptr);
  soup_server_add_websocket_handler(server, "/media", nullptr, nullptr, on_websocket, &peer, nullptr);

  /* Our own listening socket: loopback only, and a backlog that takes
   * hundreds of simultaneous connects (GSocket's default is 10). */
  GError *err = nullptr;
  GSocket *sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &err);
  GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  GSocketAddress *addr = g_inet_socket_address_new(lo, static_cast<guint16>(port));
  bool ok = sock && g_socket_bind(sock, addr, TRUE, &err);
  if (ok) {
    g_socket_set_listen_backlog(sock, 1024);
    ok = g_socket_listen(sock, &err) && soup_server_listen_socket(server, sock, static_cast<SoupServerListenOptions>(0), &err);
  }
  g_object_unref(addr);
  g_object_unref(lo);
  if (!ok) {
    fprintf(stderr, "emulator-pacing-peer: cannot listen on 127.0.0.1:%d: %s\n", port, err ? err->message : "?");
    return 1;
  }
  GSocketAddress *local = g_socket_get_local_address(sock, nullptr);
  peer.port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
  g_object_unref(local);
  printf("PORT %d\n", peer.port);
  fflush(stdout);

  g_unix_signal_add(SIGTERM, on_stop, &peer);
  g_unix_signal_add(SIGINT, on_stop, &peer);
  g_timeout_add_seconds(static_cast<guint>(max_duration_s), on_stop, &peer);
  g_main_loop_run(peer.loop);

  rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  printf("PEER_CPU user_s=%.3f sys_s=%.3f max_rss_kb=%ld messages=%llu\n",
         static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6,
         static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6, ru.ru_maxrss,
         static_cast<unsigned long long>(peer.messages));
  fflush(stdout);
  soup_server_disconnect(server);
  g_object_unref(server);
  g_object_unref(sock);
  g_main_loop_unref(peer.loop);
  return 0;
}
