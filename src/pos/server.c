/*
 * The terminal-facing TCP server of seed 4: one epoll event loop, many
 * connections, framed ISO 8583 in, 0110/0210/0810 out. Group commit: every
 * request decided in one loop pass is written in one transaction, and only
 * then are the responses released, so an answered transaction is stored.
 */
#include "pos_internal.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/pos.h"
#include "payguard/store.h"
#include "pos_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_MAX (4u << 20) /* a client that stops reading is cut past this */

struct conn {
	int fd;
	int want_out; /* EPOLLOUT registered */
	int dead;
	uint64_t last_ms, frame_start_ms;
	size_t held; /* answers waiting in a batch: the struct outlives a close */
	struct pg_buf in, out;
	char peer[48];
};

/*
 * PostgreSQL store faults (docs/pos.md): answers wait in a batch; if the
 * batch is not durable within the commit deadline, the answer of each
 * request whose record is in it becomes "96 system malfunction", made
 * then from the framed answer (answer96): the common case packs one answer
 * per request, not two. At most two batches exist: the one a committer
 * thread writes (inflight) and the one the loop gathers (open).
 */
struct held {
	struct conn *c;
	size_t off, len;
	uint8_t tpdu[5]; /* the request's, when the framing has one */
	uint8_t rec;	 /* the request's record is in the batch: 96 if it fails */
};

struct batch {
	struct pg_pos_batch *recs;
	struct held *h;
	size_t nh, caph, nrec;
	struct pg_buf bytes;
	uint64_t start_ms; /* the first request's arrival */
	int active, released;
};

enum { CM_IDLE, CM_WORKING };
enum { OUT_NONE, OUT_OK, OUT_FAIL };

struct committer {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pg_pos_engine *e;
	struct pg_pos_batch *b; /* the inflight batch's records */
	int phase, outcome, expired, stop, running;
	int wake_fd;	      /* eventfd: the loop wakes when an outcome is known */
	uint64_t undone;      /* batches answered 96 whose late commit was removed */
	struct pg_pos_js *js; /* JetStream intake: publish instead of writing */
};

/*
 * Cluster reload (issue 14): cells and merchants are imported once, on any
 * node, and the import notifies PG_POS_REF_CHANNEL as it commits. On a
 * PostgreSQL store a thread with a connection of its own listens, loads the
 * new indexes (seconds for a big cell table) and hands them to the event
 * loop, which swaps them in between two passes: no answer waits for a load.
 * After a lost connection notifications may have been missed: it reloads.
 * SQLite is one node: an import there is seen when the server restarts.
 */
struct reloader {
	pthread_t th;
	pthread_mutex_t mu;
	char *url;
	int wake_fd; /* eventfd: new indexes are ready */
	int stop, running;
	/* ready for the loop, under mu */
	struct pg_cells *cells;
	struct pg_merchants *merchants;
	uint64_t load_ms; /* how long that load took */
};

/*
 * WAL checkpoints move committed pages into the database file and fsync it;
 * done inline they stall the event loop (and every answer) for milliseconds.
 * A thread with its own connection checkpoints passively instead, which never
 * blocks the writer; the server's connection turns automatic checkpoints off.
 */
struct checkpointer {
	pthread_t th;
	struct pg_db *db; /* opened before the thread starts: no thread, no turning off */
	volatile int stop;
	int running;
};

struct server {
	struct pg_pos_server_cfg *cfg;
	struct pg_pos_engine *e;
	int ep, lfd;
	struct conn **conns;
	size_t nconns;
	struct pg_iso_msg req, resp;
	struct pg_buf body;
	uint64_t served, rejected;
	int async; /* PostgreSQL: commits run on the committer thread */
	struct batch bt[2], *inflight, *open;
	struct committer cm;
	uint64_t answered96;
	struct reloader rl;
	uint64_t reloads;
	struct checkpointer cp;
	struct pg_pos_sink *sink;
	int batch_open;			  /* SQLite: a group commit is gathering */
	uint64_t batch_since, last_sweep; /* its start (us); the last sweep (ms) */
};

static volatile sig_atomic_t sig_stop;

static void *
checkpoint_main(void *p)
{
	struct checkpointer *cp = p;

	while (!cp->stop) {
		usleep(200000);
		(void)pg_db_checkpoint(cp->db); /* passive: never blocks the server's writes */
	}
	return NULL;
}

/*
 * Starts the checkpointer and only then turns the server connection's
 * automatic checkpoints off. If its connection cannot be opened or its
 * thread started, automatic checkpoints stay on: the WAL is bounded either way.
 */
static void
checkpointer_start(struct checkpointer *cp, struct pg_store *st)
{
	if (pg_db_checkpointer_open(&cp->db, st->path) < 0) {
		pg_warn("pos-server",
			"checkpointer: cannot open '%s' (%s); checkpoints stay automatic", st->path,
			pg_last_error());
		cp->db = NULL;
		return;
	}
	if (pthread_create(&cp->th, NULL, checkpoint_main, cp) != 0) {
		pg_warn("pos-server", "checkpointer: no thread; checkpoints stay automatic");
		pg_db_free(cp->db);
		cp->db = NULL;
		return;
	}
	cp->running = 1;
	if (pg_store_exec(st, "PRAGMA wal_autocheckpoint=0") < 0)
		pg_warn("pos-server", "checkpointer: %s", pg_last_error());
}

static void
on_signal(int s)
{
	(void)s;
	sig_stop = 1;
}

