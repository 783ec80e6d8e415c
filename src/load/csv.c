/*
 * Trace collectors: the Bitbrains GWA-T-12 VM traces (one `;`-separated file
 * per VM, 11 columns) and our plain CSV (many VMs per file, rows grouped by
 * VM), plus the numeric matrix reader behind `payguard load kmeans`.
 * Every bad field is reported with its file and line; a rejected VM does not
 * stop the others.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BB_COLS	   11
#define CSV_COLS   8
#define MATRIX_MAX (1u << 30) /* bytes of a matrix file */

void
pg_load_series_init(struct pg_load_series *s, size_t max)
{
	memset(s, 0, sizeof(*s));
	s->max = max ? max : PG_LOAD_MAX_SAMPLES;
}

void
pg_load_series_release(struct pg_load_series *s)
{
	if (!s)
		return;
	free(s->s);
	s->s = NULL;
	s->n = s->cap = 0;
}

void
pg_load_series_reset(struct pg_load_series *s)
{
	s->n = 0;
	s->vm[0] = 0;
	s->info[0] = 0;
}

int
pg_load_series_push(struct pg_load_series *s, const struct pg_load_sample *x)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		struct pg_load_sample *p;

		if (s->n >= s->max)
			return pg_error(PG_ETOOBIG, "load", "%s: more than %zu samples", s->vm,
					s->max);
		if (ncap > s->max)
			ncap = s->max;
		p = realloc(s->s, ncap * sizeof(*p));
		if (!p)
			return pg_error(PG_ENOMEM, "load", "%s: %zu samples", s->vm, ncap);
		s->s = p;
		s->cap = ncap;
	}
	s->s[s->n++] = *x;
	return 0;
}

void
pgi_load_set_name(char dst[128], const char *src, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; i < len && j < 127; i++)
		if (src[i] >= 0x20 &&
		    src[i] < 0x7f) /* isprint in the C locale, without its table */
			dst[j++] = src[i];
	dst[j] = 0;
}

#define LINES_BUF (1u << 16)
#define LINES_PAD 64 /* initialised bytes after the buffer, for 64-byte reads */
#define FAST_ROWS 64 /* rows a bulk call takes at most */

/* How far the number scans may read from a line: into the buffer's padding
 * when the line is in the buffer (its bytes are all initialised), else to
 * the line's NUL. */
static const char *
lines_lim(const struct load_lines *l, const char *line, size_t len)
{
	if (l->buf && line >= l->buf && line < l->buf + LINES_BUF)
		return l->buf + LINES_BUF + LINES_PAD;
	return line + len + 1;
}

void
pgi_load_lines_init(struct load_lines *l, FILE *f)
{
	memset(l, 0, sizeof(*l));
	l->f = f;
}

void
pgi_load_lines_release(struct load_lines *l)
{
	if (!l)
		return;
	free(l->buf);
	l->buf = NULL;
}

/* The bulk path (pgi_load_fast_rows) over the whole lines in the buffer:
 * the rows taken, consumed. */
static size_t
lines_fast(struct load_lines *l, char sep, const char *prefix, size_t plen, int nonneg, double *v,
	   size_t n)
{
	const char *q;
	size_t got;

	if (!l->buf || l->end - l->beg < 64)
		return 0;
	q = pgi_load_fast_rows(l->buf + l->beg, l->buf + l->end, l->buf + LINES_BUF + LINES_PAD,
			       sep, prefix, plen, nonneg, v, n, FAST_ROWS, &got);
	l->beg = (size_t)(q - l->buf);
	return got;
}

/* Drops the rest of a line too long to keep; 1 when its newline was found. */
static int
lines_skip(struct load_lines *l)
{
	for (;;) {
		char *nl = memchr(l->buf + l->beg, '\n', l->end - l->beg);
		if (nl) {
			l->beg = (size_t)(nl - l->buf) + 1;
			return 1;
		}
		l->end = fread(l->buf, 1, LINES_BUF - 1, l->f);
		l->beg = 0;
		if (l->end == 0) {
			l->eof = 1;
			return 0;
		}
	}
}

int
pgi_load_lines_next(struct load_lines *l, char **line, size_t *len)
{
	if (!l->buf && !(l->buf = calloc(1, LINES_BUF + LINES_PAD)))
		return PG_ENOMEM;
	for (;;) {
		char *p = l->buf + l->beg, *nl = memchr(p, '\n', l->end - l->beg);
		size_t n;

		if (!nl && l->eof && l->beg == l->end)
			return 0;
		if (nl || l->eof) {
			n = nl ? (size_t)(nl - p) : l->end - l->beg;
			l->beg += n + (nl != NULL);
			if (n >= LOAD_LINE_MAX - 1)
				return PG_ETOOBIG;
			if (n && p[n - 1] == '\r')
				n--;
			p[n] = 0; /* the newline's place, or the spare byte at the end */
			*line = p;
			*len = n;
			return 1;
		}
		if (l->end - l->beg >= LOAD_LINE_MAX - 1) {
			lines_skip(l);
			return PG_ETOOBIG;
		}
		memmove(l->buf, p, l->end - l->beg);
		l->end -= l->beg;
		l->beg = 0;
		n = fread(l->buf + l->end, 1, LINES_BUF - 1 - l->end, l->f);
		l->end += n;
		if (n == 0)
			l->eof = 1;
	}
}

