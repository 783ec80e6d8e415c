/*
 * The GP card's catalogue applets end to end: the payment flow a terminal
 * runs (SELECT PPSE, SELECT AID, GET PROCESSING OPTIONS, READ RECORD per AFL,
 * GENERATE AC for ARQC/TC/AAC, the cryptogram recomputed here with OpenSSL
 * from the per-card key personalised by STORE DATA) and the PIN flow (VERIFY
 * with its persistent try counter, CHANGE REFERENCE DATA, P-256 key
 * generation on the card and an ECDSA signature checked with OpenSSL), and
 * the transit applet of a card profile with labels and priorities (the NFC
 * switch's simulated SEs, issue 16): its stored value survives a power cycle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gp_test.h"
#include "payguard/tlv.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdlib.h>

#define PPSE "325041592E5359532E4444463031"
#define PAY  "F0504750415901"
#define PINA "F0504750494E01"
#define KEY  "00112233445566778899AABBCCDDEEFF"
#define CDOL                                                                                       \
	"000000001000"                                                                             \
	"000000000000"                                                                             \
	"0250"                                                                                     \
	"0000000000"                                                                               \
	"0978"                                                                                     \
	"261125"                                                                                   \
	"00"                                                                                       \
	"11223344"

static const char *const apps3[] = {"ppse", "payment", "pin"};

static struct pg_gp_card *
mk(struct gt *t, struct pg_nvm *nvm)
{
	struct pg_gp_config cfg = {
	    .serial = 0x12345678, .applets = apps3, .n_applets = 3, .nvm = nvm};
	struct pg_gp_card *g = NULL;

	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(t, 0, sizeof(*t));
	t->card = pg_gp_card_card(g);
	return g;
}

static void
find(const uint8_t *p, size_t n, uint32_t tag, struct pg_tlv *out)
{
	int rc = pg_tlv_find(out, p, n, tag, 1);

	if (rc != 1)
		fprintf(stderr, "tag %X not found\n", tag);
	assert_int_equal(rc, 1);
}

static void
personalise(struct gt *t)
{
	struct pg_scp03_keys k;

	gt_default_keys(&k);
	assert_int_equal(gt_open_scp(t, &k, 0x03, 0), 0);
	gt_sexpect(t, "80E620000D000007" PAY "00000000", PG_SW_OK);
	gt_sexpect(t, "80E2880013800010" KEY, PG_SW_OK);
	gt_expect(t, "00A4040008A00000015100000000", PG_SW_OK);
}

/* AC = AES-CMAC(SK, CDOL1 || AIP || ATC || IAD)[0..8), SK = AES(MK)[ATC || F0 || 00..]. */
static void
expect_ac(const uint8_t *ac, const uint8_t atc[2], const uint8_t *iad, size_t iadn)
{
	uint8_t key[16], blk[16] = {0}, sk[16], msg[64], mac[16];
	size_t mn = 0, ml = 0;
	int l = 0;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *mc = EVP_MAC_CTX_new(m);
	OSSL_PARAM prm[2] = {OSSL_PARAM_construct_utf8_string("cipher", "AES-128-CBC", 0),
			     OSSL_PARAM_construct_end()};

	pg_hex_decode(key, 16, KEY);
	blk[0] = atc[0], blk[1] = atc[1], blk[2] = 0xF0;
	assert_true(EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, key, NULL));
	EVP_CIPHER_CTX_set_padding(c, 0);
	assert_true(EVP_EncryptUpdate(c, sk, &l, blk, 16) && l == 16);
	mn = (size_t)pg_hex_decode(msg, sizeof(msg), CDOL);
	msg[mn++] = 0x08, msg[mn++] = 0x80;
	msg[mn++] = atc[0], msg[mn++] = atc[1];
	memcpy(msg + mn, iad, iadn), mn += iadn;
	assert_true(EVP_MAC_init(mc, sk, 16, prm) && EVP_MAC_update(mc, msg, mn) &&
		    EVP_MAC_final(mc, mac, &ml, 16));
	assert_memory_equal(ac, mac, 8);
	EVP_MAC_CTX_free(mc);
	EVP_MAC_free(m);
	EVP_CIPHER_CTX_free(c);
}