static void
conn_close(struct server *s, struct conn *c, const char *why)
{
	if (why)
		pg_warn("pos-server", "%s: %s; connection closed", c->peer, why);
	if (!c->dead)
		epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	c->dead = 1;
}

static void
conn_free(struct server *s, size_t i)
{
	struct conn *c = s->conns[i];

	if (!c->dead)
		epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	pg_buf_release(&c->in);
	pg_buf_release(&c->out);
	free(c);
	s->conns[i] = s->conns[--s->nconns];
}

/* Builds a format-error response when the MTI at least reads as a request. */
static int
format_error_reply(struct server *s, const uint8_t *body, size_t n, struct pg_iso_msg *resp)
{
	const struct pg_iso_dialect *d = s->cfg->dialect;
	char mti[5];

	if (d->mti_enc == PG_ISO_ENC_ASCII) {
		if (n < 4)
			return -1;
		memcpy(mti, body, 4);
	} else {
		if (n < 2)
			return -1;
		snprintf(mti, sizeof(mti), "%02X%02X", body[0], body[1]);
	}
	mti[4] = 0;
	if (strspn(mti, "0123456789") != 4 || (mti[2] - '0') % 2)
		return -1;
	mti[2] = (char)(mti[2] + 1);
	pg_iso_msg_init(resp);
	pg_iso_set_mti(resp, mti);
	pg_iso_set_str(resp, 39, "30");
	pg_iso_set_str(resp, 44, "FORMAT_ERROR");
	return 0;
}

static int
frame(struct server *s, const uint8_t *tpdu, struct pg_iso_msg *resp, struct pg_buf *to)
{
	uint8_t t[5];
	int rc;

	pg_buf_reset(&s->body);
	rc = pg_iso_pack(s->cfg->dialect, resp, &s->body);
	if (rc < 0)
		return rc;
	if (tpdu) { /* answer to the sender: swap destination and source */
		t[0] = tpdu[0];
		memcpy(t + 1, tpdu + 3, 2);
		memcpy(t + 3, tpdu + 1, 2);
	}
	return pg_iso_frame_wrap(&s->cfg->framing, tpdu ? t : NULL, s->body.data, s->body.len, to);
}

/*
 * Queues an answer. With a committer, every answer joins the open batch (so
 * a connection's answers keep their order); `queued` says the request's
 * record is in the batch, and then its 96 answer is framed beside it.
 */
static int
reply_as(struct server *s, struct conn *c, const uint8_t *tpdu, struct pg_iso_msg *resp, int queued,
	 uint64_t now)
{
	struct batch *b = s->open;
	struct held *h;
	int rc;

	if (!s->async)
		return frame(s, tpdu, resp, &c->out);
	if (b->nh == b->caph) {
		size_t nc = b->caph ? 2 * b->caph : 256;
		struct held *nh = realloc(b->h, nc * sizeof(*nh));

		if (!nh)
			return PG_ENOMEM;
		b->h = nh;
		b->caph = nc;
	}
	h = &b->h[b->nh];
	h->c = c;
	h->off = b->bytes.len;
	rc = frame(s, tpdu, resp, &b->bytes);
	if (rc < 0)
		return rc;
	h->len = b->bytes.len - h->off;
	h->rec = queued != 0;
	if (tpdu)
		memcpy(h->tpdu, tpdu, sizeof(h->tpdu));
	if (queued)
		b->nrec++;
	if (!b->nh)
		b->start_ms = now;
	b->nh++;
	c->held++;
	return 0;
}

static int
reply(struct server *s, struct conn *c, const uint8_t *tpdu, struct pg_iso_msg *resp)
{
	return reply_as(s, c, tpdu, resp, 0, pg_mono_ms());
}

static int
handle_message(struct server *s, struct conn *c, const uint8_t *tpdu, const uint8_t *body, size_t n,
	       uint64_t now)
{
	struct pg_pos_result res;
	size_t before = pg_pos_engine_pending(s->e);
	int rc = pg_iso_unpack(s->cfg->dialect, body, n, &s->req);

	if (rc < 0) {
		s->rejected++;
		pg_warn("pos-server", "%s: message rejected: %s", c->peer, pg_last_error());
		if (format_error_reply(s, body, n, &s->resp) < 0) {
			conn_close(s, c, "unreadable MTI");
			return PG_EFORMAT;
		}
		return reply(s, c, tpdu, &s->resp);
	}
	if ((s->req.mti[1] == '1' || s->req.mti[1] == '2') && s->req.mti[2] == '0') {
		rc = pg_pos_engine_check(s->e, &s->req, (int64_t)pg_wall_ms(), &res);
		if (rc < 0)
			return rc;
		rc = pg_pos_engine_respond(s->e, &s->req, &res, &s->resp);
	} else {
		rc = pg_pos_engine_respond(s->e, &s->req, NULL, &s->resp);
		if (rc == 0 && s->req.mti[1] != '8')
			rc = pg_iso_set_str(&s->resp, 39, "12"); /* invalid transaction */
	}
	if (rc < 0) {
		s->rejected++;
		conn_close(s, c, pg_last_error());
		return rc;
	}
	s->served++;
	return reply_as(s, c, tpdu, &s->resp, pg_pos_engine_pending(s->e) > before, now);
}

