/*
 * POS intake through NATS JetStream (issue 15, build item 2; docs/pos.md
 * "JetStream intake"). Two halves:
 *  - the publisher: the server's committer hands it a batch of decided
 *    transactions; each record (txcodec.c) is published asynchronously to
 *    payguard-intake.pos.<node> with Nats-Msg-Id = the record's stable id,
 *    then every acknowledgement is awaited. Only then are the terminals
 *    answered. A batch tried again after a lost acknowledgement carries the
 *    same ids, and the stream's duplicate window drops the repeats.
 *  - the sink: a thread with its own store connection pulls batches from the
 *    durable consumer shared by every node, stores each batch in one
 *    transaction (pos_txn's unique key makes a redelivery a no-op) and acks
 *    the messages only after the commit. While the store is away it tries
 *    again with backoff; the messages stay unacknowledged in the stream.
 * The stream (file storage, 3 replicas, work-queue retention, discard new
 * at its byte limit) is created by the first node that needs it.
 */
#include "pos_internal.h"

#include "../events/events_int.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_PER_MS     1000000LL
#define DUP_WINDOW_NS (120LL * 1000 * NS_PER_MS)
#define ACK_WAIT_MS   30000 /* a sink's unacked messages go to another after this */
#define PUB_PENDING   8192  /* asynchronous publishes in flight at most */
#define PUB_WINDOW    4096  /* a batch waits for acknowledgements every so many */

struct pg_pos_js {
	natsConnection *nc;
	jsCtx *js;
	char subject[160];
	int failed; /* acknowledgement errors of the current try (atomic) */
	int last_err;
};

/* Called on a libnats thread for every message's acknowledgement or error. */
static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
	struct pg_pos_js *j = arg;

	(void)js;
	(void)pa;
	if (pae) {
		__atomic_add_fetch(&j->failed, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&j->last_err, (int)pae->Err, __ATOMIC_RELAXED);
	}
	natsMsg_Destroy(msg);
}

static int
ensure_stream(jsCtx *js, const struct pg_pos_js_cfg *cfg)
{
	const char *subjects[] = {PG_POS_INTAKE_SUBJECTS};
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	if (js_GetStreamInfo(&si, js, cfg->stream, NULL, &jerr) == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = cfg->stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = cfg->replicas > 0 ? cfg->replicas : 3;
	/* a message leaves once a sink stored and acked it; a full stream refuses
	 * new ones (their terminals get 96) rather than dropping unstored ones */
	sc.Retention = js_WorkQueuePolicy;
	sc.Discard = js_DiscardNew;
	sc.MaxBytes = cfg->max_bytes > 0 ? cfg->max_bytes : (int64_t)1 << 30;
	sc.MaxAge = cfg->max_age_s > 0 ? (int64_t)cfg->max_age_s * 1000 * NS_PER_MS : 0;
	sc.Duplicates = DUP_WINDOW_NS;
	jerr = 0;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK && cfg->replicas <= 0) {
		pg_warn("pos-intake", "stream %s with 3 replicas refused (%s); using 1",
			cfg->stream, natsStatus_GetText(s));
		sc.Replicas = 1;
		jerr = 0;
		s = js_AddStream(&si, js, &sc, NULL, &jerr);
	}
	if (s != NATS_OK) {
		/* another node may have created it meanwhile */
		if (js_GetStreamInfo(&si, js, cfg->stream, NULL, NULL) == NATS_OK) {
			jsStreamInfo_Destroy(si);
			return 0;
		}
		return pgi_events_nats_fail(s, jerr, "create the POS intake stream");
	}
	pg_info("pos-intake", "created stream %s (%lld replica(s), %lld bytes at most)",
		cfg->stream, (long long)sc.Replicas, (long long)sc.MaxBytes);
	jsStreamInfo_Destroy(si);
	return 0;
}

/* Connects, and replaces the plain JetStream context with one whose
 * asynchronous publishes report to `ack` (may be NULL). */
