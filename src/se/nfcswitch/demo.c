/*
 * `payguard nfcswitch demo` (issue 8): three SEs on three different links
 * (SWP, T=1, SPI) with payment and transit applets behind the switch, the
 * simulated NFC controller on the slave port (SWP card RF gate A) and a
 * scripted contactless reader playing full EMV transactions (SELECT PPSE,
 * SELECT AID, GET PROCESSING OPTIONS, READ RECORD of the AFL, GENERATE AC).
 * The SEs are GlobalPlatform cards with the demo's card profiles (sim.c).
 */
#include "payguard/card_gp.h"
#include "payguard/json.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"
#include "payguard/tlv.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct demo {
	FILE *out;
	json_t *log;
	struct pg_nfcsw *sw;
	struct pg_nfcsw_clf *clf;
	struct pg_gp_card *se[PG_NFCSW_DEMO_NSE];
	int failures;
};

static int
exchange(struct demo *d, const char *what, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	char hc[2 * 300 + 1], hr[2 * 300 + 1];
	int rc = pg_nfcsw_clf_transceive(d->clf, c, n, r, rl);
	const char *se;

	if (rc < 0)
		return rc;
	se = pg_nfcsw_session_se(d->sw);
	pg_hex_encode_upper(hc, c, n < 300 ? n : 300, 0);
	pg_hex_encode_upper(hr, r, *rl < 300 ? *rl : 300, 0);
	if (d->out)
		fprintf(d->out, "  %-14s > %s\n  %-14s < %s   [%s]\n", what, hc, "", hr,
			se[0] ? se : "no session");
	if (d->log)
		json_array_append_new(d->log, json_pack("{s:s,s:s,s:s,s:s}", "step", what, "capdu",
							hc, "rapdu", hr, "se", se));
	return 0;
}

static int
check_ok(struct demo *d, const char *what, const uint8_t *r, size_t rl)
{
	if (pg_rapdu_sw(r, rl) == 0x9000)
		return 0;
	d->failures++;
	if (d->out)
		fprintf(d->out, "  !! %s answered %04X\n", what, pg_rapdu_sw(r, rl));
	return PG_EPROTO;
}

/* Terminal data the reader puts in PDOL/CDOL answers (EMV Book 3 5.4, data object lists). */
static void
dol_value(uint32_t tag, uint8_t *out, size_t len)
{
	static const struct {
		uint32_t tag;
		uint8_t v[6];
		size_t n;
	} term[] = {
	    {0x9F66, {0x36, 0x00, 0x40, 0x00}, 4},	       /* TTQ: EMV mode, online capable */
	    {0x9F02, {0x00, 0x00, 0x00, 0x00, 0x12, 0x50}, 6}, /* amount 12.50 */
	    {0x9F37, {0xA1, 0xB2, 0xC3, 0xD4}, 4},	       /* unpredictable number */
	    {0x5F2A, {0x09, 0x78}, 2},			       /* EUR */
	    {0x9F1A, {0x02, 0x50}, 2},			       /* France */
	    {0x9A, {0x26, 0x11, 0x25}, 3},		       /* 2026-11-25 */
	    {0x9C, {0x00}, 1},				       /* purchase */
	};

	memset(out, 0, len);
	for (size_t i = 0; i < sizeof(term) / sizeof(term[0]); i++)
		if (term[i].tag == tag)
			memcpy(out, term[i].v, term[i].n < len ? term[i].n : len);
}

/* Fills a data object list (tag, length pairs) into out; returns the length or -1. */
static int
dol_fill(const uint8_t *dol, size_t n, uint8_t *out, size_t cap)
{
	size_t off = 0, w = 0;

	while (off < n) {
		uint32_t tag = dol[off++];
		size_t len;

		if ((tag & 0x1F) == 0x1F) {
			while (off < n && (dol[off] & 0x80))
				tag = tag << 8 | dol[off++];
			if (off >= n)
				return -1;
			tag = tag << 8 | dol[off++];
		}
		if (off >= n)
			return -1;
		len = dol[off++];
		if (w + len > cap)
			return -1;
		dol_value(tag, out + w, len);
		w += len;
	}
	return (int)w;
}