/* Splits at sep in place; returns the field count (at most max). */
size_t
pgi_load_split_fields(char *line, char sep, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		char *e = strchr(p, sep);

		if (n < max)
			fields[n] = p;
		n++;
		if (!e)
			break;
		*e = 0;
		p = e + 1;
	}
	return n;
}

int
pgi_load_is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

/* A Bitbrains row's sample; v: its 11 values, none below 0, v[0] <= 9e15. */
static void
bb_sample(const double *v, struct pg_load_sample *s)
{
	/* The published files carry seconds despite the "[ms]" header. */
	s->ts_ms = v[0] < 1e11 ? (int64_t)(v[0] * 1000.0) : (int64_t)v[0];
	/* Shares above 100 % (a busy VM past its provisioned MHz) are clipped here. */
	s->v[PG_LOAD_CPU] = v[4] > 100 ? 100 : v[4];
	s->v[PG_LOAD_MEM] = v[5] > 0 ? 100.0 * v[6] / v[5] : 0;
	if (s->v[PG_LOAD_MEM] > 100)
		s->v[PG_LOAD_MEM] = 100;
	s->v[PG_LOAD_DISK_RD] = v[7];
	s->v[PG_LOAD_DISK_WR] = v[8];
	s->v[PG_LOAD_NET_RX] = v[9];
	s->v[PG_LOAD_NET_TX] = v[10];
}

static int
bb_read_lines(struct load_lines *lines, const char *name, struct pg_load_series *out)
{
	static const char *const cols[BB_COLS] = {"Timestamp [ms]",
						  "CPU cores",
						  "CPU capacity provisioned [MHZ]",
						  "CPU usage [MHZ]",
						  "CPU usage [%]",
						  "Memory capacity provisioned [KB]",
						  "Memory usage [KB]",
						  "Disk read throughput [KB/s]",
						  "Disk write throughput [KB/s]",
						  "Network received throughput [KB/s]",
						  "Network transmitted throughput [KB/s]"};
	char *line, *fld[BB_COLS + 1];
	size_t lineno = 0, len;
	int rc;

	/* Appends: a VM's month files are read one after the other. */
	for (;;) {
		double v[BB_COLS], bulk[FAST_ROWS * BB_COLS];
		struct pg_load_sample s;
		size_t nf, got = lines_fast(lines, ';', NULL, 0, 1, bulk, BB_COLS);

		/* Rows of plain decimals, none below 0, in bulk; the others one by one. */
		for (size_t i = 0; i < got; i++) {
			lineno++;
			bb_sample(bulk + i * BB_COLS, &s);
			if (out->n < out->cap) {
				out->s[out->n++] = s;
				continue;
			}
			rc = pg_load_series_push(out, &s);
			if (rc < 0)
				return pg_error(rc, "load", "%s:%zu: %s", name, lineno,
						pg_last_error());
		}
		if (got)
			continue;
		if ((rc = pgi_load_lines_next(lines, &line, &len)) <= 0)
			break;
		lineno++;
		if (pgi_load_parse_row(line, lines_lim(lines, line, len), ';', v, BB_COLS) == 0)
			goto parsed; /* a good row in one pass */
		if (pgi_load_is_blank(line))
			continue;
		nf = pgi_load_split_fields(line, ';', fld, BB_COLS + 1);
		if (nf != BB_COLS)
			return pg_error(PG_EFORMAT, "load", "%s:%zu: %zu fields, expected %d", name,
					lineno, nf, BB_COLS);
		if (lineno == 1 && !isdigit((unsigned char)fld[0][strspn(fld[0], " \t")])) {
			/* The header: check the first column names what we expect. */
			const char *h = fld[0] + strspn(fld[0], " \t");
			if (strncmp(h, cols[0], strlen(cols[0])) != 0)
				return pg_error(PG_EFORMAT, "load",
						"%s:1: header does not start with '%s'", name,
						cols[0]);
			continue;
		}
		for (size_t i = 0; i < BB_COLS; i++)
			if (pgi_load_parse_double(fld[i], &v[i]) < 0)
				return pg_error(PG_EFORMAT, "load",
						"%s:%zu: column '%s' is not a finite number", name,
						lineno, cols[i]);
	parsed:
		for (size_t i = 1; i < BB_COLS; i++)
			if (v[i] < 0)
				return pg_error(PG_EFORMAT, "load",
						"%s:%zu: column '%s' is negative", name, lineno,
						cols[i]);
		if (v[0] < 0 || v[0] > 9e15)
			return pg_error(PG_EFORMAT, "load", "%s:%zu: timestamp %.17g out of range",
					name, lineno, v[0]);
		bb_sample(v, &s);
		if (out->n < out->cap) {
			out->s[out->n++] = s; /* room: no call */
			continue;
		}
		rc = pg_load_series_push(out, &s);
		if (rc < 0)
			return pg_error(rc, "load", "%s:%zu: %s", name, lineno, pg_last_error());
	}
	if (rc == PG_ENOMEM)
		return pg_error(rc, "load", "%s: line buffer", name);
	if (rc < 0)
		return pg_error(rc, "load", "%s:%zu: line longer than %d bytes", name, lineno + 1,
				LOAD_LINE_MAX);
	if (ferror(lines->f))
		return pg_error(PG_EIO, "load", "%s: read error", name);
	return 0;
}

