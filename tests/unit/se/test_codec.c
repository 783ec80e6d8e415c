/*
 * APDU and BER-TLV codec tests. Vectors: EMV Book 1 (SELECT PPSE
 * 2PAY.SYS.DDF01), GlobalPlatform Card Spec 2.3 (GET DATA CPLC 9F7F, card
 * recognition data 66), ISO/IEC 7816-4:2020 table 5 (the case/length forms)
 * and 5.4.1 (logical channels in CLA).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/apdu.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/tlv.h"

#include <string.h>

static int
hex(uint8_t *out, const char *s)
{
	return pg_hex_decode(out, 70000, s);
}

static uint8_t big[70000];

static void
test_cases_short(void **state)
{
	struct pg_capdu c;
	uint8_t b[300], e[300];
	int n;

	(void)state;
	/* EMV Book 1 11.3: SELECT PPSE, case 4 short, Le = 00 (256). */
	n = hex(b, "00A404000E325041592E5359532E444446303100");
	assert_int_equal(pg_capdu_parse(&c, b, (size_t)n), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE4S);
	assert_int_equal(c.lc, 14);
	assert_memory_equal(c.data, "2PAY.SYS.DDF01", 14);
	assert_int_equal(c.le, 256);
	assert_int_equal(pg_capdu_encode(&c, 0, e, sizeof(e)), n);
	assert_memory_equal(e, b, (size_t)n);
	/* GP 2.3 11.3: GET DATA CPLC, case 2 short. */
	n = hex(b, "80CA9F7F00");
	assert_int_equal(pg_capdu_parse(&c, b, (size_t)n), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE2S);
	assert_int_equal(c.p1 << 8 | c.p2, 0x9F7F);
	/* Case 1 and case 3. */
	assert_int_equal(pg_capdu_parse(&c, b, 4), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE1);
	n = hex(b, "0020008008 2412345FFFFFFFFF");
	assert_int_equal(pg_capdu_parse(&c, b, (size_t)n), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE3S);
	assert_false(c.has_le);
	/* Lc that lies. */
	n = hex(b, "00A4040005A000");
	assert_int_equal(pg_capdu_parse(&c, b, (size_t)n), PG_EFORMAT);
	assert_int_equal(pg_capdu_parse(&c, b, 3), PG_ETRUNC);
}

static void
test_cases_extended(void **state)
{
	struct pg_capdu c;
	uint8_t out[70010];
	size_t n;

	(void)state;
	/* Case 2E: 00 B0 00 00 | 00 01 00 -> Ne 256 but extended form. */
	n = (size_t)hex(big, "00B00000000100");
	assert_int_equal(pg_capdu_parse(&c, big, n), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE2E);
	assert_int_equal(c.le, 256);
	n = (size_t)hex(big, "00B00000000000");
	assert_int_equal(pg_capdu_parse(&c, big, n), 0);
	assert_int_equal(c.le, 65536);
	/* Case 4E with the longest data field. */
	memcpy(big, "\x00\xD6\x00\x00\x00\xFF\xFF", 7);
	memset(big + 7, 0x5A, 65535);
	big[7 + 65535] = 0;
	big[7 + 65536] = 0;
	n = 7 + 65535 + 2;
	assert_int_equal(n, PG_APDU_MAX_C);
	assert_int_equal(pg_capdu_parse(&c, big, n), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE4E);
	assert_int_equal(c.lc, 65535);
	assert_int_equal(c.le, 65536);
	assert_int_equal(pg_capdu_encode(&c, 0, out, sizeof(out)), (int)n);
	assert_memory_equal(out, big, n);
	/* Case 3E and a forced extended encoding of a short APDU. */
	c.has_le = 0;
	c.le = 0;
	c.lc = 300;
	assert_int_equal(pg_capdu_encode(&c, 0, out, sizeof(out)), 4 + 3 + 300);
	assert_int_equal(pg_capdu_parse(&c, out, 307), 0);
	assert_int_equal(c.apdu_case, PG_APDU_CASE3E);
	c.lc = 2;
	assert_int_equal(pg_capdu_encode(&c, 1, out, sizeof(out)), 4 + 3 + 2);
	assert_int_equal(pg_capdu_encode(&c, 1, out, 5), PG_ETOOBIG);
	/* Extended Lc of zero is malformed. */
	n = (size_t)hex(big, "00D6000000000000");
	assert_int_equal(pg_capdu_parse(&c, big, n), PG_EFORMAT);
}