static int
step(struct demo *d, const char *what, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	int rc;

	*rl = 512;
	if ((rc = exchange(d, what, c, n, r, rl)) < 0)
		return rc;
	return check_ok(d, what, r, *rl) < 0 ? 1 : 0;
}

/* READ RECORD of every record the AFL (tag 94) lists; *cdol: the record with CDOL1 (8C). */
static int
read_records(struct demo *d, const uint8_t *afl, size_t n, uint8_t *cdol, size_t *cdol_len,
	     int *sent)
{
	uint8_t rr[5] = {0x00, 0xB2, 0, 0, 0x00}, r[512];
	struct pg_tlv t;
	size_t rl;
	int rc;

	for (size_t i = 0; i + 4 <= n; i += 4)
		for (unsigned rec = afl[i + 1]; rec >= 1 && rec <= afl[i + 2]; rec++) {
			rr[2] = (uint8_t)rec;
			rr[3] = (uint8_t)((afl[i] & 0xF8) | 0x04);
			(*sent)++;
			if ((rc = step(d, "READ RECORD", rr, sizeof(rr), r, &rl)) != 0)
				return rc;
			if (pg_tlv_find(&t, r, rl - 2, 0x8C, 1) == 1 && t.len <= 64) {
				memcpy(cdol, t.val, t.len);
				*cdol_len = t.len;
			}
		}
	return 0;
}

/*
 * One full transaction on the application `aid`, as a reader kernel does it:
 * the GPO carries the FCI's PDOL data, the records of the AFL are read, the
 * GENERATE AC carries the CDOL1 data. The SE holding the application must
 * have answered every command after SELECT PPSE (the switch answers that).
 */
static int
transaction(struct demo *d, const uint8_t *aid, size_t alen, const char *expect_se, int se_idx)
{
	static const uint8_t ppse[] = {0x00, 0xA4, 0x04, 0x00, 0x0E, '2', 'P', 'A', 'Y', '.',
				       'S',  'Y',  'S',	 '.',  'D',  'D', 'F', '0', '1', 0x00};
	uint8_t gpo[5 + 2 + 200 + 1] = {0x80, 0xA8, 0x00, 0x00};
	uint8_t genac[5 + 200 + 1] = {0x80, 0xAE, 0x80, 0x00};
	uint8_t sel[32], r[512], cdol[64];
	uint64_t before = pg_gp_card_apdus(d->se[se_idx]);
	size_t rl, cdol_len = 0;
	struct pg_tlv t;
	int rc, k, sent = 0;

	if ((rc = pg_nfcsw_clf_field_on(d->clf)) < 0)
		return rc;
	if ((rc = step(d, "SELECT PPSE", ppse, sizeof(ppse), r, &rl)) != 0)
		goto off;
	sel[0] = 0x00, sel[1] = 0xA4, sel[2] = 0x04, sel[3] = 0x00, sel[4] = (uint8_t)alen;
	memcpy(sel + 5, aid, alen);
	sel[5 + alen] = 0x00;
	sent++;
	if ((rc = step(d, "SELECT AID", sel, 6 + alen, r, &rl)) != 0)
		goto off;
	if (strcmp(pg_nfcsw_session_se(d->sw), expect_se)) {
		d->failures++;
		if (d->out)
			fprintf(d->out, "  !! routed to '%s', expected '%s'\n",
				pg_nfcsw_session_se(d->sw), expect_se);
	}
	k = pg_tlv_find(&t, r, rl - 2, 0x9F38, 1) == 1 ? dol_fill(t.val, t.len, gpo + 7, 200) : 0;
	if (k < 0)
		k = 0;
	gpo[4] = (uint8_t)(k + 2), gpo[5] = 0x83, gpo[6] = (uint8_t)k;
	gpo[7 + k] = 0x00;
	sent++;
	if ((rc = step(d, "GPO", gpo, 8 + (size_t)k, r, &rl)) != 0)
		goto off;
	if (pg_tlv_find(&t, r, rl - 2, 0x94, 1) == 1 &&
	    (rc = read_records(d, t.val, t.len, cdol, &cdol_len, &sent)) != 0)
		goto off;
	k = cdol_len ? dol_fill(cdol, cdol_len, genac + 5, 200) : -1;
	if (k <= 0) {
		d->failures++;
		if (d->out)
			fprintf(d->out, "  !! no usable CDOL1 in the records\n");
		goto off;
	}
	genac[4] = (uint8_t)k;
	genac[5 + k] = 0x00;
	sent++;
	rc = step(d, "GENERATE AC", genac, 6 + (size_t)k, r, &rl);
off:
	if (rc < 0)
		return rc;
	if (pg_gp_card_apdus(d->se[se_idx]) != before + (uint64_t)sent) {
		d->failures++;
		if (d->out)
			fprintf(d->out, "  !! SE '%s' did not execute the transaction\n",
				expect_se);
	}
	return pg_nfcsw_clf_field_off(d->clf);
}

