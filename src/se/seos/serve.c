/*
 * `payguard seos serve`: the SE OS daemon (issue 7; seed "Secure element
 * operating system and method"). It detects SEs as they attach and detach
 * (endpoint files in a watched directory via inotify, VSEs announced the
 * same way by the hypervisor, PC/SC readers via SCardGetStatusChange), runs
 * the connect flow on each, and serves clients on a UNIX socket with the
 * Open Mobile API's calls, enforcing the SE's ARA-M rules per client.
 * One thread per client; one lock per SE serialises its link.
 */

#include "payguard/buf.h"
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/hex.h"
#include "payguard/log.h"
#include "payguard/seos.h"
#include "payguard/stream.h"
#include "seos/proto.h"

#include <PCSC/winscard.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SUBSYS	    "seos"
#define MAX_SE	    64
#define MAX_SESS    16
#define MAX_CH	    20
#define MAX_CLIENTS 256

struct se {
	int used;
	char name[64], link[16], addr[256];
	struct pg_link *l;	   /* a view of the converter interface `name` */
	struct pg_conv_port *port; /* the SE served to the NFC switch (opts.ports) */
	pthread_mutex_t io;	   /* held across one client's exchange */
	int state;
	char reason[160];
	uint32_t gen; /* bumped on every detach: stale sessions see it */
	struct pg_seos_config cfg;
	struct pg_ara_rules rules;
	int have_rules;
	uint32_t chans; /* bit n: logical channel n in use (0: the basic channel) */
};

struct srv {
	const struct pg_seos_serve_opts *o;
	struct pg_seos *os;
	struct pg_conv *conv; /* every SE is one of its interfaces: the only way to an SE */
	pthread_mutex_t mu;   /* slots' metadata */
	struct se se[MAX_SE];
	int nclients;
	int cfd[MAX_CLIENTS]; /* connected clients' sockets (-1 free), shut down on stop */
	pthread_cond_t idle;
	volatile int *stop;
};

struct client {
	struct srv *s;
	int fd;
	struct pg_ara_client id;
	char idtext[PATH_MAX + 128];
	struct {
		int used, slot;
		uint32_t gen;
	} sess[MAX_SESS];
	struct {
		int used, sess, slot, chn;
		uint32_t gen;
		struct pg_ara_access acc;
	} ch[MAX_CH];
	uint8_t buf[PG_SEOS_FRAME_MAX];
	uint8_t r[PG_APDU_MAX_R];
	uint8_t c[PG_APDU_MAX_C];
};

/* ---------------- attach / detach ---------------- */

static struct se *
find_se(struct srv *s, const char *name)
{
	for (int i = 0; i < MAX_SE; i++)
		if (s->se[i].used && strcmp(s->se[i].name, name) == 0)
			return &s->se[i];
	return NULL;
}

/* Called with s->mu held. */
static void
drop_link(struct srv *s, struct se *e, int state, const char *reason)
{
	pg_conv_port_stop(e->port);
	e->port = NULL;
	pthread_mutex_lock(&e->io);
	pg_link_close(e->l);
	e->l = NULL;
	pthread_mutex_unlock(&e->io);
	(void)pg_conv_detach(s->conv, e->name); /* its link closes */
	pg_clear_error();
	e->gen++;
	e->state = state;
	e->chans = 0;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	pg_seos_config_release(&e->cfg);
	pg_ara_rules_release(&e->rules);
	e->have_rules = 0;
}

static void
se_detach(struct srv *s, const char *name, const char *reason)
{
	struct se *e;

	pthread_mutex_lock(&s->mu);
	e = find_se(s, name);
	if (e && e->state != PG_SEOS_DETACHED) {
		drop_link(s, e, PG_SEOS_DETACHED, reason);
		(void)pg_seos_detach(s->os, name, reason);
	}
	pthread_mutex_unlock(&s->mu);
}

/*
 * The SE at (link, addr) through the converter: opened by its address, bound
 * as interface `name` (powered on), and a view of that interface for the
 * connect flow and the sessions. 0, or the error with *why set.
 */
static int
conv_open(struct srv *s, const char *name, const char *link, const char *addr,
	  struct pg_link **view)
{
	struct pg_link *l = NULL;
	int rc;

	*view = NULL;
	(void)pg_conv_detach(s->conv, name); /* a failed interface of that name */
	pg_clear_error();
	rc = pg_conv_link_open(&l, link, addr, NULL);
	if (rc == 0)
		rc = pg_conv_attach(s->conv, name, l); /* takes l */
	if (rc == 0)
		rc = pg_conv_iface_link(s->conv, name, view);
	if (rc < 0)
		pg_warn(SUBSYS, "SE '%s' (%s at %s) cannot be reached: %s", name, link, addr,
			pg_last_error());
	return rc;
}

