/*
 * Shared pieces of the SWP/SPI/I2C/CCID harnesses: a stream whose reads
 * return the fuzz input (the peer's bytes) and whose writes are dropped, an
 * echo card, and a splitter that turns input into packets for a card role
 * ([len:2 big-endian][bytes]...; a length with bit 15 set is a RESET event).
 */
#ifndef PG_FUZZ_SE_SWP_FUZZ_H
#define PG_FUZZ_SE_SWP_FUZZ_H

#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/stream.h"

#include <stdlib.h>
#include <string.h>

struct fz_stream {
	struct pg_stream base;
	const uint8_t *p;
	size_t n, off;
};

static int
fz_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	(void)s, (void)type, (void)p, (void)n;
	return 0;
}

static int
fz_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct fz_stream *f = (struct fz_stream *)s;

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
fz_destroy(struct pg_stream *s)
{
	(void)s; /* lives on the harness's stack */
}

static const struct pg_stream_ops fz_ops = {
    .write = fz_write, .read = fz_read, .destroy = fz_destroy};

static int
fz_atr(void *ctx, uint8_t *atr, size_t *len)
{
	(void)ctx;
	memcpy(atr, "\x3B\x02\x14\x50", 4);
	*len = 4;
	return 0;
}

static int
fz_process(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	size_t n = clen > 300 ? 300 : clen;

	(void)ctx;
	if (n + 2 > *rlen)
		return PG_ETOOBIG;
	memcpy(r, c, n);
	r[n] = 0x90;
	r[n + 1] = 0x00;
	*rlen = n + 2;
	return 0;
}

static const struct pg_card fz_card = {.atr = fz_atr, .process = fz_process};

/* Feeds the input to a card role of `ops` as packets. */
static __attribute__((unused)) void
fz_card_role(const struct pg_link_ops *ops, const struct pg_link_params *p, const uint8_t *d,
	     size_t n)
{
	struct pg_link_card *c = NULL;
	struct fz_stream out = {.base.ops = &fz_ops};
	size_t o = 0;

	pg_log_set_level(PG_LOG_ERROR);
	if (ops->card_open(&c, &fz_card, p) < 0)
		return;
	while (n - o >= 2) {
		size_t len = (size_t)(d[o] << 8 | d[o + 1]);

		o += 2;
		if (len & 0x8000) {
			ops->card_packet(c, PG_PKT_RESET, NULL, 0, &out.base);
			continue;
		}
		if (len > n - o)
			len = n - o;
		ops->card_packet(c, PG_PKT_DATA, d + o, len, &out.base);
		o += len;
	}
	ops->card_close(c);
}

/* Runs a host role whose card answers are the input: power on, then two APDUs. */
static __attribute__((unused)) void
fz_host_role(const struct pg_link_ops *ops, const struct pg_link_params *p, const uint8_t *d,
	     size_t n)
{
	static uint8_t r[70000];
	static const uint8_t cmd[] = {0x00, 0x10, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0x00};
	struct fz_stream *in = calloc(1, sizeof(*in));
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), rlen;

	pg_log_set_level(PG_LOG_ERROR);
	if (!in)
		return;
	in->base.ops = &fz_ops;
	in->p = d;
	in->n = n;
	if (ops->host_open(&l, &in->base, NULL, p) < 0) {
		free(in);
		return;
	}
	if (ops->power_on(l, atr, &atrlen) == 0) {
		for (int i = 0; i < 2; i++) {
			rlen = sizeof(r);
			(void)ops->transmit(l, cmd, sizeof(cmd), r, &rlen);
		}
	}
	ops->host_close(l);
	free(in);
}

#endif