static void
generate_ac(struct gt *t, uint8_t p1, uint8_t cid, unsigned atc)
{
	char apdu[200];
	struct pg_tlv tl, v;
	uint8_t a[2] = {(uint8_t)(atc >> 8), (uint8_t)atc};

	snprintf(apdu, sizeof(apdu), "80AE%02X001D" CDOL "00", p1);
	gt_expect(t, apdu, PG_SW_OK);
	assert_int_equal(pg_tlv_next(&tl, t->r, t->n), (int)t->n);
	assert_int_equal(tl.tag, 0x77);
	find(tl.val, tl.len, 0x9F27, &v);
	assert_int_equal(v.len, 1);
	assert_int_equal(v.val[0], cid);
	find(tl.val, tl.len, 0x9F36, &v);
	assert_memory_equal(v.val, a, 2);
	{
		struct pg_tlv ac, iad;

		find(tl.val, tl.len, 0x9F26, &ac);
		find(tl.val, tl.len, 0x9F10, &iad);
		assert_int_equal(ac.len, 8);
		expect_ac(ac.val, a, iad.val, iad.len);
	}
}

static void
test_payment_flow(void **st)
{
	struct pg_nvm *nvm = NULL;
	struct gt t;
	struct pg_gp_card *g;
	struct pg_tlv fci, e, v;

	(void)st;
	assert_int_equal(pg_nvm_open_memory(&nvm, 16384), 0);
	g = mk(&t, nvm);
	personalise(&t);
	/* SELECT PPSE: one directory entry for the payment applet. */
	gt_expect(&t, "00A404000E" PPSE "00", PG_SW_OK);
	assert_int_equal(pg_tlv_next(&fci, t.r, t.n), (int)t.n);
	assert_int_equal(fci.tag, 0x6F);
	find(fci.val, fci.len, 0x61, &e);
	find(e.val, e.len, 0x4F, &v);
	assert_int_equal(v.len, 7);
	assert_memory_equal(v.val, "\xF0PGPAY\x01", 7);
	find(e.val, e.len, 0x50, &v);
	assert_memory_equal(v.val, "PAYGUARD", 8);
	find(e.val, e.len, 0x87, &v);
	assert_int_equal(v.val[0], 1);
	/* SELECT the AID: FCI with the PDOL. */
	gt_expect(&t, "00A4040007" PAY "00", PG_SW_OK);
	find(t.r, t.n, 0x9F38, &v);
	assert_int_equal(v.len, 12);
	assert_memory_equal(v.val, "\x9F\x66\x04\x9F\x02\x06\x9F\x37\x04\x5F\x2A\x02", 12);
	gt_expect(&t, "80AE80001D" CDOL "00", PG_SW_CONDITIONS); /* no GPO yet */
	gt_expect(&t, "80A8000002830000", PG_SW_WRONG_LENGTH);	 /* PDOL data missing */
	/* GPO: AIP + AFL in template 77 (format 2); the ATC goes to 1. */
	gt_expect(&t,
		  "80A80000128310"
		  "00000000"
		  "000000001000"
		  "11223344"
		  "0978"
		  "00",
		  PG_SW_OK);
	gt_data(&t, "770A820208809404"
		    "08010200");
	/* READ RECORD for each record in the AFL. */
	gt_expect(&t, "00B2010C00", PG_SW_OK);
	find(t.r, t.n, 0x57, &v);
	gt_expect(&t, "00B2020C00", PG_SW_OK);
	find(t.r, t.n, 0x5A, &v);
	assert_memory_equal(v.val, "\x59\x99\x99\x30\x54\x19\x89", 7); /* 599999 + serial */
	find(t.r, t.n, 0x8C, &v);
	assert_int_equal(v.len, 21);
	gt_expect(&t, "00B2030C00", PG_SW_RECORD_NOT_FOUND);
	gt_expect(&t, "00B2011400", PG_SW_RECORD_NOT_FOUND);
	/* GENERATE AC: ARQC, then TC after the (simulated) online authorisation. */
	generate_ac(&t, 0x80, 0x80, 1);
	generate_ac(&t, 0x40, 0x40, 1);
	gt_expect(&t, "80AE40001D" CDOL "00", PG_SW_CONDITIONS); /* transaction over */
	gt_expect(&t, "80AEC0001D" CDOL "00", PG_SW_INCORRECT_P1P2);
	/* A second transaction declined offline: AAC with ATC 2. */
	gt_expect(&t,
		  "80A80000128310"
		  "00000000"
		  "000000002000"
		  "55667788"
		  "0978"
		  "00",
		  PG_SW_OK);
	gt_expect(&t,
		  "80AE80001C"
		  "000000001000"
		  "00",
		  PG_SW_WRONG_LENGTH);
	generate_ac(&t, 0x00, 0x00, 2);
	/* Power off and on: the ATC was committed. */
	pg_gp_card_free(g);
	g = mk(&t, nvm);
	gt_expect(&t, "00A4040007" PAY "00", PG_SW_OK);
	gt_expect(&t,
		  "80A80000128310"
		  "00000000"
		  "000000003000"
		  "99AABBCC"
		  "0978"
		  "00",
		  PG_SW_OK);
	generate_ac(&t, 0x80, 0x80, 3);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
}

