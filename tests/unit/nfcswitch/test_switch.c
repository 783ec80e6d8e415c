/*
 * NFC switch end to end in process (issue 8): four simulated SEs — the
 * GlobalPlatform card of src/se/card with card profiles (issue 16 item 1) —
 * on four link types (SWP, T=1, SPI, CCID) behind the switch; the reader plays through
 * the simulated NFC controller on the SWP slave port (card RF gate A).
 * Full EMV transactions reach the right SE; the combined PPSE lists every
 * payment application by priority; install/delete at run time (the ISD's
 * INSTALL / DELETE under SCP03, sent to the card behind the switch); detaching
 * an SE mid-transaction; conflicts, partial selection, default route and
 * unrouted APDUs with their exact status words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/nfcswitch.h"
#include "payguard/tlv.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../se/gp_test.h"

#define NSE 4
static const char *const se_names[NSE] = {"uicc", "ese", "sd", "usb"};
static const char *const se_links[NSE] = {"swp", "spi", "t1", "ccid"};
static const int se_prio[NSE] = {2, 1, 3, 4};

static const uint8_t MC[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
static const uint8_t VISA[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
static const uint8_t JCB[] = {0xA0, 0x00, 0x00, 0x00, 0x65, 0x10, 0x10};
static const uint8_t METRO[] = {0xF0, 0x50, 0x47, 0x54, 0x52, 0x4E, 0x53, 0x01};
static const uint8_t RAIL[] = {0xF0, 0x50, 0x47, 0x54, 0x52, 0x4E, 0x53, 0x02};
static const uint8_t VISA2[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x20, 0x10};

static const struct pg_nfcsw_sim_app profile[] = {
    {"uicc", PG_NFCSW_APPLET_PAYMENT, "A0000000041010", "MASTERCARD", 2},
    {"uicc", PG_NFCSW_APPLET_TRANSIT, "F0504754524E5301", "METRO", 0},
    {"ese", PG_NFCSW_APPLET_PAYMENT, "A0000000031010", "VISA", 1},
    /* No PPSE on sd: its payment application is configured. */
    {"sd", PG_NFCSW_APPLET_PAYMENT, "A0000000651010", "JCB", 3},
};
/* usb: a profile written as the card's own applet list, with the catalogue's echo applet. */
static const char *const usb_applets[] = {"ppse", "transit@F0504754524E5302,label=RAIL",
					  "echo@F050474543484F01"};
static const uint8_t ECHO[] = {0xF0, 0x50, 0x47, 0x45, 0x43, 0x48, 0x4F, 0x01};

struct fx {
	struct pg_nfcsw *sw;
	struct pg_gp_card *se[NSE];
	struct pg_nfcsw_slave *slave;
	struct pg_nfcsw_clf *clf;
	int refreshing; /* the refresh thread runs: other SEs see GET STATUS at any time */
	uint8_t r[PG_APDU_MAX_R];
	size_t rl;
};

static int
setup(void **state)
{
	static struct fx f;
	struct pg_stream *st = NULL;

	memset(&f, 0, sizeof(f));
	assert_int_equal(pg_nfcsw_new(&f.sw), 0);
	for (int i = 0; i < NSE; i++) {
		struct pg_link *l = NULL;

		if (i == 3) {
			struct pg_gp_config cfg = {
			    .serial = 0x103, .applets = usb_applets, .n_applets = 3};

			assert_int_equal(pg_gp_card_new(&f.se[i], &cfg), 0);
		} else {
			assert_int_equal(pg_nfcsw_sim_se_new(&f.se[i], 0x100u + (uint32_t)i, i != 2,
							     profile, 4, se_names[i]),
					 0);
		}
		if (i == 2)
			assert_int_equal(pg_nfcsw_expect(f.sw, "sd", JCB, sizeof(JCB), 3, "JCB",
							 PG_NFCSW_APP_PAYMENT),
					 0);
		assert_int_equal(pg_link_open_memory(&l, pg_link_find(se_links[i]),
						     pg_gp_card_card(f.se[i]), NULL),
				 0);
		assert_int_equal(pg_nfcsw_attach(f.sw, se_names[i], l, "memory", se_prio[i]), i);
	}
	assert_int_equal(pg_nfcsw_slave_new(&f.slave, f.sw), 0);
	assert_int_equal(pg_stream_memory_pair(&st, pg_nfcsw_slave_packet, f.slave, NULL), 0);
	assert_int_equal(pg_nfcsw_clf_open(&f.clf, st, 1000), 0);
	assert_int_equal(pg_nfcsw_clf_field_on(f.clf), 0);
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	pg_nfcsw_clf_close(f->clf);
	pg_nfcsw_slave_free(f->slave);
	pg_nfcsw_free(f->sw);
	for (int i = 0; i < NSE; i++)
		pg_gp_card_free(f->se[i]);
	return 0;
}

