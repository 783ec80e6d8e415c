/*
 * T=1 link tests (ISO/IEC 7816-3:2006 clause 11): epilogues, the ATR, APDU
 * cases 1-4 short and extended up to 65535 data bytes both ways, chaining
 * with IFSC 32 and 254, IFSD negotiation, WTX, CRC, the error recovery rules
 * of 11.6 as block-by-block scenarios, memory pair and socketpair, and the
 * fault-injection run (10,000 APDUs, 1% drop + 1% corrupt each way).
 *
 * Worked examples: test_annex_a_scripted replays the T=1 examples of
 * ISO/IEC 7816-3:2006 Annex A byte for byte against a scripted card (A.2.1
 * case 4S, A.2.2 WTX, A.2.3 scenario 3, A.2.4 scenarios 5 and 6, A.3.1
 * scenarios 8 to 13: the error-handling cases). The standard's own text was
 * not at hand: the scenario list and block sequences are those public reader
 * test suites use for that annex, the bytes (LRCs included) are computed
 * here. test_scenarios runs the same kinds of scenarios between our own host
 * and card roles (with lost frames and resynchronisation, rules of 11.6).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/clock.h"
#include "payguard/log.h"
#include "se/link/atr.h"
#include "se/link/t1_proto.h"
#include "t01_testkit.h"

extern const struct pg_link_ops pgi_link_t1_ops;
#define T1 (&pgi_link_t1_ops)

static uint8_t cbuf[PG_APDU_MAX_C], rbuf[PG_APDU_MAX_R + 16];

/* Encodes a C-APDU into cbuf; returns its length. */
static size_t
mk(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc, size_t le)
{
	struct pg_capdu c = {.cla = cla, .ins = ins, .p1 = p1, .p2 = p2, .data = data, .lc = lc};
	int n;

	c.le = le;
	c.has_le = le != 0;
	n = pg_capdu_encode(&c, 0, cbuf, sizeof(cbuf));
	assert_true(n > 0);
	return (size_t)n;
}

static size_t
xmit(struct pg_link *l, size_t clen)
{
	size_t rn = sizeof(rbuf);

	assert_int_equal(pg_link_transmit(l, cbuf, clen, rbuf, &rn), 0);
	return rn;
}

