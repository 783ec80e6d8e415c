/*
 * Public VM traces as trace sources (issue 17, seed 3's "monitored data"):
 *   azure:PATH       Azure Public Dataset v1/v2: vm_cpu_readings-file-*.csv
 *                    (timestamp,vmid,min cpu,max cpu,avg cpu; no header) and
 *                    vmtable.csv (11 columns), plain or gzip (read by zlib);
 *   alibaba:FILE     Alibaba cluster-trace-v2018 machine_usage.csv (9
 *                    columns) or container_usage.csv (11 columns);
 *   google2011:PATH  Google cluster-data 2011 task_usage (20 columns, no
 *                    header), summed per machine (default) or per job.
 * The column layouts are the published ones (AzurePublicDatasetV2.md,
 * clusterdata cluster-trace-v2018/schema.md, the 2011 v2.1 schema). Rows of
 * these files are not grouped by VM, so a file is read whole into per-VM
 * series at open; the first bad field stops the read with one error that
 * names file, line and column. Normalised shares (Alibaba's net and disk,
 * Google's disk time) become KB/s equivalents whose feature is that share
 * (docs/load.md).
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define TRACE_MAX_POINTS (8u << 20) /* samples held in memory over all VMs */
#define TRACE_MAX_VMS	 (1u << 20)
#define TRACE_MAX_COLS	 24
#define GOOGLE_WINDOW_US 300000000LL /* task_usage reports 5-minute windows */

struct trace_vm {
	struct pg_load_series s;
};

struct load_trace {
	enum load_trace_kind kind;
	int by_job;    /* google2011: aggregate per job, not per machine */
	int sum_dupes; /* samples of one VM at one time add up (google2011) */
	struct trace_vm *vm;
	size_t n, cap;
	uint32_t *index; /* open addressing: VM number + 1, 0 empty */
	size_t icap;
	size_t points;
	size_t next;
	/* vmtable (azure): categories seen */
	size_t table_rows, table_matched, cat_interactive, cat_delay, cat_unknown;
};

/* ---- field helpers ---- */

/* One column of a published layout: its number (1-based) and name. */
struct col {
	int no;
	const char *name;
};

static int
bad_field(const char *file, size_t line, const struct col *c, const char *v, const char *why)
{
	return pg_error(PG_EFORMAT, "load", "%s:%zu: column %d (%s): '%.40s' %s%s", file, line,
			c->no, c->name, v, why,
			line == 1 ? " (a header line, or a file in another layout? the published "
				    "files have no header)"
				  : "");
}

/* A number that must be there. */
static int
num(const char *file, size_t line, const struct col *c, const char *v, double *out)
{
	if (pgi_load_parse_double(v, out) < 0)
		return bad_field(file, line, c, v, "is not a number");
	return 0;
}

/* A number that may be empty (the published traces leave gaps): *have = 0. */
static int
num_opt(const char *file, size_t line, const struct col *c, const char *v, double *out, int *have)
{
	*have = 0;
	*out = 0;
	if (pgi_load_is_blank(v))
		return 0;
	if (pgi_load_parse_double(v, out) < 0)
		return bad_field(file, line, c, v, "is not a number");
	*have = 1;
	return 0;
}

static int
wrong_cols(const char *file, size_t line, size_t got, size_t want, const char *what,
	   const struct col *cols)
{
	char names[512];
	size_t o = 0;

	names[0] = 0;
	for (size_t i = 0; i < want && o < sizeof(names) - 1; i++)
		o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", i ? "," : "",
				      cols[i].name);
	return pg_error(PG_EFORMAT, "load",
			"%s:%zu: %zu columns, but %s has %zu (%s; no header line)", file, line, got,
			what, want, names);
}

/* A normalised share in [0, 100] as the KB/s whose feature is that share. */
static double
share_kbps(double share_pct, double ref)
{
	double s = share_pct / 100.0;

	if (!(s > 0))
		return 0;
	if (s > 0.999)
		s = 0.999;
	return ref * s / (1 - s);
}

/* ---- the per-VM accumulator ---- */

static uint64_t
hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int
index_grow(struct load_trace *t)
{
	size_t ncap = t->icap ? t->icap * 2 : 1024;
	uint32_t *ni = calloc(ncap, sizeof(*ni));

	if (!ni)
		return pg_error(PG_ENOMEM, "load", "trace index");
	for (size_t i = 0; i < t->n; i++) {
		size_t h = hash_name(t->vm[i].s.vm) & (ncap - 1);
		while (ni[h])
			h = (h + 1) & (ncap - 1);
		ni[h] = (uint32_t)(i + 1);
	}
	free(t->index);
	t->index = ni;
	t->icap = ncap;
	return 0;
}

