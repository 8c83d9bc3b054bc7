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
