/*
 * T=0 link tests (ISO/IEC 7816-3:2006 clause 10 and 12.2): procedure bytes
 * (ACK INS and INS^FF, NULL, SW1), APDU cases 1-4 mapped onto TPDUs, the
 * 61xx GET RESPONSE and 6Cxx re-issue paths (the card role answers the way a
 * real T=0 card does), the longest short APDUs, GET RESPONSE on the command's
 * logical channel, memory pair and socketpair, and a scripted card for the
 * host's handling of bad procedure bytes. Worked examples: the case 2S.3,
 * 4S.3 mappings of 12.2.3 / 12.2.5 (reproduced as TPDU traces below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/log.h"
#include "se/link/atr.h"
#include "t01_testkit.h"

extern const struct pg_link_ops pgi_link_t0_ops;
#define T0 (&pgi_link_t0_ops)

static uint8_t cbuf[PG_APDU_MAX_C], rbuf[PG_APDU_MAX_R];

static size_t
mk(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc, size_t le)
{
	struct pg_capdu c = {.cla = cla, .ins = ins, .p1 = p1, .p2 = p2, .data = data, .lc = lc};
	int n;

	c.le = le;
	c.has_le = le != 0;
	n = pg_capdu_encode(&c, 0, cbuf, sizeof(cbuf));
	assert_true(n > 0);
	return (size_t)n;
}

static size_t
xmit(struct pg_link *l, size_t clen)
{
	size_t rn = sizeof(rbuf);

	assert_int_equal(pg_link_transmit(l, cbuf, clen, rbuf, &rn), 0);
	return rn;
}

static void
run_cases(struct pg_link *l, struct sd_tcard *tc)
{
	uint8_t data[255];
	size_t n, rn;
	uint64_t before = tc->executed;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(0x5A ^ i);
	/* Case 1: P3 = 00, SW only. */
	n = mk(0x00, SD_INS_SW, 0x6A, 0x82, NULL, 0, 0);
	rn = xmit(l, n);
	assert_int_equal(rn, 2);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x6A82);
	/* Case 2S, Le accepted (2S.1). */
	n = mk(0x00, SD_INS_GETN, 0, 16, NULL, 0, 16);
	rn = xmit(l, n);
	assert_int_equal(rn, 18);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(rbuf[i], sd_pattern(i));
	/* Case 2S with Le = 256 (P3 = 00): the longest R-APDU. */
	n = mk(0x00, SD_INS_GETN, 0x01, 0x00, NULL, 0, 256);
	rn = xmit(l, n);
	assert_int_equal(rn, 258);
	for (size_t i = 0; i < 256; i++)
		assert_int_equal(rbuf[i], sd_pattern(i));
	/* Case 3S with 255 bytes. */
	n = mk(0x00, SD_INS_STORE, 0, 0, data, 255, 0);
	rn = xmit(l, n);
	assert_int_equal(rn, 2);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	assert_int_equal(tc->last_clen, 260);
	/* Case 4S, the longest C-APDU: 255 bytes in, Le 256: case 3 + GET RESPONSE. */
	n = mk(0x00, SD_INS_ECHO, 0, 0, data, 255, 256);
	assert_int_equal(n, T0->max_capdu);
	rn = xmit(l, n);
	assert_int_equal(rn, 257);
	assert_memory_equal(rbuf, data, 255);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	/* GET RESPONSE is transport, not a command the application runs. */
	assert_int_equal(tc->executed - before, 5);
}