/* The series of VM name, or NULL. */
static struct pg_load_series *
vm_find(struct load_trace *t, const char *name)
{
	char clean[128];
	size_t h;

	if (!t->icap)
		return NULL;
	pgi_load_set_name(clean, name, strlen(name));
	h = hash_name(clean) & (t->icap - 1);
	while (t->index[h]) {
		struct trace_vm *v = &t->vm[t->index[h] - 1];
		if (strcmp(v->s.vm, clean) == 0)
			return &v->s;
		h = (h + 1) & (t->icap - 1);
	}
	return NULL;
}

/* The series of VM name, made on first use. */
static int
vm_get(struct load_trace *t, const char *name, struct pg_load_series **out)
{
	char clean[128];
	size_t h;

	pgi_load_set_name(clean, name, strlen(name));
	if (!clean[0])
		return PG_EFORMAT;
	if ((t->n + 1) * 2 > t->icap && index_grow(t) < 0)
		return PG_ENOMEM;
	h = hash_name(clean) & (t->icap - 1);
	while (t->index[h]) {
		struct trace_vm *v = &t->vm[t->index[h] - 1];
		if (strcmp(v->s.vm, clean) == 0) {
			*out = &v->s;
			return 0;
		}
		h = (h + 1) & (t->icap - 1);
	}
	if (t->n >= TRACE_MAX_VMS)
		return pg_error(PG_ETOOBIG, "load", "more than %u VMs", TRACE_MAX_VMS);
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		struct trace_vm *nv = realloc(t->vm, ncap * sizeof(*nv));
		if (!nv)
			return pg_error(PG_ENOMEM, "load", "trace VMs");
		t->vm = nv;
		t->cap = ncap;
	}
	pg_load_series_init(&t->vm[t->n].s, 0);
	snprintf(t->vm[t->n].s.vm, sizeof(t->vm[t->n].s.vm), "%s", clean);
	t->index[h] = (uint32_t)(t->n + 1);
	*out = &t->vm[t->n++].s;
	return 0;
}

static int
add_sample(struct load_trace *t, const char *file, size_t line, const char *vm,
	   const struct pg_load_sample *x)
{
	struct pg_load_series *s = NULL; /* set when vm_get returns 0; GCC -O2 cannot tell */
	int rc;

	if (t->points >= TRACE_MAX_POINTS)
		return pg_error(PG_ETOOBIG, "load",
				"%s:%zu: more than %u samples in memory: split the trace", file,
				line, TRACE_MAX_POINTS);
	rc = vm_get(t, vm, &s);
	if (rc == PG_EFORMAT)
		return pg_error(PG_EFORMAT, "load", "%s:%zu: empty VM id", file, line);
	if (rc == 0)
		rc = pg_load_series_push(s, x);
	if (rc < 0) {
		char why[256]; /* pg_error must not read the buffer it writes */

		snprintf(why, sizeof(why), "%s", pg_last_error());
		return pg_error(rc, "load", "%s:%zu: %s", file, line, why);
	}
	t->points++;
	return 0;
}

static int
time_ok(const char *file, size_t line, const struct col *c, const char *v, double secs)
{
	if (secs < 0 || secs > 9e12)
		return bad_field(file, line, c, v, "is not a time in seconds");
	return 0;
}

/* ---- Azure Public Dataset v1/v2 ---- */

static const struct col azure_cols[] = {
    {1, "timestamp"}, {2, "vmid"}, {3, "min cpu"}, {4, "max cpu"}, {5, "avg cpu"}};