/* A free or same-named slot (s->mu held); NULL when all are taken. */
static struct se *
slot_for(struct srv *s, const char *name)
{
	struct se *e = find_se(s, name);

	for (int i = 0; i < MAX_SE && !e; i++)
		if (!s->se[i].used)
			e = &s->se[i];
	if (e && !e->used) {
		memset(e, 0, sizeof(*e));
		pthread_mutex_init(&e->io, NULL);
		e->used = 1;
	}
	return e;
}

/* The port of an authenticated SE (s->mu held): unix:<ports>/<name>.sock, T=1. */
static void
port_open(struct srv *s, struct se *e)
{
	char addr[PATH_MAX + 8];

	if (!s->o->ports)
		return;
	snprintf(addr, sizeof(addr), "unix:%s/%s.sock", s->o->ports, e->name);
	if (pg_conv_port_start(s->conv, e->name, "t1", addr, &e->port) < 0) {
		pg_warn(SUBSYS, "SE '%s': no port for the NFC switch: %s", e->name,
			pg_last_error());
		pg_clear_error();
	}
}

int
pg_seos_serve_attach(struct pg_seos_server *srv, const char *name, const char *link,
		     const char *addr)
{
	struct srv *s = (struct srv *)srv;
	struct pg_link *l = NULL;
	struct pg_seos_conn conn;
	char why[200];
	struct se *e;
	int rc;

	memset(&conn, 0, sizeof(conn));
	se_detach(s, name, "re-attached");
	rc = conv_open(s, name, link, addr, &l);
	if (rc == 0)
		rc = pg_seos_connect(s->os, name, addr, l, &conn);
	snprintf(why, sizeof(why), "%s", pg_last_error()[0] ? pg_last_error() : pg_strerror(rc));
	if (rc < 0 && !conn.reason[0])
		(void)pg_seos_mark(s->os, name, link, addr, PG_SEOS_REJECTED, why);
	pthread_mutex_lock(&s->mu);
	e = slot_for(s, name);
	if (!e) {
		pthread_mutex_unlock(&s->mu);
		pg_link_close(l);
		(void)pg_conv_detach(s->conv, name);
		if (rc == 0)
			pg_seos_config_release(&conn.cfg);
		return pg_error(PG_ERANGE, SUBSYS, "more than %d SEs", MAX_SE);
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->link, sizeof(e->link), "%s", link);
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	e->gen++;
	e->chans = 0;
	if (rc == 0) {
		e->l = l;
		e->cfg = conn.cfg;
		e->state = PG_SEOS_AUTHENTICATED;
		e->reason[0] = '\0';
		e->have_rules =
		    e->cfg.ara && pg_ara_parse(&e->rules, e->cfg.ara, e->cfg.ara_len) == 0;
		/* The connect flow left the ARA-M selected; channel 0 is free. */
		port_open(s, e);
	} else {
		pg_link_close(l);
		(void)pg_conv_detach(s->conv, name);
		pg_clear_error();
		e->l = NULL;
		e->state = PG_SEOS_REJECTED;
		snprintf(e->reason, sizeof(e->reason), "%s%s",
			 conn.reason[0] ? "" : "unreachable: ", conn.reason[0] ? conn.reason : why);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---------------- the watched directory ---------------- */

/* Reads "<dir>/<name>.se": link=..., addr=..., kind=sim|vse. */
static void
endpoint_added(struct srv *s, const char *file)
{
	char path[PATH_MAX], name[64], line[512], link[16] = "", addr[256] = "", kind[16] = "sim";
	size_t fl = strlen(file);
	FILE *f;

	if (fl < 4 || fl - 3 >= sizeof(name) || strcmp(file + fl - 3, ".se") != 0 || file[0] == '.')
		return;
	memcpy(name, file, fl - 3);
	name[fl - 3] = '\0';
	snprintf(path, sizeof(path), "%s/%s", s->o->watch, file);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "link=", 5) == 0)
			snprintf(link, sizeof(link), "%s", line + 5);
		else if (strncmp(line, "addr=", 5) == 0)
			snprintf(addr, sizeof(addr), "%s", line + 5);
		else if (strncmp(line, "kind=", 5) == 0)
			snprintf(kind, sizeof(kind), "%s", line + 5);
	}
	fclose(f);
	if (!link[0] || !addr[0]) {
		pg_warn(SUBSYS, "endpoint %s: needs link= and addr= lines", path);
		return;
	}
	pg_info(SUBSYS, "%s '%s' announced: link %s at %s", strcmp(kind, "vse") == 0 ? "VSE" : "SE",
		name, link, addr);
	(void)pg_seos_serve_attach((struct pg_seos_server *)s, name, link, addr);
}