static void
test_epilogues(void **state)
{
	uint8_t f[T1_MAX_BLOCK], inf[254];
	struct t1_block b;
	size_t n;

	(void)state;
	/* CRC-16 check value of the x^16+x^12+x^5+1 / reflected / FFFF variant. */
	assert_int_equal(pgi_t1_crc((const uint8_t *)"123456789", 9), 0x6F91);
	assert_int_equal(pgi_t1_lrc((const uint8_t *)"\x00\x40\x00", 3), 0x40);
	/* S(IFS request 254) with LRC: 00 C1 01 FE 3E (the usual first block after an ATR). */
	n = pgi_t1_encode(f, 0, 0xC1, (const uint8_t *)"\xFE", 1, 0);
	assert_int_equal(n, 5);
	assert_memory_equal(f, "\x00\xC1\x01\xFE\x3E", 5);
	assert_int_equal(pgi_t1_decode(&b, f, n, 0), 0);
	assert_int_equal(b.kind, T1_S);
	assert_int_equal(b.stype, T1_S_IFS);
	assert_int_equal(b.inf[0], 0xFE);
	/* Every single-bit error in a full block is caught, with LRC and with CRC. */
	for (size_t i = 0; i < sizeof(inf); i++)
		inf[i] = sd_pattern(i);
	for (int crc = 0; crc <= 1; crc++) {
		n = pgi_t1_encode(f, 0, 0x40, inf, sizeof(inf), crc);
		assert_int_equal(n, 3 + 254 + (crc ? 2 : 1));
		assert_int_equal(pgi_t1_decode(&b, f, n, crc), 0);
		assert_int_equal(b.ns, 1);
		for (size_t bit = 0; bit < n * 8; bit++) {
			f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			assert_int_not_equal(pgi_t1_decode(&b, f, n, crc), 0);
			f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
	}
	/* Reserved codings are rejected. */
	n = pgi_t1_encode(f, 0, 0x81 | 0x20, NULL, 0, 0); /* R with b6 set */
	assert_int_equal(pgi_t1_decode(&b, f, n, 0), PG_EFORMAT);
	n = pgi_t1_encode(f, 0, 0xC1, (const uint8_t *)"\xFF", 1, 0); /* IFS FF */
	assert_int_equal(pgi_t1_decode(&b, f, n, 0), PG_EFORMAT);
	n = pgi_t1_encode(f, 0, 0x80, (const uint8_t *)"\x01", 1, 0); /* R with data */
	assert_int_equal(pgi_t1_decode(&b, f, n, 0), PG_EFORMAT);
}

static size_t
unhex(uint8_t *out, const char *s)
{
	size_t n = 0;

	while (s[0] && s[1]) {
		unsigned v;

		sscanf(s, "%2x", &v);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static void
test_atr(void **state)
{
	uint8_t a[40], b[40];
	struct pg_atr p;
	size_t n;
	int len;

	(void)state;
	/* NXP JCOP 2.4.1: TD1 81 (T=1), TD2 31: TA3 FE (IFSC 254), TB3 45; TCK B7. */
	n = unhex(a, "3BF81300008131FE454A434F5076323431B7");
	assert_int_equal(pgi_atr_parse(&p, a, n), 0);
	assert_int_equal(p.protocols, 2);
	assert_int_equal(p.ifsc, 254);
	assert_int_equal(p.bwi, 4);
	assert_int_equal(p.cwi, 5);
	assert_int_equal(p.crc, 0);
	assert_int_equal(p.hist_len, 8);
	assert_memory_equal(p.hist, "JCOPv241", 8);
	assert_true(p.has_tck);
	/* The length is discovered byte by byte as a reader does. */
	len = 2;
	while ((size_t)(len = pgi_atr_length(a, (size_t)len)) < n)
		assert_true(len > 0);
	assert_int_equal(len, (int)n);
	/* PC/SC part 3 contactless storage card ATR: T=0 and T=1 offered, 15 hist bytes. */
	n = unhex(a, "3B8F8001804F0CA000000306030001000000006A");
	assert_int_equal(pgi_atr_parse(&p, a, n), 0);
	assert_int_equal(p.protocols, 3);
	assert_int_equal(p.ifsc, 32);
	assert_int_equal(p.hist_len, 15);
	/* Damaged ones. */
	n = unhex(a, "3BF81300008131FE454A434F5076323431B6");
	assert_int_equal(pgi_atr_parse(&p, a, n), PG_ECORRUPT);
	assert_int_equal(pgi_atr_parse(&p, a, n - 1), PG_ETRUNC);
	a[0] = 0x3C;
	assert_int_equal(pgi_atr_parse(&p, a, n), PG_EFORMAT);
	n = unhex(a, "3B80813100");
	assert_true(pgi_atr_parse(&p, a, n) < 0);
	/* Builder: T=1 with CRC announces TC3 = 01; round trip. */
	len = pgi_atr_build(b, sizeof(b), 1, 254, 4, 5, 1, (const uint8_t *)"pg", 2);
	assert_true(len > 0);
	assert_memory_equal(b, "\x3B\x82\x81\x71\xFE\x45\x01pg", 9);
	assert_int_equal(pgi_atr_parse(&p, b, (size_t)len), 0);
	assert_int_equal(p.ifsc, 254);
	assert_int_equal(p.crc, 1);
	assert_int_equal(pgi_atr_build(b, sizeof(b), 1, 255, 4, 5, 0, NULL, 0), PG_EINVAL);
}

/* APDU cases 1-4, short and extended, through an open link. */
static void
run_cases(struct pg_link *l, struct sd_tcard *tc)
{
	uint8_t data[300];
	size_t n, rn;
	uint64_t before = tc->executed;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(0xA0 ^ i);
	/* Case 1: SW only. */
	n = mk(0x00, SD_INS_SW, 0x6A, 0x82, NULL, 0, 0);
	rn = xmit(l, n);
	assert_int_equal(rn, 2);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x6A82);
	/* Case 2S, Le = 256 (coded 00). */
	n = mk(0x00, SD_INS_GETN, 0x01, 0x00, NULL, 0, 256);
	rn = xmit(l, n);
	assert_int_equal(rn, 258);
	for (size_t i = 0; i < 256; i++)
		assert_int_equal(rbuf[i], sd_pattern(i));
	/* Case 3S. */
	n = mk(0x00, SD_INS_STORE, 0, 0, data, 200, 0);
	rn = xmit(l, n);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	assert_int_equal(tc->last_clen, 205);
	/* Case 4S on channel 2. */
	n = mk(0x02, SD_INS_ECHO, 0, 0, data, 255, 256);
	rn = xmit(l, n);
	assert_int_equal(rn, 257);
	assert_memory_equal(rbuf, data, 255);
	/* Case 2E (Ne 1000), 3E, 4E. */
	n = mk(0x00, SD_INS_GETN, 0x03, 0xE8, NULL, 0, 1000);
	assert_int_equal(n, 7);
	rn = xmit(l, n);
	assert_int_equal(rn, 1002);
	n = mk(0x00, SD_INS_STORE, 0, 0, data, 300, 0);
	assert_int_equal(n, 307);
	rn = xmit(l, n);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	n = mk(0x00, SD_INS_ECHO, 0, 0, data, 300, 65536);
	rn = xmit(l, n);
	assert_int_equal(rn, 302);
	assert_memory_equal(rbuf, data, 300);
	assert_int_equal(tc->executed - before, 7);
}

/* The longest APDUs T=1 carries: 65535 data bytes in, 65535 and 65536 out. */
static void
run_longest(struct pg_link *l)
{
	static uint8_t data[65535];
	size_t n, rn;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 31 + (i >> 9));
	n = mk(0x00, SD_INS_ECHO, 0, 0, data, 65535, 65536);
	assert_int_equal(n, PG_APDU_MAX_C); /* 4 + 3 + 65535 + 2 */
	rn = xmit(l, n);
	assert_int_equal(rn, 65537);
	assert_memory_equal(rbuf, data, 65535);
	assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	n = mk(0x00, SD_INS_GETN, 0, 0, NULL, 0, 65536);
	rn = xmit(l, n);
	assert_int_equal(rn, PG_APDU_MAX_R);
	for (size_t i = 0; i < 65536; i++)
		if (rbuf[i] != sd_pattern(i))
			fail_msg("byte %zu differs", i);
}

static void
test_cases_memory(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);
	struct pg_atr a;

	(void)state;
	assert_int_equal(pg_link_open_memory(&l, T1, &card, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	/* The card role's ATR: T=1, IFSC 32 (default), BWI 4 / CWI 5, the card's history. */
	assert_int_equal(pgi_atr_parse(&a, atr, atrlen), 0);
	assert_memory_equal(atr, "\x3B\x8D\x81\x31\x20\x45", 6);
	assert_int_equal(a.protocols, 2);
	assert_memory_equal(a.hist, "payguard-test", 13);
	run_cases(l, &tc);
	run_longest(l);
	/* Too big for the caller's buffer: a clear error, and the link stays in step. */
	{
		size_t n = mk(0x00, SD_INS_GETN, 0x01, 0x00, NULL, 0, 256), rn = 100;

		assert_int_equal(pg_link_transmit(l, cbuf, n, rbuf, &rn), PG_ETOOBIG);
		n = mk(0x00, SD_INS_SW, 0x90, 0x00, NULL, 0, 0);
		assert_int_equal(xmit(l, n), 2);
	}
	assert_int_equal(l->apdus, 10);
	pg_link_close(l);
}

/* Counts the I-blocks each way in a trace from line `from`. */
static void
count_iblocks(const struct trace *t, int from, int *host, int *card)
{
	*host = *card = 0;
	for (int i = from; i < t->n; i++) {
		if (strncmp(t->lines[i], "> I(", 4) == 0)
			(*host)++;
		if (strncmp(t->lines[i], "< I(", 4) == 0)
			(*card)++;
	}
}

static void
chain_with(uint16_t ifsc, uint16_t ifsd, int want_host, int want_card)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link_params p = {.ifsc = ifsc, .ifsd = ifsd};
	struct pg_link *l = NULL;
	struct trace t = {0};
	uint8_t data[300], atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr), n, rn;
	struct pg_atr a;
	char line[48];
	int from, h, c;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	assert_int_equal(kit_open_memory(&l, T1, &card, &p, &t, 0, 0, 0, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	assert_int_equal(pgi_atr_parse(&a, atr, atrlen), 0);
	assert_int_equal(a.ifsc, ifsc); /* TA3 */
	/* IFSD negotiation right after the ATR (rule 1 / 6.2). */
	snprintf(line, sizeof(line), "> S(IFS req %u)", ifsd);
	assert_string_equal(t.lines[1], line);
	snprintf(line, sizeof(line), "< S(IFS rsp %u)", ifsd);
	assert_string_equal(t.lines[2], line);
	/* 300 data bytes out (case 4E: 4+3+300+2) and back (300 + SW). */
	from = t.n;
	n = mk(0x00, SD_INS_ECHO, 0, 0, data, 300, 300);
	rn = xmit(l, n);
	assert_int_equal(rn, 302);
	assert_memory_equal(rbuf, data, 300);
	count_iblocks(&t, from, &h, &c);
	if (h != want_host || c != want_card) {
		tr_dump(&t, "chaining");
		fail_msg("IFSC %u IFSD %u: %d/%d I-blocks, want %d/%d", ifsc, ifsd, h, c, want_host,
			 want_card);
	}
	run_cases(l, &tc);
	run_longest(l);
	pg_link_close(l);
}

static void
test_chaining_ifsc32(void **state)
{
	(void)state;
	/* 309 bytes in blocks of 32 = 10; 302 bytes in blocks of 32 = 10. */
	chain_with(32, 32, 10, 10);
	/* Asymmetric: IFSC 32 from the card, IFSD 254 negotiated by the host. */
	chain_with(32, 254, 10, 2);
}

static void
test_chaining_ifsc254(void **state)
{
	(void)state;
	chain_with(254, 254, 2, 2);
	chain_with(254, 32, 2, 10);
}

/* Opens a traced link, powers on, returns the trace line where the scenario starts. */
static int
scenario_open(struct pg_link **l, struct sd_tcard *tc, struct pg_card *card, struct trace *t,
	      const struct pg_link_params *p)
{
	*card = sd_tcard(tc);
	assert_int_equal(kit_open_memory(l, T1, card, p, t, 0, 0, 0, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(*l, NULL, NULL), 0);
	return t->n;
}

static void
expect(const struct trace *t, int from, const char *const *want, const char *name)
{
	if (!tr_match(t, from, want)) {
		tr_dump(t, name);
		fail_msg("scenario '%s' differs", name);
	}
	tr_dump(t, name); /* the test log shows each scenario */
}

static void
test_scenarios(void **state)
{
	struct sd_tcard tc;
	struct pg_card card;
	struct pg_link *l;
	struct trace t;
	struct pg_link_params p32 = {.ifsc = 32, .ifsd = 32, .timeout_ms = 50};
	uint8_t data[70];
	int from;
	size_t n;

	(void)state;
	memset(data, 0x11, sizeof(data));

	/* Error-free exchanges: N(S) alternates on both sides (rules 1, 2). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	from = scenario_open(&l, &tc, &card, &t, NULL);
	n = mk(0, SD_INS_ECHO, 0, 0, data, 4, 4);
	xmit(l, n);
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,0)", "< I(0,0)", "> I(1,0)", "< I(1,0)", NULL},
	       "error-free I-blocks");
	pg_link_close(l);

	/* Chaining from the interface device, IFSC 32 (rule 5). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	from = scenario_open(&l, &tc, &card, &t, &p32);
	n = mk(0, SD_INS_STORE, 0, 0, data, 70, 0); /* 75 bytes: 32 + 32 + 11 */
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,1)", "< R(1)", "> I(1,1)", "< R(0)", "> I(0,0)",
				     "< I(0,0)", NULL},
	       "chaining, interface device to card");
	pg_link_close(l);

	/* Chaining from the card, IFSD 32 (rule 5). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	from = scenario_open(&l, &tc, &card, &t, &p32);
	n = mk(0, SD_INS_GETN, 0, 68, NULL, 0, 68); /* 70 bytes: 32 + 32 + 6 */
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,0)", "< I(0,1)", "> R(1)", "< I(1,1)", "> R(0)",
				     "< I(0,0)", NULL},
	       "chaining, card to interface device");
	pg_link_close(l);

	/* I-block lost: time-out, R-block, the card asks for it again (rules 7.1, 7.5). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	t.drop[0][0] = 2; /* host packets: 1 = S(IFS), 2 = the I-block */
	from = scenario_open(&l, &tc, &card, &t, NULL);
	n = mk(0, SD_INS_ECHO, 0, 0, data, 4, 4);
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,0) lost", "> R(0,ERR)", "< R(0)", "> I(0,0)",
				     "< I(0,0)", NULL},
	       "I-block lost");
	assert_int_equal(tc.executed, 1);
	pg_link_close(l);

	/* The card's answer lost: an R-block makes the card resend it, not re-run (7.1, 7.5). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	t.drop[1][0] = 3; /* card packets: 1 = ATR, 2 = S(IFS rsp), 3 = the answer */
	from = scenario_open(&l, &tc, &card, &t, NULL);
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,0)", "< I(0,0) lost", "> R(0,ERR)", "< I(0,0)", NULL},
	       "response lost");
	assert_int_equal(tc.executed, 1);
	pg_link_close(l);

	/* EDC error each way (7.1: R-block with the EDC bit; the receiver retransmits). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	t.corrupt[0][0] = 2;
	t.corrupt[1][0] = 4; /* card packets: ATR, S(IFS), R(0,EDC), the answer */
	from = scenario_open(&l, &tc, &card, &t, NULL);
	xmit(l, n);
	expect(&t, from,
	       (const char *const[]){"> I(0,0) bad", "< R(0,EDC)", "> I(0,0)", "< I(0,0) bad",
				     "> R(0,EDC)", "< I(0,0)", NULL},
	       "EDC errors");
	assert_int_equal(tc.executed, 1);
	pg_link_close(l);

	/* Acknowledgement lost while the card chains: the R-block is sent again (7.2). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	t.drop[0][0] = 3;
	from = scenario_open(&l, &tc, &card, &t, &p32);
	n = mk(0, SD_INS_GETN, 0, 68, NULL, 0, 68);
	assert_int_equal(xmit(l, n), 70);
	expect(&t, from,
	       (const char *const[]){"> I(0,0)", "< I(0,1)", "> R(1) lost", "> R(1)", "< I(1,1)",
				     "> R(0)", "< I(0,0)", NULL},
	       "acknowledgement lost in a card chain");
	pg_link_close(l);

	/* Resynchronisation after three failed retransmissions (7.4, 6.3). */
	memset(&tc, 0, sizeof(tc));
	memset(&t, 0, sizeof(t));
	t.drop[1][0] = 3;
	t.drop[1][1] = 4;
	t.drop[1][2] = 5;
	t.drop[1][3] = 6;
	from = scenario_open(&l, &tc, &card, &t, &p32);
	n = mk(0, SD_INS_ECHO, 0, 0, data, 4, 4);
	{
		size_t rn = sizeof(rbuf);

		assert_int_equal(pg_link_transmit(l, cbuf, n, rbuf, &rn), PG_ERESYNC);
	}
	expect(&t, from,
	       (const char *const[]){"> I(0,0)", "< I(0,0) lost", "> R(0,ERR)", "< I(0,0) lost",
				     "> R(0,ERR)", "< I(0,0) lost", "> R(0,ERR)", "< I(0,0) lost",
				     "> S(RESYNCH req)", "< S(RESYNCH rsp)", "> S(IFS req 32)",
				     "< S(IFS rsp 32)", NULL},
	       "resynchronisation");
	/* After RESYNCH both sides start again at N(S) = 0. */
	from = t.n;
	xmit(l, n);
	assert_true(tr_match(&t, from, (const char *const[]){"> I(0,0)", "< I(0,0)", NULL}));
	assert_int_equal(tc.executed, 2);
	pg_link_close(l);
}