/*
 * Card management behind the switch's back, as an issuer's OTA server does
 * it: SELECT ISD, an SCP03 session with the card's test keys, then one
 * INSTALL [for install and make selectable] or DELETE (hex, sent secured).
 */
static void
manage(struct fx *f, int se, const char *hex)
{
	struct gt t = {.card = pg_gp_card_card(f->se[se])};
	struct pg_scp03_keys k;

	gt_default_keys(&k);
	gt_expect(&t, "00A4040008A000000151000000", 0x9000);
	assert_int_equal(gt_open_scp(&t, &k, PG_SCP03_SL_CMAC, 0), 0);
	gt_sexpect(&t, hex, 0x9000);
}

/* INSTALL of a catalogue payment applet (load file F0 "PGLF" 02) with C9 = priority, label. */
static void
install_payment(struct fx *f, int se, const uint8_t *aid, size_t n, int prio, const char *label)
{
	char hex[300], ah[33], lh[33];
	size_t ll = strlen(label);

	pg_hex_encode_upper(ah, aid, n, 0);
	pg_hex_encode_upper(lh, (const uint8_t *)label, ll, 0);
	/* ELF, module, instance AID, privileges 00, parameters C9, no token */
	snprintf(hex, sizeof(hex),
		 "80E60C00%02zX06F050474C460206F050474D4402%02zX%s0100%02zXC9%02zX%02X%s00",
		 7 + 7 + (1 + n) + 2 + (4 + ll) + 1, n, ah, 3 + ll, 1 + ll, prio, lh);
	manage(f, se, hex);
}

static void
delete_app(struct fx *f, int se, const uint8_t *aid, size_t n)
{
	char hex[80], ah[33];

	pg_hex_encode_upper(ah, aid, n, 0);
	snprintf(hex, sizeof(hex), "80E40000%02zX4F%02zX%s00", n + 2, n, ah);
	manage(f, se, hex);
}

/* The test PAN the card profile gives an SE of this serial: "599999", 9 digits, Luhn. */
static void
assert_pan_of(const struct pg_tlv *pan, uint32_t serial)
{
	char d[17];

	snprintf(d, sizeof(d), "599999%09u", (unsigned)serial);
	assert_int_equal(pan->len, 8);
	for (int i = 0; i < 15; i++)
		assert_int_equal((pan->val[i / 2] >> (i % 2 ? 0 : 4)) & 0x0F, d[i] - '0');
}

/* Sends a C-APDU from the reader; returns its status word. */
static uint16_t
tx(struct fx *f, const uint8_t *c, size_t n)
{
	f->rl = sizeof(f->r);
	assert_int_equal(pg_nfcsw_clf_transceive(f->clf, c, n, f->r, &f->rl), 0);
	assert_true(f->rl >= 2);
	return pg_rapdu_sw(f->r, f->rl);
}

static uint16_t
txh(struct fx *f, const char *hex)
{
	uint8_t c[300];
	int n = pg_hex_decode(c, sizeof(c), hex);

	assert_true(n >= 4);
	return tx(f, c, (size_t)n);
}

static uint16_t
select_aid(struct fx *f, const uint8_t *aid, size_t n, uint8_t p2)
{
	uint8_t c[32] = {0x00, 0xA4, 0x04, p2, (uint8_t)n};

	memcpy(c + 5, aid, n);
	c[5 + n] = 0x00;
	return tx(f, c, 6 + n);
}

