/*
 * The GP card's issuer security domain (GlobalPlatform Card Specification
 * v2.3): GET DATA layouts (CPLC, card recognition data per Annex H, key
 * information template, IIN/CIN), GET STATUS layouts with 6310 continuation,
 * SELECT by partial AID (first/next), 19 supplementary channels, INSTALL /
 * DELETE / STORE DATA / SET STATUS / PUT KEY inside an SCP03 session and
 * refused outside it, GET RESPONSE chaining, and 6A84 when the allocator
 * (a VSE's arena) is exhausted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gp_test.h"
#include "payguard/log.h"
#include "payguard/tlv.h"

#include <stdlib.h>
#include <unistd.h>

#define ISD  "A000000151000000"
#define PPSE "325041592E5359532E4444463031"
#define PAY  "F0504750415901"
#define PIN  "F05047504 94E01"

static const char *const apps3[] = {"ppse", "payment", "pin"};

static struct pg_gp_card *
mk(struct gt *t, const char *const *apps, int n)
{
	struct pg_gp_config cfg = {.serial = 0x01020304, .applets = apps, .n_applets = n};
	struct pg_gp_card *g = NULL;

	memcpy(cfg.cin, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(t, 0, sizeof(*t));
	t->card = pg_gp_card_card(g);
	return g;
}

static void
test_get_data(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);

	(void)st;
	gt_expect(&t, "80CA9F7F00", PG_SW_OK);
	assert_int_equal(t.n, 45);
	assert_int_equal(t.r[0], 0x9F);
	assert_int_equal(t.r[1], 0x7F);
	assert_int_equal(t.r[2], 42);
	assert_memory_equal(t.r + 3 + 12, "\x01\x02\x03\x04", 4); /* IC serial number */
	/* Card recognition data, GP 2.3 Annex H: GP 2.3.1, SCP03 i=70. */
	gt_expect(&t, "80CA006600", PG_SW_OK);
	gt_data(&t, "6631732F06072A864886FC6B01600C060A2A864886FC6B02020301"
		    "630906072A864886FC6B03640B06092A864886FC6B040370");
	/* Key information template: three AES-128 keys of version 30. */
	gt_expect(&t, "80CA00E000", PG_SW_OK);
	gt_data(&t, "E012C00401308810C00402308810C00403308810");
	gt_expect(&t, "80CA004500", PG_SW_OK);
	gt_data(&t, "45081122334455667788");
	gt_expect(&t, "80CA004200", PG_SW_REF_DATA_NOT_FOUND); /* not personalised yet */
	gt_expect(&t, "80CA00C100", PG_SW_OK);
	gt_data(&t, "C103000000");
	gt_expect(&t, "80CA9F7F05", 0x6C2D); /* Le too short: 6Cxx with the right length */
	gt_expect(&t, "80CA123400", PG_SW_REF_DATA_NOT_FOUND);
	pg_gp_card_free(g);
}

static void
test_get_status(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);

	(void)st;
	gt_expect(&t, "80F28002024F0000", PG_SW_OK);
	gt_data(&t, "E3134F08" ISD "9F70010FC5039E0000");
	gt_expect(&t, "80F24002024F0000", PG_SW_OK);
	gt_data(&t, "E32B4F0E" PPSE "9F700107C503000000C406F050474C4601CC08" ISD "E3244F07" PAY
		    "9F700107C503000000C406F050474C4602CC08" ISD
		    "E3244F07F05047504 94E01 9F700107C503000000C406F050474C4603CC08" ISD);
	/* Search by AID prefix; tag list 5C accepted. */
	gt_expect(&t, "80F24002084F03F050475C014F00", PG_SW_OK);
	assert_int_equal(t.n, 2 * 0x26);
	gt_expect(&t, "80F24002034F01AA00", PG_SW_REF_DATA_NOT_FOUND);
	/* Load files, and load files with modules. */
	gt_expect(&t, "80F22002024F0000", PG_SW_OK);
	assert_int_equal(t.n, 7 * (2 + 8 + 4 + 10));
	gt_data(&t, "E3164F06F050474C46019F700101CC08" ISD "E3164F06F050474C46029F700101CC08" ISD
		    "E3164F06F050474C46039F700101CC08" ISD "E3164F06F050474C46049F700101CC08" ISD
		    "E3164F06F050474C46059F700101CC08" ISD "E3164F06F050474C46069F700101CC08" ISD
		    "E3164F06F050474C46079F700101CC08" ISD);
	gt_expect(&t, "80F21002024F0000", PG_SW_OK);
	assert_int_equal(t.r[1], 0x1E);
	assert_memory_equal(t.r + 24, "\x84\x06\xF0PGMD\x01", 8);
	/* Only the TLV format; next occurrence needs a first one. */
	gt_expect(&t, "80F24000024F0000", PG_SW_INCORRECT_P1P2);
	gt_expect(&t, "80F24003024F0000", PG_SW_CONDITIONS);
	gt_expect(&t, "80F24002024E0000", PG_SW_WRONG_DATA);
	gt_expect(&t, "80F20102024F0000", PG_SW_INCORRECT_P1P2);
	pg_gp_card_free(g);
}