/*
 * The scripted card of these examples is sd_steps (tests/common/se_double.h).
 * The SELECT of the examples: 00 A4 04 00 05 75 36 41 70 70 05 (case 4S, Ne 5).
 */
#define EX_I00 "00000B00A4040005753641707005A9"
#define EX_RSP00                                                                                   \
	"0000077574777475900"                                                                      \
	"0E0"
#define EX_RSP_BAD                                                                                 \
	"00000775747774759000"                                                                     \
	"1F"

static void
run_script(const char *name, const char *atr, const struct sd_step *steps, int nsteps,
	   const uint8_t *capdu, size_t clen, const char *want_rapdu)
{
	struct sd_steps k;
	struct pg_link *l = NULL;
	uint8_t want[300];
	size_t wn = unhex(want, want_rapdu), rn = sizeof(rbuf);
	int rc;

	sd_steps_init(&k, atr, steps, nsteps);
	assert_int_equal(T1->host_open(&l, &k.base, NULL, NULL), 0);
	assert_int_equal(pg_link_power_on(l, NULL, NULL), 0);
	rc = pg_link_transmit(l, capdu, clen, rbuf, &rn);
	pg_link_close(l);
	if (k.mismatch[0])
		fail_msg("%s: %s", name, k.mismatch);
	if (k.i != nsteps)
		fail_msg("%s: stopped after %d of %d steps (rc %d)", name, k.i, nsteps, rc);
	assert_int_equal(rc, 0);
	assert_int_equal(rn, wn);
	assert_memory_equal(rbuf, want, wn);
	printf("    %s: %d blocks as in the example\n", name, nsteps);
}

