/* Hex encoding for transcripts, CLI input and test vectors. */
#ifndef PAYGUARD_HEX_H
#define PAYGUARD_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n lowercase digits plus NUL into out (size >= 2*n+1). */
void pg_hex_encode(char *out, const uint8_t *in, size_t n);
/* Same, uppercase, with a space between bytes when spaced (size >= 3*n). */
void pg_hex_encode_upper(char *out, const uint8_t *in, size_t n, int spaced);
/*
 * Decodes hex digits, ignoring spaces, tabs, colons and newlines.
 * Returns the number of bytes written, PG_EFORMAT on a bad digit or an odd
 * count, PG_ETOOBIG when out is too small.
 */
int pg_hex_decode(uint8_t *out, size_t outlen, const char *in);

#endif
