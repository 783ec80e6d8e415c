/*
 * Shared by the GP card fuzzers (fuzz/vse_card_*.c): a fresh card per input
 * (memory store, so every run is deterministic) and an SCP03 host session on
 * its basic channel (tests/common/se_double.h), so the fuzzers reach what only an authenticated
 * session may do (INSTALL, STORE DATA, DELETE, PUT KEY, SET STATUS).
 */
#ifndef PG_FUZZ_VSE_CARD_FUZZ_H
#define PG_FUZZ_VSE_CARD_FUZZ_H

#include "payguard/apdu.h"
#include "payguard/card_gp.h"
#include "payguard/log.h"
#include "payguard/scp03.h"
#include "se_double.h"

#include <stdlib.h>
#include <string.h>

static struct pg_gp_card *
fz_card(struct pg_nvm *nvm)
{
	static const char *const apps[] = {"ppse", "payment", "pin", "test", "aram"};
	struct pg_gp_config cfg = {
	    .serial = 1, .applets = apps, .n_applets = 5, .nvm = nvm, .nvm_capacity = 8192};
	struct pg_gp_card *g = NULL;

	pg_log_set_level(-1); /* quiet: refusals are expected */
	if (pg_gp_card_new(&g, &cfg) < 0)
		abort();
	return g;
}

/* Opens an SCP03 session at level sl with the default keys (a fixed host challenge: deterministic).
 */
static int
fz_open(const struct pg_card *c, struct pg_scp03 *s, uint8_t sl)
{
	static const uint8_t host_ch[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct pg_scp03_keys k;

	sd_default_keys(&k);
	return sd_scp03_open(c, s, &k, sl, host_ch);
}

/* Wraps a plain command in the session and sends it; the response SW, or 0. */
static uint16_t
fz_stx(const struct pg_card *c, struct pg_scp03 *s, const uint8_t *p, size_t n)
{
	static uint8_t r[PG_APDU_MAX_R + 64];
	int pn = sd_scp03_tx(c, s, p, n, r, sizeof(r));

	return pn >= 2 ? pg_rapdu_sw(r, (size_t)pn) : 0;
}

/* Power cycle: the card restarted from its store has the same persistent image. */
static void
fz_restart_check(struct pg_gp_card **g, struct pg_nvm *nvm)
{
	static const char *const none[] = {NULL};
	static uint8_t a[8192], b[8192];
	struct pg_gp_config cfg = {
	    .serial = 1, .applets = none, .n_applets = 0, .nvm = nvm, .nvm_capacity = 8192};
	int na = pg_gp_card_image(*g, a, sizeof(a)), nb;

	pg_gp_card_free(*g);
	*g = NULL;
	if (pg_gp_card_new(g, &cfg) < 0)
		abort(); /* what the card committed must load */
	nb = pg_gp_card_image(*g, b, sizeof(b));
	if (na < 0 || na != nb || memcmp(a, b, (size_t)na) != 0)
		abort();
}

#endif
