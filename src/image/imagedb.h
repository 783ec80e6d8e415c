/* Store helpers shared by the image area's scan, advisory and upgrade code. */
#ifndef PG_IMAGE_DB_H
#define PG_IMAGE_DB_H

#include "payguard/store.h"

#include <jansson.h>

void pg_now_iso(char *buf, size_t n);
/* Binds args (a JSON array, stolen) to ?1..?n and runs one statement. */
int pg_db_run(struct pg_store *st, const char *sql, json_t *args, sqlite3_int64 *rowid);
/* Same, returning rows as an array of objects (args stolen). */
int pg_db_query(struct pg_store *st, const char *sql, json_t *args, json_t **out);
int pg_image_save(struct pg_store *st, json_t *inv, sqlite3_int64 *id);
/* Finds an image by id, path or sha256 prefix. */
int pg_image_resolve(struct pg_store *st, const char *ref, sqlite3_int64 *id, char **path);

#endif
