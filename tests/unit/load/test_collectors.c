/*
 * Collector parsers on exact inputs: Bitbrains GWA-T-12 lines, our plain CSV
 * with bad rows (the error names file and line, the next VM still comes),
 * the Prometheus query_range parser, the numeric matrix reader, the reader
 * of libvirt bulk-stats records (the test driver leaves them empty), the
 * cgroup v2 collector on a cgroup tree laid out in a temporary folder (names
 * unescaped, CPU clipped, v1 refused), the public trace readers' errors and
 * Google sums, and the Prometheus source's spec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "load/load_int.h"
#include <libvirt/libvirt.h>
#include "payguard/error.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static FILE *
mem(const char *s)
{
	return fmemopen((void *)s, strlen(s), "r");
}

static void
test_bitbrains(void **state)
{
	/* Two lines as in the published fastStorage/1.csv (seconds in "[ms]"). */
	const char *txt =
	    "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage "
	    "[MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage "
	    "[KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork "
	    "received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n"
	    "1376314846;\t4;\t11703.99824;\t10912.027942;\t93.233333;\t67108864;\t6129274.666667;"
	    "\t0;"
	    "\t2.133333;\t0;\t0\n"
	    "1376315146;\t4;\t11703.99824;\t10890.176262;\t93.046667;\t67108864;\t6755221.333333;"
	    "\t0;"
	    "\t2.8;\t0.533333;\t0.2\n";
	struct pg_load_series s;
	FILE *f = mem(txt);

	(void)state;
	pg_load_series_init(&s, 0);
	assert_int_equal(pgi_load_bitbrains_read(f, "1.csv", &s), 0);
	fclose(f);
	assert_int_equal(s.n, 2);
	assert_true(s.s[0].ts_ms == 1376314846000LL);
	assert_true(fabs(s.s[1].v[PG_LOAD_CPU] - 93.046667) < 1e-9);
	assert_true(fabs(s.s[0].v[PG_LOAD_MEM] - 100.0 * 6129274.666667 / 67108864) < 1e-9);
	assert_true(fabs(s.s[1].v[PG_LOAD_NET_RX] - 0.533333) < 1e-12);
	/* Ragged line, non-numeric, NaN. */
	f = mem("1;2;3;4;5;6;7;8;9;10;11\n1;2;3\n");
	assert_int_equal(pgi_load_bitbrains_read(f, "r.csv", &s), PG_EFORMAT);
	fclose(f);
	assert_non_null(strstr(pg_last_error(), "r.csv:2: 3 fields, expected 11"));
	f = mem("1;2;3;4;x5;6;7;8;9;10;11\n");
	assert_int_equal(pgi_load_bitbrains_read(f, "n.csv", &s), PG_EFORMAT);
	fclose(f);
	assert_non_null(strstr(pg_last_error(), "n.csv:1: column 'CPU usage [%]'"));
	f = mem("1;2;3;4;5;6;7;8;nan;10;11\n");
	assert_int_equal(pgi_load_bitbrains_read(f, "nan.csv", &s), PG_EFORMAT);
	fclose(f);
	f = mem("1;2;3;4;5;6;7;8;inf;10;11\n");
	assert_int_equal(pgi_load_bitbrains_read(f, "inf.csv", &s), PG_EFORMAT);
	fclose(f);
	pg_load_series_release(&s);
}

static void
test_plain_csv(void **state)
{
	const char *txt = "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,"
			  "net_rx_kbps,net_tx_kbps\n"
			  "a,1000,10,20,1,2,3,4\n"
			  "a,2000,11,21,1,2,3,4\n"
			  "b,1000,10,20,1,2,3\n" /* ragged: b is rejected */
			  "b,2000,10,20,1,2,3,4\n"
			  "c,1000,NaN,20,1,2,3,4\n" /* NaN: c is rejected */
			  "d,1000,50,50,0,0,0,0\n";
	struct load_csv_reader r;
	struct pg_load_series s;
	FILE *f = mem(txt);

	(void)state;
	pg_load_series_init(&s, 0);
	pgi_load_csv_reader_init(&r, f, "fleet.csv");
	assert_int_equal(pgi_load_csv_next(&r, &s), 1);
	assert_string_equal(s.vm, "a");
	assert_int_equal(s.n, 2);
	assert_true(s.s[1].v[PG_LOAD_CPU] == 11);
	assert_int_equal(pgi_load_csv_next(&r, &s), PG_EFORMAT);
	assert_string_equal(s.vm, "b");
	assert_non_null(strstr(pg_last_error(), "fleet.csv:4: 7 fields, expected 8"));
	assert_int_equal(pgi_load_csv_next(&r, &s), PG_EFORMAT);
	assert_string_equal(s.vm, "c");
	assert_non_null(strstr(pg_last_error(), "fleet.csv:6: field 3"));
	assert_int_equal(pgi_load_csv_next(&r, &s), 1);
	assert_string_equal(s.vm, "d");
	assert_int_equal(pgi_load_csv_next(&r, &s), 0);
	pgi_load_csv_reader_release(&r);
	pgi_load_csv_reader_release(&r); /* _release: reusable, NULL-safe */
	pgi_load_csv_reader_release(NULL);
	fclose(f);
	pg_load_series_release(&s);
}

