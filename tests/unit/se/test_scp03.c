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

static uint8_t b1[BIG], b2[BIG], b3[BIG], b4[BIG];

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

/* ----------------------------------------------------- card test glue */

static const char *isdr_aid = "A0000005591010FFFFFFFF8900000100";

/* A stand-in for the card runtime: SCP03 in front of a tiny command handler. */
struct tcard {
	struct pg_scp03_card cfg;
	struct pg_scp03 s;
};

static uint8_t cplain[BIG], cdata[BIG];

/*
 * INS E0 echoes: data = header of the plain command || its data reversed;
 * P1 01 answers 6A80 (with data, which R-MAC levels must drop), P1 02 a
 * warning 6310 with data. INS D8 is PUT KEY.
 */
static int
card_xchg(struct tcard *c, const uint8_t *cmd, size_t n, uint8_t *resp, size_t cap)
{
	struct pg_capdu a;
	uint16_t sw = 0x9000;
	size_t dn = 0;
	int r;

	if (n >= 2 && (cmd[0] & 0x80) && (cmd[1] == 0x50 || cmd[1] == 0x82))
		return pg_scp03_card_process(&c->s, &c->cfg, cmd, n, resp, cap);
	r = pg_scp03_card_unwrap(&c->s, cmd, n, cplain, sizeof(cplain), &sw);
	if (r < 0) {
		resp[0] = (uint8_t)(sw >> 8);
		resp[1] = (uint8_t)sw;
		return 2;
	}
	assert_int_equal(pg_capdu_parse(&a, cplain, (size_t)r), 0);
	if (a.ins == 0xD8) {
		r = pg_scp03_card_put_key(&c->s, &c->cfg, cplain, (size_t)r, cdata, sizeof(cdata));
		assert_true(r >= 2);
		dn = (size_t)r - 2;
		sw = pg_rapdu_sw(cdata, (size_t)r);
	} else {
		memcpy(cdata, cplain, 4);
		for (size_t i = 0; i < a.lc; i++)
			cdata[4 + i] = a.data[a.lc - 1 - i];
		dn = 4 + a.lc;
		if (a.p1 == 1)
			sw = 0x6A80;
		else if (a.p1 == 2)
			sw = 0x6310;
	}
	return pg_scp03_card_wrap(&c->s, cdata, dn, sw, resp, cap);
}

static void
card_init(struct tcard *c, const struct pg_scp03_keys *k, uint8_t i_param)
{
	memset(c, 0, sizeof(*c));
	c->cfg.keys = *k;
	c->cfg.i_param = i_param;
	memcpy(c->cfg.div_data, "\x11\x22\x33\x44\x55\x66\x77\x88\x99\xAA", 10);
	c->cfg.aid_len = hx(c->cfg.aid, isdr_aid);
}

static void
rand_keys(struct pg_scp03_keys *k, size_t len, uint8_t kvn, unsigned seed)
{
	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		k->enc[i] = (uint8_t)(seed >> 16);
		k->mac[i] = (uint8_t)(seed >> 8);
		k->dek[i] = (uint8_t)(seed >> 24);
	}
	k->len = len;
	k->kvn = kvn;
}