static void
test_select_partial(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);

	(void)st;
	gt_expect(&t, "00A4040003F0504700", PG_SW_OK); /* first: the payment applet */
	assert_memory_equal(t.r + 2, "\x84\x07\xF0PGPAY\x01", 9);
	gt_expect(&t, "00A4040203F0504700", PG_SW_OK); /* next: the PIN applet */
	assert_memory_equal(t.r, "\x6F", 1);
	gt_expect(&t, "00A4040C03F05047", PG_SW_OK); /* first again, no FCI */
	assert_int_equal(t.n, 0);
	gt_expect(&t, "00A4040203F0504700", PG_SW_OK); /* next: PIN */
	gt_expect(&t, "00A4040203F0504700", PG_SW_NOT_FOUND);
	gt_expect(&t, "0020008000", 0x63C3); /* PIN stays selected after the failed next */
	gt_expect(&t, "00A4040008" ISD "00", PG_SW_OK);
	gt_expect(&t,
		  "00A40400"
		  "0E" PPSE "00",
		  PG_SW_OK);
	gt_expect(&t, "00A4040005A00000000300", PG_SW_NOT_FOUND);
	pg_gp_card_free(g);
}

static void
test_channels(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);

	(void)st;
	for (int i = 1; i <= 19; i++) {
		gt_expect(&t, "0070000001", PG_SW_OK);
		assert_int_equal(t.n, 1);
		assert_int_equal(t.r[0], i);
	}
	gt_expect(&t, "0070000001", PG_SW_FUNC_NOT_SUPPORTED); /* no 20th */
	/* Channel 19 (further interindustry class 4F): ISD selected there by default. */
	gt_expect(&t, "CF CA 9F7F 00", PG_SW_OK);
	gt_expect(&t,
		  "4FA40400"
		  "07" PAY "00",
		  PG_SW_OK);
	gt_expect(&t,
		  "4FA40400"
		  "07" PAY "00",
		  PG_SW_OK);
	gt_expect(&t, "00CA9F7F00", PG_SW_OK); /* basic channel keeps the ISD */
	gt_expect(&t, "4F70801300", PG_SW_OK); /* close 19 from itself */
	gt_expect(&t, "4FCA9F7F00", PG_SW_CHANNEL_NOT_SUPPORTED);
	gt_expect(&t, "0070000001", PG_SW_OK); /* and it is free again */
	assert_int_equal(t.r[0], 19);
	gt_expect(&t, "0070800000", PG_SW_INCORRECT_P1P2); /* never the basic channel */
	/* An SCP03 session lives on its channel: channel 1 has none. */
	struct pg_scp03_keys k;
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	gt_sexpect(&t, "80F28002024F0000", PG_SW_OK);
	gt_sexpect(&t, "81F28002024F0000", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "81F28002024F0000", PG_SW_OK); /* plain GET STATUS works */
	gt_expect(&t, "81E2880006004203010203", PG_SW_SECURITY_STATUS);
	pg_gp_card_free(g);
}

