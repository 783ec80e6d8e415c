/* Growable byte buffer with a hard maximum; see payguard/buf.h. */
#include "payguard/buf.h"
#include "payguard/error.h"
#include "payguard/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
pg_buf_init(struct pg_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void
pg_buf_release(struct pg_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
pg_buf_release_secure(struct pg_buf *b)
{
	if (!b)
		return;
	if (b->data)
		pg_memzero(b->data, b->cap);
	pg_buf_release(b);
}

void
pg_buf_reset(struct pg_buf *b)
{
	b->len = 0;
}

int
pg_buf_reserve(struct pg_buf *b, size_t n)
{
	size_t want, cap;
	uint8_t *p;

	if (n > b->max || b->len > b->max - n)
		return PG_ETOOBIG;
	want = b->len + n;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if (cap > b->max)
		cap = b->max;
	p = realloc(b->data, cap);
	if (!p)
		return PG_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
pg_buf_append(struct pg_buf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = pg_buf_reserve(b, n);
	if (rc < 0)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
pg_buf_append_byte(struct pg_buf *b, uint8_t v)
{
	return pg_buf_append(b, &v, 1);
}

int
pg_buf_append_be16(struct pg_buf *b, uint16_t v)
{
	uint8_t t[2];

	pg_put_be16(t, v);
	return pg_buf_append(b, t, 2);
}

int
pg_buf_append_be32(struct pg_buf *b, uint32_t v)
{
	uint8_t t[4];

	pg_put_be32(t, v);
	return pg_buf_append(b, t, 4);
}

int
pg_buf_printf(struct pg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return PG_EINVAL;
	/* +1 for vsnprintf's terminator, which is not counted in len. */
	rc = pg_buf_reserve(b, (size_t)n + 1);
	if (rc < 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
pg_buf_consume(struct pg_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
