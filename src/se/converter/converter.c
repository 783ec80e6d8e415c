/*
 * Protocol converter (seed 7): interfaces bound to SEs over any link driver,
 * and the management module that opens channels between any two of them and
 * maps logical channels (ISO/IEC 7816-4 5.4.1 CLA coding, 11.1.2 MANAGE
 * CHANNEL) from the issuing side's numbering to channels opened on the target.
 *
 * Locking: conv->lock guards the two tables (short, never held during I/O);
 * a channel's lock is taken before an interface's lock, never the other way;
 * a thread holds at most one channel lock. An interface lock serialises the
 * commands to its SE (link drivers are not re-entrant). A failure seen on an
 * interface is recorded there; other channels that use it notice it the next
 * time they run, so one failure never needs to lock foreign channels.
 * lock_chan() and lock_iface() assert this order (see held_by()).
 */
#include "payguard/converter.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCH 20 /* logical channels 0..19 */

struct iface {
	pthread_mutex_t lock;
	char name[PG_CONV_NAME_MAX];
	const char *link_name;
	const struct pg_link_ops *link_ops; /* the driver (kept after the link closes) */
	struct pg_link *link;		    /* NULL once removed or failed */
	int state;			    /* 0, PG_ELINK, PG_ENOCARD */
	char why[200];
	uint8_t atr[PG_ATR_MAX];
	size_t atr_len;
	uint64_t apdus;
	uint32_t mine; /* logical channels this converter opened on the SE (bit n) */
	int removed;   /* detached by management */
};

struct chan {
	pthread_mutex_t lock;
	int id;
	struct iface *side[2];
	/* map[s][k]: the logical channel on side !s's SE that side s's channel k maps to. */
	int map[2][NCH];
	int state; /* 0 open, PG_ECLOSED closed, else the code that ended it */
	char why[240];
};

struct pg_conv {
	pthread_mutex_t lock;
	struct iface **ifs;
	int nifs, capifs;
	struct chan **chs;
	int nchs, capchs;
	pg_conv_trace_fn trace;
	void *trace_arg;
};

/*
 * The lock order, checked: per thread, how many channel and interface locks
 * of each converter it holds. Per converter, because a link driver or a trace
 * sink may reach another converter from inside an exchange; HELD_MAX deep
 * (past that a thread's locks go unchecked, never refused). The table lock is
 * a leaf held for lookups only and is not tracked.
 */
#define HELD_MAX 4

struct held {
	const struct pg_conv *c;
	int chans, ifaces;
};

static _Thread_local struct held held[HELD_MAX];

/* This thread's record for converter c (a free slot if it holds none of its locks). */
static struct held *
held_by(const struct pg_conv *c)
{
	struct held *slot = NULL;

	for (int i = 0; i < HELD_MAX; i++)
		if (held[i].c == c)
			return &held[i];
	for (int i = 0; i < HELD_MAX && !slot; i++)
		if (!held[i].chans && !held[i].ifaces)
			slot = &held[i];
	if (slot)
		slot->c = c;
	return slot;
}

/* A channel lock: no other channel lock of this converter held, and no interface lock. */
static void
lock_chan(const struct pg_conv *c, struct chan *ch)
{
	struct held *h = held_by(c);

	assert(!h || (h->chans == 0 && h->ifaces == 0));
	pthread_mutex_lock(&ch->lock);
	if (h)
		h->chans++;
}

static void
unlock_chan(const struct pg_conv *c, struct chan *ch)
{
	struct held *h = held_by(c);

	assert(!h || h->chans == 1);
	if (h && h->chans)
		h->chans--;
	pthread_mutex_unlock(&ch->lock);
}

/* An interface lock: after its channel's lock, if any; never a second interface lock. */
static void
lock_iface(const struct pg_conv *c, struct iface *f)
{
	struct held *h = held_by(c);

	assert(!h || h->ifaces == 0);
	pthread_mutex_lock(&f->lock);
	if (h)
		h->ifaces++;
}

static void
unlock_iface(const struct pg_conv *c, struct iface *f)
{
	struct held *h = held_by(c);

	assert(!h || h->ifaces == 1);
	if (h && h->ifaces)
		h->ifaces--;
	pthread_mutex_unlock(&f->lock);
}

