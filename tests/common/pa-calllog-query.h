/* gst-phone-agent tests: reading the server's call log (SQLite). */
#pragma once

#include <gst/check/gstcheck.h>
#include <sqlite3.h>

#include <string>
#include <vector>

/* Rows of a query on a call log, each column as text ("" for NULL). */
inline std::vector<std::vector<std::string>> query(const std::string &db_path, const std::string &sql) {
  sqlite3 *db = nullptr;
  fail_unless(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK,
              "cannot open %s", db_path.c_str());
  sqlite3_stmt *st = nullptr;
  fail_unless(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, "%s: %s", sql.c_str(),
              sqlite3_errmsg(db));
  std::vector<std::vector<std::string>> rows;
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      const unsigned char *t = sqlite3_column_text(st, i);
      row.emplace_back(t ? reinterpret_cast<const char *>(t) : "");
    }
    rows.push_back(std::move(row));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}