int
pgi_load_bitbrains_read(FILE *f, const char *name, struct pg_load_series *out)
{
	struct load_lines lines;
	int rc;

	pgi_load_lines_init(&lines, f);
	rc = bb_read_lines(&lines, name, out);
	pgi_load_lines_release(&lines);
	return rc;
}

/* ---- Bitbrains collector: a folder of <vm>.csv files, one file, or the
 * parent of month folders (rnd/2013-7/1.csv, rnd/2013-8/1.csv, ...), where
 * one VM's months are read in order into one series ---- */

struct bb_file {
	char *path;
	char vm[128];
	size_t month; /* index of its month folder in time order; 0 without */
};

struct bb_state {
	struct bb_file *files;
	size_t nfiles, cap, next;
};

static void
bb_close(void *st)
{
	struct bb_state *b = st;

	if (!b)
		return;
	for (size_t i = 0; i < b->nfiles; i++)
		free(b->files[i].path);
	free(b->files);
	free(b);
}

/* Numeric names (1.csv, 2.csv, 10.csv; 2013-7, 2013-10) sort by number. */
static int
cmp_name(const char *x, const char *y)
{
	while (*x && *y) {
		if (isdigit((unsigned char)*x) && isdigit((unsigned char)*y)) {
			size_t lx = strspn(x, "0123456789"), ly = strspn(y, "0123456789");
			int c;

			if (lx != ly)
				return lx < ly ? -1 : 1;
			if ((c = strncmp(x, y, lx)) != 0)
				return c;
			x += lx;
			y += ly;
			continue;
		}
		if (*x != *y)
			return (unsigned char)*x < (unsigned char)*y ? -1 : 1;
		x++;
		y++;
	}
	return *x ? 1 : *y ? -1 : 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return cmp_name(*(char *const *)a, *(char *const *)b);
}

static int
cmp_file(const void *a, const void *b)
{
	const struct bb_file *x = a, *y = b;
	int c = cmp_name(x->vm, y->vm);

	if (c)
		return c;
	return x->month < y->month ? -1 : x->month > y->month;
}

static int
bb_add(struct bb_state *b, const char *dir, const char *name, size_t month)
{
	const char *dot = strrchr(name, '.');
	struct bb_file *f;

	if (b->nfiles == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		struct bb_file *p = realloc(b->files, ncap * sizeof(*p));
		if (!p)
			return pg_error(PG_ENOMEM, "load", "file list");
		b->files = p;
		b->cap = ncap;
	}
	f = &b->files[b->nfiles];
	if (dir ? asprintf(&f->path, "%s/%s", dir, name) < 0 : !(f->path = strdup(name)))
		return pg_error(PG_ENOMEM, "load", "file list");
	name = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
	dot = strrchr(name, '.');
	pgi_load_set_name(f->vm, name, dot ? (size_t)(dot - name) : strlen(name));
	f->month = month;
	b->nfiles++;
	return 0;
}

/* The .csv files of dir; their count in *n. */
static int
bb_scan(struct bb_state *b, const char *dir, size_t month, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	*n = 0;
	if (!d)
		return pg_error(PG_ENOENT, "load", "'%s': cannot read folder", dir);
	while (rc == 0 && (de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (l < 5 || strcmp(de->d_name + l - 4, ".csv") != 0)
			continue;
		rc = bb_add(b, dir, de->d_name, month);
		(*n)++;
	}
	closedir(d);
	return rc;
}

/* Subfolders of dir, sorted by name (months: 2013-7 < 2013-8 < 2013-10). */
static int
bb_subdirs(const char *dir, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;
	int rc = 0;

	*n = 0;
	if (!d)
		return pg_error(PG_ENOENT, "load", "'%s': cannot read folder", dir);
	while (rc == 0 && (de = readdir(d))) {
		char *p;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			rc = pg_error(PG_ENOMEM, "load", "folder list");
			break;
		}
		if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
			free(p);
			continue;
		}
		if (*n == cap) {
			char **q = realloc(v, (cap ? cap * 2 : 16) * sizeof(*q));
			if (!q) {
				free(p);
				rc = pg_error(PG_ENOMEM, "load", "folder list");
				break;
			}
			v = q;
			cap = cap ? cap * 2 : 16;
		}
		v[(*n)++] = p;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), cmp_str);
	*out = v;
	return rc;
}

