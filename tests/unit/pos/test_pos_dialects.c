/*
 * The named ISO 8583 dialects (issue 17 item 5): jpos-iso87b (jPOS's
 * ISO87BPackager layout with binary private fields 60-63), npm-iso8583 (the
 * npm package iso_8583's default field table), and the built-in ISO
 * 8583:1993 tables iso93 / iso93-binary; the definition-file statements they
 * need (pad=, x+n, anp, drop, version). Expected bytes follow the packagers'
 * published rules: jPOS IFB_LLNUM(pad=false) left-justifies odd digit counts
 * with a 0 nibble at the end, IFB_AMOUNT writes the sign in ASCII and the
 * digits in BCD, IFB_LLLBINARY a 2-byte BCD byte count; iso_8583's b fields
 * count hex characters (MaxLen 8 = 4 bytes). The npm layout is also checked
 * against the package itself in tests/integration/pos/test_npm_crosscheck.py.
 */
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/pos_iso8583.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct pg_iso_msg *
msg_new(void)
{
	struct pg_iso_msg *m = malloc(sizeof(*m));

	assert_non_null(m);
	pg_iso_msg_init(m);
	return m;
}

static uint8_t *
unhex(const char *h, size_t *n)
{
	char *c = malloc(strlen(h) + 1);
	size_t k = 0;
	uint8_t *b;
	int rc;

	for (const char *p = h; *p; p++)
		if (*p != ' ')
			c[k++] = *p;
	c[k] = 0;
	b = malloc(k / 2 + 1);
	rc = pg_hex_decode(b, k / 2 + 1, c);
	assert_true(rc >= 0);
	*n = (size_t)rc;
	free(c);
	return b;
}

static void
assert_field(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int f, const char *want)
{
	char buf[2048];

	assert_int_equal(pg_iso_get_str(d, m, f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static void
load(struct pg_iso_dialect *d, const char *name)
{
	if (pg_iso_dialect_load(d, name) != 0)
		fail_msg("dialect %s: %s", name, pg_last_error());
}

/* jPOS ISO87B + binary 60-63: every rule that differs from the binary dialect. */
static void
test_jpos_iso87b(void **state)
{
	static struct pg_iso_dialect d;
	const char *want = "0200 7020001020800014"
			   " 07 54133300"		 /* 2: LL=07, digits then 0 pad nibble */
			   " 000000 000000001000 000001" /* 3, 4, 11 */
			   " 43 00000150"		 /* 28: 'C' + BCD 00000150 */
			   " 12 5413330D2512"		 /* 35: '=' as D, even */
			   " 5445524D30303031"		 /* 41 */
			   " 0003 00FF1F"		 /* 60: LLL=0003 bytes, binary */
			   " 0002 0102";		 /* 62 */
	struct pg_iso_msg *m = msg_new(), *m2 = msg_new();
	struct pg_buf out = PG_BUF_INIT(4096);
	size_t n;
	uint8_t *b = unhex(want, &n);

	(void)state;
	load(&d, "jpos-iso87b");
	assert_string_equal(d.name, "jpos-iso87b");
	assert_int_equal(pg_iso_set_mti(m, "0200"), 0);
	pg_iso_set_str(m, 2, "5413330");
	pg_iso_set_str(m, 3, "000000");
	pg_iso_set_str(m, 4, "000000001000");
	pg_iso_set_str(m, 11, "000001");
	pg_iso_set_str(m, 28, "C00000150");
	pg_iso_set_str(m, 35, "5413330=2512");
	pg_iso_set_str(m, 41, "TERM0001");
	pg_iso_set(m, 60, "\x00\xFF\x1F", 3);
	pg_iso_set(m, 62, "\x01\x02", 2);
	if (pg_iso_pack(&d, m, &out) != 0)
		fail_msg("pack: %s", pg_last_error());
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, b, n);

	assert_int_equal(pg_iso_unpack(&d, b, n, m2), 0);
	assert_field(&d, m2, 2, "5413330");
	assert_field(&d, m2, 28, "C00000150");
	assert_field(&d, m2, 35, "5413330D2512");
	assert_field(&d, m2, 60, "00FF1F");
	assert_field(&d, m2, 62, "0102");

	/* the plain binary dialect cannot read it: PAN pad nibble first, 28 as text */
	assert_int_equal(pg_iso_unpack(pg_iso_dialect_builtin("binary"), b, n, m2), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "field 2"));

	/* a bad sign byte and an odd PAN with a nonzero trailing pad are refused */
	b[27] = 'X';
	assert_int_equal(pg_iso_unpack(&d, b, n, m2), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "field 28: sign byte"));
	b[27] = 'C';
	b[14] = 0x01;
	assert_int_equal(pg_iso_unpack(&d, b, n, m2), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "field 2: bad pad nibble"));
	pg_iso_set_str(m, 28, "+00000150");
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(&d, m, &out), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "field 28"));
	pg_buf_release(&out);
	free(b);
	free(m);
	free(m2);
}

