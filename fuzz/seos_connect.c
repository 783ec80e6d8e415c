/*
 * Fuzzes the connect flow's parsers of card answers (GET DATA, GET STATUS
 * with its 6310 continuation, ARA-M GET DATA [All]/[Next], the ATR's card
 * capabilities): a fake host link passes the first commands to a real test
 * SE (the GP card with the SE OS's profile), so SCP03 authentication succeeds, then answers every
 * later command with the next chunk of the input (1 length byte + bytes), as OpenSC's fake-reader
 * fuzzers do.
 */
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/seos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fake {
	struct pg_link base;
	struct pg_gp_card *tc;
	const uint8_t *in;
	size_t left;
	int n;
};

static int
fake_power_on(struct pg_link *l, uint8_t *atr, size_t *len)
{
	struct fake *f = (struct fake *)l;
	const struct pg_card *c = pg_gp_card_card(f->tc);

	c->reset(c->ctx);
	return c->atr(c->ctx, atr, len);
}

static int
fake_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *r, size_t *rlen)
{
	struct fake *f = (struct fake *)l;
	const struct pg_card *c = pg_gp_card_card(f->tc);
	size_t cap = *rlen, k;
	int rc = c->process(c->ctx, capdu, clen, r, rlen);

	/* SELECT ISD, CPLC, IU, EA: the real card, so authentication passes. */
	if (rc < 0 || f->n++ < 4)
		return rc;
	if (f->left == 0)
		return PG_ETIMEDOUT;
	k = f->in[0];
	f->in++;
	f->left--;
	if (k > f->left)
		k = f->left;
	if (k > cap)
		return PG_ETOOBIG;
	memcpy(r, f->in, k);
	*rlen = k;
	f->in += k;
	f->left -= k;
	return 0;
}

static const struct pg_link_ops fake_ops = {
    .name = "fake",
    .type = PG_LINK_T1,
    .max_capdu = 65544,
    .max_rapdu = 65538,
    .power_on = fake_power_on,
    .transmit = fake_transmit,
};

static struct pg_seos *os;
static struct pg_gp_card *tc;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake f = {.base = {.ops = &fake_ops}, .in = data, .left = size};
	struct pg_seos_conn c;
	int rc;

	if (!os) {
		static struct pg_seos_keystore *ks;
		uint8_t m[16];
		struct pg_seos_sim_card_cfg cfg = {
		    .serial = 7, .master = m, .master_len = 16, .version = 1};
		char dir[] = "/tmp/pg-fuzz-seos-XXXXXX", db[64], key[64];

		pg_log_set_level(PG_LOG_ERROR); /* logging would dominate the run */
		if (!mkdtemp(dir))
			abort();
		snprintf(db, sizeof(db), "%s/db", dir);
		snprintf(key, sizeof(key), "%s/key", dir);
		if (pg_seos_keystore_parse(&ks, "master 30 404142434445464748494A4B4C4D4E4F\n") <
			0 ||
		    pg_hex_decode(m, sizeof(m), "404142434445464748494A4B4C4D4E4F") != 16 ||
		    pg_seos_open(&os, db, key, ks) < 0 || pg_seos_sim_card_new(&tc, &cfg) < 0)
			abort();
		pg_store_exec(pg_seos_store(os), "PRAGMA synchronous=OFF");
	}
	f.tc = tc;
	/* Every run is a miss: the flow reads (and parses) everything. */
	pg_store_exec(pg_seos_store(os), "DELETE FROM seos_cache");
	rc = pg_seos_connect(os, "fuzz", "fake", &f.base, &c);
	if (rc == 0 && c.cfg.napps > PG_SEOS_MAX_APPS)
		abort();
	if (getenv("PG_FUZZ_VERBOSE")) /* for checking that the seeds reach the end */
		fprintf(stderr, "connect: %d, %zu apps, rules %zu bytes: %s\n", rc, c.cfg.napps,
			c.cfg.ara_len, rc ? c.reason : "ok");
	pg_seos_config_release(&c.cfg);
	return 0;
}