struct prom_acc {
	int n;
	double sum;
	char last[64];
};

static int
prom_cb(void *ctx, const char *vm, int64_t ts, double v)
{
	struct prom_acc *a = ctx;

	a->n++;
	a->sum += v;
	snprintf(a->last, sizeof(a->last), "%s@%lld", vm, (long long)ts);
	return 0;
}

static void
test_prom_parse(void **state)
{
	const char *ok = "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
			 "{\"metric\":{\"domain\":\"vm1\"},\"values\":[[1700000000,\"1.5\"],"
			 "[1700000060.5,\"2.5\"],[1700000120,\"NaN\"]]},"
			 "{\"metric\":{\"domain\":\"vm2\"},\"values\":[[1700000000,\"4\"]]}]}}";
	const char *err = "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse "
			  "error at char 3\"}";
	struct prom_acc a = {0};

	(void)state;
	assert_int_equal(pg_load_prom_parse(ok, strlen(ok), "domain", prom_cb, &a), 0);
	assert_int_equal(a.n, 3);
	assert_true(a.sum == 8.0);
	assert_string_equal(a.last, "vm2@1700000000000");
	assert_int_equal(pg_load_prom_parse(err, strlen(err), "domain", prom_cb, &a), PG_EIO);
	assert_non_null(strstr(pg_last_error(), "parse error at char 3"));
	assert_int_equal(pg_load_prom_parse("{", 1, "domain", prom_cb, &a), PG_EFORMAT);
	assert_int_equal(pg_load_prom_parse(ok, strlen(ok), "instance", prom_cb, &a), PG_EFORMAT);
}

/* The buffered line reader: CRLF, a last line without newline, lines across
 * the 64 KB buffer's end, a too-long line skipped and the next one read. */
static void
test_lines(void **state)
{
	size_t big = 200000, o = 0, len, count = 0;
	char *txt = malloc(big + 8192), *line;
	struct load_lines l;
	FILE *f;
	int rc;

	(void)state;
	while (o < big) {
		o += (size_t)sprintf(txt + o, "%zu,%s\r\n", count, count % 7 ? "x" : "yyyyyyyyyy");
		count++;
	}
	memset(txt + o, 'z', 5000);
	o += 5000;
	o += (size_t)sprintf(txt + o, "\nlast");
	f = fmemopen(txt, o, "r");
	pgi_load_lines_init(&l, f);
	for (size_t i = 0; i < count; i++) {
		char want[64];
		assert_int_equal(pgi_load_lines_next(&l, &line, &len), 1);
		snprintf(want, sizeof(want), "%zu,%s", i, i % 7 ? "x" : "yyyyyyyyyy");
		assert_string_equal(line, want);
		assert_int_equal(len, strlen(want));
	}
	assert_int_equal(pgi_load_lines_next(&l, &line, &len), PG_ETOOBIG);
	assert_int_equal(pgi_load_lines_next(&l, &line, &len), 1);
	assert_string_equal(line, "last");
	assert_int_equal(pgi_load_lines_next(&l, &line, &len), 0);
	rc = pgi_load_lines_next(&l, &line, &len);
	assert_int_equal(rc, 0);
	pgi_load_lines_release(&l);
	pgi_load_lines_release(NULL); /* _release is NULL-safe */
	fclose(f);
	free(txt);
}

