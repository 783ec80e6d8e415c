/*
 * SPI and I2C eSE link tests: the GlobalPlatform APDU transport over
 * SPI/I2C T=1 framing (NXP GP-mode layout: NAD 5A/A5, PCB, 2-byte LEN,
 * CRC-16/X.25 high byte first), host <-> card over a memory pair and a
 * socketpair: cases 1-4 short and extended, chaining both ways with IFSC
 * 16, 254 and 1000 (the 2-byte LEN), S(IFS), S(CIP), S(SWR), S(WTX),
 * S(RELEASE), error recovery, no command run twice. No published frame
 * vectors of GPC_SPE_172 were at hand; the PCB codings follow ISO/IEC
 * 7816-3 11.3 and the S-block types those of NXP's GP-mode stack.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "se/link/shdlc.h"
#include "swp_testcard.h"

#include "payguard/buf.h"
#include "payguard/log.h"

#include <stdio.h>

extern const struct pg_link_ops pgi_link_spi_ops, pgi_link_i2c_ops;

static uint8_t capdu[70000], rapdu[70000];

static size_t
frame(uint8_t *out, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t n)
{
	out[0] = nad;
	out[1] = pcb;
	pg_put_be16(out + 2, (uint16_t)n);
	if (n)
		memcpy(out + 4, inf, n);
	pg_put_be16(out + 4 + n, pgi_shdlc_crc(out, 4 + n));
	return 6 + n;
}

static void
run_cases(struct pg_link *l, struct sd_tcard *t)
{
	static const struct {
		enum pg_apdu_case cs;
		size_t nc, ne;
	} v[] = {
	    {PG_APDU_CASE1, 0, 0},	{PG_APDU_CASE2S, 0, 256},	{PG_APDU_CASE3S, 255, 0},
	    {PG_APDU_CASE4S, 16, 16},	{PG_APDU_CASE4S, 255, 256},	{PG_APDU_CASE2E, 0, 65536},
	    {PG_APDU_CASE3E, 65535, 0}, {PG_APDU_CASE4E, 65535, 65536},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t clen = tc_build(capdu, v[i].cs, v[i].nc, v[i].ne), rlen = sizeof(rapdu);
		size_t want = v[i].cs == PG_APDU_CASE2S || v[i].cs == PG_APDU_CASE2E ? v[i].ne
			      : v[i].cs == PG_APDU_CASE4S || v[i].cs == PG_APDU_CASE4E
				  ? (v[i].nc < v[i].ne ? v[i].nc : v[i].ne)
				  : 0;
		uint64_t before = t->executed;

		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
		assert_int_equal(rlen, want + 2);
		assert_int_equal(pg_rapdu_sw(rapdu, rlen), 0x9000);
		assert_int_equal(t->executed, before + 1);
		if (v[i].cs == PG_APDU_CASE4S || v[i].cs == PG_APDU_CASE4E)
			assert_memory_equal(rapdu, capdu + (v[i].cs == PG_APDU_CASE4E ? 7 : 5),
					    want);
	}
	/* The longest extended C-APDU is 65544 bytes (Lc 65535 + Le 65536): it passes. */
	assert_int_equal(tc_build(capdu, PG_APDU_CASE4E, 65535, 65536), 65544);
}

static void
test_blocks(void **state)
{
	uint8_t f[64];
	size_t n;

	(void)state;
	/* CRC over NAD..INF, high byte first; same ISO/IEC 13239 CRC as SWP. */
	n = frame(f, 0x5A, 0xCF, NULL, 0); /* S(SWR request) */
	assert_int_equal(n, 6);
	assert_int_equal(pg_be16(f + 4), pgi_shdlc_crc(f, 4));
	assert_int_equal(pgi_shdlc_crc((const uint8_t *)"123456789", 9), 0x906E);
}

