/*
 * Private to src/load: the trace readers over a FILE * (so the fuzz harnesses
 * can feed them memory through fmemopen), and small helpers shared by the
 * collectors.
 */
#ifndef PAYGUARD_LOAD_INT_H
#define PAYGUARD_LOAD_INT_H

#include "payguard/load.h"

#include <stdio.h>

#define LOAD_LINE_MAX 4096 /* longest trace line accepted */

/* Throughputs whose feature is 0.5 (docs/load.md, "Features"). */
#define LOAD_DISK_REF 20480.0 /* KB/s of disk traffic */
#define LOAD_NET_REF  12800.0 /* KB/s of network traffic (~100 Mbit/s) */

/*
 * Lines of a FILE * through a 64 KB buffer (fread + memchr, not getc): each
 * is NUL-terminated in the buffer without its newline and CR, valid until
 * the next call. 1, 0 at the end, PG_ETOOBIG for a line of LOAD_LINE_MAX - 1
 * bytes or more (skipped; the next call gives the line after it), PG_ENOMEM.
 */
struct load_lines {
	FILE *f;
	char *buf;
	size_t beg, end;
	int eof;
};
void pgi_load_lines_init(struct load_lines *l, FILE *f);
void pgi_load_lines_release(struct load_lines *l);
int pgi_load_lines_next(struct load_lines *l, char **line, size_t *len);

/* Reads one Bitbrains GWA-T-12 file (one VM). name is used in errors. */
int pgi_load_bitbrains_read(FILE *f, const char *name, struct pg_load_series *out);

/* Our plain CSV: rows "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,...". */
struct load_csv_reader {
	FILE *f;
	const char *name;
	size_t line;
	char *pending; /* a row read ahead that starts the next VM */
	size_t pending_line;
	int header_done;
	int eof;
	size_t rows_ok; /* rows read well: before the first, a wrong layout stops the file */
	struct load_lines lines;
};
void pgi_load_csv_reader_init(struct load_csv_reader *r, FILE *f, const char *name);
void pgi_load_csv_reader_release(struct load_csv_reader *r);
int pgi_load_csv_next(struct load_csv_reader *r, struct pg_load_series *out);

/* libvirt: one domain's cumulative counters, and the bulk-record reader. */
struct load_lv_counters {
	char name[128];
	uint64_t t_ns;
	double cpu_ns, rd, wr, rx, tx; /* cumulative */
	double mem_pct;
	unsigned nvcpu;
	int seen;
};
struct _virDomainStatsRecord;
/* Reads one virConnectGetAllDomainStats record; says which groups it held. */
void pgi_load_lv_record(const struct _virDomainStatsRecord *r, struct load_lv_counters *c,
			int *has_cpu, int *has_mem, int *has_blk, int *has_net);

/*
 * The public traces whose rows are not grouped by VM (src/load/traces.c):
 * lines are fed in, then _finish sorts each VM's samples. Exposed for the
 * fuzz harness.
 */
enum load_trace_kind {
	LOAD_TRACE_AZURE,	   /* vm_cpu_readings-file-*.csv */
	LOAD_TRACE_AZURE_VMTABLE,  /* vmtable.csv */
	LOAD_TRACE_ALI_MACHINE,	   /* machine_usage.csv */
	LOAD_TRACE_ALI_CONTAINER,  /* container_usage.csv */
	LOAD_TRACE_GOOGLE_MACHINE, /* task_usage, per machine */
	LOAD_TRACE_GOOGLE_JOB,	   /* task_usage, per job */
};
struct load_trace;
struct load_trace *pgi_load_trace_new(enum load_trace_kind kind);
void pgi_load_trace_free(struct load_trace *t);
int pgi_load_trace_feed(struct load_trace *t, enum load_trace_kind kind, const char *buf,
			size_t len, const char *file);
int pgi_load_trace_finish(struct load_trace *t);
size_t pgi_load_trace_count(const struct load_trace *t);

/* CPU and memory shares: above 100 % is clipped where a collector reads it. */
static inline double
load_pct(double v)
{
	return v > 100 ? 100 : v;
}