static void
emit(struct pg_conv *c, const struct pg_conv_event *ev)
{
	if (c->trace)
		c->trace(c->trace_arg, ev);
}

int
pg_conv_new(struct pg_conv **out)
{
	struct pg_conv *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return PG_ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void
pg_conv_set_trace(struct pg_conv *c, pg_conv_trace_fn fn, void *arg)
{
	pthread_mutex_lock(&c->lock);
	c->trace = fn;
	c->trace_arg = arg;
	pthread_mutex_unlock(&c->lock);
}

/* The newest interface of that name (a name detached and attached again has several). */
static struct iface *
find_iface(struct pg_conv *c, const char *name)
{
	struct iface *f = NULL;

	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nifs; i++)
		if (strcmp(c->ifs[i]->name, name) == 0)
			f = c->ifs[i];
	pthread_mutex_unlock(&c->lock);
	return f;
}

/* 1 while a live (not detached) interface has this name; a detached one's name is free. */
static int
name_taken(struct pg_conv *c, const char *name)
{
	struct iface *f = find_iface(c, name);

	return f && !__atomic_load_n(&f->removed, __ATOMIC_ACQUIRE);
}

static struct chan *
find_chan(struct pg_conv *c, int id)
{
	struct chan *ch = NULL;

	pthread_mutex_lock(&c->lock);
	if (id >= 1 && id <= c->nchs)
		ch = c->chs[id - 1];
	pthread_mutex_unlock(&c->lock);
	return ch;
}

/* Error for an interface that can no longer carry commands (its lock held). */
static int
iface_dead(struct iface *f)
{
	return pg_error(f->state, "converter", "%s", f->why);
}

/*
 * One command to an interface's SE, serialised by its lock. A link failure
 * marks the interface failed for every channel that uses it.
 */
static int
xfer_locked(struct pg_conv *c, struct iface *f, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
	    size_t *rlen)
{
	int rc;

	if (f->state) {
		rc = iface_dead(f);
		goto out;
	}
	rc = pg_link_transmit(f->link, capdu, clen, rapdu, rlen);
	if (rc == PG_ERESYNC || rc == PG_EINVAL) {
		/*
		 * The link recovered (T=1 resynchronisation) or refused this command
		 * (too long for it): the SE is still there. Only this command fails;
		 * re-sending it is the issuer's choice, as it may have run once.
		 */
		rc = pg_error(rc, "converter", "SE '%s' on link %s: %s", f->name, f->link_name,
			      pg_last_error());
		goto out;
	}
	if (rc < 0) {
		const char *d = pg_last_error();
		struct pg_conv_event ev = {
		    .kind = PG_CONV_EV_FAIL, .from = f->name, .link = f->link_name, .rc = rc};

		snprintf(f->why, sizeof(f->why), "SE '%s' on link %s failed: %s", f->name,
			 f->link_name, d[0] ? d : pg_strerror(rc));
		__atomic_store_n(&f->state, PG_ELINK, __ATOMIC_RELEASE);
		pg_link_close(f->link);
		f->link = NULL;
		ev.detail = f->why;
		pg_warn("converter", "%s", f->why);
		emit(c, &ev);
		rc = iface_dead(f);
		goto out;
	}
	f->apdus++;
out:
	return rc;
}

static int
iface_xfer(struct pg_conv *c, struct iface *f, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
	   size_t *rlen)
{
	int rc;

	lock_iface(c, f);
	rc = xfer_locked(c, f, capdu, clen, rapdu, rlen);
	unlock_iface(c, f);
	return rc;
}

/* Channel of any CLA: interindustry per 7816-4, proprietary (GP 8x/Cx) with the same bits. */
static int
cla_chan(uint8_t cla)
{
	return cla == 0xFF ? -1 : pg_cla_channel((uint8_t)(cla & 0x7F));
}

static int
cla_with(uint8_t cla, int n)
{
	int v = pg_cla_set_channel((uint8_t)(cla & 0x7F), n);

	return v < 0 ? v : (v | (cla & 0x80));
}

