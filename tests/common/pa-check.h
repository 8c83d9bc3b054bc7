/* gst-phone-agent: helpers for gst-check tests */
#pragma once

#include <gst/check/gstcheck.h>

#include <string>

/* Compares two strings held by value, so temporaries (a std::string returned
 * by the expression under test) live long enough to be printed. */
#define assert_str(a, b)                                                                                      \
  do {                                                                                                        \
    std::string _pa_a = (a);                                                                                  \
    std::string _pa_b = (b);                                                                                  \
    fail_unless(_pa_a == _pa_b, "'%s' != '%s'", _pa_a.c_str(), _pa_b.c_str());                               \
  } while (0)

/* A uint64 field of a statistics structure (the structure is freed); fails
 * the test when the field is missing. */
static inline guint64 pa_check_stat(GstStructure *stats, const char *name) {
  guint64 v = 0;
  fail_unless(gst_structure_get_uint64(stats, name, &v), "no stat %s", name);
  gst_structure_free(stats);
  return v;
}
