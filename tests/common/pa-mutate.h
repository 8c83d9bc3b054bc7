/* gst-phone-agent: random edits of well-formed messages, for tests that
 * hold a hand-written parser against json-glib */
#pragma once

#include <random>
#include <string>

/* Calls @check on @count random edits of @base: one to three byte flips,
 * deletions or insertions, drawn from the characters that matter to JSON
 * (and a control, DEL and a UTF-8 lead byte). */
template <typename F> void pa_for_each_json_mutation(const std::string &base, int count, std::mt19937 &rng, F check) {
  static const char inserts[] = "{}[]\":,\\ \t\n0123456789-+.eEtrufalsn\x01\x7f\xc3";
  for (int i = 0; i < count; i++) {
    std::string t = base;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !t.empty(); e++) {
      size_t pos = rng() % t.size();
      switch (rng() % 3) {
      case 0: t[pos] = inserts[rng() % (sizeof(inserts) - 1)]; break;
      case 1: t.erase(pos, 1 + rng() % 3); break;
      default: t.insert(pos, 1, inserts[rng() % (sizeof(inserts) - 1)]); break;
      }
    }
    check(t);
  }
}
