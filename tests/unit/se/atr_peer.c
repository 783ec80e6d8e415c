/*
 * Every ATR the project produces, read by a peer (issue 13 item 11):
 * pcsc-tools' ATR_analysis (Debian package pcsc-tools) must parse each one
 * without a complaint — no wrong checksum, no "wrong ATR" in the historical
 * bytes, nothing reserved — and payguard's own check (pgi_atr_check) must
 * accept it. The ATRs: the card runtime's default (se sim, the NFC switch's
 * demo SEs), the GP card's default, what a host sees on each link with a
 * card role (T=0 and T=1 rebuild the interface bytes, SPI/I2C carry it in
 * the CIP), the VSE's, the NFC switch's own, the SE OS's test card. Two
 * controls show the check has teeth: the old default ATR (category 00 over
 * raw text) and a wrong TCK are called wrong by ATR_analysis and refused.
 *
 * ATR_analysis looks its smartcard_list.txt up in $XDG_CACHE_HOME and
 * downloads it when it is missing or old: the test points it at a fresh copy
 * of the packaged list, so it runs offline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/link.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "payguard/seos.h"
#include "se/link/atr.h"
#ifdef PG_TEST_VSE
#include "payguard/arena.h"
#include "payguard/vse.h"
#include <fcntl.h>
#include <jansson.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern const struct pg_link_ops pgi_link_t0_ops, pgi_link_t1_ops, pgi_link_swp_ops,
    pgi_link_spi_ops, pgi_link_i2c_ops, pgi_link_ccid_ops;

static char cache[64];

static int
setup(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cache, sizeof(cache), "/tmp/pg-atr-XXXXXX");
	if (!mkdtemp(cache))
		return -1;
	/* A fresh copy: ATR_analysis then has no reason to go online. */
	snprintf(cmd, sizeof(cmd), "cp /usr/share/pcsc/smartcard_list.txt %s/ && touch %s/*", cache,
		 cache);
	return system(cmd) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cache);
	return system(cmd) == 0 ? 0 : -1;
}

/* Runs ATR_analysis on the ATR; returns its output (static) and exit status in *status. */
static const char *
atr_analysis(const uint8_t *atr, size_t n, int *status)
{
	static char out[16384];
	char cmd[512];
	size_t o = 0, got;
	FILE *p;
	int k;

	k = snprintf(cmd, sizeof(cmd), "XDG_CACHE_HOME=%s ATR_analysis '", cache);
	for (size_t i = 0; i < n; i++)
		k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%s%02X", i ? " " : "", atr[i]);
	snprintf(cmd + k, sizeof(cmd) - (size_t)k, "' 2>&1");
	p = popen(cmd, "r");
	assert_non_null(p);
	while (o + 1 < sizeof(out) && (got = fread(out + o, 1, sizeof(out) - 1 - o, p)) > 0)
		o += got;
	out[o] = 0;
	*status = pclose(p);
	return out;
}

/* What ATR_analysis prints when it finds fault (its own wording, /usr/bin/ATR_analysis). */
static const char *const complaints[] = {
    "WRONG CHECKSUM", "ERROR!",	  "Error in the ATR", "wrong ATR", "RFU",
    "memory card",    "Updating", /* it went for a new list: the test would depend on the network */
};

static int
complains(const char *out)
{
	for (size_t k = 0; k < sizeof(complaints) / sizeof(complaints[0]); k++)
		if (strstr(out, complaints[k]))
			return 1;
	return 0;
}

static void
expect_clean(const char *what, const uint8_t *atr, size_t n)
{
	int status;
	const char *out = atr_analysis(atr, n, &status);

	print_message("%s:\n%s\n", what, out);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "Historical bytes"));
	assert_false(complains(out));
	/* T=1 is offered on every card role but plain T=0: TCK present and right. */
	if (n > 2 && (atr[1] & 0x80))
		assert_non_null(strstr(out, "(correct checksum)"));
	assert_int_equal(pgi_atr_check(atr, n), 0);
}

static void
expect_card(const char *what, const struct pg_card *card)
{
	uint8_t atr[PG_ATR_MAX];
	size_t n = sizeof(atr);

	assert_int_equal(card->atr(card->ctx, atr, &n), 0);
	expect_clean(what, atr, n);
}

static void
test_controls(void **state)
{
	/* The default ATR before issue 13: category 00 over the raw text "payguard". */
	static const uint8_t old[] = {0x3B, 0x8C, 0x80, 0x01, 0x00, 'p',  'a',	'y', 'g',
				      'u',  'a',  'r',	'd',  0x01, 0x90, 0x00, 0x91};
	uint8_t bad[PG_ATR_MAX];
	size_t n;
	int status;

	(void)state;
	assert_true(complains(atr_analysis(old, sizeof(old), &status)));
	assert_int_equal(pgi_atr_check(old, sizeof(old)), PG_EFORMAT);
	n = (size_t)pg_card_atr_build(bad, sizeof(bad), (const uint8_t *)"payguard", 8);
	bad[n - 1] ^= 0x5A;
	assert_non_null(strstr(atr_analysis(bad, n, &status), "WRONG CHECKSUM"));
	assert_int_equal(pgi_atr_check(bad, n), PG_ECORRUPT);
	/* No TCK although T=1 is offered; a reserved category; a truncated object. */
	assert_int_equal(pgi_atr_check(bad, n - 1), PG_ETRUNC);
	assert_int_equal(pgi_atr_check((const uint8_t *)"\x3B\x02\x81\x00", 4), PG_EFORMAT);
	assert_int_equal(pgi_atr_check((const uint8_t *)"\x3B\x02\x80\x58", 4), PG_EFORMAT);
	assert_int_equal(pgi_atr_check((const uint8_t *)"\x3B\x00", 2), 0);
}

