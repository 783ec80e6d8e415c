/*
 * Helpers shared by the GP card tests (test_isd*.c, test_applet*.c,
 * test_nvm*.c): send hex APDUs to a struct pg_card, check status words, and
 * run an SCP03 host session (tests/common/se_double.h) against the ISD.
 * Header-only: each test file is its own executable.
 */
#ifndef PG_TEST_GP_TEST_H
#define PG_TEST_GP_TEST_H

#include "payguard/apdu.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/scp03.h"
#include "se_double.h"

#include <stdio.h>
#include <string.h>

#define GT_MAX 8192

struct gt {
	const struct pg_card *card;
	uint8_t r[GT_MAX]; /* last response data (SW removed) */
	size_t n;	   /* its length */
	uint16_t sw;
	struct pg_scp03 s; /* host side of the secure channel */
};

static inline void
gt_raw(struct gt *t, const uint8_t *c, size_t cn)
{
	uint8_t r[GT_MAX + 2];
	size_t rn = sizeof(r);

	assert_int_equal(t->card->process(t->card->ctx, c, cn, r, &rn), 0);
	assert_true(rn >= 2);
	t->sw = pg_rapdu_sw(r, rn);
	t->n = rn - 2;
	memcpy(t->r, r, t->n);
}

/* Sends a hex APDU; returns the SW. */
static inline uint16_t
gt_tx(struct gt *t, const char *hex)
{
	uint8_t c[GT_MAX];
	int n = pg_hex_decode(c, sizeof(c), hex);

	assert_true(n >= 4);
	gt_raw(t, c, (size_t)n);
	return t->sw;
}

static inline void
gt_expect(struct gt *t, const char *hex, uint16_t sw)
{
	uint16_t got = gt_tx(t, hex);

	if (got != sw)
		fprintf(stderr, "APDU %s: SW %04X, expected %04X\n", hex, got, sw);
	assert_int_equal(got, sw);
}

/* Response data equals hex. */
static inline void
gt_data(struct gt *t, const char *hex)
{
	uint8_t e[GT_MAX];
	int n = pg_hex_decode(e, sizeof(e), hex);

	assert_true(n >= 0);
	if ((size_t)n != t->n || memcmp(e, t->r, t->n) != 0) {
		char got[2 * GT_MAX + 1];

		pg_hex_encode_upper(got, t->r, t->n, 0);
		fprintf(stderr, "data %s\nwant %s\n", got, hex);
	}
	assert_int_equal((size_t)n, t->n);
	assert_memory_equal(e, t->r, t->n);
}

/* The default ISD key set of a card made without keys (GP test keys 40..4F, kvn 30). */
static inline void
gt_default_keys(struct pg_scp03_keys *k)
{
	sd_default_keys(k);
}

/* Opens an SCP03 session at level sl (the ISD must be selected on the basic channel). */
static inline int
gt_open_scp(struct gt *t, const struct pg_scp03_keys *k, uint8_t sl, int chn)
{
	(void)chn; /* host_auth builds EXTERNAL AUTHENTICATE on the basic channel */
	return sd_scp03_open(t->card, &t->s, k, sl, NULL);
}

/* Sends a plain hex APDU through the open session; returns the SW (response unwrapped). */
static inline uint16_t
gt_stx(struct gt *t, const char *hex)
{
	uint8_t c[GT_MAX], r[GT_MAX + 64];
	int n = pg_hex_decode(c, sizeof(c), hex), pn;

	assert_true(n >= 4);
	pn = sd_scp03_tx(t->card, &t->s, c, (size_t)n, r, sizeof(r));
	if (pn < 2)
		fprintf(stderr, "secured APDU %s: %d\n", hex, pn);
	assert_true(pn >= 2);
	t->sw = pg_rapdu_sw(r, (size_t)pn);
	t->n = (size_t)pn - 2;
	memcpy(t->r, r, t->n);
	return t->sw;
}

static inline void
gt_sexpect(struct gt *t, const char *hex, uint16_t sw)
{
	uint16_t got = gt_stx(t, hex);

	if (got != sw)
		fprintf(stderr, "secured APDU %s: SW %04X, expected %04X\n", hex, got, sw);
	assert_int_equal(got, sw);
}

#endif
