/* Store helpers shared by the image area's scan, advisory and upgrade code. */
#ifndef PG_IMAGE_DB_H
#define PG_IMAGE_DB_H

#include "payguard/store.h"

#include <jansson.h>
#include <stdint.h>

void pgi_now_iso(char *buf, size_t n);
/*
 * Binds args (a JSON array, stolen) to the `?` placeholders in order and runs
 * one statement on st->pdb (prepared once per connection); *changes, if
 * given, gets the rows it changed.
 */
int pgi_image_run(struct pg_store *st, const char *sql, json_t *args, int64_t *changes);
/* Same, returning rows as an array of objects keyed by column (args stolen). */
int pgi_image_query(struct pg_store *st, const char *sql, json_t *args, json_t **out);
int pgi_image_save(struct pg_store *st, json_t *inv, int64_t *id);
/*
 * Brings image_finding_state of image id (-1: every image) in step with the
 * findings computed now, emitting payguard.image.finding_found for each new
 * (image, advisory, package) and finding_fixed for each that disappeared;
 * call inside the transaction of the change (scan, advisory import).
 */
int pgi_image__findings_sync(struct pg_store *st, int64_t id);
/* Finds an image by id, path or sha256 prefix. */
int pgi_image_resolve(struct pg_store *st, const char *ref, int64_t *id, char **path);

#endif
