/*
 * Waiting time extension on every T=1-style link (ISO/IEC 7816-3:2006
 * 11.6.2.3 rule 3; GP SPI/I2C T=1, issue 13 item 9): the one block engine of
 * t1.c grants S(WTX) for the next block only, waits as long as it granted,
 * and gives up on a card that asks for more time forever. Runs on T=1, SPI
 * and I2C over a memory pair in virtual time (pg_stream_memory_delay), so a
 * wait of seconds costs nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/buf.h"
#include "payguard/log.h"
#include "se/link/shdlc.h"
/* Only the test card of the shared kit is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "swp_testcard.h"
#pragma GCC diagnostic pop

/* The cap of the engine (t1_proto.h MAX_WTX), restated: the test checks the number. */
#define MAX_WTX 1000

/* How each link frames a block: the test encodes its S(WTX request) itself. */
struct framing {
	const char *name;
	const struct pg_link_ops *ops;
	int gp; /* 0: NAD 00, 1-byte LEN, LRC; 1: NAD A5, 2-byte LEN, CRC-16/X.25 */
};

extern const struct pg_link_ops pgi_link_t1_ops, pgi_link_spi_ops, pgi_link_i2c_ops;

static const struct framing framings[] = {
    {"t1", &pgi_link_t1_ops, 0}, {"spi", &pgi_link_spi_ops, 1}, {"i2c", &pgi_link_i2c_ops, 1}};

enum wc_mode {
	WC_PASS,    /* a plain card */
	WC_FOREVER, /* answers every I-block and every S(WTX response) with S(WTX request) */
	WC_EXTEND,  /* asks for WTX, then answers `delay_ms` after the host's S(WTX response) */
};

/* A misbehaving card in front of a well-behaved card role of the same link. */
struct wcard {
	const struct framing *f;
	struct pg_link_card *inner;
	enum wc_mode mode;
	uint8_t mult;
	uint32_t delay_ms;
	unsigned wtx_requests, host_r_blocks, host_wtx_responses;
	uint8_t held[512]; /* the I-block held back until WTX is granted */
	size_t heldlen;
};

static int
wc_send_wtx(struct wcard *w, struct pg_stream *out)
{
	uint8_t f[8];
	size_t n;

	if (w->f->gp) {
		memcpy(f, "\xA5\xC3\x00\x01", 4);
		f[4] = w->mult;
		pg_put_be16(f + 5, pgi_shdlc_crc(f, 5));
		n = 7;
	} else {
		memcpy(f, "\x00\xC3\x01", 3);
		f[3] = w->mult;
		f[4] = (uint8_t)(0x00 ^ 0xC3 ^ 0x01 ^ w->mult); /* LRC */
		n = 5;
	}
	w->wtx_requests++;
	return pg_stream_write(out, f, n);
}

static int
wc_packet(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	struct wcard *w = ctx;
	int iblock = type == PG_PKT_DATA && n >= 2 && !(p[1] & 0x80);
	int wtx_rsp = type == PG_PKT_DATA && n >= 2 && p[1] == 0xE3;
	int rc;

	if (type == PG_PKT_DATA && n >= 2 && (p[1] & 0xC0) == 0x80)
		w->host_r_blocks++;
	if (wtx_rsp)
		w->host_wtx_responses++;
	switch (w->mode) {
	case WC_FOREVER:
		/* Bounded so that a host with no cap fails the test instead of hanging it. */
		if ((iblock || wtx_rsp) && w->wtx_requests < 10 * MAX_WTX)
			return wc_send_wtx(w, out);
		if (iblock || wtx_rsp)
			return 0;
		break;
	case WC_EXTEND:
		if (iblock && n <= sizeof(w->held)) {
			memcpy(w->held, p, n);
			w->heldlen = n;
			return wc_send_wtx(w, out);
		}
		if (wtx_rsp && w->heldlen) {
			rc = pg_link_card_packet(w->inner, PG_PKT_DATA, w->held, w->heldlen, out);
			w->heldlen = 0;
			if (rc < 0)
				return rc;
			return pg_stream_memory_delay(out, w->delay_ms);
		}
		break;
	case WC_PASS:
		break;
	}
	return pg_link_card_packet(w->inner, type, p, n, out);
}