/*
 * MANAGE CHANNEL open on f, from its logical channel `from`; returns the new
 * channel. The converter names the number itself (P2 = n, case 1) rather than
 * letting the card choose (P2 = 00, case 2): a case-2 command cannot cross
 * T=0 unless the card knows INS 70 sends data, and case 1 crosses every link.
 * A number someone else opened (6985) is skipped.
 */
static int
mc_open(struct pg_conv *c, struct iface *f, int from, int chan_id)
{
	uint8_t cmd[4] = {0x00, 0x70, 0x00, 0x00}, r[8];
	uint16_t sw = PG_SW_FUNC_NOT_SUPPORTED;
	int rc, n;

	cmd[0] = (uint8_t)pg_cla_set_channel(0x00, from);
	lock_iface(c, f);
	for (n = 1; n < NCH; n++) {
		size_t rl = sizeof(r);

		if (f->mine & (1u << n))
			continue;
		cmd[3] = (uint8_t)n;
		rc = xfer_locked(c, f, cmd, sizeof(cmd), r, &rl);
		if (rc < 0) {
			unlock_iface(c, f);
			return rc;
		}
		sw = pg_rapdu_sw(r, rl);
		{
			struct pg_conv_event ev = {.kind = PG_CONV_EV_INTERNAL,
						   .chan = chan_id,
						   .to = f->name,
						   .link = f->link_name,
						   .sent = cmd,
						   .slen = sizeof(cmd),
						   .rapdu = r,
						   .rlen = rl};
			emit(c, &ev);
		}
		if (sw == PG_SW_OK) {
			f->mine |= 1u << n;
			unlock_iface(c, f);
			return n;
		}
		if (sw != PG_SW_CONDITIONS)
			break; /* no channel left (6A81), or channels not supported at all */
	}
	unlock_iface(c, f);
	return pg_error(PG_ENOCHAN, "converter",
			"SE '%s' refused to open a logical channel: %04X (%s)", f->name, sw,
			pg_sw_meaning(sw));
}

/* MANAGE CHANNEL close of logical channel n on f (best effort when ending). */
static int
mc_close(struct pg_conv *c, struct iface *f, int n, int chan_id)
{
	uint8_t cmd[4] = {0x00, 0x70, 0x80, (uint8_t)n}, r[8];
	size_t rl = sizeof(r);
	int rc;
	struct pg_conv_event ev = {.kind = PG_CONV_EV_INTERNAL,
				   .chan = chan_id,
				   .to = f->name,
				   .link = f->link_name,
				   .sent = cmd,
				   .slen = sizeof(cmd),
				   .rapdu = r};

	lock_iface(c, f);
	rc = xfer_locked(c, f, cmd, sizeof(cmd), r, &rl);
	f->mine &= ~(1u << n); /* closed, or gone with the card's state */
	unlock_iface(c, f);
	ev.rc = rc;
	ev.rlen = rc < 0 ? 0 : rl;
	emit(c, &ev);
	if (rc < 0)
		return rc;
	return pg_rapdu_sw(r, rl) == PG_SW_OK ? 0 : PG_ENOCHAN;
}

/* Closes every mapped logical channel on live SEs (channel lock held). */
static void
release_maps(struct pg_conv *c, struct chan *ch)
{
	for (int s = 0; s < 2; s++) {
		struct iface *target = ch->side[!s];

		for (int k = 0; k < NCH; k++) {
			if (ch->map[s][k] < 0)
				continue;
			if (!target->state)
				mc_close(c, target, ch->map[s][k], ch->id);
			ch->map[s][k] = -1;
		}
	}
}

/* Ends a channel whose SE failed or was removed (channel lock held). */
static void
end_chan(struct pg_conv *c, struct chan *ch, struct iface *gone)
{
	struct pg_conv_event ev = {.kind = PG_CONV_EV_END, .chan = ch->id};

	if (ch->state)
		return;
	ch->state = gone->state ? gone->state : PG_ELINK;
	snprintf(ch->why, sizeof(ch->why), "channel %d (%s <-> %s) ended: %s", ch->id,
		 ch->side[0]->name, ch->side[1]->name, gone->why);
	release_maps(c, ch);
	ev.from = ch->side[0]->name;
	ev.to = ch->side[1]->name;
	ev.rc = ch->state;
	ev.detail = ch->why;
	emit(c, &ev);
}