static void
test_content_management(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);
	struct pg_scp03_keys k;

	(void)st;
	gt_default_keys(&k);
	/* Outside a session everything is refused. */
	gt_expect(&t,
		  "80E60C001C06F050474C460306F050474D440307F0504750494E020100"
		  "02C90000"
		  "00",
		  PG_SW_SECURITY_STATUS);
	gt_expect(&t, "80E40000094F07" PAY "00", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "80E2880006004203010203", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "80F0807F", PG_SW_SECURITY_STATUS);
	/* In a C-MAC + C-DEC + R-MAC + R-ENC session. */
	assert_int_equal(gt_open_scp(&t, &k, 0x33, 0), 0);
	gt_sexpect(&t,
		   "80E60C001C06F050474C460306F050474D440307F0504750494E020100"
		   "02C90000"
		   "00",
		   PG_SW_OK);
	gt_data(&t, "00");
	gt_sexpect(&t,
		   "80E60C001C06F050474C460306F050474D440307F0504750494E020100"
		   "02C90000"
		   "00",
		   0x6A89); /* exists */
	gt_sexpect(&t,
		   "80E60C001C06F050474C460906F050474D440907F0504750494E030100"
		   "02C90000"
		   "00",
		   PG_SW_REF_DATA_NOT_FOUND); /* not in the catalogue */
	gt_sexpect(&t,
		   "80E60C001B06F050474C460306F050474D440307F0504750494E030100"
		   "01C9"
		   "00",
		   PG_SW_WRONG_DATA); /* malformed parameters */
	/* Installed without "make selectable": INSTALLED, not selectable until P1=08. */
	gt_sexpect(&t,
		   "80E604001D06F050474C460306F050474D440307F0504750494E040100"
		   "03C90101"
		   "00",
		   PG_SW_OK);
	gt_sexpect(&t, "80F24002094F07F0504750494E0400", PG_SW_OK);
	gt_data(&t, "E3244F07F0504750494E049F700103C503000000C406F050474C4603CC08" ISD);
	gt_sexpect(&t,
		   "80E60800"
		   "0D"
		   "000007F0504750494E0400000000",
		   PG_SW_OK);
	gt_sexpect(&t, "80F24002094F07F0504750494E0400", PG_SW_OK);
	assert_int_equal(t.r[0x0E], 0x07);
	/* STORE DATA to the ISD: IIN and CIN (DGI format, last block). */
	gt_sexpect(&t, "80E2080006004203010203", PG_SW_OK);
	gt_sexpect(&t, "80E2880106004503AABBCC", PG_SW_OK);
	gt_sexpect(&t, "80E2880105004203010203", PG_SW_INCORRECT_P1P2); /* block number */
	gt_sexpect(&t, "80E2980006004203010203", PG_SW_INCORRECT_P1P2); /* encrypted */
	gt_sexpect(&t, "80E2880006009903010203", PG_SW_REF_DATA_NOT_FOUND);
	/* DELETE */
	gt_sexpect(&t, "80E40000094F07F0504750494E0200", PG_SW_OK);
	gt_data(&t, "00");
	gt_sexpect(&t, "80E40000094F07F0504750494E0200", PG_SW_REF_DATA_NOT_FOUND);
	gt_sexpect(&t, "80E400000A4F08" ISD "00", PG_SW_CONDITIONS);
	gt_sexpect(&t, "80E40080084F06F050474C460200", PG_SW_CONDITIONS); /* ROM load file */
	gt_sexpect(&t, "80E400000A4F07F0504750494E020000", PG_SW_WRONG_DATA);
	/* The session ends with SELECT; outside it again refused. */
	gt_expect(&t, "00A4040008" ISD "00", PG_SW_OK);
	gt_expect(&t, "80CA004200", PG_SW_OK);
	gt_data(&t, "4203010203");
	gt_expect(&t, "80CA004500", PG_SW_OK);
	gt_data(&t, "4503AABBCC");
	gt_expect(&t, "80E40000094F07F0504750494E0400", PG_SW_SECURITY_STATUS);
	pg_gp_card_free(g);
}

