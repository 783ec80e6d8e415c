/*
 * Unit tests for src/pos (seed 4): the ISO 8583 codec in both dialects and a
 * definition file, every framing, the cell TLV, OpenCellID rows and import,
 * the position estimate, great-circle distance, the policy and alert life cycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/pos.h"
#include "pos/pos_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	uint8_t *b = malloc(strlen(h) / 2 + 1);
	int rc = pg_hex_decode(b, strlen(h) / 2 + 1, h);

	assert_true(rc >= 0);
	*n = (size_t)rc;
	return b;
}

static void
assert_field(const struct pg_iso_dialect *d, const struct pg_iso_msg *m, int f, const char *want)
{
	char buf[2048];

	assert_int_equal(pg_iso_get_str(d, m, f, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

/*
 * Public example 1: the 0800 network-management message quoted in the Stack
 * Overflow question 21282257 "ISO8583 message decoding" ("0800 2020000000800000
 * 000000 000001 3239313130303031"): BCD MTI and numerics, binary bitmap, the
 * binary dialect's layout exactly.
 */
static void
test_public_so_0800(void **state)
{
	const struct pg_iso_dialect *d = pg_iso_dialect_builtin("binary");
	const char *hex = "0800 2020000000800000 000000 000001 3239313130303031";
	struct pg_iso_msg *m = msg_new();
	struct pg_buf out = PG_BUF_INIT(4096);
	size_t n;
	uint8_t *b = unhex(hex, &n);

	(void)state;
	assert_int_equal(pg_iso_unpack(d, b, n, m), 0);
	assert_string_equal(m->mti, "0800");
	assert_field(d, m, 3, "000000");
	assert_field(d, m, 11, "000001");
	assert_field(d, m, 41, "29110001");
	assert_false(pg_iso_has(m, 2));
	assert_int_equal(pg_iso_pack(d, m, &out), 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.data, b, n);
	pg_buf_release(&out);
	free(b);
	free(m);
}

/*
 * Public example 2: the ASCII 0210 from the blog post "Read ISO 8583 message"
 * (on-september.blogspot.com, January 2010), bitmap 723A00010A808400, with the
 * field values the post lists (2, 3, 4, 7, 11, 12, 13, 15, 32, 37, 39, 41, 49, 54).
 */
static void
test_public_blog_0210(void **state)
{
	const struct pg_iso_dialect *d = pg_iso_dialect_builtin("ascii");
	const char *txt = "0210723A00010A80840018593600141001099999011000000010000000100702153300"
			  "0001191533100610070656565610060901022400000009013600201002"
			  "36C0102240000000";
	struct pg_iso_msg *m = msg_new();
	struct pg_buf out = PG_BUF_INIT(4096);

	(void)state;
	assert_int_equal(pg_iso_unpack(d, (const uint8_t *)txt, strlen(txt), m), 0);
	assert_string_equal(m->mti, "0210");
	assert_field(d, m, 2, "593600141001099999");
	assert_field(d, m, 3, "011000");
	assert_field(d, m, 4, "000010000000");
	assert_field(d, m, 7, "1007021533");
	assert_field(d, m, 11, "000001");
	assert_field(d, m, 12, "191533");
	assert_field(d, m, 13, "1006");
	assert_field(d, m, 15, "1007");
	assert_field(d, m, 32, "565656");
	assert_field(d, m, 37, "100609010224");
	assert_field(d, m, 39, "00");
	assert_field(d, m, 41, "00000901");
	assert_field(d, m, 49, "360");
	assert_field(d, m, 54, "100236C0102240000000");
	assert_int_equal(pg_iso_pack(d, m, &out), 0);
	assert_int_equal(out.len, strlen(txt));
	assert_memory_equal(out.data, txt, out.len);
	pg_buf_release(&out);
	free(m);
}

static void
set_fields(struct pg_iso_msg *m, const int *fields, size_t n)
{
	/* minimal valid values per the built-in table */
	static const struct {
		int f;
		const char *v;
	} vals[] = {
	    {2, "4761739001010119"},
	    {3, "000000"},
	    {4, "000000005000"},
	    {7, "0911131411"},
	    {11, "000001"},
	    {12, "131411"},
	    {13, "0911"},
	    {14, "2212"},
	    {18, "4111"},
	    {22, "051"},
	    {23, "001"},
	    {25, "00"},
	    {26, "12"},
	    {28, "D00000000"},
	    {29, "C00000000"},
	    {32, "423935"},
	    {33, "111111111"},
	    {35, "4761739001010119D22122011758928889"},
	    {37, "000000000001"},
	    {39, "00"},
	    {41, "12345678"},
	    {42, "MOTITILL_000001"},
	    {43, "My Termianl Business                    "},
	    {48, "private"},
	    {49, "404"},
	    {50, "404"},
	    {53, "0000000000000000"},
	    {55, "9F2608AABBCCDD"},
	    {56, "1510"},
	    {62, "cell"},
	    {63, "x"},
	    {123, "91010151134C101"},
	};

	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++)
			if (vals[k].f == fields[i])
				goto found;
		if (fields[i] == 52 || fields[i] == 64) {
			assert_int_equal(
			    pg_iso_set(m, fields[i], "\x74\x34\xF6\x78\x13\xBA\xE5\x45", 8), 0);
			continue;
		}
		fail_msg("no value for field %d", fields[i]);
	found:
		if (fields[i] == 62)
			assert_int_equal(pg_iso_set(m, 62, "\x01\x02\x00\xff", 4), 0);
		else
			for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++)
				if (vals[k].f == fields[i])
					assert_int_equal(pg_iso_set_str(m, fields[i], vals[k].v),
							 0);
	}
}

/*
 * Public bitmaps: Elavon's "Bitmap Primary" field description (fields 3, 4, 7,
 * 11, 12, 14, 22, 26, 28, 29, 32, 35, 37, 41, 42, 43, 48, 49, 55, 63, 64 ->
 * 30 34 04 59 28 E1 82 03); chileoffshore.com's bitmap tool page (2, 7, 12, 28,
 * 32, 39, 41, 42, 50, 53, 62 -> 4210001102C04804); and the field set of the npm
 * iso_8583 README, whose bitmap it prints as f23c46c1a8e091000000000000000022
 * (there with 127; we send 123 only, so the last byte reads 20).
 */