int
pg_nfcsw_demo_run(FILE *out, int json)
{
	struct demo d = {.out = json ? NULL : out};
	struct pg_nfcsw_slave *slave = NULL;
	struct pg_stream *st = NULL;
	struct pg_nfcsw_app *apps = NULL;
	size_t napps = 0;
	int rc;

	if (json && !(d.log = json_array()))
		return PG_ENOMEM;
	if ((rc = pg_nfcsw_new(&d.sw)) < 0)
		goto out;
	if ((rc = pg_nfcsw_demo_attach(d.sw, d.se)) < 0)
		goto out;
	if ((rc = pg_nfcsw_slave_new(&slave, d.sw)) < 0 ||
	    (rc = pg_stream_memory_pair(&st, pg_nfcsw_slave_packet, slave, NULL)) < 0)
		goto out;
	rc = pg_nfcsw_clf_open(&d.clf, st, 1000);
	st = NULL;
	if (rc < 0)
		goto out;
	if (d.out) {
		fprintf(d.out,
			"NFC switch demo: 3 SEs (uicc over SWP, ese over SPI, sd over T=1), "
			"reader through the simulated NFC controller (SWP card RF gate A)\n\n");
		fprintf(d.out, "routing table (policy %s):\n",
			pg_nfcsw_policy_name(pg_nfcsw_policy(d.sw)));
	}
	if ((rc = pg_nfcsw_apps(d.sw, &apps, &napps)) < 0)
		goto out;
	for (size_t i = 0; d.out && i < napps; i++) {
		char h[33];

		pg_hex_encode_upper(h, apps[i].aid, apps[i].aid_len, 0);
		fprintf(d.out, "  %-32s -> %-5s prio %2u %-8s %s\n", h,
			pg_nfcsw_se_name(d.sw, apps[i].se), apps[i].priority,
			apps[i].flags & PG_NFCSW_APP_PAYMENT ? "payment" : "other", apps[i].label);
	}
	for (size_t k = 0; k < pg_nfcsw_demo_napps; k++) {
		const struct pg_nfcsw_sim_app *a = &pg_nfcsw_demo_apps[k];
		uint8_t aid[16];
		int n = pg_hex_decode(aid, sizeof(aid), a->aid_hex), idx = 0;

		for (int i = 0; i < PG_NFCSW_DEMO_NSE; i++)
			if (!strcmp(pg_nfcsw_demo_ses[i].name, a->se))
				idx = i;
		if (d.out)
			fprintf(d.out, "\ntransaction: %s (%s on %s)\n", a->label, a->aid_hex,
				a->se);
		if ((rc = transaction(&d, aid, (size_t)n, a->se, idx)) < 0)
			goto out;
	}
	if (d.out)
		fprintf(d.out, "\n%s: %d failure(s)\n",
			d.failures ? "FAILED" : "all transactions completed", d.failures);
	rc = d.failures ? PG_EPROTO : 0;
	if (json && out) {
		json_t *o = json_pack("{s:o,s:b}", "transcript", d.log, "ok", !d.failures);

		d.log = NULL;
		char *txt = pg_json_dumps(o, JSON_INDENT(2));

		if (txt)
			fprintf(out, "%s\n", txt);
		free(txt);
		json_decref(o);
	}
out:
	free(apps);
	pg_stream_free(st);
	pg_nfcsw_clf_close(d.clf);
	pg_nfcsw_slave_free(slave);
	pg_nfcsw_free(d.sw);
	for (int i = 0; i < PG_NFCSW_DEMO_NSE; i++)
		pg_gp_card_free(d.se[i]);
	json_decref(d.log);
	return rc;
}