static void
test_personalise_and_life_cycle(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);
	struct pg_scp03_keys k;

	(void)st;
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	/* INSTALL [for personalization] then STORE DATA to the payment applet. */
	gt_sexpect(&t, "80E620000D000007" PAY "00000000", PG_SW_OK);
	gt_sexpect(&t, "80E2080013800010000102030405060708090A0B0C0D0E0F", PG_SW_OK);
	gt_sexpect(&t, "80E288010802010570035A0112", PG_SW_OK);
	gt_sexpect(&t, "80F24002094F07" PAY "00", PG_SW_OK);
	assert_int_equal(t.r[0x0E], PG_GP_APP_PERSONALIZED);
	/* A bad DGI in a block changes nothing. */
	gt_sexpect(&t, "80E620000D000007" PAY "00000000", PG_SW_OK);
	gt_sexpect(&t, "80E2880006800010000102", PG_SW_WRONG_DATA); /* truncated DGI */
	gt_sexpect(&t,
		   "80E288000E"
		   "02010570035A0199"
		   "800003010203",
		   PG_SW_WRONG_DATA);
	gt_expect(&t, "00A4040007" PAY "00", PG_SW_OK);
	gt_expect(&t, "00B2011400", PG_SW_OK);
	gt_data(&t, "70035A0112"); /* the record of the refused block did not land */
	gt_expect(&t, "00A4040008" ISD "00", PG_SW_OK);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	/* Lock / unlock an application. */
	gt_sexpect(&t, "80F0408007F05047504 94E01", PG_SW_OK);
	gt_sexpect(&t, "80F24002094F07F0504750494E0100", PG_SW_OK);
	assert_int_equal(t.r[0x0E], 0x87);
	gt_expect(&t,
		  "00A40400"
		  "07"
		  "F0504750494E01"
		  "00",
		  PG_SW_NOT_FOUND);
	gt_sexpect(&t, "80F0400007F05047504 94E01", PG_SW_OK);
	gt_expect(&t,
		  "01A40400"
		  "07"
		  "F0504750494E01"
		  "00",
		  PG_SW_CHANNEL_NOT_SUPPORTED);
	/* Card lock: only the ISD stays selectable. */
	gt_sexpect(&t, "80F0807F", PG_SW_OK);
	gt_sexpect(&t, "80F0800F", PG_SW_OK);
	gt_sexpect(&t, "80F08001", PG_SW_CONDITIONS); /* no way back to OP_READY */
	gt_sexpect(&t, "80F0807F", PG_SW_OK);
	gt_expect(&t, "0070000001", PG_SW_OK);
	gt_expect(&t,
		  "01A40400"
		  "07" PAY "00",
		  PG_SW_NOT_FOUND);
	gt_expect(&t,
		  "01A40400"
		  "0E" PPSE "00",
		  PG_SW_NOT_FOUND);
	gt_sexpect(&t, "80F28002024F0000", PG_SW_OK);
	assert_int_equal(t.r[0x0F], PG_GP_CARD_LOCKED);
	gt_sexpect(&t, "80F0800F", PG_SW_OK);
	gt_expect(&t,
		  "01A40400"
		  "07" PAY "00",
		  PG_SW_OK);
	/* Terminated: GET DATA only, forever. */
	gt_sexpect(&t, "80F080FF", PG_SW_OK);
	gt_expect(&t, "80CA9F7F00", PG_SW_OK);
	gt_expect(&t, "80F28002024F0000", PG_SW_FUNC_NOT_SUPPORTED);
	gt_expect(&t, "8050300008000102030405060700", PG_SW_FUNC_NOT_SUPPORTED);
	gt_expect(&t, "00A4040007" PAY "00", PG_SW_NOT_FOUND);
	pg_gp_card_free(g);
}