static void
endpoint_removed(struct srv *s, const char *file)
{
	char name[64];
	size_t fl = strlen(file);

	if (fl < 4 || fl - 3 >= sizeof(name) || strcmp(file + fl - 3, ".se") != 0)
		return;
	memcpy(name, file, fl - 3);
	name[fl - 3] = '\0';
	se_detach(s, name, "endpoint removed");
}

static void
scan_dir(struct srv *s)
{
	DIR *d = opendir(s->o->watch);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		endpoint_added(s, de->d_name);
	closedir(d);
}

static void
inotify_events(struct srv *s, int ifd)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(ifd, buf, sizeof(buf));

	for (char *p = buf; n > 0 && p < buf + n;) {
		struct inotify_event *ev = (struct inotify_event *)p;

		if (ev->len) {
			if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
				endpoint_added(s, ev->name);
			else if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
				endpoint_removed(s, ev->name);
		}
		p += sizeof(*ev) + ev->len;
	}
}

/* ---------------- PC/SC reader events ---------------- */

static void *
pcsc_thread(void *arg)
{
	struct srv *s = arg;
	SCARDCONTEXT ctx;
	SCARD_READERSTATE rs[17];
	char names[16][128] = {{0}};
	int present[16] = {0};
	DWORD nr = 0;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS) {
		pg_warn(SUBSYS, "PC/SC: pcscd not reachable; reader events off");
		return NULL;
	}
	while (!*s->stop) {
		char *list = NULL;
		DWORD len = SCARD_AUTOALLOCATE, i = 0;

		/* Re-list readers each round (readers come and go too); keep each
		 * reader's last known presence by name, not by position. */
		char prev[16][128];
		int prev_present[16];
		DWORD np = nr;

		memcpy(prev, names, sizeof(prev));
		memcpy(prev_present, present, sizeof(prev_present));
		nr = 0;
		if (SCardListReaders(ctx, NULL, (LPSTR)&list, &len) == SCARD_S_SUCCESS) {
			for (const char *p = list; *p && nr < 16; p += strlen(p) + 1) {
				snprintf(names[nr], sizeof(names[0]), "%s", p);
				present[nr] = 0;
				for (DWORD k = 0; k < np; k++)
					if (strcmp(prev[k], names[nr]) == 0)
						present[nr] = prev_present[k];
				nr++;
			}
			SCardFreeMemory(ctx, list);
		}
		/* A reader that disappeared with a card in it: its SE is gone. */
		for (DWORD k = 0; k < np; k++) {
			int still = 0;
			char se_name[140];

			for (DWORD j = 0; j < nr; j++)
				still |= strcmp(prev[k], names[j]) == 0;
			if (!still && prev_present[k]) {
				snprintf(se_name, sizeof(se_name), "pcsc:%s", prev[k]);
				se_detach(s, se_name, "reader removed");
			}
		}
		memset(rs, 0, sizeof(rs));
		for (i = 0; i < nr; i++) {
			rs[i].szReader = names[i];
			rs[i].dwCurrentState = present[i] ? SCARD_STATE_PRESENT : SCARD_STATE_EMPTY;
		}
		rs[nr].szReader = "\\\\?PnP?\\Notification";
		rs[nr].dwCurrentState = nr << 16;
		{
			LONG rv = SCardGetStatusChange(ctx, 500, rs, nr + 1);

			if (rv == SCARD_E_TIMEOUT)
				continue;
			if (rv != SCARD_S_SUCCESS) {
				usleep(200000); /* pcscd restarting, reader list changing */
				continue;
			}
		}
		for (i = 0; i < nr; i++) {
			int now = (rs[i].dwEventState & SCARD_STATE_PRESENT) != 0;
			char se_name[140];

			if (now == present[i])
				continue;
			present[i] = now;
			snprintf(se_name, sizeof(se_name), "pcsc:%s", names[i]);
			if (now)
				(void)pg_seos_serve_attach((struct pg_seos_server *)s, se_name,
							   "pcsc", names[i]);
			else
				se_detach(s, se_name, "card removed from the reader");
		}
	}
	SCardReleaseContext(ctx);
	return NULL;
}