/* EMV terminal data for the card's PDOL (9F66 9F02 9F37 5F2A) and CDOL1 (29 bytes). */
#define GPO                                                                                        \
	"80A8000012"                                                                               \
	"8310"                                                                                     \
	"36004000"                                                                                 \
	"000000001250"                                                                             \
	"A1B2C3D4"                                                                                 \
	"0978"                                                                                     \
	"00"
#define GENAC                                                                                      \
	"80AE80001D"                                                                               \
	"000000001250"                                                                             \
	"000000000000"                                                                             \
	"0250"                                                                                     \
	"0000000000"                                                                               \
	"0978"                                                                                     \
	"261125"                                                                                   \
	"00"                                                                                       \
	"A1B2C3D4"                                                                                 \
	"00"

static void
full_transaction(struct fx *f, const uint8_t *aid, size_t n, int se)
{
	uint64_t before = pg_gp_card_apdus(f->se[se]), others[NSE];
	struct pg_tlv t;

	for (int i = 0; i < NSE; i++)
		others[i] = pg_gp_card_apdus(f->se[i]);

	assert_int_equal(txh(f, "00A404000E325041592E5359532E444446303100"), 0x9000);
	assert_int_equal(select_aid(f, aid, n, 0x00), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), se_names[se]);
	assert_int_equal(pg_tlv_find(&t, f->r, f->rl - 2, 0x84, 1), 1);
	assert_memory_equal(t.val, aid, n);
	assert_int_equal(txh(f, GPO), 0x9000);
	assert_int_equal(pg_tlv_find(&t, f->r, f->rl - 2, 0x94, 1), 1);
	/* SFI 1 record 2: the PAN of that SE's profile (its serial): the right card answered. */
	assert_int_equal(txh(f, "00B2020C00"), 0x9000);
	assert_int_equal(pg_tlv_find(&t, f->r, f->rl - 2, 0x5A, 1), 1);
	assert_pan_of(&t, 0x100u + (uint32_t)se);
	assert_int_equal(txh(f, GENAC), 0x9000);
	assert_int_equal(pg_tlv_find(&t, f->r, f->rl - 2, 0x9F26, 1), 1);
	assert_int_equal(t.len, 8);
	if (!f->refreshing) {
		/* SELECT, GPO, READ RECORD, GENERATE AC; no other SE saw the transaction */
		assert_int_equal(pg_gp_card_apdus(f->se[se]), before + 4);
		for (int i = 0; i < NSE; i++)
			if (i != se)
				assert_int_equal(pg_gp_card_apdus(f->se[i]), others[i]);
	}
	assert_int_equal(pg_nfcsw_clf_field_off(f->clf), 0);
	assert_int_equal(pg_nfcsw_clf_field_on(f->clf), 0);
}

/* The combined PPSE directory: the AIDs in order, with their priority indicators. */
static size_t
ppse_list(struct fx *f, uint8_t aids[][16], size_t *lens, uint8_t *prios, size_t max)
{
	struct pg_tlv dir;
	size_t off = 0, n = 0;

	assert_int_equal(txh(f, "00A404000E325041592E5359532E444446303100"), 0x9000);
	assert_int_equal(pg_tlv_validate(f->r, f->rl - 2), 0);
	assert_int_equal(pg_tlv_find(&dir, f->r, f->rl - 2, 0xBF0C, 1), 1);
	while (off < dir.len && n < max) {
		struct pg_tlv e, a, p;
		int rc = pg_tlv_next(&e, dir.val + off, dir.len - off);

		assert_true(rc > 0);
		off += (size_t)rc;
		assert_int_equal(e.tag, 0x61);
		assert_int_equal(pg_tlv_find(&a, e.val, e.len, 0x4F, 0), 1);
		assert_int_equal(pg_tlv_find(&p, e.val, e.len, 0x87, 0), 1);
		memcpy(aids[n], a.val, a.len);
		lens[n] = a.len;
		prios[n] = p.val[0];
		n++;
	}
	return n;
}