static void
test_matrix(void **state)
{
	const char *txt = "a,b\n1,2\n3,4\n5,6\n";
	double *x = NULL;
	size_t n, d;

	(void)state;
	assert_int_equal(pg_load_parse_matrix(txt, strlen(txt), "m", &x, &n, &d), 0);
	assert_int_equal(n, 3);
	assert_int_equal(d, 2);
	assert_true(x[5] == 6);
	free(x);
	assert_int_equal(pg_load_parse_matrix("1,2\n3\n", 6, "m", &x, &n, &d), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "m:2: 1 fields, expected 2"));
	assert_int_equal(pg_load_parse_matrix("1,2\n3,inf\n", 10, "m", &x, &n, &d), PG_EFORMAT);
	/* Parsed in place: blanks around fields, CRLF, no newline at the end. */
	txt = " 1 ,\t2.5\r\n\n-3e0, .5";
	assert_int_equal(pg_load_parse_matrix(txt, strlen(txt), "m", &x, &n, &d), 0);
	assert_true(n == 2 && d == 2 && x[0] == 1 && x[1] == 2.5 && x[2] == -3 && x[3] == 0.5);
	free(x);
	assert_int_equal(pg_load_parse_matrix("1,2\n3,4,5\n", 10, "m", &x, &n, &d), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "m:2: 3 fields, expected 2"));
	assert_int_equal(pg_load_parse_matrix("1,2\n3,4x\n", 9, "m", &x, &n, &d), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "m:2: field 2 is not a finite number"));
	assert_int_equal(pg_load_parse_matrix("1,2\n3,0x4\n", 10, "m", &x, &n, &d), PG_EFORMAT);
	assert_int_equal(pg_load_parse_matrix("1,2\n3,\0\n", 7, "m", &x, &n, &d), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "NUL byte"));
}

/*
 * The readers' bulk path (pgi_load_fast_rows) on files long enough to use
 * it: the same samples as the row-by-row path gives (values from strtod of
 * each field), rows in another form among them, and a bad row far down
 * reported at its own line, which the bulk path must count.
 */