static int
bb_open(const char *arg, void **state)
{
	struct bb_state *b = calloc(1, sizeof(*b));
	struct stat st;
	char **months = NULL;
	size_t nmonths = 0, n = 0;
	int rc = 0;

	if (!b)
		return pg_error(PG_ENOMEM, "load", "bitbrains state");
	if (stat(arg, &st) != 0) {
		rc = pg_error(PG_ENOENT, "load", "'%s': %s", arg, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = bb_add(b, NULL, arg, 0);
		goto out;
	}
	rc = bb_scan(b, arg, 0, &n);
	if (rc == 0 && n == 0) {
		/* The parent of month folders. */
		rc = bb_subdirs(arg, &months, &nmonths);
		for (size_t i = 0; rc == 0 && i < nmonths; i++)
			rc = bb_scan(b, months[i], i, &n);
	}
	if (rc == 0 && b->nfiles == 0)
		rc = pg_error(PG_ENOENT, "load",
			      "'%s': no .csv files, nor month folders (2013-7/...) holding them",
			      arg);
	if (rc == 0)
		qsort(b->files, b->nfiles, sizeof(*b->files), cmp_file);
	if (rc == 0 && nmonths)
		pg_info("load", "bitbrains '%s': %zu month folders, %zu files", arg, nmonths,
			b->nfiles);
out:
	for (size_t i = 0; i < nmonths; i++)
		free(months[i]);
	free(months);
	if (rc < 0) {
		bb_close(b);
		return rc;
	}
	*state = b;
	return 0;
}

/* One VM: every month's file of it, appended in month order. */
static int
bb_next(void *st, struct pg_load_series *out)
{
	struct bb_state *b = st;
	size_t first;
	int rc = 0;

	if (b->next >= b->nfiles)
		return 0;
	pg_load_series_reset(out);
	first = b->next;
	snprintf(out->vm, sizeof(out->vm), "%s", b->files[first].vm);
	for (; b->next < b->nfiles && strcmp(b->files[b->next].vm, out->vm) == 0; b->next++) {
		const char *path = b->files[b->next].path;
		FILE *f;

		if (rc < 0)
			continue; /* the VM is rejected: skip its other months */
		f = fopen(path, "r");
		if (!f) {
			rc = pg_error(PG_ENOENT, "load", "'%s': %s", path, strerror(errno));
			continue;
		}
		rc = pgi_load_bitbrains_read(f, path, out);
		fclose(f);
	}
	return rc < 0 ? rc : 1;
}

const struct pg_load_ops pg_load_bitbrains_ops = {
    .name = "bitbrains",
    .help = "bitbrains:PATH   Bitbrains GWA-T-12 traces: a folder of <vm>.csv files, one file, "
	    "or the parent of month folders (rnd/2013-7/...)",
    .open = bb_open,
    .next = bb_next,
    .close = bb_close,
};

/* ---- our plain CSV ---- */

static const char csv_header[] = "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,"
				 "net_rx_kbps,net_tx_kbps";

void
pgi_load_csv_reader_init(struct load_csv_reader *r, FILE *f, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	r->name = name;
	pgi_load_lines_init(&r->lines, f);
}

void
pgi_load_csv_reader_release(struct load_csv_reader *r)
{
	if (!r)
		return;
	free(r->pending);
	r->pending = NULL;
	pgi_load_lines_release(&r->lines);
}

/* Parses one row into vm name and sample; comma: its first, lim: where 8-byte reads stop. */
static int
csv_row(struct load_csv_reader *r, char *line, const char *comma, const char *lim, size_t lineno,
	char vm[128], struct pg_load_sample *s)
{
	char *fld[CSV_COLS + 1];
	double v, f[CSV_COLS - 1];
	size_t nf;
	int ok = 1;

	/* A good row in one pass; any fault goes the field-by-field way for its message. */
	if (comma && pgi_load_parse_row(comma + 1, lim, ',', f, CSV_COLS - 1) == 0 && f[0] >= 0 &&
	    f[0] <= 9.2e18) {
		/* vm: the caller named the row's VM from the same first field */
		for (size_t i = 0; i < PG_LOAD_NMETRICS; i++) {
			s->v[i] = f[1 + i];
			ok &= f[1 + i] >= 0;
		}
		if (vm[0] && ok) {
			s->ts_ms = (int64_t)f[0];
			s->v[PG_LOAD_CPU] = load_pct(s->v[PG_LOAD_CPU]);
			s->v[PG_LOAD_MEM] = load_pct(s->v[PG_LOAD_MEM]);
			return 0;
		}
	}
	nf = pgi_load_split_fields(line, ',', fld, CSV_COLS + 1);
	if (nf != CSV_COLS)
		return pg_error(PG_EFORMAT, "load", "%s:%zu: %zu fields, expected %d", r->name,
				lineno, nf, CSV_COLS);
	pgi_load_set_name(vm, fld[0], strlen(fld[0]));
	if (!vm[0])
		return pg_error(PG_EFORMAT, "load", "%s:%zu: empty vm name", r->name, lineno);
	if (pgi_load_parse_double(fld[1], &v) < 0 || v < 0 || v > 9.2e18)
		return pg_error(PG_EFORMAT, "load", "%s:%zu: bad timestamp_ms", r->name, lineno);
	s->ts_ms = (int64_t)v;
	for (size_t i = 0; i < PG_LOAD_NMETRICS; i++) {
		if (pgi_load_parse_double(fld[2 + i], &s->v[i]) < 0)
			return pg_error(PG_EFORMAT, "load",
					"%s:%zu: field %zu is not a finite number", r->name, lineno,
					i + 3);
		if (s->v[i] < 0)
			return pg_error(PG_EFORMAT, "load", "%s:%zu: field %zu is negative",
					r->name, lineno, i + 3);
	}
	/* CPU and memory are shares: above 100 % is clipped where it is read. */
	for (size_t i = PG_LOAD_CPU; i <= PG_LOAD_MEM; i++)
		if (s->v[i] > 100)
			s->v[i] = 100;
	return 0;
}

/* The VM a row names (its first field, cleaned) into vm, *same = 1 when it is
 * cur by its bytes; returns its first comma. */
static char *
row_vm(char *line, size_t len, const char cur[128], char vm[128], int *same)
{
	char *comma = memchr(line, ',', len);
	size_t nl = comma ? (size_t)(comma - line) : len;

	*same = cur[0] && nl < 128 && cur[nl] == 0 && memcmp(line, cur, nl) == 0;
	if (*same)
		memcpy(vm, cur, nl + 1); /* the current VM again, as most rows are */
	else
		pgi_load_set_name(vm, line, nl);
	return comma;
}

/* More rows of out's VM in the bulk form (plain decimals, none below 0),
 * once a row of it was read well: the rows taken; *err set when the series
 * is full. */
static size_t
csv_bulk(struct load_csv_reader *r, struct pg_load_series *out, int *err)
{
	double bulk[FAST_ROWS * (CSV_COLS - 1)];
	size_t got;

	if (r->pending || r->eof || !r->rows_ok || *err || !out->vm[0])
		return 0;
	got = lines_fast(&r->lines, ',', out->vm, strlen(out->vm), 1, bulk, CSV_COLS - 1);

	for (size_t i = 0; i < got; i++) {
		const double *f = bulk + i * (CSV_COLS - 1);
		struct pg_load_sample s;
		int rc;

		r->line++;
		s.ts_ms = (int64_t)f[0]; /* below 10^15: the bulk path's numbers */
		for (size_t m = 0; m < PG_LOAD_NMETRICS; m++)
			s.v[m] = f[1 + m];
		s.v[PG_LOAD_CPU] = load_pct(s.v[PG_LOAD_CPU]);
		s.v[PG_LOAD_MEM] = load_pct(s.v[PG_LOAD_MEM]);
		if (out->n < out->cap)
			out->s[out->n++] = s;
		else if ((rc = pg_load_series_push(out, &s)) < 0) {
			*err = rc; /* the VM is rejected; its other rows skipped */
			break;
		}
		r->rows_ok++;
	}
	return got;
}

int
pgi_load_csv_next(struct load_csv_reader *r, struct pg_load_series *out)
{
	char pend[LOAD_LINE_MAX], *line;
	char vm[128];
	struct pg_load_sample s;
	int rc, err = 0, same;

	pg_load_series_reset(out);
	for (;;) {
		size_t lineno, len;
		char *comma;

		if (csv_bulk(r, out, &err))
			continue;
		if (r->pending) {
			snprintf(pend, sizeof(pend), "%s", r->pending);
			free(r->pending);
			r->pending = NULL;
			line = pend;
			len = strlen(pend);
			lineno = r->pending_line;
		} else {
			if (r->eof)
				break;
			rc = pgi_load_lines_next(&r->lines, &line, &len);
			lineno = ++r->line;
			if (rc == 0) {
				r->eof = 1;
				break;
			}
			if (rc == PG_ENOMEM) {
				r->eof = 1;
				return pg_error(rc, "load", "%s: line buffer", r->name);
			}
			if (rc < 0) {
				if (!err)
					err = pg_error(PG_ETOOBIG, "load",
						       "%s:%zu: line longer than %d bytes", r->name,
						       lineno, LOAD_LINE_MAX);
				if (!out->vm[0])
					snprintf(out->vm, sizeof(out->vm), "?");
				continue;
			}
			if (pgi_load_is_blank(line))
				continue;
			if (!r->header_done) {
				r->header_done = 1;
				if (strncmp(line, "vm,", 3) == 0) {
					if (strcmp(line, csv_header) != 0) {
						r->eof = 1;
						return pg_error(PG_EFORMAT, "load",
								"%s:1: header is not '%s'", r->name,
								csv_header);
					}
					continue;
				}
			}
		}
		/* The first field names the VM even when the rest of the row is bad. */
		comma = row_vm(line, len, out->vm, vm, &same);
		if (out->vm[0] && !same && strcmp(vm, out->vm) != 0) {
			r->pending = strdup(line);
			r->pending_line = lineno;
			if (!r->pending)
				return pg_error(PG_ENOMEM, "load", "%s:%zu", r->name, lineno);
			break;
		}
		if (!out->vm[0])
			snprintf(out->vm, sizeof(out->vm), "%s", vm);
		if (err)
			continue; /* the VM is rejected; skip the rest of its rows */
		if (!r->rows_ok) {
			/* A file in another layout: one error for the file, not one per VM. */
			size_t nf = 1;

			for (const char *p = line; (p = strchr(p, ',')); p++)
				nf++;
			if (nf != CSV_COLS) {
				r->eof = 1;
				free(r->pending);
				r->pending = NULL;
				return pg_error(
				    PG_EFORMAT, "load",
				    "%s:%zu: %zu fields, expected %d (%s): not our plain "
				    "CSV",
				    r->name, lineno, nf, CSV_COLS, csv_header);
			}
		}
		rc = csv_row(r, line, comma, lines_lim(&r->lines, line, len), lineno, vm, &s);
		if (rc == 0 && out->n < out->cap)
			out->s[out->n++] = s; /* room: no call */
		else if (rc == 0)
			rc = pg_load_series_push(out, &s);
		if (rc == 0)
			r->rows_ok++;
		if (rc < 0)
			err = rc;
	}
	if (err)
		return err;
	return out->vm[0] ? 1 : 0;
}

struct csv_state {
	FILE *f;
	char *path;
	struct load_csv_reader r;
};

static int
csv_open(const char *arg, void **state)
{
	struct csv_state *c = calloc(1, sizeof(*c));

	if (!c)
		return pg_error(PG_ENOMEM, "load", "csv state");
	c->path = strdup(arg);
	c->f = strcmp(arg, "-") == 0 ? stdin : fopen(arg, "r");
	if (!c->path || !c->f) {
		int rc = pg_error(PG_ENOENT, "load", "'%s': %s", arg, strerror(errno));
		free(c->path);
		free(c);
		return rc;
	}
	pgi_load_csv_reader_init(&c->r, c->f, c->path);
	*state = c;
	return 0;
}

static int
csv_next(void *st, struct pg_load_series *out)
{
	struct csv_state *c = st;

	return pgi_load_csv_next(&c->r, out);
}

static void
csv_close(void *st)
{
	struct csv_state *c = st;

	if (!c)
		return;
	pgi_load_csv_reader_release(&c->r);
	if (c->f && c->f != stdin)
		fclose(c->f);
	free(c->path);
	free(c);
}

const struct pg_load_ops pg_load_csv_ops = {
    .name = "csv",
    .help = "csv:FILE         plain CSV (vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,"
	    "disk_write_kbps,net_rx_kbps,net_tx_kbps); '-' is stdin",
    .open = csv_open,
    .next = csv_next,
    .close = csv_close,
};

int
pg_load_csv_write(void *file, const struct pg_load_series *s, int header)
{
	FILE *f = file;

	if (header && fprintf(f, "%s\n", csv_header) < 0)
		return pg_error(PG_EIO, "load", "write error");
	for (size_t i = 0; i < s->n; i++) {
		const double *v = s->s[i].v;
		if (fprintf(f, "%s,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", s->vm,
			    (long long)s->s[i].ts_ms, v[0], v[1], v[2], v[3], v[4], v[5]) < 0)
			return pg_error(PG_EIO, "load", "write error");
	}
	return 0;
}

/* ---- numeric matrix (payguard load kmeans) ---- */

static int parse_matrix_z(const char *text, size_t len, const char *lim, const char *name,
			  double **x, size_t *n, size_t *d);

/* Bytes of zeros a matrix text is given after its end: the NUL the scanner
 * stops at, and room for its 64-byte reads (pgi_load_fast_rows). */
#define MATRIX_PAD 64

int
pg_load_parse_matrix(const char *text, size_t len, const char *name, double **x, size_t *n,
		     size_t *d)
{
	char *z;
	int rc;

	if (len >= 6 && memcmp(text, "\x93NUMPY", 6) == 0)
		return pg_load_parse_npy(text, len, name, x, n, d);
	if (!(z = malloc(len + MATRIX_PAD)))
		return pg_error(PG_ENOMEM, "load", "%s: matrix", name);
	memcpy(z, text, len);
	memset(z + len, 0, MATRIX_PAD);
	rc = parse_matrix_z(z, len, z + len + MATRIX_PAD, name, x, n, d);
	free(z);
	return rc;
}

#define MATRIX_COLS 1024

static inline const char *
skip_blanks(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* One field at p on a line ending at le: its number, and p past it. */
static int
matrix_num(const char **pp, const char *le, double *v)
{
	const char *p = skip_blanks(*pp, le);
	size_t n = pgi_load_num_scan_z(p, v);

	if (!n)
		return -1;
	for (p += n; p < le && (*p == ' ' || *p == '\t' || *p == '\r'); p++)
		;
	*pp = p;
	return 0;
}

static size_t
count_fields(const char *p, const char *le)
{
	size_t nf = 1;

	for (; (p = memchr(p, ',', (size_t)(le - p))); p++)
		nf++;
	return nf;
}

static int
is_blank_span(const char *p, const char *e)
{
	for (; p < e; p++)
		if (!isspace((unsigned char)*p))
			return 0;
	return 1;
}

/* One data row of cols numbers into row; the fields are parsed in place. */
static int
matrix_row(const char *p, const char *le, size_t cols, double *row, const char *name, size_t lineno)
{
	for (size_t j = 0; j < cols; j++) {
		if (matrix_num(&p, le, &row[j]) < 0 || (p < le && *p != ',')) {
			const char *fe = memchr(p, ',', (size_t)(le - p));
			if (memchr(p, 0, (size_t)((fe ? fe : le) - p)))
				return pg_error(PG_EFORMAT, "load", "%s:%zu: NUL byte", name,
						lineno);
			return pg_error(PG_EFORMAT, "load",
					"%s:%zu: field %zu is not a finite number", name, lineno,
					j + 1);
		}
		if (j + 1 < cols) {
			if (p == le)
				return pg_error(PG_EFORMAT, "load",
						"%s:%zu: %zu fields, expected %zu", name, lineno,
						j + 1, cols);
			p++; /* the comma */
		} else if (p != le) {
			return pg_error(PG_EFORMAT, "load", "%s:%zu: %zu fields, expected %zu",
					name, lineno, count_fields(p, le) + j, cols);
		}
	}
	return 0;
}

/*
 * Room for cap doubles. A large matrix goes in memory aligned to 2 MiB and
 * marked for transparent huge pages: writing it then faults once per 2 MiB,
 * not per 4 KiB (the faults were a fifth of the time of reading a matrix).
 */
static double *
matrix_grow(double *m, size_t cap)
{
	size_t bytes = cap * sizeof(double), huge = (size_t)2 << 20;
	void *p;

	if (m || bytes < 4 * huge)
		return realloc(m, bytes);
	if (posix_memalign(&p, huge, bytes) != 0)
		return NULL;
#ifdef MADV_HUGEPAGE
	(void)madvise(p, bytes & ~(huge - 1), MADV_HUGEPAGE); /* advice: no matter if refused */
#endif
	return p;
}

/* The CSV matrix in text[0..len), with text[len] == 0 and the bytes up to
 * lim readable: the numbers are scanned up to the byte that ends them, which
 * a NUL or a newline at the latest does. */
static int
parse_matrix_z(const char *text, size_t len, const char *lim, const char *name, double **x,
	       size_t *n, size_t *d)
{
	size_t rows = 0, cols = 0, cap = 0, lineno = 0;
	double *m = NULL;
	const char *p = text, *end = text + len;
	int rc = 0;

	while (p < end) {
		const char *eol, *ls = p, *le;

		lineno++;
		if (cols && (rows + 1) * cols <= cap) {
			/* Good rows in one pass, newlines included; any fault goes the
			 * checking way below for its message. */
			size_t got;
			const char *q =
			    pgi_load_fast_rows(p, end, lim, ',', NULL, 0, 0, m + rows * cols, cols,
					       cap / cols - rows, &got);
			if (got) { /* plain short decimals, field ends found 64 bytes at a time */
				p = q;
				rows += got;
				lineno += got - 1;
				continue;
			}
			/* One row in another form (an exponent, a long number) in one
			 * pass, then back to the bulk path; any fault goes the checking
			 * way below for its message. */
			q = pgi_load_parse_lines(p, lim, ',', m + rows * cols, cols, 1, &got);
			if (got && (q == end || q[-1] == '\n')) {
				p = q;
				rows++;
				continue;
			}
		}
		eol = memchr(p, '\n', (size_t)(end - p));
		le = eol ? eol : end;
		p = eol ? eol + 1 : end;
		if (le > ls && le[-1] == '\r')
			le--;
		if (is_blank_span(ls, le))
			continue;
		if (rows == 0 && cols == 0) {
			const char *q = ls;
			double v;

			cols = count_fields(ls, le);
			if (cols > MATRIX_COLS) {
				rc = pg_error(PG_ETOOBIG, "load", "%s:%zu: more than %d columns",
					      name, lineno, MATRIX_COLS);
				goto out;
			}
			if (matrix_num(&q, le, &v) < 0 || (q < le && *q != ','))
				continue; /* a header line */
		}
		if ((rows + 1) * cols > cap) {
			/* First: the rows the text holds if its lines are half as long as
			 * this one (numbers vary in length; growing later copies it all,
			 * and room never written costs address space only). */
			size_t ncap =
			    cap ? cap * 2 : ((size_t)(end - ls) / (size_t)(p - ls) * 2 + 16) * cols;
			double *q = matrix_grow(m, ncap);
			if (!q) {
				rc = pg_error(PG_ENOMEM, "load", "%s: matrix", name);
				goto out;
			}
			m = q;
			cap = ncap;
		}
		rc = matrix_row(ls, le, cols, m + rows * cols, name, lineno);
		if (rc < 0)
			goto out;
		rows++;
	}
	if (rows == 0) {
		rc = pg_error(PG_EFORMAT, "load", "%s: no data rows", name);
		goto out;
	}
	*x = m;
	*n = rows;
	*d = cols;
	m = NULL;
out:
	free(m);
	return rc;
}

int
pg_load_read_matrix(const char *path, double **x, size_t *n, size_t *d)
{
	FILE *f = fopen(path, "r");
	struct stat st = {0};
	char *text = NULL;
	size_t len = 0, cap;
	int rc;

	if (!f)
		return pg_error(PG_ENOENT, "load", "'%s': %s", path, strerror(errno));
	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    st.st_size <= MATRIX_MAX && st.st_size % sysconf(_SC_PAGESIZE) != 0) {
		/* Mapped, not copied: the rest of the last page reads as zeros
		 * (mmap(2)), which is the NUL the scanner stops at. */
		void *mp = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE,
				fileno(f), 0);
		if (mp != MAP_FAILED) {
			const char *t = mp;
			size_t page = (size_t)sysconf(_SC_PAGESIZE);
			len = (size_t)st.st_size;
			rc = len >= 6 && memcmp(t, "\x93NUMPY", 6) == 0
				 ? pg_load_parse_npy(t, len, path, x, n, d)
				 : parse_matrix_z(t, len, t + (len + page - 1) / page * page, path,
						  x, n, d);
			munmap(mp, len);
			fclose(f);
			return rc;
		}
	}
	/* A regular file in one read of its size; a pipe by doubling. MATRIX_PAD spare bytes. */
	cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + MATRIX_PAD : 1 << 16;
	for (;;) {
		size_t got;
		if (len + MATRIX_PAD >= cap || !text) {
			size_t ncap = !text ? cap : cap * 2;
			char *q;
			if (len >= MATRIX_MAX || ncap > (size_t)MATRIX_MAX + MATRIX_PAD) {
				if (ncap > (size_t)MATRIX_MAX + MATRIX_PAD && len < MATRIX_MAX)
					ncap = (size_t)MATRIX_MAX + MATRIX_PAD;
				else {
					rc = pg_error(PG_ETOOBIG, "load",
						      "'%s': larger than %u bytes", path,
						      MATRIX_MAX);
					goto out;
				}
			}
			q = realloc(text, ncap);
			if (!q) {
				rc = pg_error(PG_ENOMEM, "load", "'%s'", path);
				goto out;
			}
			text = q;
			cap = ncap;
		}
		got = fread(text + len, 1, cap - MATRIX_PAD - len, f);
		len += got;
		if (got == 0 || (S_ISREG(st.st_mode) && len == (size_t)st.st_size))
			break;
	}
	if (ferror(f)) {
		rc = pg_error(PG_EIO, "load", "'%s': read error", path);
		goto out;
	}
	memset(text + len, 0, MATRIX_PAD);
	rc = len >= 6 && memcmp(text, "\x93NUMPY", 6) == 0
		 ? pg_load_parse_npy(text, len, path, x, n, d)
		 : parse_matrix_z(text, len, text + len + MATRIX_PAD, path, x, n, d);
out:
	free(text);
	fclose(f);
	return rc;
}