static void
test_transactions_and_ppse(void **state)
{
	struct fx *f = *state;
	uint8_t aids[8][16], prios[8];
	size_t lens[8], n = ppse_list(f, aids, lens, prios, 8);

	/* Payment applications of every SE (the transit ones are not listed), by priority. */
	assert_int_equal(n, 3);
	assert_memory_equal(aids[0], VISA, sizeof(VISA));
	assert_int_equal(prios[0], 1);
	assert_memory_equal(aids[1], MC, sizeof(MC));
	assert_int_equal(prios[1], 2);
	assert_memory_equal(aids[2], JCB, sizeof(JCB));
	assert_int_equal(prios[2], 3);
	/* After SELECT PPSE the switch itself is selected: other commands are not supported. */
	assert_int_equal(txh(f, "80A8000002830000"), 0x6D00);
	full_transaction(f, MC, sizeof(MC), 0);
	full_transaction(f, VISA, sizeof(VISA), 1);
	full_transaction(f, JCB, sizeof(JCB), 2);
	full_transaction(f, METRO, sizeof(METRO), 0);
	full_transaction(f, RAIL, sizeof(RAIL), 3);
	/* A transit top-up style command reaches the transit applet's SE. */
	assert_int_equal(select_aid(f, RAIL, sizeof(RAIL), 0), 0x9000);
	assert_int_equal(txh(f, "8054000004000003E8"), 0x9000);
	assert_int_equal(f->rl, 6);
	assert_int_equal(f->r[2] << 8 | f->r[3], 5000 - 1000);
}

static void
test_unrouted(void **state)
{
	struct fx *f = *state;
	static const uint8_t unknown[] = {0xA0, 0x00, 0x00, 0x09, 0x99, 0x01};

	/* Nothing selected: 6985, never a hang. */
	assert_int_equal(txh(f, "80A8000002830000"), 0x6985);
	assert_int_equal(txh(f, "00B2010C00"), 0x6985);
	/* SELECT with no route: 6A82, and the session stays empty. */
	assert_int_equal(select_aid(f, unknown, sizeof(unknown), 0), 0x6A82);
	assert_int_equal(txh(f, "80A8000002830000"), 0x6985);
	/* A failed SELECT ends the previous session. */
	assert_int_equal(select_aid(f, MC, sizeof(MC), 0), 0x9000);
	assert_int_equal(select_aid(f, unknown, sizeof(unknown), 0), 0x6A82);
	assert_int_equal(txh(f, "80A8000002830000"), 0x6985);
	/* RF field off ends the session. */
	assert_int_equal(select_aid(f, MC, sizeof(MC), 0), 0x9000);
	assert_int_equal(pg_nfcsw_clf_field_off(f->clf), 0);
	assert_int_equal(pg_nfcsw_clf_field_on(f->clf), 0);
	assert_int_equal(txh(f, "80A8000002830000"), 0x6985);
	/* Occurrence "last" (P2 01) is not offered; a malformed length is 6700. */
	assert_int_equal(select_aid(f, MC, sizeof(MC), 0x01), 0x6A86);
	assert_int_equal(txh(f, "00A4040007A0000000"), 0x6700);
}

