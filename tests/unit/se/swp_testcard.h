/*
 * Test helpers shared by test_swp.c, test_spi.c, test_ccid.c and
 * test_t1_wtx.c: the test card of tests/common/se_double.h with an SWP ATR,
 * a tap stream that records and drops chosen packets, and tc_build() for
 * C-APDUs of every case. The socketpair runner is sd_open_socket() there.
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

/* The card of the SWP/SPI/CCID tests: the double's test card with an SWP ATR. */
static const uint8_t tc_atr[] = {0x3B, 0x88, 0x80, 0x01, 'p',  'g', '-',
				 's',  'w',  'p',  0x90, 0x00, 0x8D};

static struct pg_card
tc_card(struct sd_tcard *t)
{
	t->atr = tc_atr;
	t->atrlen = sizeof(tc_atr);
	return sd_tcard(t);
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

/* Builds an SD_INS_CASES C-APDU of the given case with nc data bytes and ne expected. */
static size_t
tc_build(uint8_t *out, enum pg_apdu_case cs, size_t nc, size_t ne)
{
	struct pg_capdu a = {.cla = 0x00, .ins = SD_INS_CASES, .p1 = 0, .p2 = 0};
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
