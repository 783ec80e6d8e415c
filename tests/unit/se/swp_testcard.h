/*
 * Test helpers shared by test_swp.c, test_spi.c and test_ccid.c: a small
 * pg_card that echoes data, counts executed commands and checks that
 * sequence-numbered commands arrive once each, in order; a tap stream that
 * records and drops chosen packets. The socketpair runner is sd_open_socket()
 * of tests/common/se_double.h.
 */
#ifndef PG_TEST_SWP_TESTCARD_H
#define PG_TEST_SWP_TESTCARD_H

#include "payguard/apdu.h"
#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/stream.h"
#include "se_double.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TC_INS_ECHO 0x10
#define TC_INS_SEQ  0x20

struct tcard {
	uint64_t executed;
	uint32_t last_seq;
	uint64_t seq_errors; /* a sequence number seen twice or skipped */
	uint64_t resets;
	uint32_t last_sum; /* sum of the last case-3 data field */
	int mute;	   /* answer nothing (negative code) */
	int absent;	   /* no card in the slot (atr returns PG_ENOCARD) */
};

static const uint8_t tc_atr[] = {0x3B, 0x88, 0x80, 0x01, 'p',  'g', '-',
				 's',  'w',  'p',  0x90, 0x00, 0x8D};

static int
tc_atr_fn(void *ctx, uint8_t *atr, size_t *len)
{
	if (((struct tcard *)ctx)->absent)
		return PG_ENOCARD;
	memcpy(atr, tc_atr, sizeof(tc_atr));
	*len = sizeof(tc_atr);
	return 0;
}

static void
tc_reset(void *ctx)
{
	((struct tcard *)ctx)->resets++;
}

static int
tc_process(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct tcard *t = ctx;
	struct pg_capdu a;
	size_t n = 0;

	if (t->mute)
		return PG_EIO;
	if (*rlen < 2)
		return PG_ETOOBIG;
	t->executed++;
	if (pg_capdu_parse(&a, c, clen) < 0) {
		r[0] = 0x67;
		r[1] = 0x00;
		*rlen = 2;
		return 0;
	}
	if (a.ins == TC_INS_SEQ && a.lc >= 4) {
		uint32_t s = (uint32_t)a.data[0] << 24 | (uint32_t)a.data[1] << 16 |
			     (uint32_t)a.data[2] << 8 | a.data[3];

		if (s != t->last_seq + 1)
			t->seq_errors++;
		t->last_seq = s;
		n = a.lc;
		memcpy(r, a.data, n);
	} else if (a.ins == TC_INS_ECHO) {
		switch (a.apdu_case) {
		case PG_APDU_CASE2S:
		case PG_APDU_CASE2E:
			n = a.le;
			for (size_t i = 0; i < n; i++)
				r[i] = (uint8_t)(i * 7 + 1);
			break;
		case PG_APDU_CASE3S:
		case PG_APDU_CASE3E:
			t->last_sum = 0;
			for (size_t i = 0; i < a.lc; i++)
				t->last_sum += a.data[i];
			break;
		case PG_APDU_CASE4S:
		case PG_APDU_CASE4E:
			n = a.lc < a.le ? a.lc : a.le;
			memcpy(r, a.data, n);
			break;
		default:
			break;
		}
	} else {
		r[0] = 0x6D;
		r[1] = 0x00;
		*rlen = 2;
		return 0;
	}
	if (n + 2 > *rlen)
		return PG_ETOOBIG;
	r[n] = 0x90;
	r[n + 1] = 0x00;
	*rlen = n + 2;
	return 0;
}

static struct pg_card
tc_card(struct tcard *t)
{
	struct pg_card c = {.ctx = t, .atr = tc_atr_fn, .process = tc_process, .reset = tc_reset};

	return c;
}

/* ---- tap stream: records packets (first bytes) and drops chosen ones ---- */

