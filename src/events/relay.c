/*
 * The outbox relay (issue 15): numbers committed events in outbox order and
 * hands them to each sink in that order, each sink keeping its own progress
 * row, so a slow or failing sink never holds the others back.
 *  - NATS JetStream (libnats): the stream is created if missing (file
 *    storage, replicated, duplicate window of two minutes); every message
 *    carries `Nats-Msg-Id` = the event id and is published synchronously, so
 *    progress is written only for events the stream acknowledged. A crash
 *    between the acknowledgement and the progress row publishes the event
 *    again with the same id, and the stream drops it.
 *  - Webhooks (libcurl): each event is POSTed as application/cloudevents+json
 *    with the Standard Webhooks headers (webhook-id, webhook-timestamp,
 *    webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>").
 *    A failed delivery is retried with exponential backoff; later events of
 *    that sink wait, so each receiver sees events in order.
 * Events every configured sink has delivered are deleted.
 */
#include "payguard/events.h"

#include "events_int.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 60000

struct sink {
	char name[600]; /* "nats" or "webhook:<url>" */
	const char *url;
	int64_t last_pub;
	int64_t next_try_ms;
	int backoff_ms;
};

struct relay {
	struct pg_db *db;
	const struct pg_events_relay_cfg *cfg;
	struct sink *sinks;
	size_t nsinks;
	natsConnection *nc;
	jsCtx *js;
	CURL *curl;
	unsigned char key[64];
	size_t keylen;
	int64_t delivered;
};

/* The stream every event goes to; created once, kept if it exists. */
static int
ensure_stream(struct relay *r)
{
	const char *name = r->cfg->stream ? r->cfg->stream : "PAYGUARD";
	const char *subjects[] = {"payguard.>"};
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetStreamInfo(&si, r->js, name, NULL, &jerr);
	if (s == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = r->cfg->replicas > 0 ? r->cfg->replicas : 3;
	sc.Duplicates = (int64_t)120 * 1000000000; /* ns */
	s = js_AddStream(&si, r->js, &sc, NULL, &jerr);
	if (s != NATS_OK && r->cfg->replicas <= 0) {
		/* a single server (no cluster) cannot replicate: say so and go on */
		pg_warn("events", "stream %s with 3 replicas refused (%s); using 1", name,
			natsStatus_GetText(s));
		sc.Replicas = 1;
		jerr = 0;
		s = js_AddStream(&si, r->js, &sc, NULL, &jerr);
	}
	if (s != NATS_OK)
		return pgi_events_nats_fail(s, jerr, "create the event stream");
	pg_info("events", "created stream %s (%lld replica(s))", name, (long long)sc.Replicas);
	jsStreamInfo_Destroy(si);
	return 0;
}

static int
nats_open(struct relay *r)
{
	int rc = pgi_events_nats_connect(r->cfg->nats, &r->nc, &r->js);

	return rc < 0 ? rc : ensure_stream(r);
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* "whsec_" + base64 of the key (Standard Webhooks); anything else is the key's bytes. */
static int
load_secret(struct relay *r, const char *secret)
{
	if (!secret || !*secret)
		return 0;
	if (strncmp(secret, "whsec_", 6) == 0) {
		const char *b64 = secret + 6;
		size_t n = strlen(b64);
		unsigned char tmp[96];
		int len;

		if (n == 0 || n > 88 || n % 4)
			return pg_error(PG_EINVAL, "events",
					"webhook secret: bad base64 after whsec_");
		len = EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)n);
		if (len < 0)
			return pg_error(PG_EINVAL, "events",
					"webhook secret: bad base64 after whsec_");
		len -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
		if (len < 16 || (size_t)len > sizeof(r->key)) {
			pg_memzero(tmp, sizeof(tmp));
			return pg_error(PG_EINVAL, "events", "webhook secret: 16 to 64 bytes");
		}
		memcpy(r->key, tmp, (size_t)len);
		r->keylen = (size_t)len;
		pg_memzero(tmp, sizeof(tmp));
		return 0;
	}
	if (strlen(secret) < 16 || strlen(secret) > sizeof(r->key))
		return pg_error(PG_EINVAL, "events", "webhook secret: 16 to 64 bytes");
	memcpy(r->key, secret, strlen(secret));
	r->keylen = strlen(secret);
	return 0;
}