/*
 * ISO/IEC 7816-3:2006 Annex A examples of T=1 exchanges, byte for byte with
 * LRC: A.2.2 (WTX), A.2.3 scenario 3 (IFS request from the card), A.2.4
 * scenarios 5 and 6 (chaining each way, IFSC 10), A.3.1 scenarios 8 to 13
 * (error handling). The command is the examples' case 4S SELECT; the standard's
 * text was not at hand, the block sequences follow its scenario list as
 * implemented in public reader test suites; the bytes are computed here.
 */
static void
test_annex_a_scripted(void **state)
{
	/* ATR 3B 80 01 81: T=1, IFSC 32 (no TA3); then S(IFS request 254). */
	static const char atr[] = "3B800181";
	static const char atr_ifsc10[] = "3B8081110A1A";
	static const struct sd_step ifs = {"00C101FE3E", "00E101FE1E"};
	uint8_t sel[11], sel22[28];
	size_t n;

	(void)state;
	n = unhex(sel, "00A4040005753641707005");
	assert_int_equal(n, 11);
#define S(...) ((const struct sd_step[]){ifs, __VA_ARGS__})
#define N(...) (int)(sizeof((const struct sd_step[]){ifs, __VA_ARGS__}) / sizeof(struct sd_step))
#define RUN(name, a, ...)                                                                          \
	run_script(name, a, S(__VA_ARGS__), N(__VA_ARGS__), sel, 11, "75747774759000")
	RUN("A.2.1 case 4S", atr, {EX_I00, EX_RSP00});
	RUN("A.2.2 WTX", atr, {EX_I00, "00C30102C0"}, {"00E30102E0", EX_RSP00});
	RUN("A.2.3 scenario 3, IFS request from the card", atr, {EX_I00, "00C10110D0"},
	    {"00E10110F0", EX_RSP00});
	RUN("A.2.4 scenario 6, card chains", atr, {EX_I00, "002005757477747552"},
	    {"00900090", "0040029000D2"});
	RUN("A.3.1 scenario 8, R(0) with EDC error", atr, {EX_I00, "00810081"}, {EX_I00, EX_RSP00});
	RUN("A.3.1 scenario 9, I-block with EDC error", atr, {EX_I00, EX_RSP_BAD},
	    {"00810081", EX_RSP00});
	RUN("A.3.1 scenario 9, BWT time-out", atr, {EX_I00, ""}, {"00820082", EX_RSP00});
	RUN("A.3.1 scenario 10, damaged R-block", atr, {EX_I00, "0081007E"},
	    {"00810081", "00810081"}, {EX_I00, EX_RSP00});
	RUN("A.3.1 scenario 11, R(1) after R(0)", atr, {EX_I00, EX_RSP_BAD},
	    {"00810081", "00910091"}, {"00810081", EX_RSP00});
	RUN("A.3.1 scenario 12, damaged R(1)", atr, {EX_I00, EX_RSP_BAD}, {"00810081", "0091006E"},
	    {"00810081", EX_RSP00});
	RUN("A.3.1 scenario 13", atr, {EX_I00, EX_RSP_BAD}, {"00810081", "0091006E"},
	    {"00810081", "00910091"}, {"00810081", EX_RSP00});
	/* A.2.4 scenario 5: the interface device chains a 28-byte command, IFSC 10 (TA3 0A). */
	n = unhex(sel22, "00A40400167536417070FFFF0000000000FFFF0000FF00FF00FF0005");
	assert_int_equal(n, 28);
	run_script(
	    "A.2.4 scenario 5, interface device chains", atr_ifsc10,
	    S({"00200A00A404001675364170709E", "00900090"},
	      {"00600AFFFF0000000000FFFF006A", "00800080"}, {"00000800FF00FF00FF0005F2", EX_RSP00}),
	    N({"00200A00A404001675364170709E", "00900090"},
	      {"00600AFFFF0000000000FFFF006A", "00800080"}, {"00000800FF00FF00FF0005F2", EX_RSP00}),
	    sel22, 28, "75747774759000");
#undef RUN
#undef N
#undef S
}