/* systemd unit name to VM name: machine-qemu\x2d1\x2dweb.scope -> qemu-1-web. */
void pgi_load_cgroup_name(const char *unit, char out[128]);

/* Geometry of the load plot (src/load/plot.c), shared with its test. */
#define LOAD_PLOT_W	      1060
#define LOAD_PLOT_H	      700
#define LOAD_PLOT_ML	      90 /* frame: left, right, top, bottom margins */
#define LOAD_PLOT_MR	      370
#define LOAD_PLOT_MT	      50
#define LOAD_PLOT_MB	      80
#define LOAD_PLOT_PAD	      8.0 /* inside the frame: a marker at 0 or 1 stays inside */
#define LOAD_PLOT_LEGEND_X    (LOAD_PLOT_W - LOAD_PLOT_MR + 34)
#define LOAD_PLOT_LEGEND_Y(t) (LOAD_PLOT_MT + 38 + 26.0 * (double)(t)) /* text baseline */

/*
 * Strict number (src/load/num.c): the whole field (spaces and tabs around it,
 * a trailing CR), decimal, finite; correctly rounded as strtod. No hex, inf
 * or nan; an underflow gives the rounded value (a subnormal or 0).
 */
int pgi_load_parse_double(const char *s, double *v);
/*
 * The decimal number at [s, end) with no white space: the bytes it takes (0:
 * none there) and its value, correctly rounded as strtod; a magnitude beyond
 * DBL_MAX gives +-inf, which the readers refuse.
 */
size_t pgi_load_num_scan(const char *s, const char *end, double *v);
/* The same on NUL-terminated text, and an overflow is no number (0 bytes). */
size_t pgi_load_num_scan_z(const char *s, double *v);
/*
 * A whole NUL-terminated row of n numbers separated by sep, each as
 * pgi_load_parse_double takes it, into v: 0, or -1 on any fault (the caller then
 * splits the row field by field to say which). lim: the end of the memory
 * that may be read, or NULL: the scan reads 8 or 16 bytes at once below it,
 * past the NUL too (the bytes there need only be initialised), so a lim
 * 16 bytes or more past the NUL keeps every field on the fastest path.
 */
int pgi_load_parse_row(const char *p, const char *lim, char sep, double *v, size_t n);
/*
 * The same for a row that ends at a newline or a NUL: past the newline (at
 * the NUL), or NULL on any fault. The text must hold a NUL after its end.
 */
const char *pgi_load_parse_line(const char *p, const char *lim, char sep, double *v, size_t n);
/*
 * Good rows one after the other, as pgi_load_parse_line takes them, up to max of
 * them, into v (n values a row): where the first row it did not take starts
 * (or the NUL that ended the last one), and the rows taken in *rows.
 */
const char *pgi_load_parse_lines(const char *p, const char *lim, char sep, double *v, size_t n,
				 size_t max, size_t *rows);
/*
 * The bulk fast path of the row readers: rows of [prefix sep] n numbers
 * separated by sep, each row ending in a newline (a CR before it allowed),
 * blanks before a field allowed, every number a plain decimal of at most 15
 * bytes ([+-] digits [. digits], no exponent) -- what the bench files and
 * `payguard load export` hold. Field ends are found 64 bytes at a time. Up to
 * max rows into v (n values a row); with nonneg, a row with a value below 0
 * is not taken. Rows must end before end; reads stay below lim. Returns where
 * the first row it did not take starts (the caller's checking path then
 * takes that row, or says what is wrong with it); the rows taken in *rows.
 * The values are bit for bit those of pgi_load_parse_row.
 */
const char *pgi_load_fast_rows(const char *p, const char *end, const char *lim, char sep,
			       const char *prefix, size_t plen, int nonneg, double *v, size_t n,
			       size_t max, size_t *rows);
/* Copies a VM name, keeping printable ASCII only. */
void pgi_load_set_name(char dst[128], const char *src, size_t len);
/* Splits line at sep in place; returns the field count (at most max kept in f). */
size_t pgi_load_split_fields(char *line, char sep, char **f, size_t max);
/* 1 when s holds only white space. */
int pgi_load_is_blank(const char *s);

#endif