int
pg_events_read_secret(const char *path, char *out, size_t outlen)
{
	struct relay probe = {0};
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = outlen < 128 ? PG_EINVAL : pg_fs_check_private(path, 0);

	if (rc == 0)
		rc = pg_read_file(path, outlen - 1, &data, &len);
	if (rc < 0)
		return rc;
	while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
		len--;
	memcpy(out, data, len);
	out[len] = '\0';
	pg_memzero(data, len);
	free(data);
	if (strlen(out) != len)
		rc = pg_error(PG_EINVAL, "events", "webhook secret file %s: a NUL byte", path);
	else /* the format the relay takes, checked now: a bad file fails at the start */
		rc = load_secret(&probe, out);
	pg_memzero(probe.key, sizeof(probe.key));
	if (rc < 0)
		pg_memzero(out, outlen);
	return rc;
}

/* webhook-signature: "v1," + base64(HMAC-SHA256(key, id "." ts "." body)) */
static int
sign(const struct relay *r, const char *id, const char *ts, const char *body, char *out,
     size_t outlen)
{
	unsigned char mac[32];
	unsigned int maclen = 0;
	unsigned char b64[64];
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
	OSSL_PARAM prm[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
			    OSSL_PARAM_construct_end()};
	size_t ml = 0;
	int ok;

	ok = c && EVP_MAC_init(c, r->key, r->keylen, prm) &&
	     EVP_MAC_update(c, (const unsigned char *)id, strlen(id)) &&
	     EVP_MAC_update(c, (const unsigned char *)".", 1) &&
	     EVP_MAC_update(c, (const unsigned char *)ts, strlen(ts)) &&
	     EVP_MAC_update(c, (const unsigned char *)".", 1) &&
	     EVP_MAC_update(c, (const unsigned char *)body, strlen(body)) &&
	     EVP_MAC_final(c, mac, &ml, sizeof(mac)) && ml == sizeof(mac);
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
	if (!ok)
		return pg_error(PG_ECRYPTO, "events", "HMAC-SHA256 failed");
	maclen = (unsigned int)ml;
	EVP_EncodeBlock(b64, mac, (int)maclen);
	snprintf(out, outlen, "v1,%s", b64);
	pg_memzero(mac, sizeof(mac));
	return 0;
}

/* 0 delivered, PG_EAGAIN to retry later */
static int
post_webhook(struct relay *r, const struct sink *k, const char *id, const char *body)
{
	char ts[32], sig[80], h_id[80], h_ts[64], h_sig[120];
	struct curl_slist *hdr = NULL;
	long code = 0;
	CURLcode cc;
	int rc;

	snprintf(ts, sizeof(ts), "%lld", (long long)(pg_wall_ms() / 1000));
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %s", ts);
	hdr = curl_slist_append(hdr, "Content-Type: application/cloudevents+json");
	hdr = curl_slist_append(hdr, h_id);
	hdr = curl_slist_append(hdr, h_ts);
	if (r->keylen) {
		rc = sign(r, id, ts, body, sig, sizeof(sig));
		if (rc < 0) {
			curl_slist_free_all(hdr);
			return rc;
		}
		snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
		hdr = curl_slist_append(hdr, h_sig);
	}
	curl_easy_reset(r->curl);
	curl_easy_setopt(r->curl, CURLOPT_URL, k->url);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	cc = curl_easy_perform(r->curl);
	curl_slist_free_all(hdr);
	if (cc == CURLE_OK)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
	if (cc == CURLE_OK && code >= 200 && code < 300)
		return 0;
	pg_warn("events", "webhook %s: event %s not taken (%s, HTTP %ld); retrying", k->url, id,
		cc == CURLE_OK ? "answered" : curl_easy_strerror(cc), code);
	return PG_EAGAIN;
}

static int
publish_nats(struct relay *r, const char *id, const char *type, const char *body)
{
	jsPubOptions po;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = 10000;
	s = js_Publish(&ack, r->js, type, body, (int)strlen(body), &po, &jerr);
	if (s == NATS_OK && ack && ack->Duplicate)
		pg_info("events",
			"event %s was in the stream already (sent again after a crash);"
			" the stream dropped the repeat",
			id);
	jsPubAck_Destroy(ack);
	if (s != NATS_OK) {
		pgi_events_nats_fail(s, jerr, "publish");
		pg_warn("events", "%s; retrying", pg_last_error());
		return PG_EAGAIN;
	}
	return 0;
}