/* ---------------- clients ---------------- */

static int
reply_err(struct client *c, const struct pg_seos_req *q, int rc)
{
	const char *m = pg_last_error();

	if (!m[0])
		m = pg_strerror(rc);
	return pgi_seos_frame_write(c->fd, q->op, q->id, 1, rc, m, strlen(m), NULL, 0);
}

static int
reply(struct client *c, const struct pg_seos_req *q, const void *p1, size_t n1, const void *p2,
      size_t n2)
{
	return pgi_seos_frame_write(c->fd, q->op, q->id, 1, 0, p1, n1, p2, n2);
}

static uint8_t
set_chan(uint8_t cla, int chn)
{
	uint8_t prop = cla & 0x80, chain, sm;

	if (cla & 0x40) {
		chain = cla & 0x10;
		sm = (cla & 0x20) ? 0x08 : 0;
	} else {
		chain = cla & 0x10;
		sm = cla & 0x0C;
	}
	if (chn < 4)
		return (uint8_t)(prop | chain | sm | chn);
	return (uint8_t)(prop | 0x40 | chain | (sm ? 0x20 : 0) | (chn - 4));
}

/* The SE behind a session, locked for I/O; NULL with an error when gone. */
static struct se *
se_io(struct client *c, int slot, uint32_t gen)
{
	struct srv *s = c->s;
	struct se *e = &s->se[slot];

	pthread_mutex_lock(&s->mu);
	if (e->gen != gen || !e->l) {
		pthread_mutex_unlock(&s->mu);
		pg_error(PG_ENOCARD, SUBSYS, "SE '%s' was removed (%s): its sessions are closed",
			 e->name, e->reason[0] ? e->reason : "detached");
		return NULL;
	}
	pthread_mutex_lock(&e->io);
	pthread_mutex_unlock(&s->mu);
	return e;
}

/* One APDU to the SE; a link failure detaches it (its sessions end, others carry on). */
static int
se_xmit(struct client *c, int slot, uint32_t gen, const uint8_t *capdu, size_t n, size_t *rl)
{
	struct se *e = se_io(c, slot, gen);
	int rc;

	if (!e)
		return PG_ENOCARD;
	*rl = sizeof(c->r);
	rc = pg_link_transmit(e->l, capdu, n, c->r, rl);
	pthread_mutex_unlock(&e->io);
	if (rc < 0) {
		char why[200], name[64];

		snprintf(why, sizeof(why), "link failed: %s", pg_last_error());
		snprintf(name, sizeof(name), "%s", e->name);
		pthread_mutex_lock(&c->s->mu);
		if (e->gen == gen)
			drop_link(c->s, e, PG_SEOS_DETACHED, why);
		pthread_mutex_unlock(&c->s->mu);
		(void)pg_seos_detach(c->s->os, name, why);
		return pg_error(PG_ENOCARD, SUBSYS, "SE '%s' was removed (%s)", name, why);
	}
	if (*rl < 2)
		return pg_error(PG_EPROTO, SUBSYS, "R-APDU without status word");
	return 0;
}

static int
op_readers(struct client *c, const struct pg_seos_req *q)
{
	uint8_t out[2 + MAX_SE * 66];
	size_t n = 2, cnt = 0;

	pthread_mutex_lock(&c->s->mu);
	for (int i = 0; i < MAX_SE; i++) {
		struct se *e = &c->s->se[i];
		size_t l = strlen(e->name);

		if (!e->used)
			continue;
		out[n++] = (uint8_t)e->state;
		out[n++] = (uint8_t)l;
		memcpy(out + n, e->name, l);
		n += l;
		cnt++;
	}
	pthread_mutex_unlock(&c->s->mu);
	pg_put_be16(out, (uint16_t)cnt);
	return reply(c, q, out, n, NULL, 0);
}

