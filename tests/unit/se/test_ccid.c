/*
 * USB CCID link tests (CCID Rev 1.1): message layout of 6.1/6.2 (10-byte
 * header, dwLength little-endian, bSeq echoed), slot errors of 6.2.6
 * (ICC absent, ICC mute, command not supported, bad bSlot / bPowerSelect /
 * dwLength, slot busy, XFR parity error, time extension), APDU-level
 * exchange with extended APDUs (dwMaxCCIDMessageLength 65554) and with
 * wLevelParameter / bChainParameter chaining at smaller message sizes,
 * over a memory pair and a socketpair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "swp_testcard.h"

#include "payguard/buf.h"
#include "payguard/hex.h"
#include "payguard/log.h"

#include <stdio.h>

extern const struct pg_link_ops pgi_link_ccid_ops;

static uint8_t capdu[70000], rapdu[70000];

/* Sends raw bytes to a reader (card role) and reads one whole answer. */
static size_t
xchg(struct pg_stream *s, const char *hexmsg, uint8_t *resp)
{
	uint8_t m[600];
	int n = pg_hex_decode(m, sizeof(m), hexmsg);

	assert_true(n > 0);
	assert_int_equal(pg_stream_write(s, m, (size_t)n), 0);
	assert_int_equal(pg_stream_read_full(s, resp, 10, 0), 0);
	assert_int_equal(pg_stream_read_full(s, resp + 10, pg_le32(resp + 1), 0), 0);
	return 10 + pg_le32(resp + 1);
}

static struct pg_stream *
raw_reader(struct sd_tcard *t, const struct pg_link_params *p)
{
	struct pg_card card = tc_card(t);
	struct pg_link_card *c = NULL;
	struct pg_stream *s = NULL;

	assert_int_equal(pgi_link_ccid_ops.card_open(&c, &card, p), 0);
	assert_int_equal(
	    pg_stream_memory_pair(&s, pg_link_card_packet, c, (void (*)(void *))pg_link_card_close),
	    0);
	return s;
}

static void
test_messages(void **state)
{
	struct sd_tcard t = {0};
	struct pg_stream *s = raw_reader(&t, NULL);
	uint8_t r[700];
	size_t n;

	(void)state;
	/* 6.1.11 PC_to_RDR_GetSlotStatus, bSeq 0: card present, not powered, clock stopped. */
	n = xchg(s, "65 00000000 00 00 000000", r);
	assert_int_equal(n, 10);
	assert_memory_equal(r, "\x81\x00\x00\x00\x00\x00\x00\x01\x00\x01", 10);
	/* 6.1.1 PC_to_RDR_IccPowerOn, automatic voltage, bSeq 1 -> RDR_to_PC_DataBlock + ATR. */
	n = xchg(s, "62 00000000 00 01 000000", r);
	assert_int_equal(n, 10 + sizeof(tc_atr));
	assert_int_equal(r[0], 0x80);
	assert_int_equal(pg_le32(r + 1), sizeof(tc_atr));
	assert_int_equal(r[6], 1);
	assert_int_equal(r[7], 0x00); /* bStatus: processed, ICC present and active */
	assert_memory_equal(r + 10, tc_atr, sizeof(tc_atr));
	/* 6.1.4 PC_to_RDR_XfrBlock: case 2 (SD_INS_CASES), Le 4 -> 4 bytes + 9000. */
	n = xchg(s, "6F 05000000 00 02 000000 0012000004", r);
	assert_int_equal(n, 16);
	assert_memory_equal(r, "\x80\x06\x00\x00\x00\x00\x02\x00\x00\x00", 10);
	assert_memory_equal(r + 10, "\x01\x08\x0F\x16\x90\x00", 6);
	/* 6.1.2 PC_to_RDR_IccPowerOff -> SlotStatus, ICC present and inactive. */
	n = xchg(s, "63 00000000 00 03 000000", r);
	assert_memory_equal(r, "\x81\x00\x00\x00\x00\x00\x03\x01\x00\x01", 10);
	assert_int_equal(t.executed, 1);
	pg_stream_free(s);
}