static void
test_get_status_continuation_and_get_response(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);
	struct pg_scp03_keys k;
	char apdu[200];
	uint8_t all[2048];
	size_t an = 0;
	int entries = 0;

	(void)st;
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(&t, &k, 0x33, 0), 0); /* 6310 goes out R-MACed and R-ENCed */
	/* Ten more payment instances with long AIDs: 13 entries do not fit one response. */
	for (int i = 0; i < 10; i++) {
		snprintf(apdu, sizeof(apdu),
			 "80E60C002506F050474C460206F050474D440210F050475041590000000000000000%04X"
			 "010002C90000",
			 i);
		gt_sexpect(&t, apdu, PG_SW_OK);
	}
	gt_sexpect(&t, "80F24002024F0000", 0x6310);
	assert_true(t.n <= 256);
	memcpy(all, t.r, t.n), an = t.n;
	while (gt_stx(&t, "80F24003024F0000") == 0x6310) {
		assert_true(t.n > 0 && t.n <= 256);
		memcpy(all + an, t.r, t.n), an += t.n;
	}
	assert_int_equal(t.sw, PG_SW_OK);
	memcpy(all + an, t.r, t.n), an += t.n;
	for (size_t off = 0; off < an;) {
		struct pg_tlv tl;
		int n = pg_tlv_next(&tl, all + off, an - off);

		assert_true(n > 0);
		assert_int_equal(tl.tag, 0xE3);
		entries++;
		off += (size_t)n;
	}
	assert_int_equal(entries, 13);
	gt_sexpect(&t, "80F24003024F0000", PG_SW_CONDITIONS); /* nothing left */
	/* SELECT PPSE: 11 payment entries exceed 256 bytes -> 61xx and GET RESPONSE. */
	assert_int_equal(gt_tx(&t, "00A40400"
				   "0E" PPSE "00") &
			     0xFF00,
			 0x6100);
	assert_int_equal(t.n, 256);
	memcpy(all, t.r, 256), an = 256;
	{
		uint16_t sw = gt_tx(&t, "00C0000000");

		assert_int_equal(sw, PG_SW_OK);
		memcpy(all + an, t.r, t.n), an += t.n;
	}
	{
		struct pg_tlv fci, bf;

		assert_int_equal(pg_tlv_next(&fci, all, an), (int)an);
		assert_int_equal(fci.tag, 0x6F);
		assert_int_equal(pg_tlv_find(&bf, fci.val, fci.len, 0xBF0C, 1), 1);
		entries = 0;
		for (size_t off = 0; off < bf.len;) {
			struct pg_tlv e;
			int n = pg_tlv_next(&e, bf.val + off, bf.len - off);

			assert_true(n > 0);
			assert_int_equal(e.tag, 0x61);
			entries++;
			off += (size_t)n;
		}
		assert_int_equal(entries, 11);
	}
	gt_expect(&t, "00C0000000", PG_SW_CONDITIONS); /* nothing pending */
	/* Any other command drops what is pending. */
	assert_int_equal(gt_tx(&t, "00A40400"
				   "0E" PPSE "00") &
			     0xFF00,
			 0x6100);
	gt_expect(&t, "00CA9F7F00", PG_SW_INS_NOT_SUPPORTED);
	gt_expect(&t, "00C0000000", PG_SW_CONDITIONS);
	pg_gp_card_free(g);
}

static void
test_put_key(void **st)
{
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);
	struct pg_scp03_keys k, nk;
	uint8_t a[300];
	char hex[700];
	int n;

	(void)st;
	gt_default_keys(&k);
	memset(&nk, 0, sizeof(nk));
	nk.len = 32;
	nk.kvn = 0x31;
	for (int i = 0; i < 32; i++)
		nk.enc[i] = (uint8_t)i, nk.mac[i] = (uint8_t)(0x80 + i),
		nk.dek[i] = (uint8_t)(0xC0 ^ i);
	n = pg_scp03_put_key_build(k.dek, k.len, 0x30, &nk, a, sizeof(a));
	assert_true(n > 0);
	pg_hex_encode(hex, a, (size_t)n);
	gt_expect(&t, hex, PG_SW_SECURITY_STATUS);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	gt_sexpect(&t, hex, PG_SW_OK);
	assert_int_equal(pg_scp03_put_key_check(&nk, t.r, t.n), 0);
	gt_expect(&t, "00A4040008" ISD "00", PG_SW_OK);
	assert_int_not_equal(gt_open_scp(&t, &k, 0x01, 0), 0); /* the old keys are gone */
	assert_int_equal(gt_open_scp(&t, &nk, 0x33, 0), 0);
	gt_sexpect(&t, "80CA00E000", PG_SW_OK);
	gt_data(&t, "E012C00401318820C00402318820C00403318820");
	pg_gp_card_free(g);
}

/* An allocator with a budget, standing in for a VSE's arena. */
struct budget {
	size_t left;
};

static void *
b_alloc(void *ctx, size_t n)
{
	struct budget *b = ctx;
	size_t *p;

	if (n + 16 > b->left)
		return NULL;
	p = malloc(n + 16);
	if (!p)
		return NULL;
	b->left -= n + 16;
	p[0] = n + 16;
	return (uint8_t *)p + 16;
}