static int
op_open_session(struct client *c, const struct pg_seos_req *q)
{
	struct se *e;
	int k = -1, rc = 0;
	uint8_t h[4];

	for (int i = 0; i < MAX_SESS && k < 0; i++)
		if (!c->sess[i].used)
			k = i;
	if (k < 0)
		return pg_error(PG_ERANGE, SUBSYS, "more than %d sessions", MAX_SESS);
	pthread_mutex_lock(&c->s->mu);
	e = find_se(c->s, q->name);
	if (!e)
		rc = pg_error(PG_ENOENT, SUBSYS, "no SE called '%s'", q->name);
	else if (e->state == PG_SEOS_REJECTED)
		rc = pg_error(PG_EPERM, SUBSYS, "SE '%s' was rejected: %s", q->name, e->reason);
	else if (e->state != PG_SEOS_AUTHENTICATED || !e->l)
		rc = pg_error(PG_ENOCARD, SUBSYS, "SE '%s' is not attached (%s)", q->name,
			      e->reason);
	if (rc == 0) {
		c->sess[k].used = 1;
		c->sess[k].slot = (int)(e - c->s->se);
		c->sess[k].gen = e->gen;
	}
	pthread_mutex_unlock(&c->s->mu);
	if (rc < 0)
		return rc;
	pg_put_be32(h, (uint32_t)k + 1);
	return reply(c, q, h, 4, NULL, 0);
}

/*
 * Access control for a channel on SE e (generation gen), before anything
 * reaches the SE; reserves the basic channel when asked for it.
 */
static int
channel_access(struct client *c, const struct pg_seos_req *q, struct se *e, uint32_t gen,
	       struct pg_ara_access *acc)
{
	char h1[41], why[512];
	int rc;

	pthread_mutex_lock(&c->s->mu);
	if (e->gen != gen) {
		rc = pg_error(PG_ENOCARD, SUBSYS, "SE '%s' was removed (%s)", e->name, e->reason);
	} else if (!e->have_rules) {
		rc = pg_error(PG_EPERM, SUBSYS, "SE '%s' has no ARA-M rules: access denied",
			      e->name);
	} else if ((rc = pg_ara_decide(&e->rules, q->aid, q->aid_len, &c->id, acc)) < 0) {
		snprintf(why, sizeof(why), "%s", pg_last_error());
		pg_hex_encode(h1, c->id.sha1, 20);
		rc = pg_error(PG_EPERM, SUBSYS,
			      "access denied to %s on SE '%s' for client %s (SHA-1 %s): %s",
			      q->aid_len ? "the application" : "the default application", e->name,
			      c->idtext, h1, why);
	}
	if (rc == 0 && !q->logical) {
		if (e->chans & 1)
			rc = pg_error(PG_EBUSY, SUBSYS, "the basic channel of '%s' is in use",
				      e->name);
		else
			e->chans |= 1;
	}
	pthread_mutex_unlock(&c->s->mu);
	return rc;
}

/* MANAGE CHANNEL open on the SE: the new logical channel's number. */
static int
channel_manage_open(struct client *c, int slot, uint32_t gen)
{
	static const uint8_t open[] = {0x00, 0x70, 0x00, 0x00, 0x01};
	size_t rl;
	int rc = se_xmit(c, slot, gen, open, sizeof(open), &rl);

	if (rc < 0)
		return rc;
	if (pg_rapdu_sw(c->r, rl) != PG_SW_OK || rl != 3 || c->r[0] == 0 || c->r[0] >= 20)
		return pg_error(PG_EBUSY, SUBSYS, "MANAGE CHANNEL open refused: SW %04X",
				pg_rapdu_sw(c->r, rl));
	return c->r[0];
}

/* SELECT of the client's application on channel chn; the answer in c->r / *rl. */
static int
channel_select(struct client *c, const struct pg_seos_req *q, int slot, uint32_t gen, int chn,
	       size_t *rl)
{
	size_t n = 0;
	uint16_t sw;
	int rc;

	c->c[n++] = set_chan(0x00, chn);
	c->c[n++] = 0xA4;
	c->c[n++] = 0x04;
	c->c[n++] = q->p2;
	if (q->aid_len) {
		c->c[n++] = (uint8_t)q->aid_len;
		memcpy(c->c + n, q->aid, q->aid_len);
		n += q->aid_len;
	}
	c->c[n++] = 0x00;
	rc = se_xmit(c, slot, gen, c->c, n, rl);
	if (rc < 0)
		return rc;
	sw = pg_rapdu_sw(c->r, *rl);
	if (sw != PG_SW_OK && (sw >> 8) != 0x62 && (sw >> 8) != 0x63)
		return pg_error(PG_ENOENT, SUBSYS, "SELECT of the application: SW %04X", sw);
	return 0;
}

