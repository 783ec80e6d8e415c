/*
 * The SE operating system's core (issue 7; seeds "Secure element operating
 * system and method" and "Establishment of communication connection between
 * mobile device and secure element"): the SE list and the MACed
 * connection-configuration cache in the store (SQLite or PostgreSQL through
 * the store API, include/payguard/db.h), and the connect flow
 * run on every attach: identify (CPLC) -> SCP03 mutual authentication ->
 * configuration from the cache (identity + version, MAC verified) or read
 * from the SE (GET DATA, GET STATUS, ARA-M GET DATA [All] and [Next]) and stored.
 */
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/seos.h"
#include "payguard/tlv.h"

#include "link/atr.h"

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SUBSYS "seos"

struct pg_seos {
	struct pg_store st;
	uint8_t devkey[32];
	const struct pg_seos_keystore *ks;
	pthread_mutex_t mu; /* the store connection: one thread at a time */
};

/*
 * v1 as SQLite stores have it; PostgreSQL wants BIGINT for the 32-bit
 * unsigned configuration version and the times, BYTEA for the cache record.
 */
#define SEOS_V1(INT, BLOB)                                                                         \
	"CREATE TABLE seos_se ("                                                                   \
	"  name TEXT PRIMARY KEY, id TEXT, link TEXT NOT NULL, addr TEXT, atr TEXT,"               \
	"  state " INT " NOT NULL, reason TEXT, version " INT ", napps " INT ","                   \
	"  updated " INT " NOT NULL);"                                                             \
	"CREATE TABLE seos_cache ("                                                                \
	"  id TEXT PRIMARY KEY, version " INT " NOT NULL, config " BLOB " NOT NULL,"               \
	"  mac " BLOB " NOT NULL, stored " INT " NOT NULL);"

static const struct pg_db_migration migrations[] = {
    {1, NULL, SEOS_V1("INTEGER", "BLOB"), SEOS_V1("BIGINT", "BYTEA")},
};

const char *
pg_seos_state_name(int state)
{
	static const char *const names[] = {"attached", "authenticated", "rejected", "detached"};

	return state >= 0 && state <= PG_SEOS_DETACHED ? names[state] : "?";
}

static int
device_key(uint8_t key[32], const char *path)
{
	struct stat sb;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (stat(path, &sb) == 0) {
		if ((rc = pg_fs_check_private(path, 0)) < 0)
			return rc;
		rc = pg_read_file(path, 64, &data, &len);
		if (rc < 0)
			return pg_error(rc, SUBSYS, "cannot read device key '%s'", path);
		if (len != 32) {
			pg_memzero(data, len);
			free(data);
			return pg_error(PG_ECORRUPT, SUBSYS, "device key '%s' is not 32 bytes",
					path);
		}
		memcpy(key, data, 32);
		pg_memzero(data, len);
		free(data);
		return 0;
	}
	if (RAND_bytes(key, 32) != 1)
		return pg_error(PG_ECRYPTO, SUBSYS, "no random bytes for the device key");
	rc = pg_write_file_atomic(path, key, 32, 0600);
	if (rc < 0)
		return pg_error(rc, SUBSYS, "cannot write device key '%s'", path);
	pg_info(SUBSYS, "created device key %s (mode 0600)", path);
	return 0;
}

int
pg_seos_open(struct pg_seos **out, const char *db, const char *key_path,
	     const struct pg_seos_keystore *ks)
{
	struct pg_seos *os;
	char dir[4096], kp[4200];
	int rc;

	*out = NULL;
	os = calloc(1, sizeof(*os));
	if (!os)
		return PG_ENOMEM;
	pthread_mutex_init(&os->mu, NULL);
	os->ks = ks;
	if (!key_path) {
		rc = pg_data_dir(dir, sizeof(dir));
		if (rc < 0)
			goto fail;
		snprintf(kp, sizeof(kp), "%s/seos-device.key", dir);
		key_path = kp;
	}
	rc = device_key(os->devkey, key_path);
	if (rc < 0)
		goto fail;
	rc = pg_store_open_default(&os->st, db);
	if (rc < 0)
		goto fail;
	rc = pg_db_migrate(os->st.pdb, "seos", migrations,
			   sizeof(migrations) / sizeof(migrations[0]));
	if (rc == 0)
		rc = pg_events_migrate(os->st.pdb);
	if (rc < 0) {
		pg_store_close(&os->st);
		goto fail;
	}
	*out = os;
	return 0;
fail:
	pg_memzero(os->devkey, sizeof(os->devkey));
	pthread_mutex_destroy(&os->mu);
	free(os);
	return rc;
}