static void
test_public_bitmaps(void **state)
{
	/* the page lists 7 too, but its own bit string and bytes leave 7 out */
	static const int elavon[] = {3,	 4,  11, 12, 14, 22, 26, 28, 29, 32,
				     35, 37, 41, 42, 43, 48, 49, 55, 63, 64};
	static const int chile[] = {2, 7, 12, 28, 32, 39, 41, 42, 50, 53, 62};
	/* the README's bitmap also names 11 and 37, which its value listing leaves out */
	static const int readme[] = {2,	 3,  4,	 7,  11, 12, 13, 14, 18, 22, 23, 25,
				     26, 32, 33, 35, 37, 41, 42, 43, 49, 52, 56, 123};
	const struct pg_iso_dialect *bin = pg_iso_dialect_builtin("binary");
	const struct pg_iso_dialect *asc = pg_iso_dialect_builtin("ascii");
	struct pg_iso_msg *m = msg_new();
	struct pg_buf out = PG_BUF_INIT(8192);

	(void)state;
	pg_iso_set_mti(m, "0100");
	set_fields(m, elavon, sizeof(elavon) / sizeof(elavon[0]));
	assert_int_equal(pg_iso_pack(bin, m, &out), 0);
	assert_memory_equal(out.data + 2, "\x30\x34\x04\x59\x28\xE1\x82\x03", 8);
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(asc, m, &out), 0);
	assert_memory_equal(out.data + 4,
			    "30340459"
			    "28E18203",
			    16);

	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0100");
	set_fields(m, chile, sizeof(chile) / sizeof(chile[0]));
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(asc, m, &out), 0);
	assert_memory_equal(out.data + 4, "4210001102C04804", 16);

	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0100");
	set_fields(m, readme, sizeof(readme) / sizeof(readme[0]));
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(asc, m, &out), 0);
	assert_memory_equal(out.data + 4,
			    "F23C46C1A8E09100"
			    "0000000000000020",
			    32);
	pg_buf_release(&out);
	free(m);
}

/* Every field type and length kind, both dialects, primary and secondary bitmaps. */
static void
test_roundtrip_all_types(void **state)
{
	static const char *const dialects[] = {"binary", "ascii"};
	struct pg_iso_msg *m = msg_new(), *m2 = msg_new();
	struct pg_buf out = PG_BUF_INIT(8192);
	struct pg_iso_dialect custom;
	static const char deftext[] = "# test dialect\n"
				      "dialect t1\nbase binary\n"
				      "field 48 a llvar 20 \"Alpha only\"\n"
				      "field 60 n lllvar 999\n";

	(void)state;
	for (int k = 0; k < 3; k++) {
		const struct pg_iso_dialect *d;

		if (k < 2) {
			d = pg_iso_dialect_builtin(dialects[k]);
		} else {
			assert_int_equal(pg_iso_dialect_parse(&custom, deftext, strlen(deftext)),
					 0);
			assert_string_equal(custom.name, "t1");
			d = &custom;
		}
		pg_iso_msg_init(m);
		pg_iso_set_mti(m, "0200");
		pg_iso_set_str(m, 2, "476173900101011");		    /* n LL, odd */
		pg_iso_set_str(m, 3, "001000");				    /* n fixed */
		pg_iso_set_str(m, 22, "051");				    /* n fixed, odd */
		pg_iso_set_str(m, 35, "4761739001010119D22");		    /* z LL, odd */
		pg_iso_set_str(m, 36, "0123456789012");			    /* n LLL, odd */
		pg_iso_set_str(m, 39, "A1");				    /* an */
		pg_iso_set_str(m, 41, "TERM 01~");			    /* ans fixed */
		pg_iso_set_str(m, 44, "ok!");				    /* ans LL */
		pg_iso_set_str(m, 48, k == 2 ? "Alpha Only" : "{\"x\":1}"); /* a / ans LLL */
		pg_iso_set(m, 52, "\x00\x01\x02\x03\xfc\xfd\xfe\xff", 8);   /* b fixed */
		pg_iso_set(m, 62, "\x01\x14\x00", 3);			    /* b LLL */
		pg_iso_set_str(m, 70, "301");				    /* secondary */
		pg_iso_set_str(m, 102, "ACCOUNT-1");
		pg_iso_set(m, 128, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
		if (k == 2)
			pg_iso_set_str(m, 60, "12345");
		pg_buf_reset(&out);
		assert_int_equal(pg_iso_pack(d, m, &out), 0);
		assert_int_equal(pg_iso_unpack(d, out.data, out.len, m2), 0);
		assert_string_equal(m2->mti, "0200");
		for (int f = 2; f <= 128; f++) {
			size_t a, b;
			const uint8_t *va, *vb;

			assert_int_equal(pg_iso_has(m, f), pg_iso_has(m2, f));
			if (!pg_iso_has(m, f))
				continue;
			va = pg_iso_get(m, f, &a);
			vb = pg_iso_get(m2, f, &b);
			assert_int_equal(a, b);
			assert_memory_equal(va, vb, a);
		}
		if (k == 0) /* BCD: odd n right-justified with a 0 nibble, z left with F */
			assert_memory_equal(out.data, "\x02\x00", 2);
		if (k == 1)
			assert_memory_equal(out.data, "0200E", 5);
	}
	/* the "a" type refuses digits */
	pg_iso_set_str(m, 48, "abc1");
	pg_buf_reset(&out);
	assert_int_equal(pg_iso_pack(&custom, m, &out), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "field 48"));
	pg_buf_release(&out);
	free(m);
	free(m2);
}

static void
expect_unpack_error(const struct pg_iso_dialect *d, const void *p, size_t n, int code,
		    const char *needle)
{
	struct pg_iso_msg *m = msg_new();
	int rc = pg_iso_unpack(d, p, n, m);

	if (rc != code || (needle && !strstr(pg_last_error(), needle)))
		fail_msg("expected %d '%s', got %d '%s'", code, needle ? needle : "", rc,
			 pg_last_error());
	free(m);
}