static void
conn_read(struct server *s, struct conn *c, uint64_t now)
{
	for (;;) {
		ssize_t r;
		size_t hdr, body, pos = 0, avail;
		int rc = pg_buf_reserve(
		    &c->in, 4096 < c->in.max - c->in.len ? 4096 : c->in.max - c->in.len);

		if (rc < 0 || c->in.cap == c->in.len) {
			conn_close(s, c, "input buffer full");
			return;
		}
		avail = c->in.cap - c->in.len;
		r = read(c->fd, c->in.data + c->in.len, avail);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) {
			if (c->in.len)
				pg_warn("pos-server",
					"%s: closed with %zu bytes of a partial frame", c->peer,
					c->in.len);
			conn_close(s, c, NULL);
			return;
		}
		c->in.len += (size_t)r;
		c->last_ms = now;
		while (!c->dead) {
			rc = pg_iso_frame_find(&s->cfg->framing, c->in.data + pos, c->in.len - pos,
					       s->cfg->max_msg, &hdr, &body);
			if (rc < 0) {
				s->rejected++;
				conn_close(s, c, pg_last_error());
				return;
			}
			if (rc == 0)
				break;
			rc = handle_message(
			    s, c, s->cfg->framing.tpdu ? c->in.data + pos + hdr - 5 : NULL,
			    c->in.data + pos + hdr, body, now);
			if (rc < 0 && !c->dead) /* the answer could not be queued */
				conn_close(s, c, pg_last_error());
			pos += hdr + body;
			if (s->cfg->framing.kind == PG_FRAME_NONE)
				break;
		}
		pg_buf_consume(&c->in, pos);
		c->frame_start_ms =
		    c->in.len ? (pos || !c->frame_start_ms ? now : c->frame_start_ms) : 0;
		/*
		 * A short read drained the socket: the epoll registration is level-
		 * triggered, so more bytes wake us again; reading on until EAGAIN
		 * would cost one empty read() per request.
		 */
		if (c->dead || (size_t)r < avail)
			return;
	}
}

static void
conn_flush(struct server *s, struct conn *c)
{
	while (c->out.len && !c->dead) {
		ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			conn_close(s, c, "write failed");
			return;
		}
		pg_buf_consume(&c->out, (size_t)w);
	}
	if (c->dead)
		return;
	if (c->out.len && !c->want_out) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};

		epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->want_out = 1;
	} else if (!c->out.len && c->want_out) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->want_out = 0;
	}
}