static int
row_azure(struct load_trace *t, char *line, const char *file, size_t lineno)
{
	char *f[TRACE_MAX_COLS];
	size_t nf = pgi_load_split_fields(line, ',', f, TRACE_MAX_COLS);
	double ts, mn, mx, avg;
	struct pg_load_sample x;
	int rc;

	if (nf != 5)
		return wrong_cols(file, lineno, nf, 5, "an Azure vm_cpu_readings file", azure_cols);
	if ((rc = num(file, lineno, &azure_cols[0], f[0], &ts)) < 0 ||
	    (rc = time_ok(file, lineno, &azure_cols[0], f[0], ts)) < 0 ||
	    (rc = num(file, lineno, &azure_cols[2], f[2], &mn)) < 0 ||
	    (rc = num(file, lineno, &azure_cols[3], f[3], &mx)) < 0 ||
	    (rc = num(file, lineno, &azure_cols[4], f[4], &avg)) < 0)
		return rc;
	if (mn < 0 || mx < 0 || avg < 0)
		return bad_field(file, lineno,
				 &azure_cols[mn < 0   ? 2
					     : mx < 0 ? 3
						      : 4],
				 mn < 0	  ? f[2]
				 : mx < 0 ? f[3]
					  : f[4],
				 "is negative");
	memset(&x, 0, sizeof(x));
	x.ts_ms = (int64_t)(ts * 1000);
	x.v[PG_LOAD_CPU] = load_pct(avg);
	return add_sample(t, file, lineno, f[1], &x);
}

static const struct col vmtable_cols[] = {{1, "vmid"},		 {2, "subscriptionid"},
					  {3, "deploymentid"},	 {4, "vmcreated"},
					  {5, "vmdeleted"},	 {6, "maxcpu"},
					  {7, "avgcpu"},	 {8, "p95maxcpu"},
					  {9, "vmcategory"},	 {10, "vmcorecountbucket"},
					  {11, "vmmemorybucket"}};

/*
 * vmtable.csv, read after the readings: checked, counted by category, and a
 * VM with readings gets "category, N cores, M GB" as its info (the buckets as
 * published, e.g. ">24"). A table row without readings keeps no memory.
 */
static int
row_vmtable(struct load_trace *t, char *line, const char *file, size_t lineno)
{
	char *f[TRACE_MAX_COLS];
	size_t nf = pgi_load_split_fields(line, ',', f, TRACE_MAX_COLS);
	struct pg_load_series *s;
	double v;
	int rc;

	if (nf != 11)
		return wrong_cols(file, lineno, nf, 11, "an Azure vmtable.csv", vmtable_cols);
	for (int i = 3; i < 8; i++)
		if ((rc = num(file, lineno, &vmtable_cols[i], f[i], &v)) < 0)
			return rc;
	if (strcmp(f[8], "Interactive") == 0)
		t->cat_interactive++;
	else if (strcmp(f[8], "Delay-insensitive") == 0)
		t->cat_delay++;
	else if (strcmp(f[8], "Unknown") == 0)
		t->cat_unknown++;
	else
		return bad_field(file, lineno, &vmtable_cols[8], f[8],
				 "is not Interactive, Delay-insensitive or Unknown");
	t->table_rows++;
	if ((s = vm_find(t, f[0])) != NULL) {
		char cores[128], mem[128];

		pgi_load_set_name(cores, f[9], strlen(f[9]));
		pgi_load_set_name(mem, f[10], strlen(f[10]));
		snprintf(s->info, sizeof(s->info), "%s, %.12s cores, %.12s GB", f[8], cores, mem);
		t->table_matched++;
	}
	return 0;
}

/* ---- Alibaba cluster-trace-v2018 ---- */

static const struct col ali_machine_cols[] = {
    {1, "machine_id"},	     {2, "time_stamp"}, {3, "cpu_util_percent"},
    {4, "mem_util_percent"}, {5, "mem_gps"},	{6, "mkpi"},
    {7, "net_in"},	     {8, "net_out"},	{9, "disk_io_percent"}};
static const struct col ali_container_cols[] = {
    {1, "container_id"},     {2, "machine_id"}, {3, "time_stamp"},	{4, "cpu_util_percent"},
    {5, "mem_util_percent"}, {6, "cpi"},	{7, "mem_gps"},		{8, "mpki"},
    {9, "net_in"},	     {10, "net_out"},	{11, "disk_io_percent"}};

/*
 * Shared by both tables: id, time, cpu, mem, net_in, net_out, disk at the
 * given column indexes. An empty cpu or memory field (the published files
 * have gaps) skips the row; disk -1 or 101 ("abnormal" in the schema) is 0.
 */