static void
b_dealloc(void *ctx, void *q)
{
	struct budget *b = ctx;
	size_t *p = (size_t *)((uint8_t *)q - 16);

	b->left += p[0];
	free(p);
}

static void
test_arena_exhausted(void **st)
{
	struct budget bud = {.left = 1 << 20};
	size_t used;
	struct pg_gp_config cfg = {
	    .serial = 7, .alloc = b_alloc, .dealloc = b_dealloc, .actx = &bud};
	struct pg_gp_card *g = NULL;
	struct pg_scp03_keys k;
	struct gt t;
	char apdu[200];
	int i, full = 0;

	(void)st;
	/* What a blank card takes, then an arena with room for about two more instances. */
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	used = (1u << 20) - bud.left;
	pg_gp_card_free(g);
	assert_int_equal(bud.left, 1u << 20);
	bud.left = used + 1600;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	gt_default_keys(&k);
	gt_expect(&t, "80CA00E000", PG_SW_OK);
	gt_data(&t, "E012C00401308810C00402308810C00403308810");
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	for (i = 0; i < 6 && !full; i++) {
		snprintf(apdu, sizeof(apdu),
			 "80E60C001C06F050474C460206F050474D440207F0504750415A%02X010002C90000", i);
		uint16_t sw = gt_stx(&t, apdu);

		if (sw == PG_SW_NOT_ENOUGH_MEMORY)
			full = 1;
		else
			assert_int_equal(sw, PG_SW_OK);
	}
	assert_true(full); /* 6A84, not a crash */
	assert_true(i >= 2);
	gt_sexpect(&t, "80F24002024F0000", PG_SW_OK); /* the card still answers */
	pg_gp_card_free(g);
	assert_int_equal(bud.left, used + 1600); /* everything returned */
}

static void
test_persistent_file(void **st)
{
	char path[] = "/tmp/pg_isd_nvmXXXXXX";
	int fd = mkstemp(path);
	struct pg_nvm *nvm = NULL;
	struct pg_gp_config cfg = {.serial = 9, .applets = apps3, .n_applets = 3};
	struct pg_gp_card *g = NULL;
	struct pg_scp03_keys k;
	struct gt t;
	uint8_t img1[16384], img2[16384];
	int n1, n2;

	(void)st;
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(pg_nvm_open_fd(&nvm, fd, 16384), 0);
	cfg.nvm = nvm;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(&t, &k, 0x03, 0), 0);
	gt_sexpect(&t, "80E2880006004203998877", PG_SW_OK);
	gt_sexpect(&t, "80E40000094F07" PAY "00", PG_SW_OK);
	n1 = pg_gp_card_image(g, img1, sizeof(img1));
	assert_true(n1 > 0);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	/* Power off, on: the same file gives the same card. */
	assert_int_equal(pg_nvm_open_fd(&nvm, fd, 16384), 0);
	cfg.nvm = nvm;
	cfg.n_applets = 0;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	t.card = pg_gp_card_card(g);
	n2 = pg_gp_card_image(g, img2, sizeof(img2));
	assert_int_equal(n1, n2);
	assert_memory_equal(img1, img2, (size_t)n1);
	gt_expect(&t, "80CA004200", PG_SW_OK);
	gt_data(&t, "4203998877");
	gt_expect(&t, "80CA00C100", PG_SW_OK);
	gt_data(&t, "C103000001"); /* the sequence counter survived */
	gt_expect(&t, "00A4040007" PAY "00", PG_SW_NOT_FOUND);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
	close(fd);
}