static void
test_bulk_readers(void **state)
{
	enum { N = 700 };
	char *txt = malloc(N * 160 + 512), *o;
	struct pg_load_series s;
	struct load_csv_reader r;
	double *x = NULL;
	size_t n, d;
	FILE *f;

	(void)state;
	assert_non_null(txt);
	/* A matrix: plain rows, an exponent and a 17-digit number every 97th row. */
	o = txt;
	for (int i = 0; i < N; i++)
		o += i % 97 == 5 ? sprintf(o, "%d.5e-3,-0.12345678901234567,%d\r\n", i, -i)
				 : sprintf(o, "%d.%03d,-%d.25,%d\n", i, i % 1000, i, i * 7);
	assert_int_equal(pg_load_parse_matrix(txt, (size_t)(o - txt), "m", &x, &n, &d), 0);
	assert_true(n == N && d == 3);
	for (int i = 0; i < N; i++) {
		char a[64], b[64], c[64];
		if (i % 97 == 5) {
			snprintf(a, sizeof(a), "%d.5e-3", i);
			snprintf(b, sizeof(b), "-0.12345678901234567");
			snprintf(c, sizeof(c), "%d", -i);
		} else {
			snprintf(a, sizeof(a), "%d.%03d", i, i % 1000);
			snprintf(b, sizeof(b), "-%d.25", i);
			snprintf(c, sizeof(c), "%d", i * 7);
		}
		assert_true(x[i * 3] == strtod(a, NULL) && x[i * 3 + 1] == strtod(b, NULL) &&
			    x[i * 3 + 2] == strtod(c, NULL));
	}
	free(x);
	x = NULL;
	o += sprintf(o, "1,2,3x\n4,5,6\n");
	assert_int_equal(pg_load_parse_matrix(txt, (size_t)(o - txt), "m", &x, &n, &d), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "m:701: field 3 is not a finite number"));

	/* Bitbrains: a header, then rows; a negative value on line 601. */
	o = txt + sprintf(txt, "Timestamp [ms];\tCPU cores;b;c;d;e;f;g;h;i;j\n");
	for (int i = 0; i < N; i++)
		o += sprintf(
		    o, "%d;\t2;\t5851.99912;\t%d.5;\t%d.25;\t8388608;\t%d.125;\t1;\t2;\t3;\t%s\n",
		    1372629804 + 300 * i, i, i % 100, i * 1000, i == 599 ? "-4" : "4");
	f = fmemopen(txt, (size_t)(o - txt), "r");
	assert_non_null(f);
	pg_load_series_init(&s, 0);
	assert_int_equal(pgi_load_bitbrains_read(f, "b.csv", &s), PG_EFORMAT);
	fclose(f);
	assert_non_null(strstr(pg_last_error(), "b.csv:601: column 'Network transmitted"));
	assert_int_equal(s.n, 599);
	for (int i = 0; i < 599; i++)
		assert_true(s.s[i].ts_ms == (1372629804LL + 300 * i) * 1000 &&
			    s.s[i].v[PG_LOAD_CPU] == (i % 100) + 0.25 &&
			    s.s[i].v[PG_LOAD_MEM] == 100.0 * (i * 1000 + 0.125) / 8388608 &&
			    s.s[i].v[PG_LOAD_NET_TX] == 4);
	pg_load_series_release(&s);

	/* Our plain CSV: two VMs; the second has a bad field on line 1101. */
	o = txt + sprintf(txt, "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,"
			       "disk_write_kbps,net_rx_kbps,net_tx_kbps\n");
	for (int i = 0; i < 2 * N; i++)
		o += sprintf(o, "vm-%d,%lld,%d.5,%s,1.25,2,3,4\n", i < N ? 1 : 22,
			     1372629804000LL + 300000LL * i, i % 100,
			     i == 1099	   ? "-7"
			     : i % 50 == 3 ? "1e2"
					   : "50.5");
	f = fmemopen(txt, (size_t)(o - txt), "r");
	assert_non_null(f);
	pg_load_series_init(&s, 0);
	pgi_load_csv_reader_init(&r, f, "p.csv");
	assert_int_equal(pgi_load_csv_next(&r, &s), 1);
	assert_string_equal(s.vm, "vm-1");
	assert_int_equal(s.n, N);
	for (int i = 0; i < N; i++)
		assert_true(s.s[i].ts_ms == 1372629804000LL + 300000LL * i &&
			    s.s[i].v[PG_LOAD_CPU] == (i % 100) + 0.5 &&
			    s.s[i].v[PG_LOAD_MEM] == (i % 50 == 3 ? 100 : 50.5) &&
			    s.s[i].v[PG_LOAD_DISK_RD] == 1.25 && s.s[i].v[PG_LOAD_NET_TX] == 4);
	assert_int_equal(pgi_load_csv_next(&r, &s), PG_EFORMAT);
	assert_string_equal(s.vm, "vm-22");
	assert_non_null(strstr(pg_last_error(), "p.csv:1101: field 4 is negative"));
	assert_int_equal(pgi_load_csv_next(&r, &s), 0);
	pgi_load_csv_reader_release(&r);
	fclose(f);
	pg_load_series_release(&s);
	free(txt);
}