static void
test_wtx(void **state)
{
	struct sd_tcard tc = {.sleep_ms = 60};
	struct pg_card card;
	struct pg_link *l;
	struct trace t = {0};
	struct pg_link_params p = {.timeout_ms = 100};
	int from;
	size_t n;

	(void)state;
	/* The command takes 60 ms of a 100 ms BWT: the card asks for more time (rule 3). */
	from = scenario_open(&l, &tc, &card, &t, &p);
	n = mk(0, SD_INS_ECHO, 0, 0, (const uint8_t *)"abcd", 4, 4);
	assert_int_equal(xmit(l, n), 6);
	expect(
	    &t, from,
	    (const char *const[]){"> I(0,0)", "< S(WTX req 2)", "> S(WTX rsp 2)", "< I(0,0)", NULL},
	    "waiting time extension");
	pg_link_close(l);
}

static void
test_crc(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link_params p = {.crc = 1, .ifsc = 254};
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);
	struct pg_atr a;

	(void)state;
	assert_int_equal(pg_link_open_memory(&l, T1, &card, &p), 0);
	assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
	assert_int_equal(pgi_atr_parse(&a, atr, atrlen), 0);
	assert_int_equal(a.crc, 1); /* TC3 = 01 */
	run_cases(l, &tc);
	run_longest(l);
	pg_link_close(l);
}

