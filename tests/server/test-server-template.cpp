/* gst-phone-agent: the server's launch templates, without a network.
 *
 * The point of the escaping: whatever a caller controls (numbers, custom
 * parameters) must end up inside one property value, exactly, and never add
 * elements, links or properties. Checked against gst_parse_launch itself,
 * with hand-picked attacks and random strings. */
#include <gst/gst.h>

#include <map>
#include <random>

#include "../common/pa-check.h"
#include "pa-server.h"

namespace {

GHashTable *vars(const std::map<std::string, std::string> &m) {
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  for (const auto &[k, v] : m)
    g_hash_table_insert(h, g_strdup(k.c_str()), g_strdup(v.c_str()));
  return h;
}

std::string expand(const char *tmpl, const std::map<std::string, std::string> &m, GError **error = nullptr) {
  GHashTable *h = vars(m);
  gchar *out = pa_pipeline_template_expand(tmpl, h, error);
  g_hash_table_unref(h);
  std::string s = out ? out : "<error>";
  g_free(out);
  return s;
}

std::string expand_error(const char *tmpl) {
  GError *err = nullptr;
  gchar *out = pa_pipeline_template_expand(tmpl, nullptr, &err);
  fail_unless(out == nullptr, "'%s' expanded to '%s' but should be refused", tmpl, out);
  fail_unless(err != nullptr);
  std::string msg = err->message;
  g_error_free(err);
  return msg;
}

int count_elements(GstElement *pipeline) {
  if (!GST_IS_BIN(pipeline))
    return 1;
  int n = 0;
  GstIterator *it = gst_bin_iterate_recurse(GST_BIN(pipeline));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
    n++;
    g_value_reset(&v);
  }
  g_value_unset(&v);
  gst_iterator_free(it);
  return n;
}

/* What the location should be: newlines become spaces. */
std::string expected(const std::string &value, const char *prefix = "", const char *suffix = "") {
  std::string v = value;
  for (char &c : v)
    if (c == '\n' || c == '\r')
      c = ' ';
  return prefix + v + suffix;
}

/* GStreamer's string deserializer treats "NULL" and "\"...\"" specially:
 * still inside the one property, but not the same text (and a lone quote
 * does not deserialize: that call's pipeline would not build). */
bool deserializer_special(const std::string &full) {
  return full == "NULL" || (!full.empty() && full.front() == '"' && full.back() == '"');
}

/* Expands "fakesrc ! filesink name=f location=<prefix>${param.x}<suffix>"
 * with @value, parses it, and returns the filesink's location (or
 * "<NULL>"); fails if the parse made anything but the two elements. */
std::string round_trip(const std::string &value, const char *prefix = "", const char *suffix = "") {
  std::string tmpl = std::string("fakesrc ! filesink name=f location=") + prefix + "${param.x}" + suffix;
  GError *err = nullptr;
  std::string desc = expand(tmpl.c_str(), {{"param.x", value}}, &err);
  fail_unless(err == nullptr, "expansion failed: %s", err ? err->message : "");
  GstElement *p = gst_parse_launch_full(desc.c_str(), nullptr, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!p && deserializer_special(expected(value, prefix, suffix))) {
    g_clear_error(&err);
    return "<unparsable>";
  }
  fail_unless(p != nullptr, "value '%s' made '%s' unparsable: %s", value.c_str(), desc.c_str(),
              err ? err->message : "");
  gst_object_ref_sink(p);
  fail_unless_equals_int(count_elements(p), 2);
  GstElement *f = gst_bin_get_by_name(GST_BIN(p), "f");
  fail_unless(f != nullptr, "value '%s' renamed the sink: '%s'", value.c_str(), desc.c_str());
  gchar *loc = nullptr;
  g_object_get(f, "location", &loc, nullptr);
  std::string out = loc ? loc : "<NULL>";
  g_free(loc);
  gst_object_unref(f);
  gst_object_unref(p);
  return out;
}

} // namespace