static void
put(const char *dir, const char *file, const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

struct cg_acc {
	int n;
	double cpu[4], rd[4];
	char vm[4][32];
};

static int
cg_cb(void *ctx, const char *vm, const struct pg_load_sample *s)
{
	struct cg_acc *a = ctx;

	if (a->n < 4) {
		snprintf(a->vm[a->n], 32, "%s", vm);
		a->cpu[a->n] = s->v[PG_LOAD_CPU];
		a->rd[a->n] = s->v[PG_LOAD_DISK_RD];
	}
	a->n++;
	return 0;
}

static void
test_cgroup_tree(void **state)
{
	char root[] = "/tmp/pg-cgroup-XXXXXX", d[4096];
	void *st;
	struct cg_acc a = {0};

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(d, sizeof(d), "%s/machine-qemu\\x2d1\\x2dweb.scope", root);
	assert_int_equal(mkdir(d, 0755), 0);
	/* a VM burning 4 cores' worth on 1: clipped to 100 % where it is read */
	put(d, "cpu.stat", "usage_usec 0\n");
	put(d, "cpu.max", "100000 100000\n");
	snprintf(d, sizeof(d), "%s/vm-a.scope", root);
	assert_int_equal(mkdir(d, 0755), 0);
	put(d, "cpu.stat", "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n");
	put(d, "cpu.max", "200000 100000\n"); /* 2 cores */
	put(d, "memory.current", "536870912\n");
	put(d, "memory.max", "1073741824\n");
	put(d, "io.stat", "8:0 rbytes=1048576 wbytes=0 rios=10 wios=0 dbytes=0 dios=0\n");
	assert_int_equal(pg_load_cgroup_ops.open(root, &st), 0);
	assert_int_equal(pg_load_cgroup_ops.poll(st, cg_cb, &a), 0); /* primes */
	usleep(200000);
	put(d, "cpu.stat", "usage_usec 1200000\n");
	put(d, "io.stat", "8:0 rbytes=2097152 wbytes=4096 rios=20 wios=1 dbytes=0 dios=0\n");
	{
		char q[4096];
		snprintf(q, sizeof(q), "%s/machine-qemu\\x2d1\\x2dweb.scope", root);
		put(q, "cpu.stat", "usage_usec 800000\n");
	}
	assert_int_equal(pg_load_cgroup_ops.poll(st, cg_cb, &a), 2);
	pg_load_cgroup_ops.close(st);
	for (int i = 0; i < 2; i++) {
		if (strcmp(a.vm[i], "vm-a") == 0) {
			/* 0.2 s of CPU over ~0.2 s on 2 cores: about 50%. */
			assert_true(a.cpu[i] > 20 && a.cpu[i] < 55);
			assert_true(a.rd[i] > 1000 && a.rd[i] < 5200);
		} else {
			assert_string_equal(a.vm[i], "qemu-1-web");
			assert_true(a.cpu[i] == 100.0);
		}
	}
	assert_true(strcmp(a.vm[0], "vm-a") == 0 || strcmp(a.vm[1], "vm-a") == 0);
	snprintf(d, sizeof(d), "rm -rf '%s'", root);
	assert_int_equal(system(d), 0);
}

static void
test_cgroup_names(void **state)
{
	char out[128];

	(void)state;
	pgi_load_cgroup_name("machine-qemu\\x2d1\\x2dweb.scope", out);
	assert_string_equal(out, "qemu-1-web");
	pgi_load_cgroup_name("machine-lxc\\x2d42\\x2ddb\\x2ebig.scope", out);
	assert_string_equal(out, "lxc-42-db.big");
	pgi_load_cgroup_name("vm-b", out);
	assert_string_equal(out, "vm-b");
	pgi_load_cgroup_name("x\\x2", out); /* a cut escape stays as it is */
	assert_string_equal(out, "x\\x2");
	pgi_load_cgroup_name("a\\x00b.service", out); /* a NUL byte is not kept */
	assert_string_equal(out, "ab");
}

static void
test_cgroup_v1_refused(void **state)
{
	char root[] = "/tmp/pg-cgroup1-XXXXXX", cmd[4200];
	void *st = NULL;

	(void)state;
	assert_non_null(mkdtemp(root));
	put(root, "tasks", "");
	put(root, "cpuacct.usage", "12345\n");
	assert_int_equal(pg_load_cgroup_ops.open(root, &st), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "cgroup v1"));
	put(root, "cgroup.controllers", "cpu io memory\n"); /* a v2 folder says so */
	assert_int_equal(pg_load_cgroup_ops.open(root, &st), 0);
	pg_load_cgroup_ops.close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

static int
feed(enum load_trace_kind k, const char *text, struct load_trace **out)
{
	struct load_trace *t = pgi_load_trace_new(k);
	int rc;

	assert_non_null(t);
	rc = pgi_load_trace_feed(t, k, text, strlen(text), "f.csv");
	if (rc == 0)
		rc = pgi_load_trace_finish(t);
	if (out)
		*out = t;
	else
		pgi_load_trace_free(t);
	return rc;
}

static void
test_public_traces(void **state)
{
	struct load_trace *t;
	struct pg_load_series s;

	(void)state;
	/* Azure: column and line of a bad field; more than 100 % clipped. */
	assert_int_equal(feed(LOAD_TRACE_AZURE, "0,vmA,1,2,1.5\n300,vmA,1,2,x\n", NULL),
			 PG_EFORMAT);
	assert_non_null(
	    strstr(pg_last_error(), "f.csv:2: column 5 (avg cpu): 'x' is not a number"));
	assert_int_equal(feed(LOAD_TRACE_AZURE, "0,vmA,1,2\n", NULL), PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "f.csv:1: 4 columns, but an Azure"));
	assert_int_equal(feed(LOAD_TRACE_AZURE, "300,vmA,1,2,250\n0,vmA,1,2,20\n0,vmB,0,0,0\n", &t),
			 0);
	assert_int_equal(pgi_load_trace_count(t), 2);
	pg_load_series_init(&s, 0);
	assert_int_equal(pg_load_azure_ops.next(t, &s), 1);
	assert_string_equal(s.vm, "vmA");
	assert_int_equal(s.n, 2);
	assert_true(s.s[0].ts_ms == 0 && s.s[0].v[PG_LOAD_CPU] == 20); /* sorted by time */
	assert_true(s.s[1].ts_ms == 300000 && s.s[1].v[PG_LOAD_CPU] == 100);
	assert_int_equal(pg_load_azure_ops.next(t, &s), 1);
	assert_string_equal(s.vm, "vmB");
	assert_int_equal(pg_load_azure_ops.next(t, &s), 0);
	pgi_load_trace_free(t);
	/* vmtable: the category must be one of the published three. */
	assert_int_equal(feed(LOAD_TRACE_AZURE_VMTABLE, "v,s,d,0,300,9,5,8,Batch,2,4\n", NULL),
			 PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "column 9 (vmcategory)"));
	/* Alibaba: gaps skip the row; disk -1 is "abnormal", taken as 0. */
	assert_int_equal(feed(LOAD_TRACE_ALI_MACHINE, "m_1,10,,,,,,,\nm_1,20,50,60,,,0,0,-1\n", &t),
			 0);
	assert_int_equal(pg_load_alibaba_ops.next(t, &s), 1);
	assert_int_equal(s.n, 1);
	assert_true(s.s[0].v[PG_LOAD_CPU] == 50 && s.s[0].v[PG_LOAD_DISK_RD] == 0);
	pgi_load_trace_free(t);
	assert_int_equal(feed(LOAD_TRACE_ALI_CONTAINER, "c_1,m_1,10,50,60,1,1,1,0,0,2\n", NULL), 0);
	/* Google: two tasks of one machine add up, a half window counts half. */
	{
		const char *rows =
		    "600000000,900000000,7,0,42,0.25,0.1,0,0,0,0,0.02,0,0,0,,,0,0,0\n"
		    "600000000,900000000,7,1,42,0.25,0.1,0,0,0,0,0.02,0,0,0,,,0,0,0\n"
		    "600000000,750000000,8,0,42,0.5,0.1,0,0,0,0,,0,0,0,,,0,0,0\n";

		assert_int_equal(feed(LOAD_TRACE_GOOGLE_MACHINE, rows, &t), 0);
		assert_int_equal(pg_load_google2011_ops.next(t, &s), 1);
		assert_string_equal(s.vm, "42");
		assert_int_equal(s.n, 1);
		assert_true(fabs(s.s[0].v[PG_LOAD_CPU] - 75) < 1e-9);
		assert_true(fabs(s.s[0].v[PG_LOAD_MEM] - 25) < 1e-9);
		pgi_load_trace_free(t);
		assert_int_equal(feed(LOAD_TRACE_GOOGLE_JOB, rows, &t), 0);
		assert_int_equal(pgi_load_trace_count(t), 2);
		assert_int_equal(pg_load_google2011_ops.next(t, &s), 1);
		assert_string_equal(s.vm, "7");
		assert_true(fabs(s.s[0].v[PG_LOAD_CPU] - 50) < 1e-9);
		pgi_load_trace_free(t);
	}
	assert_int_equal(feed(LOAD_TRACE_GOOGLE_MACHINE,
			      "900,600,7,0,42,0.25,0.1,0,0,0,0,0,0,0,0,,,0,0,0\n", NULL),
			 PG_EFORMAT);
	assert_non_null(strstr(pg_last_error(), "column 2 (end time)"));
	pg_load_series_release(&s);
}