static EVP_PKEY *
pub_key(const uint8_t *pt)
{
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	OSSL_PARAM *p;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *k = NULL;

	OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
	OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt, 65);
	p = OSSL_PARAM_BLD_to_param(b);
	assert_true(EVP_PKEY_fromdata_init(c) > 0);
	assert_true(EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, p) > 0);
	OSSL_PARAM_free(p);
	OSSL_PARAM_BLD_free(b);
	EVP_PKEY_CTX_free(c);
	return k;
}

static void
test_pin_flow(void **st)
{
	struct pg_nvm *nvm = NULL;
	struct gt t;
	struct pg_gp_card *g;
	uint8_t pub[65];
	EVP_PKEY *k;
	EVP_MD_CTX *md;

	(void)st;
	assert_int_equal(pg_nvm_open_memory(&nvm, 16384), 0);
	g = mk(&t, nvm);
	gt_expect(&t, "00A4040007" PINA "00", PG_SW_OK);
	gt_expect(&t, "0020008000", 0x63C3);
	gt_expect(&t, "002A9E9A0568656C6C6F00", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "0046800000", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "00200080082499 99FFFFFFFFFF", 0x63C2);		 /* wrong */
	gt_expect(&t, "0020008008 3412 34FFFFFFFFFF", PG_SW_WRONG_DATA); /* not format 2 */
	gt_expect(&t, "0020008007 241234FFFFFFFF", PG_SW_WRONG_LENGTH);
	gt_expect(&t, "0020008008241234FFFFFFFFFF", PG_SW_OK); /* transport PIN 1234 */
	gt_expect(&t, "0020008000", PG_SW_OK);
	/* Key pair on the card; only the public half comes out. */
	gt_expect(&t, "0046810000", PG_SW_REF_DATA_NOT_FOUND);
	gt_expect(&t, "0046800000", PG_SW_OK);
	assert_int_equal(t.n, 70);
	assert_memory_equal(t.r, "\x7F\x49\x43\x86\x41\x04", 6);
	memcpy(pub, t.r + 5, 65);
	gt_expect(&t, "0046810000", PG_SW_OK);
	assert_memory_equal(t.r + 5, pub, 65);
	gt_expect(&t, "002A9E9A0568656C6C6F00", PG_SW_OK);
	k = pub_key(pub);
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
	assert_int_equal(EVP_DigestVerify(md, t.r, t.n, (const uint8_t *)"hello", 5), 1);
	EVP_MD_CTX_free(md);
	/* CHANGE REFERENCE DATA: old 1234 -> new 975310. */
	gt_expect(&t, "00240080102499 99FFFFFFFFFF 26975310FFFFFFFF", 0x63C2);
	gt_expect(&t, "0024008010241234FFFFFFFFFF 26975310FFFFFFFF", PG_SW_OK);
	gt_expect(&t, "00A4040007" PINA "00", PG_SW_OK); /* reselect: no longer verified */
	gt_expect(&t, "002A9E9A0568656C6C6F00", PG_SW_SECURITY_STATUS);
	gt_expect(&t, "0020008008241234FFFFFFFFFF", 0x63C2);
	gt_expect(&t, "0020008008 26975310FFFFFFFF", PG_SW_OK);
	gt_expect(&t, "002A9E9A0568656C6C6F00", PG_SW_OK);
	/* Three wrong tries block it; the counter survives a power cut. */
	gt_expect(&t, "0020008008241111FFFFFFFFFF", 0x63C2);
	gt_expect(&t, "0020008008241111FFFFFFFFFF", 0x63C1);
	pg_gp_card_free(g);
	g = mk(&t, nvm);
	gt_expect(&t, "00A4040007" PINA "00", PG_SW_OK);
	gt_expect(&t, "0020008000", 0x63C1);
	gt_expect(&t, "0020008008241111FFFFFFFFFF", PG_SW_AUTH_BLOCKED);
	gt_expect(&t, "0020008008 26975310FFFFFFFF", PG_SW_AUTH_BLOCKED);
	gt_expect(&t, "0020008000", PG_SW_AUTH_BLOCKED);
	/* The key survived too (public half readable), but cannot sign while blocked. */
	gt_expect(&t, "0046810000", PG_SW_OK);
	assert_memory_equal(t.r + 5, pub, 65);
	gt_expect(&t, "002A9E9A0568656C6C6F00", PG_SW_SECURITY_STATUS);
	EVP_PKEY_free(k);
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
}