/* Channel lock held: 0 if usable, else its error (ending it if an SE has gone). */
static int
chan_check(struct pg_conv *c, struct chan *ch)
{
	for (int s = 0; s < 2 && !ch->state; s++) {
		/* Reading another thread's state word without its lock: a stale 0 only delays. */
		if (__atomic_load_n(&ch->side[s]->state, __ATOMIC_ACQUIRE))
			end_chan(c, ch, ch->side[s]);
	}
	if (ch->state == PG_ECLOSED)
		return pg_error(PG_ECLOSED, "converter", "channel %d is closed", ch->id);
	if (ch->state)
		return pg_error(ch->state, "converter", "%s", ch->why);
	return 0;
}

int
pg_conv_attach(struct pg_conv *c, const char *name, struct pg_link *l)
{
	struct iface *f = NULL;
	struct pg_conv_event ev = {.kind = PG_CONV_EV_ATTACH};
	int rc;

	if (!name || !*name || strlen(name) >= PG_CONV_NAME_MAX) {
		rc = pg_error(PG_EINVAL, "converter", "interface name must be 1..%d characters",
			      PG_CONV_NAME_MAX - 1);
		goto fail;
	}
	if (name_taken(c, name)) {
		rc = pg_error(PG_EEXIST, "converter", "interface '%s' already exists", name);
		goto fail;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		rc = PG_ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&f->lock, NULL);
	strcpy(f->name, name);
	f->link = l;
	f->link_name = l->ops->name;
	f->link_ops = l->ops;
	f->atr_len = sizeof(f->atr);
	rc = pg_link_power_on(l, f->atr, &f->atr_len);
	if (rc < 0) {
		rc = pg_error(rc, "converter", "SE '%s' on %s did not answer to reset: %s", name,
			      l->ops->name, pg_last_error());
		goto fail;
	}
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nifs; i++) {
		if (strcmp(c->ifs[i]->name, name) == 0 &&
		    !__atomic_load_n(&c->ifs[i]->removed, __ATOMIC_ACQUIRE)) {
			/* attached meanwhile by another thread */
			pthread_mutex_unlock(&c->lock);
			rc =
			    pg_error(PG_EEXIST, "converter", "interface '%s' already exists", name);
			goto fail;
		}
	}
	if (c->nifs == c->capifs) {
		int ncap = c->capifs ? 2 * c->capifs : 8;
		struct iface **n = realloc(c->ifs, (size_t)ncap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&c->lock);
			rc = PG_ENOMEM;
			goto fail;
		}
		c->ifs = n;
		c->capifs = ncap;
	}
	c->ifs[c->nifs++] = f;
	pthread_mutex_unlock(&c->lock);
	ev.from = f->name;
	ev.link = f->link_name;
	ev.rapdu = f->atr;
	ev.rlen = f->atr_len;
	emit(c, &ev);
	return 0;
fail:
	if (f)
		pthread_mutex_destroy(&f->lock);
	free(f);
	pg_link_close(l);
	return rc;
}

static int
open_ops(struct pg_link **out, const struct pg_link_ops *ops, const char *addr,
	 const struct pg_link_params *p)
{
	struct pg_stream *s = NULL;
	int rc;

	*out = NULL;
	if (!ops->host_open)
		return pg_error(PG_ENOTSUP, "converter", "link %s has no host role", ops->name);
	if (!addr || !*addr)
		return pg_error(PG_EINVAL, "converter", "link %s: no address", ops->name);
	if (ops->type != PG_LINK_PCSC) {
		rc = pg_stream_connect(&s, addr, p && p->timeout_ms ? p->timeout_ms : 2000);
		if (rc < 0)
			return pg_error(rc, "converter", "SE at %s (%s) unreachable: %s", addr,
					ops->name, pg_last_error());
	}
	/* the stream is the driver's from here, even when it fails */
	rc = ops->host_open(out, s, ops->type == PG_LINK_PCSC ? addr : NULL, p);
	if (rc < 0) {
		*out = NULL;
		return pg_error(rc, "converter", "SE at %s (%s) cannot be opened: %s", addr,
				ops->name, pg_last_error());
	}
	return 0;
}