static int
ali_row(struct load_trace *t, char *line, const char *file, size_t lineno, const struct col *cols,
	size_t ncols, const char *what, const int at[7])
{
	char *f[TRACE_MAX_COLS];
	size_t nf = pgi_load_split_fields(line, ',', f, TRACE_MAX_COLS);
	double ts, cpu, mem, in, out, disk;
	int have_cpu, have_mem, have, rc;
	struct pg_load_sample x;

	if (nf != ncols)
		return wrong_cols(file, lineno, nf, ncols, what, cols);
	if ((rc = num(file, lineno, &cols[at[1]], f[at[1]], &ts)) < 0 ||
	    (rc = time_ok(file, lineno, &cols[at[1]], f[at[1]], ts)) < 0 ||
	    (rc = num_opt(file, lineno, &cols[at[2]], f[at[2]], &cpu, &have_cpu)) < 0 ||
	    (rc = num_opt(file, lineno, &cols[at[3]], f[at[3]], &mem, &have_mem)) < 0 ||
	    (rc = num_opt(file, lineno, &cols[at[4]], f[at[4]], &in, &have)) < 0 ||
	    (rc = num_opt(file, lineno, &cols[at[5]], f[at[5]], &out, &have)) < 0 ||
	    (rc = num_opt(file, lineno, &cols[at[6]], f[at[6]], &disk, &have)) < 0)
		return rc;
	if (!have_cpu || !have_mem)
		return 0;
	if (cpu < 0 || mem < 0)
		return bad_field(file, lineno, &cols[cpu < 0 ? at[2] : at[3]],
				 cpu < 0 ? f[at[2]] : f[at[3]], "is negative");
	if (disk < 0 || disk > 100)
		disk = 0;
	memset(&x, 0, sizeof(x));
	x.ts_ms = (int64_t)(ts * 1000);
	x.v[PG_LOAD_CPU] = load_pct(cpu);
	x.v[PG_LOAD_MEM] = load_pct(mem);
	/* Network and disk are published as shares in [0, 100]. */
	x.v[PG_LOAD_DISK_RD] = share_kbps(disk, LOAD_DISK_REF);
	x.v[PG_LOAD_NET_RX] = share_kbps(in > 0 ? in : 0, LOAD_NET_REF) / 2;
	x.v[PG_LOAD_NET_TX] = share_kbps(out > 0 ? out : 0, LOAD_NET_REF) / 2;
	return add_sample(t, file, lineno, f[at[0]], &x);
}

static int
row_ali_machine(struct load_trace *t, char *line, const char *file, size_t lineno)
{
	static const int at[7] = {0, 1, 2, 3, 6, 7, 8};

	return ali_row(t, line, file, lineno, ali_machine_cols, 9, "an Alibaba machine_usage.csv",
		       at);
}

static int
row_ali_container(struct load_trace *t, char *line, const char *file, size_t lineno)
{
	static const int at[7] = {0, 2, 3, 4, 8, 9, 10};

	return ali_row(t, line, file, lineno, ali_container_cols, 11,
		       "an Alibaba container_usage.csv", at);
}

/* ---- Google cluster-data 2011 task_usage ---- */

static const struct col google_cols[] = {{1, "start time"},
					 {2, "end time"},
					 {3, "job ID"},
					 {4, "task index"},
					 {5, "machine ID"},
					 {6, "CPU rate"},
					 {7, "canonical memory usage"},
					 {8, "assigned memory usage"},
					 {9, "unmapped page cache"},
					 {10, "total page cache"},
					 {11, "maximum memory usage"},
					 {12, "disk I/O time"},
					 {13, "local disk space usage"},
					 {14, "maximum CPU rate"},
					 {15, "maximum disk IO time"},
					 {16, "cycles per instruction"},
					 {17, "memory accesses per instruction"},
					 {18, "sample portion"},
					 {19, "aggregation type"},
					 {20, "sampled CPU usage"}};

/*
 * One task's 5-minute (or shorter) window. CPU rate and memory are
 * normalised to the largest machine: the machine's (or job's) sum is its
 * share of such a machine. A window is put in its 5-minute slot weighted by
 * its length, so the slot holds the time average.
 */
