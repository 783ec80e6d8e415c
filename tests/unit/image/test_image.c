/* Unit tests of the image area: Debian version order, deb822 round trip,
 * archive path cleaning, qcow2 header checks, the overlay writer read back
 * through the reader, and GPT CRC checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "image/image_int.h"

#include "payguard/error.h"
#include "payguard/image.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void
test_debver(void **state)
{
	static const struct {
		const char *a, *b;
		int r;
	} cases[] = {
	    {"1.0", "1.0", 0},		 {"1.0", "1.0-0", 0},
	    {"1.0~rc1", "1.0", -1},	 {"1.0~~", "1.0~", -1},
	    {"1.0", "1.0+b1", -1},	 {"1:0.1", "2.0", 1},
	    {"0:2.0", "2.0", 0},	 {"2.0-1", "2.0-1~bpo1", 1},
	    {"1.10", "1.9", 1},		 {"1.01", "1.1", 0},
	    {"1.0a", "1.0", 1},		 {"1.0-1", "1.0-1.1", -1},
	    {"7.4.0-6", "7.4.0-10", -1}, {"1.2.3-4+deb12u1", "1.2.3-4", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = pg_debver_cmp(cases[i].a, cases[i].b);

		assert_int_equal(r < 0 ? -1 : r > 0, cases[i].r);
		r = pg_debver_cmp(cases[i].b, cases[i].a);
		assert_int_equal(r < 0 ? -1 : r > 0, -cases[i].r);
	}
	assert_int_equal(pg_debver_check("1:2.3-4"), 0);
	assert_int_equal(pg_debver_check("a1.0"), PG_EFORMAT);
	assert_int_equal(pg_debver_check("1.0-"), PG_EFORMAT);
	assert_int_equal(pg_debver_check("x:1"), PG_EFORMAT);
}

static void
test_deb822(void **state)
{
	const char *in =
	    "Package: a\nVersion: 1\nConffiles:\n /etc/x 0123\n /etc/y 4567\n"
	    "Description: short\n long line\n .\n\n\nPackage: b\nStatus: install ok installed\n";
	struct pg_deb822 d, again;
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(pgi_deb822_parse(in, strlen(in), &d), 0);
	assert_int_equal(d.n, 2);
	assert_string_equal(pgi_para_get(&d.p[0], "package"), "a");
	assert_string_equal(pgi_para_get(&d.p[0], "Conffiles"), "\n /etc/x 0123\n /etc/y 4567");
	assert_string_equal(pgi_para_get(&d.p[0], "Description"), "short\n long line\n .");
	assert_int_equal(pgi_para_set(&d.p[1], "Status", "install ok unpacked"), 0);
	assert_int_equal(pgi_deb822_write(&d, &out, &len), 0);
	assert_int_equal(pgi_deb822_parse(out, len, &again), 0);
	assert_int_equal(again.n, 2);
	assert_string_equal(pgi_para_get(&again.p[1], "Status"), "install ok unpacked");
	assert_string_equal(pgi_para_get(&again.p[0], "Conffiles"), "\n /etc/x 0123\n /etc/y 4567");
	pgi_deb822_release(&again);
	pgi_deb822_release(&d);
	free(out);
	assert_int_equal(pgi_deb822_parse(" orphan\n", 8, &d), PG_EFORMAT);
	assert_int_equal(pgi_deb822_parse("no colon\n", 9, &d), PG_EFORMAT);
}

static void
test_path_clean(void **state)
{
	char out[64];

	assert_int_equal(pgi_path_clean("./usr//bin/./x", out, sizeof(out)), 0);
	assert_string_equal(out, "usr/bin/x");
	assert_int_equal(pgi_path_clean("./", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(pgi_path_clean("./usr/../../etc/passwd", out, sizeof(out)), PG_EFORMAT);
	assert_int_equal(pgi_path_clean("/etc/passwd", out, sizeof(out)), PG_EFORMAT);
	assert_int_equal(pgi_path_clean("a/..", out, sizeof(out)), PG_EFORMAT);
	assert_int_equal(pgi_path_clean("..foo/bar..", out, sizeof(out)), 0);
}

static void
test_qcow2_header(void **state)
{
	uint8_t h[512] = {0};
	struct pg_qcow2_hdr q;

	memcpy(h, "QFI\xfb", 4);
	h[7] = 3;     /* version */
	h[23] = 16;   /* cluster_bits */
	h[29] = 0x10; /* size 1 MiB */
	h[39] = 1;    /* l1_size */
	h[45] = 1;    /* l1 at 65536 */
	h[99] = 4;    /* refcount order */
	h[103] = 104; /* header length */
	assert_int_equal(pgi_qcow2_parse_header(h, sizeof(h), 3 * 65536, &q), 0);
	assert_int_equal(q.size, 1 << 20);
	/* L1 past the end of a short file */
	assert_int_equal(pgi_qcow2_parse_header(h, sizeof(h), 65536, &q), PG_ECORRUPT);
	h[23] = 30;
	assert_int_equal(pgi_qcow2_parse_header(h, sizeof(h), 3 * 65536, &q), PG_ECORRUPT);
	h[23] = 16;
	h[7] = 4;
	assert_int_equal(pgi_qcow2_parse_header(h, sizeof(h), 3 * 65536, &q), PG_ENOTSUP);
	h[7] = 3;
	h[35] = 1; /* AES encryption */
	assert_int_equal(pgi_qcow2_parse_header(h, sizeof(h), 3 * 65536, &q), PG_ENOTSUP);
	assert_int_equal(pgi_qcow2_parse_header(h, 40, 40, &q), PG_ETRUNC);
}

