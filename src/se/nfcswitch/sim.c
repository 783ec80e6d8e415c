/*
 * The NFC switch's simulated SEs (issue 8; issue 16 item 1: one card
 * runtime): each is the GlobalPlatform card of src/se/card — ISD with SCP03
 * (GET STATUS, INSTALL, DELETE), the catalogue's PPSE, EMV payment and
 * transit applets — configured by a card profile: serial, whether it has a
 * PPSE, and its applications at their AIDs with label and priority. The
 * demo's three SEs (uicc, ese, sd) are one table, shared by `nfcswitch
 * demo` and the daemon's nfcswitch worker.
 */
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"

#include <stdio.h>
#include <string.h>

const struct pg_nfcsw_sim_app pg_nfcsw_demo_apps[] = {
    {"uicc", PG_NFCSW_APPLET_PAYMENT, "A0000000041010", "MASTERCARD", 2},
    {"uicc", PG_NFCSW_APPLET_TRANSIT, "F0504754524E5301", "METRO PASS", 0},
    {"ese", PG_NFCSW_APPLET_PAYMENT, "A0000000031010", "VISA DEBIT", 1},
    {"ese", PG_NFCSW_APPLET_TRANSIT, "F0504754524E5302", "RAIL CARD", 0},
    {"sd", PG_NFCSW_APPLET_PAYMENT, "A0000000651010", "JCB", 3},
};
const size_t pg_nfcsw_demo_napps = sizeof(pg_nfcsw_demo_apps) / sizeof(pg_nfcsw_demo_apps[0]);

/* sd has no PPSE of its own: its payment application is configured (pg_nfcsw_expect). */
const struct pg_nfcsw_sim_se pg_nfcsw_demo_ses[PG_NFCSW_DEMO_NSE] = {
    {"uicc", "swp", 2, 1, 0x1000u}, {"ese", "spi", 1, 1, 0x1001u}, {"sd", "t1", 3, 0, 0x1002u}};

int
pg_nfcsw_sim_se_new(struct pg_gp_card **out, uint32_t serial, int with_ppse,
		    const struct pg_nfcsw_sim_app *apps, size_t n, const char *se)
{
	char specs[PG_NFCSW_MAX_SES + 1][96];
	const char *list[PG_NFCSW_MAX_SES + 1];
	struct pg_gp_config cfg = {.serial = serial, .applets = list};
	size_t k = 0;

	*out = NULL;
	if (with_ppse)
		list[k++] = "ppse";
	for (size_t i = 0; i < n; i++) {
		const struct pg_nfcsw_sim_app *a = &apps[i];
		uint8_t aid[PG_NFCSW_AID_MAX];
		int len, w;

		if (se && a->se && strcmp(a->se, se) != 0)
			continue;
		if (k == PG_NFCSW_MAX_SES + 1)
			return pg_error(PG_ERANGE, "nfcswitch", "at most %d applications on an SE",
					PG_NFCSW_MAX_SES);
		len = a->aid_hex ? pg_hex_decode(aid, sizeof(aid), a->aid_hex) : -1;
		if (len < 5 || a->priority < 0 || a->priority > 15 ||
		    (a->label && (strlen(a->label) > PG_NFCSW_LABEL_MAX || strchr(a->label, ','))))
			return pg_error(PG_EINVAL, "nfcswitch",
					"application '%s': AID of 5..16 bytes, priority 0..15, "
					"label of at most %d bytes without ','",
					a->aid_hex ? a->aid_hex : "?", PG_NFCSW_LABEL_MAX);
		w = snprintf(specs[k], sizeof(specs[k]), "%s@%s",
			     a->kind == PG_NFCSW_APPLET_TRANSIT ? "transit" : "payment",
			     a->aid_hex);
		if (a->priority)
			w += snprintf(specs[k] + w, sizeof(specs[k]) - (size_t)w, ",prio=%d",
				      a->priority);
		if (a->label && a->label[0])
			snprintf(specs[k] + w, sizeof(specs[k]) - (size_t)w, ",label=%s", a->label);
		list[k] = specs[k];
		k++;
	}
	cfg.n_applets = (int)k;
	return pg_gp_card_new(out, &cfg);
}

int
pg_nfcsw_demo_attach(struct pg_nfcsw *sw, struct pg_gp_card *cards[PG_NFCSW_DEMO_NSE])
{
	int rc = 0;

	for (int i = 0; i < PG_NFCSW_DEMO_NSE; i++)
		cards[i] = NULL;
	for (int i = 0; rc >= 0 && i < PG_NFCSW_DEMO_NSE; i++) {
		const struct pg_nfcsw_sim_se *s = &pg_nfcsw_demo_ses[i];
		struct pg_link *l = NULL;

		rc = pg_nfcsw_sim_se_new(&cards[i], s->serial, s->with_ppse, pg_nfcsw_demo_apps,
					 pg_nfcsw_demo_napps, s->name);
		for (size_t k = 0; rc >= 0 && !s->with_ppse && k < pg_nfcsw_demo_napps; k++) {
			const struct pg_nfcsw_sim_app *a = &pg_nfcsw_demo_apps[k];
			uint8_t aid[PG_NFCSW_AID_MAX];
			int n = pg_hex_decode(aid, sizeof(aid), a->aid_hex);

			if (strcmp(a->se, s->name) || a->kind != PG_NFCSW_APPLET_PAYMENT)
				continue;
			rc = n < 0 ? PG_EINVAL
				   : pg_nfcsw_expect(sw, s->name, aid, (size_t)n, a->priority,
						     a->label, PG_NFCSW_APP_PAYMENT);
		}
		if (rc >= 0)
			rc = pg_link_open_memory(&l, pg_link_find(s->link),
						 pg_gp_card_card(cards[i]), NULL);
		if (rc >= 0)
			rc = pg_nfcsw_attach(sw, s->name, l, "memory", s->priority);
	}
	return rc < 0 ? rc : 0;
}
