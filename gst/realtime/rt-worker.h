/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A private thread running its own GMainContext, for the parts of a
 * realtime session that wait: connecting (name lookup), reconnecting after a
 * back-off, polling what the caller heard, and HTTP requests (tool URLs, the
 * Twilio REST API) on a libsoup session that lives on this thread.
 *
 * Nothing here ever runs on the model socket's thread or on a
 * streaming thread, so a slow tool server or DNS lookup delays only the
 * call that waits for it.
 */
#pragma once

#include <gio/gio.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rt-api.h"

namespace pa::rt {

struct HttpResult {
  int status = 0;          /* HTTP status, 0 when no response came */
  std::string body;
  std::string error;       /* transport error, timeout or cancellation; empty on a response */
  bool timed_out = false;
  bool cancelled = false;
  double elapsed_ms = 0;
};

class RT_API Worker {
public:
  explicit Worker(std::string name);
  /* Stops the thread if it still runs. */
  ~Worker();
  Worker(const Worker &) = delete;
  Worker &operator=(const Worker &) = delete;

  void start();
  /* Cancels HTTP requests in flight, quits the loop and joins the thread.
   * Callbacks queued or scheduled and not yet run are dropped (their
   * std::function is destroyed). Must not be called on the worker thread. */
  void stop();
  bool running() const;
  bool on_worker_thread() const;

  /* Runs @fn on the worker thread. Dropped when the worker is stopped. */
  void invoke(std::function<void()> fn);
  /* Runs @fn every @interval_ms on the worker thread while it returns TRUE.
   * Returns an id for cancel_timer(). */
  guint add_timer(guint interval_ms, std::function<bool()> fn);
  /* Any thread. Harmless when the timer already ran out. */
  void cancel_timer(guint id);

  /* POSTs @body; @done runs on the worker thread (also on timeout and on
   * cancellation by stop()). Header values are never logged. Any thread. */
  void http_post(const std::string &url, const std::string &content_type, const std::string &body,
                 std::vector<std::pair<std::string, std::string>> headers, guint timeout_ms,
                 std::function<void(HttpResult)> done);

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace pa::rt