static void
test_memory(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), n, rn;
	struct pg_atr a;

	(void)state;
	assert_int_equal(pg_link_open_memory(&l, T0, &card, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	/* 3B 0D + the card's 13 historical bytes: T=0 only, no TCK. */
	assert_int_equal(atrlen, 15);
	assert_int_equal(pgi_atr_parse(&a, atr, atrlen), 0);
	assert_int_equal(a.protocols, 1);
	assert_false(a.has_tck);
	run_cases(l, &tc);
	/* Extended APDUs do not fit T=0: a clear error, nothing sent. */
	n = mk(0x00, SD_INS_ECHO, 0, 0, cbuf + 1000, 10, 1000);
	rn = sizeof(rbuf);
	assert_int_equal(pg_link_transmit(l, cbuf, n, rbuf, &rn), PG_EINVAL);
	n = mk(0x00, SD_INS_STORE, 0, 0, cbuf + 1000, 300, 0);
	rn = sizeof(rbuf);
	assert_int_equal(pg_link_transmit(l, cbuf, n, rbuf, &rn), PG_EINVAL);
	assert_int_equal(tc.executed, 5);
	/*
	 * A case-2 command to an instruction the card takes as incoming (echo):
	 * the card waits for data, the host for data; the host times out, and the
	 * next command starts with a reset that puts both back in step.
	 */
	n = mk(0x00, SD_INS_ECHO, 0, 0, NULL, 0, 4);
	rn = sizeof(rbuf);
	assert_int_equal(pg_link_transmit(l, cbuf, n, rbuf, &rn), PG_ETIMEDOUT);
	run_cases(l, &tc);
	assert_int_equal(tc.executed, 10);
	pg_link_close(l);
}

static int
open_traced(struct pg_link **l, struct sd_tcard *tc, struct pg_card *card, struct trace *t,
	    const struct pg_link_params *p)
{
	*card = sd_tcard(tc);
	t->t0 = 1;
	assert_int_equal(kit_open_memory(l, T0, card, p, t, 0, 0, 0, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(*l, NULL, NULL), 0);
	return t->n;
}

static void
expect(const struct trace *t, int from, const char *const *want, const char *name)
{
	tr_dump(t, name);
	if (!tr_match(t, from, want))
		fail_msg("TPDU exchange '%s' differs", name);
}

static void
test_tpdus(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card;
	struct pg_link *l = NULL;
	struct trace t = {0};
	int from;
	size_t n, rn;

	(void)state;
	from = open_traced(&l, &tc, &card, &t, NULL);

	/*
	 * 12.2.3 case 2S.3: Le not accepted, La indicated. Le = 16, the card has
	 * 10: 6C0A, the host re-issues with P3 = 0A; the command runs once.
	 */
	n = mk(0x00, SD_INS_GETN, 0, 10, NULL, 0, 16);
	rn = xmit(l, n);
	assert_int_equal(rn, 12);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	assert_int_equal(tc.executed, 1);
	expect(&t, from,
	       (const char *const[]){"> 00CA000A10", "< 6C0A", "> 00CA000A0A",
				     "< CA030A11181F262D343B429000", NULL},
	       "case 2S.3, La < Le");
	/* La > Le: re-issued with La, the first Le bytes kept. */
	from = t.n;
	n = mk(0x00, SD_INS_GETN, 0, 0x20, NULL, 0, 16);
	rn = xmit(l, n);
	assert_int_equal(rn, 18);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(rbuf[i], sd_pattern(i));
	assert_int_equal(tc.executed, 2);
	assert_string_equal(t.lines[from + 1], "< 6C20");
	assert_string_equal(t.lines[from + 2], "> 00CA002020");

	/*
	 * 12.2.5 case 4S.3: the card has response data, 61xx; GET RESPONSE on the
	 * command's logical channel (CLA 01 = channel 1). Data goes in with the
	 * one-byte ACK (INS^FF) first and the rest after the ACK INS.
	 */
	from = t.n;
	n = mk(0x01, SD_INS_ECHO, 0, 0, (const uint8_t *)"\x01\x02\x03\x04\x05", 5, 256);
	rn = xmit(l, n);
	assert_int_equal(rn, 7);
	assert_memory_equal(rbuf, "\x01\x02\x03\x04\x05\x90\x00", 7);
	expect(&t, from,
	       (const char *const[]){"> 0110000005", "< EF", "> 01", "< 10", "> 02030405", "< 6105",
				     "> 01C0000005", "< C001020304059000", NULL},
	       "case 4S.3 on channel 1");
	pg_link_close(l);
}

static void
test_get_response_paths(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card;
	struct pg_link *l = NULL;
	struct trace t = {0};
	uint8_t data[10];
	int from, cla;
	size_t n, rn;
	char line[48];

	(void)state;
	memset(data, 0x77, sizeof(data));
	from = open_traced(&l, &tc, &card, &t, NULL);
	/* Case 4 with Le < La: the host stops at Ne and hands back 61xx. */
	n = mk(0x00, SD_INS_ECHO, 0, 0, data, 10, 5);
	rn = xmit(l, n);
	assert_int_equal(rn, 7);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x6105);
	/* The remaining 5 bytes can still be fetched by the application. */
	memcpy(cbuf, "\x00\xC0\x00\x00\x05", 5);
	rn = xmit(l, 5);
	assert_int_equal(rn, 7);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	/* A further interindustry class: channel 5 is CLA 41; GET RESPONSE keeps it. */
	from = t.n;
	cla = pg_cla_set_channel(0x00, 5);
	n = mk((uint8_t)cla, SD_INS_ECHO, 0, 0, data, 3, 3);
	rn = xmit(l, n);
	assert_int_equal(rn, 5);
	snprintf(line, sizeof(line), "> %02XC0000003", cla);
	assert_string_equal(t.lines[from + 6], line);
	/* A case 2 answer longer than 256: 6100, GET RESPONSE 256, then 61xx for the rest. */
	n = mk(0x00, SD_INS_GETN, 0x01, 0x2C, NULL, 0, 256);
	rn = xmit(l, n);
	assert_int_equal(rn, 258);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x612C);
	/* A command that fails carries no data: SW only, no GET RESPONSE (4S.1). */
	from = t.n;
	n = mk(0x00, SD_INS_SW, 0x69, 0x85, NULL, 0, 0);
	rn = xmit(l, n);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x6985);
	assert_true(tr_match(&t, from, (const char *const[]){"> 0030698500", "< 6985", NULL}));
	pg_link_close(l);
}

