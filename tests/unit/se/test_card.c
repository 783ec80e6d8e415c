/*
 * Card runtime tests: ATR check character (ISO/IEC 7816-3 8.2.5), SELECT by
 * full and partial DF name with first/next occurrence (ISO/IEC 7816-4
 * 11.1.1), MANAGE CHANNEL open/close over 19 supplementary channels with
 * first and further interindustry CLA (7816-4 5.4.1, 11.1.2), GET DATA CPLC
 * (GlobalPlatform Card Specification 2.3: 9F7F, 42 bytes, IC serial at
 * offset 12), the test applet's ECHO and GET COUNTER, and reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/tlv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct pg_card_rt *rt;
static uint8_t r[PG_APDU_MAX_R];
static size_t rl;

/* Sends a hex APDU; returns the status word, leaves the response in r/rl. */
static uint16_t
tx(const char *hex)
{
	static uint8_t c[PG_APDU_MAX_C];
	const struct pg_card *card = pg_card_rt_card(rt);
	int n = pg_hex_decode(c, sizeof(c), hex);

	assert_true(n > 0);
	rl = sizeof(r);
	assert_int_equal(card->process(card->ctx, c, (size_t)n, r, &rl), 0);
	assert_true(rl >= 2);
	return pg_rapdu_sw(r, rl);
}

static int
setup(void **state)
{
	(void)state;
	return pg_card_sim_new(&rt, 0x01020304, NULL, 0);
}

static int
teardown(void **state)
{
	(void)state;
	pg_card_rt_free(rt);
	rt = NULL;
	return 0;
}

#define SELECT_TEST "00A404000AF07061796775617264 0100"

static void
test_atr(void **state)
{
	const struct pg_card *card = pg_card_rt_card(rt);
	uint8_t atr[PG_ATR_MAX], x = 0;
	size_t n = sizeof(atr);

	(void)state;
	assert_int_equal(card->atr(card->ctx, atr, &n), 0);
	assert_int_equal(atr[0], 0x3B);
	/* T=1 is offered (TD2 = 01), so TCK makes the XOR of T0..TCK zero. */
	assert_int_equal(atr[3] & 0x0F, 1);
	for (size_t i = 1; i < n; i++)
		x ^= atr[i];
	assert_int_equal(x, 0);
	assert_int_equal(n, 2 + 2 + (atr[1] & 0x0F) + 1);
}

static void
test_select(void **state)
{
	struct pg_tlv t;

	(void)state;
	assert_int_equal(tx(SELECT_TEST), 0x9000);
	assert_int_equal(pg_tlv_next(&t, r, rl - 2), (int)rl - 2);
	assert_int_equal(t.tag, 0x6F);
	assert_int_equal(pg_tlv_find(&t, r, rl - 2, 0x84, 1), 1);
	assert_int_equal(t.len, 10);
	assert_memory_equal(t.val, pg_card_test_aid, 10);
	/* P2 = 0C: no FCI. */
	assert_int_equal(tx("00A4040C0AF0706179677561726401"), 0x9000);
	assert_int_equal(rl, 2);
	/* Partial AID (first 5 bytes) selects the first match. */
	assert_int_equal(tx("00A4040005F070617967 00"), 0x9000);
	assert_int_equal(pg_tlv_find(&t, r, rl - 2, 0x84, 1), 1);
	assert_memory_equal(t.val, pg_card_test_aid, 10);
	/* Next occurrence: no second applet with that prefix. */
	assert_int_equal(tx("00A4040205F070617967 00"), 0x6A82);
	/* Unknown AID, and selection by file id (no file system). */
	assert_int_equal(tx("00A4040005A000000999 00"), 0x6A82);
	assert_int_equal(tx("00A40000023F00"), 0x6A86);
	/* The current selection stayed on the test applet. */
	assert_int_equal(tx("8010000002ABCD00"), 0x9000);
	/* Empty AID: the default application, the ISD. */
	assert_int_equal(tx("00A4040000"), 0x9000);
	assert_int_equal(pg_tlv_find(&t, r, rl - 2, 0x84, 1), 1);
	assert_memory_equal(t.val, pg_card_isd_aid, 8);
}