static void
do_accept(struct server *s, uint64_t now)
{
	for (;;) {
		struct sockaddr_in a;
		socklen_t al = sizeof(a);
		int fd = accept4(s->lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c, **nc;
		struct epoll_event ev;
		int one = 1;

		if (fd < 0)
			return;
		if ((int)s->nconns >= s->cfg->max_conns) {
			pg_warn("pos-server", "connection limit %d reached; refusing",
				s->cfg->max_conns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		nc = realloc(s->conns, (s->nconns + 1) * sizeof(*nc));
		if (!c || !nc) {
			free(c);
			if (nc)
				s->conns = nc;
			close(fd);
			continue;
		}
		s->conns = nc;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->last_ms = now;
		pg_buf_init(&c->in, s->cfg->max_msg + 16);
		pg_buf_init(&c->out, OUT_MAX);
		snprintf(c->peer, sizeof(c->peer), "%s:%u", inet_ntoa(a.sin_addr),
			 ntohs(a.sin_port));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		s->conns[s->nconns++] = c;
		pg_debug("pos-server", "%s: connected", c->peer);
	}
}

/* ---- the committer (PostgreSQL) ---- */

static void
pause_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

/* ---- the reloader (PostgreSQL) ---- */

/* Loads both indexes on the reloader's connection and hands them over. */
static int
reload_once(struct reloader *r, struct pg_store *st)
{
	struct pg_cells *cells = NULL;
	struct pg_merchants *merchants = NULL;
	uint64_t one = 1, t0 = pg_mono_ms();
	int rc = pg_cells_load(st, &cells);

	if (rc >= 0)
		rc = pgi_merchants_load(st, &merchants);
	if (rc < 0) {
		pg_cells_free(cells);
		return rc;
	}
	pthread_mutex_lock(&r->mu);
	/* a load the loop has not taken yet is older than this one */
	pg_cells_free(r->cells);
	pgi_merchants_free(r->merchants);
	r->cells = cells;
	r->merchants = merchants;
	r->load_ms = pg_mono_ms() - t0;
	pthread_mutex_unlock(&r->mu);
	if (write(r->wake_fd, &one, sizeof(one)) < 0)
		pg_debug("pos-server", "reload wake: %s", strerror(errno));
	return 0;
}

static void *
reloader_main(void *p)
{
	struct reloader *r = p;
	struct pg_store st = {0};
	int opened = 0, listening = 0, due = 0;
	char ch[64], payload[64];

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		int rc;

		if (!opened && pg_store_open(&st, r->url) < 0) {
			pg_warn("pos-server", "reload: store: %s", pg_last_error());
			pause_ms(500);
			continue;
		}
		opened = 1;
		if (!listening && pg_db_listen(st.pdb, PG_POS_REF_CHANNEL) < 0) {
			pg_warn("pos-server", "reload: listen: %s", pg_last_error());
			pause_ms(500);
			continue;
		}
		listening = 1;
		rc = pg_db_wait_notify(st.pdb, due ? 500 : 200, ch, sizeof(ch), payload,
				       sizeof(payload));
		if (rc == 1 || rc == PG_ECONNLOST) {
			/* one load for every notification already queued */
			while (pg_db_wait_notify(st.pdb, 0, ch, sizeof(ch), payload,
						 sizeof(payload)) == 1)
				;
			due = 1;
		} else if (rc < 0) {
			pg_warn("pos-server", "reload: wait: %s", pg_last_error());
			pause_ms(200);
		}
		if (!due)
			continue;
		if (reload_once(r, &st) < 0) {
			/* tried again at the next pass (500 ms) */
			pg_warn("pos-server", "reload of cells and merchants failed: %s",
				pg_last_error());
			continue;
		}
		due = 0;
	}
	if (opened)
		pg_store_close(&st);
	return NULL;
}

static int
reloader_start(struct reloader *r, const char *url)
{
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->url = strdup(url);
	if (r->wake_fd < 0 || !r->url)
		return pg_error(PG_ESYS, "pos-server", "reloader: %s", strerror(errno));
	pthread_mutex_init(&r->mu, NULL);
	if (pthread_create(&r->th, NULL, reloader_main, r) != 0) {
		pthread_mutex_destroy(&r->mu);
		return pg_error(PG_ESYS, "pos-server", "reloader thread");
	}
	r->running = 1;
	return 0;
}

static void
reloader_stop(struct reloader *r)
{
	if (r->running) {
		__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
		pthread_join(r->th, NULL);
		pthread_mutex_destroy(&r->mu);
		r->running = 0;
	}
	pg_cells_free(r->cells);
	pgi_merchants_free(r->merchants);
	r->cells = NULL;
	r->merchants = NULL;
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	r->wake_fd = -1;
	free(r->url);
	r->url = NULL;
}

/* The loop's side: swaps in what the reloader loaded (a few pointers and
 * the per-terminal windows; the load itself happened on the thread). */
static void
reloader_take(struct server *s)
{
	struct pg_cells *cells;
	struct pg_merchants *merchants;
	uint64_t v, load_ms;

	if (read(s->rl.wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pg_debug("pos-server", "reload wake: %s", strerror(errno));
	pthread_mutex_lock(&s->rl.mu);
	cells = s->rl.cells;
	merchants = s->rl.merchants;
	s->rl.cells = NULL;
	s->rl.merchants = NULL;
	load_ms = s->rl.load_ms;
	pthread_mutex_unlock(&s->rl.mu);
	if (!merchants)
		return;
	if (pg_pos_engine_swap_ref(s->e, cells, merchants) < 0) {
		pg_warn("pos-server", "reload: %s", pg_strerror(PG_ENOMEM));
		return;
	}
	s->reloads++;
	pg_info("pos-server",
		"cells and merchants reloaded (%d cells, %zu terminals; loaded in %llu ms)",
		pg_cells_count(cells), pgi_merchants_n(merchants), (unsigned long long)load_ms);
}

static void
wake_loop(struct committer *cm)
{
	uint64_t one = 1;

	if (write(cm->wake_fd, &one, sizeof(one)) < 0)
		pg_debug("pos-server", "wake: %s", strerror(errno));
}

/*
 * Writes the inflight batch until it is stored, or its deadline passed and
 * it is known not to be: a commit whose outcome is in doubt (the connection
 * was lost on the way) is looked up before anything else happens, and a
 * batch the loop already answered 96 that was stored late is removed again.
 * The store comes back on its own: every try reconnects (db_pg.c).
 */
static void
commit_one(struct committer *cm)
{
	int doubt = 0, stored = 0, wait = 20, rc, expired, undo = 0;

	for (;;) {
		pthread_mutex_lock(&cm->mu);
		expired = cm->expired;
		pthread_mutex_unlock(&cm->mu);
		if (doubt) {
			rc = pg_pos_batch_stored(cm->e, cm->b);
			if (rc >= 0) {
				doubt = 0;
				if (rc == 1) {
					stored = 1;
					break;
				}
			}
		}
		if (!doubt && expired)
			break; /* answered 96 and not stored: nothing to write */
		if (!doubt) {
			rc = pg_pos_batch_write(cm->e, cm->b, &cm->expired);
			if (rc == 0) {
				stored = 1;
				break;
			}
			if (rc == PG_ETIMEDOUT) {
				pg_warn("pos-server",
					"a batch of %zu transactions answered 96 was rolled back",
					pg_pos_batch_n(cm->b));
				break;
			}
			if (rc == PG_ECONNLOST) {
				doubt = 1;
			} else if (rc != PG_EBUSY) {
				pg_err("pos-server", "commit failed: %s", pg_last_error());
				break;
			}
		}
		if (__atomic_load_n(&cm->stop, __ATOMIC_RELAXED))
			break;
		pg_debug("pos-server", "commit: %s; trying again", pg_last_error());
		pause_ms(wait);
		if (wait < 500)
			wait *= 2;
	}
	pthread_mutex_lock(&cm->mu);
	if (!cm->expired)
		cm->outcome = stored ? OUT_OK : OUT_FAIL;
	else
		undo = stored;
	pthread_mutex_unlock(&cm->mu);
	wake_loop(cm);
	wait = 20;
	while (undo && !__atomic_load_n(&cm->stop, __ATOMIC_RELAXED)) {
		rc = pg_pos_batch_unwrite(cm->e, cm->b);
		if (rc == 0) {
			pg_warn(
			    "pos-server",
			    "a batch of %zu transactions answered 96 was committed late; removed",
			    pg_pos_batch_n(cm->b));
			cm->undone++;
			break;
		}
		pause_ms(wait);
		if (wait < 500)
			wait *= 2;
	}
	if (undo && __atomic_load_n(&cm->stop, __ATOMIC_RELAXED))
		pg_err("pos-server", "stopping: a batch answered 96 may stay stored");
}

/*
 * JetStream intake: publishes the inflight batch until the stream holds all
 * of it, or its deadline passed. Every try publishes the same message ids,
 * so records a lost acknowledgement made us send again are kept once. A
 * batch answered 96 whose publish got through late is stored by the sink
 * all the same (docs/pos.md: 96 means "not known to be recorded").
 */
static void
publish_one(struct committer *cm, int try_ms)
{
	int wait = 20, ok = 0;

	while (!__atomic_load_n(&cm->expired, __ATOMIC_ACQUIRE)) {
		if (pgi_pos_js_publish(cm->js, cm->b, try_ms) == 0) {
			ok = 1;
			break;
		}
		if (__atomic_load_n(&cm->stop, __ATOMIC_RELAXED))
			break;
		pg_warn("pos-server", "publish of %zu transactions: %s; trying again",
			pg_pos_batch_n(cm->b), pg_last_error());
		pause_ms(wait);
		if (wait < 200)
			wait *= 2;
	}
	pthread_mutex_lock(&cm->mu);
	if (!cm->expired)
		cm->outcome = ok ? OUT_OK : OUT_FAIL;
	pthread_mutex_unlock(&cm->mu);
	wake_loop(cm);
}

static void *
committer_main(void *p)
{
	struct committer *cm = p;
	uint64_t next_days = pg_mono_ms() + 3600000;

	pthread_mutex_lock(&cm->mu);
	for (;;) {
		while (cm->phase == CM_IDLE && !cm->stop)
			pthread_cond_wait(&cm->cv, &cm->mu);
		if (cm->phase == CM_IDLE && cm->stop)
			break;
		pthread_mutex_unlock(&cm->mu);
		if (cm->js) {
			publish_one(cm, 1000);
			goto done;
		}
		/* the day partitions ahead, renewed hourly by the connection's owner */
		if (pg_mono_ms() >= next_days) {
			next_days = pg_mono_ms() + 60000;
			if (pg_pos_partitions_ensure(pg_pos_engine_store(cm->e),
						     (int64_t)pg_wall_ms(), 2) == 0)
				next_days = pg_mono_ms() + 3600000;
			else
				pg_warn("pos-server", "day partitions: %s", pg_last_error());
		}
		commit_one(cm);
	done:
		pthread_mutex_lock(&cm->mu);
		cm->phase = CM_IDLE;
		pthread_cond_broadcast(&cm->cv);
		pthread_mutex_unlock(&cm->mu);
		wake_loop(cm);
		pthread_mutex_lock(&cm->mu);
	}
	pthread_mutex_unlock(&cm->mu);
	return NULL;
}

/*
 * Queues the "96 system malfunction" form of a held answer: the framed
 * answer decoded again (our own bytes), fields 39 and 44 replaced.
 */
static int
answer96(struct server *s, const struct batch *b, const struct held *h)
{
	const struct pg_iso_framing *f = &s->cfg->framing;
	size_t hdr, body;
	int rc = pg_iso_frame_find(f, b->bytes.data + h->off, h->len, s->cfg->max_msg, &hdr, &body);

	if (rc == 1)
		rc = pg_iso_unpack(s->cfg->dialect, b->bytes.data + h->off + hdr, body, &s->resp);
	else if (rc == 0)
		rc = pg_error(PG_EFORMAT, "pos-server", "held answer is not one frame");
	if (rc >= 0)
		rc = pg_iso_set_str(&s->resp, 39, "96");
	if (rc >= 0)
		rc = pg_iso_set_str(&s->resp, 44, "SYSTEM MALFUNCTION");
	if (rc >= 0)
		rc = frame(s, f->tpdu ? h->tpdu : NULL, &s->resp, &h->c->out);
	return rc;
}

/* Sends a batch's answers: the normal ones, or 96 for every stored-or-not request. */
static void
batch_answer(struct server *s, struct batch *b, int as96)
{
	for (size_t i = 0; i < b->nh; i++) {
		struct held *h = &b->h[i];
		int rc;

		h->c->held--;
		if (h->c->dead)
			continue;
		if (as96 && h->rec) {
			s->answered96++;
			rc = answer96(s, b, h);
		} else {
			rc = pg_buf_append(&h->c->out, b->bytes.data + h->off, h->len);
		}
		if (rc < 0)
			conn_close(s, h->c, "client does not read its responses");
	}
	b->released = 1;
}

static void
batch_clear(struct batch *b)
{
	b->nh = b->nrec = 0;
	pg_buf_reset(&b->bytes);
	b->active = b->released = 0;
}

/*
 * One pass of the PostgreSQL side: release the inflight batch once its
 * outcome is known or its deadline passed (then as 96); hand the open batch
 * to an idle committer; answer 96 for an open batch that waited past the
 * deadline behind a stuck one (its records never reach the store).
 */
static void
async_step(struct server *s, uint64_t now)
{
	struct committer *cm = &s->cm;
	struct batch *in = s->inflight, *op = s->open;
	uint64_t tmo = (uint64_t)s->cfg->commit_timeout_ms;
	int idle;

	pthread_mutex_lock(&cm->mu);
	if (in->active && !in->released) {
		if (cm->outcome != OUT_NONE) {
			batch_answer(s, in, cm->outcome != OUT_OK);
		} else if (now - in->start_ms >= tmo) {
			/* atomic: the committer reads it between statements (engine.c) */
			__atomic_store_n(&cm->expired, 1, __ATOMIC_RELEASE);
			batch_answer(s, in, 1);
			pg_warn("pos-server",
				"commit not done in %llu ms: %zu transactions answered 96",
				(unsigned long long)tmo, in->nrec);
		}
	}
	idle = cm->phase == CM_IDLE;
	if (in->active && in->released && idle)
		batch_clear(in);
	if (op->nh || pg_pos_engine_pending(s->e)) {
		if (!pg_pos_engine_pending(s->e) && (!in->active || in->released)) {
			batch_answer(s, op, 0); /* nothing to store: answers go out now */
			batch_clear(op);
		} else if (!in->active) {
			pg_pos_engine_take(s->e, cm->b);
			op->active = 1;
			s->inflight = op;
			s->open = in;
			cm->outcome = OUT_NONE;
			__atomic_store_n(&cm->expired, 0, __ATOMIC_RELEASE);
			cm->phase = CM_WORKING;
			pthread_cond_signal(&cm->cv);
		} else if (op->nh && now - op->start_ms >= tmo) {
			pg_pos_engine_drop(s->e);
			batch_answer(s, op, 1);
			pg_warn("pos-server",
				"store busy for %llu ms: %zu transactions answered 96",
				(unsigned long long)tmo, op->nrec);
			batch_clear(op);
		}
	}
	pthread_mutex_unlock(&cm->mu);
}

/* Milliseconds until the nearest deadline of a waiting batch (at most cap). */
static int
async_wait_ms(struct server *s, uint64_t now, int cap)
{
	uint64_t tmo = (uint64_t)s->cfg->commit_timeout_ms;
	long w = cap;

	for (int i = 0; i < 2; i++) {
		struct batch *b = &s->bt[i];

		if ((b == s->inflight && b->active && !b->released) || (b == s->open && b->nh)) {
			long left = (long)(b->start_ms + tmo) - (long)now;

			if (left < w)
				w = left < 1 ? 1 : left;
		}
	}
	return (int)w;
}

/*
 * JetStream intake: the publisher (the committer's) and, unless this node
 * only publishes, the sink thread. Nothing is written to the store here.
 */
static int
intake_start(struct server *s, struct pg_pos_sink **sink)
{
	struct pg_pos_server_cfg *cfg = s->cfg;
	char host[64] = "node";
	struct pg_pos_js_cfg jc = {
	    .nats = cfg->nats,
	    .node = cfg->node,
	    .stream = "PAYGUARD_POS",
	    .max_bytes = (cfg->stream_max_mb > 0 ? cfg->stream_max_mb : 1024) << 20,
	    .max_age_s = cfg->stream_max_age,
	};
	int rc;

	if (!jc.node && gethostname(host, sizeof(host) - 1) == 0)
		jc.node = host;
	rc = pgi_pos_js_open(&s->cm.js, &jc);
	if (rc < 0 || cfg->no_sink)
		return rc;
	return pgi_pos_sink_start(sink,
				  &(struct pg_pos_sink_cfg){.nats = cfg->nats,
							    .stream = jc.stream,
							    .durable = "pos-sink",
							    .store = cfg->sink_store,
							    .pol = *pgi_pos_engine_policy(s->e)});
}

static int
committer_start(struct server *s)
{
	struct committer *cm = &s->cm;

	cm->e = s->e;
	cm->b = pg_pos_batch_new();
	cm->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!cm->b || cm->wake_fd < 0)
		return pg_error(PG_ESYS, "pos-server", "committer: %s", strerror(errno));
	pthread_mutex_init(&cm->mu, NULL);
	pthread_cond_init(&cm->cv, NULL);
	if (pthread_create(&cm->th, NULL, committer_main, cm) != 0) {
		pthread_mutex_destroy(&cm->mu);
		pthread_cond_destroy(&cm->cv);
		return pg_error(PG_ESYS, "pos-server", "committer: no thread");
	}
	cm->running = 1;
	return 0;
}

/*
 * Stops the thread: a batch it is writing gets one more try at most (a
 * store that stays away is not waited for, except inside a libpq call the
 * store never answers), then the thread ends.
 */
static void
committer_stop(struct server *s)
{
	struct committer *cm = &s->cm;

	if (cm->running) {
		pthread_mutex_lock(&cm->mu);
		__atomic_store_n(&cm->stop, 1, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&cm->cv);
		while (cm->phase != CM_IDLE)
			pthread_cond_wait(&cm->cv, &cm->mu);
		pthread_mutex_unlock(&cm->mu);
		pthread_join(cm->th, NULL);
		pthread_mutex_destroy(&cm->mu);
		pthread_cond_destroy(&cm->cv);
		cm->running = 0;
		if (s->inflight->active && !s->inflight->released)
			batch_answer(s, s->inflight, cm->outcome != OUT_OK);
		batch_clear(s->inflight);
	}
	if (cm->wake_fd > 0)
		close(cm->wake_fd);
	cm->wake_fd = -1;
	pg_pos_batch_free(cm->b);
	cm->b = NULL;
}

static int
listen_on(struct server *s)
{
	struct pg_pos_server_cfg *cfg = s->cfg;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
	socklen_t al = sizeof(a);
	int one = 1;

	if (inet_pton(AF_INET, cfg->host ? cfg->host : "127.0.0.1", &a.sin_addr) != 1)
		return pg_error(PG_EINVAL, "pos-server", "address '%s' is not IPv4", cfg->host);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return pg_error(PG_ESYS, "pos-server", "socket: %s", strerror(errno));
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 1024) < 0)
		return pg_error(PG_ESYS, "pos-server", "bind %s:%d: %s",
				cfg->host ? cfg->host : "127.0.0.1", cfg->port, strerror(errno));
	getsockname(s->lfd, (struct sockaddr *)&a, &al);
	cfg->bound_port = ntohs(a.sin_port);
	if (cfg->port_file) {
		char txt[16];
		int n = snprintf(txt, sizeof(txt), "%d\n", cfg->bound_port);
		int rc = pg_write_file_atomic(cfg->port_file, txt, (size_t)n, 0644);

		if (rc < 0)
			return rc;
	}
	if (cfg->on_listen)
		cfg->on_listen(cfg);
	return 0;
}

/* The configuration's unset fields get their defaults. */
static void
cfg_defaults(struct pg_pos_server_cfg *cfg)
{
	if (cfg->commit_timeout_ms <= 0)
		cfg->commit_timeout_ms = 2000;
	if (!cfg->max_msg)
		cfg->max_msg = PG_ISO_MAX_MSG;
	if (!cfg->max_conns)
		cfg->max_conns = 4096;
	if (cfg->idle_ms <= 0)
		cfg->idle_ms = 60000;
	if (cfg->frame_ms <= 0)
		cfg->frame_ms = 5000;
	if (cfg->commit_us < 0)
		cfg->commit_us = 0;
}

static int
epoll_add(struct server *s, int fd, void *tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};

	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return pg_error(PG_ESYS, "pos-server", "epoll: %s", strerror(errno));
	return 0;
}

