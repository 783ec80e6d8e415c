/*
 * JSON over the store API (db.h): run one statement with its `?` values
 * taken from a JSON array, or turn its rows into JSON objects keyed by
 * column name. Shared by the areas that answer with JSON (image, serve).
 */
#ifndef PAYGUARD_DB_JSON_H
#define PAYGUARD_DB_JSON_H

#include "payguard/db.h"

#include <jansson.h>
#include <stdint.h>

/* Binds args (string, integer, bool, real, null; not stolen) to ?1..?n. */
int pg_db_bind_json(struct pg_db_stmt *s, const json_t *args);
/* One row of s as an object keyed by column name, typed as the engine returns it. */
json_t *pg_db_row_json(struct pg_db_stmt *s);
/*
 * Runs one statement with args (a JSON array or NULL, stolen); *changes, if
 * given, gets the rows it changed.
 */
int pg_db_run_json(struct pg_db *db, const char *sql, json_t *args, int64_t *changes);
/* The same, returning every row in an array (args stolen). */
int pg_db_query_json(struct pg_db *db, const char *sql, json_t *args, json_t **out);
/* The first column of the first row as an integer (0 when no row). */
int pg_db_query_int64(struct pg_db *db, const char *sql, int64_t *out);

#endif