static void
test_default_route(void **state)
{
	struct fx *f = *state;

	/* The ISD is on every SE but not in the registry (GET STATUS P1 40 lists applications). */
	assert_int_equal(select_aid(f, pg_card_isd_aid, sizeof(pg_card_isd_aid), 0), 0x6A82);
	assert_int_equal(pg_nfcsw_set_default(f->sw, "sd"), 0);
	assert_int_equal(select_aid(f, pg_card_isd_aid, sizeof(pg_card_isd_aid), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "sd");
	/* GET DATA (CPLC) through the default route's session: sd's serial (0x102). */
	assert_int_equal(txh(f, "80CA9F7F00"), 0x9000);
	assert_int_equal(f->rl, 45 + 2);
	assert_int_equal(f->r[3 + 14] << 8 | f->r[3 + 15], 0x0102);
	/* Registered AIDs still go to their own SE. */
	assert_int_equal(select_aid(f, MC, sizeof(MC), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "uicc");
	assert_int_equal(pg_nfcsw_set_default(f->sw, "nowhere"), PG_ENOENT);
	assert_int_equal(pg_nfcsw_set_default(f->sw, NULL), 0);
	assert_int_equal(select_aid(f, pg_card_isd_aid, sizeof(pg_card_isd_aid), 0), 0x6A82);
}

static void
test_install_delete(void **state)
{
	struct fx *f = *state;
	uint8_t aids[8][16], prios[8];
	size_t lens[8];

	/* Installed on 'usb' at run time: unknown to the switch until refreshed. */
	install_payment(f, 3, VISA2, sizeof(VISA2), 4, "VISA 2");
	assert_int_equal(select_aid(f, VISA2, sizeof(VISA2), 0), 0x6A82);
	assert_int_equal(pg_nfcsw_refresh(f->sw, "usb"), 0);
	full_transaction(f, VISA2, sizeof(VISA2), 3);
	assert_int_equal(ppse_list(f, aids, lens, prios, 8), 4);
	assert_memory_equal(aids[3], VISA2, sizeof(VISA2));
	assert_int_equal(prios[3], 4);
	/* Deleted from 'uicc': the stale route is noticed at once (6A82 from the SE). */
	delete_app(f, 0, MC, sizeof(MC));
	assert_int_equal(select_aid(f, MC, sizeof(MC), 0), 0x6A82);
	assert_int_equal(ppse_list(f, aids, lens, prios, 8), 3);
	assert_memory_equal(aids[0], VISA, sizeof(VISA));
	assert_memory_equal(aids[1], JCB, sizeof(JCB));
	/* Re-installed and refreshed: back again. */
	install_payment(f, 0, MC, sizeof(MC), 2, "MASTERCARD");
	assert_int_equal(pg_nfcsw_refresh(f->sw, NULL), 0);
	full_transaction(f, MC, sizeof(MC), 0);
	/* GP DELETE sent over the switch's link without a secure channel: refused (6982). */
	{
		struct pg_link *l = pg_nfcsw_link(f->sw, "usb");
		uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
				 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
		uint8_t c[] = {0x80, 0xE4, 0x00, 0x00, 0x09, 0x4F, 0x07, 0xA0,
			       0x00, 0x00, 0x00, 0x03, 0x20, 0x10, 0x00};
		uint8_t r[300];
		size_t rl = sizeof(r);

		assert_non_null(l);
		assert_int_equal(pg_link_transmit(l, sel, sizeof(sel), r, &rl), 0);
		assert_int_equal(pg_rapdu_sw(r, rl), 0x9000);
		rl = sizeof(r);
		assert_int_equal(pg_link_transmit(l, c, sizeof(c), r, &rl), 0);
		assert_int_equal(pg_rapdu_sw(r, rl), PG_SW_SECURITY_STATUS);
		assert_int_equal(pg_nfcsw_refresh(f->sw, "usb"), 0);
		full_transaction(f, VISA2, sizeof(VISA2), 3);
	}
	/* The same DELETE in an SCP03 session, then a refresh: the route is gone. */
	delete_app(f, 3, VISA2, sizeof(VISA2));
	assert_int_equal(pg_nfcsw_refresh(f->sw, "usb"), 0);
	assert_int_equal(select_aid(f, VISA2, sizeof(VISA2), 0), 0x6A82);
}

static void
test_periodic_refresh(void **state)
{
	struct fx *f = *state;
	struct pg_nfcsw_app app;
	int found = 0;

	/* Installed behind the switch's back; the refresh thread finds it. */
	install_payment(f, 2, VISA2, sizeof(VISA2), 4, "VISA 2");
	assert_int_equal(pg_nfcsw_route(f->sw, VISA2, sizeof(VISA2), 0, &app), PG_ENOENT);
	assert_int_equal(pg_nfcsw_start_refresh(f->sw, 50), PG_EINVAL);
	assert_int_equal(pg_nfcsw_start_refresh(f->sw, 100), 0);
	f->refreshing = 1;
	assert_int_equal(pg_nfcsw_start_refresh(f->sw, 100), PG_ESTATE);
	for (int i = 0; i < 100 && !found; i++) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		nanosleep(&ts, NULL);
		found = pg_nfcsw_route(f->sw, VISA2, sizeof(VISA2), 0, &app) == 2;
	}
	assert_true(found);
	/* Transactions run while the thread keeps refreshing. */
	full_transaction(f, VISA2, sizeof(VISA2), 2);
	full_transaction(f, MC, sizeof(MC), 0);
}

static void
test_detach_mid_transaction(void **state)
{
	struct fx *f = *state;

	assert_int_equal(txh(f, "00A404000E325041592E5359532E444446303100"), 0x9000);
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0), 0x9000);
	assert_int_equal(txh(f, GPO), 0x9000);
	assert_int_equal(pg_nfcsw_detach(f->sw, "ese"), 0);
	/* The transaction ends with an error ... */
	assert_int_equal(txh(f, "00B2010C00"), 0x6F00);
	/* ... then nothing is selected ... */
	assert_int_equal(txh(f, GENAC), 0x6985);
	/* ... its applications are gone, the others still route. */
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0), 0x6A82);
	full_transaction(f, MC, sizeof(MC), 0);
	full_transaction(f, JCB, sizeof(JCB), 2);
	assert_int_equal(pg_nfcsw_detach(f->sw, "ese"), PG_ENOENT);
	/* Attached again at run time (a new link to the same SE). */
	{
		struct pg_link *l = NULL;

		assert_int_equal(
		    pg_link_open_memory(&l, pg_link_find("i2c"), pg_gp_card_card(f->se[1]), NULL),
		    0);
		assert_true(pg_nfcsw_attach(f->sw, "ese", l, "memory", 1) >= 0);
		full_transaction(f, VISA, sizeof(VISA), 1);
	}
}

