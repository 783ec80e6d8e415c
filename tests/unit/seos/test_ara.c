/*
 * ARA-M rules (GlobalPlatform SE Access Control v1.1): parsing of GET DATA
 * [All] data (FF40 / E2 / E1 {4F|C0, C1} / E3 {D0, D1}) with its refusals, the
 * four precedence levels of SEAC 3.4 with the "rules exist for this AID"
 * stop, combination NEVER > ALWAYS > filters, and APDU filters with the
 * channel bits of CLA ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/seos.h"

#include <stdio.h>
#include <string.h>

static uint8_t buf[4096];

/* Builds a TLV into out; returns its length. Lengths up to 65535. */
static size_t
tlv(uint8_t *out, unsigned tag, const uint8_t *v, size_t n)
{
	size_t i = 0;

	if (tag > 0xFF)
		out[i++] = (uint8_t)(tag >> 8);
	out[i++] = (uint8_t)tag;
	if (n < 0x80) {
		out[i++] = (uint8_t)n;
	} else if (n < 0x100) {
		out[i++] = 0x81;
		out[i++] = (uint8_t)n;
	} else {
		out[i++] = 0x82;
		out[i++] = (uint8_t)(n >> 8);
		out[i++] = (uint8_t)n;
	}
	if (n)
		memmove(out + i, v, n);
	return i + n;
}

/* One REF-AR-DO: aid NULL = all (4F 00), aid_len 0 with aid != NULL = C0. */
static size_t
rule(uint8_t *out, const uint8_t *aid, size_t aid_len, const uint8_t *hash, size_t hash_len,
     const uint8_t *ar, size_t ar_len)
{
	uint8_t ref[64], e[512], a[300];
	size_t n = 0, m;

	if (!aid)
		n += tlv(ref, 0x4F, NULL, 0);
	else if (aid_len == 0)
		n += tlv(ref, 0xC0, NULL, 0);
	else
		n += tlv(ref, 0x4F, aid, aid_len);
	n += tlv(ref + n, 0xC1, hash, hash_len);
	m = tlv(e, 0xE1, ref, n);
	m += tlv(e + m, 0xE3, ar, ar_len);
	(void)a;
	return tlv(out, 0xE2, e, m);
}