/*
 * The published 0800 of Stack Overflow question 21282257 (BCD MTI and
 * numerics, binary bitmap) reads the same in jpos-iso87b.
 */
static void
test_jpos_public_0800(void **state)
{
	static struct pg_iso_dialect d;
	size_t n;
	uint8_t *b = unhex("0800 2020000000800000 000000 000001 3239313130303031", &n);
	struct pg_iso_msg *m = msg_new();

	(void)state;
	load(&d, "jpos-iso87b");
	assert_int_equal(pg_iso_unpack(&d, b, n, m), 0);
	assert_field(&d, m, 3, "000000");
	assert_field(&d, m, 11, "000001");
	assert_field(&d, m, 41, "29110001");
	free(b);
	free(m);
}

/*
 * jPOS's own documentation (jpos.org, "ISOUtil: Byte Manipulation Helpers"):
 * ISOUtil.str2bcd("123", false) -> 12 30, the right-padded BCD that IFB_LLNUM
 * with pad=false writes; jpos-iso87b's field 2 does the same.
 */
static void
test_jpos_doc_str2bcd(void **state)
{
	static struct pg_iso_dialect d;
	struct pg_iso_msg *m = msg_new();
	struct pg_buf out = PG_BUF_INIT(256);

	(void)state;
	load(&d, "jpos-iso87b");
	pg_iso_set_mti(m, "0100");
	pg_iso_set_str(m, 2, "123");
	assert_int_equal(pg_iso_pack(&d, m, &out), 0);
	assert_int_equal(out.len, 2 + 8 + 3);
	assert_memory_equal(out.data + 10, "\x03\x12\x30", 3);
	pg_buf_release(&out);
	free(m);
}

/*
 * A published message with ASCII fields and a binary bitmap: the 0800 David
 * Bergert posted to the jPOS users group ("Analysis of the HEXDUMP OUTPUT",
 * June 2009; fields 7, 11, 37, 70). It reads in npm-iso8583, the same layout.
 */
static void
test_npm_public_0800(void **state)
{
	static struct pg_iso_dialect d;
	size_t n;
	uint8_t *b = unhex("30383030 8220000008000000 0400000000000000 30353239323034373338"
			   " 343033353638 393134393230343033353638 303631",
			   &n);
	struct pg_iso_msg *m = msg_new();
	struct pg_buf out = PG_BUF_INIT(256);

	(void)state;
	load(&d, "npm-iso8583");
	assert_int_equal(pg_iso_unpack(&d, b, n, m), 0);
	assert_string_equal(m->mti, "0800");
	assert_field(&d, m, 7, "0529204738");
	assert_field(&d, m, 11, "403568");
	assert_field(&d, m, 37, "914920403568");
	assert_field(&d, m, 70, "061");
	assert_int_equal(pg_iso_pack(&d, m, &out), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, b, n);
	pg_buf_release(&out);
	free(b);
	free(m);
}