/* Every security level of Amendment D end to end through the ISD, and the refusals. */
static void
test_scp03_levels_and_refusals(void **st)
{
	static const uint8_t levels[] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33};
	struct gt t;
	struct pg_gp_card *g = mk(&t, apps3, 3);
	struct pg_scp03_keys k, bad;
	uint8_t a[300], r[300], ea[300];
	size_t rn;
	int n, ean;

	(void)st;
	gt_default_keys(&k);
	for (size_t i = 0; i < sizeof(levels); i++) {
		uint16_t want = levels[i] & 0x01 ? PG_SW_OK : PG_SW_SECURITY_STATUS;

		assert_int_equal(gt_open_scp(&t, &k, levels[i], 0), 0);
		gt_sexpect(&t,
			   "80E60C001C06F050474C460306F050474D440307F0504750494E09010002C9000000",
			   want);
		if (want == PG_SW_OK)
			gt_sexpect(&t, "80E40000094F07F0504750494E0900", PG_SW_OK);
	}
	/* Wrong host cryptogram (other keys on the host side): 6300, no session. */
	bad = k;
	bad.mac[0] ^= 1;
	assert_int_not_equal(gt_open_scp(&t, &bad, 0x01, 0), 0);
	/* A replayed EXTERNAL AUTHENTICATE: 6985, and the open session is not touched. */
	memset(&t.s, 0, sizeof(t.s));
	n = pg_scp03_host_init_update(&t.s, 0x30, NULL, 8, a, sizeof(a));
	rn = sizeof(r);
	assert_int_equal(t.card->process(t.card->ctx, a, (size_t)n, r, &rn), 0);
	ean = pg_scp03_host_auth(&t.s, &k, r, rn, 0x01, ea, sizeof(ea));
	assert_true(ean > 0);
	rn = sizeof(r);
	assert_int_equal(t.card->process(t.card->ctx, ea, (size_t)ean, r, &rn), 0);
	assert_int_equal(pg_scp03_host_auth_done(&t.s, r, rn), 0);
	rn = sizeof(r);
	assert_int_equal(t.card->process(t.card->ctx, ea, (size_t)ean, r, &rn), 0);
	assert_int_equal(pg_rapdu_sw(r, rn), PG_SW_CONDITIONS);
	gt_sexpect(&t, "80F28002024F0000", PG_SW_OK);
	/* A bad C-MAC: 6982 and the session is closed on the card. */
	n = pg_hex_decode(a, sizeof(a), "80F28002024F0000");
	n = pg_scp03_host_wrap(&t.s, a, (size_t)n, ea, sizeof(ea));
	ea[n - 2] ^= 0x01; /* the last byte before Le is the MAC's */
	rn = sizeof(r);
	assert_int_equal(t.card->process(t.card->ctx, ea, (size_t)n, r, &rn), 0);
	assert_int_equal(pg_rapdu_sw(r, rn), PG_SW_SECURITY_STATUS);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0); /* a new session works */
	gt_sexpect(&t, "80F28002024F0000", PG_SW_OK);
	pg_gp_card_free(g);
}

/* GET DATA DF50: the configuration version, bumped by INSTALL, DELETE, STORE
 * DATA and SET STATUS (not by refused commands), persistent across power cycles. */
static uint32_t
cfg_version(struct gt *t)
{
	gt_expect(t, "80CADF5000", PG_SW_OK);
	assert_int_equal(t->n, 7);
	assert_memory_equal(t->r, "\xDF\x50\x04", 3);
	return (uint32_t)t->r[3] << 24 | (uint32_t)t->r[4] << 16 | (uint32_t)t->r[5] << 8 | t->r[6];
}

static void
test_config_version(void **st)
{
	struct pg_gp_config cfg = {.serial = 5, .applets = apps3, .n_applets = 3};
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g = NULL;
	struct pg_scp03_keys k;
	struct gt t;
	uint32_t v0, v;

	(void)st;
	assert_int_equal(pg_nvm_open_memory(&nvm, 16384), 0);
	cfg.nvm = nvm;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	v0 = cfg_version(&t);
	assert_true(v0 >= 1);
	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	gt_sexpect(&t,
		   "80E60C001C06F050474C460306F050474D440307F0504750494E020100"
		   "02C90000"
		   "00",
		   PG_SW_OK);
	gt_sexpect(&t, "80CADF5000", PG_SW_OK);
	v = (uint32_t)t.r[3] << 24 | (uint32_t)t.r[4] << 16 | (uint32_t)t.r[5] << 8 | t.r[6];
	assert_int_equal(v, v0 + 1);
	/* A refused INSTALL (the AID exists) changes nothing. */
	gt_sexpect(&t,
		   "80E60C001C06F050474C460306F050474D440307F0504750494E020100"
		   "02C90000"
		   "00",
		   0x6A89);
	gt_sexpect(&t, "80E40000094F07F0504750494E0200", PG_SW_OK); /* DELETE */
	gt_sexpect(&t, "80CADF5000", PG_SW_OK);
	v = (uint32_t)t.r[3] << 24 | (uint32_t)t.r[4] << 16 | (uint32_t)t.r[5] << 8 | t.r[6];
	assert_int_equal(v, v0 + 2);
	gt_sexpect(&t, "80E2880006004203010203", PG_SW_OK); /* STORE DATA: IIN */
	/* The version survives a power cycle. */
	pg_gp_card_free(g);
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	assert_int_equal(cfg_version(&t), v0 + 3);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
}

