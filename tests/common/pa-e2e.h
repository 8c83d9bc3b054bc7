/* gst-phone-agent: helpers for end-to-end tests driven by the emulator */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include <string>
#include <vector>

#include <glib/gstdio.h>

#include "pa-check.h"

namespace pa_e2e {

/* The build tree (set by tests/meson.build's test_env). */
inline std::string build_root() {
  const char *b = g_getenv("PA_BUILD_ROOT");
  return b ? b : ".";
}
inline std::string source_root() {
  const char *s = g_getenv("PA_SOURCE_ROOT");
  return s ? s : ".";
}
inline std::string emulator_path() { return build_root() + "/tools/twilio-emulator/twilio-emulator"; }

/* A fresh temporary directory, removed (with its files) by the destructor. */
struct TempDir {
  std::string path;
  TempDir() {
    gchar *p = g_dir_make_tmp("pa-e2e-XXXXXX", nullptr);
    path = p;
    g_free(p);
  }
  ~TempDir() {
    if (g_getenv("PA_KEEP_TEST_FILES"))
      return;
    GDir *d = g_dir_open(path.c_str(), 0, nullptr);
    if (d) {
      while (const char *n = g_dir_read_name(d))
        g_unlink((path + "/" + n).c_str());
      g_dir_close(d);
    }
    g_rmdir(path.c_str());
  }
  std::string file(const std::string &name) const { return path + "/" + name; }
};

/* Runs a command to completion (it must bound itself), returns its exit
 * status; stdout+stderr are kept in @output. */
inline int run(const std::vector<std::string> &argv, std::string *output = nullptr, const char *cwd = nullptr) {
  std::vector<const gchar *> args;
  for (auto &a : argv)
    args.push_back(a.c_str());
  args.push_back(nullptr);
  GSubprocessLauncher *l =
      g_subprocess_launcher_new(static_cast<GSubprocessFlags>(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                                              G_SUBPROCESS_FLAGS_STDERR_MERGE));
  if (cwd)
    g_subprocess_launcher_set_cwd(l, cwd);
  GError *err = nullptr;
  GSubprocess *p = g_subprocess_launcher_spawnv(l, args.data(), &err);
  g_object_unref(l);
  fail_unless(p != nullptr, "cannot run %s: %s", argv[0].c_str(), err ? err->message : "?");
  gchar *out = nullptr;
  g_subprocess_communicate_utf8(p, nullptr, nullptr, &out, nullptr, &err);
  int status = g_subprocess_get_if_exited(p) ? g_subprocess_get_exit_status(p) : -1;
  if (output)
    *output = out ? out : "";
  g_free(out);
  g_clear_error(&err);
  g_object_unref(p);
  return status;
}

/* A process in the background whose output goes to a file we can read. */
struct Background {
  GSubprocess *proc = nullptr;
  std::string log;

  Background(const std::vector<std::string> &argv, const std::string &log_path, const char *cwd = nullptr)
      : log(log_path) {
    std::vector<const gchar *> args;
    for (auto &a : argv)
      args.push_back(a.c_str());
    args.push_back(nullptr);
    GSubprocessLauncher *l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_subprocess_launcher_set_stdout_file_path(l, log.c_str());
    if (cwd)
      g_subprocess_launcher_set_cwd(l, cwd);
    GError *err = nullptr;
    proc = g_subprocess_launcher_spawnv(l, args.data(), &err);
    g_object_unref(l);
    fail_unless(proc != nullptr, "cannot run %s: %s", argv[0].c_str(), err ? err->message : "?");
  }
  ~Background() {
    if (proc) {
      g_subprocess_force_exit(proc);
      g_subprocess_wait(proc, nullptr, nullptr);
      g_object_unref(proc);
    }
  }
  std::string output() const {
    gchar *c = nullptr;
    g_file_get_contents(log.c_str(), &c, nullptr, nullptr);
    std::string s = c ? c : "";
    g_free(c);
    return s;
  }
  /* Waits up to @timeout_ms for the process to exit; its exit status, or -1. */
  int wait(int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 20) {
      if (!g_subprocess_get_identifier(proc)) {
        g_subprocess_wait(proc, nullptr, nullptr);
        return g_subprocess_get_if_exited(proc) ? g_subprocess_get_exit_status(proc) : -1;
      }
      g_usleep(20000);
    }
    return -1;
  }
  /* Waits for @needle in the output (up to @timeout_ms); the text after it. */
  std::string wait_for(const std::string &needle, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 20) {
      std::string o = output();
      size_t pos = o.find(needle);
      if (pos != std::string::npos)
        return o.substr(pos + needle.size());
      g_usleep(20000);
    }
    fail("'%s' did not appear in the output within %d ms:\n%s", needle.c_str(), timeout_ms, output().c_str());
    return "";
  }
};

/* gst-launch-1.0 -m prints "twilio-listening, port=(int)N": the port. */
inline int wait_for_port(Background &b) {
  std::string rest = b.wait_for("twilio-listening, port=(int)", 10000);
  return atoi(rest.c_str());
}

/* The emulator's JSON report. */
struct Report {
  JsonParser *parser = nullptr;
  JsonObject *root = nullptr;
  explicit Report(const std::string &path) {
    parser = json_parser_new();
    GError *err = nullptr;
    fail_unless(json_parser_load_from_file(parser, path.c_str(), &err), "report %s: %s", path.c_str(),
                err ? err->message : "?");
    root = json_node_get_object(json_parser_get_root(parser));
  }
  ~Report() { g_object_unref(parser); }
  JsonObject *call(guint i) const {
    JsonArray *calls = json_object_get_array_member(root, "calls");
    fail_unless(calls && json_array_get_length(calls) > i, "report has no call %u", i);
    return json_array_get_object_element(calls, i);
  }
  std::string outcome(guint i) const { return json_object_get_string_member(call(i), "outcome"); }
};

inline std::vector<uint8_t> read_bytes(const std::string &path) {
  gchar *c = nullptr;
  gsize len = 0;
  fail_unless(g_file_get_contents(path.c_str(), &c, &len, nullptr), "cannot read %s", path.c_str());
  std::vector<uint8_t> v(reinterpret_cast<uint8_t *>(c), reinterpret_cast<uint8_t *>(c) + len);
  g_free(c);
  return v;
}

} // namespace pa_e2e