static void
test_conflict_and_partial(void **state)
{
	struct fx *f = *state;
	static const uint8_t rid[] = {0xA0, 0x00, 0x00, 0x00, 0x03};
	uint8_t aids[8][16], prios[8];
	size_t lens[8];

	/* VISA also on 'sd' (SE priority 3; 'ese' has 1). */
	install_payment(f, 2, VISA, sizeof(VISA), 3, "VISA SD");
	assert_int_equal(
	    pg_nfcsw_expect(f->sw, "sd", VISA, sizeof(VISA), 0, NULL, PG_NFCSW_APP_PAYMENT), 0);
	assert_int_equal(pg_nfcsw_refresh(f->sw, "sd"), 0);
	/* Policy "priority": the better priority wins; the PPSE lists the AID once. */
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "ese");
	/* Next occurrence of the same AID: the other SE. */
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0x02), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "sd");
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0x02), 0x6A82);
	assert_int_equal(ppse_list(f, aids, lens, prios, 8), 3);
	/* Policy "first": first registered ('ese' attached first). */
	pg_nfcsw_set_policy(f->sw, PG_NFCSW_POLICY_FIRST);
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "ese");
	/* Policy "refuse": 6985 and the AID leaves the PPSE. */
	pg_nfcsw_set_policy(f->sw, PG_NFCSW_POLICY_REFUSE);
	assert_int_equal(select_aid(f, VISA, sizeof(VISA), 0), 0x6985);
	assert_int_equal(txh(f, GPO), 0x6985);
	assert_int_equal(ppse_list(f, aids, lens, prios, 8), 2);
	pg_nfcsw_set_policy(f->sw, PG_NFCSW_POLICY_PRIORITY);
	/* Partial AID (the RID): first occurrence, then the next ones in AID order. */
	install_payment(f, 3, VISA2, sizeof(VISA2), 4, "VISA 2");
	assert_int_equal(pg_nfcsw_refresh(f->sw, "usb"), 0);
	assert_int_equal(select_aid(f, rid, sizeof(rid), 0x00), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "ese"); /* A0000000031010, best priority */
	assert_int_equal(pg_tlv_find(&(struct pg_tlv){0}, f->r, f->rl - 2, 0x84, 1), 1);
	assert_int_equal(select_aid(f, rid, sizeof(rid), 0x02), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "sd"); /* A0000000031010 on sd */
	assert_int_equal(select_aid(f, rid, sizeof(rid), 0x02), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "usb"); /* A0000000032010 */
	assert_int_equal(select_aid(f, rid, sizeof(rid), 0x02), 0x6A82);
	/* The full transaction after a partial selection. */
	assert_int_equal(select_aid(f, rid, sizeof(rid), 0x00), 0x9000);
	assert_int_equal(txh(f, GPO), 0x9000);
	assert_int_equal(txh(f, "00B2010C00"), 0x9000);
}

