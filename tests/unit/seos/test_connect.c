/*
 * The connect flow of seed "Establishment of communication connection between
 * mobile device and secure element" against the SE OS's test SE (the GP card
 * of src/se/card with the SE OS's card profile, sim.c) over an in-process
 * T=1 link: identify, SCP03 authenticate (master key diversified by SE
 * identity, and per-SE keys), cache miss then hit (fewer APDUs, same
 * configuration), a bumped version and a tampered record cause a fresh read,
 * wrong keys reject the SE with a reason in the SE list; the device key's mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/seos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], db[128], keyp[128];
static const char *master_hex = "404142434445464748494A4B4C4D4E4F";

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/pg-seos-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/pg.db", dir);
	snprintf(keyp, sizeof(keyp), "%s/device.key", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct pg_gp_card *
card(uint32_t serial, const char *master, uint32_t version)
{
	uint8_t m[16];
	struct pg_seos_sim_card_cfg cfg = {
	    .serial = serial, .master = m, .master_len = 16, .version = version};
	struct pg_gp_card *tc;

	assert_int_equal(pg_hex_decode(m, sizeof(m), master), 16);
	assert_int_equal(pg_seos_sim_card_new(&tc, &cfg), 0);
	return tc;
}

static int
connect(struct pg_seos *os, struct pg_gp_card *tc, const char *name, struct pg_seos_conn *c)
{
	struct pg_link *l;
	int rc;

	assert_int_equal(pg_link_open_memory(&l, pg_link_find("t1"), pg_gp_card_card(tc), NULL), 0);
	rc = pg_seos_connect(os, name, "memory", l, c);
	pg_link_close(l);
	return rc;
}

struct row {
	char name[64];
	int state;
	char reason[160];
	int n;
};

static int
find_row(void *arg, const struct pg_seos_entry *e)
{
	struct row *r = arg;

	if (strcmp(e->name, r->name) == 0) {
		r->state = e->state;
		snprintf(r->reason, sizeof(r->reason), "%s", e->reason);
		r->n++;
	}
	return 0;
}

static void
test_miss_hit_version_tamper(void **state)
{
	struct pg_seos_keystore *ks;
	struct pg_seos *os;
	struct pg_gp_card *tc;
	struct pg_seos_conn c1, c2, c3, c4;
	char text[128];
	uint64_t before;

	(void)state;
	snprintf(text, sizeof(text), "# test\nmaster 30 %s\n", master_hex);
	assert_int_equal(pg_seos_keystore_parse(&ks, text), 0);
	assert_int_equal(pg_seos_open(&os, db, keyp, ks), 0);
	tc = card(0x1234, master_hex, 7);

	before = pg_gp_card_apdus(tc);
	if (connect(os, tc, "t1-card", &c1) != 0)
		fail_msg("connect: %s", c1.reason);
	assert_int_equal(c1.state, PG_SEOS_AUTHENTICATED);
	assert_int_equal(c1.cache, 0);
	assert_int_equal(c1.refresh_why, 1);
	assert_int_equal(c1.apdus, pg_gp_card_apdus(tc) - before);
	assert_int_equal(c1.cfg.version, 7);
	assert_string_equal(c1.cfg.link, "t1");
	assert_true(c1.cfg.ifsc >= 32); /* as the T=1 card role announced it in its ATR */
	assert_int_equal(c1.cfg.ext_len, 1);
	assert_int_equal(c1.cfg.channels, 8);
	assert_int_equal(c1.cfg.napps, 3);
	/* GET STATUS gives each life cycle: echo selectable, ARA-M personalised (its rules) */
	assert_int_equal(c1.cfg.app[1].life_cycle, PG_GP_APP_SELECTABLE);
	assert_int_equal(c1.cfg.app[2].life_cycle, PG_GP_APP_PERSONALIZED);
	assert_int_equal(c1.cfg.cin_len, 8);
	assert_non_null(c1.cfg.ara);
	assert_string_equal(c1.id_hex, "50470002000012340001");

	before = pg_gp_card_apdus(tc);
	assert_int_equal(connect(os, tc, "t1-card", &c2), 0);
	assert_int_equal(c2.cache, 1);
	assert_int_equal(c2.apdus, pg_gp_card_apdus(tc) - before);
	assert_true(c2.apdus < c1.apdus);
	print_message("cache miss: %llu APDUs, hit: %llu APDUs\n", (unsigned long long)c1.apdus,
		      (unsigned long long)c2.apdus);
	/* Same result: the cached configuration equals the one read. */
	assert_int_equal(c2.cfg.napps, c1.cfg.napps);
	assert_memory_equal(c2.cfg.app, c1.cfg.app, sizeof(c1.cfg.app));
	assert_int_equal(c2.cfg.ara_len, c1.cfg.ara_len);
	assert_memory_equal(c2.cfg.ara, c1.cfg.ara, c1.cfg.ara_len);
	assert_int_equal(c2.cfg.ifsc, c1.cfg.ifsc);

	/* Version bump: a fresh read. */
	assert_int_equal(pg_gp_card_set_config_version(tc, 8), 0);
	assert_int_equal(connect(os, tc, "t1-card", &c3), 0);
	assert_int_equal(c3.cache, 0);
	assert_int_equal(c3.refresh_why, 2);
	assert_int_equal(c3.apdus, c1.apdus);
	assert_int_equal(c3.cfg.version, 8);

	/* Tampered record (one byte of the stored configuration flipped): a fresh read. */
	assert_int_equal(pg_store_exec(pg_seos_store(os),
				       "UPDATE seos_cache SET config = "
				       "substr(config,1,10) || x'EE' || substr(config,12)"),
			 0);
	assert_int_equal(connect(os, tc, "t1-card", &c4), 0);
	assert_int_equal(c4.cache, 0);
	assert_int_equal(c4.refresh_why, 3);
	pg_seos_config_release(&c4.cfg);
	/* ... and the record it wrote verifies again. */
	assert_int_equal(connect(os, tc, "t1-card", &c4), 0);
	assert_int_equal(c4.cache, 1);

	pg_seos_config_release(&c1.cfg);
	pg_seos_config_release(&c2.cfg);
	pg_seos_config_release(&c3.cfg);
	pg_seos_config_release(&c4.cfg);
	pg_seos_config_release(NULL); /* _release is NULL-safe */
	pg_gp_card_free(tc);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
}

