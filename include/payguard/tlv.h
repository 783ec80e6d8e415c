/*
 * BER-TLV (ISO/IEC 7816-4 clause 6.3, ISO/IEC 8825-1): multi-byte tags,
 * long-form lengths up to 4 bytes, constructed objects, with a nesting limit.
 * Parsing never copies: values point into the input.
 */
#ifndef PAYGUARD_TLV_H
#define PAYGUARD_TLV_H

#include "payguard/buf.h"

#include <stddef.h>
#include <stdint.h>

#define PG_TLV_MAX_DEPTH 16

struct pg_tlv {
	uint32_t tag;	    /* tag bytes big-endian, e.g. 0x9F7F, 0x6F */
	int constructed;    /* bit 6 of the first tag byte */
	const uint8_t *val; /* points into the parsed input */
	size_t len;
	size_t hdr_len; /* tag + length bytes */
};

/*
 * Reads one TLV at p[0..n). Skips leading 00 padding bytes (7816-4 allows
 * them between objects; FF is read as a tag byte, as GlobalPlatform's FF40). Returns bytes consumed
 * (> 0), 0 at the end of input (only padding left), or PG_EFORMAT/PG_ETRUNC.
 */
int pg_tlv_next(struct pg_tlv *t, const uint8_t *p, size_t n);
/*
 * Finds the first object with `tag` at this level of p[0..n); with
 * recursive, also inside constructed objects (depth-limited).
 * Returns 1 found, 0 not found, negative on malformed input.
 */
int pg_tlv_find(struct pg_tlv *out, const uint8_t *p, size_t n, uint32_t tag, int recursive);
/* Checks that p[0..n) is a well-formed sequence, recursively to PG_TLV_MAX_DEPTH. */
int pg_tlv_validate(const uint8_t *p, size_t n);

/* Appends a TLV; tag written in its minimal bytes, length in minimal DER form. */
int pg_tlv_append(struct pg_buf *b, uint32_t tag, const void *val, size_t len);
/*
 * Builds constructed objects in place: pg_tlv_open() writes the tag and
 * reserves a length, pg_tlv_close() fixes the length up (moving the value if
 * the length needs more bytes). Returns a mark or a negative code.
 */
int pg_tlv_open(struct pg_buf *b, uint32_t tag, size_t *mark);
int pg_tlv_close(struct pg_buf *b, size_t mark);
/* Number of bytes the tag takes. */
size_t pg_tlv_tag_size(uint32_t tag);

#endif