/* INITIALIZE UPDATE + EXTERNAL AUTHENTICATE through the card; returns the EA's SW. */
static uint16_t
host_open(struct pg_scp03 *h, struct tcard *c, const struct pg_scp03_keys *k, uint8_t sl,
	  size_t chlen)
{
	uint8_t cmd[64], rsp[128];
	int n, r;

	n = pg_scp03_host_init_update(h, k->kvn, NULL, chlen, cmd, sizeof(cmd));
	assert_int_equal(n, 6 + (int)chlen);
	r = card_xchg(c, cmd, (size_t)n, rsp, sizeof(rsp));
	n = pg_scp03_host_auth(h, k, rsp, (size_t)r, sl, cmd, sizeof(cmd));
	if (n < 0)
		return 0;
	r = card_xchg(c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(r, 2);
	pg_scp03_host_auth_done(h, rsp, 2);
	return pg_rapdu_sw(rsp, 2);
}

/* Wraps, exchanges, unwraps; returns the plain response length in b3. */
static int
host_cmd(struct pg_scp03 *h, struct tcard *c, const uint8_t *cmd, size_t n)
{
	int w, r;

	w = pg_scp03_host_wrap(h, cmd, n, b1, BIG);
	assert_true(w > 0);
	r = card_xchg(c, b1, (size_t)w, b2, BIG);
	assert_true(r >= 2);
	return pg_scp03_host_unwrap(h, b2, (size_t)r, b3, BIG);
}

/* ----------------------------------------------- card role on the vectors */

static void
test_pysim_card(void **state)
{
	(void)state;
	for (size_t t = 0; t < sizeof(vecs) / sizeof(vecs[0]); t++) {
		const struct vec *v = &vecs[t];
		const char *cases[4] = {v->c1, v->c2, v->c3, v->c4};
		struct pg_scp03_keys k;
		struct tcard c;
		uint8_t exp[256];
		uint16_t sw;
		size_t n, en;
		int r;

		vec_keys(v, &k);
		card_init(&c, &k, 0x70);
		memset(c.cfg.div_data, 0, 10);
		en = hx(exp, v->iu_rsp);
		c.cfg.seq = exp[en - 1] - 1u; /* the card increments before use */
		exp[en++] = 0x90;
		exp[en++] = 0x00;
		n = hx(b1, v->iu_cmd);
		r = card_xchg(&c, b1, n, b2, BIG);
		assert_int_equal(r, (int)en);
		assert_memory_equal(b2, exp, en);
		assert_int_equal(c.cfg.seq, exp[en - 3]);
		n = hx(b1, v->ea_cmd);
		r = card_xchg(&c, b1, n, b2, BIG);
		assert_hex(b2, r, "9000");
		assert_true(pg_scp03_is_open(&c.s));
		n = hx(b1, v->eid_cmd);
		r = pg_scp03_card_unwrap(&c.s, b1, n, b2, BIG, &sw);
		assert_hex(b2, r, plain_eid_cmd);
		n = hx(b1, plain_eid_rsp);
		r = pg_scp03_card_wrap(&c.s, b1, n - 2, 0x9000, b2, BIG);
		assert_int_equal(r, (int)hx(b3, v->eid_rsp) + 2);
		assert_memory_equal(b2, b3, (size_t)r - 2);
		for (int i = 0; i < 4; i++) {
			n = hx(b1, cases[i]);
			r = pg_scp03_card_unwrap(&c.s, b1, n, b2, BIG, &sw);
			assert_hex(b2, r, plain_cases[i]);
			assert_int_equal(pg_scp03_card_wrap(&c.s, NULL, 0, 0x9000, b2, BIG) >= 2,
					 1);
		}
		pg_scp03_close(&c.s);
	}
}

/* ------------------------------------------------------------ end to end */

static size_t
mac_bytes(size_t chlen)
{
	return chlen == 16 ? 16 : 8;
}

static void
run_session(size_t klen, uint8_t sl, size_t chlen, uint8_t i_param)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 31, 32, 200, 239, 240, 255, 256, 300, 4000};
	struct pg_scp03_keys k;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[5000];
	int r;

	rand_keys(&k, klen, 0x30, (unsigned)(klen * 131 + sl * 7 + chlen));
	card_init(&c, &k, i_param);
	assert_int_equal(host_open(&h, &c, &k, sl, chlen), 0x9000);
	assert_true(pg_scp03_is_open(&h));
	assert_true(pg_scp03_is_open(&c.s));
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		for (int le = 0; le < 2; le++) {
			size_t dl = lens[li], n = 4;
			struct pg_capdu a = {.cla = 0x80, .ins = 0xE0, .p1 = 0, .p2 = (uint8_t)li};

			for (size_t i = 0; i < dl; i++)
				cmd[5000 - 1 - i] = (uint8_t)(i * 7 + li);
			a.data = cmd + 5000 - dl;
			a.lc = dl;
			a.has_le = le;
			a.le = le ? 256 : 0;
			n = (size_t)pg_capdu_encode(&a, 0, b4, BIG);
			r = host_cmd(&h, &c, b4, n);
			assert_int_equal(r, (int)(4 + dl + 2));
			assert_memory_equal(b3, "\x80\xE0\x00", 3);
			for (size_t i = 0; i < dl; i++)
				assert_int_equal(b3[4 + i], a.data[dl - 1 - i]);
			assert_int_equal(pg_rapdu_sw(b3, (size_t)r), 0x9000);
		}
	}
	/* An error status word: R-MAC levels return it bare (Amd D 6.2.5). */
	r = host_cmd(&h, &c, (const uint8_t *)"\x80\xE0\x01\x00\x02\xAA\xBB", 7);
	if (sl & PG_SCP03_SL_RMAC)
		assert_hex(b3, r, "6A80");
	else
		assert_hex(b3, r, "80E00100BBAA6A80");
	/* A warning keeps its data and its protection. */
	r = host_cmd(&h, &c, (const uint8_t *)"\x80\xE0\x02\x00\x02\xAA\xBB", 7);
	assert_hex(b3, r, "80E00200BBAA6310");
	/* Logical channel 5 (further interindustry class): SM is CLA b6. */
	r = host_cmd(&h, &c, (const uint8_t *)"\x41\xE0\x00\x00\x01\x5A", 6);
	assert_hex(b3, r, "41E000005A9000");
	if (sl) {
		/* GP further class (channel 5): C1 goes out as E1 and comes back as C1. */
		r = pg_scp03_host_wrap(&h, (const uint8_t *)"\xC1\xE0\x00\x00", 4, b1, BIG);
		assert_int_equal(r, (int)(5 + mac_bytes(chlen)));
		assert_int_equal(b1[0], 0xE1);
		r = card_xchg(&c, b1, (size_t)r, b2, BIG);
		r = pg_scp03_host_unwrap(&h, b2, (size_t)r, b3, BIG);
		assert_hex(b3, r, "C1E000009000");
		/* DF would become FF: refused. */
		assert_int_equal(
		    pg_scp03_host_wrap(&h, (const uint8_t *)"\xDF\xE0\x00\x00", 4, b1, BIG),
		    PG_EINVAL);
	}
	assert_true(pg_scp03_is_open(&h));
	pg_scp03_close(&h);
	pg_scp03_close(&c.s);
}