/* Gives publication numbers to committed events not numbered yet. */
static int
number_tx(struct pg_db *db, void *arg)
{
	const struct relay *r = arg;
	int batch = r->cfg->batch > 0 ? r->cfg->batch : 256;
	struct pg_db_stmt *s;
	int64_t seqs[1024], first;
	int n = 0, rc;

	if (batch > 1024)
		batch = 1024;
	rc = pg_db_prepare(
	    db, "SELECT seq FROM event_outbox WHERE pub IS NULL ORDER BY seq LIMIT ?", &s);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, batch);
	while ((rc = pg_db_step(s)) == 1)
		seqs[n++] = pg_db_column_int64(s, 0);
	pg_db_reset(s);
	if (rc < 0 || n == 0)
		return rc < 0 ? rc : 0;
	/* the counter row outlives trimmed events, so numbers never repeat */
	rc = pg_db_prepare(db,
			   "UPDATE event_sink SET last_pub = last_pub + ? WHERE name = '#pub'"
			   " RETURNING last_pub",
			   &s);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, n);
	rc = pg_db_step(s);
	first = rc == 1 ? pg_db_column_int64(s, 0) - n + 1 : 0;
	pg_db_reset(s);
	if (rc != 1)
		return rc < 0 ? rc : pg_error(PG_ESTORE, "events", "publication counter missing");
	rc = pg_db_prepare(db, "UPDATE event_outbox SET pub = ? WHERE seq = ?", &s);
	for (int i = 0; rc == 0 && i < n; i++) {
		pg_db_bind_int64(s, 1, first + i);
		pg_db_bind_int64(s, 2, seqs[i]);
		rc = pg_db_step(s);
		rc = rc < 0 ? rc : 0;
		pg_db_reset(s);
	}
	return rc < 0 ? rc : n;
}

static int
set_progress(struct relay *r, struct sink *k, int64_t pub)
{
	struct pg_db_stmt *s;
	int rc = pg_db_prepare(r->db, "UPDATE event_sink SET last_pub = ? WHERE name = ?", &s);

	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, pub);
	pg_db_bind_text(s, 2, k->name, -1);
	rc = pg_db_step(s);
	pg_db_reset(s);
	if (rc < 0)
		return rc;
	k->last_pub = pub;
	return 0;
}

/* Delivers the sink's next events in order; stops at the first failure. */
static int
drain_sink(struct relay *r, struct sink *k)
{
	int batch = r->cfg->batch > 0 ? r->cfg->batch : 256;
	struct pg_db_stmt *s;
	int n = 0, rc;
	int64_t now = pg_wall_ms(), done = k->last_pub;

	if (k->next_try_ms > now)
		return 0;
	rc = pg_db_prepare(r->db,
			   "SELECT pub, id, type, body FROM event_outbox WHERE pub > ? ORDER BY pub"
			   " LIMIT ?",
			   &s);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, k->last_pub);
	pg_db_bind_int64(s, 2, batch);
	while ((rc = pg_db_step(s)) == 1) {
		int64_t pub = pg_db_column_int64(s, 0);
		const char *id = pg_db_column_text(s, 1), *type = pg_db_column_text(s, 2);
		const char *body = pg_db_column_text(s, 3);
		int d = k->url ? post_webhook(r, k, id, body) : publish_nats(r, id, type, body);

		if (d < 0) {
			k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : BACKOFF_MIN_MS;
			if (k->backoff_ms > BACKOFF_MAX_MS)
				k->backoff_ms = BACKOFF_MAX_MS;
			k->next_try_ms = pg_wall_ms() + k->backoff_ms;
			break;
		}
		k->backoff_ms = 0;
		done = pub;
		n++;
	}
	pg_db_reset(s);
	if (rc < 0)
		return rc;
	if (done != k->last_pub) {
		rc = set_progress(r, k, done);
		if (rc < 0)
			return rc;
		r->delivered += n;
	}
	return n;
}