void
pg_seos_close(struct pg_seos *os)
{
	if (!os)
		return;
	pg_store_close(&os->st);
	pg_memzero(os->devkey, sizeof(os->devkey));
	pthread_mutex_destroy(&os->mu);
	free(os);
}

struct pg_store *
pg_seos_store(struct pg_seos *os)
{
	return &os->st;
}

/* ---------------- the SE list ---------------- */

/* Binds text, or NULL for an empty string. */
static void
bind_text_or_null(struct pg_db_stmt *s, int i, const char *v)
{
	if (v && *v)
		pg_db_bind_text(s, i, v, -1);
	else
		pg_db_bind_null(s, i);
}

/*
 * The SE area's events (issue 15): payguard.se.authenticated (the SE passed
 * SCP03 mutual authentication on attach) or payguard.se.rejected (it did
 * not, or was unreachable; data.reason says why), subject the SE's name.
 * The data names the SE (its CPLC identity, link, address, ATR) and, when
 * authenticated, its configuration version and application count; never a
 * key or a cryptogram.
 */
static int
se_event(struct pg_seos *os, const char *name, const char *link, const char *addr, const char *atr,
	 const struct pg_seos_conn *c)
{
	int auth = c->state == PG_SEOS_AUTHENTICATED;
	json_t *d = json_pack("{s:s, s:s, s:s?, s:s?, s:s}", "name", name, "link", link, "addr",
			      addr, "id", c->id_hex[0] ? c->id_hex : NULL, "atr", atr);
	int rc;

	if (!d)
		return PG_ENOMEM;
	if (auth) {
		json_object_set_new(d, "version", json_integer(c->cfg.version));
		json_object_set_new(d, "apps", json_integer((json_int_t)c->cfg.napps));
		json_object_set_new(d, "cache", json_boolean(c->cache == 1));
	} else {
		json_object_set_new(d, "reason", json_string(c->reason));
	}
	rc = pg_event_emit(os->st.pdb, "se", auth ? "authenticated" : "rejected", name, d, NULL);
	json_decref(d);
	return rc;
}

/* The SE list row and, for an authentication or a rejection, its event: one transaction. */
static int list_put_row(struct pg_seos *os, const char *name, const char *link, const char *addr,
			const struct pg_seos_conn *c, const char *atr);

static int
list_put(struct pg_seos *os, const char *name, const char *link, const char *addr,
	 const struct pg_seos_conn *c)
{
	char atr[2 * PG_ATR_MAX + 1];
	int rc;

	pg_hex_encode(atr, c->atr, c->atr_len);
	rc = pg_db_begin(os->st.pdb);
	if (rc < 0)
		return rc;
	rc = list_put_row(os, name, link, addr, c, atr);
	if (rc == 0 && (c->state == PG_SEOS_AUTHENTICATED || c->state == PG_SEOS_REJECTED))
		rc = se_event(os, name, link, addr, atr, c);
	if (rc == 0)
		return pg_db_commit(os->st.pdb);
	pg_db_rollback(os->st.pdb);
	return rc;
}