/* A failed open: the logical channel closed again, or the basic channel freed. */
static void
channel_undo(struct client *c, const struct pg_seos_req *q, struct se *e, int slot, uint32_t gen,
	     int chn, int rc)
{
	if (q->logical && rc != PG_ENOCARD) {
		uint8_t close[4] = {0x00, 0x70, 0x80, (uint8_t)chn};
		size_t rl2;
		char keep[512];

		snprintf(keep, sizeof(keep), "%s", pg_last_error());
		(void)se_xmit(c, slot, gen, close, 4, &rl2);
		pg_error(rc, SUBSYS, "%s", keep);
	}
	if (!q->logical) {
		pthread_mutex_lock(&c->s->mu);
		if (e->gen == gen)
			e->chans &= ~1u;
		pthread_mutex_unlock(&c->s->mu);
	}
}

static int
op_open_channel(struct client *c, const struct pg_seos_req *q)
{
	struct pg_ara_access acc;
	struct se *e;
	int k = -1, si = (int)q->handle - 1, slot, chn = 0, rc;
	uint32_t gen;
	size_t rl = 2;
	uint8_t h[4];

	if (si < 0 || si >= MAX_SESS || !c->sess[si].used)
		return pg_error(PG_ENOENT, SUBSYS, "no session %u", q->handle);
	for (int i = 0; i < MAX_CH && k < 0; i++)
		if (!c->ch[i].used)
			k = i;
	if (k < 0)
		return pg_error(PG_ERANGE, SUBSYS, "more than %d channels", MAX_CH);
	slot = c->sess[si].slot;
	gen = c->sess[si].gen;
	e = &c->s->se[slot];
	/* Access control first: nothing reaches the SE for a refused client. */
	rc = channel_access(c, q, e, gen, &acc);
	if (rc < 0)
		return rc;
	if (q->logical && (chn = channel_manage_open(c, slot, gen)) < 0)
		return chn;
	if (q->aid_len || q->logical) {
		rc = channel_select(c, q, slot, gen, chn, &rl);
		if (rc < 0) {
			channel_undo(c, q, e, slot, gen, chn, rc);
			return rc;
		}
	} else {
		/* Basic channel, default application: nothing to select. */
		c->r[0] = 0x90;
		c->r[1] = 0x00;
	}
	c->ch[k].used = 1;
	c->ch[k].sess = si;
	c->ch[k].slot = slot;
	c->ch[k].gen = gen;
	c->ch[k].chn = chn;
	c->ch[k].acc = acc;
	pg_put_be32(h, (uint32_t)k + 1);
	return reply(c, q, h, 4, c->r, rl);
}

static int
op_transmit(struct client *c, const struct pg_seos_req *q)
{
	int k = (int)q->handle - 1, rc;
	size_t rl;

	if (k < 0 || k >= MAX_CH || !c->ch[k].used)
		return pg_error(PG_ENOENT, SUBSYS, "no channel %u", q->handle);
	if (q->apdu_len > sizeof(c->c))
		return pg_error(PG_ETOOBIG, SUBSYS, "C-APDU too long");
	/* Open Mobile API: channel management belongs to the SE OS, not to clients. */
	if ((q->apdu[0] & 0x80) == 0 &&
	    (q->apdu[1] == 0x70 || (q->apdu[1] == 0xA4 && q->apdu[2] == 0x04)))
		return pg_error(
		    PG_EPERM, SUBSYS,
		    "MANAGE CHANNEL and SELECT by name are not allowed through transmit");
	rc = pg_ara_check_apdu(&c->ch[k].acc, q->apdu, q->apdu_len);
	if (rc < 0)
		return rc;
	memcpy(c->c, q->apdu, q->apdu_len);
	c->c[0] = set_chan(c->c[0], c->ch[k].chn);
	rc = se_xmit(c, c->ch[k].slot, c->ch[k].gen, c->c, q->apdu_len, &rl);
	if (rc < 0)
		return rc;
	return reply(c, q, c->r, rl, NULL, 0);
}

static void
close_channel(struct client *c, int k)
{
	struct srv *s = c->s;
	struct se *e = &s->se[c->ch[k].slot];

	if (c->ch[k].chn > 0) {
		uint8_t close[4] = {0x00, 0x70, 0x80, (uint8_t)c->ch[k].chn};
		size_t rl;

		(void)se_xmit(c, c->ch[k].slot, c->ch[k].gen, close, 4, &rl);
	} else {
		pthread_mutex_lock(&s->mu);
		if (e->gen == c->ch[k].gen)
			e->chans &= ~1u;
		pthread_mutex_unlock(&s->mu);
	}
	c->ch[k].used = 0;
}

