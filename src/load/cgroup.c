/*
 * cgroup v2 collector (seed 3 on a host without libvirt): every child cgroup
 * of a parent (as systemd's machine.slice holds one per VM) is one VM. Reads
 * cpu.stat usage_usec, cpu.max, memory.current, memory.max and io.stat, per
 * the kernel's cgroup-v2 documentation; cgroups have no network counters, so
 * network stays 0. A cgroup v1 hierarchy is refused at open (its files are
 * others), systemd's escaped unit names are shown as the VM's name
 * (machine-qemu\x2d1\x2dweb.scope is qemu-1-web), and a parent with no child
 * cgroups is warned about once.
 */
#include "load_int.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define CG_V1_MAGIC 0x27e0eb   /* CGROUP_SUPER_MAGIC (linux/magic.h) */
#define CG_V2_MAGIC 0x63677270 /* CGROUP2_SUPER_MAGIC */

#define CG_FILE_MAX 65536

struct cg_prev {
	char name[128];
	uint64_t t_ns;
	double usage_us, rbytes, wbytes;
};

struct cg_state {
	char *parent;
	int warned_empty;
	struct cg_prev *prev;
	size_t nprev;
};

/* Reads a small control file into buf (NUL-terminated); 0 or PG_ENOENT. */
static int
cg_read(const char *dir, const char *file, char *buf, size_t cap)
{
	char path[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f)
		return PG_ENOENT;
	n = fread(buf, 1, cap - 1, f);
	buf[n] = 0;
	fclose(f);
	return 0;
}

static double
cg_key(const char *text, const char *key)
{
	const char *p = text;
	size_t l = strlen(key);

	while ((p = strstr(p, key))) {
		if ((p == text || p[-1] == '\n' || p[-1] == ' ') && p[l] == ' ')
			return strtod(p + l + 1, NULL);
		p += l;
	}
	return 0;
}

static double
cg_memtotal(void)
{
	char buf[4096];
	if (cg_read("/proc", "meminfo", buf, sizeof(buf)) < 0)
		return 0;
	return cg_key(buf, "MemTotal:") * 1024;
}

/*
 * systemd's unit name of a VM as its name: the type suffix and the
 * "machine-" prefix go, and \xNN escapes become their byte
 * (systemd.unit(5), "String escaping").
 */
void
pgi_load_cgroup_name(const char *unit, char out[128])
{
	char tmp[256];
	size_t l = strlen(unit), j = 0;
	static const char *const suffixes[] = {".scope", ".service", ".slice"};

	for (size_t i = 0; i < 3; i++) {
		size_t m = strlen(suffixes[i]);
		if (l > m && strcmp(unit + l - m, suffixes[i]) == 0) {
			l -= m;
			break;
		}
	}
	if (l > 8 && strncmp(unit, "machine-", 8) == 0) {
		unit += 8;
		l -= 8;
	}
	for (size_t i = 0; i < l && j < sizeof(tmp) - 1; i++) {
		unsigned v;

		if (unit[i] == '\\' && i + 3 < l && unit[i + 1] == 'x' &&
		    isxdigit((unsigned char)unit[i + 2]) && isxdigit((unsigned char)unit[i + 3]) &&
		    sscanf(unit + i + 2, "%2x", &v) == 1) {
			tmp[j++] = (char)v;
			i += 3;
			continue;
		}
		tmp[j++] = unit[i];
	}
	pgi_load_set_name(out, tmp, j);
}

/* A cgroup v1 hierarchy (its mount, or the files v1 controllers make). */
static int
cg_is_v1(const char *dir)
{
	static const char *const v1_files[] = {"tasks", "cpuacct.usage", "cpu.cfs_quota_us",
					       "memory.usage_in_bytes"};
	struct statfs fs;
	char path[4096];

	if (statfs(dir, &fs) == 0) {
		if ((unsigned long)fs.f_type == CG_V2_MAGIC)
			return 0;
		if ((unsigned long)fs.f_type == CG_V1_MAGIC)
			return 1;
	}
	/* Not a cgroup file system (a copy, a test tree): judge by its files. */
	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	if (access(path, F_OK) == 0)
		return 0;
	for (size_t i = 0; i < sizeof(v1_files) / sizeof(v1_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, v1_files[i]);
		if (access(path, F_OK) == 0)
			return 1;
	}
	return 0;
}

