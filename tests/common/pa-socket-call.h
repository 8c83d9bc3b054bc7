/* gst-phone-agent: a call on a real socket for tests, read by a
 * pa::SocketLoop (on its media threads when the loop has some). */
#pragma once

#include <gst/check/gstcheck.h>
#include <sys/socket.h>

#include <memory>

#include "pa-call.h"
#include "pa-websocket.h"

/* A new call (the caller owns the reference) whose socket @loop takes over;
 * @peer gets the test's end of the connection, playing Twilio. */
static inline PaCall *pa_check_socket_call(pa::SocketLoop &loop, int *peer) {
  int sv[2];
  fail_unless(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  PaCall *call = pa_call_new(pa::CallConfig());
  GSocket *gs = g_socket_new_from_fd(sv[1], nullptr);
  fail_unless(gs != nullptr);
  loop.adopt(gs, "", call, 0, "", [] {});
  g_object_unref(gs);
  *peer = sv[0];
  return call;
}

/* A socket loop with one media thread of its own, as the server runs
 * calls: what it adopts is read, and its timers run, on that thread. */
static inline std::unique_ptr<pa::SocketLoop> pa_check_media_loop() {
  pa::SocketLoop::Limits limits;
  limits.threads = 1;
  return std::make_unique<pa::SocketLoop>(nullptr, limits);
}