static void
one_link(const struct pg_link_ops *ops, uint16_t ifsc, uint16_t ifsd)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_params p = {.ifsc = ifsc, .ifsd = ifsd};
	struct pg_link *l = NULL;
	struct sd_tap *ht, *ct;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), maxlen = 0;

	assert_int_equal(tc_open_tapped(&l, ops, &card, &p, &ht, &ct, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	/* The CIP's historical bytes carry the card's ATR. */
	assert_int_equal(atrlen, sizeof(tc_atr));
	assert_memory_equal(atr, tc_atr, atrlen);
	/* Power-on: S(SWR), S(CIP), S(IFS) requests; responses E F, E4, E1. */
	assert_int_equal(ht->head[0][1], 0xCF);
	assert_int_equal(ct->head[0][1], 0xEF);
	assert_int_equal(ht->head[1][1], 0xC4);
	assert_int_equal(ct->head[1][1], 0xE4);
	assert_int_equal(ht->head[2][1], 0xC1);
	assert_int_equal(ct->head[2][1], 0xE1);
	assert_int_equal(ct->head[1][0], 0xA5);
	run_cases(l, &t);
	/* Blocks never exceed the IFS of their receiver; the 2-byte LEN goes past 255. */
	for (size_t i = 3; i < ht->count && i < SD_TAP_MAX; i++)
		if (!(ht->head[i][1] & 0x80))
			maxlen =
			    pg_be16(ht->head[i] + 2) > maxlen ? pg_be16(ht->head[i] + 2) : maxlen;
	assert_int_equal(maxlen, ifsc ? ifsc : 254);
	maxlen = 0;
	for (size_t i = 3; i < ct->count && i < SD_TAP_MAX; i++)
		if (!(ct->head[i][1] & 0x80))
			maxlen =
			    pg_be16(ct->head[i] + 2) > maxlen ? pg_be16(ct->head[i] + 2) : maxlen;
	assert_int_equal(maxlen, ifsd ? ifsd : 254);
	{
		size_t before = ht->count;

		ht->keep = ct->keep = 1;
		pg_link_close(l);
		/* Closing ends the APDU session: S(RELEASE request), answered. */
		assert_int_equal(ht->count, before + 1);
		assert_int_equal(ht->last[1], 0xC6);
		assert_int_equal(ct->last[1], 0xE6);
		free(ht);
		free(ct);
	}
}

static void
test_memory(void **state)
{
	(void)state;
	one_link(&pgi_link_spi_ops, 0, 0);
	one_link(&pgi_link_i2c_ops, 0, 0);
	one_link(&pgi_link_spi_ops, 16, 32);
	one_link(&pgi_link_i2c_ops, 1000, 254);
	one_link(&pgi_link_spi_ops, 254, 1000);
}

static void
test_plid_mismatch(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL;
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	/* An I2C card behind an SPI host: the CIP's PLID gives it away. */
	assert_int_equal(pgi_link_i2c_ops.card_open(&c, &card, NULL), 0);
	assert_int_equal(
	    pg_stream_memory_pair(&s, pg_link_card_packet, c, (void (*)(void *))pg_link_card_close),
	    0);
	assert_int_equal(pgi_link_spi_ops.host_open(&l, s, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), PG_EPROTO);
	pg_link_close(l);
}

/* A card that asks for waiting time (S(WTX request)) before each answer. */
static int
wtx_card(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	if (type == PG_PKT_DATA && n >= 6 && !(p[1] & 0x80)) {
		uint8_t f[8], m = 2;

		pg_stream_write(out, f, frame(f, 0xA5, 0xC3, &m, 1));
	}
	return pg_link_card_packet(ctx, type, p, n, out);
}

static void
test_wtx(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL;
	struct pg_link *l = NULL;
	struct sd_tap *ht;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

	(void)state;
	assert_int_equal(pgi_link_spi_ops.card_open(&c, &card, NULL), 0);
	assert_int_equal(
	    pg_stream_memory_pair(&s, wtx_card, c, (void (*)(void *))pg_link_card_close), 0);
	ht = sd_tap_new(s, 1, NULL);
	assert_int_equal(pgi_link_spi_ops.host_open(&l, &ht->base, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
	assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
	assert_int_equal(rlen, 18);
	/* The host answered S(WTX response) with the same multiplier. */
	assert_int_equal(ht->head[4][1], 0xE3);
	assert_int_equal(ht->head[4][3], 1);
	pg_link_close(l);
}

static void
test_recovery(void **state)
{
	static const size_t drops[][2] = {{3, (size_t)-1}, {4, (size_t)-1}, {6, (size_t)-1}};

	(void)state;
	/* Lost host I-block, lost card answer, lost chained blocks: each recovers, each command
	 * runs once. Index 3 = the first host block after the 3 power-on S-blocks. */
	for (int dir = 0; dir < 2; dir++) {
		for (size_t k = 0; k < 3; k++) {
			struct sd_tcard t = {0};
			struct pg_card card = tc_card(&t);
			struct pg_link_params p = {.ifsc = 32, .ifsd = 32};
			struct pg_link *l = NULL;
			struct sd_tap *ht, *ct;
			uint8_t atr[PG_ATR_MAX];
			size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

			assert_int_equal(tc_open_tapped(&l, &pgi_link_i2c_ops, &card, &p, &ht, &ct,
							dir ? NULL : drops[k],
							dir ? drops[k] : NULL),
					 0);
			assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
			for (int i = 0; i < 3; i++) {
				clen = tc_build(capdu, PG_APDU_CASE4S, 100, 100);
				rlen = sizeof(rapdu);
				assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
				assert_int_equal(rlen, 102);
				assert_memory_equal(rapdu, capdu + 5, 100);
			}
			assert_int_equal(t.executed, 3);
			pg_link_close(l);
		}
	}
}

static void
test_resync(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link *l = NULL;
	struct sd_tap *ht, *ct;
	struct pg_link_params p = {.retries = 2};
	uint8_t atr[PG_ATR_MAX], f[16], r[16];
	size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

	(void)state;
	assert_int_equal(tc_open_tapped(&l, &pgi_link_spi_ops, &card, &p, &ht, &ct, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	/* A mute card: R-blocks, then S(RESYNCH request/response), then PG_ERESYNC. */
	t.mute = 1;
	clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
	assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), PG_ERESYNC);
	assert_int_equal(ht->last[1], 0xC0);
	assert_int_equal(ct->last[1], 0xE0);
	/* After the resynchronisation both ends start again at N(S) = 0 and work. */
	t.mute = 0;
	rlen = sizeof(rapdu);
	assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), 0);
	assert_int_equal(rlen, 18);
	assert_int_equal(ht->last[1] & 0xC0, 0x00);
	pg_link_close(l);
	/* Raw S(ABORT) and a block with a bad CRC to a card role. */
	{
		struct pg_link_card *c = NULL;
		struct pg_stream *s = NULL;
		size_t n;

		assert_int_equal(pgi_link_i2c_ops.card_open(&c, &card, NULL), 0);
		assert_int_equal(pg_stream_memory_pair(&s, pg_link_card_packet, c,
						       (void (*)(void *))pg_link_card_close),
				 0);
		n = frame(f, 0x5A, 0xC2, NULL, 0);
		assert_int_equal(pg_stream_write(s, f, n), 0);
		assert_int_equal(pg_stream_read_full(s, r, 6, 0), 0);
		assert_memory_equal(r, "\xA5\xE2\x00\x00", 4);
		n = frame(f, 0x5A, 0x00, (const uint8_t *)"\x00\x10\x00\x00", 4);
		f[5] ^= 0x01;
		assert_int_equal(pg_stream_write(s, f, n), 0);
		assert_int_equal(pg_stream_read_full(s, r, 6, 0), 0);
		assert_memory_equal(r, "\xA5\x81\x00\x00", 4); /* R(0), CRC error */
		assert_int_equal(pg_be16(r + 4), pgi_shdlc_crc(r, 4));
		pg_stream_free(s);
	}
}

static void
test_faults(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct pg_link_card *c = NULL;
	struct pg_stream *mem = NULL, *hf = NULL, *cf = NULL;
	struct pg_link *l = NULL;
	struct pg_link_params p = {.retries = 8};
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(pgi_link_spi_ops.card_open(&c, &card, &p), 0);
	assert_int_equal(pg_stream_memory_pair(&mem, pg_link_card_packet, c,
					       (void (*)(void *))pg_link_card_close),
			 0);
	assert_int_equal(
	    pg_stream_faulty_borrow(&cf, pg_stream_memory_card_end(mem), 10000, 10000, 11), 0);
	pg_stream_memory_set_card_out(mem, cf);
	assert_int_equal(pg_stream_faulty(&hf, mem, 10000, 10000, 12), 0);
	assert_int_equal(pgi_link_spi_ops.host_open(&l, hf, NULL, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	for (uint32_t i = 1; i <= 5000; i++) {
		uint8_t cmd[9] = {0x80, SD_INS_SEQ_NEXT,   0,	      0, 4, 0,
				  0,	(uint8_t)(i >> 8), (uint8_t)i};
		size_t rlen = sizeof(rapdu);

		assert_int_equal(pg_link_transmit(l, cmd, sizeof(cmd), rapdu, &rlen), 0);
		assert_int_equal(rlen, 6);
		assert_memory_equal(rapdu, cmd + 5, 4);
	}
	assert_int_equal(t.executed, 5000);
	assert_int_equal(t.seq_errors, 0);
	pg_link_close(l);
}

static void
test_socketpair(void **state)
{
	(void)state;
	for (int k = 0; k < 2; k++) {
		const struct pg_link_ops *ops = k ? &pgi_link_i2c_ops : &pgi_link_spi_ops;
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct sd_sock ts = {0};
		struct pg_link *l = NULL;
		struct pg_link_params p = {.timeout_ms = 5000, .ifsc = 1000, .ifsd = 1000};
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr);

		assert_int_equal(sd_open_socket(&l, &ts, ops, &card, &p), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		run_cases(l, &t);
		assert_int_equal(sd_close_socket(l, &ts), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_blocks),	  cmocka_unit_test(test_memory),
	    cmocka_unit_test(test_plid_mismatch), cmocka_unit_test(test_wtx),
	    cmocka_unit_test(test_recovery),	  cmocka_unit_test(test_resync),
	    cmocka_unit_test(test_faults),	  cmocka_unit_test(test_socketpair),
	};

	pg_log_set_level(PG_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