static const uint8_t AID1[] = {0xF0, 'p', 'a', 'y', 'g', 'u', 'a', 'r', 'd', 0x01};
static const uint8_t AID2[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
static const uint8_t ALWAYS[] = {0xD0, 0x01, 0x01};
static const uint8_t NEVER[] = {0xD0, 0x01, 0x00};

static int
parse(struct pg_ara_rules *r, const uint8_t *rules, size_t n)
{
	static uint8_t all[4096];
	size_t m = tlv(all, 0xFF40, rules, n);

	return pg_ara_parse(r, all, m);
}

static void
test_parse_shapes(void **state)
{
	struct pg_ara_rules r;
	uint8_t filt[2 + 16] = {0xD0, 16,   0x00, 0xA4, 0x04, 0x00, 0xFF, 0xFF, 0xFF,
				0x00, 0x80, 0xCA, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00};
	uint8_t hash[20];
	size_t n = 0;

	(void)state;
	memset(hash, 0xAA, sizeof(hash));
	n += rule(buf + n, AID1, sizeof(AID1), hash, 20, ALWAYS, 3);
	n += rule(buf + n, NULL, 0, NULL, 0, filt, sizeof(filt));
	n += rule(buf + n, AID2, 0, NULL, 0, NEVER, 3); /* C0: implicit application */
	assert_int_equal(parse(&r, buf, n), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.rule[0].aid_kind, PG_ARA_AID_SPECIFIC);
	assert_int_equal(r.rule[0].aid_len, sizeof(AID1));
	assert_int_equal(r.rule[0].hash_len, 20);
	assert_int_equal(r.rule[0].apdu, PG_ARA_APDU_ALWAYS);
	assert_int_equal(r.rule[1].aid_kind, PG_ARA_AID_ALL);
	assert_int_equal(r.rule[1].apdu, PG_ARA_APDU_FILTER);
	assert_int_equal(r.rule[1].nfilters, 2);
	assert_int_equal(r.rule[2].aid_kind, PG_ARA_AID_DEFAULT);
	assert_int_equal(r.rule[2].apdu, PG_ARA_APDU_NEVER);
	pg_ara_rules_release(&r);
	/* _release: empty and reusable, twice and NULL are no-ops */
	assert_null(r.rule);
	assert_int_equal(r.n, 0);
	pg_ara_rules_release(&r);
	pg_ara_rules_release(NULL);

	/* No rules at all is valid (FF40 00). */
	assert_int_equal(parse(&r, buf, 0), 0);
	assert_int_equal(r.n, 0);
	pg_ara_rules_release(&r);
}

static void
test_parse_refusals(void **state)
{
	struct pg_ara_rules r;
	uint8_t bad[64];
	const uint8_t odd_filter[] = {0xD0, 0x03, 1, 2, 3};
	const uint8_t bad_access[] = {0xD0, 0x01, 0x02};
	const uint8_t unknown[] = {0xD5, 0x01, 0x01};
	uint8_t h19[19] = {0};
	size_t n;

	(void)state;
	n = rule(bad, AID1, sizeof(AID1), NULL, 0, odd_filter, sizeof(odd_filter));
	assert_int_equal(parse(&r, bad, n), PG_EFORMAT);
	n = rule(bad, AID1, sizeof(AID1), NULL, 0, bad_access, sizeof(bad_access));
	assert_int_equal(parse(&r, bad, n), PG_EFORMAT);
	n = rule(bad, AID1, sizeof(AID1), NULL, 0, unknown, sizeof(unknown));
	assert_int_equal(parse(&r, bad, n), PG_EFORMAT);
	n = rule(bad, AID1, sizeof(AID1), h19, sizeof(h19), ALWAYS, 3);
	assert_int_equal(parse(&r, bad, n), PG_EFORMAT);
	n = rule(bad, AID1, 3, NULL, 0, ALWAYS, 3); /* AID of 3 bytes */
	assert_int_equal(parse(&r, bad, n), PG_EFORMAT);
	/* Wrong outer tag, truncated, trailing bytes. */
	const uint8_t notff40[] = {0xFF, 0x41, 0x00};
	assert_int_equal(pg_ara_parse(&r, notff40, 3), PG_EFORMAT);
	const uint8_t trunc[] = {0xFF, 0x40, 0x05, 0xE2, 0x00};
	assert_int_equal(pg_ara_parse(&r, trunc, sizeof(trunc)), PG_ETRUNC);
	const uint8_t empty_e2[] = {0xFF, 0x40, 0x02, 0xE2, 0x00};
	assert_true(pg_ara_parse(&r, empty_e2, sizeof(empty_e2)) < 0);
	const uint8_t trail[] = {0xFF, 0x40, 0x00, 0x00};
	assert_int_equal(pg_ara_parse(&r, trail, sizeof(trail)), PG_EFORMAT);
}

static void
test_precedence(void **state)
{
	struct pg_ara_rules r;
	struct pg_ara_client wallet, other, third;
	struct pg_ara_access a;
	size_t n = 0;

	(void)state;
	pg_ara_client_from(&wallet, "wallet", 6);
	pg_ara_client_from(&other, "other", 5);
	pg_ara_client_from(&third, "third", 5);
	/* AID1: wallet (SHA-256) always, other never. AID2: nothing specific. All AIDs: third. */
	n += rule(buf + n, AID1, sizeof(AID1), wallet.sha256, 32, ALWAYS, 3);
	n += rule(buf + n, AID1, sizeof(AID1), other.sha1, 20, NEVER, 3);
	n += rule(buf + n, NULL, 0, third.sha1, 20, ALWAYS, 3);
	assert_int_equal(parse(&r, buf, n), 0);

	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &wallet, &a), 0);
	assert_int_equal(a.level, 1);
	assert_int_equal(a.apdu, PG_ARA_APDU_ALWAYS);
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &other, &a), PG_EPERM);
	/* third has an all-AIDs rule, but AID1 has rules of its own: denied. */
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &third, &a), PG_EPERM);
	/* AID2 has no rule of its own: the all-AIDs rule for third applies (level 3). */
	assert_int_equal(pg_ara_decide(&r, AID2, sizeof(AID2), &third, &a), 0);
	assert_int_equal(a.level, 3);
	assert_int_equal(pg_ara_decide(&r, AID2, sizeof(AID2), &wallet, &a), PG_EPERM);
	pg_ara_rules_release(&r);

	/* Level 2 (specific AID, all clients) beats level 3; level 4 is the fallback. */
	n = 0;
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, NEVER, 3);
	n += rule(buf + n, NULL, 0, wallet.sha1, 20, ALWAYS, 3);
	n += rule(buf + n, NULL, 0, NULL, 0, ALWAYS, 3);
	assert_int_equal(parse(&r, buf, n), 0);
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &wallet, &a), PG_EPERM);
	assert_int_equal(a.level, 2);
	assert_int_equal(pg_ara_decide(&r, AID2, sizeof(AID2), &wallet, &a), 0);
	assert_int_equal(a.level, 3);
	assert_int_equal(pg_ara_decide(&r, AID2, sizeof(AID2), &other, &a), 0);
	assert_int_equal(a.level, 4);
	/* The implicitly selected application has no C0 rule: all-AIDs rules apply. */
	assert_int_equal(pg_ara_decide(&r, NULL, 0, &other, &a), 0);
	pg_ara_rules_release(&r);
}