static void
test_overlay_roundtrip(void **state)
{
	char dir[] = "/tmp/pg-image-unit.XXXXXX", base[64], ov[64];
	struct pg_bdev *b = NULL, *o = NULL, *r = NULL;
	uint8_t buf[8192], chk[8192];
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.img", dir);
	snprintf(ov, sizeof(ov), "%s/ov.qcow2", dir);
	fd = open(base, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	memset(buf, 0xAB, sizeof(buf));
	buf[510] = 0x55;
	buf[511] = 0xAA; /* an MBR signature so the sniffer calls it raw */
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(ftruncate(fd, 3 << 20), 0);
	close(fd);
	assert_int_equal(pgi_bdev_open(base, &b), 0);
	assert_int_equal(pgi_qcow2_overlay_create(ov, base, "raw", b, &o), 0);
	/* partial write at an odd offset copies the rest of the cluster */
	memset(buf, 0x11, 100);
	assert_int_equal(pgi_bdev_write(o, 4000, buf, 100), 0);
	memset(buf, 0x22, sizeof(buf));
	assert_int_equal(pgi_bdev_write(o, (2 << 20) + 65536 - 10, buf, 20), 0);
	assert_int_equal(pgi_qcow2_overlay_finish(o), 0);
	pgi_bdev_close(o);
	assert_int_equal(pgi_bdev_open(ov, &r), 0);
	assert_string_equal(r->fmt, "qcow2");
	assert_int_equal(r->size, 3 << 20);
	assert_int_equal(pgi_bdev_read(r, 0, chk, sizeof(chk)), 0);
	assert_int_equal(chk[0], 0xAB);
	assert_int_equal(chk[3999], 0xAB);
	assert_int_equal(chk[4000], 0x11);
	assert_int_equal(chk[4099], 0x11);
	assert_int_equal(chk[4100], 0xAB);
	assert_int_equal(pgi_bdev_read(r, (2 << 20) + 65536 - 11, chk, 22), 0);
	assert_int_equal(chk[0], 0);
	assert_int_equal(chk[1], 0x22);
	assert_int_equal(chk[20], 0x22);
	assert_int_equal(chk[21], 0);
	pgi_bdev_close(r);
	/* the base is untouched */
	assert_int_equal(pgi_bdev_open(base, &b), 0);
	assert_int_equal(pgi_bdev_read(b, 4000, chk, 1), 0);
	assert_int_equal(chk[0], 0xAB);
	pgi_bdev_close(b);
	unlink(ov);
	unlink(base);
	rmdir(dir);
}

static void
test_sniff(void **state)
{
	uint8_t h[4096] = {0};

	assert_string_equal(pgi_image_sniff((const uint8_t *)"QFI\xfb", 4, 1 << 20), "qcow2");
	assert_string_equal(pgi_image_sniff((const uint8_t *)"KDMV", 4, 1 << 20),
			    "VMDK sparse image");
	h[510] = 0x55;
	h[511] = 0xAA;
	assert_string_equal(pgi_image_sniff(h, sizeof(h), 1 << 20), "raw");
	h[510] = 0;
	assert_non_null(strstr(pgi_image_sniff(h, sizeof(h), 1 << 20), "unrecognised"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_debver),
	    cmocka_unit_test(test_deb822),
	    cmocka_unit_test(test_path_clean),
	    cmocka_unit_test(test_qcow2_header),
	    cmocka_unit_test(test_overlay_roundtrip),
	    cmocka_unit_test(test_sniff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