static void
test_wrong_keys_rejected(void **state)
{
	struct pg_seos_keystore *ks;
	struct pg_seos *os;
	struct pg_gp_card *tc, *tc2;
	struct pg_seos_conn c;
	struct row r = {.name = "bad-card"};
	char text[256];

	(void)state;
	snprintf(text, sizeof(text), "master 30 %s\n", master_hex);
	assert_int_equal(pg_seos_keystore_parse(&ks, text), 0);
	assert_int_equal(pg_seos_open(&os, db, keyp, ks), 0);
	tc = card(0x99, "000102030405060708090A0B0C0D0E0F", 1); /* other master */
	assert_int_equal(connect(os, tc, "bad-card", &c), PG_EAUTH);
	assert_int_equal(c.state, PG_SEOS_REJECTED);
	assert_non_null(strstr(c.reason, "authentication failed"));
	assert_int_equal(pg_seos_list(os, find_row, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.state, PG_SEOS_REJECTED);
	assert_non_null(strstr(r.reason, "authentication failed"));
	assert_int_equal(pg_seos_detach(os, "bad-card", "removed"), 0);
	r.n = 0;
	assert_int_equal(pg_seos_list(os, find_row, &r), 0);
	assert_int_equal(r.state, PG_SEOS_DETACHED);
	pg_seos_config_release(&c.cfg);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);

	/* Per-SE keys take precedence over the master. */
	tc2 = card(0x99, master_hex, 1);
	{
		struct pg_scp03_keys k;
		uint8_t id[PG_SEOS_ID_LEN], m[16];
		char idh[21], kh[33], line[200];

		assert_int_equal(pg_seos_sim_id(0x99, id), 0);
		pg_hex_encode(idh, id, sizeof(id));
		/* tc's own (wrongly diversified) keys, given per SE: now it passes. */
		assert_int_equal(pg_hex_decode(m, 16, "000102030405060708090A0B0C0D0E0F"), 16);
		assert_int_equal(pg_scp03_diversify(m, 16, id, sizeof(id), 0x30, &k), 0);
		pg_hex_encode(kh, k.enc, 16);
		snprintf(line, sizeof(line), "master 30 %s\nse %s 30 %s ", master_hex, idh, kh);
		pg_hex_encode(kh, k.mac, 16);
		strcat(line, kh);
		strcat(line, " ");
		pg_hex_encode(kh, k.dek, 16);
		strcat(line, kh);
		assert_int_equal(pg_seos_keystore_parse(&ks, line), 0);
	}
	assert_int_equal(pg_seos_open(&os, db, keyp, ks), 0);
	assert_int_equal(connect(os, tc, "bad-card", &c), 0);
	assert_int_equal(c.state, PG_SEOS_AUTHENTICATED);
	pg_seos_config_release(&c.cfg);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
	pg_gp_card_free(tc);
	pg_gp_card_free(tc2);

	/* Bad key store lines are refused with the line number. */
	assert_int_equal(pg_seos_keystore_parse(&ks, "master 30 0011\n"), PG_EFORMAT);
	assert_int_equal(pg_seos_keystore_parse(&ks, "foo\n"), PG_EFORMAT);
}