/*
 * Everything before the first pass: the stream (a node that cannot reach it
 * does not announce a port), the socket, SQLite's checkpointer, the event
 * loop, and for a PostgreSQL store (another process that can stall or
 * restart) the committer with its deadline and the reloader.
 */
static int
serve_start(struct server *s)
{
	struct pg_pos_server_cfg *cfg = s->cfg;
	struct pg_store *st = pg_pos_engine_store(s->e);
	int rc;

	if (cfg->nats && (rc = intake_start(s, &s->sink)) < 0)
		return rc;
	rc = listen_on(s);
	if (rc < 0)
		return rc;
	/* WAL checkpoints are SQLite's; a PostgreSQL store has none to move */
	if (st && st->path && pg_db_engine_of(st->pdb) == PG_DB_SQLITE)
		checkpointer_start(&s->cp, st);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->ep < 0)
		return pg_error(PG_ESYS, "pos-server", "epoll: %s", strerror(errno));
	if ((rc = epoll_add(s, s->lfd, NULL)) < 0)
		return rc;
	if (!cfg->nats && !(st && st->pdb && pg_db_engine_of(st->pdb) == PG_DB_POSTGRES))
		return 0;
	if ((rc = committer_start(s)) < 0 || (rc = epoll_add(s, s->cm.wake_fd, &s->cm)) < 0)
		return rc;
	s->async = 1;
	if ((rc = reloader_start(&s->rl, st->path)) < 0)
		return rc;
	return epoll_add(s, s->rl.wake_fd, &s->rl);
}

