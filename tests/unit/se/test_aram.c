/*
 * The GP card's ARA-M applet (GP SEAC v1.1): the permissive default rule
 * before personalisation, STORE DATA DGI 0100 (replace) / 0101 (append) in an
 * SCP03 session, GET DATA [All] FF40 / [Next] FF60 over a 400-byte rule set,
 * refusal of malformed rules, and the rules surviving a power cycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gp_test.h"

#define ARAM	     "A00000015141434C00"
#define SELECT_ARAM  "00A4040009" ARAM "00"
#define ALL	     "80CAFF4000"
#define NEXT	     "80CAFF6000"
#define DEFAULT_FF40 "FF400DE20BE1044F00C100E303D00101"

static const char *const apps[] = {"aram"};

static struct pg_gp_card *
mk(struct gt *t, struct pg_nvm *nvm)
{
	struct pg_gp_config cfg = {.serial = 7, .applets = apps, .n_applets = 1, .nvm = nvm};
	struct pg_gp_card *g = NULL;

	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(t, 0, sizeof(*t));
	t->card = pg_gp_card_card(g);
	return g;
}

/* Five 40-byte REF-AR-DOs: AID F0 00 00 00 00 00 (base+i), a 20-byte hash, ALWAYS. */
static void
rules_hex(char *out, int base)
{
	out[0] = '\0';
	for (int i = 0; i < 5; i++) {
		char one[100];

		snprintf(one, sizeof(one),
			 "E226E11F4F07F00000000000%02XC114%040X"
			 "E303D00101",
			 base + i, base + i);
		strcat(out, one);
	}
}

static void
open_perso(struct gt *t)
{
	struct pg_scp03_keys k;

	gt_expect(t, "00A4040008A00000015100000000", PG_SW_OK);
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(t, &k, 0x01, 0), 0);
	gt_sexpect(t, "80E620000F000009" ARAM "000000", PG_SW_OK);
}

static void
test_default_rule(void **state)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, NULL);

	(void)state;
	gt_expect(&t, SELECT_ARAM, PG_SW_OK);
	gt_expect(&t, ALL, PG_SW_OK);
	gt_data(&t, DEFAULT_FF40);
	gt_expect(&t, NEXT, PG_SW_CONDITIONS); /* nothing pending */
	gt_expect(&t, "80CAFF2100", PG_SW_REF_DATA_NOT_FOUND);
	gt_expect(&t, "00CAFF4000", PG_SW_CLA_NOT_SUPPORTED);
	gt_expect(&t, "80CBFF4000", PG_SW_INS_NOT_SUPPORTED);
	/* Rules are changed only through the ISD, in a secure channel. */
	gt_expect(&t, "00A4040008A00000015100000000", PG_SW_OK);
	gt_expect(&t, "80E2800004010001E2", PG_SW_SECURITY_STATUS);
	pg_gp_card_free(g);
}

static void
test_store_and_read(void **state)
{
	struct gt t;
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	char r1[1024], r2[1024], apdu[2200], want[2200];
	uint8_t whole[512];
	size_t have;

	(void)state;
	assert_int_equal(pg_nvm_open_memory(&nvm, 16384), 0);
	g = mk(&t, nvm);
	rules_hex(r1, 0);
	rules_hex(r2, 5);
	assert_int_equal(strlen(r1), 400);
	open_perso(&t);
	/* Not a REF-AR-DO at the top level: refused, nothing changes. */
	gt_sexpect(&t, "80E2080005010003E10100", PG_SW_WRONG_DATA);
	gt_sexpect(&t, "80E2080004010001E2", PG_SW_WRONG_DATA);		/* truncated REF-AR-DO */
	gt_sexpect(&t, "80E2080004020001E2", PG_SW_REF_DATA_NOT_FOUND); /* unknown DGI */
	/* Append before any replace: conditions. */
	snprintf(apdu, sizeof(apdu), "80E20800CB0101C8%s", r1);
	gt_sexpect(&t, apdu, PG_SW_CONDITIONS);
	snprintf(apdu, sizeof(apdu), "80E20800CB0100C8%s", r1);
	gt_sexpect(&t, apdu, PG_SW_OK);
	snprintf(apdu, sizeof(apdu), "80E28801CB0101C8%s", r2);
	gt_sexpect(&t, apdu, PG_SW_OK);

	/* 400 bytes of rules: FF40 82 0190, [All] gives 256 bytes, [Next] the other 149. */
	snprintf(want, sizeof(want), "FF40820190%s%s", r1, r2);
	gt_expect(&t, SELECT_ARAM, PG_SW_OK);
	gt_expect(&t, ALL, PG_SW_OK);
	assert_int_equal(t.n, 256);
	memcpy(whole, t.r, t.n);
	have = t.n;
	gt_expect(&t, NEXT, PG_SW_OK);
	assert_int_equal(t.n, 149);
	memcpy(whole + have, t.r, t.n);
	have += t.n;
	gt_expect(&t, NEXT, PG_SW_CONDITIONS);
	{
		uint8_t e[512];
		int n = pg_hex_decode(e, sizeof(e), want);

		assert_int_equal((size_t)n, have);
		assert_memory_equal(e, whole, have);
	}

	/* The rules are persistent: a power cycle reads them back. */
	pg_gp_card_free(g);
	g = mk(&t, nvm);
	gt_expect(&t, SELECT_ARAM, PG_SW_OK);
	gt_expect(&t, ALL, PG_SW_OK);
	assert_int_equal(t.n, 256);
	assert_memory_equal(whole, t.r, 256);

	/* Replacing with no rules at all: an empty FF40 (nobody gets access). */
	open_perso(&t);
	gt_sexpect(&t, "80E2880003010000", PG_SW_OK);
	gt_expect(&t, SELECT_ARAM, PG_SW_OK);
	gt_expect(&t, ALL, PG_SW_OK);
	gt_data(&t, "FF4000");
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_rule),
	    cmocka_unit_test(test_store_and_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