static int
list_put_row(struct pg_seos *os, const char *name, const char *link, const char *addr,
	     const struct pg_seos_conn *c, const char *atr)
{
	struct pg_db_stmt *s;
	int rc;

	rc = pg_db_prepare(os->st.pdb,
			   "INSERT INTO seos_se(name,id,link,addr,atr,state,reason,version,napps,"
			   "updated) VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
			   " id=excluded.id, link=excluded.link, addr=excluded.addr,"
			   " atr=excluded.atr, state=excluded.state, reason=excluded.reason,"
			   " version=excluded.version, napps=excluded.napps,"
			   " updated=excluded.updated",
			   &s);
	if (rc < 0)
		return rc;
	pg_db_bind_text(s, 1, name, -1);
	bind_text_or_null(s, 2, c->id_hex);
	pg_db_bind_text(s, 3, link, -1);
	if (addr)
		pg_db_bind_text(s, 4, addr, -1);
	else
		pg_db_bind_null(s, 4);
	pg_db_bind_text(s, 5, atr, -1);
	pg_db_bind_int64(s, 6, c->state);
	bind_text_or_null(s, 7, c->reason);
	pg_db_bind_int64(s, 8, c->cfg.version);
	pg_db_bind_int64(s, 9, (int64_t)c->cfg.napps);
	pg_db_bind_int64(s, 10, (int64_t)time(NULL));
	rc = pg_db_step(s);
	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

int
pg_seos_mark(struct pg_seos *os, const char *name, const char *link, const char *addr, int state,
	     const char *reason)
{
	struct pg_seos_conn c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.state = state;
	snprintf(c.reason, sizeof(c.reason), "unreachable: %s", reason ? reason : "");
	pthread_mutex_lock(&os->mu);
	rc = list_put(os, name, link, addr, &c);
	pthread_mutex_unlock(&os->mu);
	pg_warn(SUBSYS, "SE '%s' (%s at %s) %s: %s", name, link, addr, pg_seos_state_name(state),
		c.reason);
	return rc;
}

int
pg_seos_detach(struct pg_seos *os, const char *name, const char *reason)
{
	struct pg_db_stmt *s;
	int rc;

	pthread_mutex_lock(&os->mu);
	rc = pg_db_prepare(os->st.pdb,
			   "UPDATE seos_se SET state=?, reason=?, updated=? WHERE name=?", &s);
	if (rc == 0) {
		pg_db_bind_int64(s, 1, PG_SEOS_DETACHED);
		if (reason)
			pg_db_bind_text(s, 2, reason, -1);
		else
			pg_db_bind_null(s, 2);
		pg_db_bind_int64(s, 3, (int64_t)time(NULL));
		pg_db_bind_text(s, 4, name, -1);
		rc = pg_db_step(s);
		if (rc >= 0)
			rc = pg_db_changes(s) ? 0 : PG_ENOENT;
		pg_db_reset(s);
	}
	pthread_mutex_unlock(&os->mu);
	if (rc == 0)
		pg_info(SUBSYS, "SE '%s' detached: %s", name, reason ? reason : "");
	return rc;
}

static void
col_text(char *dst, size_t cap, struct pg_db_stmt *s, int i)
{
	snprintf(dst, cap, "%s", pg_db_column_text(s, i));
}

static int
list_rows(struct pg_db *db, int (*fn)(void *arg, const struct pg_seos_entry *e), void *arg)
{
	struct pg_db_stmt *s = NULL;
	int rc;

	rc = pg_db_prepare(db,
			   "SELECT name,id,link,addr,atr,state,reason,version,napps FROM seos_se "
			   "ORDER BY name",
			   &s);
	if (rc < 0)
		return rc;
	while ((rc = pg_db_step(s)) == 1) {
		struct pg_seos_entry e;

		memset(&e, 0, sizeof(e));
		col_text(e.name, sizeof(e.name), s, 0);
		col_text(e.id_hex, sizeof(e.id_hex), s, 1);
		col_text(e.link, sizeof(e.link), s, 2);
		col_text(e.addr, sizeof(e.addr), s, 3);
		col_text(e.atr_hex, sizeof(e.atr_hex), s, 4);
		e.state = (int)pg_db_column_int64(s, 5);
		col_text(e.reason, sizeof(e.reason), s, 6);
		e.version = (uint32_t)pg_db_column_int64(s, 7);
		e.napps = (size_t)pg_db_column_int64(s, 8);
		rc = fn(arg, &e);
		if (rc < 0)
			break;
	}
	pg_db_reset(s);
	return rc;
}

int
pg_seos_list(struct pg_seos *os, int (*fn)(void *arg, const struct pg_seos_entry *e), void *arg)
{
	int rc;

	pthread_mutex_lock(&os->mu);
	rc = list_rows(os->st.pdb, fn, arg);
	pthread_mutex_unlock(&os->mu);
	return rc;
}

int
pg_seos_list_store(struct pg_store *st, int (*fn)(void *arg, const struct pg_seos_entry *e),
		   void *arg)
{
	return list_rows(st->pdb, fn, arg);
}

/* ---------------- the MACed cache ---------------- */

static int
record_mac(const struct pg_seos *os, const char *id_hex, uint32_t version, const uint8_t *blob,
	   size_t n, uint8_t mac[32])
{
	static const char label[] = "payguard seos cache v1";
	uint8_t hdr[sizeof(label) + 2 * PG_SEOS_ID_LEN + 4];
	OSSL_PARAM prm[2];
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *h = m ? EVP_MAC_CTX_new(m) : NULL;
	size_t ml = 0;
	int ok;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, label, sizeof(label));
	memcpy(hdr + sizeof(label), id_hex, strnlen(id_hex, 2 * PG_SEOS_ID_LEN));
	pg_put_be32(hdr + sizeof(label) + 2 * PG_SEOS_ID_LEN, version);
	prm[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	prm[1] = OSSL_PARAM_construct_end();
	ok = h && EVP_MAC_init(h, os->devkey, sizeof(os->devkey), prm) == 1 &&
	     EVP_MAC_update(h, hdr, sizeof(hdr)) == 1 && EVP_MAC_update(h, blob, n) == 1 &&
	     EVP_MAC_final(h, mac, &ml, 32) == 1 && ml == 32;
	EVP_MAC_CTX_free(h);
	EVP_MAC_free(m);
	return ok ? 0 : pg_error(PG_ECRYPTO, SUBSYS, "HMAC-SHA256 failed");
}

/* 1 hit (cfg filled), 0 miss with *why (1 none, 2 other version, 3 MAC/format bad). */
static int
cache_get(struct pg_seos *os, const char *id_hex, uint32_t version, struct pg_seos_config *cfg,
	  int *why)
{
	struct pg_db_stmt *s;
	uint8_t mac[32];
	int rc;

	*why = 1;
	rc =
	    pg_db_prepare(os->st.pdb, "SELECT version, config, mac FROM seos_cache WHERE id=?", &s);
	if (rc < 0)
		return rc;
	pg_db_bind_text(s, 1, id_hex, -1);
	rc = pg_db_step(s);
	if (rc <= 0) /* 0: no record */
		goto out;
	if ((uint32_t)pg_db_column_int64(s, 0) != version) {
		*why = 2;
		rc = 0;
		goto out;
	}
	{
		size_t n = 0, mn = 0;
		const uint8_t *blob = pg_db_column_blob(s, 1, &n);
		const uint8_t *smac = pg_db_column_blob(s, 2, &mn);

		*why = 3;
		rc = record_mac(os, id_hex, version, blob ? blob : (const uint8_t *)"", n, mac);
		if (rc < 0)
			goto out;
		if (!smac || mn != 32 || !pg_ct_equal(mac, smac, 32)) {
			pg_warn(SUBSYS, "cache record of SE %s fails its MAC: tampered, re-reading",
				id_hex);
			rc = 0;
			goto out;
		}
		if (pg_seos_config_decode(cfg, blob, n) < 0 || cfg->version != version) {
			pg_warn(SUBSYS, "cache record of SE %s does not decode: re-reading",
				id_hex);
			pg_seos_config_release(cfg);
			rc = 0;
			goto out;
		}
	}
	*why = 0;
	rc = 1;
out:
	pg_db_reset(s);
	pg_memzero(mac, sizeof(mac));
	return rc;
}

static int
cache_put(struct pg_seos *os, const char *id_hex, const struct pg_seos_config *cfg)
{
	struct pg_db_stmt *s;
	uint8_t *blob = NULL, mac[32];
	size_t n = 0;
	int rc;

	rc = pg_seos_config_encode(cfg, &blob, &n);
	if (rc < 0)
		return rc;
	rc = record_mac(os, id_hex, cfg->version, blob, n, mac);
	if (rc < 0)
		goto out;
	rc = pg_db_prepare(os->st.pdb,
			   "INSERT INTO seos_cache(id,version,config,mac,stored) VALUES(?,?,?,?,?)"
			   " ON CONFLICT(id) DO UPDATE SET version=excluded.version,"
			   " config=excluded.config, mac=excluded.mac, stored=excluded.stored",
			   &s);
	if (rc < 0)
		goto out;
	pg_db_bind_text(s, 1, id_hex, -1);
	pg_db_bind_int64(s, 2, cfg->version);
	pg_db_bind_blob(s, 3, blob, n);
	pg_db_bind_blob(s, 4, mac, 32);
	pg_db_bind_int64(s, 5, (int64_t)time(NULL));
	rc = pg_db_step(s);
	pg_db_reset(s);
	rc = rc < 0 ? rc : 0;
out:
	free(blob);
	return rc;
}

/* ---------------- the connect flow ---------------- */

struct flow {
	struct pg_link *l;
	struct pg_scp03 s;
	uint64_t apdus;
	uint8_t r[PG_APDU_MAX_R];
	size_t rl;
	uint8_t w[PG_APDU_MAX_C];
};

/* Sends a C-APDU; the response is in f->r / f->rl. Returns its SW or a negative code. */
static int
xmit(struct flow *f, const uint8_t *c, size_t n)
{
	int rc;

	f->rl = sizeof(f->r);
	f->apdus++;
	rc = pg_link_transmit(f->l, c, n, f->r, &f->rl);
	if (rc < 0)
		return rc;
	if (f->rl < 2)
		return pg_error(PG_EPROTO, SUBSYS, "response without status word");
	return pg_rapdu_sw(f->r, f->rl);
}

/* Sends a command under the SCP03 session; the plain response is in f->r / f->rl. */
static int
xmit_sec(struct flow *f, const uint8_t *c, size_t n)
{
	int w = pg_scp03_host_wrap(&f->s, c, n, f->w, sizeof(f->w)), rc;

	if (w < 0)
		return w;
	rc = xmit(f, f->w, (size_t)w);
	if (rc < 0)
		return rc;
	w = pg_scp03_host_unwrap(&f->s, f->r, f->rl, f->r, sizeof(f->r));
	if (w < 0)
		return w;
	f->rl = (size_t)w;
	return pg_rapdu_sw(f->r, f->rl);
}

/* GET DATA (CLA 80 INS CA); returns the value of `tag` found in the response (v, vl). */
static int
get_data(struct flow *f, uint16_t tag, int secured, const uint8_t **v, size_t *vl)
{
	uint8_t c[5] = {0x80, 0xCA, (uint8_t)(tag >> 8), (uint8_t)tag, 0x00};
	struct pg_tlv t;
	int sw = secured ? xmit_sec(f, c, 5) : xmit(f, c, 5);

	if (sw < 0)
		return sw;
	if (sw != PG_SW_OK)
		return pg_error(PG_ENOENT, SUBSYS, "GET DATA %04X: SW %04X", tag, sw);
	if (pg_tlv_find(&t, f->r, f->rl - 2, tag, 0) != 1)
		return pg_error(PG_EPROTO, SUBSYS, "GET DATA %04X: tag missing in the response",
				tag);
	*v = t.val;
	*vl = t.len;
	return 0;
}

static void
link_params(struct pg_seos_config *cfg, const struct pg_link *l, const uint8_t *atr, size_t n)
{
	struct pg_atr a;

	snprintf(cfg->link, sizeof(cfg->link), "%s", l->ops->name);
	cfg->channels = 1;
	cfg->ext_len = 0;
	if (l->ops->type == PG_LINK_SWP)
		cfg->window = 4;
	if (pgi_atr_parse(&a, atr, n) < 0)
		return;
	if (l->ops->type == PG_LINK_T1) {
		cfg->ifsc = a.ifsc;
		cfg->ifsd = 254;
	}
	/* Card capabilities (7816-4 8.1.1.2.7) in category-80 historical bytes. */
	if (a.hist_len > 1 && a.hist[0] == 0x80) {
		for (size_t i = 1; i < a.hist_len;) {
			size_t len = a.hist[i] & 0x0F;

			if ((a.hist[i] & 0xF0) == 0x70 && len >= 3 && i + 3 < a.hist_len + 0) {
				uint8_t b3 = a.hist[i + 3];

				cfg->ext_len = (b3 & 0x40) != 0;
				cfg->channels = (uint8_t)((b3 & 0x07) + 1);
			}
			i += 1 + len;
		}
	}
}

/* GET STATUS of the applications (P1 40, P2 02 then 03 while 6310). */
static int
read_apps(struct flow *f, struct pg_seos_config *cfg)
{
	uint8_t c[8] = {0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00};

	for (int round = 0; round < 16; round++) {
		const uint8_t *p;
		size_t n;
		int sw = xmit_sec(f, c, sizeof(c));

		if (sw < 0)
			return sw;
		if (sw != PG_SW_OK && sw != 0x6310)
			return pg_error(PG_EPROTO, SUBSYS, "GET STATUS: SW %04X", sw);
		p = f->r;
		n = f->rl - 2;
		while (n) {
			struct pg_tlv t, a;
			int k = pg_tlv_next(&t, p, n);

			if (k < 0)
				return k;
			if (k == 0)
				break;
			if (t.tag == 0xE3 && cfg->napps < PG_SEOS_MAX_APPS &&
			    pg_tlv_find(&a, t.val, t.len, 0x4F, 0) == 1 && a.len <= 16) {
				struct pg_seos_app *app = &cfg->app[cfg->napps++];

				memcpy(app->aid, a.val, a.len);
				app->aid_len = a.len;
				if (pg_tlv_find(&a, t.val, t.len, 0x9F70, 0) == 1 && a.len >= 1)
					app->life_cycle = a.val[0];
				if (pg_tlv_find(&a, t.val, t.len, 0xC5, 0) == 1 && a.len == 3)
					memcpy(app->priv, a.val, 3);
			}
			p += k;
			n -= (size_t)k;
		}
		if (sw == PG_SW_OK)
			return 0;
		c[3] = 0x03; /* next occurrence */
	}
	return pg_error(PG_EPROTO, SUBSYS, "GET STATUS: more than 16 rounds");
}

/* SELECT ARA-M, GET DATA [All] then [Next] until the FF40 object is whole. */
static int
read_ara(struct flow *f, struct pg_seos_config *cfg)
{
	uint8_t sel[5 + sizeof(pg_ara_m_aid) + 1] = {0x00, 0xA4, 0x04, 0x00, sizeof(pg_ara_m_aid)};
	uint8_t all[5] = {0x80, 0xCA, 0xFF, 0x40, 0x00}, next[5] = {0x80, 0xCA, 0xFF, 0x60, 0x00};
	size_t total = 0, have = 0, hdr;
	int sw;

	memcpy(sel + 5, pg_ara_m_aid, sizeof(pg_ara_m_aid));
	sw = xmit(f, sel, sizeof(sel));
	if (sw < 0)
		return sw;
	if (sw != PG_SW_OK) {
		pg_info(SUBSYS, "no ARA-M on this SE (SELECT: %04X): no client gets access", sw);
		return 0;
	}
	sw = xmit(f, all, 5);
	if (sw < 0)
		return sw;
	if (sw != PG_SW_OK || f->rl < 5 || f->r[0] != 0xFF || f->r[1] != 0x40)
		return pg_error(PG_EPROTO, SUBSYS, "ARA-M GET DATA [All]: SW %04X", sw);
	if (f->r[2] < 0x80) {
		total = f->r[2];
		hdr = 3;
	} else if (f->r[2] == 0x81 && f->rl >= 6) {
		total = f->r[3];
		hdr = 4;
	} else if (f->r[2] == 0x82 && f->rl >= 7) {
		total = (size_t)f->r[3] << 8 | f->r[4];
		hdr = 5;
	} else {
		return pg_error(PG_EPROTO, SUBSYS, "ARA-M: bad FF40 length");
	}
	if (total > PG_ARA_MAX_DATA)
		return pg_error(PG_ETOOBIG, SUBSYS, "ARA-M: %zu bytes of rules", total);
	cfg->ara_len = hdr + total;
	cfg->ara = malloc(cfg->ara_len);
	if (!cfg->ara)
		return PG_ENOMEM;
	for (;;) {
		size_t got = f->rl - 2;

		if (got > cfg->ara_len - have)
			return pg_error(PG_EPROTO, SUBSYS, "ARA-M: more data than FF40 announced");
		memcpy(cfg->ara + have, f->r, got);
		have += got;
		if (have == cfg->ara_len)
			break;
		if (got == 0)
			return pg_error(PG_EPROTO, SUBSYS,
					"ARA-M: GET DATA [Next] returned nothing");
		sw = xmit(f, next, 5);
		if (sw < 0)
			return sw;
		if (sw != PG_SW_OK)
			return pg_error(PG_EPROTO, SUBSYS, "ARA-M GET DATA [Next]: SW %04X", sw);
	}
	/* Refuse now what the enforcer would refuse later. */
	{
		struct pg_ara_rules r;
		int rc = pg_ara_parse(&r, cfg->ara, cfg->ara_len);

		if (rc < 0)
			return rc;
		pg_ara_rules_release(&r);
	}
	return 0;
}

/* Power on, SELECT ISD, the identity from the CPLC (fabricator, IC type, serial, batch). */
static int
flow_identify(struct flow *f, struct pg_seos_conn *conn)
{
	static const uint8_t sel_isd[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
					  0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
	const uint8_t *v;
	size_t vl;
	int rc, sw;

	conn->atr_len = sizeof(conn->atr);
	rc = pg_link_power_on(f->l, conn->atr, &conn->atr_len);
	if (rc < 0)
		return rc;
	sw = xmit(f, sel_isd, sizeof(sel_isd));
	if (sw < 0)
		return sw;
	if (sw != PG_SW_OK)
		return pg_error(PG_EPROTO, SUBSYS, "SELECT ISD: SW %04X", sw);
	rc = get_data(f, PG_SEOS_TAG_CPLC, 0, &v, &vl);
	if (rc < 0)
		return rc;
	if (vl < 18)
		return pg_error(PG_EPROTO, SUBSYS, "CPLC of %zu bytes", vl);
	memcpy(conn->id, v, 4);
	memcpy(conn->id + 4, v + 12, 6);
	pg_hex_encode_upper(conn->id_hex, conn->id, PG_SEOS_ID_LEN, 0);
	return 0;
}

/* The SE's keys from the key store (by identity, or by CIN read in clear). */
static int
flow_keys(struct pg_seos *os, struct flow *f, const struct pg_seos_conn *conn,
	  struct pg_scp03_keys *keys)
{
	uint8_t cin[16];
	size_t cl = 0, vl;
	const uint8_t *v;

	if (!pg_seos_keystore_wants_cin(os->ks))
		return pg_seos_keystore_find(os->ks, conn->id, keys);
	/* A master diversified by CIN (the VSE hypervisor's way): read it in clear. */
	if (get_data(f, PG_SEOS_TAG_CIN, 0, &v, &vl) == 0 && vl <= sizeof(cin)) {
		memcpy(cin, v, vl);
		cl = vl;
	}
	return pg_seos_keystore_find_cin(os->ks, conn->id, cin, cl, keys);
}

/* Secure authentication: SCP03 mutual authentication, C-MAC level. */
static int
flow_auth(struct pg_seos *os, struct flow *f, const struct pg_seos_conn *conn)
{
	struct pg_scp03_keys keys;
	int rc, n, sw;

	memset(&keys, 0, sizeof(keys));
	rc = flow_keys(os, f, conn, &keys);
	if (rc < 0)
		goto out;
	n = pg_scp03_host_init_update(&f->s, keys.kvn, NULL, 8, f->w, sizeof(f->w));
	sw = n < 0 ? n : xmit(f, f->w, (size_t)n);
	if (sw < 0) {
		rc = sw;
		goto out;
	}
	if (sw != PG_SW_OK) {
		rc = pg_error(PG_EAUTH, SUBSYS, "INITIALIZE UPDATE refused: SW %04X", sw);
		goto out;
	}
	n = pg_scp03_host_auth(&f->s, &keys, f->r, f->rl, PG_SCP03_SL_CMAC, f->w, sizeof(f->w));
	if (n < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", pg_last_error());
		rc = pg_error(PG_EAUTH, SUBSYS, "%s", why);
		goto out;
	}
	rc = xmit(f, f->w, (size_t)n);
	if (rc < 0)
		goto out;
	rc = pg_scp03_host_auth_done(&f->s, f->r, f->rl);
	if (rc < 0)
		rc = pg_error(PG_EAUTH, SUBSYS, "EXTERNAL AUTHENTICATE refused (SW %04X)",
			      pg_rapdu_sw(f->r, f->rl));
out:
	pg_memzero(&keys, sizeof(keys));
	return rc;
}

/*
 * The configuration version (GET DATA DF50) and the cache's record for it:
 * 1 hit (conn->cfg filled), 0 read from the SE, or an error.
 */
static int
flow_version(struct pg_seos *os, struct flow *f, struct pg_seos_conn *conn, uint32_t *version)
{
	const uint8_t *v;
	size_t vl;
	int rc = get_data(f, PG_SEOS_TAG_CONFIG_VERSION, 1, &v, &vl);

	*version = 0;
	if (rc == PG_ENOENT) {
		/*
		 * An SE without the version object (e.g. an ISD that only knows
		 * GlobalPlatform's objects) cannot say whether a record is current:
		 * it is always read, never served from the cache.
		 */
		conn->refresh_why = 4;
		pg_clear_error();
		return 0;
	}
	if (rc < 0)
		return rc;
	if (vl != 4)
		return pg_error(PG_EPROTO, SUBSYS, "configuration version of %zu bytes", vl);
	*version = pg_be32(v);
	pthread_mutex_lock(&os->mu);
	rc = cache_get(os, conn->id_hex, *version, &conn->cfg, &conn->refresh_why);
	pthread_mutex_unlock(&os->mu);
	return rc;
}

/* A cache miss: GET DATA, GET STATUS, ARA-M from the SE, then stored in the cache. */
static int
flow_read(struct pg_seos *os, struct flow *f, struct pg_seos_conn *conn, uint32_t version)
{
	struct pg_seos_config *cfg = &conn->cfg;
	const uint8_t *v;
	size_t vl;
	int rc;

	cfg->version = version;
	link_params(cfg, f->l, conn->atr, conn->atr_len);
	if (get_data(f, PG_SEOS_TAG_IIN, 1, &v, &vl) == 0 && vl <= 16) {
		memcpy(cfg->iin, v, vl);
		cfg->iin_len = vl;
	}
	if (get_data(f, PG_SEOS_TAG_CIN, 1, &v, &vl) == 0 && vl <= 16) {
		memcpy(cfg->cin, v, vl);
		cfg->cin_len = vl;
	}
	pg_clear_error();
	rc = read_apps(f, cfg);
	if (rc < 0)
		return rc;
	rc = read_ara(f, cfg); /* ends the ISD session: it selects the ARA-M */
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&os->mu);
	rc = cache_put(os, conn->id_hex, cfg);
	pthread_mutex_unlock(&os->mu);
	return rc;
}

/* The SE list row (and event) for the outcome, and the log line; returns rc or the store's error.
 */
static int
flow_record(struct pg_seos *os, const char *name, const char *addr, const struct flow *f,
	    struct pg_seos_conn *conn, int rc, int stage)
{
	const char *link = f->l->ops->name;
	int put;

	conn->apdus = f->apdus;
	if (rc == 0) {
		conn->state = PG_SEOS_AUTHENTICATED;
		pg_info(SUBSYS,
			"SE '%s' (%s, id %s) authenticated; configuration v%u from %s, %llu APDUs",
			name, link, conn->id_hex, conn->cfg.version,
			conn->cache == 1 ? "the cache" : "the SE", (unsigned long long)f->apdus);
	} else {
		snprintf(conn->reason, sizeof(conn->reason), "%s: %s",
			 stage == 1   ? "authentication failed"
			 : stage == 2 ? "configuration read failed"
				      : "unreachable",
			 pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
		conn->state = PG_SEOS_REJECTED;
		pg_warn(SUBSYS, "SE '%s' (%s%s%s) rejected: %s", name, link,
			conn->id_hex[0] ? ", id " : "", conn->id_hex, conn->reason);
	}
	pthread_mutex_lock(&os->mu);
	put = list_put(os, name, link, addr, conn);
	pthread_mutex_unlock(&os->mu);
	return rc < 0 ? rc : put;
}

int
pg_seos_connect(struct pg_seos *os, const char *name, const char *addr, struct pg_link *l,
		struct pg_seos_conn *conn)
{
	struct flow *f;
	uint32_t version = 0;
	int rc, stage = 0; /* 0 link, 1 authentication, 2 configuration */

	memset(conn, 0, sizeof(*conn));
	conn->cache = -1;
	f = calloc(1, sizeof(*f));
	if (!f)
		return PG_ENOMEM;
	f->l = l;
	rc = flow_identify(f, conn);
	if (rc == 0) {
		stage = 1;
		rc = flow_auth(os, f, conn);
	}
	if (rc == 0) {
		/* Configuration: the version decides between the cache and a fresh read. */
		stage = 2;
		rc = flow_version(os, f, conn, &version);
		conn->cache = rc == 1 ? 1 : rc == 0 ? 0 : -1;
		if (rc == 0)
			rc = flow_read(os, f, conn, version);
		else if (rc == 1)
			rc = 0;
	}
	rc = flow_record(os, name, addr, f, conn, rc, stage);
	pg_scp03_close(&f->s);
	free(f);
	return rc;
}