/*
 * A card profile (issue 16 item 1: the SE OS's test SE is this card): an
 * applet at an AID of the profile's choosing, IIN, ARA-M rules stored before
 * first use, a first configuration version, and an ISD without DF50.
 */
static void
test_profile(void **st)
{
	static const char *const apps[] = {"echo@A0000000041010", "aram"};
	static const uint8_t iin[] = {0x89, 0x50, 0x47};
	static const uint8_t rules[] = {0xE2, 0x0B, 0xE1, 0x04, 0x4F, 0x00, 0xC1,
					0x00, 0xE3, 0x03, 0xD0, 0x01, 0x01};
	static const char *const bad[] = {"echo@A000"};
	static const char *const unknown[] = {"nope@A0000000041010"};
	struct pg_gp_config cfg = {.serial = 9,
				   .applets = apps,
				   .n_applets = 2,
				   .iin = iin,
				   .iin_len = sizeof(iin),
				   .cfg_version = 41,
				   .aram_rules = rules,
				   .aram_rules_len = sizeof(rules)};
	struct pg_gp_card *g = NULL;
	struct gt t;

	(void)st;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	gt_expect(&t, "80CA004200", PG_SW_OK);
	gt_data(&t, "4203895047");
	gt_expect(&t, "80CADF5000", PG_SW_OK);
	gt_data(&t, "DF500400000029"); /* 41 */
	assert_int_equal(pg_gp_card_set_config_version(g, 43), 0);
	gt_expect(&t, "80CADF5000", PG_SW_OK);
	gt_data(&t, "DF50040000002B");
	/* the echo applet at the profile's AID: data back, any instruction */
	gt_expect(&t, "00A4040007A000000004101000", PG_SW_OK);
	gt_expect(&t, "8002000002CAFE00", PG_SW_OK);
	gt_data(&t, "CAFE");
	/* ARA-M answers the stored rules at once */
	gt_expect(&t, "00A4040009A00000015141434C0000", PG_SW_OK);
	gt_expect(&t, "80CAFF4000", PG_SW_OK);
	gt_data(&t, "FF400DE20BE1044F00C100E303D00101");
	assert_true(pg_gp_card_apdus(g) == 7); /* every command above */
	pg_gp_card_free(g);
	/* an ISD without the configuration version */
	cfg.no_cfg_version = 1;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	t.card = pg_gp_card_card(g);
	gt_expect(&t, "80CADF5000", PG_SW_REF_DATA_NOT_FOUND);
	pg_gp_card_free(g);
	/* a bad AID or an applet not in the catalogue: refused with the reason */
	cfg.applets = bad;
	cfg.n_applets = 1;
	cfg.aram_rules = NULL;
	assert_int_equal(pg_gp_card_new(&g, &cfg), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "AID"));
	cfg.applets = unknown;
	assert_int_equal(pg_gp_card_new(&g, &cfg), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "catalogue"));
	/* rules without an ARA-M to hold them */
	cfg.applets = apps;
	cfg.n_applets = 1;
	cfg.aram_rules = rules;
	assert_int_equal(pg_gp_card_new(&g, &cfg), PG_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_data),
	    cmocka_unit_test(test_get_status),
	    cmocka_unit_test(test_select_partial),
	    cmocka_unit_test(test_channels),
	    cmocka_unit_test(test_content_management),
	    cmocka_unit_test(test_personalise_and_life_cycle),
	    cmocka_unit_test(test_get_status_continuation_and_get_response),
	    cmocka_unit_test(test_put_key),
	    cmocka_unit_test(test_scp03_levels_and_refusals),
	    cmocka_unit_test(test_arena_exhausted),
	    cmocka_unit_test(test_persistent_file),
	    cmocka_unit_test(test_config_version),
	    cmocka_unit_test(test_profile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