static void
test_strict_errors(void **state)
{
	const struct pg_iso_dialect *bin = pg_iso_dialect_builtin("binary");
	const struct pg_iso_dialect *asc = pg_iso_dialect_builtin("ascii");
	struct pg_iso_dialect sparse;
	static const char sparse_def[] = "mti ascii\nnumeric ascii\nlength ascii\nbitmap hex\n"
					 "field 5 n fixed 12\n";
	size_t n;
	uint8_t *b = unhex("0800 2020000000800000 000000 000001 3239313130303031", &n);
	struct pg_iso_msg *m = msg_new();

	(void)state;
	/* every truncation of a valid message is refused */
	for (size_t i = 0; i < n; i++) {
		int rc = pg_iso_unpack(bin, b, i, m);

		assert_true(rc == PG_ETRUNC || rc == PG_EFORMAT);
	}
	/* trailing byte */
	b = realloc(b, n + 1);
	b[n] = 0;
	expect_unpack_error(bin, b, n + 1, PG_EFORMAT, "after the last field");
	/* bad BCD in field 11 */
	b[13] = 0x0A;
	expect_unpack_error(bin, b, n, PG_EFORMAT, "field 11");
	free(b);
	/* ASCII: non-digit in numeric field 4, truncated field 41, LL over the maximum */
	expect_unpack_error(asc,
			    "02003000000000000000"
			    "000000"
			    "00000000X000",
			    38, PG_EFORMAT, "field 4");
	expect_unpack_error(asc,
			    "08000000000000800000"
			    "1234",
			    24, PG_ETRUNC, "field 41");
	expect_unpack_error(asc,
			    "02004000000000000000"
			    "20"
			    "12345678901234567890",
			    42, PG_EFORMAT, "field 2: length 20 exceeds maximum 19");
	expect_unpack_error(asc,
			    "02004000000000000000"
			    "19"
			    "123",
			    25, PG_ETRUNC, "field 2");
	expect_unpack_error(asc,
			    "020040000000000000G0"
			    "19",
			    22, PG_EFORMAT, "non-hex");
	/* a bitmap naming a field the dialect does not define */
	assert_int_equal(pg_iso_dialect_parse(&sparse, sparse_def, strlen(sparse_def)), 0);
	expect_unpack_error(&sparse,
			    "02002000000000000000"
			    "000000",
			    26, PG_EFORMAT, "field 3: present in bitmap but not defined");
	/* secondary bitmap announced but missing */
	expect_unpack_error(asc, "0200C000000000000000", 20, PG_ETRUNC, "secondary bitmap");
	/* BCD LLL with a non-zero first nibble */
	expect_unpack_error(bin, "\x02\x00\x00\x00\x00\x00\x00\x00\x00\x04\x10\x00", 12, PG_EFORMAT,
			    "field 62: length");
	/* pack: fixed length wrong, value too long */
	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0200");
	pg_iso_set_str(m, 3, "12345");
	{
		struct pg_buf out = PG_BUF_INIT(1024);

		assert_int_equal(pg_iso_pack(bin, m, &out), PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "field 3"));
		assert_int_equal(out.len, 0);
		/* pack: a character its type does not allow, named with its position */
		pg_iso_set_str(m, 3, "12a456");
		assert_int_equal(pg_iso_pack(bin, m, &out), PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "field 3: character 0x61 at 3"));
		pg_iso_set_str(m, 3, "123456");
		pg_iso_set_str(m, 41, "T00\n0001");
		assert_int_equal(pg_iso_pack(bin, m, &out), PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "field 41: character 0x0A at 4"));
		assert_int_equal(out.len, 0);
		pg_buf_release(&out);
	}
	free(m);
}

static void
test_fielddef_errors(void **state)
{
	struct pg_iso_dialect d;
	static const char *const bad[] = {
	    "field 1 n fixed 4\n",
	    "field 3 q fixed 4\n",
	    "field 3 n sometimes 4\n",
	    "field 3 n llvar 100\n",
	    "bitmap maybe\n",
	    "field 3 n fixed 4 \"open\n",
	    "wibble 3\n",
	    "field 3 n fixed 4\nbase ascii\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(pg_iso_dialect_parse(&d, bad[i], strlen(bad[i])), PG_EFORMAT);
		assert_non_null(strstr(pg_last_error(), "line"));
	}
	assert_int_equal(pg_iso_dialect_parse(&d,
					      "mti ascii\r\nnumeric bcd\nlength ascii\n"
					      "bitmap binary\nfield 62 b lllvar 999\n",
					      strlen("mti ascii\r\nnumeric bcd\nlength ascii\n"
						     "bitmap binary\nfield 62 b lllvar 999\n")),
			 0);
	assert_int_equal(d.mti_enc, PG_ISO_ENC_ASCII);
	assert_int_equal(d.num_enc, PG_ISO_ENC_BCD);
	assert_int_equal(d.bitmap_enc, PG_ISO_BM_BINARY);
	assert_int_equal(d.f[62].type, PG_ISO_B);
	assert_int_equal(d.f[3].lenkind, PG_ISO_UNUSED);
}

static void
test_framings(void **state)
{
	static const char *const names[] = {"bin2", "bcd2", "ascii4", "bin4"};
	const uint8_t body[] = "0800 body bytes";
	const uint8_t tpdu[5] = {0x60, 0x00, 0x01, 0x00, 0x02};

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		for (int t = 0; t < 2; t++) {
			struct pg_iso_framing fr;
			struct pg_buf out = PG_BUF_INIT(256);
			char name[32];
			size_t hdr, blen;

			snprintf(name, sizeof(name), "%s%s", names[i], t ? "+tpdu" : "");
			assert_int_equal(pg_iso_framing_parse(&fr, name), 0);
			assert_int_equal(pg_iso_frame_wrap(&fr, tpdu, body, 15, &out), 0);
			/* incomplete at every shorter length */
			for (size_t k = 0; k < out.len; k++)
				assert_int_equal(
				    pg_iso_frame_find(&fr, out.data, k, 8192, &hdr, &blen), 0);
			assert_int_equal(
			    pg_iso_frame_find(&fr, out.data, out.len, 8192, &hdr, &blen), 1);
			assert_int_equal(blen, 15);
			assert_memory_equal(out.data + hdr, body, 15);
			if (t)
				assert_memory_equal(out.data + hdr - 5, tpdu, 5);
			/* limit */
			assert_int_equal(pg_iso_frame_find(&fr, out.data, out.len, 10, &hdr, &blen),
					 PG_ETOOBIG);
			pg_buf_release(&out);
		}
	}
	{
		struct pg_iso_framing fr;
		size_t hdr, blen;
		const uint8_t big[] = {0x00, 0xA0, 0x00, 0x00}; /* bin4: 10 MB */

		assert_int_equal(pg_iso_framing_parse(&fr, "bin4"), 0);
		assert_int_equal(pg_iso_frame_find(&fr, big, 4, 8192, &hdr, &blen), PG_ETOOBIG);
		assert_int_equal(pg_iso_framing_parse(&fr, "bcd2"), 0);
		assert_int_equal(
		    pg_iso_frame_find(&fr, (const uint8_t *)"\x0A\x00", 2, 8192, &hdr, &blen),
		    PG_EFORMAT);
		assert_int_equal(pg_iso_framing_parse(&fr, "ascii4"), 0);
		assert_int_equal(
		    pg_iso_frame_find(&fr, (const uint8_t *)"00x5", 4, 8192, &hdr, &blen),
		    PG_EFORMAT);
		assert_int_equal(pg_iso_framing_parse(&fr, "bin2+tpdu"), 0);
		assert_int_equal(pg_iso_frame_find(&fr, (const uint8_t *)"\x00\x06\x61\0\0\0\0x", 8,
						   8192, &hdr, &blen),
				 PG_EFORMAT);
		assert_int_equal(pg_iso_framing_parse(&fr, "bin2+crc"), PG_EINVAL);
		assert_int_equal(pg_iso_framing_parse(&fr, "none+tpdu"), PG_EINVAL);
	}
}