static int
op_close(struct client *c, const struct pg_seos_req *q)
{
	int k = (int)q->handle - 1;

	if (q->op == PG_SEOS_OP_CLOSE_CHANNEL) {
		if (k < 0 || k >= MAX_CH || !c->ch[k].used)
			return pg_error(PG_ENOENT, SUBSYS, "no channel %u", q->handle);
		close_channel(c, k);
	} else {
		if (k < 0 || k >= MAX_SESS || !c->sess[k].used)
			return pg_error(PG_ENOENT, SUBSYS, "no session %u", q->handle);
		for (int i = 0; i < MAX_CH; i++)
			if (c->ch[i].used && c->ch[i].sess == k)
				close_channel(c, i);
		c->sess[k].used = 0;
	}
	return reply(c, q, NULL, 0, NULL, 0);
}

/*
 * The client's identity: the kernel's word for its uid and executable
 * (SO_PEERCRED, /proc/PID/exe) plus the application name it declares. The
 * name only separates applications inside one (uid, executable); it cannot
 * borrow another program's or user's identity.
 */
static int
identify(struct client *c, const char *app)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	char link[64], exe[PATH_MAX];
	ssize_t n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0)
		return pg_error(PG_ESYS, SUBSYS, "SO_PEERCRED: %s", strerror(errno));
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)cr.pid);
	n = readlink(link, exe, sizeof(exe) - 1);
	if (n < 0)
		snprintf(exe, sizeof(exe), "?");
	else
		exe[n] = '\0';
	snprintf(c->idtext, sizeof(c->idtext), "uid=%u exe=%s app=%s", (unsigned)cr.uid, exe, app);
	pg_ara_client_from(&c->id, c->idtext, strlen(c->idtext));
	return 0;
}

static void *
client_thread(void *arg)
{
	struct client *c = arg;
	struct srv *s = c->s;
	int hello = 0;

	for (;;) {
		struct pg_seos_req q;
		int n = pgi_seos_frame_read(c->fd, c->buf, sizeof(c->buf)), rc;

		if (n < 0)
			break;
		pg_clear_error();
		rc = pgi_seos_req_decode(&q, c->buf, (size_t)n);
		if (rc < 0) {
			/* The frame is unusable: answer once and hang up. */
			q.op = n > 0 ? c->buf[0] : 0;
			q.id = n >= 5 ? pg_be32(c->buf + 1) : 0;
			(void)reply_err(c, &q, rc);
			break;
		}
		if (!hello && q.op != PG_SEOS_OP_HELLO) {
			(void)reply_err(c, &q, pg_error(PG_ESTATE, SUBSYS, "say hello first"));
			break;
		}
		switch (q.op) {
		case PG_SEOS_OP_HELLO:
			rc = identify(c, q.name);
			if (rc == 0) {
				hello = 1;
				rc = reply(c, &q, NULL, 0, NULL, 0);
			}
			break;
		case PG_SEOS_OP_WHOAMI:
			memcpy(c->r, c->id.sha1, 20);
			memcpy(c->r + 20, c->id.sha256, 32);
			rc = reply(c, &q, c->r, 52, c->idtext, strlen(c->idtext));
			break;
		case PG_SEOS_OP_READERS:
			rc = op_readers(c, &q);
			break;
		case PG_SEOS_OP_OPEN_SESSION:
			rc = op_open_session(c, &q);
			break;
		case PG_SEOS_OP_OPEN_CHANNEL:
			rc = op_open_channel(c, &q);
			break;
		case PG_SEOS_OP_TRANSMIT:
			rc = op_transmit(c, &q);
			break;
		default:
			rc = op_close(c, &q);
			break;
		}
		if (rc < 0 && reply_err(c, &q, rc) < 0)
			break;
	}
	for (int i = 0; i < MAX_CH; i++)
		if (c->ch[i].used)
			close_channel(c, i);
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (s->cfd[i] == c->fd)
			s->cfd[i] = -1;
	close(c->fd);
	free(c);
	s->nclients--;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---------------- the daemon ---------------- */

static int
listen_unix(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return pg_error(PG_EINVAL, SUBSYS, "socket path too long: %s", path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pg_error(PG_ESYS, SUBSYS, "socket: %s", strerror(errno));
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		int e = errno;

		close(fd);
		return pg_error(PG_ESYS, SUBSYS, "cannot listen on %s: %s", path, strerror(e));
	}
	/* Any local user may connect: access is decided per client by the ARA-M rules. */
	(void)chmod(path, 0666);
	return fd;
}

int
pg_seos_serve_new(struct pg_seos_server **out, const struct pg_seos_serve_opts *o)
{
	struct srv *s;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return PG_ENOMEM;
	s->o = o;
	s->stop = o->stop;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->idle, NULL);
	for (int i = 0; i < MAX_CLIENTS; i++)
		s->cfd[i] = -1;
	rc = pg_conv_new(&s->conv);
	if (rc == 0)
		rc = pg_seos_open(&s->os, o->db, o->devkey, o->ks);
	if (rc < 0) {
		pg_conv_free(s->conv);
		free(s);
		return rc;
	}
	*out = (struct pg_seos_server *)s;
	return 0;
}