static void
test_combine_and_filters(void **state)
{
	struct pg_ara_rules r;
	struct pg_ara_client c;
	struct pg_ara_access a;
	/* SELECT by name (any P2) and GET DATA 9F7F only. */
	const uint8_t f1[] = {0xD0, 0x08, 0x00, 0xA4, 0x04, 0x00, 0xFF, 0xFF, 0xFF, 0x00};
	const uint8_t f2[] = {0xD0, 0x08, 0x80, 0xCA, 0x9F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF};
	size_t n = 0;
	uint8_t ap[5];

	(void)state;
	pg_ara_client_from(&c, "wallet", 6);
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, f1, sizeof(f1));
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, f2, sizeof(f2));
	assert_int_equal(parse(&r, buf, n), 0);
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &c, &a), 0);
	assert_int_equal(a.apdu, PG_ARA_APDU_FILTER);
	assert_int_equal(a.nfilters, 2);
	assert_int_equal(pg_hex_decode(ap, sizeof(ap), "00A404000A"), 5);
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), 0);
	ap[0] = 0x03; /* same command on logical channel 3 */
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), 0);
	ap[0] = 0x43; /* further interindustry class, channel 7 */
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), 0);
	assert_int_equal(pg_hex_decode(ap, sizeof(ap), "80CA9F7F00"), 5);
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), 0);
	assert_int_equal(pg_hex_decode(ap, sizeof(ap), "80CA004500"), 5);
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), PG_EPERM);
	assert_int_equal(pg_hex_decode(ap, sizeof(ap), "80E2000000"), 5);
	assert_int_equal(pg_ara_check_apdu(&a, ap, 5), PG_EPERM);
	pg_ara_rules_release(&r);

	/* ALWAYS beside filters wins; NEVER beside ALWAYS wins. */
	n = 0;
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, f1, sizeof(f1));
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, ALWAYS, 3);
	assert_int_equal(parse(&r, buf, n), 0);
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &c, &a), 0);
	assert_int_equal(a.apdu, PG_ARA_APDU_ALWAYS);
	pg_ara_rules_release(&r);
	n += rule(buf + n, AID1, sizeof(AID1), NULL, 0, NEVER, 3);
	assert_int_equal(parse(&r, buf, n), 0);
	assert_int_equal(pg_ara_decide(&r, AID1, sizeof(AID1), &c, &a), PG_EPERM);
	pg_ara_rules_release(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_shapes),
	    cmocka_unit_test(test_parse_refusals),
	    cmocka_unit_test(test_precedence),
	    cmocka_unit_test(test_combine_and_filters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