static void
test_celltlv(void **state)
{
	struct pg_cell_report r = {0}, r2;
	struct pg_buf b = PG_BUF_INIT(512);
	uint8_t bad[512];

	(void)state;
	r.serving = (struct pg_cell_obs){PG_RADIO_LTE, 262, 1, 1001, 268435455ULL, -71, 3};
	r.nneigh = 6;
	for (int i = 0; i < 6; i++)
		r.neigh[i] = (struct pg_cell_obs){PG_RADIO_GSM, 262,  2,	 40000,
						  (uint64_t)i,	-100, PG_TA_NONE};
	assert_int_equal(pg_celltlv_encode(&r, &b), 0);
	assert_int_equal(b.len, 22 + 6 * 20);
	assert_int_equal(pg_celltlv_decode(b.data, b.len, &r2), 0);
	assert_int_equal(r2.serving.cid, 268435455ULL);
	assert_int_equal(r2.serving.signal, -71);
	assert_int_equal(r2.serving.ta, 3);
	assert_int_equal(r2.nneigh, 6);
	assert_int_equal(r2.neigh[5].cid, 5);
	assert_int_equal(r2.neigh[5].radio, PG_RADIO_GSM);
	/* truncations */
	for (size_t i = 0; i < b.len; i++)
		if (i < 22 || (i - 22) % 20) /* cutting between whole TLVs leaves a valid list */
			assert_true(pg_celltlv_decode(b.data, i, &r2) < 0);
	/* a seventh neighbour */
	memcpy(bad, b.data, b.len);
	memcpy(bad + b.len, b.data + 22, 20);
	assert_int_equal(pg_celltlv_decode(bad, b.len + 20, &r2), PG_EFORMAT);
	/* unknown tags are skipped */
	memcpy(bad, "\x7e\x03xyz", 5);
	memcpy(bad + 5, b.data, b.len);
	assert_int_equal(pg_celltlv_decode(bad, b.len + 5, &r2), 0);
	/* bad radio, no serving cell, serving twice */
	memcpy(bad, b.data, b.len);
	bad[2] = 9;
	assert_int_equal(pg_celltlv_decode(bad, b.len, &r2), PG_EFORMAT);
	assert_int_equal(pg_celltlv_decode(b.data + 22, 20, &r2), PG_EFORMAT);
	memcpy(bad, b.data, 22);
	memcpy(bad + 22, b.data, 22);
	assert_int_equal(pg_celltlv_decode(bad, 44, &r2), PG_EFORMAT);
	pg_buf_release(&b);
}

static void
test_geo(void **state)
{
	(void)state;
	/* Paris - London: 343.5 km by haversine on the mean radius */
	assert_true(fabs(pg_geo_distance_m(48.8566, 2.3522, 51.5074, -0.1278) - 343.5e3) < 1e3);
	/* one degree of longitude on the equator, across the antimeridian */
	assert_true(fabs(pg_geo_distance_m(0, 179.5, 0, -179.5) - 111195) < 5);
	assert_true(pg_geo_distance_m(52.52, 13.405, 52.52, 13.405) == 0);
}

static void
test_cells_rows(void **state)
{
	struct pg_cell_rec r;
	static const char good[] =
	    "LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000,-85";
	static const char empties[] = "GSM,262,1,1001,11002,,13.41,52.523,800,,,,,";
	static const char *const bad[] = {
	    "LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000",
	    "WIFI,262,1,1001,1,,13.4,52.5,500,1,1,1,1,0",
	    "LTE,0,1,1001,1,,13.4,52.5,500,1,1,1,1,0",
	    "LTE,262,1,1001,1,,13.4,95.5,500,1,1,1,1,0",
	    "LTE,262,1,1001,1,,181,52.5,500,1,1,1,1,0",
	    "LTE,262,1,,1,,13.4,52.5,500,1,1,1,1,0",
	    "LTE,262,1,1001,1x,,13.4,52.5,500,1,1,1,1,0",
	    "LTE,262,1,1001,1,,13.4,52.5,500,1,1,1,1,0,extra",
	    "LTE,262,1,1001,1,,nan,52.5,500,1,1,1,1,0",
	};

	(void)state;
	assert_int_equal(pg_cells_parse_row(good, strlen(good), &r), 0);
	assert_int_equal(r.id.radio, PG_RADIO_LTE);
	assert_int_equal(r.id.mcc, 262);
	assert_int_equal(r.id.cid, 11001);
	assert_int_equal(r.unit, 101);
	assert_int_equal(r.range, 500);
	assert_int_equal(r.avg_signal, -85);
	assert_true(fabs(r.lat - 52.5205) < 1e-9);
	assert_int_equal(pg_cells_parse_row(empties, strlen(empties), &r), 0);
	assert_int_equal(r.unit, -1);
	assert_int_equal(r.samples, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pg_cells_parse_row(bad[i], strlen(bad[i]), &r) != PG_EFORMAT)
			fail_msg("row accepted: %s", bad[i]);
}

struct tmpstore {
	char dir[64];
	char db[128];
	struct pg_store st;
};

/* Given --postgres (test_pos_postgres, run by tests/fixtures/with_pg_store.sh
 * on a database of its own, named in PAYGUARD_STORE), the store tests run on
 * PostgreSQL, each on an emptied schema; else on SQLite. */
static char pg_url[1024];

static void
tmp_open(struct tmpstore *t)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/pg-pos-test-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->db, sizeof(t->db), "%s/t.db", t->dir);
	if (pg_url[0]) {
		struct pg_db *db = NULL;

		assert_int_equal(pg_db_open(&db, pg_url), 0);
		assert_int_equal(
		    pg_db_exec(db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"),
		    0);
		pg_db_free(db);
	}
	assert_int_equal(pg_store_open(&t->st, pg_url[0] ? pg_url : t->db), 0);
}