static void
test_slot_errors(void **state)
{
	struct sd_tcard t = {0};
	struct pg_stream *s = raw_reader(&t, &(struct pg_link_params){.max_frame = 600});
	uint8_t r[700], big[700];
	size_t n;

	(void)state;
	/* Command not supported: bmCommandStatus 1, bError 00. */
	n = xchg(s, "50 00000000 00 07 000000", r);
	assert_int_equal(r[0], 0x81);
	assert_int_equal(r[6], 7);
	assert_int_equal(r[7], 0x41);
	assert_int_equal(r[8], 0x00);
	/* GetParameters is answered with RDR_to_PC_Parameters, also not supported here. */
	n = xchg(s, "6C 00000000 00 08 000000", r);
	assert_int_equal(r[0], 0x82);
	assert_int_equal(r[8], 0x00);
	/* bSlot 1 does not exist: bError 5 (offset of bSlot), no ICC. */
	n = xchg(s, "65 00000000 01 09 000000", r);
	assert_int_equal(r[7], 0x42);
	assert_int_equal(r[8], 5);
	/* XfrBlock before IccPowerOn: ICC_MUTE. */
	n = xchg(s, "6F 04000000 00 0A 000000 00100000", r);
	assert_int_equal(r[0], 0x80);
	assert_int_equal(r[7], 0x41);
	assert_int_equal(r[8], 0xFE);
	/* bPowerSelect 7: bError 7 (its offset). */
	n = xchg(s, "62 00000000 00 0B 070000", r);
	assert_int_equal(r[7], 0x41);
	assert_int_equal(r[8], 7);
	/* dwLength says 5, the transfer carries 3: bError 1 (offset of dwLength). */
	n = xchg(s, "62 00000000 00 0C 000000", r);
	assert_int_equal(r[7], 0x00);
	n = xchg(s, "6F 05000000 00 0D 000000 001000", r);
	assert_int_equal(r[6], 0x0D);
	assert_int_equal(r[7], 0x40);
	assert_int_equal(r[8], 1);
	/* A transfer longer than dwMaxCCIDMessageLength (600): bError 1 as well. */
	memset(big, 0, sizeof(big));
	big[0] = 0x6F;
	pg_put_le32(big + 1, 690);
	big[6] = 0x0E;
	assert_int_equal(pg_stream_write(s, big, 512), 0);
	assert_int_equal(pg_stream_write(s, big + 512, 188), 0);
	assert_int_equal(pg_stream_read_full(s, r, 10, 0), 0);
	assert_int_equal(r[6], 0x0E);
	assert_int_equal(r[7], 0x40);
	assert_int_equal(r[8], 1);
	/* The reader still works afterwards. */
	n = xchg(s, "6F 04000000 00 0F 000000 00100000", r);
	assert_int_equal(r[7], 0x00);
	assert_int_equal(n, 12);
	/* Wrong chaining: a "continue" block with nothing begun: bError 8 (wLevelParameter). */
	n = xchg(s, "6F 04000000 00 10 000200 00100000", r);
	assert_int_equal(r[7], 0x40);
	assert_int_equal(r[8], 8);
	/* ICC removed: slot status says absent, XfrBlock fails with no ICC. */
	t.absent = 1;
	n = xchg(s, "65 00000000 00 11 000000", r);
	assert_int_equal(r[7], 0x02);
	n = xchg(s, "6F 04000000 00 12 000000 00100000", r);
	assert_int_equal(r[7], 0x42);
	assert_int_equal(r[8], 0xFE);
	(void)n;
	pg_stream_free(s);
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
	/* Longest: 65544-byte C-APDU in one 65554-byte message (or chained). */
	assert_int_equal(tc_build(capdu, PG_APDU_CASE4E, 65535, 65536), 65544);
}

static void
test_apdus(void **state)
{
	static const uint32_t sizes[] = {0, 271, 64};

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link_params p = {.max_frame = sizes[k]};
		struct pg_link *l = NULL;
		struct sd_tap *ht, *ct;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr);

		assert_int_equal(
		    tc_open_tapped(&l, &pgi_link_ccid_ops, &card, &p, &ht, &ct, NULL, NULL), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		assert_memory_equal(atr, tc_atr, sizeof(tc_atr));
		run_cases(l, &t);
		/* At 64 bytes a message carries 54 APDU bytes: the 65544-byte command alone
		 * takes 1214 chained XfrBlocks, the 65538-byte answer as many pulls. */
		if (sizes[k] == 64)
			assert_true(ht->count > 2 * 1214 && ct->count > 2 * 1214);
		else if (sizes[k] == 0)
			assert_true(ct->count < 400); /* one message per APDU (512-byte packets) */
		/* Closing powers the ICC off. */
		ht->keep = 1;
		pg_link_close(l);
		assert_int_equal(ht->last[0], 0x63);
		free(ht);
		assert_true(t.resets >= 2);
	}
}