/* Raw blocks into the card role (sd_stream as a sink): a repeated I-block is answered once. */
static void
test_card_exactly_once(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link_card *c = NULL;
	struct sd_stream k;
	uint8_t f[T1_MAX_BLOCK], first[T1_MAX_BLOCK];
	size_t n, firstn;
	struct t1_block b;

	(void)state;
	sd_script_init(&k, NULL, 0);
	assert_int_equal(T1->card_open(&c, &card, NULL), 0);
	n = mk(0, SD_INS_ECHO, 0, 0, (const uint8_t *)"xyz", 3, 3);
	n = pgi_t1_encode(f, 0, 0x00, cbuf, n, 0);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_int_equal(tc.executed, 1);
	memcpy(first, k.last, k.lastn);
	firstn = k.lastn;
	assert_int_equal(pgi_t1_decode(&b, first, firstn, 0), 0);
	assert_int_equal(b.kind, T1_I);
	assert_memory_equal(b.inf, "xyz\x90\x00", 5);
	/* The same I(0,0) again (the host missed our answer): same answer, no execution. */
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_int_equal(tc.executed, 1);
	assert_int_equal(k.lastn, firstn);
	assert_memory_equal(k.last, first, firstn);
	/* R(0): "I still expect your N(S)=0": resend, no execution. */
	n = pgi_t1_encode(f, 0, 0x80, NULL, 0, 0);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_memory_equal(k.last, first, firstn);
	assert_int_equal(tc.executed, 1);
	/* A damaged block gets R(N(R)=1, EDC); garbage gets R(1, other error). */
	f[3] ^= 0x40;
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_memory_equal(k.last, "\x00\x91\x00\x91", 4);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, (const uint8_t *)"\x00", 1, &k.base), 0);
	assert_memory_equal(k.last, "\x00\x92\x00\x92", 4);
	/* S(ABORT request) is answered; S(RESYNCH) resets N(S)/N(R). */
	n = pgi_t1_encode(f, 0, 0xC2, NULL, 0, 0);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_memory_equal(k.last, "\x00\xE2\x00\xE2", 4);
	n = pgi_t1_encode(f, 0, 0xC0, NULL, 0, 0);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_memory_equal(k.last, "\x00\xE0\x00\xE0", 4);
	n = mk(0, SD_INS_ECHO, 0, 0, (const uint8_t *)"xyz", 3, 3);
	n = pgi_t1_encode(f, 0, 0x00, cbuf, n, 0);
	assert_int_equal(T1->card_packet(c, PG_PKT_DATA, f, n, &k.base), 0);
	assert_int_equal(tc.executed, 2);
	pg_link_card_close(c);
}