static int
cg_open(const char *arg, void **state)
{
	struct cg_state *s;
	struct stat st;

	if (stat(arg, &st) != 0 || !S_ISDIR(st.st_mode))
		return pg_error(PG_ENOENT, "load", "cgroup '%s': not a folder", arg);
	if (cg_is_v1(arg))
		return pg_error(PG_EINVAL, "load",
				"cgroup '%s' is a cgroup v1 hierarchy: payguard reads cgroup v2 "
				"only (boot with systemd.unified_cgroup_hierarchy=1, or give the "
				"v2 folder, e.g. /sys/fs/cgroup/machine.slice)",
				arg);
	s = calloc(1, sizeof(*s));
	if (!s || !(s->parent = strdup(arg))) {
		free(s);
		return pg_error(PG_ENOMEM, "load", "cgroup state");
	}
	*state = s;
	return 0;
}

static void
cg_close(void *state)
{
	struct cg_state *s = state;

	if (!s)
		return;
	free(s->parent);
	free(s->prev);
	free(s);
}

/* A child cgroup's limits and memory use as read this poll (not kept). */
struct cg_now {
	double cores, mem, memmax;
};

/* Adds io.stat's read and written bytes of every device to c. */
static void
cg_io_sum(const char *buf, struct cg_prev *c)
{
	/* One line per device: "MAJ:MIN rbytes=.. wbytes=.. rios=.. ..." */
	for (const char *line = buf; line && *line;) {
		const char *r = strstr(line, "rbytes="), *w = strstr(line, "wbytes=");
		const char *eol = strchr(line, '\n');
		if (r && (!eol || r < eol))
			c->rbytes += strtod(r + 7, NULL);
		if (w && (!eol || w < eol))
			c->wbytes += strtod(w + 7, NULL);
		line = eol ? eol + 1 : NULL;
	}
}

/* Reads cpu.max, memory.current, memory.max and io.stat of the cgroup dir
 * (buf: scratch of CG_FILE_MAX) into c and v; cores starts at the host's. */
static void
cg_read_limits(const char *dir, char *buf, long ncpu, struct cg_prev *c, struct cg_now *v)
{
	v->cores = ncpu > 0 ? (double)ncpu : 1;
	v->mem = 0;
	v->memmax = 0;
	if (cg_read(dir, "cpu.max", buf, CG_FILE_MAX) == 0 && strncmp(buf, "max", 3) != 0) {
		double quota = 0, period = 0;
		if (sscanf(buf, "%lf %lf", &quota, &period) == 2 && period > 0 && quota > 0)
			v->cores = quota / period;
	}
	if (cg_read(dir, "memory.current", buf, CG_FILE_MAX) == 0)
		v->mem = strtod(buf, NULL);
	if (cg_read(dir, "memory.max", buf, CG_FILE_MAX) == 0 && strncmp(buf, "max", 3) != 0)
		v->memmax = strtod(buf, NULL);
	if (v->memmax <= 0)
		v->memmax = cg_memtotal();
	if (cg_read(dir, "io.stat", buf, CG_FILE_MAX) == 0)
		cg_io_sum(buf, c);
}

/* The previous poll's counters of the cgroup called name, or NULL (the last
 * match wins, as names are unique in one folder). */
static const struct cg_prev *
cg_find_prev(const struct cg_state *s, const char *name)
{
	const struct cg_prev *p = NULL;

	for (size_t i = 0; i < s->nprev; i++)
		if (strcmp(s->prev[i].name, name) == 0)
			p = &s->prev[i];
	return p;
}

/* The sample of the interval from p to c. */
static void
cg_sample(const struct cg_prev *c, const struct cg_prev *p, const struct cg_now *v, int64_t wall,
	  struct pg_load_sample *x)
{
	double secs = (double)(c->t_ns - p->t_ns) / 1e9;