/* npm iso_8583's default table: 37/38 anp, 53 48 bytes, 58 n..11, 62 ans, 64 4 bytes. */
static void
test_npm_layout(void **state)
{
	static struct pg_iso_dialect d, old;
	static const char oldlayout[] = "dialect old\nbase ascii\nbitmap binary\n";
	uint8_t b53[48], want[512];
	size_t wn = 0;
	struct pg_iso_msg *m = msg_new(), *m2 = msg_new();
	struct pg_buf out = PG_BUF_INIT(4096);

	(void)state;
	for (int i = 0; i < 48; i++)
		b53[i] = (uint8_t)(i * 5 + 1);
#define PUT(p, l) (memcpy(want + wn, (p), (l)), wn += (l))
	PUT("0200", 4);
	PUT("\x30\x20\x00\x00\x0C\x80\x08\x45", 8);
	PUT("000000000000001000000001", 24);
	PUT("12345678901*", 12);
	PUT("A1#B2 ", 6);
	PUT("TERM0001", 8);
	PUT(b53, 48);
	PUT("0512345", 7);
	PUT("009cell text", 12);
	PUT("\x0A\x0B\x0C\x0D", 4);
#undef PUT
	load(&d, "npm-iso8583");
	pg_iso_set_mti(m, "0200");
	pg_iso_set_str(m, 3, "000000");
	pg_iso_set_str(m, 4, "000000001000");
	pg_iso_set_str(m, 11, "000001");
	pg_iso_set_str(m, 37, "12345678901*");
	pg_iso_set_str(m, 38, "A1#B2 ");
	pg_iso_set_str(m, 41, "TERM0001");
	pg_iso_set(m, 53, b53, 48);
	pg_iso_set_str(m, 58, "12345");
	pg_iso_set_str(m, 62, "cell text");
	pg_iso_set(m, 64, "\x0A\x0B\x0C\x0D", 4);
	if (pg_iso_pack(&d, m, &out) != 0)
		fail_msg("pack: %s", pg_last_error());
	assert_int_equal(out.len, wn);
	assert_memory_equal(out.data, want, wn);
	assert_int_equal(pg_iso_unpack(&d, want, wn, m2), 0);
	assert_field(&d, m2, 37, "12345678901*");
	assert_field(&d, m2, 58, "12345");
	assert_field(&d, m2, 62, "cell text");
	assert_field(&d, m2, 64, "0A0B0C0D");

	/* what docs/pos.md used to call the npm layout reads this message wrongly */
	assert_int_equal(pg_iso_dialect_parse(&old, oldlayout, strlen(oldlayout)), 0);
	assert_int_not_equal(pg_iso_unpack(&old, want, wn, m2), 0);
	/* 127 (the package's nested 127.x) and 65 are not taken */
	pg_iso_set_str(m, 127, "x");
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(&d, m, &out), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "field 127: not defined"));
	/* 37 refuses what anp does not hold */
	pg_iso_unset(m, 127);
	pg_iso_set_str(m, 37, "12345678901-");
	assert_int_equal(pg_iso_pack(&d, m, &out), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "field 37"));
	pg_buf_release(&out);
	free(m);
	free(m2);
}

