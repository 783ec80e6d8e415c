/*
 * JSON text out of jansson with every real in its shortest round-trip form
 * (52.52, not jansson's %.17g 52.520000000000003): every json_dumps/json_dumpf
 * of the project goes through these (issue 13).
 */
#ifndef PAYGUARD_JSON_H
#define PAYGUARD_JSON_H

#include <jansson.h>
#include <stdio.h>

/* json_dumps(v, flags) with shortest reals; malloc'd text (free()), NULL on error. */
char *pg_json_dumps(const json_t *v, size_t flags);
/* json_dumpf(v, f, flags) with shortest reals; 0 or -1 like json_dumpf. */
int pg_json_dumpf(const json_t *v, FILE *f, size_t flags);
/* Writes the shortest decimal text that strtod reads back as d (with ".0" when
 * it would look like an integer), as jansson would place it; the length, or -1
 * for NaN/infinity or a buffer too small. */
int pg_json_real_text(double d, char *out, size_t size);

#endif