static void
tmp_write(struct tmpstore *t, const char *name, const char *text, char *path, size_t pl)
{
	FILE *f;

	snprintf(path, pl, "%s/%s", t->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
tmp_close(struct tmpstore *t)
{
	char cmd[200];

	pg_store_close(&t->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
}

static const char cells_csv[] =
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,"
    "averageSignal\r\n"
    "LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000,-85\r\n"
    "LTE,262,1,1001,11002,102,13.4100,52.5230,800,25,1,1459692000,1700000000,\r\n"
    "LTE,262,1,1001,11003,,13.4050,52.5380,300,12,1,1459692000,1700000000,0\n"
    "LTE,262,1,1001,11004,,13.4080,52.5390,300,9,1,1459692000,1700000000,0\n"
    "LTE,262,1,1201,12001,,13.4050,52.9700,1000,30,1,1459692000,1700000000,0\n"
    "LTE,260,2,5001,77001,,14.5528,53.4285,1000,50,1,1459692000,1700000000,0\n"
    "\n"
    "LTE,262,1,,11009,,13.40,52.52,500,1,1,1459692000,1700000000,0\n"
    "garbage\n";

static const char merchants_csv[] =
    "terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n"
    "T0000001,M00000000000001,52.5200,13.4050,50,1000,262,Cafe, Mitte\n"
    "T0000002,M00000000000002,52.5200,13.4050,50,1000,262,Taxi\n"
    "T3,M3,52.5200,13.4050,50,1000,262,Short ids padded\n"
    "T0000009,M00000000000009,52.52,13.40,50,0,262,zero limit\n"
    "T00000010,M1,52.52,13.40,50,100,262,id too long\n";

static void
test_cells_import_estimate(void **state)
{
	struct tmpstore t;
	char path[256];
	struct pg_import_stats s;
	struct pg_cells *c = NULL;
	struct pg_cell_report r = {0};
	struct pg_estimate e, e2;

	(void)state;
	tmp_open(&t);
	tmp_write(&t, "cells.csv", cells_csv, path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	assert_int_equal(s.rows, 8);
	assert_int_equal(s.imported, 6);
	assert_int_equal(s.bad, 2);
	assert_int_equal(s.first_bad_line[0], 9);
	assert_int_equal(s.first_bad_line[1], 10);
	/* importing again replaces, not duplicates */
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	assert_int_equal(pg_cells_load(&t.st, &c), 0);
	assert_int_equal(pg_cells_count(c), 6);

	/* one known cell: its position and range */
	r.serving = (struct pg_cell_obs){PG_RADIO_LTE, 262, 1, 1001, 11001, -70, PG_TA_NONE};
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_int_equal(e.confidence, PG_CONF_HIGH);
	assert_true(fabs(e.lat - 52.5205) < 1e-9);
	assert_true(fabs(e.acc_m - 500) < 1e-6);
	/* a neighbour 10 dB weaker pulls the estimate a little towards itself */
	r.nneigh = 1;
	r.neigh[0] = (struct pg_cell_obs){PG_RADIO_LTE, 262, 1, 1001, 11002, -80, PG_TA_NONE};
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_true(e.lat > 52.5205 && e.lat < 52.5230);
	assert_true(e.lat - 52.5205 < 52.5230 - e.lat); /* closer to the stronger cell */
	assert_int_equal(e.cells_used, 2);
	r.neigh[0].signal = -60; /* now the neighbour is stronger */
	assert_int_equal(pg_cells_estimate(c, &r, &e2), 0);
	assert_true(e2.lat > e.lat);
	/* timing advance 0 in LTE bounds the accuracy near the serving cell */
	r.nneigh = 0;
	r.serving.ta = 0;
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_true(e.acc_m < 80);
	/* unknown serving, known neighbour: medium */
	r.serving.cid = 424242;
	r.serving.ta = PG_TA_NONE;
	r.nneigh = 1;
	r.neigh[0].cid = 11003;
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_int_equal(e.confidence, PG_CONF_MEDIUM);
	/* unknown cell in a known area: low confidence around the area */
	r.nneigh = 0;
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_int_equal(e.confidence, PG_CONF_LOW);
	assert_true(e.acc_m > 1000);
	/* unknown area */
	r.serving.area = 7;
	assert_int_equal(pg_cells_estimate(c, &r, &e), 0);
	assert_int_equal(e.confidence, PG_CONF_NONE);
	pg_cells_free(c);

	/* header that almost matches is an error, not a bad row */
	tmp_write(&t, "bad.csv", "radio,mcc,net\nLTE,1,1\n", path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), PG_EFORMAT);
	tmp_close(&t);
}

static void
msg_for(struct pg_iso_msg *m, const char *tid, const char *mid, const char *stan,
	const struct pg_cell_obs *serving, const struct pg_cell_obs *neigh)
{
	struct pg_cell_report r = {0};
	struct pg_buf b = PG_BUF_INIT(256);

	pg_iso_msg_init(m);
	pg_iso_set_mti(m, "0200");
	pg_iso_set_str(m, 3, "000000");
	pg_iso_set_str(m, 4, "000000001000");
	pg_iso_set_str(m, 11, stan);
	pg_iso_set_str(m, 41, tid);
	if (mid)
		pg_iso_set_str(m, 42, mid);
	if (serving) {
		r.serving = *serving;
		if (neigh) {
			r.nneigh = 1;
			r.neigh[0] = *neigh;
		}
		assert_int_equal(pg_celltlv_encode(&r, &b), 0);
		pg_iso_set(m, 62, b.data, b.len);
	}
	pg_buf_release(&b);
}

static int64_t
count_rows(struct pg_store *st, const char *sql)
{
	struct pg_db_stmt *q;

	assert_int_equal(pg_db_prepare(st->pdb, sql, &q), 0);
	assert_int_equal(pg_db_step(q), 1);
	return pg_db_column_int64(q, 0);
}

static void
test_policy_and_alerts(void **state)
{
	struct tmpstore t;
	char path[256];
	struct pg_import_stats s;
	struct pg_pos_policy pol;
	struct pg_pos_engine *e = NULL;
	struct pg_pos_result res;
	struct pg_iso_msg *m = msg_new(), *resp = msg_new();
	const struct pg_cell_obs home = {PG_RADIO_LTE, 262, 1, 1001, 11001, -70, PG_TA_NONE};
	const struct pg_cell_obs near2k = {PG_RADIO_LTE, 262, 1, 1001, 11003, -70, PG_TA_NONE};
	const struct pg_cell_obs far = {PG_RADIO_LTE, 262, 1, 1201, 12001, -70, PG_TA_NONE};
	const struct pg_cell_obs unknown = {PG_RADIO_LTE, 262, 1, 1001, 5, -70, PG_TA_NONE};
	const struct pg_cell_obs poland = {PG_RADIO_LTE, 260, 2, 5001, 77001, -70, PG_TA_NONE};
	const int64_t t0 = 1700000000000LL, min = 60000;
	json_t *alerts;

	(void)state;
	tmp_open(&t);
	tmp_write(&t, "cells.csv", cells_csv, path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	tmp_write(&t, "m.csv", merchants_csv, path, sizeof(path));
	assert_int_equal(pg_merchants_import(&t.st, path, &s), 0);
	assert_int_equal(s.imported, 3);
	assert_int_equal(s.bad, 2);
	pg_pos_policy_default(&pol);
	pol.alert_n = 2;
	pol.window_ms = 10 * min;
	assert_int_equal(pg_pos_engine_open(&e, &t.st, &pol), 0);

	msg_for(m, "T0000001", "M00000000000001", "000001", &home, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_IN_PLACE);
	assert_string_equal(res.rc, "00");
	assert_true(res.distance_m < 100);
	/* 2 km: moved, first strike, no alert; approve and flag by default */
	msg_for(m, "T0000001", "M00000000000001", "000002", &near2k, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + min, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_int_equal(res.reason, PG_RSN_DISTANCE);
	assert_false(res.alert);
	assert_string_equal(res.rc, "00");
	assert_true(fabs(res.distance_m - 2002) < 30);
	/* outside the window: still no alert */
	msg_for(m, "T0000001", "M00000000000001", "000003", &far, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 12 * min, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_false(res.alert);
	assert_true(res.distance_m > 49000);
	/* inside the window: alert */
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 13 * min, &res), 0);
	assert_true(res.alert);
	assert_int_equal(pg_pos_engine_respond(e, m, &res, resp), 0);
	assert_string_equal(resp->mti, "0210");
	assert_field(pg_iso_dialect_builtin("binary"), resp, 44, "MOVED ALERT");
	assert_field(pg_iso_dialect_builtin("binary"), resp, 11, "000003");
	/* unknown cell: undetermined, never an accusation */
	msg_for(m, "T0000002", "M00000000000002", "000004", &unknown, NULL);
	for (int i = 0; i < 5; i++) {
		/* one ms apart: the same STAN in the same ms is one transaction (pos_txn_once) */
		assert_int_equal(pg_pos_engine_check(e, m, t0 + 14 * min + i, &res), 0);
		assert_int_equal(res.decision, PG_DEC_UNDETERMINED);
		assert_int_equal(res.est.confidence, PG_CONF_LOW);
		assert_false(res.alert);
	}
	/* foreign MCC: an alert at once */
	msg_for(m, "T3      ", "M3             ", "000005", &poland, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 15 * min, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_int_equal(res.reason, PG_RSN_COUNTRY);
	assert_true(res.alert);
	/* unregistered terminal; terminal under another merchant; no cell data */
	msg_for(m, "T9999999", NULL, "000006", &home, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_UNREGISTERED);
	assert_string_equal(res.rc, "03");
	msg_for(m, "T0000001", "M00000000000002", "000007", &home, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_UNREGISTERED);
	msg_for(m, "T0000001", NULL, "000008", NULL, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_UNDETERMINED);
	assert_int_equal(res.reason, PG_RSN_NO_TLV);
	pg_iso_set(m, 62, "\x01\x05xx", 4);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 1, &res), 0);
	assert_int_equal(res.decision, PG_DEC_FORMAT);
	assert_string_equal(res.rc, "30");

	assert_int_equal(pg_pos_engine_pending(e), 14);
	assert_int_equal(pg_pos_engine_commit(e), 0);
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM pos_txn"), 14);
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM pos_alerts"), 2);
	/* the alert links both moved transactions in its window, not the older one */
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM pos_txn t JOIN pos_alerts a ON "
					   "a.id=t.alert_id WHERE a.tid='T0000001'"),
			 2);
	pg_pos_engine_free(e);

	/* restart: the window is rebuilt from the store, a decline action applies */
	pol.decline_moved = 1;
	memcpy(pol.decline_code, "59", 3);
	assert_int_equal(pg_pos_engine_open(&e, &t.st, &pol), 0);
	msg_for(m, "T0000002", "M00000000000002", "000009", &far, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, pg_wall_ms(), &res), 0);
	assert_string_equal(res.rc, "59");
	assert_false(res.alert);
	assert_int_equal(pg_pos_engine_commit(e), 0);
	pg_pos_engine_free(e);
	assert_int_equal(pg_pos_engine_open(&e, &t.st, &pol), 0);
	/* another STAN: the same one in the same ms would be the same transaction */
	msg_for(m, "T0000002", "M00000000000002", "000010", &far, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, pg_wall_ms(), &res), 0);
	assert_true(res.alert); /* the strike before the restart counted */
	assert_int_equal(pg_pos_engine_commit(e), 0);
	pg_pos_engine_free(e);

	/* life cycle */
	alerts = pg_pos_alerts_list(&t.st, "open", 0);
	assert_int_equal(json_array_size(alerts), 3);
	json_decref(alerts);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 1, "acknowledged", "called merchant"), 0);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 1, "acknowledged", NULL), PG_ESTATE);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 1, "closed", NULL), 0);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 1, "acknowledged", NULL), PG_ESTATE);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 2, "closed", NULL), 0);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 99, "closed", NULL), PG_ENOENT);
	assert_int_equal(pg_pos_alert_set_state(&t.st, 3, "open", NULL), PG_EINVAL);
	alerts = pg_pos_alerts_list(&t.st, "closed", 0);
	assert_int_equal(json_array_size(alerts), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(alerts, 0), "note")),
			    "called merchant");
	json_decref(alerts);
	tmp_close(&t);
	free(m);
	free(resp);
}