/* "master-cin": SEs whose CIN has the prefix get keys diversified by CIN (VSEs). */
static void
test_keystore_master_cin(void **state)
{
	struct pg_seos_keystore *ks;
	struct pg_scp03_keys k, want;
	uint8_t id[PG_SEOS_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, m[16], m2[16];
	static const uint8_t cin[8] = {'P', 'G', 'V', 'S', 0, 0, 0, 7};
	static const uint8_t other[8] = {'X', 'G', 'V', 'S', 0, 0, 0, 7};
	char text[256];

	(void)state;
	assert_int_equal(pg_hex_decode(m, 16, master_hex), 16);
	assert_int_equal(pg_hex_decode(m2, 16, "000102030405060708090A0B0C0D0E0F"), 16);
	snprintf(text, sizeof(text), "master 30 %s\nmaster-cin 30 %s 50475653\n", master_hex,
		 "000102030405060708090A0B0C0D0E0F");
	assert_int_equal(pg_seos_keystore_parse(&ks, text), 0);
	assert_int_equal(pg_seos_keystore_wants_cin(ks), 1);
	/* CIN with the prefix: the CIN master, CIN as diversification data. */
	assert_int_equal(pg_seos_keystore_find_cin(ks, id, cin, sizeof(cin), &k), 0);
	assert_int_equal(pg_scp03_diversify(m2, 16, cin, sizeof(cin), 0x30, &want), 0);
	assert_memory_equal(k.enc, want.enc, 16);
	assert_memory_equal(k.mac, want.mac, 16);
	assert_memory_equal(k.dek, want.dek, 16);
	/* Other CIN, or none: the identity master as before. */
	assert_int_equal(pg_scp03_diversify(m, 16, id, sizeof(id), 0x30, &want), 0);
	assert_int_equal(pg_seos_keystore_find_cin(ks, id, other, sizeof(other), &k), 0);
	assert_memory_equal(k.enc, want.enc, 16);
	assert_int_equal(pg_seos_keystore_find(ks, id, &k), 0);
	assert_memory_equal(k.mac, want.mac, 16);
	pg_seos_keystore_free(ks);
	/* Only the CIN master: an SE outside the prefix has no keys. */
	assert_int_equal(pg_seos_keystore_parse(&ks, "master-cin 30 "
						     "000102030405060708090A0B0C0D0E0F 5047\n"),
			 0);
	assert_int_equal(pg_seos_keystore_find_cin(ks, id, other, sizeof(other), &k), PG_ENOENT);
	pg_seos_keystore_free(ks);
	assert_int_equal(pg_seos_keystore_parse(&ks, "master-cin 30 0011 50\n"), PG_EFORMAT);
	assert_int_equal(pg_seos_keystore_parse(&ks, "master-cin 30 "
						     "000102030405060708090A0B0C0D0E0F ZZ\n"),
			 PG_EFORMAT);
}

/* An SE without the version object is read every time: no stale record can be served. */
static void
test_no_version_always_read(void **state)
{
	struct pg_seos_keystore *ks;
	struct pg_seos *os;
	uint8_t m[16];
	struct pg_seos_sim_card_cfg cfg = {
	    .serial = 0x77, .master = m, .master_len = 16, .version = 1, .no_version = 1};
	struct pg_gp_card *tc;
	struct pg_seos_conn c;
	char text[128];

	(void)state;
	snprintf(text, sizeof(text), "master 30 %s\n", master_hex);
	assert_int_equal(pg_seos_keystore_parse(&ks, text), 0);
	assert_int_equal(pg_seos_open(&os, db, keyp, ks), 0);
	assert_int_equal(pg_hex_decode(m, sizeof(m), master_hex), 16);
	assert_int_equal(pg_seos_sim_card_new(&tc, &cfg), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(connect(os, tc, "unversioned", &c), 0);
		assert_int_equal(c.cache, 0);
		assert_int_equal(c.refresh_why, 4);
		assert_int_equal(c.cfg.napps, 3);
		pg_seos_config_release(&c.cfg);
	}
	pg_gp_card_free(tc);
	pg_seos_close(os);
	pg_seos_keystore_free(ks);
}

static void
test_device_key_mode(void **state)
{
	struct pg_seos *os;

	(void)state;
	assert_int_equal(pg_seos_open(&os, db, keyp, NULL), 0);
	pg_seos_close(os);
	assert_int_equal(chmod(keyp, 0644), 0);
	assert_int_equal(pg_seos_open(&os, db, keyp, NULL), PG_EPERM);
	assert_int_equal(chmod(keyp, 0600), 0);
	assert_int_equal(pg_seos_open(&os, db, keyp, NULL), 0);
	pg_seos_close(os);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_miss_hit_version_tamper, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_keys_rejected, setup, teardown),
	    cmocka_unit_test(test_keystore_master_cin),
	    cmocka_unit_test_setup_teardown(test_no_version_always_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_device_key_mode, setup, teardown),
	};
	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
