/*
 * libvirt collector (seed 3's monitoring of VMs on a host): one bulk
 * virConnectGetAllDomainStats call per poll (cpu time, balloon, block and
 * interface counters), falling back per domain to virDomainGetInfo,
 * virDomainMemoryStats, virDomainBlockStats and virDomainInterfaceStats where
 * the driver leaves a bulk group empty (Debian 12's test driver does).
 * Counters become rates between two polls.
 */
#include "load_int.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LV_MAX_DEVS 32

struct lv_state {
	virConnectPtr conn;
	char *uri;
	struct load_lv_counters *prev;
	size_t nprev, cap;
	int bulk_logged;
};

static void
lv_quiet(void *ud, virErrorPtr err)
{
	(void)ud;
	(void)err; /* errors are reported through pg_error, not printed by libvirt */
}

static int
lv_open(const char *arg, void **state)
{
	struct lv_state *s = calloc(1, sizeof(*s));

	if (!s)
		return pg_error(PG_ENOMEM, "load", "libvirt state");
	/* The test driver's node XML: say plainly when the file is not there. */
	if (arg && strncmp(arg, "test://", 7) == 0 && arg[7] == '/' &&
	    strcmp(arg, "test:///default") != 0 && access(arg + 7, R_OK) != 0) {
		int rc = pg_error(
		    PG_ENOENT, "load", "libvirt '%s': node XML file '%s' not found%s%s", arg,
		    arg + 7, errno == ENOENT ? "" : ": ", errno == ENOENT ? "" : strerror(errno));
		free(s);
		return rc;
	}
	virSetErrorFunc(NULL, lv_quiet);
	s->uri = strdup(arg);
	s->conn = virConnectOpenReadOnly(arg && *arg ? arg : NULL);
	if (!s->uri || !s->conn) {
		int rc =
		    pg_error(PG_EIO, "load", "libvirt '%s': %s", arg, virGetLastErrorMessage());
		free(s->uri);
		free(s);
		return rc;
	}
	*state = s;
	return 0;
}

static void
lv_close(void *state)
{
	struct lv_state *s = state;

	if (!s)
		return;
	if (s->conn)
		virConnectClose(s->conn);
	free(s->prev);
	free(s->uri);
	free(s);
}

/* Device targets (<target dev='...'/>) of disks or interfaces in the XML. */
static size_t
xml_targets(const char *xml, const char *elem, char devs[][64], size_t max)
{
	char open[32], close[32];
	const char *p = xml;
	size_t n = 0;

	snprintf(open, sizeof(open), "<%s ", elem);
	snprintf(close, sizeof(close), "</%s>", elem);
	while (n < max && (p = strstr(p, open))) {
		const char *end = strstr(p, close), *t = strstr(p, "<target dev=");
		if (!end)
			break;
		if (t && t < end) {
			char q = t[12];
			const char *v = t + 13, *e = (q == '\'' || q == '"') ? strchr(v, q) : NULL;
			if (e && e > v && (size_t)(e - v) < 64) {
				memcpy(devs[n], v, (size_t)(e - v));
				devs[n][e - v] = 0;
				n++;
			}
		}
		p = end;
	}
	return n;
}

/* Memory use from virDomainMemoryStats: the guest's view first (needs the
 * balloon driver), else the host's RSS; c->mem_pct is kept otherwise. */
static void
lv_fallback_mem(virDomainPtr dom, struct load_lv_counters *c)
{
	virDomainMemoryStatStruct ms[VIR_DOMAIN_MEMORY_STAT_NR];
	int n = virDomainMemoryStats(dom, ms, VIR_DOMAIN_MEMORY_STAT_NR, 0);
	double avail = 0, unused = -1, rss = -1, actual = 0;

	for (int i = 0; i < n; i++) {
		if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_AVAILABLE)
			avail = (double)ms[i].val;
		else if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_UNUSED)
			unused = (double)ms[i].val;
		else if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_RSS)
			rss = (double)ms[i].val;
		else if (ms[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
			actual = (double)ms[i].val;
	}
	if (avail > 0 && unused >= 0)
		c->mem_pct = 100.0 * (avail - unused) / avail;
	else if (actual > 0 && rss >= 0)
		c->mem_pct = 100.0 * rss / actual;
}