/* Sets a client's socket slot (-1: frees cfd's); s->mu held. */
static void
client_fd_slot(struct srv *s, int from, int to)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (s->cfd[i] == from) {
			s->cfd[i] = to;
			return;
		}
}

/* One client connection: its own thread, at most MAX_CLIENTS. */
static void
accept_client(struct srv *s, int lfd)
{
	int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	struct client *c;
	pthread_t t;

	if (cfd < 0)
		return;
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&s->mu);
	if (!c || s->nclients >= MAX_CLIENTS) {
		pthread_mutex_unlock(&s->mu);
		free(c);
		close(cfd);
		return;
	}
	s->nclients++;
	client_fd_slot(s, -1, cfd);
	pthread_mutex_unlock(&s->mu);
	c->s = s;
	c->fd = cfd;
	if (pthread_create(&t, NULL, client_thread, c) != 0) {
		free(c);
		pthread_mutex_lock(&s->mu);
		client_fd_slot(s, cfd, -1);
		close(cfd);
		s->nclients--;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	pthread_detach(t);
}

/* Stop: detach every SE (ports end), wake every client (their reads fail), wait for them. */
static void
stop_all(struct srv *s)
{
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < MAX_SE; i++)
		if (s->se[i].used && s->se[i].l)
			drop_link(s, &s->se[i], PG_SEOS_DETACHED, "SE OS stopped");
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (s->cfd[i] >= 0)
			shutdown(s->cfd[i], SHUT_RDWR);
	while (s->nclients > 0)
		pthread_cond_wait(&s->idle, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

int
pg_seos_serve_run(struct pg_seos_server *srv)
{
	struct srv *s = (struct srv *)srv;
	const struct pg_seos_serve_opts *o = s->o;
	pthread_t pt;
	int lfd, ifd = -1, have_pcsc = 0, rc = 0;

	lfd = listen_unix(o->sock);
	if (lfd < 0)
		return lfd;
	if (o->watch) {
		ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ifd < 0 || inotify_add_watch(ifd, o->watch,
						 IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE |
						     IN_MOVED_FROM) < 0) {
			rc = pg_error(PG_ESYS, SUBSYS, "cannot watch %s: %s", o->watch,
				      strerror(errno));
			goto out;
		}
		scan_dir(s);
	}
	if (o->pcsc && pthread_create(&pt, NULL, pcsc_thread, s) == 0)
		have_pcsc = 1;
	pg_info(SUBSYS, "serving clients on %s%s%s%s", o->sock, o->watch ? ", watching " : "",
		o->watch ? o->watch : "", o->pcsc ? ", PC/SC reader events" : "");
	if (o->ready)
		o->ready(o->ready_arg);
	while (!*s->stop) {
		struct pollfd p[2] = {{lfd, POLLIN, 0}, {ifd, POLLIN, 0}};
		int n = poll(p, ifd >= 0 ? 2 : 1, 200);

		if (n <= 0)
			continue;
		if (ifd >= 0 && (p[1].revents & POLLIN))
			inotify_events(s, ifd);
		if (p[0].revents & POLLIN)
			accept_client(s, lfd);
	}
out:
	close(lfd);
	(void)unlink(o->sock);
	if (ifd >= 0)
		close(ifd);
	if (have_pcsc)
		pthread_join(pt, NULL);
	stop_all(s);
	return rc;
}

void
pg_seos_serve_free(struct pg_seos_server *srv)
{
	struct srv *s = (struct srv *)srv;

	if (!s)
		return;
	for (int i = 0; i < MAX_SE; i++)
		if (s->se[i].used) {
			pg_conv_port_stop(s->se[i].port);
			pg_link_close(s->se[i].l);
			pg_seos_config_release(&s->se[i].cfg);
			pg_ara_rules_release(&s->se[i].rules);
			pthread_mutex_destroy(&s->se[i].io);
		}
	pg_conv_free(s->conv); /* after the views and ports on it */
	pg_seos_close(s->os);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->idle);
	free(s);
}
