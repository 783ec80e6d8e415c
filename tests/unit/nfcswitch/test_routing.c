/*
 * NFC switch registry and routing (issue 8): exact AID, partial AID with
 * first/next occurrence (ISO/IEC 7816-4 SELECT P2 00/02) across SEs,
 * priorities, the three conflict policies, life cycle filtering, and the
 * routing configuration parser's accepted and rejected lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/nfcswitch.h"

#include <string.h>

static const uint8_t visa[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
static const uint8_t visa2[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x20, 0x10};
static const uint8_t mc[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};

static struct pg_nfcsw *
three_slots(void)
{
	struct pg_nfcsw *sw;

	assert_int_equal(pg_nfcsw_new(&sw), 0);
	assert_int_equal(pg_nfcsw_add_slot(sw, "a", 5), 0);
	assert_int_equal(pg_nfcsw_add_slot(sw, "b", 3), 1);
	assert_int_equal(pg_nfcsw_add_slot(sw, "c", 9), 2);
	return sw;
}

static void
test_exact_and_missing(void **state)
{
	struct pg_nfcsw *sw = three_slots();
	struct pg_nfcsw_app app;

	(void)state;
	assert_int_equal(pg_nfcsw_register(sw, 0, visa, sizeof(visa), 0x07, 0, "VISA", 1), 0);
	assert_int_equal(pg_nfcsw_register(sw, 1, mc, sizeof(mc), 0x07, 0, "MC", 1), 0);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), 0);
	assert_string_equal(app.label, "VISA");
	assert_int_equal(app.priority, 5); /* the SE's priority */
	assert_int_equal(pg_nfcsw_route(sw, mc, sizeof(mc), 0, &app), 1);
	assert_int_equal(pg_nfcsw_route(sw, visa2, sizeof(visa2), 0, &app), PG_ENOENT);
	/* A longer AID than any registered one does not match a shorter entry. */
	{
		uint8_t longer[8];

		memcpy(longer, visa, 7);
		longer[7] = 1;
		assert_int_equal(pg_nfcsw_route(sw, longer, 8, 0, &app), PG_ENOENT);
	}
	pg_nfcsw_free(sw);
}

static void
test_partial_first_next(void **state)
{
	struct pg_nfcsw *sw = three_slots();
	struct pg_nfcsw_app app;
	static const uint8_t rid[] = {0xA0, 0x00, 0x00, 0x00, 0x03};

	(void)state;
	assert_int_equal(pg_nfcsw_register(sw, 2, visa2, sizeof(visa2), 0x07, 0, "V2", 1), 0);
	assert_int_equal(pg_nfcsw_register(sw, 0, visa, sizeof(visa), 0x07, 0, "V1", 1), 0);
	assert_int_equal(pg_nfcsw_register(sw, 1, mc, sizeof(mc), 0x07, 0, "MC", 1), 0);
	/* First occurrence: occurrences are ordered by AID bytes. */
	assert_int_equal(pg_nfcsw_route(sw, rid, sizeof(rid), 0, &app), 0);
	assert_string_equal(app.label, "V1");
	/* Without a current application, "next" is the first. */
	assert_int_equal(pg_nfcsw_route(sw, rid, sizeof(rid), 1, &app), 0);
	pg_nfcsw_free(sw);
}

static void
test_conflict_policies(void **state)
{
	struct pg_nfcsw *sw = three_slots();
	struct pg_nfcsw_app app;

	(void)state;
	/* Same AID in a (SE priority 5, registered first) and b (priority 3). */
	assert_int_equal(pg_nfcsw_register(sw, 0, visa, sizeof(visa), 0x07, 0, "in a", 1), 0);
	assert_int_equal(pg_nfcsw_register(sw, 1, visa, sizeof(visa), 0x07, 0, "in b", 1), 0);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), 1); /* priority 3 wins */
	pg_nfcsw_set_policy(sw, PG_NFCSW_POLICY_FIRST);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), 0); /* first registered */
	pg_nfcsw_set_policy(sw, PG_NFCSW_POLICY_REFUSE);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), PG_EEXIST);
	/* Equal priorities under PRIORITY: the tie goes to the first registered. */
	pg_nfcsw_set_policy(sw, PG_NFCSW_POLICY_PRIORITY);
	assert_int_equal(pg_nfcsw_register(sw, 2, mc, sizeof(mc), 0x07, 4, "c", 1), 0);
	assert_int_equal(pg_nfcsw_register(sw, 0, mc, sizeof(mc), 0x07, 4, "a", 1), 0);
	assert_int_equal(pg_nfcsw_route(sw, mc, sizeof(mc), 0, &app), 2);
	pg_nfcsw_free(sw);
}