/* Bytes read and written, summed over the disks the domain XML lists. */
static void
lv_fallback_blk(virDomainPtr dom, const char *xml, struct load_lv_counters *c)
{
	char devs[LV_MAX_DEVS][64];
	size_t nd = xml_targets(xml, "disk", devs, LV_MAX_DEVS);

	for (size_t i = 0; i < nd; i++) {
		virDomainBlockStatsStruct bs;
		if (virDomainBlockStats(dom, devs[i], &bs, sizeof(bs)) == 0) {
			c->rd += bs.rd_bytes > 0 ? (double)bs.rd_bytes : 0;
			c->wr += bs.wr_bytes > 0 ? (double)bs.wr_bytes : 0;
		}
	}
}

/* Bytes received and sent, summed over the interfaces the domain XML lists. */
static void
lv_fallback_net(virDomainPtr dom, const char *xml, struct load_lv_counters *c)
{
	char devs[LV_MAX_DEVS][64];
	size_t nd = xml_targets(xml, "interface", devs, LV_MAX_DEVS);

	for (size_t i = 0; i < nd; i++) {
		virDomainInterfaceStatsStruct is;
		if (virDomainInterfaceStats(dom, devs[i], &is, sizeof(is)) == 0) {
			c->rx += is.rx_bytes > 0 ? (double)is.rx_bytes : 0;
			c->tx += is.tx_bytes > 0 ? (double)is.tx_bytes : 0;
		}
	}
}

/* Fills what the bulk call left out, with the per-call functions. */
static void
lv_fallback(virDomainPtr dom, struct load_lv_counters *c, int need_cpu, int need_mem, int need_blk,
	    int need_net)
{
	virDomainInfo info;
	char *xml = NULL;

	if ((need_cpu || need_mem) && virDomainGetInfo(dom, &info) == 0) {
		if (need_cpu) {
			c->cpu_ns = (double)info.cpuTime;
			c->nvcpu = info.nrVirtCpu ? info.nrVirtCpu : 1;
		}
		if (need_mem && info.maxMem > 0)
			c->mem_pct = 100.0 * (double)info.memory / (double)info.maxMem;
	}
	if (need_mem)
		lv_fallback_mem(dom, c);
	if (need_blk || need_net)
		xml = virDomainGetXMLDesc(dom, 0);
	if (xml && need_blk)
		lv_fallback_blk(dom, xml, c);
	if (xml && need_net)
		lv_fallback_net(dom, xml, c);
	free(xml);
}

static double
param_num(const virTypedParameter *p)
{
	switch (p->type) {
	case VIR_TYPED_PARAM_INT:
		return p->value.i;
	case VIR_TYPED_PARAM_UINT:
		return p->value.ui;
	case VIR_TYPED_PARAM_LLONG:
		return (double)p->value.l;
	case VIR_TYPED_PARAM_ULLONG:
		return (double)p->value.ul;
	case VIR_TYPED_PARAM_DOUBLE:
		return p->value.d;
	default:
		return 0;
	}
}

static int
suffix(const char *field, const char *prefix, const char *tail)
{
	size_t lp = strlen(prefix), lf = strlen(field), lt = strlen(tail);

	return lf > lp + lt && strncmp(field, prefix, lp) == 0 &&
	       strcmp(field + lf - lt, tail) == 0;
}

/* Reads one bulk record; sets which groups were present. */
void
pgi_load_lv_record(const virDomainStatsRecord *r, struct load_lv_counters *c, int *has_cpu,
		   int *has_mem, int *has_blk, int *has_net)
{
	double cur = 0, max = 0, rss = -1, avail = 0, unused = -1;

	for (int i = 0; i < r->nparams; i++) {
		const virTypedParameter *p = &r->params[i];

		if (strcmp(p->field, "cpu.time") == 0) {
			c->cpu_ns = param_num(p);
			*has_cpu = 1;
		} else if (strcmp(p->field, "vcpu.current") == 0) {
			c->nvcpu = (unsigned)param_num(p);
		} else if (strcmp(p->field, "balloon.current") == 0) {
			cur = param_num(p);
		} else if (strcmp(p->field, "balloon.maximum") == 0) {
			max = param_num(p);
		} else if (strcmp(p->field, "balloon.rss") == 0) {
			rss = param_num(p);
		} else if (strcmp(p->field, "balloon.available") == 0) {
			avail = param_num(p);
		} else if (strcmp(p->field, "balloon.unused") == 0) {
			unused = param_num(p);
		} else if (strcmp(p->field, "block.count") == 0) {
			*has_blk = 1;
		} else if (suffix(p->field, "block.", ".rd.bytes")) {
			c->rd += param_num(p);
		} else if (suffix(p->field, "block.", ".wr.bytes")) {
			c->wr += param_num(p);
		} else if (strcmp(p->field, "net.count") == 0) {
			*has_net = 1;
		} else if (suffix(p->field, "net.", ".rx.bytes")) {
			c->rx += param_num(p);
		} else if (suffix(p->field, "net.", ".tx.bytes")) {
			c->tx += param_num(p);
		}
	}
	/* Guest view first (needs the guest's balloon driver), then host RSS. */
	if (avail > 0 && unused >= 0) {
		c->mem_pct = 100.0 * (avail - unused) / avail;
		*has_mem = 1;
	} else if (cur > 0 && rss >= 0) {
		c->mem_pct = 100.0 * rss / cur;
		*has_mem = 1;
	} else if (max > 0 && cur > 0) {
		c->mem_pct = 100.0 * cur / max;
		*has_mem = 1;
	}
}

