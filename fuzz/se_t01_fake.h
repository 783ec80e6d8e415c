/*
 * Fakes for the T=0/T=1 fuzzers (OpenSC's idea: a reader whose card answers
 * with the fuzz input): a card stream that reads from a byte string and drops
 * what it is sent, a sink for card roles, and a tiny echo card.
 */
#ifndef SE_T01_FAKE_H
#define SE_T01_FAKE_H

#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/stream.h"

#include <stdlib.h>
#include <string.h>

struct fake_card_stream {
	struct pg_stream base;
	const uint8_t *p;
	size_t n, off;
};

static int
fake_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	(void)s, (void)type, (void)p, (void)n;
	return 0;
}

static int
fake_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct fake_card_stream *f = (struct fake_card_stream *)s;

	(void)timeout_ms;
	if (f->off == f->n)
		return PG_ETIMEDOUT;
	if (n > f->n - f->off)
		n = f->n - f->off;
	memcpy(p, f->p + f->off, n);
	f->off += n;
	return (int)n;
}

static void
fake_destroy(struct pg_stream *s)
{
	free(s);
}

static const struct pg_stream_ops fake_ops = {fake_write, fake_read, NULL, fake_destroy};

__attribute__((unused)) static struct pg_stream *
fake_stream(const uint8_t *p, size_t n)
{
	struct fake_card_stream *f = calloc(1, sizeof(*f));

	if (!f)
		abort();
	f->base.ops = &fake_ops;
	f->p = p;
	f->n = n;
	return &f->base;
}

__attribute__((unused)) static int
echo_process(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	(void)ctx;
	if (clen > 5 && clen - 5 + 2 <= *rlen) {
		memcpy(r, c + 5, clen - 5);
		r[clen - 5] = 0x90;
		r[clen - 4] = 0x00;
		*rlen = clen - 3;
		return 0;
	}
	/* "Any length" from P2, as the tests' card: exercises chaining and 61xx/6Cxx. */
	if (clen >= 4 && (size_t)c[3] + 2 <= *rlen) {
		memset(r, 0xA5, c[3]);
		r[c[3]] = 0x90;
		r[c[3] + 1] = 0x00;
		*rlen = (size_t)c[3] + 2;
		return 0;
	}
	return PG_EINVAL;
}

#endif