static int
row_google(struct load_trace *t, char *line, const char *file, size_t lineno)
{
	char *f[TRACE_MAX_COLS];
	size_t nf = pgi_load_split_fields(line, ',', f, TRACE_MAX_COLS);
	double start, end, cpu, mem, disk, v;
	int have, rc;
	struct pg_load_sample x;
	long long slot;
	double w;

	if (nf != 20)
		return wrong_cols(file, lineno, nf, 20, "a Google 2011 task_usage file",
				  google_cols);
	if ((rc = num(file, lineno, &google_cols[0], f[0], &start)) < 0 ||
	    (rc = num(file, lineno, &google_cols[1], f[1], &end)) < 0 ||
	    (rc = num(file, lineno, &google_cols[2], f[2], &v)) < 0 ||
	    (rc = num(file, lineno, &google_cols[3], f[3], &v)) < 0 ||
	    (rc = num(file, lineno, &google_cols[5], f[5], &cpu)) < 0 ||
	    (rc = num(file, lineno, &google_cols[6], f[6], &mem)) < 0 ||
	    (rc = num_opt(file, lineno, &google_cols[11], f[11], &disk, &have)) < 0)
		return rc;
	if (!t->by_job && pgi_load_is_blank(f[4]))
		return bad_field(file, lineno, &google_cols[4], f[4], "is empty");
	if (start < 0 || start > 9e15)
		return bad_field(file, lineno, &google_cols[0], f[0], "is not a time in µs");
	if (end < start || end > 9e15)
		return bad_field(file, lineno, &google_cols[1], f[1], "is before the start time");
	if (cpu < 0 || mem < 0 || disk < 0)
		return bad_field(file, lineno,
				 &google_cols[cpu < 0	? 5
					      : mem < 0 ? 6
							: 11],
				 cpu < 0   ? f[5]
				 : mem < 0 ? f[6]
					   : f[11],
				 "is negative");
	slot = (long long)(start / (double)GOOGLE_WINDOW_US);
	w = end > start ? (end - start) / (double)GOOGLE_WINDOW_US : 1;
	if (w > 1)
		w = 1;
	memset(&x, 0, sizeof(x));
	x.ts_ms = (int64_t)(slot * (GOOGLE_WINDOW_US / 1000));
	x.v[PG_LOAD_CPU] = 100 * cpu * w;
	x.v[PG_LOAD_MEM] = 100 * mem * w;
	/* disk I/O time is seconds per second: a share, kept as it sums */
	x.v[PG_LOAD_DISK_RD] = 100 * disk * w;
	return add_sample(t, file, lineno, t->by_job ? f[2] : f[4], &x);
}

/* ---- reading files (plain or gzip) ---- */

typedef int (*row_fn)(struct load_trace *t, char *line, const char *file, size_t lineno);

static row_fn
kind_row(enum load_trace_kind k)
{
	switch (k) {
	case LOAD_TRACE_AZURE:
		return row_azure;
	case LOAD_TRACE_AZURE_VMTABLE:
		return row_vmtable;
	case LOAD_TRACE_ALI_MACHINE:
		return row_ali_machine;
	case LOAD_TRACE_ALI_CONTAINER:
		return row_ali_container;
	case LOAD_TRACE_GOOGLE_MACHINE:
	case LOAD_TRACE_GOOGLE_JOB:
		return row_google;
	}
	return NULL;
}

/* One line of text (NUL-free, without newline). */
static int
feed_line(struct load_trace *t, row_fn row, char *line, size_t len, const char *file, size_t lineno)
{
	if (memchr(line, 0, len))
		return pg_error(PG_EFORMAT, "load", "%s:%zu: NUL byte: not a text trace", file,
				lineno);
	if (len && line[len - 1] == '\r')
		line[--len] = 0;
	if (pgi_load_is_blank(line))
		return 0;
	return row(t, line, file, lineno);
}

int
pgi_load_trace_feed(struct load_trace *t, enum load_trace_kind kind, const char *buf, size_t len,
		    const char *file)
{
	row_fn row = kind_row(kind);
	const char *p = buf, *end = buf + len;
	char line[LOAD_LINE_MAX];
	size_t lineno = 0;
	int rc;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);

		lineno++;
		if (l >= sizeof(line))
			return pg_error(PG_ETOOBIG, "load", "%s:%zu: line longer than %d bytes",
					file, lineno, LOAD_LINE_MAX);
		memcpy(line, p, l);
		line[l] = 0;
		p = eol ? eol + 1 : end;
		if ((rc = feed_line(t, row, line, l, file, lineno)) < 0)
			return rc;
	}
	return 0;
}