static void
test_cplc(void **state)
{
	struct pg_tlv t;

	(void)state;
	/* After reset the ISD is selected on the basic channel. */
	assert_int_equal(tx("80CA9F7F00"), 0x9000);
	assert_int_equal(rl, 3 + 42 + 2);
	assert_int_equal(pg_tlv_next(&t, r, rl - 2), 45);
	assert_int_equal(t.tag, 0x9F7F);
	assert_int_equal(t.len, 42);
	assert_memory_equal(t.val + 12, "\x01\x02\x03\x04", 4); /* per-card IC serial */
	/* CLA 00 works too; Le too short gets 6Cxx with the exact length. */
	assert_int_equal(tx("00CA9F7F00"), 0x9000);
	assert_int_equal(tx("80CA9F7F10"), 0x6C2D);
	assert_int_equal(tx("80CA004200"), 0x6A88);
	/* The test applet does not answer GET DATA. */
	assert_int_equal(tx(SELECT_TEST), 0x9000);
	assert_int_equal(tx("80CA9F7F00"), 0x6D00);
}

static void
test_echo_counter(void **state)
{
	static char hex[2 * 70000];
	uint64_t before;

	(void)state;
	assert_int_equal(tx(SELECT_TEST), 0x9000);
	/* Cases 3 and 4 echo (T=0 cannot tell them apart), case 2 returns Ne pattern bytes. */
	assert_int_equal(tx("8010000004DEADBEEF00"), 0x9000);
	assert_int_equal(rl, 6);
	assert_memory_equal(r, "\xDE\xAD\xBE\xEF", 4);
	assert_int_equal(tx("8010000003010203"), 0x9000);
	assert_int_equal(rl, 5);
	assert_int_equal(tx("801000000301020302"), 0x9000); /* Ne = 2 < Nc */
	assert_int_equal(rl, 4);
	assert_int_equal(tx("8010000005"), 0x9000);
	assert_int_equal(rl, 7);
	assert_memory_equal(r, "\x00\x01\x02\x03\x04", 5);
	/* Extended: case 2 with Ne = 65536 and case 4 with 65535 data bytes. */
	assert_int_equal(tx("80100000000000"), 0x9000);
	assert_int_equal(rl, 65536 + 2);
	strcpy(hex, "8010000000FFFF");
	for (int i = 0; i < 65535; i++)
		memcpy(hex + 14 + 2 * i, "5A", 2);
	strcpy(hex + 14 + 2 * 65535, "0000");
	assert_int_equal(tx(hex), 0x9000);
	assert_int_equal(rl, 65535 + 2);
	assert_int_equal(r[65534], 0x5A);
	/* The counter counts every command, GET COUNTER included. */
	before = pg_card_rt_counter(rt);
	assert_int_equal(tx("8012000008"), 0x9000);
	assert_int_equal(rl, 10);
	assert_int_equal(pg_be64(r), before + 1);
	assert_int_equal(pg_card_rt_counter(rt), before + 1);
	assert_int_equal(tx("8099000000"), 0x6D00);
}