static void
test_socketpair(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct sd_sock k = {0};
	struct pg_link *l = NULL;
	uint8_t atr[PG_ATR_MAX];
	size_t atrlen = sizeof(atr);

	(void)state;
	for (int crc = 0; crc <= 1; crc++) {
		struct pg_link_params p = {.ifsc = crc ? 254 : 32, .crc = crc};

		memset(&tc, 0, sizeof(tc));
		atrlen = sizeof(atr);
		assert_int_equal(sd_open_socket(&l, &k, T1, &card, &p), 0);
		assert_int_equal(pg_link_power_on(l, atr, &atrlen), 0);
		assert_int_equal(atrlen, crc ? 21u : 20u); /* TC3 when CRC */
		run_cases(l, &tc);
		run_longest(l);
		sd_close_socket(l, &k);
		assert_int_equal(k.rc, 0);
	}
}

/* 10,000 APDUs with 1% of frames dropped and 1% corrupted in each direction. */
static void
fault_run(struct pg_link *l, struct sd_tcard *tc, int count, uint64_t *resyncs)
{
	for (int i = 1; i <= count; i++) {
		uint8_t seq[8];
		size_t n, rn = sizeof(rbuf);
		int rc;

		pg_put_be64(seq, (uint64_t)i);
		n = mk(0x00, SD_INS_SEQ, 0, 0, seq, 8, 256);
		rc = pg_link_transmit(l, cbuf, n, rbuf, &rn);
		if (rc == PG_ERESYNC) {
			/*
			 * 7.4: after a resynchronisation the host does not know
			 * whether the command ran. Never seen with the seeds below;
			 * counted so the assertion below names it.
			 */
			(*resyncs)++;
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(rn, 18);
		assert_int_equal(pg_be64(rbuf), (uint64_t)i);
		assert_int_equal(pg_rapdu_sw(rbuf, rn), 0x9000);
	}
	assert_int_equal(tc->dup_seq, 0);
}

static void
test_fault_injection(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link *l = NULL;
	struct pg_stream *hf = NULL, *cf = NULL;
	struct pg_fault_stats hs, cs;
	uint64_t resyncs = 0;

	(void)state;
	for (int crc = 0; crc <= 1; crc++) {
		struct pg_link_params p = {.crc = crc, .ifsc = 32};

		memset(&tc, 0, sizeof(tc));
		resyncs = 0;
		assert_int_equal(kit_open_memory(&l, T1, &card, &p, NULL, 10000, 10000,
						 0xC0FFEE + (uint64_t)crc, &hf, &cf),
				 0);
		/* Power-on is retried: its frames go through the injector too. */
		for (int i = 0; i < 5 && pg_link_power_on(l, NULL, NULL) < 0; i++)
			;
		fault_run(l, &tc, 10000, &resyncs);
		pg_stream_faulty_stats(hf, &hs);
		pg_stream_faulty_stats(cf, &cs);
		printf(
		    "fault injection (%s): host->card %llu frames, %llu dropped, %llu corrupted; "
		    "card->host %llu frames, %llu dropped, %llu corrupted; executed %llu, "
		    "resyncs %llu\n",
		    crc ? "CRC" : "LRC", (unsigned long long)hs.packets,
		    (unsigned long long)hs.dropped, (unsigned long long)hs.corrupted,
		    (unsigned long long)cs.packets, (unsigned long long)cs.dropped,
		    (unsigned long long)cs.corrupted, (unsigned long long)tc.executed,
		    (unsigned long long)resyncs);
		/* The injector really worked, both ways. */
		assert_true(hs.dropped > 50 && hs.corrupted > 50);
		assert_true(cs.dropped > 50 && cs.corrupted > 50);
		assert_int_equal(resyncs, 0);
		/* Every command ran exactly once. */
		assert_int_equal(tc.executed, 10000);
		assert_int_equal(tc.last_seq, 10000);
		pg_link_close(l);
	}
}

/* The same over a socketpair with a short BWT, card role in a thread (sd_sock's faults). */
static void
test_fault_injection_socket(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link_params p = {.timeout_ms = 200, .ifsc = 32};
	struct sd_sock k = {.drop_ppm = 10000, .corrupt_ppm = 10000, .seed = 78};
	struct pg_link *l = NULL;
	struct pg_stream *s, *hf;
	struct pg_fault_stats hs, cs;
	int count = 400;
	uint64_t resyncs = 0;

	(void)state;
	assert_int_equal(sd_serve_socket(&k, T1, &card, &p, &s), 0);
	assert_int_equal(pg_stream_faulty(&hf, s, 10000, 10000, 77), 0);
	assert_int_equal(T1->host_open(&l, hf, NULL, &p), 0);
	for (int i = 0; i < 5 && pg_link_power_on(l, NULL, NULL) < 0; i++)
		;
	fault_run(l, &tc, count, &resyncs);
	pg_stream_faulty_stats(hf, &hs);
	assert_int_equal(sd_close_socket(l, &k), 0);
	cs = k.card_stats;
	printf("fault injection over a socketpair: host->card %llu frames (%llu dropped, %llu "
	       "corrupted), card->host %llu frames (%llu dropped, %llu corrupted), executed %llu\n",
	       (unsigned long long)hs.packets, (unsigned long long)hs.dropped,
	       (unsigned long long)hs.corrupted, (unsigned long long)cs.packets,
	       (unsigned long long)cs.dropped, (unsigned long long)cs.corrupted,
	       (unsigned long long)tc.executed);
	assert_true(hs.dropped + hs.corrupted > 0 && cs.dropped + cs.corrupted > 0);
	assert_int_equal(resyncs, 0);
	assert_int_equal(tc.executed, (uint64_t)count);
}

static void
test_speed(void **state)
{
	struct sd_tcard tc = {0};
	struct pg_card card = sd_tcard(&tc);
	struct pg_link *l = NULL;
	uint8_t data[11] = "0123456789";
	size_t n;
	int count = 200000;
	uint64_t t0, t1;

	(void)state;
	assert_int_equal(pg_link_open_memory(&l, T1, &card, NULL), 0);
	assert_int_equal(pg_link_power_on(l, NULL, NULL), 0);
	/* A 16-byte C-APDU: 00 10 00 00 0B + 11 data bytes (case 3, echoed back). */
	n = mk(0, SD_INS_ECHO, 0, 0, data, 11, 0);
	assert_int_equal(n, 16);
	t0 = pg_mono_ns();
	for (int i = 0; i < count; i++) {
		size_t rn = sizeof(rbuf);

		if (pg_link_transmit(l, cbuf, n, rbuf, &rn) != 0 || rn != 13)
			fail_msg("APDU %d failed", i);
	}
	t1 = pg_mono_ns();
	/* Measurement only (never a timed assertion); build type decides the figure. */
	printf("T=1 in-process: %d APDUs of 16 bytes in %.3f s: %.2f us/APDU, %.0f APDUs/s\n",
	       count, (double)(t1 - t0) / 1e9, (double)(t1 - t0) / 1e3 / count,
	       count / ((double)(t1 - t0) / 1e9));
	assert_int_equal(tc.executed, (uint64_t)count);
	pg_link_close(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_epilogues),
	    cmocka_unit_test(test_atr),
	    cmocka_unit_test(test_cases_memory),
	    cmocka_unit_test(test_chaining_ifsc32),
	    cmocka_unit_test(test_chaining_ifsc254),
	    cmocka_unit_test(test_scenarios),
	    cmocka_unit_test(test_annex_a_scripted),
	    cmocka_unit_test(test_wtx),
	    cmocka_unit_test(test_crc),
	    cmocka_unit_test(test_card_exactly_once),
	    cmocka_unit_test(test_socketpair),
	    cmocka_unit_test(test_fault_injection),
	    cmocka_unit_test(test_fault_injection_socket),
	    cmocka_unit_test(test_speed),
	};

	/* The driver is registered in the link table under its name. */
	if (pg_link_find("t1") != T1)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