GST_START_TEST(test_expand_variables) {
  std::map<std::string, std::string> m = {{"call_sid", "CA123"}, {"from", "+14155551212"}, {"out_dir", "/rec"},
                                          {"param.tenant", "acme"}};
  assert_str(expand("a location=${out_dir}/${call_sid}.wav", m), "a location=/rec/CA123.wav");
  assert_str(expand("a name=${from}", m), "a name=+14155551212");
  assert_str(expand("a x=${param.tenant} y=${param.voice:-alloy} z=${param.missing}", m),
             "a x=acme y=alloy z=\"\"");
  assert_str(expand("a x=${param.missing}.wav", m), "a x=.wav");
  assert_str(expand("a x=$$HOME y=cost$5", m), "a x=$HOME y=cost$5");
  /* text around is passed through: quotes, escapes, caps */
  assert_str(expand("a x=\"quoted text\" ! audio/x-raw,rate=8000 ! b y=${call_sid}", m),
             "a x=\"quoted text\" ! audio/x-raw,rate=8000 ! b y=CA123");
  /* a value is never expanded again */
  assert_str(expand("a x=${param.tenant}", {{"param.tenant", "${call_sid}"}}), "a x=\\$\\{call_sid\\}");
}
GST_END_TEST;

GST_START_TEST(test_expand_refuses_bad_templates) {
  fail_unless(expand_error("a x=${nope}").find("unknown variable ${nope}") != std::string::npos);
  fail_unless(expand_error("a x=${call_sid").find("unterminated variable") != std::string::npos);
  fail_unless(expand_error("a x=\"${call_sid}\"").find("inside quotes") != std::string::npos);
  fail_unless(expand_error("a ! ${param.element} ! b").find("property value") != std::string::npos);
  fail_unless(expand_error("a x = ${call_sid}").find("property value") != std::string::npos);
  fail_unless(expand_error("a x=${from:-x}").find("default") != std::string::npos);
  fail_unless(expand_error("a x=\"open").find("unterminated quote") != std::string::npos);
  fail_unless(expand_error("a x=${param.}").find("unknown variable") != std::string::npos);
}
GST_END_TEST;

GST_START_TEST(test_strip_comments) {
  gchar *s = pa_pipeline_template_strip_comments("# the echo\n  # indented comment\ntwiliosrc !\n\n  twiliosink\n#end");
  assert_str(s, "twiliosrc !   twiliosink");
  g_free(s);
  s = pa_pipeline_template_strip_comments("# only comments\n");
  assert_str(s, "");
  g_free(s);
}
GST_END_TEST;

/* Attacks a caller (or a careless application) could put in a parameter. */
GST_START_TEST(test_injection_attempts_stay_in_the_value) {
  const char *attacks[] = {
      "x ! fakesink",
      "x location=/etc/passwd",
      "\" ! fakesink name=f location=/tmp/pwned",
      "' ! fakesink",
      "a\\",
      "a\\\"",
      "\\",
      "\\\\\" ! fakesink \"",
      "x\n! fakesink",
      "x\r\nname=g",
      "name=g",
      "f. ! fakesink",
      "x,y;z=(int)3",
      "$HOME ${call_sid} $$",
      "tab\there",
      "(){}[]<>|&*?~`#;:",
      "Ünïcødé ☎ 電話",
      " leading and trailing ",
      "=",
      "!",
      "\"",
  };
  for (const char *a : attacks) {
    for (auto [prefix, suffix] : {std::pair<const char *, const char *>{"", ""}, {"/rec/", ".wav"}}) {
      std::string full = expected(a, prefix, suffix);
      std::string got = round_trip(a, prefix, suffix);
      if (!deserializer_special(full))
        assert_str(got, full);
    }
  }
  /* empty: still a value, not the next token */
  assert_str(round_trip(""), "");
  assert_str(round_trip("", "/rec/", ".wav"), "/rec/.wav");
}
GST_END_TEST;