	memset(x, 0, sizeof(*x));
	x->ts_ms = wall;
	x->v[PG_LOAD_CPU] = load_pct(
	    c->usage_us >= p->usage_us ? 100.0 * (c->usage_us - p->usage_us) / 1e6 / secs / v->cores
				       : 0);
	x->v[PG_LOAD_MEM] = load_pct(v->memmax > 0 ? 100.0 * v->mem / v->memmax : 0);
	x->v[PG_LOAD_DISK_RD] = c->rbytes >= p->rbytes ? (c->rbytes - p->rbytes) / 1024 / secs : 0;
	x->v[PG_LOAD_DISK_WR] = c->wbytes >= p->wbytes ? (c->wbytes - p->wbytes) / 1024 / secs : 0;
}

/* Room for one more entry in *now (n used of *cap); the new entry, zeroed,
 * or NULL out of memory. */
static struct cg_prev *
cg_push(struct cg_prev **now, size_t *n, size_t *cap)
{
	struct cg_prev *c;

	if (*n == *cap) {
		struct cg_prev *q = realloc(*now, (*cap ? *cap * 2 : 64) * sizeof(*q));
		if (!q)
			return NULL;
		*now = q;
		*cap = *cap ? *cap * 2 : 64;
	}
	c = &(*now)[(*n)++];
	memset(c, 0, sizeof(*c));
	return c;
}

static int
cg_poll(void *state, pg_load_sample_cb cb, void *ctx)
{
	struct cg_state *s = state;
	DIR *d = opendir(s->parent);
	struct dirent *de;
	struct cg_prev *now = NULL;
	size_t n = 0, cap = 0;
	int reported = 0, rc = 0;
	uint64_t t = pg_mono_ns();
	int64_t wall = pg_wall_ms();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char *buf = malloc(CG_FILE_MAX);

	if (!d || !buf) {
		rc = pg_error(d ? PG_ENOMEM : PG_ENOENT, "load", "cgroup '%s': %s", s->parent,
			      d ? "out of memory" : strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		char dir[4096];
		struct stat st;
		struct cg_prev *c;
		const struct cg_prev *p;
		struct cg_now v;

		if (de->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", s->parent, de->d_name);
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		if (cg_read(dir, "cpu.stat", buf, CG_FILE_MAX) < 0)
			continue; /* not a cgroup (or no cpu controller) */
		c = cg_push(&now, &n, &cap);
		if (!c) {
			rc = pg_error(PG_ENOMEM, "load", "cgroup list");
			goto out;
		}
		pgi_load_cgroup_name(de->d_name, c->name);
		c->t_ns = t;
		c->usage_us = cg_key(buf, "usage_usec");
		cg_read_limits(dir, buf, ncpu, c, &v);
		p = cg_find_prev(s, c->name);
		if (p && t > p->t_ns) {
			struct pg_load_sample x;

			cg_sample(c, p, &v, wall, &x);
			rc = cb(ctx, c->name, &x);
			if (rc < 0)
				goto out;
			reported++;
		}
	}
	if (n == 0 && !s->warned_empty) {
		pg_warn("load",
			"cgroup '%s': no child cgroups with cpu.stat: nothing to collect (give the "
			"parent of the VMs' cgroups, e.g. /sys/fs/cgroup/machine.slice)",
			s->parent);
		s->warned_empty = 1;
	}
	free(s->prev);
	s->prev = now;
	s->nprev = n;
	now = NULL;
	rc = reported;
out:
	if (d)
		closedir(d);
	free(now);
	free(buf);
	return rc;
}

const struct pg_load_ops pg_load_cgroup_ops = {
    .name = "cgroup",
    .help = "cgroup:DIR       live: every child cgroup v2 of DIR is one VM "
	    "(e.g. /sys/fs/cgroup/machine.slice)",
    .open = cg_open,
    .poll = cg_poll,
    .close = cg_close,
};