static int
connect_js(const char *urls, natsConnection **nc, jsCtx **js, struct pg_pos_js *ack)
{
	jsOptions jo;
	natsStatus s;
	int rc = pgi_events_nats_connect(urls, nc, js);

	if (rc < 0 || !ack)
		return rc;
	jsCtx_Destroy(*js);
	*js = NULL;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = PUB_PENDING;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = ack;
	s = natsConnection_JetStream(js, *nc, &jo);
	if (s != NATS_OK) {
		natsConnection_Destroy(*nc);
		*nc = NULL;
		return pgi_events_nats_fail(s, 0, "JetStream context");
	}
	return 0;
}

/* Subject tokens: letters, digits, '-' and '_' only (the node name is ours to trust, not to parse).
 */
static void
subject_of(const char *node, char *out, size_t outlen)
{
	size_t at = (size_t)snprintf(out, outlen, "%s", PG_POS_INTAKE_PREFIX);

	for (const char *p = node && *node ? node : "node"; *p && at + 1 < outlen; p++)
		out[at++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				    (*p >= '0' && *p <= '9') || *p == '-'
				? *p
				: '_';
	out[at] = 0;
}

int
pgi_pos_js_open(struct pg_pos_js **out, const struct pg_pos_js_cfg *cfg)
{
	struct pg_pos_js *j = calloc(1, sizeof(*j));
	int rc;

	*out = NULL;
	if (!j)
		return PG_ENOMEM;
	subject_of(cfg->node, j->subject, sizeof(j->subject));
	rc = connect_js(cfg->nats, &j->nc, &j->js, j);
	if (rc == 0)
		rc = ensure_stream(j->js, cfg);
	if (rc < 0) {
		pgi_pos_js_close(j);
		return rc;
	}
	pg_info("pos-intake", "publishing to %s (stream %s)", j->subject, cfg->stream);
	*out = j;
	return 0;
}

void
pgi_pos_js_close(struct pg_pos_js *j)
{
	if (!j)
		return;
	jsCtx_Destroy(j->js);
	natsConnection_Destroy(j->nc);
	free(j);
}

int
pgi_pos_js_publish(struct pg_pos_js *j, const struct pg_pos_batch *b, int wait_ms)
{
	struct pg_buf buf = PG_BUF_INIT(PG_POS_REC_MAX);
	jsPubOptions po;
	natsMsgList pend;
	natsStatus s = NATS_OK;
	char id[160];
	int rc = 0, failed;

	__atomic_store_n(&j->failed, 0, __ATOMIC_RELAXED);
	jsPubOptions_Init(&po);
	po.MaxWait = wait_ms;
	for (size_t i = 0; s == NATS_OK && i < pg_pos_batch_n(b); i++) {
		const struct pos_record *r = pgi_pos_batch_rec(b, i);
		natsMsg *m = NULL;

		pg_buf_reset(&buf);
		rc = pgi_pos_rec_encode(r, &buf);
		if (rc < 0)
			break;
		pgi_pos_rec_id(r, id, sizeof(id));
		s = natsMsg_Create(&m, j->subject, NULL, (const char *)buf.data, (int)buf.len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (s == NATS_OK)
			s = js_PublishMsgAsync(j->js, &m, NULL);
		natsMsg_Destroy(m); /* NULL once the library owns it */
		/* a big batch goes in windows below the library's pending limit */
		if (s == NATS_OK && (i + 1) % PUB_WINDOW == 0)
			s = js_PublishAsyncComplete(j->js, &po);
	}
	pg_buf_release(&buf);
	if (rc == 0 && s == NATS_OK)
		s = js_PublishAsyncComplete(j->js, &po);
	if (rc == 0 && s != NATS_OK)
		rc = pgi_events_nats_fail(s, 0, "publish to the POS intake stream");
	/* what is still unacknowledged is published again on the next try */
	if (rc < 0 && js_PublishAsyncGetPendingList(&pend, j->js) == NATS_OK)
		natsMsgList_Destroy(&pend);
	failed = __atomic_load_n(&j->failed, __ATOMIC_RELAXED);
	if (rc == 0 && failed)
		rc = pg_error(PG_EIO, "pos-intake", "%d of %zu publishes refused (%s)", failed,
			      pg_pos_batch_n(b),
			      natsStatus_GetText(
				  (natsStatus)__atomic_load_n(&j->last_err, __ATOMIC_RELAXED)));
	return rc;
}

/* ---- the sink ---- */

struct pg_pos_sink {
	struct pg_pos_sink_cfg cfg;
	pthread_t th;
	int stop; /* atomic */
	uint64_t stored, bad;
};

static int
stopping(struct pg_pos_sink *k)
{
	return __atomic_load_n(&k->stop, __ATOMIC_RELAXED);
}

/* Sleeps ms in short steps, so a stop is noticed. */
static void
nap(struct pg_pos_sink *k, int ms)
{
	for (int t = 0; t < ms && !stopping(k); t += 20)
		usleep(20000);
}

static int
backoff(int *ms)
{
	int now = *ms;

	*ms = *ms < 2000 ? *ms * 2 : 2000;
	return now;
}

/* The store connection and the writer, opened again until they open. */
static int
sink_store_open(struct pg_pos_sink *k, struct pg_store *st, struct pg_pos_engine **w)
{
	int wait = 50;

	while (!stopping(k)) {
		int rc = pg_store_open_flags(st, k->cfg.store, SQLITE_OPEN_NOMUTEX);

		if (rc == 0)
			rc = pg_pos_engine_open_writer(w, st,
						       k->cfg.pol.alert_n ? &k->cfg.pol : NULL);
		if (rc == 0)
			return 0;
		pg_warn("pos-sink", "store: %s; trying again", pg_last_error());
		pg_store_close(st);
		memset(st, 0, sizeof(*st));
		nap(k, backoff(&wait));
	}
	return PG_EAGAIN;
}

static int
sink_subscribe(struct pg_pos_sink *k, jsCtx *js, natsSubscription **sub)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	jsConsumerConfig_Init(&cc);
	cc.Durable = k->cfg.durable;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = (int64_t)ACK_WAIT_MS * NS_PER_MS;
	cc.MaxAckPending = 65536;
	cc.FilterSubject = PG_POS_INTAKE_SUBJECTS;
	s = js_AddConsumer(&ci, js, k->cfg.stream, &cc, NULL, &jerr);
	if (s != NATS_OK &&
	    js_GetConsumerInfo(&ci, js, k->cfg.stream, k->cfg.durable, NULL, NULL) != NATS_OK)
		return pgi_events_nats_fail(s, jerr, "create the sink's durable consumer");
	jsConsumerInfo_Destroy(ci);
	/* bound to the consumer, so closing the subscription never deletes it */
	jsSubOptions_Init(&so);
	so.Stream = k->cfg.stream;
	so.Consumer = k->cfg.durable;
	jerr = 0;
	s = js_PullSubscribe(sub, js, PG_POS_INTAKE_SUBJECTS, k->cfg.durable, NULL, &so, &jerr);
	if (s != NATS_OK)
		return pgi_events_nats_fail(s, jerr, "subscribe to the sink's consumer");
	return 0;
}

/*
 * Stores one fetched batch, trying again until it is committed (or the sink
 * stops), then acks every message. A message that does not decode is
 * terminated: no delivery would ever decode it.
 */
static void
sink_batch(struct pg_pos_sink *k, natsMsgList *l, struct pg_pos_batch *b, struct pg_pos_engine *w)
{
	struct pos_record r;
	uint64_t next_progress = pg_mono_ms() + ACK_WAIT_MS / 3;
	int wait = 50, rc;

	pgi_pos_batch_clear(b);
	for (int i = 0; i < l->Count; i++) {
		natsMsg *m = l->Msgs[i];

		if (pgi_pos_rec_decode((const uint8_t *)natsMsg_GetData(m),
				       (size_t)natsMsg_GetDataLength(m), &r) < 0) {
			pg_err("pos-sink", "message on %s dropped: %s", natsMsg_GetSubject(m),
			       pg_last_error());
			natsMsg_Term(m, NULL);
			k->bad++;
			l->Msgs[i] = NULL;
			natsMsg_Destroy(m);
			continue;
		}
		if (pgi_pos_batch_push(b, &r) < 0)
			return; /* not acked: delivered again */
	}
	while ((rc = pg_pos_batch_write(w, b, NULL)) < 0) {
		pg_warn("pos-sink", "%zu transactions not stored: %s; trying again",
			pg_pos_batch_n(b), pg_last_error());
		if (stopping(k))
			return;
		nap(k, backoff(&wait));
		/* still working on them: the consumer keeps them ours, not another sink's */
		if (pg_mono_ms() >= next_progress) {
			next_progress = pg_mono_ms() + ACK_WAIT_MS / 3;
			for (int i = 0; i < l->Count; i++)
				if (l->Msgs[i])
					natsMsg_InProgress(l->Msgs[i], NULL);
		}
	}
	k->stored += pg_pos_batch_n(b);
	for (int i = 0; i < l->Count; i++)
		if (l->Msgs[i])
			natsMsg_Ack(l->Msgs[i], NULL);
}

static void *
sink_main(void *arg)
{
	struct pg_pos_sink *k = arg;
	struct pg_store st = {0};
	struct pg_pos_engine *w = NULL;
	struct pg_pos_batch *b = pg_pos_batch_new();
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsSubscription *sub = NULL;
	uint64_t next_days = 0;
	int wait = 50;

	if (!b || sink_store_open(k, &st, &w) < 0)
		goto out;
	while (!stopping(k) && !sub) {
		if (connect_js(k->cfg.nats, &nc, &js, NULL) == 0 &&
		    sink_subscribe(k, js, &sub) == 0)
			break;
		pg_warn("pos-sink", "%s; trying again", pg_last_error());
		jsCtx_Destroy(js);
		natsConnection_Destroy(nc);
		js = NULL;
		nc = NULL;
		nap(k, backoff(&wait));
	}
	if (sub)
		pg_info("pos-sink", "storing from stream %s (consumer %s)", k->cfg.stream,
			k->cfg.durable);
	while (sub && !stopping(k)) {
		natsMsgList l = {0};
		natsStatus s;

		/* the day partitions ahead, as the store intake's committer keeps them */
		if (pg_mono_ms() >= next_days) {
			next_days = pg_mono_ms() + 60000;
			if (pg_pos_partitions_ensure(&st, (int64_t)pg_wall_ms(), 2) == 0)
				next_days = pg_mono_ms() + 3600000;
		}
		s = natsSubscription_Fetch(&l, sub, k->cfg.batch > 0 ? k->cfg.batch : 512, 500,
					   NULL);
		if (s == NATS_OK && l.Count > 0)
			sink_batch(k, &l, b, w);
		else if (s != NATS_OK && s != NATS_TIMEOUT) {
			pg_debug("pos-sink", "fetch: %s", natsStatus_GetText(s));
			nap(k, 100); /* the server we use is away: the client reconnects */
		}
		natsMsgList_Destroy(&l);
	}
out:
	pg_info("pos-sink", "stopped: %llu transactions stored, %llu bad messages dropped",
		(unsigned long long)k->stored, (unsigned long long)k->bad);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	pg_pos_engine_free(w);
	pg_store_close(&st);
	pg_pos_batch_free(b);
	return NULL;
}

int
pgi_pos_sink_start(struct pg_pos_sink **out, const struct pg_pos_sink_cfg *cfg)
{
	struct pg_pos_sink *k = calloc(1, sizeof(*k));

	*out = NULL;
	if (!k)
		return PG_ENOMEM;
	k->cfg = *cfg;
	if (pthread_create(&k->th, NULL, sink_main, k) != 0) {
		free(k);
		return pg_error(PG_ESYS, "pos-sink", "no thread");
	}
	*out = k;
	return 0;
}

void
pgi_pos_sink_stop(struct pg_pos_sink *k)
{
	if (!k)
		return;
	__atomic_store_n(&k->stop, 1, __ATOMIC_RELAXED);
	pthread_join(k->th, NULL);
	free(k);
}