/* An SE without GET STATUS (the plain simulated SE of issue 2): probing of configured AIDs. */
static void
test_probe_fallback(void **state)
{
	struct fx *f = *state;
	struct pg_card_rt *rt = NULL;
	struct pg_link *l = NULL;
	struct pg_nfcsw_se_info ses[PG_NFCSW_MAX_SES];
	size_t n = 0;
	static const uint8_t absent[] = {0xF0, 0x00, 0x00, 0x00, 0x42};

	assert_int_equal(pg_card_sim_new(&rt, 0x77, NULL, 0), 0);
	assert_int_equal(pg_nfcsw_expect(f->sw, "plain", pg_card_test_aid, sizeof(pg_card_test_aid),
					 5, "TEST", 0),
			 0);
	assert_int_equal(pg_nfcsw_expect(f->sw, "plain", absent, sizeof(absent), 5, NULL, 0), 0);
	assert_int_equal(pg_link_open_memory(&l, pg_link_find("t0"), pg_card_rt_card(rt), NULL), 0);
	assert_int_equal(pg_nfcsw_attach(f->sw, "plain", l, "memory", 5), NSE);
	assert_int_equal(pg_nfcsw_ses(f->sw, ses, PG_NFCSW_MAX_SES, &n), 0);
	assert_int_equal(n, NSE + 1);
	assert_string_equal(ses[NSE].name, "plain");
	assert_string_equal(ses[NSE].source, "probe");
	assert_string_equal(ses[NSE].link, "t0");
	assert_int_equal(ses[NSE].apps, 1); /* the absent AID was not registered */
	assert_int_equal(select_aid(f, pg_card_test_aid, sizeof(pg_card_test_aid), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "plain");
	assert_int_equal(txh(f, "8010000003ABCDEF00"), 0x9000); /* ECHO through T=0 */
	assert_int_equal(f->rl, 5);
	assert_int_equal(select_aid(f, absent, sizeof(absent), 0), 0x6A82);
	assert_int_equal(pg_nfcsw_detach(f->sw, "plain"), 0);
	pg_card_rt_free(rt);
	/* An SE whose GET STATUS lists nothing (6A82/6A88): registry from GET STATUS, empty. */
	{
		struct pg_gp_card *empty = NULL;

		assert_int_equal(pg_nfcsw_sim_se_new(&empty, 0x99, 0, NULL, 0, NULL), 0);
		assert_int_equal(
		    pg_link_open_memory(&l, pg_link_find("i2c"), pg_gp_card_card(empty), NULL), 0);
		assert_int_equal(pg_nfcsw_attach(f->sw, "empty", l, "memory", 7), NSE);
		assert_int_equal(pg_nfcsw_ses(f->sw, ses, PG_NFCSW_MAX_SES, &n), 0);
		assert_string_equal(ses[NSE].source, "get-status");
		assert_int_equal(ses[NSE].apps, 0);
		assert_int_equal(pg_nfcsw_detach(f->sw, "empty"), 0);
		pg_gp_card_free(empty);
	}
}

static void
test_slave_stats(void **state)
{
	struct fx *f = *state;
	struct pg_nfcsw_slave_stats st;

	assert_int_equal(select_aid(f, MC, sizeof(MC), 0), 0x9000);
	pg_nfcsw_slave_stats(f->slave, &st);
	assert_int_equal(st.field_on, 1);
	assert_int_equal(st.activated, 1);
	assert_int_equal(st.capdus, 1);
	assert_int_equal(st.bad_msgs, 0);
	/* A long C-APDU (eight HCP fragments) through the switch, echoed by usb's echo applet. */
	assert_int_equal(select_aid(f, ECHO, sizeof(ECHO), 0), 0x9000);
	assert_string_equal(pg_nfcsw_session_se(f->sw), "usb");
	{
		uint8_t c[5 + 200 + 1] = {0x80, 0x10, 0x00, 0x00, 200};

		for (int i = 0; i < 200; i++)
			c[5 + i] = (uint8_t)i;
		assert_int_equal(tx(f, c, sizeof(c)), 0x9000);
		assert_int_equal(f->rl, 200 + 2);
		assert_memory_equal(f->r, c + 5, 200);
	}
	pg_nfcsw_slave_stats(f->slave, &st);
	assert_int_equal(st.capdus, 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_transactions_and_ppse, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unrouted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_default_route, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_detach_mid_transaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_periodic_refresh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conflict_and_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_fallback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slave_stats, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
