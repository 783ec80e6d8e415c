/*
 * Growable byte buffer with a hard maximum (curl's dynbuf idea): every buffer
 * fed by outside bytes is given the largest size it may legitimately reach,
 * and growing past it fails with PG_ETOOBIG instead of eating memory.
 *
 * Invariants: len <= cap <= max; data is NULL only while cap == 0.
 * The caller owns the struct; pg_buf_release() frees the contents only.
 */
#ifndef PAYGUARD_BUF_H
#define PAYGUARD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct pg_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
};

#define PG_BUF_INIT(maxlen)                                                                        \
	{                                                                                          \
		NULL, 0, 0, (maxlen)                                                               \
	}

void pg_buf_init(struct pg_buf *b, size_t max);
/* Frees the contents; the buffer is left empty and reusable. NULL is fine. */
void pg_buf_release(struct pg_buf *b);
/* Like pg_buf_release() but wipes the bytes first (key material). */
void pg_buf_release_secure(struct pg_buf *b);
void pg_buf_reset(struct pg_buf *b);
/* Makes room for n more bytes. PG_ETOOBIG past max, PG_ENOMEM. */
int pg_buf_reserve(struct pg_buf *b, size_t n);
int pg_buf_append(struct pg_buf *b, const void *p, size_t n);
int pg_buf_append_byte(struct pg_buf *b, uint8_t v);
int pg_buf_append_be16(struct pg_buf *b, uint16_t v);
int pg_buf_append_be32(struct pg_buf *b, uint32_t v);
int pg_buf_printf(struct pg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (n <= len). */
void pg_buf_consume(struct pg_buf *b, size_t n);

/* Big-endian loads and stores for wire formats. */
static inline uint16_t
pg_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t
pg_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t
pg_be64(const uint8_t *p)
{
	return ((uint64_t)pg_be32(p) << 32) | pg_be32(p + 4);
}
static inline uint16_t
pg_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t
pg_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}
static inline uint64_t
pg_le64(const uint8_t *p)
{
	return (uint64_t)pg_le32(p) | ((uint64_t)pg_le32(p + 4) << 32);
}
static inline void
pg_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void
pg_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void
pg_put_be64(uint8_t *p, uint64_t v)
{
	pg_put_be32(p, (uint32_t)(v >> 32));
	pg_put_be32(p + 4, (uint32_t)v);
}
static inline void
pg_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void
pg_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#endif