static void
test_prom_spec(void **state)
{
	void *st = NULL;

	(void)state;
	assert_int_equal(pg_load_prom_ops.open_live("http://127.0.0.1:9", &st), 0);
	pg_load_prom_ops.close(st);
	assert_int_equal(pg_load_prom_ops.open_live("http://h:9090/,exporter=node,cpu=my_cpu_total,"
						    "label=vm,step=5,window=30,timeout=2,retries=0",
						    &st),
			 0);
	pg_load_prom_ops.close(st);
	/* Metric and label names are checked: nothing but a name reaches PromQL. */
	assert_int_equal(pg_load_prom_ops.open_live("http://h,cpu=x{a=\"b\"}", &st), PG_EINVAL);
	assert_int_equal(pg_load_prom_ops.open_live("http://h,label=a-b", &st), PG_EINVAL);
	assert_int_equal(pg_load_prom_ops.open_live("http://h,exporter=snmp", &st), PG_EINVAL);
	assert_int_equal(pg_load_prom_ops.open_live("http://h,retries=99", &st), PG_EINVAL);
	assert_int_equal(pg_load_prom_ops.open_live("http://h,nosuch=1", &st), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "unknown key 'nosuch'"));
	assert_int_equal(pg_load_prom_ops.open_live("http://h,1,2", &st), PG_EINVAL);
	assert_int_equal(pg_load_prom_ops.open_live("ftp://h", &st), PG_EINVAL);
}