/* A reader that, per mode, answers XfrBlock with extra or failed messages. */
static int script_mode;
static int
script_reader(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out)
{
	if (type == PG_PKT_DATA && n >= 10 && p[0] == 0x6F) {
		uint8_t m[10] = {0x80, 0, 0, 0, 0, 0, p[6], 0, 0, 0};

		switch (script_mode) {
		case 1: /* time extension, then a stale answer, then the real one */
			m[7] = 0x80;
			m[8] = 1;
			pg_stream_write(out, m, 10);
			m[6] = (uint8_t)(p[6] - 1);
			m[7] = 0;
			m[8] = 0;
			pg_stream_write(out, m, 10);
			break;
		case 2: /* slot busy */
		case 3: /* XFR parity error */
		case 4: /* command not supported */
			m[7] = 0x40;
			m[8] = script_mode == 2 ? 0xE0 : script_mode == 3 ? 0xFD : 0x00;
			return pg_stream_write(out, m, 10);
		case 5: /* a dwLength larger than the message */
			pg_put_le32(m + 1, 0x10000000);
			return pg_stream_write(out, m, 10);
		}
	}
	return pg_link_card_packet(ctx, type, p, n, out);
}

static void
test_host_errors(void **state)
{
	static const int want[] = {0, 0, PG_EBUSY, PG_ELINK, PG_ENOTSUP, PG_EPROTO};

	(void)state;
	for (int mode = 1; mode <= 5; mode++) {
		struct sd_tcard t = {0};
		struct pg_card card = tc_card(&t);
		struct pg_link_card *c = NULL;
		struct pg_stream *s = NULL;
		struct pg_link *l = NULL;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

		assert_int_equal(pgi_link_ccid_ops.card_open(&c, &card, NULL), 0);
		assert_int_equal(pg_stream_memory_pair(&s, script_reader, c,
						       (void (*)(void *))pg_link_card_close),
				 0);
		assert_int_equal(pgi_link_ccid_ops.host_open(&l, s, NULL, NULL), 0);
		script_mode = mode;
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		clen = tc_build(capdu, PG_APDU_CASE4S, 16, 16);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), want[mode]);
		if (!want[mode]) {
			assert_int_equal(rlen, 18);
			assert_int_equal(t.executed, 1);
		}
		script_mode = 0;
		pg_link_close(l);
	}
	/* No card: power-on says so; a mute card: XfrBlock fails with ICC_MUTE. */
	{
		struct sd_tcard t = {.absent = 1};
		struct pg_card card = tc_card(&t);
		struct pg_link *l = NULL;
		uint8_t atr[PG_ATR_MAX];
		size_t atrlen = sizeof(atr), clen, rlen = sizeof(rapdu);

		assert_int_equal(pg_link_open_memory(&l, &pgi_link_ccid_ops, &card, NULL), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), PG_ENOCARD);
		t.absent = 0;
		atrlen = sizeof(atr);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		t.mute = 1;
		clen = tc_build(capdu, PG_APDU_CASE1, 0, 0);
		assert_int_equal(pg_link_transmit(l, capdu, clen, rapdu, &rlen), PG_ETIMEDOUT);
		pg_link_close(l);
	}
}

static void
test_socketpair(void **state)
{
	struct sd_tcard t = {0};
	struct pg_card card = tc_card(&t);
	struct sd_sock ts = {0};
	struct pg_link *l = NULL;
	struct pg_link_params p = {.timeout_ms = 5000};
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	assert_int_equal(sd_open_socket(&l, &ts, &pgi_link_ccid_ops, &card, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	run_cases(l, &t);
	assert_int_equal(sd_close_socket(l, &ts), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_messages),   cmocka_unit_test(test_slot_errors),
	    cmocka_unit_test(test_apdus),      cmocka_unit_test(test_host_errors),
	    cmocka_unit_test(test_socketpair),
	};

	pg_log_set_level(PG_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