/* Random strings over an alphabet heavy in what the lexer cares about. */
GST_START_TEST(test_random_values_round_trip) {
  std::mt19937 rng(20260521);
  const std::vector<std::string> alphabet = {
      "a", "Z", "0", " ", "\t", "\n", "\"", "'", "\\", "!", "=", ".", ",", ";", "(", ")", "{", "}", "$", "#",
      "/", ":", "@", "+", "-", "_", "%", "&", "<", ">", "|", "`", "~", "*", "?", "[", "]", "é", "☎"};
  for (int i = 0; i < 3000; i++) {
    std::string v;
    int len = static_cast<int>(rng() % 24);
    for (int j = 0; j < len; j++)
      v += alphabet[rng() % alphabet.size()];
    const char *prefix = (i % 3 == 0) ? "/rec/" : "";
    const char *suffix = (i % 2 == 0) ? ".wav" : "";
    std::string full = expected(v, prefix, suffix);
    std::string got = round_trip(v, prefix, suffix);
    if (!deserializer_special(full))
      fail_unless(got == full, "value '%s': location '%s', expected '%s'", v.c_str(), got.c_str(), full.c_str());
  }
}
GST_END_TEST;

GST_START_TEST(test_server_checks_template) {
  PaServer *server = pa_server_new();
  GError *err = nullptr;
  fail_unless(pa_server_set_pipeline_template(server, "# echo\nfakesrc ! fakesink", &err));
  gchar *t = nullptr;
  g_object_get(server, "pipeline", &t, nullptr);
  assert_str(t, "fakesrc ! fakesink");
  g_free(t);

  fail_if(pa_server_set_pipeline_template(server, "fakesrc ! no-such-element", &err));
  fail_unless(g_error_matches(err, PA_SERVER_ERROR, PA_SERVER_ERROR_TEMPLATE));
  fail_unless(strstr(err->message, "no-such-element") != nullptr, "%s", err->message);
  g_clear_error(&err);

  fail_if(pa_server_set_pipeline_template(server, "fakesrc num-buffers=${param.n:-many} ! fakesink", &err),
          "a default that does not fit the property must fail the check");
  g_clear_error(&err);
  fail_unless(pa_server_set_pipeline_template(server, "fakesrc num-buffers=${param.n:-5} ! fakesink", &err));
  fail_unless(pa_server_set_pipeline_template(
      server, "fakesrc ! wavenc ! filesink location=${out_dir}/${call_sid}-${param.tenant}.wav", &err));
  fail_if(pa_server_set_pipeline_template(server, "# nothing\n", &err));
  g_clear_error(&err);

  fail_if(pa_server_load_pipeline_template(server, "/nonexistent/x.pipeline", &err));
  fail_unless(strstr(err->message, "cannot read") != nullptr, "%s", err->message);
  g_clear_error(&err);
  /* the failed attempts kept the last good template */
  g_object_get(server, "pipeline", &t, nullptr);
  fail_unless(strstr(t, "wavenc") != nullptr);
  g_free(t);

  /* the repository's echo template */
  std::string echo = std::string(g_getenv("PA_SOURCE_ROOT") ? g_getenv("PA_SOURCE_ROOT") : ".") +
                     "/pipelines/echo.pipeline";
  fail_unless(pa_server_load_pipeline_template(server, echo.c_str(), &err), "%s", err ? err->message : "");
  g_object_unref(server);
}
GST_END_TEST;

static Suite *server_template_suite(void) {
  Suite *s = suite_create("server-template");
  TCase *tc = tcase_create("general");
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_expand_variables);
  tcase_add_test(tc, test_expand_refuses_bad_templates);
  tcase_add_test(tc, test_strip_comments);
  tcase_add_test(tc, test_injection_attempts_stay_in_the_value);
  tcase_add_test(tc, test_random_values_round_trip);
  tcase_add_test(tc, test_server_checks_template);
  return s;
}

GST_CHECK_MAIN(server_template);