static void
test_manage_channel(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card;
	struct pg_link *l = NULL;
	struct trace t = {0};
	int from;
	size_t n, rn;

	(void)state;
	/* 7816-4 MANAGE CHANNEL open is case 2 (Le 01), close is case 1: both over T=0. */
	from = open_traced(&l, &tc, &card, &t, NULL);
	n = mk(0x00, SD_INS_MANAGE_CHANNEL, 0x00, 0x00, NULL, 0, 1);
	rn = xmit(l, n);
	assert_int_equal(rn, 3);
	assert_memory_equal(rbuf, "\x01\x90\x00", 3);
	n = mk(0x00, SD_INS_MANAGE_CHANNEL, 0x80, 0x01, NULL, 0, 0);
	rn = xmit(l, n);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	expect(&t, from,
	       (const char *const[]){"> 0070000001", "< 70019000", "> 0070800100", "< 9000", NULL},
	       "MANAGE CHANNEL open and close");
	assert_int_equal(tc.executed, 2);
	pg_link_close(l);
}

static void
test_null_bytes(void **state)
{
	struct sd_tcard tc = {.sleep_ms = 60};
	struct pg_card card;
	struct pg_link *l = NULL;
	struct trace t = {0};
	struct pg_link_params p = {.timeout_ms = 100};
	int from;
	size_t n;

	(void)state;
	/* A slow command: the card sends NULL (60) to restart the work waiting time. */
	from = open_traced(&l, &tc, &card, &t, &p);
	n = mk(0x00, SD_INS_SW, 0x90, 0x00, NULL, 0, 0);
	assert_int_equal(xmit(l, n), 2);
	expect(&t, from, (const char *const[]){"> 0030900000", "< 60", "< 9000", NULL},
	       "NULL byte");
	pg_link_close(l);
}

static void
test_socketpair(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct sd_sock k = {0};
	struct pg_link *l = NULL;

	(void)state;
	assert_int_equal(sd_open_socket(&l, &k, T0, &card, NULL), 0);
	assert_int_equal(pg_link_power_on(l, NULL, NULL), 0);
	run_cases(l, &tc);
	for (int i = 0; i < 3; i++)
		run_cases(l, &tc);
	sd_close_socket(l, &k);
	assert_int_equal(k.rc, 0);
	assert_int_equal(tc.executed, 20);
}

/* A card that answers from a script (se_double.h): the host's handling of bad procedure bytes. */
static int
scripted(const char *answer, size_t alen, size_t clen)
{
	struct pg_link *l = NULL;
	size_t rn = sizeof(rbuf);
	int rc;

	assert_int_equal(
	    T0->host_open(&l, sd_script_new((const uint8_t *)answer, alen), NULL, NULL), 0);
	rc = pg_link_transmit(l, cbuf, clen, rbuf, &rn);
	pg_link_close(l);
	return rc;
}

static void
test_scripted_card(void **state)
{
	size_t n;

	(void)state;
	n = mk(0x00, SD_INS_GETN, 0, 4, NULL, 0, 4);
	/* ATR 3B 00, then ACK, 4 bytes, 90 00. */
	assert_int_equal(scripted("\x3B\x00\xCA\x01\x02\x03\x04\x90\x00", 9, n), 0);
	/* NULLs first, then one byte at a time (INS^FF = 35). */
	assert_int_equal(
	    scripted("\x3B\x00\x60\x60\x35\x01\x35\x02\x60\xCA\x03\x04\x90\x00", 14, n), 0);
	/* A procedure byte that is neither: protocol error. */
	assert_int_equal(scripted("\x3B\x00\x12", 3, n), PG_EPROTO);
	/* Data cut short and SW2 missing: time-outs. */
	assert_int_equal(scripted("\x3B\x00\xCA\x01\x02", 5, n), PG_ETIMEDOUT);
	assert_int_equal(scripted("\x3B\x00\x6A", 3, n), PG_ETIMEDOUT);
	/* An ATR that does not offer T=0. */
	assert_int_equal(scripted("\x3B\x80\x01\x81", 4, n), PG_EPROTO);
	/* A card that repeats 6Cxx for ever is not followed for ever. */
	assert_int_equal(scripted("\x3B\x00\x6C\x02\x6C\x03\x6C\x04\x6C\x05", 10, n), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_memory),
	    cmocka_unit_test(test_tpdus),
	    cmocka_unit_test(test_get_response_paths),
	    cmocka_unit_test(test_null_bytes),
	    cmocka_unit_test(test_manage_channel),
	    cmocka_unit_test(test_socketpair),
	    cmocka_unit_test(test_scripted_card),
	};

	/* The driver is registered in the link table under its name. */
	if (pg_link_find("t0") != T0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