/* Reads a file through zlib: gzip or plain alike. */
static int
read_file(struct load_trace *t, enum load_trace_kind kind, const char *path)
{
	row_fn row = kind_row(kind);
	gzFile gz = gzopen(path, "rb");
	char line[LOAD_LINE_MAX + 1];
	size_t lineno = 0;
	int rc = 0;

	if (!gz)
		return pg_error(PG_ENOENT, "load", "'%s': %s", path,
				errno ? strerror(errno) : "cannot open");
	gzbuffer(gz, 1 << 17);
	for (;;) {
		size_t l;
		int errnum;

		if (!gzgets(gz, line, sizeof(line))) {
			const char *msg = gzerror(gz, &errnum);
			if (errnum != Z_OK && errnum != Z_BUF_ERROR)
				rc = pg_error(PG_EFORMAT, "load", "%s:%zu: %s", path, lineno + 1,
					      msg);
			else if (errnum == Z_BUF_ERROR)
				rc = pg_error(PG_EFORMAT, "load", "%s: gzip data ends early", path);
			break;
		}
		lineno++;
		l = strlen(line);
		if (l && line[l - 1] != '\n') {
			/* A last line without newline: a truncated gzip stream ends so too. */
			(void)gzerror(gz, &errnum);
			if (errnum == Z_BUF_ERROR || (errnum != Z_OK && errnum != Z_STREAM_END)) {
				rc = pg_error(PG_EFORMAT, "load",
					      "%s:%zu: gzip data ends early (truncated file?)",
					      path, lineno);
				break;
			}
		}
		if (l == LOAD_LINE_MAX && line[l - 1] != '\n' && !gzeof(gz)) {
			rc = pg_error(PG_ETOOBIG, "load", "%s:%zu: line longer than %d bytes", path,
				      lineno, LOAD_LINE_MAX - 1);
			break;
		}
		if (l && line[l - 1] == '\n')
			line[--l] = 0;
		if ((rc = feed_line(t, row, line, l, path, lineno)) < 0)
			break;
	}
	gzclose(gz);
	return rc;
}

/* ---- assembling the series ---- */

static int
cmp_sample(const void *a, const void *b)
{
	const struct pg_load_sample *x = a, *y = b;

	return x->ts_ms < y->ts_ms ? -1 : x->ts_ms > y->ts_ms;
}

static int
cmp_vm(const void *a, const void *b)
{
	const struct trace_vm *x = a, *y = b;

	return strcmp(x->s.vm, y->s.vm);
}

int
pgi_load_trace_finish(struct load_trace *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct pg_load_series *s = &t->vm[i].s;
		size_t o = 0;

		qsort(s->s, s->n, sizeof(*s->s), cmp_sample);
		/* One sample per time: the Google sum of tasks, or the last reading. */
		for (size_t j = 0; j < s->n; j++) {
			if (o && s->s[o - 1].ts_ms == s->s[j].ts_ms) {
				for (int m = 0; m < PG_LOAD_NMETRICS; m++)
					s->s[o - 1].v[m] = t->sum_dupes
							       ? s->s[o - 1].v[m] + s->s[j].v[m]
							       : s->s[j].v[m];
				continue;
			}
			s->s[o++] = s->s[j];
		}
		s->n = o;
		if (t->sum_dupes)
			for (size_t j = 0; j < o; j++) {
				/* the sums: CPU and memory clipped, disk time as a share */
				s->s[j].v[PG_LOAD_CPU] = load_pct(s->s[j].v[PG_LOAD_CPU]);
				s->s[j].v[PG_LOAD_MEM] = load_pct(s->s[j].v[PG_LOAD_MEM]);
				s->s[j].v[PG_LOAD_DISK_RD] =
				    share_kbps(load_pct(s->s[j].v[PG_LOAD_DISK_RD]), LOAD_DISK_REF);
			}
	}
	/* Index no longer needed; VMs in name order, as the other sources. */
	free(t->index);
	t->index = NULL;
	t->icap = 0;
	if (t->n)
		qsort(t->vm, t->n, sizeof(*t->vm), cmp_vm);
	return 0;
}

struct load_trace *
pgi_load_trace_new(enum load_trace_kind kind)
{
	struct load_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->kind = kind;
	t->by_job = kind == LOAD_TRACE_GOOGLE_JOB;
	t->sum_dupes = kind == LOAD_TRACE_GOOGLE_MACHINE || kind == LOAD_TRACE_GOOGLE_JOB;
	return t;
}

void
pgi_load_trace_free(struct load_trace *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		pg_load_series_release(&t->vm[i].s);
	free(t->vm);
	free(t->index);
	free(t);
}

size_t
pgi_load_trace_count(const struct load_trace *t)
{
	return t->n;
}