static void
test_channels(void **state)
{
	(void)state;
	assert_int_equal(pg_cla_channel(0x00), 0);
	assert_int_equal(pg_cla_channel(0x03), 3);
	assert_int_equal(pg_cla_channel(0x0B), 3); /* SM bits do not change the channel */
	assert_int_equal(pg_cla_channel(0x40), 4);
	assert_int_equal(pg_cla_channel(0x4F), 19);
	assert_int_equal(pg_cla_channel(0x80), PG_EINVAL);
	for (int ch = 0; ch <= 19; ch++) {
		int cla = pg_cla_set_channel(0x00, ch);

		assert_true(cla >= 0);
		assert_int_equal(pg_cla_channel((uint8_t)cla), ch);
		/* Chaining bit survives. */
		cla = pg_cla_set_channel(0x10, ch);
		assert_int_equal(cla & 0x10, 0x10);
	}
	assert_int_equal(pg_cla_set_channel(0x00, 20), PG_ERANGE);
	assert_int_equal(pg_cla_set_channel(0x0C, 2), 0x0E);
	assert_int_equal(pg_cla_set_channel(0x0C, 5), 0x61);
}

static void
test_sw(void **state)
{
	(void)state;
	assert_string_equal(pg_sw_meaning(0x9000), "normal processing");
	assert_string_equal(pg_sw_meaning(0x6A82), "file or application not found");
	assert_string_equal(pg_sw_meaning(0x6110), "bytes still available (GET RESPONSE)");
	assert_string_equal(pg_sw_meaning(0x63C2),
			    "warning: verification failed, counter gives tries left");
	assert_int_equal(pg_rapdu_sw((const uint8_t *)"\x01\x6C\x10", 3), 0x6C10);
}

static void
test_tlv(void **state)
{
	uint8_t b[512];
	struct pg_tlv t;
	struct pg_buf out = PG_BUF_INIT(4096);
	size_t mark, n;

	(void)state;
	/* GP 2.3 H.2 card recognition data (tag 66 / 73 / 06 OID), abbreviated. */
	n = (size_t)hex(b,
			"664C734A06072A864886FC6B01600C060A2A864886FC6B02020201"
			"630906072A864886FC6B03640B06092A864886FC6B040255650B06092B8510864864020103"
			"660C060A2B060104012A026E0102");
	assert_int_equal(pg_tlv_validate(b, n), 0);
	assert_int_equal(pg_tlv_find(&t, b, n, 0x64, 1), 1);
	assert_int_equal(t.len, 11);
	assert_int_equal(pg_tlv_find(&t, b, n, 0x64, 0), 0);
	/* Two-byte tag, long-form length. */
	n = (size_t)hex(b, "9F7F81052A0B");
	assert_int_equal(pg_tlv_next(&t, b, n), PG_ETRUNC);
	n = (size_t)hex(b, "9F7F022A0B");
	assert_int_equal(pg_tlv_next(&t, b, n), 5);
	assert_int_equal(t.tag, 0x9F7F);
	assert_false(t.constructed);
	/* GP SEAC: FF40 is a tag, not padding; 00 bytes before it are. */
	n = (size_t)hex(b, "0000FF4006E204E1024F00");
	assert_int_equal(pg_tlv_next(&t, b, n), (int)n);
	assert_int_equal(t.tag, 0xFF40);
	assert_true(t.constructed);
	assert_int_equal(pg_tlv_find(&t, b, n, 0x4F, 1), 1);
	/* Indefinite length and over-long tags are refused. */
	n = (size_t)hex(b, "308000");
	assert_int_equal(pg_tlv_next(&t, b, n), PG_EFORMAT);
	n = (size_t)hex(b, "1F8181818101 00");
	assert_int_equal(pg_tlv_next(&t, b, n), PG_EFORMAT);
	/* Depth limit. */
	memset(b, 0, sizeof(b));
	for (int i = 0; i < 40; i++) {
		b[2 * i] = 0x70;
		b[2 * i + 1] = (uint8_t)(78 - 2 * i);
	}
	assert_int_equal(pg_tlv_validate(b, 80), PG_EFORMAT);
	/* Builder: nested objects with a length that needs widening. */
	assert_int_equal(pg_tlv_open(&out, 0x6F, &mark), 0);
	assert_int_equal(pg_tlv_append(&out, 0x84, "2PAY.SYS.DDF01", 14), 0);
	memset(b, 0xAB, 200);
	assert_int_equal(pg_tlv_append(&out, 0x9F4D, b, 200), 0);
	assert_int_equal(pg_tlv_close(&out, mark), 0);
	assert_int_equal(pg_tlv_validate(out.data, out.len), 0);
	assert_int_equal(pg_tlv_next(&t, out.data, out.len), (int)out.len);
	assert_int_equal(t.tag, 0x6F);
	assert_int_equal(t.len, 16 + 4 + 200);
	assert_int_equal(out.data[1], 0x81);
	assert_int_equal(pg_tlv_find(&t, out.data, out.len, 0x9F4D, 1), 1);
	assert_int_equal(t.len, 200);
	pg_buf_release(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases_short), cmocka_unit_test(test_cases_extended),
	    cmocka_unit_test(test_channels),	cmocka_unit_test(test_sw),
	    cmocka_unit_test(test_tlv),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
