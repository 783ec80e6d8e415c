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

/* Reads one Bitbrains GWA-T-12 file (one VM). name is used in errors. */
int load_bitbrains_read(FILE *f, const char *name, struct pg_load_series *out);

/* Our plain CSV: rows "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,...". */
struct load_csv_reader {
	FILE *f;
	const char *name;
	size_t line;
	char *pending; /* a row read ahead that starts the next VM */
	size_t pending_line;
	int header_done;
	int eof;
};
void load_csv_reader_init(struct load_csv_reader *r, FILE *f, const char *name);
void load_csv_reader_release(struct load_csv_reader *r);
int load_csv_next(struct load_csv_reader *r, struct pg_load_series *out);

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
void load_lv_record(const struct _virDomainStatsRecord *r, struct load_lv_counters *c, int *has_cpu,
		    int *has_mem, int *has_blk, int *has_net);

/* Strict number: the whole field, finite. */
int load_parse_double(const char *s, double *v);
/* Copies a VM name, keeping printable ASCII only. */
void load_set_name(char dst[128], const char *src, size_t len);

#endif