/* Hands the next VM's series to out (out's old buffer is freed). */
static int
trace_next(void *state, struct pg_load_series *out)
{
	struct load_trace *t = state;
	struct pg_load_series *s;

	if (t->next >= t->n)
		return 0;
	s = &t->vm[t->next++].s;
	pg_load_series_release(out);
	memcpy(out->vm, s->vm, sizeof(out->vm));
	memcpy(out->info, s->info, sizeof(out->info));
	out->s = s->s;
	out->n = s->n;
	out->cap = s->cap;
	if (out->max < s->n)
		out->max = s->n;
	s->s = NULL;
	s->n = s->cap = 0;
	return 1;
}

static void
trace_close(void *state)
{
	pgi_load_trace_free(state);
}

/* ---- opening: a file, or a folder of the published file names ---- */

static int
ends_with(const char *s, const char *suf)
{
	size_t l = strlen(s), m = strlen(suf);

	return l >= m && strcmp(s + l - m, suf) == 0;
}

static int
is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int
cmp_path(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t lx = strlen(x), ly = strlen(y);

	/* file-2-of-125 before file-10-of-125 */
	return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* Files in dir whose name starts with prefix and ends .csv or .csv.gz, sorted. */
static int
list_files(const char *dir, const char *prefix, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;

	*n = 0;
	if (!d)
		return pg_error(PG_ENOENT, "load", "'%s': %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 ||
		    !(ends_with(de->d_name, ".csv") || ends_with(de->d_name, ".csv.gz")))
			continue;
		if (*n == cap) {
			char **q = realloc(v, (cap ? cap * 2 : 16) * sizeof(*q));
			if (!q)
				goto nomem;
			v = q;
			cap = cap ? cap * 2 : 16;
		}
		if (asprintf(&v[*n], "%s/%s", dir, de->d_name) < 0)
			goto nomem;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), cmp_path);
	*out = v;
	return 0;
nomem:
	closedir(d);
	for (size_t i = 0; i < *n; i++)
		free(v[i]);
	free(v);
	return pg_error(PG_ENOMEM, "load", "file list");
}

static void
free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int
open_done(struct load_trace *t, int rc, void **state)
{
	if (rc == 0)
		rc = pgi_load_trace_finish(t);
	if (rc == 0 && t->n == 0)
		rc = pg_error(PG_EFORMAT, "load", "no samples in the trace");
	if (rc < 0) {
		pgi_load_trace_free(t);
		return rc;
	}
	*state = t;
	return 0;
}

static int
azure_open(const char *arg, void **state)
{
	struct load_trace *t = pgi_load_trace_new(LOAD_TRACE_AZURE);
	char **files = NULL, **table = NULL;
	size_t nfiles = 0, ntable = 0;
	int rc = 0;

	if (!t)
		return pg_error(PG_ENOMEM, "load", "trace state");
	if (!is_dir(arg)) {
		const char *base = strrchr(arg, '/');
		base = base ? base + 1 : arg;
		if (strncmp(base, "vmtable", 7) == 0)
			rc = pg_error(PG_EINVAL, "load",
				      "'%s' is the VM table: give the folder or a "
				      "vm_cpu_readings-file-*.csv file",
				      arg);
		else
			rc = read_file(t, LOAD_TRACE_AZURE, arg);
		return open_done(t, rc, state);
	}
	rc = list_files(arg, "vm_cpu_readings", &files, &nfiles);
	if (rc == 0 && nfiles == 0)
		rc = pg_error(PG_ENOENT, "load", "'%s': no vm_cpu_readings-file-*.csv[.gz] files",
			      arg);
	if (rc == 0)
		rc = list_files(arg, "vmtable", &table, &ntable);
	for (size_t i = 0; rc == 0 && i < nfiles; i++)
		rc = read_file(t, LOAD_TRACE_AZURE, files[i]);
	/* The table after the readings: only VMs with readings keep its facts. */
	for (size_t i = 0; rc == 0 && i < ntable; i++)
		rc = read_file(t, LOAD_TRACE_AZURE_VMTABLE, table[i]);
	if (rc == 0 && t->table_rows)
		pg_info("load",
			"vmtable: %zu VMs (Interactive %zu, Delay-insensitive %zu, Unknown %zu), "
			"%zu of the %zu with readings",
			t->table_rows, t->cat_interactive, t->cat_delay, t->cat_unknown,
			t->table_matched, t->n);
	free_list(files, nfiles);
	free_list(table, ntable);
	return open_done(t, rc, state);
}