static void
test_channels(void **state)
{
	char cmd[64];

	(void)state;
	assert_int_equal(pg_card_rt_open_channels(rt), 1);
	/* A closed channel refuses commands. */
	assert_int_equal(tx("01A4040000"), 0x6881);
	/* Open all 19 supplementary channels; the card assigns 1..19. */
	for (int n = 1; n <= 19; n++) {
		assert_int_equal(tx("0070000001"), 0x9000);
		assert_int_equal(rl, 3);
		assert_int_equal(r[0], n);
	}
	assert_int_equal(tx("0070000001"), 0x6A81);
	assert_int_equal(pg_card_rt_open_channels(rt), 20);
	/* Selection is per channel: test applet on 19 (further class 4F), ISD on 0. */
	assert_int_equal(tx("4FA404000AF0706179677561726401 00"), 0x9000);
	assert_int_equal(tx("4F10000002CAFE00"), 0x9000);
	assert_memory_equal(r, "\xCA\xFE", 2);
	assert_int_equal(tx("CF10000002CAFE00"), 0x9000); /* proprietary class, channel 19 */
	assert_int_equal(tx("0010000002CAFE00"), 0x6D00); /* ISD on 0 knows no ECHO */
	assert_int_equal(tx("00CA9F7F00"), 0x9000);
	/* Opening from channel 19 inherits its selection (7816-4 11.1.2). */
	assert_int_equal(tx("00708005"), 0x9000);
	assert_int_equal(tx("4F70000001"), 0x9000);
	assert_int_equal(r[0], 5);
	assert_int_equal(tx("41100000020102 00"), 0x9000);
	/* Close: by P2, and from the channel itself (P2 = 0); not the basic channel. */
	assert_int_equal(tx("00708003"), 0x9000);
	assert_int_equal(tx("03A4040000"), 0x6881);
	assert_int_equal(tx("00708003"), 0x6881);
	assert_int_equal(tx("42708000"), 0x9000); /* channel 6 closes itself */
	assert_int_equal(tx("00708000"), 0x6A86);
	/* Open a chosen channel number. */
	assert_int_equal(tx("00700003"), 0x9000);
	assert_int_equal(rl, 2);
	assert_int_equal(tx("00700003"), 0x6985);
	snprintf(cmd, sizeof(cmd), "%s", "00700014");
	assert_int_equal(tx(cmd), 0x6A86); /* 20 is past 19 */
	/* Reset: only the basic channel stays, with the ISD selected. */
	pg_card_rt_card(rt)->reset(rt);
	assert_int_equal(pg_card_rt_open_channels(rt), 1);
	assert_int_equal(tx("4F10000002CAFE00"), 0x6881);
	assert_int_equal(tx("80CA9F7F00"), 0x9000);
}

static void
test_bad_input(void **state)
{
	const struct pg_card *card = pg_card_rt_card(rt);
	uint8_t small[1];

	(void)state;
	assert_int_equal(tx("00A40400"), 0x9000); /* case 1: no AID selects the default (ISD) */
	assert_int_equal(tx("00A4040005A0000001"), 0x6700); /* Lc past the body */
	assert_int_equal(tx("00A404"), 0x6F00);		    /* not even a header */
	assert_int_equal(tx("FFA4040000"), 0x6E00);	    /* CLA FF: PPS, not a command */
	assert_int_equal(tx("00A4040011000102030405060708090A0B0C0D0E0F1000"), 0x6A80);
	/* A response buffer too small for even a status word is a card fault. */
	rl = sizeof(small);
	assert_int_equal(
	    card->process(card->ctx, (const uint8_t *)"\x00\xA4\x04\x00", 4, small, &rl),
	    PG_ETOOBIG);
}

static void
test_config(void **state)
{
	struct pg_card_rt *x = NULL;
	struct pg_card_config cfg = {
	    .atr = (const uint8_t *)"\x3B\x00", .atr_len = 2, .max_channels = 2};
	struct pg_applet a = {.name = "dup", .aid_len = 8};

	(void)state;
	assert_int_equal(pg_card_rt_new(&x, &cfg), 0);
	memcpy(a.aid, pg_card_isd_aid, 8);
	a.process = NULL;
	assert_int_equal(pg_card_rt_add_applet(x, &a), PG_EINVAL);
	pg_card_rt_free(x);
	cfg.max_channels = 21;
	assert_int_equal(pg_card_rt_new(&x, &cfg), PG_EINVAL);
	cfg.max_channels = 0;
	cfg.atr_len = 40;
	assert_int_equal(pg_card_rt_new(&x, &cfg), PG_EINVAL);
	/* A card with two channels refuses the second supplementary one. */
	cfg.atr_len = 2;
	cfg.max_channels = 2;
	assert_int_equal(pg_card_rt_new(&x, &cfg), 0);
	{
		const struct pg_card *card = pg_card_rt_card(x);
		uint8_t out[16];
		size_t n = sizeof(out);

		assert_int_equal(
		    card->process(card->ctx, (const uint8_t *)"\x00\x70\x00\x00\x01", 5, out, &n),
		    0);
		assert_int_equal(pg_rapdu_sw(out, n), 0x9000);
		n = sizeof(out);
		assert_int_equal(
		    card->process(card->ctx, (const uint8_t *)"\x00\x70\x00\x00\x01", 5, out, &n),
		    0);
		assert_int_equal(pg_rapdu_sw(out, n), 0x6A81);
	}
	pg_card_rt_free(x);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_atr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_select, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cplc, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_echo_counter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_channels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test(test_config),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