static void
test_e2e_levels(void **state)
{
	static const uint8_t sls[] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33};

	(void)state;
	for (size_t kl = 16; kl <= 32; kl += 8)
		for (size_t i = 0; i < sizeof(sls); i++) {
			run_session(kl, sls[i], 8, 0x70);  /* S8, pseudo-random challenge */
			run_session(kl, sls[i], 8, 0x60);  /* S8, random challenge */
			run_session(kl, sls[i], 16, 0x71); /* S16 */
		}
}

static void
test_level_not_supported(void **state)
{
	struct pg_scp03_keys k;
	struct pg_scp03 h = {0};
	struct tcard c;

	(void)state;
	rand_keys(&k, 16, 0x30, 1);
	card_init(&c, &k, 0x10); /* no R-MAC, no R-ENC */
	assert_int_equal(host_open(&h, &c, &k, 0x11, 8), 0);
	assert_false(pg_scp03_is_open(&h));
	assert_int_equal(host_open(&h, &c, &k, 0x03, 8), 0x9000);
}

static void
test_extended_only_on_the_wire(void **state)
{
	struct pg_scp03_keys k;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[300];
	uint16_t sw;
	int w, r;

	(void)state;
	rand_keys(&k, 16, 0x30, 12);
	card_init(&c, &k, 0x70);
	assert_int_equal(host_open(&h, &c, &k, 0x03, 8), 0x9000);
	memcpy(cmd, "\x80\xE2\x00\x00\xF0", 5);
	memset(cmd + 5, 0x5A, 240);
	cmd[245] = 0x00;
	/* 240 bytes pad to 256, plus the C-MAC: only extended length carries it. */
	w = pg_scp03_host_wrap(&h, cmd, 246, b1, BIG);
	assert_int_equal(w, 7 + 256 + 8 + 2);
	assert_memory_equal(b1, "\x84\xE2\x00\x00\x00\x01\x08", 7);
	assert_memory_equal(b1 + w - 2, "\x01\x00", 2); /* Ne 256 in extended form */
	/* The card hands on the short form the host started with. */
	r = pg_scp03_card_unwrap(&c.s, b1, (size_t)w, b2, BIG, &sw);
	assert_int_equal(r, 246);
	assert_memory_equal(b2, cmd, 246);
	/* The host strips R-MAC and R-ENCRYPTION in place. */
	assert_int_equal(host_open(&h, &c, &k, 0x33, 8), 0x9000);
	w = pg_scp03_host_wrap(&h, (const uint8_t *)"\x80\xE0\x00\x00\x02\x01\x02", 7, b1, BIG);
	r = card_xchg(&c, b1, (size_t)w, b2, BIG);
	assert_int_equal(r, 16 + 8 + 2);
	r = pg_scp03_host_unwrap(&h, b2, (size_t)r, b2, BIG);
	assert_hex(b2, r, "80E0000002019000");
}