/* Deletes events every configured sink has (all numbered ones without sinks). */
static int
trim(struct relay *r)
{
	int64_t upto = INT64_MAX;
	struct pg_db_stmt *s;
	int rc;

	for (size_t i = 0; i < r->nsinks; i++)
		if (r->sinks[i].last_pub < upto)
			upto = r->sinks[i].last_pub;
	rc =
	    pg_db_prepare(r->db, "DELETE FROM event_outbox WHERE pub IS NOT NULL AND pub <= ?", &s);
	if (rc < 0)
		return rc;
	pg_db_bind_int64(s, 1, upto);
	rc = pg_db_step(s);
	pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

static int
load_sinks(struct relay *r)
{
	const struct pg_events_relay_cfg *c = r->cfg;
	struct pg_db_stmt *s;
	int rc;

	r->nsinks = (c->nats ? 1 : 0) + c->nwebhooks;
	r->sinks = calloc(r->nsinks + 1, sizeof(*r->sinks));
	if (!r->sinks)
		return PG_ENOMEM;
	if (c->nats)
		snprintf(r->sinks[0].name, sizeof(r->sinks[0].name), "nats");
	for (size_t i = 0; i < c->nwebhooks; i++) {
		struct sink *k = &r->sinks[(c->nats ? 1 : 0) + i];

		if (strncmp(c->webhooks[i], "http://", 7) && strncmp(c->webhooks[i], "https://", 8))
			return pg_error(PG_EINVAL, "events", "webhook '%s' is not an http(s) URL",
					c->webhooks[i]);
		k->url = c->webhooks[i];
		snprintf(k->name, sizeof(k->name), "webhook:%s", k->url);
	}
	/* a new sink starts at the current end: it gets events from now on */
	rc = pg_db_exec(r->db, "INSERT INTO event_sink(name, last_pub) VALUES('#pub', 0)"
			       " ON CONFLICT(name) DO NOTHING");
	for (size_t i = 0; rc == 0 && i < r->nsinks; i++) {
		rc = pg_db_prepare(
		    r->db,
		    "INSERT INTO event_sink(name, last_pub) SELECT ?, COALESCE(MIN(pub) - 1,"
		    " (SELECT last_pub FROM event_sink WHERE name = '#pub'))"
		    " FROM event_outbox WHERE pub IS NOT NULL ON CONFLICT(name) DO NOTHING",
		    &s);
		if (rc < 0)
			break;
		pg_db_bind_text(s, 1, r->sinks[i].name, -1);
		rc = pg_db_step(s);
		pg_db_reset(s);
		if (rc < 0)
			break;
		rc = pg_db_prepare(r->db, "SELECT last_pub FROM event_sink WHERE name = ?", &s);
		if (rc < 0)
			break;
		pg_db_bind_text(s, 1, r->sinks[i].name, -1);
		rc = pg_db_step(s);
		r->sinks[i].last_pub = rc == 1 ? pg_db_column_int64(s, 0) : 0;
		pg_db_reset(s);
		rc = rc < 0 ? rc : 0;
	}
	return rc;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int
round_once(struct relay *r)
{
	int numbered, moved = 0, rc;

	numbered = pg_db_transact(r->db, number_tx, r, 5);
	if (numbered < 0)
		return numbered;
	for (size_t i = 0; i < r->nsinks; i++) {
		rc = drain_sink(r, &r->sinks[i]);
		if (rc < 0)
			return rc;
		moved += rc;
	}
	rc = trim(r);
	return rc < 0 ? rc : numbered + moved;
}

int
pg_events_relay(struct pg_db *db, const struct pg_events_relay_cfg *cfg, const volatile int *stop)
{
	struct relay r = {.db = db, .cfg = cfg};
	int idle = cfg->idle_ms > 0 ? cfg->idle_ms : 100;
	int rc;

	rc = pg_events_migrate(db);
	if (rc == 0)
		rc = load_secret(&r, cfg->webhook_secret);
	if (rc == 0)
		rc = load_sinks(&r);
	if (rc == 0 && cfg->nwebhooks) {
		r.curl = curl_easy_init();
		if (!r.curl)
			rc = pg_error(PG_ENOMEM, "events", "libcurl");
	}
	if (rc == 0 && cfg->nats)
		rc = nats_open(&r);
	while (rc >= 0 && !(stop && *stop)) {
		rc = round_once(&r);
		if (rc == PG_ECONNLOST || rc == PG_EBUSY) {
			pg_warn("events", "store: %s; retrying", pg_last_error());
			rc = 0;
		}
		if (rc < 0 || cfg->once)
			break;
		if (rc == 0)
			sleep_ms(idle);
	}
	if (rc >= 0 && stop && *stop && cfg->drain_on_stop) {
		/* stopping: what was committed meanwhile goes out too, rounds until
		 * nothing moves (a failing sink keeps its events for the next start) */
		int i = 0;

		do
			rc = round_once(&r);
		while (rc > 0 && ++i < 64);
	}
	if (rc > 0)
		rc = 0;
	jsCtx_Destroy(r.js);
	natsConnection_Destroy(r.nc);
	if (r.curl)
		curl_easy_cleanup(r.curl);
	free(r.sinks);
	pg_memzero(r.key, sizeof(r.key));
	return rc;
}