/* Opens host and misbehaving card; returns the host's stream (owned by the link). */
static struct pg_stream *
wc_open(struct pg_link **l, struct wcard *w, struct sd_tcard *t, struct pg_card *card,
	const struct framing *f, const struct pg_link_params *p)
{
	struct pg_stream *s = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	*card = tc_card(t);
	memset(w, 0, sizeof(*w));
	w->f = f;
	w->mult = 3;
	assert_int_equal(f->ops->card_open(&w->inner, card, p), 0);
	assert_int_equal(pg_stream_memory_pair(&s, wc_packet, w, NULL), 0);
	assert_int_equal(f->ops->host_open(l, s, NULL, p), 0);
	assert_int_equal(pg_link_power_on(*l, atr, &atrlen), 0);
	return s;
}

static uint8_t capdu[300], rapdu[300];

/* A card that asks for more time forever: the host gives up after the cap, with a reason. */
static void
test_wtx_forever(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(framings) / sizeof(framings[0]); k++) {
		const struct framing *f = &framings[k];
		struct pg_link_params p = {.timeout_ms = 100};
		struct sd_tcard t = {0};
		struct pg_card card;
		struct wcard w;
		struct pg_link *l = NULL;
		size_t clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16), rlen = sizeof(rapdu);
		int rc;

		(void)wc_open(&l, &w, &t, &card, f, &p);
		w.mode = WC_FOREVER;
		rc = pg_link_transmit(l, capdu, clen, rapdu, &rlen);
		print_message("%s: %s\n", f->name, pg_last_error());
		assert_int_equal(rc, PG_ETIMEDOUT);
		/* Granted MAX_WTX times, refused the next. */
		assert_int_equal(w.wtx_requests, MAX_WTX + 1);
		assert_int_equal(w.host_wtx_responses, MAX_WTX);
		assert_non_null(strstr(pg_last_error(), "more time"));
		assert_int_equal(t.executed, 0);
		/* The host resynchronised: the next command goes through, run once. */
		w.mode = WC_PASS;
		rlen = sizeof(rapdu);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, 18);
		assert_memory_equal(rapdu, capdu + 5, 16);
		assert_int_equal(t.executed, 1);
		pg_link_close(l);
		pg_link_card_close(w.inner);
	}
}

/*
 * A card that asks for a WTX of 3 and answers 2.5 waiting times later: the
 * host waits (virtual time advances by exactly 250 ms) and sends no R-block.
 * Without WTX, the same delay is a time-out: the extension holds for the
 * block after the grant only.
 */
static void
test_wtx_extension(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(framings) / sizeof(framings[0]); k++) {
		const struct framing *f = &framings[k];
		struct pg_link_params p = {.timeout_ms = 100};
		struct sd_tcard t = {0};
		struct pg_card card;
		struct wcard w;
		struct pg_link *l = NULL;
		size_t clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16), rlen = sizeof(rapdu);
		struct pg_stream *s;
		uint64_t t0;

		s = wc_open(&l, &w, &t, &card, f, &p);
		w.mode = WC_EXTEND;
		w.delay_ms = 250;
		t0 = pg_stream_memory_now(s);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, 18);
		assert_memory_equal(rapdu, capdu + 5, 16);
		assert_int_equal(w.wtx_requests, 1);
		assert_int_equal(w.host_wtx_responses, 1);
		assert_int_equal(w.host_r_blocks, 0);
		assert_int_equal(pg_stream_memory_now(s) - t0, 250);
		assert_int_equal(t.executed, 1);
		/* A multiplier too small for the delay: the host times out at 2 x 100 ms. */
		w.mult = 2;
		t0 = pg_stream_memory_now(s);
		rlen = sizeof(rapdu);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_true(w.host_r_blocks >= 1);
		assert_true(pg_stream_memory_now(s) - t0 >= 200);
		assert_int_equal(t.executed, 2);
		pg_link_close(l);
		pg_link_card_close(w.inner);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wtx_forever),
	    cmocka_unit_test(test_wtx_extension),
	};

	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