static struct load_lv_counters *
lv_prev(struct lv_state *s, const char *name)
{
	for (size_t i = 0; i < s->nprev; i++)
		if (strcmp(s->prev[i].name, name) == 0)
			return &s->prev[i];
	return NULL;
}

static double
rate(double now, double before, double secs)
{
	/* A counter that went back (domain restarted) gives no rate this time. */
	return now >= before && secs > 0 ? (now - before) / secs : 0;
}

static int
lv_poll(void *state, pg_load_sample_cb cb, void *ctx)
{
	struct lv_state *s = state;
	virDomainStatsRecordPtr *recs = NULL;
	unsigned groups = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL |
			  VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_VCPU |
			  VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
	struct load_lv_counters *now = NULL;
	int nrec, reported = 0, rc = 0, fallbacks = 0;
	uint64_t t = pg_mono_ns();
	int64_t wall = pg_wall_ms();

	nrec = virConnectGetAllDomainStats(s->conn, groups, &recs,
					   VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
	if (nrec < 0)
		return pg_error(PG_EIO, "load", "libvirt '%s': %s", s->uri,
				virGetLastErrorMessage());
	now = calloc((size_t)nrec + 1, sizeof(*now));
	if (!now) {
		rc = pg_error(PG_ENOMEM, "load", "libvirt: %d domains", nrec);
		goto out;
	}
	for (int i = 0; i < nrec; i++) {
		struct load_lv_counters *c = &now[i], *p;
		int has_cpu = 0, has_mem = 0, has_blk = 0, has_net = 0;
		const char *name = virDomainGetName(recs[i]->dom);

		pgi_load_set_name(c->name, name ? name : "?", strlen(name ? name : "?"));
		c->t_ns = t;
		c->nvcpu = 0;
		pgi_load_lv_record(recs[i], c, &has_cpu, &has_mem, &has_blk, &has_net);
		if (!has_cpu || !has_mem || !has_blk || !has_net) {
			fallbacks++;
			lv_fallback(recs[i]->dom, c, !has_cpu, !has_mem, !has_blk, !has_net);
		}
		if (c->nvcpu == 0)
			c->nvcpu = 1;
		c->seen = 1;
		p = lv_prev(s, c->name);
		if (p) {
			struct pg_load_sample x;
			double secs = (double)(t - p->t_ns) / 1e9;

			x.ts_ms = wall;
			x.v[PG_LOAD_CPU] =
			    load_pct(100.0 * rate(c->cpu_ns, p->cpu_ns, secs) / 1e9 / c->nvcpu);
			x.v[PG_LOAD_MEM] = load_pct(c->mem_pct);
			x.v[PG_LOAD_DISK_RD] = rate(c->rd, p->rd, secs) / 1024;
			x.v[PG_LOAD_DISK_WR] = rate(c->wr, p->wr, secs) / 1024;
			x.v[PG_LOAD_NET_RX] = rate(c->rx, p->rx, secs) / 1024;
			x.v[PG_LOAD_NET_TX] = rate(c->tx, p->tx, secs) / 1024;
			rc = cb(ctx, c->name, &x);
			if (rc < 0)
				goto out;
			reported++;
		}
	}
	if (fallbacks && !s->bulk_logged) {
		pg_info("load",
			"libvirt '%s': bulk stats incomplete for %d domains; used per-call "
			"functions",
			s->uri, fallbacks);
		s->bulk_logged = 1;
	}
	free(s->prev);
	s->prev = now;
	s->nprev = (size_t)nrec;
	now = NULL;
	rc = reported;
out:
	free(now);
	if (recs)
		virDomainStatsRecordListFree(recs);
	return rc;
}

const struct pg_load_ops pg_load_libvirt_ops = {
    .name = "libvirt",
    .help = "libvirt:URI      live: every active domain of a libvirt connection "
	    "(e.g. qemu:///system, test:///path/node.xml)",
    .open = lv_open,
    .poll = lv_poll,
    .close = lv_close,
};