static void
test_card_runtime_atrs(void **state)
{
	static const struct pg_link_ops *const links[] = {&pgi_link_t0_ops,  &pgi_link_t1_ops,
							  &pgi_link_swp_ops, &pgi_link_spi_ops,
							  &pgi_link_i2c_ops, &pgi_link_ccid_ops};
	struct pg_card_rt *rt = NULL;
	struct pg_gp_card *gp = NULL;
	struct pg_gp_config gcfg = {.serial = 7};

	(void)state;
	assert_int_equal(pg_card_sim_new(&rt, 0x50470001u, NULL, 0), 0);
	expect_card("se sim default (card runtime)", pg_card_rt_card(rt));
	/* What a host reads on each link with a card role (vpcd passes the card's own). */
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		struct pg_link *l = NULL;
		uint8_t atr[PG_ATR_MAX];
		size_t n = sizeof(atr);
		char what[64];

		assert_int_equal(pg_link_open_memory(&l, links[i], pg_card_rt_card(rt), NULL), 0);
		assert_int_equal(pg_link_power_on(l, atr, &n), 0);
		snprintf(what, sizeof(what), "host view of se sim on %s", links[i]->name);
		expect_clean(what, atr, n);
		pg_link_close(l);
	}
	pg_card_rt_free(rt);
	assert_int_equal(pg_gp_card_new(&gp, &gcfg), 0);
	expect_card("GP card default", pg_gp_card_card(gp));
	pg_gp_card_free(gp);
}

static void
test_switch_and_seos_atrs(void **state)
{
	struct pg_nfcsw *sw = NULL;
	struct pg_gp_card *d = NULL;
	struct pg_gp_card *tc = NULL;
	struct pg_scp03_keys k = {.len = 16, .kvn = 0x30};
	struct pg_seos_sim_card_cfg tcfg = {.serial = 3, .keys = &k};

	(void)state;
	assert_int_equal(pg_nfcsw_new(&sw), 0);
	expect_card("NFC switch (PC/SC part 3)", pg_nfcsw_card(sw));
	pg_nfcsw_free(sw);
	assert_int_equal(
	    pg_nfcsw_sim_se_new(&d, 9, 1, pg_nfcsw_demo_apps, pg_nfcsw_demo_napps, "uicc"), 0);
	expect_card("NFC switch simulated SE", pg_gp_card_card(d));
	pg_gp_card_free(d);
	memset(k.enc, 0x40, sizeof(k.enc));
	memset(k.mac, 0x41, sizeof(k.mac));
	memset(k.dek, 0x42, sizeof(k.dek));
	assert_int_equal(pg_seos_sim_card_new(&tc, &tcfg), 0);
	expect_card("SE OS test card", pg_gp_card_card(tc));
	pg_gp_card_free(tc);
}

#ifdef PG_TEST_VSE
static void
test_vse_atr(void **state)
{
	const char *js = "{\"name\":\"atr\",\"arena\":\"4M\",\"pmem\":16384,\"keys\":{\"master\":"
			 "\"404142434445464748494A4B4C4D4E4F\"},\"expose\":{\"link\":\"t1\"}}";
	struct pg_vse_request r;
	struct pg_arena *a = NULL;
	struct pg_vse_card *c = NULL;
	char path[] = "/tmp/pg-atr-pmem-XXXXXX";
	json_t *j = json_loads(js, 0, NULL);
	int fd = mkstemp(path);

	(void)state;
	assert_non_null(j);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pg_vse_request_from_json(&r, j), 0);
	json_decref(j);
	memcpy(r.cin, "PGVS\x00\x00\x00\x01", 8);
	r.has_cin = 1;
	assert_int_equal(pg_vse_request_resolve_keys(&r), 0);
	assert_int_equal(pg_vse_pmem_create(path, r.pmem_size), 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pg_arena_new(&a, (size_t)r.arena_size), 0);
	assert_int_equal(pg_vse_card_new(&c, &r, 0x01020304u, a, fd), 0);
	expect_card("VSE", pg_vse_card_card(c));
	pg_vse_card_free(c);
	pg_arena_free(a);
	close(fd);
	unlink(path);
}
#endif

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_controls),
	    cmocka_unit_test(test_card_runtime_atrs),
	    cmocka_unit_test(test_switch_and_seos_atrs),
#ifdef PG_TEST_VSE
	    cmocka_unit_test(test_vse_atr),
#endif
	};

	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, setup, teardown);
}