static void
test_lifecycle(void **state)
{
	struct pg_nfcsw *sw = three_slots();
	struct pg_nfcsw_app app;

	(void)state;
	/* Installed-only and locked applications are not routable. */
	assert_int_equal(pg_nfcsw_register(sw, 0, visa, sizeof(visa), 0x03, 0, NULL, 0), 0);
	assert_int_equal(pg_nfcsw_register(sw, 1, visa, sizeof(visa), 0x87, 0, NULL, 0), 0);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), PG_ENOENT);
	assert_int_equal(pg_nfcsw_register(sw, 2, visa, sizeof(visa), 0x0F, 0, NULL, 0), 0);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), 2);
	/* The refuse policy counts live entries only: no conflict here. */
	pg_nfcsw_set_policy(sw, PG_NFCSW_POLICY_REFUSE);
	assert_int_equal(pg_nfcsw_route(sw, visa, sizeof(visa), 0, &app), 2);
	pg_nfcsw_free(sw);
}

static void
test_many_aids(void **state)
{
	struct pg_nfcsw *sw = three_slots();
	struct pg_nfcsw_app app;
	uint8_t aid[9] = {0xA0, 0x00, 0x00, 0x09, 0x99};

	(void)state;
	for (uint32_t i = 0; i < 20000; i++) {
		aid[5] = (uint8_t)(i >> 24), aid[6] = (uint8_t)(i >> 16),
		aid[7] = (uint8_t)(i >> 8), aid[8] = (uint8_t)i;
		assert_int_equal(pg_nfcsw_register(sw, (int)(i % 3), aid, 9, 0x07, 0, NULL, 0), 0);
	}
	for (uint32_t i = 0; i < 20000; i += 997) {
		aid[5] = (uint8_t)(i >> 24), aid[6] = (uint8_t)(i >> 16),
		aid[7] = (uint8_t)(i >> 8), aid[8] = (uint8_t)i;
		assert_int_equal(pg_nfcsw_route(sw, aid, 9, 0, &app), (int)(i % 3));
		assert_memory_equal(app.aid, aid, 9);
	}
	pg_nfcsw_free(sw);
}

static void
test_config(void **state)
{
	struct pg_nfcsw_conf c;
	static const char good[] = "# switch\n"
				   "policy refuse\n"
				   "se uicc link=swp addr=unix:/tmp/x.sock priority=2\n"
				   "se ese link=spi addr=tcp:127.0.0.1:7001\n"
				   "default ese\n"
				   "app uicc A0000000041010 priority=2 label=MASTERCARD payment\n"
				   "app ese A0000000031010   # no attributes\n";
	static const char *const bad[] = {
	    "policy maybe\n",
	    "se x link=swp\n",
	    "se x link=swp addr=unix:/a\nse x link=t1 addr=unix:/b\n",
	    "app x A000\n",
	    "app x A0000000041010 priority=16\n",
	    "app x A0000000041010 label=ABCDEFGHIJKLMNOPQ\n",
	    "app x A0000000041010 colour=red\n",
	    "default nowhere\n",
	    "frobnicate\n",
	    "se a$b link=swp addr=unix:/a\n",
	    "app x A00000000410101122334455667788990011\n",
	};

	(void)state;
	assert_int_equal(pg_nfcsw_conf_parse(&c, good, strlen(good)), 0);
	assert_int_equal(c.policy, PG_NFCSW_POLICY_REFUSE);
	assert_int_equal(c.n_se, 2);
	assert_string_equal(c.se[0].link, "swp");
	assert_int_equal(c.se[0].priority, 2);
	assert_string_equal(c.default_se, "ese");
	assert_int_equal(c.n_apps, 2);
	assert_int_equal(c.apps[0].flags, PG_NFCSW_APP_PAYMENT);
	assert_string_equal(c.apps[0].label, "MASTERCARD");
	assert_int_equal(c.apps[1].aid_len, 7);
	pg_nfcsw_conf_release(&c);
	/* _release leaves the struct empty and reusable; NULL is a no-op */
	assert_null(c.apps);
	assert_int_equal(c.n_apps, 0);
	pg_nfcsw_conf_release(&c);
	pg_nfcsw_conf_release(NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = pg_nfcsw_conf_parse(&c, bad[i], strlen(bad[i]));

		if (rc != PG_EFORMAT)
			fail_msg("accepted or wrong code (%d) for: %s", rc, bad[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exact_and_missing), cmocka_unit_test(test_partial_first_next),
	    cmocka_unit_test(test_conflict_policies), cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_many_aids),	      cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
