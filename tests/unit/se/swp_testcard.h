/*
 * Test helpers shared by test_swp.c, test_spi.c, test_ccid.c and
 * test_t1_wtx.c: the test card of tests/common/se_double.h with an SWP ATR,
 * a memory pair tapped both ways (sd_tap of se_double.h), and tc_build() for
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

/*
 * Memory pair with taps on both directions. *host_tap / *card_tap stay
 * valid until the link is closed.
 */
static int
tc_open_tapped(struct pg_link **l, const struct pg_link_ops *ops, const struct pg_card *card,
	       const struct pg_link_params *p, struct sd_tap **host_tap, struct sd_tap **card_tap,
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
	*card_tap = sd_tap_new(pg_stream_memory_card_end(mem), 0, card_drop);
	pg_stream_memory_set_card_out(mem, &(*card_tap)->base);
	*host_tap = sd_tap_new(mem, 1, host_drop);
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