#define TAP_MAX (1u << 18)
struct tap {
	struct pg_stream base;
	struct pg_stream *inner;
	int owns;
	int keep; /* destroy leaves the struct for the test to read (then free()) */
	size_t count;
	uint8_t head[TAP_MAX][4]; /* first bytes of each DATA packet */
	size_t len[TAP_MAX];
	uint8_t last[4];    /* first bytes of the last DATA packet */
	const size_t *drop; /* packet indexes (0-based, DATA only) to drop; ends at (size_t)-1 */
};

static int
tap_write(struct pg_stream *s, int type, const uint8_t *p, size_t n)
{
	struct tap *t = (struct tap *)s;
	size_t i;

	if (type != PG_PKT_DATA)
		return t->inner->ops->write(t->inner, type, p, n);
	i = t->count++;
	memset(t->last, 0, 4);
	memcpy(t->last, p, n < 4 ? n : 4);
	if (i < TAP_MAX) {
		memset(t->head[i], 0, 4);
		memcpy(t->head[i], p, n < 4 ? n : 4);
		t->len[i] = n;
	}
	for (const size_t *d = t->drop; d && *d != (size_t)-1; d++)
		if (*d == i)
			return 0;
	return t->inner->ops->write(t->inner, type, p, n);
}

static int
tap_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	struct tap *t = (struct tap *)s;

	return t->inner->ops->read(t->inner, p, n, timeout_ms);
}

static void
tap_flush(struct pg_stream *s)
{
	pg_stream_flush(((struct tap *)s)->inner);
}

static void
tap_destroy(struct pg_stream *s)
{
	struct tap *t = (struct tap *)s;

	if (t->owns)
		pg_stream_free(t->inner);
	t->inner = NULL;
	if (!t->keep)
		free(t);
}

static const struct pg_stream_ops tap_ops = {
    .write = tap_write, .read = tap_read, .flush = tap_flush, .destroy = tap_destroy};

static struct tap *
tap_new(struct pg_stream *inner, int owns, const size_t *drop)
{
	struct tap *t = calloc(1, sizeof(*t));

	t->base.ops = &tap_ops;
	t->inner = inner;
	t->owns = owns;
	t->drop = drop;
	return t;
}

/*
 * Memory pair with taps on both directions. *host_tap / *card_tap stay
 * valid until the link is closed.
 */
static int
tc_open_tapped(struct pg_link **l, const struct pg_link_ops *ops, const struct pg_card *card,
	       const struct pg_link_params *p, struct tap **host_tap, struct tap **card_tap,
	       const size_t *host_drop, const size_t *card_drop)
{
	struct pg_link_card *c = NULL;
	struct pg_stream *mem = NULL;
	int rc = ops->card_open(&c, card, p);

	if (rc < 0)
		return rc;
	rc = pg_stream_memory_pair(&mem, pg_link_card_packet, c,
				   (void (*)(void *))pg_link_card_close);
	if (rc < 0)
		return rc;
	*card_tap = tap_new(pg_stream_memory_card_end(mem), 0, card_drop);
	pg_stream_memory_set_card_out(mem, &(*card_tap)->base);
	*host_tap = tap_new(mem, 1, host_drop);
	return ops->host_open(l, &(*host_tap)->base, NULL, p);
}

/* Builds an ECHO C-APDU of the given case with nc data bytes and ne expected. */
static size_t
tc_build(uint8_t *out, enum pg_apdu_case cs, size_t nc, size_t ne)
{
	struct pg_capdu a = {.cla = 0x00, .ins = TC_INS_ECHO, .p1 = 0, .p2 = 0};
	static uint8_t data[70000];
	int n;

	for (size_t i = 0; i < nc; i++)
		data[i] = (uint8_t)(i * 13 + 5);
	a.data = data;
	a.lc = nc;
	a.le = ne;
	a.has_le = ne > 0;
	a.apdu_case = cs;
	n = pg_capdu_encode(&a, cs >= PG_APDU_CASE2E, out, 70000);
	return n < 0 ? 0 : (size_t)n;
}

#endif