/*
 * A reload swaps in new cells and merchants (issue 14, every node reloads
 * after an import): decisions use the new ones at once, a terminal's strikes
 * survive the swap (found by terminal id in the new index), and a record
 * decided before the swap but committed after it still has its merchant
 * (under ASan a pointer into the freed index would be a use after free).
 */
static void
test_engine_swap_ref(void **state)
{
	struct tmpstore t;
	char path[256];
	struct pg_import_stats s;
	struct pg_pos_policy pol;
	struct pg_pos_engine *e = NULL;
	struct pg_pos_result res;
	struct pg_iso_msg *m = msg_new();
	struct pg_cells *cells = NULL;
	struct pg_merchants *merchants = NULL;
	const struct pg_cell_obs near2k = {PG_RADIO_LTE, 262, 1, 1001, 11003, -70, PG_TA_NONE};
	const struct pg_cell_obs munich = {PG_RADIO_LTE, 262, 1, 1001, 13001, -70, PG_TA_NONE};
	const struct pg_cell_obs poland = {PG_RADIO_LTE, 260, 2, 5001, 77001, -70, PG_TA_NONE};
	const int64_t t0 = pg_wall_ms();
	json_t *alerts;

	(void)state;
	tmp_open(&t);
	tmp_write(&t, "cells.csv", cells_csv, path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	tmp_write(&t, "m.csv", merchants_csv, path, sizeof(path));
	assert_int_equal(pg_merchants_import(&t.st, path, &s), 0);
	pg_pos_policy_default(&pol);
	pol.alert_n = 2;
	pol.window_ms = 3600000;
	assert_int_equal(pg_pos_engine_open(&e, &t.st, &pol), 0);

	/* before: one strike for T0000001; an alert for T3 left uncommitted;
	 * the Munich cell unknown, T0000007 unregistered */
	msg_for(m, "T0000001", "M00000000000001", "000001", &near2k, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_false(res.alert);
	msg_for(m, "T3      ", "M3             ", "000002", &poland, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_true(res.alert);
	msg_for(m, "T0000002", "M00000000000002", "000003", &munich, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_UNDETERMINED);
	msg_for(m, "T0000007", "M00000000000007", "000004", &near2k, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	assert_int_equal(res.decision, PG_DEC_UNREGISTERED);

	/* an import on another node, loaded as the server's reload thread does */
	tmp_write(&t, "c2.csv",
		  "LTE,262,1,1001,13001,,11.5820,48.1351,500,40,1,1459692000,1700000000,-80\n",
		  path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	tmp_write(&t, "m2.csv", "T0000007,M00000000000007,52.52,13.405,50,1000,262,New\n", path,
		  sizeof(path));
	assert_int_equal(pg_merchants_import(&t.st, path, &s), 0);
	assert_int_equal(pg_cells_load(&t.st, &cells), 0);
	assert_int_equal(pgi_merchants_load(&t.st, &merchants), 0);
	assert_int_equal(pg_pos_engine_swap_ref(e, cells, merchants), 0);

	/* after: the second strike alerts, the new cell and terminal count */
	msg_for(m, "T0000001", "M00000000000001", "000005", &near2k, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 1000, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_true(res.alert);
	msg_for(m, "T0000002", "M00000000000002", "000006", &munich, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 1000, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	assert_true(res.distance_m > 400000);
	msg_for(m, "T0000007", "M00000000000007", "000007", &near2k, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 1000, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);

	/* the record decided before the swap commits with its merchant */
	assert_int_equal(pg_pos_engine_commit(e), 0);
	alerts = pg_pos_alerts_list(&t.st, "open", 0);
	assert_int_equal(json_array_size(alerts), 2);
	for (size_t i = 0; i < json_array_size(alerts); i++) {
		json_t *a = json_array_get(alerts, i);
		json_t *ev = json_object_get(a, "evidence");
		json_t *mer = json_object_get(ev, "merchant");

		assert_non_null(mer);
		assert_true(fabs(json_real_value(json_object_get(mer, "lat")) - 52.52) < 1e-6);
		assert_int_equal(json_integer_value(json_object_get(mer, "mcc")), 262);
	}
	json_decref(alerts);
	pg_pos_engine_free(e);
	tmp_close(&t);
	free(m);
}

/* ---- the server's WAL checkpointer (issue 13 item 10) ---- */

struct srv_thread {
	struct pg_pos_server_cfg cfg;
	struct pg_pos_engine *e;
	volatile int stop;
	int rc;
};

static void *
srv_main(void *p)
{
	struct srv_thread *x = p;

	x->rc = pg_pos_serve(&x->cfg, x->e);
	return NULL;
}

static long long
file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/*
 * The server turns SQLite's automatic checkpoints off because a thread of
 * its own checkpoints instead. When that thread cannot open the database
 * (here: the file was renamed after the server's own connection opened it),
 * automatic checkpoints must stay on, or the WAL grows without limit.
 */
static void
test_checkpointer_cannot_open(void **state)
{
	struct tmpstore t;
	char moved[300], wal[300];
	struct pg_pos_policy pol;
	struct srv_thread x = {0};
	struct pg_pos_client cl;
	struct pg_iso_msg *m = msg_new(), *resp = msg_new();
	const struct pg_cell_obs home = {PG_RADIO_LTE, 262, 1, 1001, 11001, -70, PG_TA_NONE};
	pthread_t th;
	long long walmax = 0;

	(void)state;
	tmp_open(&t);
	assert_int_equal(pg_pos_migrate(&t.st), 0);
	pg_pos_policy_default(&pol);
	assert_int_equal(pg_pos_engine_open(&x.e, &t.st, &pol), 0);
	snprintf(moved, sizeof(moved), "%s/moved.db", t.dir);
	snprintf(wal, sizeof(wal), "%s-wal", t.db);
	assert_int_equal(rename(t.db, moved), 0);
	x.cfg.port = 0;
	x.cfg.dialect = pg_iso_dialect_builtin("binary");
	assert_int_equal(pg_iso_framing_parse(&x.cfg.framing, "bin2"), 0);
	x.cfg.commit_us = 0;
	x.cfg.stop = &x.stop;
	assert_int_equal(pthread_create(&th, NULL, srv_main, &x), 0);
	for (int i = 0; i < 500 && !x.cfg.ready && !x.rc; i++)
		usleep(10000);
	assert_true(x.cfg.ready);
	assert_int_equal(pg_pos_client_connect(&cl, "127.0.0.1", x.cfg.bound_port, x.cfg.dialect,
					       &x.cfg.framing),
			 0);
	/* each answer commits: ~1.5 pages each, far past the 1000-page automatic
	 * checkpoint; with checkpoints off the WAL only ever grows */
	for (int i = 0; i < 2500; i++) {
		char stan[8];
		long long w;

		snprintf(stan, sizeof(stan), "%06d", i % 999999 + 1);
		msg_for(m, "T0000001", "M00000000000001", stan, &home, NULL);
		assert_int_equal(pg_pos_client_exchange(&cl, m, resp, 5000), 0);
		if ((w = file_size(wal)) > walmax)
			walmax = w;
	}
	pg_pos_client_close(&cl);
	x.stop = 1;
	pthread_join(th, NULL);
	assert_int_equal(x.rc, 0);
	/* 1000 pages of 4 KiB plus the transaction that crossed the threshold */
	print_message("largest WAL: %lld bytes\n", walmax);
	assert_true(walmax > 0);
	assert_true(walmax < 1100LL * 4096);
	pg_pos_engine_free(x.e);
	assert_int_equal(rename(moved, t.db), 0);
	tmp_close(&t);
	free(m);
	free(resp);
}

/*
 * JetStream intake (issue 15): every record the engine decides survives the
 * stream codec, and a batch the sink receives twice (a redelivery) is
 * stored once, with its alert opened once and struck once.
 */
static void
test_intake_codec_once(void **state)
{
	struct tmpstore t;
	char path[256], id[160], id2[160];
	struct pg_import_stats s;
	struct pg_pos_policy pol;
	struct pg_pos_engine *e = NULL, *w = NULL;
	struct pg_pos_result res;
	struct pg_pos_batch *b = pg_pos_batch_new(), *got = pg_pos_batch_new();
	struct pg_iso_msg *m = msg_new();
	struct pg_buf buf = PG_BUF_INIT(PG_POS_REC_MAX);
	const struct pg_cell_obs home = {PG_RADIO_LTE, 262, 1, 1001, 11001, -70, PG_TA_NONE};
	const struct pg_cell_obs far = {PG_RADIO_LTE, 262, 1, 1201, 12001, -70, 7};
	const int64_t t0 = 1700000000000LL;

	(void)state;
	tmp_open(&t);
	tmp_write(&t, "cells.csv", cells_csv, path, sizeof(path));
	assert_int_equal(pg_cells_import(&t.st, path, &s), 0);
	tmp_write(&t, "m.csv", merchants_csv, path, sizeof(path));
	assert_int_equal(pg_merchants_import(&t.st, path, &s), 0);
	assert_int_equal(pg_pos_migrate(&t.st), 0);
	pg_pos_policy_default(&pol);
	pol.alert_n = 2;
	assert_int_equal(pg_pos_engine_open(&e, &t.st, &pol), 0);
	msg_for(m, "T0000001", "M00000000000001", "000001", &home, NULL);
	pg_iso_set_str(m, 7, "1125120000");
	assert_int_equal(pg_pos_engine_check(e, m, t0, &res), 0);
	msg_for(m, "T0000001", "M00000000000001", "000002", &far, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 1, &res), 0);
	assert_int_equal(res.decision, PG_DEC_MOVED);
	msg_for(m, "T0000001", "M00000000000001", "000003", &far, NULL);
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 2, &res), 0);
	assert_true(res.alert);
	msg_for(m, "T0000404", NULL, "000004", NULL, NULL); /* unregistered: no merchant */
	assert_int_equal(pg_pos_engine_check(e, m, t0 + 3, &res), 0);
	pg_pos_engine_take(e, b);
	assert_int_equal(pg_pos_batch_n(b), 4);

	for (size_t i = 0; i < pg_pos_batch_n(b); i++) {
		const struct pos_record *r = pgi_pos_batch_rec(b, i);
		struct pos_record d;

		pg_buf_reset(&buf);
		assert_int_equal(pgi_pos_rec_encode(r, &buf), 0);
		assert_int_equal(pgi_pos_rec_decode(buf.data, buf.len, &d), 0);
		assert_int_equal(d.ts, r->ts);
		assert_int_equal(d.window_start, r->window_start);
		assert_string_equal(d.tid, r->tid);
		assert_string_equal(d.mid, r->mid);
		assert_string_equal(d.stan, r->stan);
		assert_string_equal(d.f7, r->f7);
		assert_string_equal(d.mti, r->mti);
		assert_string_equal(d.res.rc, r->res.rc);
		assert_int_equal(d.res.decision, r->res.decision);
		assert_int_equal(d.res.reason, r->res.reason);
		assert_int_equal(d.res.alert, r->res.alert);
		assert_true(d.res.distance_m == r->res.distance_m);
		assert_true(d.res.est.lat == r->res.est.lat);
		assert_int_equal(d.have_cell, r->have_cell);
		if (r->have_cell) {
			assert_int_equal(d.cell.cid, r->cell.cid);
			assert_int_equal(d.cell.ta, r->cell.ta);
		}
		assert_int_equal(d.merchant.known, r->merchant.known);
		assert_true(d.merchant.limit_m == r->merchant.limit_m);
		pgi_pos_rec_id(r, id, sizeof(id));
		pgi_pos_rec_id(&d, id2, sizeof(id2));
		assert_string_equal(id, id2);
		/* one byte short, or one more: refused with a reason, not read past */
		assert_int_equal(pgi_pos_rec_decode(buf.data, buf.len - 1, &d), PG_EFORMAT);
		assert_int_equal(pg_buf_append_byte(&buf, 0), 0);
		assert_int_equal(pgi_pos_rec_decode(buf.data, buf.len, &d), PG_EFORMAT);
		assert_int_equal(pgi_pos_rec_decode(buf.data, buf.len - 1, &d), 0);
		assert_int_equal(pgi_pos_batch_push(got, &d), 0);
	}
	pgi_pos_rec_id(pgi_pos_batch_rec(b, 0), id, sizeof(id));
	assert_string_equal(id, "pos:T0000001:000001:1125120000:1700000000000");

	/* the sink's writer: the same batch twice (a redelivery) is stored once */
	assert_int_equal(pg_pos_engine_open_writer(&w, &t.st, &pol), 0);
	assert_int_equal(pg_pos_batch_write(w, got, NULL), 0);
	assert_int_equal(pg_pos_batch_write(w, got, NULL), 0);
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM pos_txn"), 4);
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM pos_alerts"), 1);
	assert_int_equal(count_rows(&t.st, "SELECT strikes FROM pos_alerts"), 1);
	assert_int_equal(
	    count_rows(&t.st, "SELECT count(*) FROM pos_txn WHERE alert_id IS NOT NULL"), 2);
	assert_int_equal(count_rows(&t.st, "SELECT count(*) FROM event_outbox"), 1);
	pg_buf_release(&buf);
	pg_pos_engine_free(w);
	pg_pos_engine_free(e);
	pg_pos_batch_free(b);
	pg_pos_batch_free(got);
	free(m);
	tmp_close(&t);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_public_so_0800),
	    cmocka_unit_test(test_public_blog_0210),
	    cmocka_unit_test(test_public_bitmaps),
	    cmocka_unit_test(test_roundtrip_all_types),
	    cmocka_unit_test(test_strict_errors),
	    cmocka_unit_test(test_fielddef_errors),
	    cmocka_unit_test(test_framings),
	    cmocka_unit_test(test_celltlv),
	    cmocka_unit_test(test_geo),
	    cmocka_unit_test(test_cells_rows),
	    cmocka_unit_test(test_cells_import_estimate),
	    cmocka_unit_test(test_policy_and_alerts),
	    cmocka_unit_test(test_engine_swap_ref),
	    cmocka_unit_test(test_checkpointer_cannot_open),
	    cmocka_unit_test(test_intake_codec_once),
	};
	/* the store tests again on PostgreSQL (issue 14); the checkpointer is SQLite's */
	const struct CMUnitTest pg_tests[] = {
	    cmocka_unit_test(test_cells_import_estimate),
	    cmocka_unit_test(test_policy_and_alerts),
	};

	if (argc == 2 && strcmp(argv[1], "--postgres") == 0) {
		const char *url = getenv("PAYGUARD_STORE");

		if (!url || !pg_db_url_is_postgres(url) || strlen(url) >= sizeof(pg_url)) {
			fprintf(stderr, "test_pos --postgres: PAYGUARD_STORE names no PostgreSQL "
					"store (run it through tests/fixtures/with_pg_store.sh)\n");
			return 1;
		}
		snprintf(pg_url, sizeof(pg_url), "%s", url);
		return cmocka_run_group_tests_name("pos_postgres", pg_tests, NULL, NULL);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