int
pg_conv_link_open(struct pg_link **out, const char *link, const char *addr,
		  const struct pg_link_params *p)
{
	const struct pg_link_ops *ops = link ? pg_link_find(link) : NULL;

	*out = NULL;
	if (!ops)
		return pg_error(PG_ENOTSUP, "converter", "no link driver '%s'", link ? link : "");
	return open_ops(out, ops, addr, p);
}

int
pg_conv_attach_addr(struct pg_conv *c, const char *name, const struct pg_link_ops *ops,
		    const char *addr, const struct pg_link_params *p)
{
	struct pg_link *l = NULL;
	int rc = open_ops(&l, ops, addr, p);

	if (rc < 0)
		return rc;
	return pg_conv_attach(c, name, l);
}

/* ---------------- views: one interface as a pg_link ---------------- */

struct view {
	struct pg_link base;
	struct pg_link_ops ops; /* the driver's name, type and limits; our functions */
	struct pg_conv *c;
	struct iface *f;
};

static int
view_power_on(struct pg_link *l, uint8_t *atr, size_t *atrlen)
{
	struct view *v = (struct view *)l;
	struct iface *f = v->f;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	if (f->state)
		rc = iface_dead(f);
	else if (*atrlen < f->atr_len)
		rc = pg_error(PG_ETOOBIG, "converter", "ATR of %zu bytes", f->atr_len);
	else {
		memcpy(atr, f->atr, f->atr_len);
		*atrlen = f->atr_len;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int
view_transmit(struct pg_link *l, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct view *v = (struct view *)l;
	struct iface *f = v->f;
	struct pg_conv_event ev = {.kind = PG_CONV_EV_APDU,
				   .from = "host",
				   .to = f->name,
				   .link = f->link_name,
				   .capdu = capdu,
				   .clen = clen,
				   .sent = capdu,
				   .slen = clen};
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = xfer_locked(v->c, f, capdu, clen, rapdu, rlen);
	pthread_mutex_unlock(&f->lock);
	ev.rc = rc;
	if (rc == 0) {
		ev.rapdu = rapdu;
		ev.rlen = *rlen;
	} else {
		ev.detail = pg_last_error();
	}
	emit(v->c, &ev);
	return rc;
}

static void
view_close(struct pg_link *l)
{
	free(l);
}

int
pg_conv_iface_link(struct pg_conv *c, const char *name, struct pg_link **out)
{
	struct iface *f = find_iface(c, name);
	struct view *v;

	*out = NULL;
	if (!f || __atomic_load_n(&f->removed, __ATOMIC_ACQUIRE))
		return pg_error(PG_ENOENT, "converter", "no interface '%s'", name);
	v = calloc(1, sizeof(*v));
	if (!v)
		return PG_ENOMEM;
	pthread_mutex_lock(&f->lock);
	v->ops = *f->link_ops;
	pthread_mutex_unlock(&f->lock);
	v->ops.power_on = view_power_on;
	v->ops.transmit = view_transmit;
	v->ops.host_close = view_close;
	v->ops.host_open = NULL;
	v->base.ops = &v->ops;
	v->c = c;
	v->f = f;
	*out = &v->base;
	return 0;
}

int
pg_conv_detach(struct pg_conv *c, const char *name)
{
	struct iface *f = find_iface(c, name);
	struct pg_conv_event ev = {.kind = PG_CONV_EV_DETACH};
	int n;

	if (!f)
		return pg_error(PG_ENOENT, "converter", "no interface '%s'", name);
	lock_iface(c, f);
	if (f->removed) {
		unlock_iface(c, f);
		return pg_error(PG_ENOENT, "converter", "interface '%s' already removed", name);
	}
	/* A failed SE keeps its failure as the reason: other threads may be reading it. */
	if (!f->state) {
		snprintf(f->why, sizeof(f->why), "SE '%s' on link %s was removed", f->name,
			 f->link_name);
		__atomic_store_n(&f->state, PG_ENOCARD, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&f->removed, 1, __ATOMIC_RELEASE);
	pg_link_close(f->link);
	f->link = NULL;
	unlock_iface(c, f);
	ev.from = f->name;
	ev.link = f->link_name;
	emit(c, &ev);
	/* End its channels now (no lock held here, so taking each channel's lock is safe). */
	pthread_mutex_lock(&c->lock);
	n = c->nchs;
	pthread_mutex_unlock(&c->lock);
	for (int i = 1; i <= n; i++) {
		struct chan *ch = find_chan(c, i);

		if (!ch || (ch->side[0] != f && ch->side[1] != f))
			continue;
		lock_chan(c, ch);
		end_chan(c, ch, f);
		unlock_chan(c, ch);
	}
	return 0;
}

int
pg_conv_probe(struct pg_conv *c)
{
	int n, failed = 0;

	pthread_mutex_lock(&c->lock);
	n = c->nifs;
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < n; i++) {
		struct iface *f;
		/* Closing the basic channel is refused by every card and changes nothing. */
		static const uint8_t probe[4] = {0x00, 0x70, 0x80, 0x00};
		uint8_t r[8];
		size_t rl = sizeof(r);

		pthread_mutex_lock(&c->lock);
		f = c->ifs[i];
		pthread_mutex_unlock(&c->lock);
		if (__atomic_load_n(&f->state, __ATOMIC_ACQUIRE))
			continue;
		if (iface_xfer(c, f, probe, sizeof(probe), r, &rl) < 0)
			failed++;
	}
	return failed;
}

int
pg_conv_open(struct pg_conv *c, const char *a, const char *b)
{
	struct iface *fa = find_iface(c, a), *fb = find_iface(c, b);
	struct chan *ch = NULL;
	struct pg_conv_event ev = {.kind = PG_CONV_EV_OPEN};
	int rc, m;

	if (!fa || !fb)
		return pg_error(PG_ENOENT, "converter", "no interface '%s'", fa ? b : a);
	if (fa == fb)
		return pg_error(PG_EINVAL, "converter",
				"a channel needs two interfaces, not '%s' twice", a);
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return PG_ENOMEM;
	pthread_mutex_init(&ch->lock, NULL);
	ch->side[0] = fa;
	ch->side[1] = fb;
	memset(ch->map, 0xFF, sizeof(ch->map)); /* all -1 */
	pthread_mutex_lock(&c->lock);
	if (c->nchs == c->capchs) {
		int ncap = c->capchs ? 2 * c->capchs : 16;
		struct chan **n = realloc(c->chs, (size_t)ncap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&c->lock);
			pthread_mutex_destroy(&ch->lock);
			free(ch);
			return PG_ENOMEM;
		}
		c->chs = n;
		c->capchs = ncap;
	}
	ch->id = c->nchs + 1;
	c->chs[c->nchs++] = ch;
	/* Locked before it is visible to other threads' lookups finishing. */
	lock_chan(c, ch);
	pthread_mutex_unlock(&c->lock);
	/* Each side's basic channel maps to a fresh logical channel on the other SE. */
	for (int s = 0; s < 2; s++) {
		m = mc_open(c, ch->side[!s], 0, ch->id);
		if (m < 0) {
			rc = m;
			goto fail;
		}
		ch->map[s][0] = m;
	}
	ev.chan = ch->id;
	ev.from = fa->name;
	ev.to = fb->name;
	emit(c, &ev);
	rc = ch->id;
	unlock_chan(c, ch);
	return rc;
fail : {
	char d[sizeof(ch->why)];

	snprintf(d, sizeof(d), "%s", pg_last_error());
	release_maps(c, ch);
	ch->state = rc;
	snprintf(ch->why, sizeof(ch->why), "channel %d could not open: %s", ch->id, d);
	unlock_chan(c, ch);
	return pg_error(rc, "converter", "cannot open a channel %s <-> %s: %s", a, b, d);
}
}

int
pg_conv_close(struct pg_conv *c, int id)
{
	struct chan *ch = find_chan(c, id);
	struct pg_conv_event ev = {.kind = PG_CONV_EV_CLOSE, .chan = id};
	int rc;

	if (!ch)
		return pg_error(PG_ENOCHAN, "converter", "no channel %d", id);
	lock_chan(c, ch);
	rc = chan_check(c, ch);
	if (rc == 0) {
		release_maps(c, ch);
		ch->state = PG_ECLOSED;
		ev.from = ch->side[0]->name;
		ev.to = ch->side[1]->name;
		emit(c, &ev);
	}
	unlock_chan(c, ch);
	return rc;
}

int
pg_conv_channel_state(struct pg_conv *c, int id)
{
	struct chan *ch = find_chan(c, id);
	int rc;

	if (!ch)
		return pg_error(PG_ENOCHAN, "converter", "no channel %d", id);
	lock_chan(c, ch);
	rc = chan_check(c, ch);
	unlock_chan(c, ch);
	return rc;
}

/* Answers the issuer locally with a status word only. */
static int
local_sw(uint8_t *rapdu, size_t *rlen, uint16_t sw)
{
	if (*rlen < 2)
		return PG_ETOOBIG;
	rapdu[0] = (uint8_t)(sw >> 8);
	rapdu[1] = (uint8_t)sw;
	*rlen = 2;
	return 0;
}

/* MANAGE CHANNEL issued through a channel: open/close mapped channels on the target. */
static int
virtual_manage(struct pg_conv *c, struct chan *ch, int s, int k, const struct pg_capdu *cmd,
	       uint8_t *rapdu, size_t *rlen)
{
	struct iface *target = ch->side[!s];
	int *map = ch->map[s], n, m, rc;

	if (cmd->lc != 0)
		return local_sw(rapdu, rlen, PG_SW_WRONG_LENGTH);
	if (cmd->p1 == 0x00) {
		if (cmd->p2 == 0) {
			if (!cmd->has_le)
				return local_sw(rapdu, rlen, PG_SW_WRONG_LENGTH);
			for (n = 1; n < NCH && map[n] >= 0; n++)
				;
			if (n >= NCH)
				return local_sw(rapdu, rlen, PG_SW_FUNC_NOT_SUPPORTED);
		} else {
			n = cmd->p2;
			if (n >= NCH)
				return local_sw(rapdu, rlen, PG_SW_INCORRECT_P1P2);
			if (map[n] >= 0)
				return local_sw(rapdu, rlen, PG_SW_CONDITIONS);
		}
		m = mc_open(c, target, map[k], ch->id);
		if (m == PG_ENOCHAN)
			return local_sw(rapdu, rlen, PG_SW_FUNC_NOT_SUPPORTED);
		if (m < 0)
			return m;
		map[n] = m;
		if (cmd->p2 == 0) {
			if (*rlen < 3)
				return PG_ETOOBIG;
			rapdu[0] = (uint8_t)n;
			rapdu[1] = 0x90;
			rapdu[2] = 0x00;
			*rlen = 3;
			return 0;
		}
		return local_sw(rapdu, rlen, PG_SW_OK);
	}
	if (cmd->p1 == 0x80) {
		n = cmd->p2 ? cmd->p2 : k;
		if (n == 0 || n >= NCH)
			return local_sw(rapdu, rlen, PG_SW_INCORRECT_P1P2);
		if (map[n] < 0)
			return local_sw(rapdu, rlen, PG_SW_CHANNEL_NOT_SUPPORTED);
		rc = mc_close(c, target, map[n], ch->id);
		if (rc < 0 && rc != PG_ENOCHAN)
			return rc;
		map[n] = -1;
		return local_sw(rapdu, rlen, PG_SW_OK);
	}
	return local_sw(rapdu, rlen, PG_SW_INCORRECT_P1P2);
}

int
pg_conv_transmit(struct pg_conv *c, int id, enum pg_conv_side from, const uint8_t *capdu,
		 size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct chan *ch = find_chan(c, id);
	struct iface *target;
	struct pg_capdu cmd;
	struct pg_conv_event ev = {.kind = PG_CONV_EV_APDU, .chan = id};
	uint8_t *sent = NULL, small[261];
	int s = from == PG_CONV_B, k, m, rc;

	if (!ch)
		return pg_error(PG_ENOCHAN, "converter", "no channel %d", id);
	if (from != PG_CONV_A && from != PG_CONV_B)
		return pg_error(PG_EINVAL, "converter", "side must be A or B");
	lock_chan(c, ch);
	rc = chan_check(c, ch);
	if (rc < 0)
		goto out;
	target = ch->side[!s];
	ev.from = ch->side[s]->name;
	ev.to = target->name;
	ev.link = target->link_name;
	ev.capdu = capdu;
	ev.clen = clen;
	rc = pg_capdu_parse(&cmd, capdu, clen);
	if (rc < 0)
		goto out; /* the issuer's own malformed command: an input error, not an SW */
	k = cla_chan(cmd.cla);
	if (k < 0) {
		rc = local_sw(rapdu, rlen, PG_SW_CLA_NOT_SUPPORTED);
		goto done;
	}
	if (cmd.ins == 0x70 && pg_cla_is_interindustry(cmd.cla)) {
		if (ch->map[s][k] < 0) {
			rc = local_sw(rapdu, rlen, PG_SW_CHANNEL_NOT_SUPPORTED);
			goto done;
		}
		rc = virtual_manage(c, ch, s, k, &cmd, rapdu, rlen);
		goto done;
	}
	m = ch->map[s][k];
	if (m < 0) {
		rc = local_sw(rapdu, rlen, PG_SW_CHANNEL_NOT_SUPPORTED);
		goto done;
	}
	/* Rewrite only the CLA: the rest of the command passes byte for byte. */
	sent = clen <= sizeof(small) ? small : malloc(clen);
	if (!sent) {
		rc = PG_ENOMEM;
		goto out;
	}
	memcpy(sent, capdu, clen);
	sent[0] = (uint8_t)cla_with(cmd.cla, m);
	ev.sent = sent;
	ev.slen = clen;
	rc = iface_xfer(c, target, sent, clen, rapdu, rlen);
	if (rc < 0 && !__atomic_load_n(&target->state, __ATOMIC_ACQUIRE)) {
		/* The SE is still there (link recovered or refused this command). */
		ev.rc = rc;
		ev.detail = pg_last_error();
		emit(c, &ev);
		goto out;
	}
	if (rc < 0) {
		/* This channel ends now; the SE's other channels see the failed interface. */
		end_chan(c, ch, target);
		rc = pg_error(ch->state, "converter", "%s", ch->why);
		ev.rc = rc;
		ev.detail = ch->why;
		emit(c, &ev);
		goto out;
	}
done:
	if (rc == 0) {
		ev.rapdu = rapdu;
		ev.rlen = *rlen;
		emit(c, &ev);
	}
out:
	unlock_chan(c, ch);
	if (sent != small)
		free(sent);
	return rc;
}

int
pg_conv_iface(struct pg_conv *c, int i, struct pg_conv_iface_info *info)
{
	struct iface *f = NULL;

	pthread_mutex_lock(&c->lock);
	if (i >= 0 && i < c->nifs)
		f = c->ifs[i];
	pthread_mutex_unlock(&c->lock);
	if (!f)
		return PG_ENOENT;
	lock_iface(c, f);
	memset(info, 0, sizeof(*info));
	strcpy(info->name, f->name);
	info->link = f->link_name;
	memcpy(info->atr, f->atr, f->atr_len);
	info->atr_len = f->atr_len;
	info->state = f->removed ? PG_ENOCARD : f->state;
	info->apdus = f->apdus;
	unlock_iface(c, f);
	return 0;
}

int
pg_conv_channel_count(struct pg_conv *c)
{
	int n;

	pthread_mutex_lock(&c->lock);
	n = c->nchs;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void
pg_conv_free(struct pg_conv *c)
{
	if (!c)
		return;
	c->trace = NULL; /* the caller's trace sink may already be gone */
	for (int i = 0; i < c->nchs; i++) {
		struct chan *ch = c->chs[i];

		lock_chan(c, ch);
		if (!ch->state)
			release_maps(c, ch);
		unlock_chan(c, ch);
		pthread_mutex_destroy(&ch->lock);
		free(ch);
	}
	for (int i = 0; i < c->nifs; i++) {
		pg_link_close(c->ifs[i]->link);
		pthread_mutex_destroy(&c->ifs[i]->lock);
		free(c->ifs[i]);
	}
	free(c->chs);
	free(c->ifs);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