static int
alibaba_open(const char *arg, void **state)
{
	const char *base = strrchr(arg, '/');
	enum load_trace_kind k;
	struct load_trace *t;
	base = base ? base + 1 : arg;
	if (is_dir(arg))
		return pg_error(PG_EINVAL, "load",
				"'%s' is a folder: give machine_usage.csv or container_usage.csv",
				arg);
	if (strncmp(base, "machine_usage", 13) == 0)
		k = LOAD_TRACE_ALI_MACHINE;
	else if (strncmp(base, "container_usage", 15) == 0)
		k = LOAD_TRACE_ALI_CONTAINER;
	else {
		/* Another name: the column count of the first line tells. */
		gzFile gz = gzopen(arg, "rb");
		char line[LOAD_LINE_MAX];
		char *f[TRACE_MAX_COLS];
		size_t nf = 0;

		if (!gz)
			return pg_error(PG_ENOENT, "load", "'%s': %s", arg, strerror(errno));
		if (gzgets(gz, line, sizeof(line)))
			nf = pgi_load_split_fields(line, ',', f, TRACE_MAX_COLS);
		gzclose(gz);
		if (nf == 9)
			k = LOAD_TRACE_ALI_MACHINE;
		else if (nf == 11)
			k = LOAD_TRACE_ALI_CONTAINER;
		else
			return pg_error(PG_EFORMAT, "load",
					"%s:1: %zu columns: neither machine_usage.csv (9) nor "
					"container_usage.csv (11) of cluster-trace-v2018",
					arg, nf);
	}
	t = pgi_load_trace_new(k);
	if (!t)
		return pg_error(PG_ENOMEM, "load", "trace state");
	return open_done(t, read_file(t, k, arg), state);
}

/* arg: PATH[,machine|,job]; PATH a task_usage file or a folder of part-*.csv[.gz]. */
static int
google_open(const char *arg, void **state)
{
	const char *comma = strrchr(arg, ',');
	enum load_trace_kind k = LOAD_TRACE_GOOGLE_MACHINE;
	char *path;
	char **files = NULL;
	size_t nfiles = 0;
	struct load_trace *t;
	int rc = 0;

	if (comma && (strcmp(comma + 1, "job") == 0 || strcmp(comma + 1, "machine") == 0)) {
		k = strcmp(comma + 1, "job") == 0 ? LOAD_TRACE_GOOGLE_JOB
						  : LOAD_TRACE_GOOGLE_MACHINE;
		path = strndup(arg, (size_t)(comma - arg));
	} else {
		path = strdup(arg);
	}
	t = pgi_load_trace_new(k);
	if (!path || !t) {
		free(path);
		pgi_load_trace_free(t);
		return pg_error(PG_ENOMEM, "load", "trace state");
	}
	if (is_dir(path)) {
		rc = list_files(path, "part-", &files, &nfiles);
		if (rc == 0 && nfiles == 0)
			rc = pg_error(PG_ENOENT, "load", "'%s': no part-*.csv[.gz] files", path);
		for (size_t i = 0; rc == 0 && i < nfiles; i++)
			rc = read_file(t, k, files[i]);
		free_list(files, nfiles);
	} else {
		rc = read_file(t, k, path);
	}
	free(path);
	return open_done(t, rc, state);
}

const struct pg_load_ops pg_load_azure_ops = {
    .name = "azure",
    .help = "azure:PATH       Azure Public Dataset v1/v2: a folder of vm_cpu_readings-file-*.csv"
	    "[.gz] (and vmtable.csv) or one readings file",
    .open = azure_open,
    .next = trace_next,
    .close = trace_close,
};

const struct pg_load_ops pg_load_alibaba_ops = {
    .name = "alibaba",
    .help = "alibaba:FILE     Alibaba cluster-trace-v2018 machine_usage.csv or "
	    "container_usage.csv[.gz]",
    .open = alibaba_open,
    .next = trace_next,
    .close = trace_close,
};

const struct pg_load_ops pg_load_google2011_ops = {
    .name = "google2011",
    .help = "google2011:PATH[,machine|,job]  Google cluster-data 2011 task_usage file or "
	    "folder of part-*.csv[.gz], summed per machine (default) or per job",
    .open = google_open,
    .next = trace_next,
    .close = trace_close,
};