static virTypedParameter
tp_ull(const char *field, unsigned long long v)
{
	virTypedParameter p;

	memset(&p, 0, sizeof(p));
	snprintf(p.field, sizeof(p.field), "%s", field);
	p.type = VIR_TYPED_PARAM_ULLONG;
	p.value.ul = v;
	return p;
}

static void
test_libvirt_bulk_record(void **state)
{
	virTypedParameter ps[16];
	virDomainStatsRecord r = {NULL, ps, 0};
	struct load_lv_counters c;
	int cpu = 0, mem = 0, blk = 0, net = 0;

	(void)state;
	/* As qemu fills them for GetAllDomainStats (libvirt's documented field names). */
	ps[r.nparams++] = tp_ull("state.state", 1);
	ps[r.nparams++] = tp_ull("cpu.time", 5000000000ULL);
	ps[r.nparams++] = tp_ull("vcpu.current", 2);
	ps[r.nparams++] = tp_ull("balloon.current", 1048576);
	ps[r.nparams++] = tp_ull("balloon.maximum", 2097152);
	ps[r.nparams++] = tp_ull("balloon.rss", 524288);
	ps[r.nparams++] = tp_ull("block.count", 2);
	ps[r.nparams++] = tp_ull("block.0.rd.bytes", 1000);
	ps[r.nparams++] = tp_ull("block.0.wr.bytes", 2000);
	ps[r.nparams++] = tp_ull("block.1.rd.bytes", 500);
	ps[r.nparams++] = tp_ull("block.1.rd.reqs", 99999); /* not bytes: ignored */
	ps[r.nparams++] = tp_ull("net.count", 1);
	ps[r.nparams++] = tp_ull("net.0.rx.bytes", 300);
	ps[r.nparams++] = tp_ull("net.0.tx.bytes", 400);
	memset(&c, 0, sizeof(c));
	pgi_load_lv_record(&r, &c, &cpu, &mem, &blk, &net);
	assert_true(cpu && mem && blk && net);
	assert_true(c.cpu_ns == 5e9 && c.nvcpu == 2);
	assert_true(c.rd == 1500 && c.wr == 2000 && c.rx == 300 && c.tx == 400);
	assert_true(fabs(c.mem_pct - 50.0) < 1e-9); /* rss / current */
	/* With the guest's own figures, those win: (available - unused) / available. */
	ps[r.nparams++] = tp_ull("balloon.available", 1000000);
	ps[r.nparams++] = tp_ull("balloon.unused", 250000);
	memset(&c, 0, sizeof(c));
	pgi_load_lv_record(&r, &c, &cpu, &mem, &blk, &net);
	assert_true(fabs(c.mem_pct - 75.0) < 1e-9);
	/* Only the state group (what Debian 12's test driver returns): nothing found. */
	r.nparams = 1;
	memset(&c, 0, sizeof(c));
	cpu = mem = blk = net = 0;
	pgi_load_lv_record(&r, &c, &cpu, &mem, &blk, &net);
	assert_true(!cpu && !mem && !blk && !net);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines),	  cmocka_unit_test(test_bitbrains),
	    cmocka_unit_test(test_plain_csv),	  cmocka_unit_test(test_prom_parse),
	    cmocka_unit_test(test_matrix),	  cmocka_unit_test(test_bulk_readers),
	    cmocka_unit_test(test_cgroup_tree),	  cmocka_unit_test(test_libvirt_bulk_record),
	    cmocka_unit_test(test_cgroup_names),  cmocka_unit_test(test_cgroup_v1_refused),
	    cmocka_unit_test(test_public_traces), cmocka_unit_test(test_prom_spec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