/* The echo applet answers a command without data (case 1 and 2) with 9000 and
 * nothing: it once copied from the absent data (UBSan: memcpy from NULL). */
static void
test_echo_no_data(void **st)
{
	static const char *const apps[] = {"echo"};
	struct pg_gp_config cfg = {.serial = 0x43, .applets = apps, .n_applets = 1};
	struct pg_gp_card *g = NULL;
	struct gt t;

	(void)st;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	gt_expect(&t, "00A4040008F050474543484F0100", PG_SW_OK);
	gt_expect(&t, "80CA9F7F00", PG_SW_OK);
	assert_int_equal(t.n, 0);
	gt_expect(&t, "80CA9F7F", PG_SW_OK);
	assert_int_equal(t.n, 0);
	gt_expect(&t, "8010000003AABBCC00", PG_SW_OK);
	assert_int_equal(t.n, 3);
	pg_gp_card_free(g);
}

/* A profile (issue 16: the NFC switch's SEs): applets at AIDs with priority and label. */
static void
test_transit_profile(void **st)
{
	static const char *const apps[] = {"ppse", "payment@A0000000041010,prio=2,label=MASTERCARD",
					   "transit@F0504754524E5301,label=METRO PASS"};
	static const char *const bad[][1] = {{"payment@A0000000041010,prio=0"},
					     {"payment@A0000000041010,prio=16"},
					     {"payment,label="},
					     {"payment,label=ABCDEFGHIJKLMNOPQ"},
					     {"payment@A0000000041010,colour=red"},
					     {"transit@A000,label=X"}};
	struct pg_gp_config cfg = {.serial = 0x42, .applets = apps, .n_applets = 3};
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g = NULL;
	struct pg_tlv dir, e, v;
	struct gt t;

	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.applets = bad[i];
		cfg.n_applets = 1;
		assert_int_equal(pg_gp_card_new(&g, &cfg), PG_EINVAL);
		assert_null(g);
	}
	cfg.applets = apps;
	cfg.n_applets = 3;
	assert_int_equal(pg_nvm_open_memory(&nvm, 16384), 0);
	cfg.nvm = nvm;
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(&t, 0, sizeof(t));
	t.card = pg_gp_card_card(g);
	/* The PPSE lists the payment application with its label and priority, not transit. */
	gt_expect(&t, "00A404000E" PPSE "00", PG_SW_OK);
	find(t.r, t.n, 0xBF0C, &dir);
	assert_int_equal(pg_tlv_next(&e, dir.val, dir.len), (int)dir.len); /* one entry */
	find(e.val, e.len, 0x50, &v);
	assert_int_equal(v.len, 10);
	assert_memory_equal(v.val, "MASTERCARD", 10);
	find(e.val, e.len, 0x87, &v);
	assert_int_equal(v.val[0], 2);
	/* Transit: its FCI label, the EMV flow with an AIP without offline authentication. */
	gt_expect(&t, "00A4040008F0504754524E530100", PG_SW_OK);
	find(t.r, t.n, 0x50, &v);
	assert_memory_equal(v.val, "METRO PASS", 10);
	gt_expect(&t,
		  "80A80000128310"
		  "00000000"
		  "000000000100"
		  "11223344"
		  "0978"
		  "00",
		  PG_SW_OK);
	find(t.r, t.n, 0x82, &v);
	assert_memory_equal(v.val, "\x00\x80", 2);
	gt_expect(&t, "805C000004", PG_SW_OK);
	gt_data(&t, "00001388"); /* 5000 */
	gt_expect(&t, "8054000004000003E8", PG_SW_OK);
	gt_data(&t, "00000FA0");
	gt_expect(&t, "805400000400001000", PG_SW_CONDITIONS); /* 4096 > 4000 */
	gt_expect(&t, "805400000300000100", PG_SW_WRONG_LENGTH);
	gt_expect(&t, "8054010004000003E8", PG_SW_INCORRECT_P1P2);
	/* The payment applet has no purse. */
	gt_expect(&t, "00A4040007A000000004101000", PG_SW_OK);
	gt_expect(&t, "805C000004", PG_SW_INS_NOT_SUPPORTED);
	/* Power off and on: the balance was committed. */
	pg_gp_card_free(g);
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	t.card = pg_gp_card_card(g);
	gt_expect(&t, "00A4040008F0504754524E530100", PG_SW_OK);
	gt_expect(&t, "805C000004", PG_SW_OK);
	gt_data(&t, "00000FA0");
	pg_gp_card_free(g);
	pg_nvm_close(nvm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_payment_flow),
	    cmocka_unit_test(test_pin_flow),
	    cmocka_unit_test(test_transit_profile),
	    cmocka_unit_test(test_echo_no_data),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
