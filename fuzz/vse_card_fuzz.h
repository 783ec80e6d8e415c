/*
 * Shared by the GP card fuzzers (fuzz/vse_card_*.c): a fresh card per input
 * (memory store, so every run is deterministic) and an SCP03 host session on
 * its basic channel, so the fuzzers reach what only an authenticated
 * session may do (INSTALL, STORE DATA, DELETE, PUT KEY, SET STATUS).
 */
#ifndef PG_FUZZ_VSE_CARD_FUZZ_H
#define PG_FUZZ_VSE_CARD_FUZZ_H

#include "payguard/apdu.h"
#include "payguard/card_gp.h"
#include "payguard/log.h"
#include "payguard/scp03.h"

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

/* Sends one C-APDU; checks that the answer is a whole R-APDU within the room given. */
static size_t
fz_tx(const struct pg_card *c, const uint8_t *a, size_t n, uint8_t *r, size_t cap)
{
	size_t rl = cap;

	if (c->process(c->ctx, a, n, r, &rl) < 0)
		return 0;
	if (rl < 2 || rl > cap)
		abort();
	return rl;
}

static int
fz_open(const struct pg_card *c, struct pg_scp03 *s, uint8_t sl)
{
	static const uint8_t host_ch[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct pg_scp03_keys k;
	uint8_t a[300], r[300];
	size_t rn;
	int n;

	memset(&k, 0, sizeof(k));
	for (int i = 0; i < 16; i++)
		k.enc[i] = k.mac[i] = k.dek[i] = (uint8_t)(0x40 + i);
	k.len = 16, k.kvn = 0x30;
	memset(s, 0, sizeof(*s));
	n = pg_scp03_host_init_update(s, 0x30, host_ch, 8, a, sizeof(a));
	if (n < 0 || !(rn = fz_tx(c, a, (size_t)n, r, sizeof(r))))
		return -1;
	n = pg_scp03_host_auth(s, &k, r, rn, sl, a, sizeof(a));
	if (n < 0 || !(rn = fz_tx(c, a, (size_t)n, r, sizeof(r))))
		return -1;
	return pg_scp03_host_auth_done(s, r, rn);
}

/* Wraps a plain command in the session and sends it; the response SW, or 0. */
static uint16_t
fz_stx(const struct pg_card *c, struct pg_scp03 *s, const uint8_t *p, size_t n)
{
	static uint8_t w[PG_APDU_MAX_C + 64], r[PG_APDU_MAX_R + 64];
	int wn = pg_scp03_host_wrap(s, p, n, w, sizeof(w)), pn;
	size_t rn;

	if (wn < 0)
		return 0;
	rn = fz_tx(c, w, (size_t)wn, r, sizeof(r));
	if (!rn)
		return 0;
	pn = pg_scp03_host_unwrap(s, r, rn, r, sizeof(r));
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