/* One pass's events: new connections, the threads' wake-ups, requests. */
static void
dispatch(struct server *s, struct epoll_event *evs, int n, uint64_t now)
{
	for (int i = 0; i < n; i++) {
		struct conn *c = evs[i].data.ptr;

		if (!c) {
			do_accept(s, now);
		} else if ((void *)c == &s->rl) {
			reloader_take(s);
		} else if ((void *)c == &s->cm) {
			uint64_t v;

			if (read(s->cm.wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				pg_debug("pos-server", "wake: %s", strerror(errno));
		} else if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
			conn_read(s, c, now);
		}
	}
}

/*
 * Group commit on SQLite, inline: requests decided in this pass join the
 * open batch; the batch is written in one transaction as soon as no more
 * input is ready, or it is commit_us old, or it holds 512 requests; only
 * then are its responses released. Gathering what is already queued costs
 * no idle time, and bigger batches write fewer WAL pages per transaction.
 * Returns 1 while the batch stays open (the pass ends without flushing).
 */
static int
sync_commit(struct server *s, int n)
{
	struct pg_pos_engine *e = s->e;
	int rc;

	if (pg_pos_engine_pending(e) && !s->batch_open) {
		s->batch_open = 1;
		s->batch_since = pg_mono_ns() / 1000;
	}
	if (s->batch_open && n > 0 && pg_pos_engine_pending(e) < 512 &&
	    pg_mono_ns() / 1000 - s->batch_since < (uint64_t)s->cfg->commit_us)
		return 1;
	s->batch_open = 0;
	if (!pg_pos_engine_pending(e))
		return 0;
	rc = pg_pos_engine_commit(e);
	if (rc < 0) {
		pg_err("pos-server", "commit failed: %s; dropping %zu connections", pg_last_error(),
		       s->nconns);
		for (size_t i = 0; i < s->nconns; i++)
			if (s->conns[i]->out.len)
				conn_close(s, s->conns[i], "store unavailable");
	}
	return 0;
}

/* Sends what each connection has ready; every 100 ms closes slow and idle ones. */
static void
flush_and_sweep(struct server *s, uint64_t now)
{
	const struct pg_pos_server_cfg *cfg = s->cfg;

	for (size_t i = 0; i < s->nconns; i++) {
		struct conn *c = s->conns[i];

		if (!c->dead && c->out.len)
			conn_flush(s, c);
		if (!c->dead && c->out.len >= OUT_MAX / 2)
			conn_close(s, c, "client does not read its responses");
	}
	if (now - s->last_sweep >= 100) {
		s->last_sweep = now;
		for (size_t i = 0; i < s->nconns; i++) {
			struct conn *c = s->conns[i];

			if (c->dead)
				continue;
			if (c->frame_start_ms && now - c->frame_start_ms > (uint64_t)cfg->frame_ms)
				conn_close(s, c, "frame not completed in time (slow sender)");
			else if (now - c->last_ms > (uint64_t)cfg->idle_ms)
				conn_close(s, c, "idle");
		}
	}
	for (size_t i = s->nconns; i-- > 0;)
		if (s->conns[i]->dead && !s->conns[i]->held)
			conn_free(s, i);
}

/* The event loop, until stopped by a signal or *cfg->stop. */
static int
serve_loop(struct server *s)
{
	struct pg_pos_server_cfg *cfg = s->cfg;
	struct epoll_event evs[256];

	while (!(cfg->stop ? *cfg->stop : sig_stop)) {
		/* while a batch is open, only take what is already there: never sleep */
		int n = epoll_wait(s->ep, evs, 256,
				   s->async	   ? async_wait_ms(s, pg_mono_ms(), 50)
				   : s->batch_open ? 0
						   : 50);
		uint64_t now = pg_mono_ms();

		if (n < 0 && errno != EINTR)
			return pg_error(PG_ESYS, "pos-server", "epoll_wait: %s", strerror(errno));
		dispatch(s, evs, n, now);
		if (s->async)
			async_step(s, now);
		else if (sync_commit(s, n))
			continue;
		flush_and_sweep(s, now);
	}
	return 0;
}

/* After the loop: what is inflight is settled, what is queued is written. */
static int
serve_drain(struct server *s)
{
	struct pg_pos_server_cfg *cfg = s->cfg;
	int rc;

	if (s->async) {
		committer_stop(s);
		s->async = 0;
		pg_info("pos-server", "%llu answers were 96 (%s not durable in %d ms)",
			(unsigned long long)s->answered96, cfg->nats ? "stream" : "store",
			cfg->commit_timeout_ms);
	}
	/* JetStream intake: what was never published was never answered either */
	if (cfg->nats)
		pg_pos_engine_drop(s->e);
	rc = pg_pos_engine_commit(s->e);
	pg_info("pos-server", "stopped: %llu answered, %llu rejected",
		(unsigned long long)s->served, (unsigned long long)s->rejected);
	return rc;
}

static void
serve_free(struct server *s)
{
	reloader_stop(&s->rl);
	if (s->cm.b)
		committer_stop(s);
	pgi_pos_js_close(s->cm.js);
	pgi_pos_sink_stop(s->sink);
	if (s->cp.running) {
		s->cp.stop = 1;
		pthread_join(s->cp.th, NULL);
		pg_store_exec(pg_pos_engine_store(s->e), "PRAGMA wal_autocheckpoint=1000");
	}
	pg_db_free(s->cp.db);
	while (s->nconns)
		conn_free(s, s->nconns - 1);
	free(s->conns);
	if (s->ep >= 0)
		close(s->ep);
	if (s->lfd >= 0)
		close(s->lfd);
	pg_buf_release(&s->body);
	for (int i = 0; i < 2; i++) {
		pg_buf_release(&s->bt[i].bytes);
		free(s->bt[i].h);
	}
	free(s);
}

/*
 * Keeps freed heap memory in the process. SQLite frees a statement
 * journal of a few hundred kB after each multi-row insert of a group
 * commit; glibc gave it back to the kernel (brk) every time and the next
 * batch faulted the pages in again, 10-15 % of the server's CPU per
 * transaction (perf, issue 18). The heap's high-water mark stays instead,
 * up to 64 MB of free memory at its top; blocks up to 4 MB come from the
 * heap, not mmap (a fixed trim threshold would otherwise pin mmap's at
 * 128 kB). It is process-wide: the daemon's POS worker sets it too.
 */
static void
heap_keep(void)
{
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

int
pg_pos_serve(struct pg_pos_server_cfg *cfg, struct pg_pos_engine *e)
{
	struct server *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return PG_ENOMEM;
	s->cfg = cfg;
	s->e = e;
	s->lfd = -1;
	s->ep = -1;
	pg_buf_init(&s->body, PG_ISO_ARENA);
	for (int i = 0; i < 2; i++)
		pg_buf_init(&s->bt[i].bytes, (size_t)-1);
	s->open = &s->bt[0];
	s->inflight = &s->bt[1];
	s->rl.wake_fd = -1;
	heap_keep();
	cfg_defaults(cfg);
	if (!cfg->stop) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
	}
	signal(SIGPIPE, SIG_IGN);
	rc = serve_start(s);
	if (rc >= 0) {
		pg_info("pos-server", "listening on %s:%d", cfg->host ? cfg->host : "127.0.0.1",
			cfg->bound_port);
		cfg->ready = 1;
		int lrc = serve_loop(s);

		rc = serve_drain(s);
		if (lrc < 0)
			rc = lrc;
	}
	serve_free(s);
	return rc;
}