/* ------------------------------------------------------------- refusals */

static void
test_wrong_host_cryptogram(void **state)
{
	struct pg_scp03_keys k, wrong;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[64], rsp[64];
	int n, r;

	(void)state;
	rand_keys(&k, 16, 0x30, 2);
	card_init(&c, &k, 0x70);
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	n = pg_scp03_host_auth(&h, &k, rsp, (size_t)r, 0x03, cmd, sizeof(cmd));
	assert_int_equal(n, 21);
	cmd[5] ^= 0x01; /* host cryptogram */
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6300");
	assert_false(pg_scp03_is_open(&c.s));
	assert_int_equal(pg_scp03_host_auth_done(&h, rsp, 2), PG_EAUTH);
	assert_false(pg_scp03_is_open(&h));
	/* Nothing secured gets through afterwards. */
	r = card_xchg(&c, (const uint8_t *)"\x84\xE0\x00\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08",
		      13, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6982");
	/* A host with the wrong keys rejects the card's cryptogram itself. */
	rand_keys(&wrong, 16, 0x30, 3);
	assert_int_equal(host_open(&h, &c, &wrong, 0x03, 8), 0);
	assert_false(pg_scp03_is_open(&h));
	/* A bad C-MAC on EXTERNAL AUTHENTICATE (right cryptogram) is 6982. */
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	n = pg_scp03_host_auth(&h, &k, rsp, (size_t)r, 0x03, cmd, sizeof(cmd));
	cmd[n - 1] ^= 0x80;
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6982");
	assert_false(pg_scp03_is_open(&c.s));
}

static void
test_replayed_external_authenticate(void **state)
{
	struct pg_scp03_keys k;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t iu[64], ea[64], rsp[64];
	int n, en, r;

	(void)state;
	rand_keys(&k, 16, 0x30, 4);
	card_init(&c, &k, 0x70);
	/* EXTERNAL AUTHENTICATE with no INITIALIZE UPDATE before it. */
	r = card_xchg(&c,
		      (const uint8_t *)"\x84\x82\x03\x00\x10"
				       "0123456789abcdef",
		      21, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6985");
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, iu, sizeof(iu));
	r = card_xchg(&c, iu, (size_t)n, rsp, sizeof(rsp));
	en = pg_scp03_host_auth(&h, &k, rsp, (size_t)r, 0x03, ea, sizeof(ea));
	r = card_xchg(&c, ea, (size_t)en, rsp, sizeof(rsp));
	assert_hex(rsp, r, "9000");
	assert_int_equal(pg_scp03_host_auth_done(&h, rsp, 2), 0);
	/* The same EXTERNAL AUTHENTICATE again, in the open session. */
	r = card_xchg(&c, ea, (size_t)en, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6985");
	/* The session survives the replay attempt. */
	r = host_cmd(&h, &c, (const uint8_t *)"\x80\xE0\x00\x00\x01\x42", 6);
	assert_hex(b3, r, "80E00000429000");
	/* Replayed into a new session: INITIALIZE UPDATE, then the old EA. */
	r = card_xchg(&c, iu, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(pg_rapdu_sw(rsp, (size_t)r), 0x9000);
	r = card_xchg(&c, ea, (size_t)en, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6300"); /* new card challenge: the old cryptogram is stale */
	/* EA not directly after INITIALIZE UPDATE. */
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, iu, sizeof(iu));
	r = card_xchg(&c, iu, (size_t)n, rsp, sizeof(rsp));
	en = pg_scp03_host_auth(&h, &k, rsp, (size_t)r, 0x03, ea, sizeof(ea));
	assert_true(en > 0);
	r = card_xchg(&c, (const uint8_t *)"\x80\xE0\x00\x00", 4, rsp, sizeof(rsp));
	r = card_xchg(&c, ea, (size_t)en, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6985");
	assert_false(pg_scp03_is_open(&c.s));
}

static void
test_bad_cmac(void **state)
{
	struct pg_scp03_keys k;
	struct pg_scp03 h = {0}, saved;
	struct tcard c;
	int w, r;

	(void)state;
	rand_keys(&k, 24, 0x30, 5);
	card_init(&c, &k, 0x70);
	assert_int_equal(host_open(&h, &c, &k, 0x13, 8), 0x9000);
	saved = h;
	w = pg_scp03_host_wrap(&h, (const uint8_t *)"\x80\xE0\x00\x00\x03\x01\x02\x03", 8, b1, BIG);
	b1[w - 1] ^= 0x01;
	r = card_xchg(&c, b1, (size_t)w, b2, BIG);
	assert_hex(b2, r, "6982");
	assert_false(pg_scp03_is_open(&c.s));
	/* The host sees 6982 and closes its side as the card did. */
	r = pg_scp03_host_unwrap(&h, b2, 2, b3, BIG);
	assert_hex(b3, r, "6982");
	assert_false(pg_scp03_is_open(&h));
	/* A correctly MACed command is now refused too: the session is gone. */
	w = pg_scp03_host_wrap(&saved, (const uint8_t *)"\x80\xE0\x00\x00", 4, b1, BIG);
	r = card_xchg(&c, b1, (size_t)w, b2, BIG);
	assert_hex(b2, r, "6982");
	/* A plain command inside a C-MAC session closes it. */
	assert_int_equal(host_open(&h, &c, &k, 0x01, 8), 0x9000);
	r = card_xchg(&c, (const uint8_t *)"\x80\xE0\x00\x00", 4, b2, BIG);
	assert_hex(b2, r, "6982");
	assert_false(pg_scp03_is_open(&c.s));
	/* A tampered response: bad R-MAC, the host refuses and closes. */
	assert_int_equal(host_open(&h, &c, &k, 0x33, 8), 0x9000);
	w = pg_scp03_host_wrap(&h, (const uint8_t *)"\x80\xE0\x00\x00\x01\x07", 6, b1, BIG);
	r = card_xchg(&c, b1, (size_t)w, b2, BIG);
	b2[0] ^= 0x04;
	assert_int_equal(pg_scp03_host_unwrap(&h, b2, (size_t)r, b3, BIG), PG_EAUTH);
	assert_false(pg_scp03_is_open(&h));
}

/* ---------------------------------------------------------------- PUT KEY */

static void
rotate(size_t old_len, size_t new_len)
{
	struct pg_scp03_keys k1, k2;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[256];
	int n, r;

	rand_keys(&k1, old_len, 0x30, 6);
	rand_keys(&k2, new_len, 0x31, 7);
	card_init(&c, &k1, 0x70);
	assert_int_equal(host_open(&h, &c, &k1, 0x33, 8), 0x9000);
	n = pg_scp03_put_key_build(k1.dek, k1.len, 0x30, &k2, cmd, sizeof(cmd));
	assert_int_equal(n, (int)(6 + 3 * (3 + (new_len + 15) / 16 * 16 + 4) + 1));
	assert_memory_equal(cmd, "\x80\xD8\x30\x81", 4);
	assert_int_equal(cmd[5], 0x31);
	assert_int_equal(cmd[6], 0x88);
	assert_int_equal(cmd[8], new_len);
	r = host_cmd(&h, &c, cmd, (size_t)n);
	assert_int_equal(r, 12);
	assert_int_equal(pg_rapdu_sw(b3, 12), 0x9000);
	assert_int_equal(pg_scp03_put_key_check(&k2, b3, 10), 0);
	assert_int_equal(pg_scp03_put_key_check(&k1, b3, 10) < 0, 1);
	assert_int_equal(c.cfg.keys.kvn, 0x31);
	assert_int_equal(c.cfg.keys.len, new_len);
	assert_true(pg_ct_equal(c.cfg.keys.enc, k2.enc, new_len));
	assert_true(pg_ct_equal(c.cfg.keys.mac, k2.mac, new_len));
	assert_true(pg_ct_equal(c.cfg.keys.dek, k2.dek, new_len));
	/* The new key set opens sessions; the old version number is gone. */
	assert_int_equal(host_open(&h, &c, &k2, 0x33, 8), 0x9000);
	r = host_cmd(&h, &c, (const uint8_t *)"\x80\xE0\x00\x00\x01\x09", 6);
	assert_hex(b3, r, "80E00000099000");
	assert_int_equal(host_open(&h, &c, &k1, 0x03, 8), 0);
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, b2, BIG);
	assert_hex(b2, r, "6A88");
	pg_scp03_close(&h);
}

static void
test_put_key_rotation(void **state)
{
	(void)state;
	rotate(16, 16);
	rotate(16, 24); /* padded key block (GP 2.3 table 11-70) */
	rotate(32, 32);
	rotate(24, 16);
}

static void
test_put_key_refusals(void **state)
{
	struct pg_scp03_keys k1, k2, out;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[256], alt[256];
	int n, r;

	(void)state;
	rand_keys(&k1, 16, 0x30, 8);
	rand_keys(&k2, 16, 0x31, 9);
	card_init(&c, &k1, 0x70);
	n = pg_scp03_put_key_build(k1.dek, 16, 0x30, &k2, cmd, sizeof(cmd));
	/* Plain parser: round trip, then each corruption refused. */
	assert_int_equal(pg_scp03_put_key_parse(k1.dek, 16, cmd + 5, (size_t)n - 6, &out), 0);
	assert_true(pg_ct_equal(out.mac, k2.mac, 16));
	assert_int_equal(out.kvn, 0x31);
	assert_int_equal(pg_scp03_put_key_parse(k2.dek, 16, cmd + 5, (size_t)n - 6, &out),
			 PG_EAUTH); /* wrong DEK: KCV mismatch */
	memcpy(alt, cmd, (size_t)n);
	alt[5 + 1 + 2 + 1 + 16 + 1] ^= 1; /* first KCV */
	assert_int_equal(pg_scp03_put_key_parse(k1.dek, 16, alt + 5, (size_t)n - 6, &out),
			 PG_EAUTH);
	assert_int_equal(pg_scp03_put_key_parse(k1.dek, 16, cmd + 5, (size_t)n - 7, &out) < 0, 1);
	/* GP 2.3 table 11-71 form: no clear-length byte for a whole-block key. */
	{
		size_t o = 0, i = 5;

		alt[o++] = cmd[i++];
		for (int kx = 0; kx < 3; kx++) {
			alt[o++] = 0x88;
			alt[o++] = 16;
			i += 3;
			memcpy(alt + o, cmd + i, 16 + 4);
			o += 20;
			i += 20;
		}
		assert_int_equal(pg_scp03_put_key_parse(k1.dek, 16, alt, o, &out), 0);
		assert_true(pg_ct_equal(out.dek, k2.dek, 16));
	}
	/* Outside a secure channel, or in one without C-MAC, keys do not change. */
	r = card_xchg(&c, cmd, (size_t)n, b2, BIG);
	assert_hex(b2, r, "6982");
	assert_int_equal(host_open(&h, &c, &k1, 0x00, 8), 0x9000);
	r = host_cmd(&h, &c, cmd, (size_t)n);
	assert_hex(b3, r, "6982");
	assert_int_equal(c.cfg.keys.kvn, 0x30);
	/* Through the card: a bad KCV is 6A80, the keys stay. */
	assert_int_equal(host_open(&h, &c, &k1, 0x03, 8), 0x9000);
	memcpy(alt, cmd, (size_t)n);
	alt[n - 2] ^= 0x10; /* last KCV byte */
	r = host_cmd(&h, &c, alt, (size_t)n);
	assert_hex(b3, r, "6A80");
	assert_int_equal(c.cfg.keys.kvn, 0x30);
	/* Replacing a version the card does not have: 6A88. */
	alt[2] = 0x22;
	memcpy(alt + 3, cmd + 3, (size_t)n - 3);
	r = host_cmd(&h, &c, alt, (size_t)n);
	assert_hex(b3, r, "6A88");
	assert_true(pg_ct_equal(c.cfg.keys.enc, k1.enc, 16));
}

/* ------------------------------------------------- diversification etc. */

static void
test_diversify(void **state)
{
	struct pg_scp03_keys a, b, m;
	struct pg_scp03_iu_resp ir;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[64], rsp[64];
	const uint8_t cin1[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	const uint8_t cin2[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11};
	int n, r;

	(void)state;
	rand_keys(&m, 32, 0, 10);
	assert_int_equal(pg_scp03_diversify(m.enc, 32, cin1, 10, 0x30, &a), 0);
	assert_int_equal(pg_scp03_diversify(m.enc, 32, cin2, 10, 0x30, &b), 0);
	assert_int_equal(a.len, 32);
	assert_false(pg_ct_equal(a.enc, b.enc, 32));
	assert_false(pg_ct_equal(a.enc, a.mac, 32));
	assert_false(pg_ct_equal(a.mac, a.dek, 32));
	assert_int_equal(pg_scp03_diversify(m.enc, 32, cin1, 10, 0x30, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(pg_scp03_diversify(m.enc, 32, cin1, 0, 0x30, &b), PG_EINVAL);
	assert_int_equal(pg_scp03_diversify(m.enc, 20, cin1, 10, 0x30, &b), PG_EINVAL);
	/* Issue 7's flow: the host learns the card's data from INITIALIZE UPDATE. */
	card_init(&c, &a, 0x70);
	memcpy(c.cfg.div_data, cin1, 10);
	n = pg_scp03_host_init_update(&h, 0x30, NULL, 8, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(pg_scp03_parse_iu_response(&ir, rsp, (size_t)r - 2), 0);
	assert_memory_equal(ir.div_data, cin1, 10);
	assert_int_equal(ir.kvn, 0x30);
	assert_int_equal(ir.seq, 1);
	assert_int_equal(pg_scp03_diversify(m.enc, 32, ir.div_data, 10, ir.kvn, &b), 0);
	n = pg_scp03_host_auth(&h, &b, rsp, (size_t)r, 0x33, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(pg_scp03_host_auth_done(&h, rsp, (size_t)r), 0);
	pg_memzero(&b, sizeof(b));
}

static void
test_sequence_counter_and_parser(void **state)
{
	struct pg_scp03_keys k;
	struct pg_scp03_iu_resp ir;
	struct pg_scp03 h = {0};
	struct tcard c;
	uint8_t cmd[64], rsp[64];
	int n, r;

	(void)state;
	rand_keys(&k, 16, 0x30, 11);
	card_init(&c, &k, 0x70);
	c.cfg.seq = 0xFFFFFE;
	n = pg_scp03_host_init_update(&h, 0, NULL, 8, cmd, sizeof(cmd));
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(r, 34);
	assert_memory_equal(rsp + 29, "\xFF\xFF\xFF\x90\x00", 5);
	assert_int_equal(c.cfg.seq, 0xFFFFFF);
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_hex(rsp, r, "6985"); /* counter exhausted */
	/* Random challenges: no counter in the response, and it does not move. */
	c.cfg.i_param = 0x60;
	r = card_xchg(&c, cmd, (size_t)n, rsp, sizeof(rsp));
	assert_int_equal(r, 31);
	assert_int_equal(pg_scp03_parse_iu_response(&ir, rsp, 29), 0);
	assert_false(ir.has_seq);
	/* Parser refusals. */
	assert_int_equal(pg_scp03_parse_iu_response(&ir, rsp, 12), PG_ETRUNC);
	assert_int_equal(pg_scp03_parse_iu_response(&ir, rsp, 30), PG_EFORMAT);
	rsp[11] = 0x02;
	assert_int_equal(pg_scp03_parse_iu_response(&ir, rsp, 29), PG_EFORMAT);
	/* Wrong P2, wrong Lc, SM on INITIALIZE UPDATE. */
	r = card_xchg(&c,
		      (const uint8_t *)"\x80\x50\x00\x01\x08"
				       "ABCDEFGH\x00",
		      14, rsp, 64);
	assert_hex(rsp, r, "6A86");
	r = card_xchg(&c,
		      (const uint8_t *)"\x80\x50\x00\x00\x07"
				       "ABCDEFG\x00",
		      13, rsp, 64);
	assert_hex(rsp, r, "6700");
	r = card_xchg(&c,
		      (const uint8_t *)"\x80\x50\x00\x00\x10"
				       "ABCDEFGHABCDEFGH\x00",
		      22, rsp, 64);
	assert_hex(rsp, r, "6700"); /* S16 asked of an S8-only card */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_keys_vector),
	    cmocka_unit_test(test_pysim_host),
	    cmocka_unit_test(test_pysim_card),
	    cmocka_unit_test(test_e2e_levels),
	    cmocka_unit_test(test_level_not_supported),
	    cmocka_unit_test(test_extended_only_on_the_wire),
	    cmocka_unit_test(test_wrong_host_cryptogram),
	    cmocka_unit_test(test_replayed_external_authenticate),
	    cmocka_unit_test(test_bad_cmac),
	    cmocka_unit_test(test_put_key_rotation),
	    cmocka_unit_test(test_put_key_refusals),
	    cmocka_unit_test(test_diversify),
	    cmocka_unit_test(test_sequence_counter_and_parser),
	};

	pg_log_set_level(PG_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