/* ISO 8583:1993: its own table (12 n 12, 22 an 12, 24 function code, 43 LL) and MTI 1xxx. */
static void
test_iso93(void **state)
{
	const struct pg_iso_dialect *a = pg_iso_dialect_builtin("iso93");
	const struct pg_iso_dialect *bin = pg_iso_dialect_builtin("iso93-binary");
	const char *want = "1200"
			   "7030050008E08000"
			   "16"
			   "4761739001010119"
			   "000000"
			   "000000005000"
			   "000001"
			   "261207031500"
			   "A10101211344"
			   "200"
			   "RRN*00000001"
			   "TERM0001"
			   "MERCHANT0000001"
			   "14"
			   "Shop Berlin DE"
			   "978";
	struct pg_iso_msg *m = msg_new(), *m2 = msg_new();
	struct pg_buf out = PG_BUF_INIT(4096);

	(void)state;
	assert_non_null(a);
	assert_non_null(bin);
	assert_string_equal(a->f[24].name, "Function code");
	assert_int_equal(pg_iso_unpack(a, (const uint8_t *)want, strlen(want), m), 0);
	assert_string_equal(m->mti, "1200");
	assert_field(a, m, 12, "261207031500");
	assert_field(a, m, 22, "A10101211344");
	assert_field(a, m, 24, "200");
	assert_field(a, m, 43, "Shop Berlin DE");
	assert_int_equal(pg_iso_pack(a, m, &out), 0);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	/* the 1987 table cannot read it: 12 is n 6 there, 22 n 3 */
	assert_int_not_equal(
	    pg_iso_unpack(pg_iso_dialect_builtin("ascii"), (const uint8_t *)want, strlen(want), m2),
	    0);

	/* binary: BCD, odd LLNUM left-justified (jPOS ISO93BPackager) */
	pg_iso_set_str(m, 2, "5413330");
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(bin, m, &out), 0);
	assert_memory_equal(out.data, "\x12\x00", 2);
	assert_memory_equal(out.data + 10, "\x07\x54\x13\x33\x00", 5);
	assert_int_equal(pg_iso_unpack(bin, out.data, out.len, m2), 0);
	assert_field(bin, m2, 2, "5413330");
	assert_field(bin, m2, 43, "Shop Berlin DE");

	/* a 1987 MTI is refused both ways */
	pg_iso_set_mti(m, "0200");
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(a, m, &out), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "version 1"));
	assert_int_equal(pg_iso_unpack(a, (const uint8_t *)"02007030050008E08000", 20, m2),
			 PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "MTI 0200"));
	pg_buf_release(&out);
	free(m);
	free(m2);
}

/* The statements the shipped files use, and their errors. */
static void
test_fielddef_new(void **state)
{
	static struct pg_iso_dialect d;
	static const char *const bad[] = {
	    "field 2 n llvar 19 pad=middle\n",
	    "field 2 n llvar 19 \"PAN\" pad=right0\n",
	    "drop 1\n",
	    "drop x\n",
	    "version 12\n",
	    "field 28 x-n fixed 9\n",
	    "base nosuch\n",
	};
	static const char good[] = "dialect t\nbase iso93\nversion any\ndrop 24\n"
				   "field 2 n llvar 19 pad=rightF \"PAN\"\nfield 5 x+n fixed 5\n";

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(pg_iso_dialect_parse(&d, bad[i], strlen(bad[i])), PG_EFORMAT);
	assert_int_equal(pg_iso_dialect_parse(&d, good, strlen(good)), 0);
	assert_int_equal(d.mti_version, 0);
	assert_int_equal(d.f[24].lenkind, PG_ISO_UNUSED);
	assert_int_equal(d.f[2].pad, PG_ISO_PAD_RIGHTF);
	assert_string_equal(d.f[2].name, "PAN");
	assert_int_equal(d.f[5].type, PG_ISO_XN);
	assert_string_equal(d.f[12].name, "Date and time, local transaction");
	/* every shipped name loads, and an unknown one lists them */
	load(&d, "npm-iso8583");
	load(&d, "jpos-iso87b");
	assert_int_not_equal(pg_iso_dialect_load(&d, "nosuch-host"), 0);
	assert_non_null(strstr(pg_last_error(), "jpos-iso87b"));
	assert_non_null(strstr(pg_iso_dialect_names(), "npm-iso8583"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jpos_iso87b),	    cmocka_unit_test(test_jpos_public_0800),
	    cmocka_unit_test(test_npm_layout),	    cmocka_unit_test(test_iso93),
	    cmocka_unit_test(test_fielddef_new),    cmocka_unit_test(test_jpos_doc_str2bcd),
	    cmocka_unit_test(test_npm_public_0800),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
