/*
 * `payguard load ...` verbs (seed 3): thin wrappers over src/load — collect
 * and import samples, run the k-means engine alone, estimate a fleet, make a
 * generated fleet, and the demo.
 */
#include "cli.h"
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/kmeans.h"
#include "payguard/load.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const feat_names[PG_LOAD_NFEAT] = {"cpu", "memory", "disk", "network"};

static int
parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi || s[0] == '-')
		return PG_EUSAGE;
	*out = (size_t)v;
	return 0;
}

/* Every option of every load verb; each verb's table lists the ones it takes. */
struct loadopt {
	const char *data, *init, *algorithm, *source, *k2, *csv, *png, *db, *out, *format, *truth;
	size_t k, n_init, max_iter, seed, threads, k1, window, count, vms_n, samples;
	double tol, interval;
	int float32, json, vms;
};

#define L	 struct loadopt
#define ANY_SEED PG_SIZE(L, seed, "seed", "N", 0, (double)SIZE_MAX, "the seed")
static const struct pg_opt kmeans_opts[] = {
    PG_STR(L, data, "data", "FILE", "the CSV matrix, one row per point"),
    PG_STR(L, init, "init", "FILE", "initial centers (a CSV matrix; k is its rows)"),
    PG_SIZE(L, k, "k", "K", 1, 1u << 20, "clusters (k-means++ starts)"),
    PG_STR(L, algorithm, "algorithm", "A", "lloyd (default) or hamerly"),
    PG_SIZE(L, n_init, "n-init", "N", 1, 1000, "k-means++ runs, the best kept"),
    PG_SIZE(L, max_iter, "max-iter", "N", 1, 1000000, "iterations at most"),
    PG_DBL(L, tol, "tol", "T", 0, HUGE_VAL,
	   "convergence tolerance, relative to the mean feature variance (scikit-learn's)"),
    ANY_SEED,
    PG_SIZE(L, threads, "threads", "N", 1, 16, "threads"),
    PG_FLAG(L, float32, "float32", "compute in single precision"),
    PG_FLAG(L, json, "json", "print JSON (labels, centers, inertia)"),
    {0}};
static const struct pg_opt estimate_opts[] = {
    PG_STR(L, source, "source", "KIND:ARG",
	   "bitbrains:DIR, azure:PATH, alibaba:FILE, google2011:PATH[,job], csv:FILE, store:[DB], "
	   "gen:N[,SEED[,SAMPLES]], prometheus:URL[,START,END,STEP] (see 'payguard load sources')"),
    PG_SIZE(L, k1, "k1", "N", 1, 64, "first-level clusters per VM (default 3)"),
    PG_STR(L, k2, "k2", "N|auto", "fleet types (default 5; auto: best silhouette over 2..8)"),
    PG_SIZE(L, seed, "seed", "N", 0, (double)SIZE_MAX, "k-means++ seed (default 1)"),
    PG_SIZE(L, threads, "threads", "N", 1, 8, "first-level threads (default 2)"),
    PG_FLAG(L, vms, "vms", "also print one row per VM"),
    PG_FLAG(L, json, "json", "JSON output (types, VMs, rejected VMs)"),
    PG_STR(L, csv, "csv", "FILE", "write one row per VM"),
    PG_STR(L, png, "png", "FILE", "write the scatter plot of the types (SVG if FILE ends .svg)"),
    {0}};
static const struct pg_opt import_opts[] = {
    PG_STR(L, source, "source", "KIND:ARG", "a trace (see 'payguard load sources')"),
    PG_STR(L, db, "db", "FILE", "the store"),
    PG_SIZE(L, window, "window", "N", 0, PG_LOAD_MAX_SAMPLES,
	    "keep the newest N samples per VM (default 10080; 0 keeps all)"),
    PG_FLAG(L, json, "json", "print JSON"),
    {0}};
static const struct pg_opt collect_opts[] = {
    PG_STR(L, source, "source", "KIND:ARG",
	   "libvirt:URI, cgroup:DIR or prometheus:URL[,KEY=VALUE...]"),
    PG_DBL(L, interval, "interval", "S", 0.01, 86400, "seconds between polls (default 10)"),
    PG_SIZE(L, count, "count", "N", 2, 100000000,
	    "polls, the first primes the counters (default 7)"),
    PG_STR(L, db, "db", "FILE", "the store"),
    PG_SIZE(L, window, "window", "N", 0, PG_LOAD_MAX_SAMPLES,
	    "newest samples kept per VM (default 1440)"),
    PG_FLAG(L, json, "json", "print JSON"),
    {0}};
static const struct pg_opt generate_opts[] = {
    PG_STR(L, out, "out", "PATH", "a folder for bitbrains, a file for csv"),
    PG_STR(L, format, "format", "F", "csv (default) or bitbrains"),
    PG_SIZE(L, vms_n, "vms", "N", 1, 10000000, "VMs (default 100)"),
    PG_SIZE(L, seed, "seed", "N", 0, (double)SIZE_MAX, "the generator's seed (default 1)"),
    PG_SIZE(L, samples, "samples", "N", 1, PG_LOAD_MAX_SAMPLES, "samples per VM (default 1440)"),
    PG_STR(L, truth, "truth", "FILE", "write each VM's type and heaviness"),
    {0}};
static const struct pg_opt demo_opts[] = {
    PG_SIZE(L, vms_n, "vms", "N", 10, 100000, "VMs (default 300)"),
    PG_SIZE(L, seed, "seed", "N", 0, (double)SIZE_MAX, "the generator's seed (default 7)"),
    {0}};
static const struct pg_opt no_opts[] = {{0}};
#undef ANY_SEED
#undef L

/* ---- kmeans ---- */

/* kmeans's options into the engine's parameters. */
static int
kmeans_parse(int argc, char **argv, struct pg_kmeans_params *p, const char **data,
	     const char **initf, size_t *k, int *json, int *f32)
{
	struct loadopt o = {0};
	int first, ex;

	o.n_init = (size_t)p->n_init;
	o.max_iter = (size_t)p->max_iter;
	o.tol = p->tol;
	o.seed = (size_t)p->seed;
	o.threads = (size_t)p->n_threads;
	if ((ex = pg_cli_parse(argc, argv, kmeans_opts, &o, &first)))
		return ex;
	if (o.algorithm && strcmp(o.algorithm, "lloyd") == 0)
		p->algo = PG_KMEANS_LLOYD;
	else if (o.algorithm && strcmp(o.algorithm, "hamerly") == 0)
		p->algo = PG_KMEANS_HAMERLY;
	else if (o.algorithm)
		return pg_cli_usage(argv[0], "--algorithm is lloyd or hamerly");
	p->n_init = (int)o.n_init;
	p->max_iter = (int)o.max_iter;
	p->tol = o.tol;
	p->seed = o.seed;
	p->n_threads = (int)o.threads;
	*data = o.data;
	*initf = o.init;
	*k = o.k;
	*json = o.json;
	*f32 = o.float32;
	return 0;
}

static int
cmd_load_kmeans(int argc, char **argv)
{
	const char *data = NULL, *initf = NULL;
	struct pg_kmeans_params p;
	struct pg_kmeans_info info;
	double *x = NULL, *init = NULL, *centers = NULL;
	float *xf = NULL;
	int32_t *labels = NULL;
	size_t n, d, ni = 0, di = 0, k = 0;
	int json = 0, f32 = 0, rc, ret = PG_EXIT_OK;
	uint64_t t0;

	pg_kmeans_params_init(&p, 0);
	if ((rc = kmeans_parse(argc, argv, &p, &data, &initf, &k, &json, &f32)))
		return rc;
	if (!data || (!initf && !k))
		return pg_cli_usage(argv[0], "need --data and one of --init or --k");
	rc = pg_load_read_matrix(data, &x, &n, &d);
	if (rc < 0)
		return pg_cli_fail(rc, "load kmeans");
	if (initf) {
		rc = pg_load_read_matrix(initf, &init, &ni, &di);
		if (rc == 0 && di != d)
			rc = pg_error(PG_EINVAL, "load", "'%s': %zu columns, the data has %zu",
				      initf, di, d);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "load kmeans");
			goto out;
		}
		if (k && k != ni) {
			ret = pg_cli_usage(argv[0], "--k %zu but --init has %zu rows", k, ni);
			goto out;
		}
		k = ni;
		p.init = init;
	}
	p.k = k;
	labels = malloc(n * sizeof(int32_t));
	centers = malloc(k * d * sizeof(double));
	if (f32)
		xf = malloc(n * d * sizeof(float));
	if (!labels || !centers || (f32 && !xf)) {
		ret = pg_cli_fail(PG_ENOMEM, "load kmeans");
		goto out;
	}
	for (size_t i = 0; f32 && i < n * d; i++)
		xf[i] = (float)x[i];
	t0 = pg_mono_ns();
	rc = pg_kmeans_fit(f32 ? (const void *)xf : x, f32 ? PG_KMEANS_F32 : PG_KMEANS_F64, n, d,
			   &p, labels, centers, &info);
	t0 = pg_mono_ns() - t0;
	if (rc < 0) {
		ret = pg_cli_fail(rc, "load kmeans '%s'", data);
		goto out;
	}
	if (json) {
		json_t *o = json_object(), *jl = json_array(), *jc = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(jl, json_integer(labels[i]));
		for (size_t ci = 0; ci < k; ci++) {
			json_t *row = json_array();
			for (size_t j = 0; j < d; j++)
				json_array_append_new(row, json_real(centers[ci * d + j]));
			json_array_append_new(jc, row);
		}
		json_object_set_new(o, "n", json_integer((json_int_t)n));
		json_object_set_new(o, "d", json_integer((json_int_t)d));
		json_object_set_new(o, "k", json_integer((json_int_t)k));
		json_object_set_new(o, "inertia", json_real(info.inertia));
		json_object_set_new(o, "n_iter", json_integer(info.n_iter));
		json_object_set_new(o, "relocated", json_integer(info.relocated));
		json_object_set_new(o, "seconds", json_real((double)t0 / 1e9));
		json_object_set_new(o, "labels", jl);
		json_object_set_new(o, "centers", jc);
		ret = pg_cli_print_json(o);
	} else {
		printf("%zu rows x %zu columns, k = %zu: inertia %.10g after %d iterations "
		       "(%.3f s)\n",
		       n, d, k, info.inertia, info.n_iter, (double)t0 / 1e9);
		for (size_t ci = 0; ci < k; ci++) {
			size_t cnt = 0;
			for (size_t i = 0; i < n; i++)
				cnt += (size_t)labels[i] == ci;
			printf("center %zu (%zu rows):", ci, cnt);
			for (size_t j = 0; j < d; j++)
				printf(" %.6g", centers[ci * d + j]);
			printf("\n");
		}
	}
out:
	free(x);
	free(xf);
	free(init);
	free(labels);
	free(centers);
	return ret;
}

/* ---- estimate ---- */

struct est_opts {
	const char *source;
	const char *csv, *png;
	struct pg_load_params p;
	int json, vms;
};

struct rejected {
	char vm[128];
	char err[256];
};

static json_t *
types_json(const struct pg_load_est *e)
{
	json_t *a = json_array();

	for (size_t t = 0; t < pg_load_est_ntypes(e); t++) {
		const struct pg_load_type *ty = pg_load_est_type(e, t);
		json_t *o = json_object(), *c = json_object();

		for (size_t j = 0; j < PG_LOAD_NFEAT; j++)
			json_object_set_new(c, feat_names[j], json_real(ty->center[j]));
		json_object_set_new(o, "type", json_integer((json_int_t)t));
		json_object_set_new(o, "name", json_string(ty->name));
		json_object_set_new(o, "vms", json_integer((json_int_t)ty->count));
		json_object_set_new(o, "mean_load", json_real(ty->mean_load));
		json_object_set_new(o, "center", c);
		json_array_append_new(a, o);
	}
	return a;
}

static void
print_types(const struct pg_load_est *e)
{
	static const char *const hdr[] = {"type", "name",   "VMs",  "mean load",
					  "cpu",  "memory", "disk", "network"};
	struct pg_table *t = pg_table_new(8, hdr);

	for (size_t i = 0; t && i < pg_load_est_ntypes(e); i++) {
		const struct pg_load_type *ty = pg_load_est_type(e, i);
		char c[8][48];
		const char *cells[8];

		snprintf(c[0], 48, "%zu", i);
		snprintf(c[1], 48, "%s", ty->name);
		snprintf(c[2], 48, "%zu", ty->count);
		snprintf(c[3], 48, "%.1f", ty->mean_load);
		for (int j = 0; j < 4; j++)
			snprintf(c[4 + j], 48, "%.3f", ty->center[j]);
		for (int j = 0; j < 8; j++)
			cells[j] = c[j];
		pg_table_add(t, cells);
	}
	pg_table_print(t);
	pg_table_free(t);
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
print_summary(const struct pg_load_est *e)
{
	size_t n = pg_load_est_count(e), top[5] = {0};
	double *v = malloc(n * sizeof(double)), mean = 0;
	size_t ntop = n < 5 ? n : 5;

	if (!v || n == 0) {
		free(v);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		v[i] = pg_load_est_vm(e, i)->load;
		mean += v[i] / (double)n;
	}
	/* The five heaviest VMs, by a partial selection. */
	for (size_t k = 0; k < ntop; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < n; i++) {
			int used = 0;
			for (size_t q = 0; q < k; q++)
				used |= top[q] == i;
			if (!used && (best == SIZE_MAX || v[i] > v[best]))
				best = i;
		}
		top[k] = best;
	}
	printf("\nload over %zu VMs: mean %.1f", n, mean);
	qsort(v, n, sizeof(double), cmp_dbl);
	printf(", median %.1f, p90 %.1f, max %.1f\n", v[n / 2], v[(size_t)(0.9 * (double)(n - 1))],
	       v[n - 1]);
	printf("heaviest:");
	for (size_t k = 0; k < ntop; k++) {
		const struct pg_load_vm *vm = pg_load_est_vm(e, top[k]);
		printf(" %s (%.1f, %s)%s", vm->name, vm->load,
		       pg_load_est_type(e, (size_t)vm->type)->name, k + 1 < ntop ? "," : "\n");
	}
	free(v);
}

/* The VMs in display order: names compared as versions (strverscmp), so
 * numbered VMs come out numerically (vm2 before vm10), ties by input order.
 * Returns an index array the caller frees, or NULL on ENOMEM. */
static const struct pg_load_est *order_est;

static int
cmp_vm_order(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strverscmp(pg_load_est_vm(order_est, i)->name, pg_load_est_vm(order_est, j)->name);

	return c ? c : (i > j) - (i < j);
}

static size_t *
vm_order(const struct pg_load_est *e)
{
	size_t n = pg_load_est_count(e), *idx = malloc((n ? n : 1) * sizeof(size_t));

	if (!idx)
		return NULL;
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	order_est = e;
	qsort(idx, n, sizeof(size_t), cmp_vm_order);
	return idx;
}

static int
write_csv(const struct pg_load_est *e, const char *path)
{
	char *buf = NULL;
	size_t len = 0, *idx = vm_order(e);
	FILE *f = idx ? open_memstream(&buf, &len) : NULL;
	int rc;

	if (!f) {
		free(idx);
		return pg_error(PG_ENOMEM, "load", "csv output");
	}
	fprintf(f, "vm,type,type_name,load,cpu,memory,disk,network,samples\n");
	for (size_t i = 0; i < pg_load_est_count(e); i++) {
		const struct pg_load_vm *v = pg_load_est_vm(e, idx[i]);
		fprintf(f, "%s,%d,%s,%.3f,%.5f,%.5f,%.5f,%.5f,%zu\n", v->name, v->type,
			pg_load_est_type(e, (size_t)v->type)->name, v->load, v->feat[0], v->feat[1],
			v->feat[2], v->feat[3], v->nsamples);
	}
	fclose(f);
	free(idx);
	rc = pg_write_file_atomic(path, buf, len, 0644);
	free(buf);
	return rc;
}

/*
 * Reads every VM of a trace source into the estimator. Rejected VMs are
 * reported on stderr and listed; the rest of the fleet goes on.
 */
static int
feed_estimator(struct pg_load_est *e, const char *spec, struct rejected **rej, size_t *nrej,
	       int quiet)
{
	const struct pg_load_ops *ops;
	const char *arg;
	void *st = NULL;
	struct pg_load_series s;
	uint64_t last = pg_mono_ms();
	size_t count = 0;
	int rc;

	rc = pg_load_source_lookup(spec, &ops, &arg);
	if (rc < 0)
		return rc;
	if (!ops->next)
		return pg_error(PG_EINVAL, "load",
				"'%s' is a live source: sample it with 'payguard load collect' and "
				"estimate from store:",
				spec);
	rc = ops->open(arg, &st);
	if (rc < 0)
		return rc;
	pg_load_series_init(&s, 0);
	for (;;) {
		rc = ops->next(st, &s);
		if (rc == 0)
			break;
		if (rc > 0)
			rc = pg_load_est_add(e, &s);
		if (rc < 0) {
			struct rejected *r;

			if (rc == PG_ENOMEM)
				goto out;
			/* The detail usually names the VM (or its file) already. */
			if (s.vm[0] && strstr(pg_last_error(), s.vm))
				fprintf(stderr, "payguard: load estimate: skipped: %s\n",
					pg_last_error());
			else
				fprintf(stderr, "payguard: load estimate: skipped VM '%s': %s\n",
					s.vm[0] ? s.vm : "?", pg_last_error());
			r = realloc(*rej, (*nrej + 1) * sizeof(**rej));
			if (!r) {
				rc = pg_error(PG_ENOMEM, "load", "rejected list");
				goto out;
			}
			*rej = r;
			snprintf(r[*nrej].vm, sizeof(r[0].vm), "%s", s.vm[0] ? s.vm : "?");
			snprintf(r[*nrej].err, sizeof(r[0].err), "%s", pg_last_error());
			(*nrej)++;
			continue;
		}
		count++;
		if (!quiet && pg_mono_ms() - last > 1000) {
			fprintf(stderr, "\r%zu VMs read...", count);
			last = pg_mono_ms();
		}
	}
	if (!quiet && count > 1000)
		fprintf(stderr, "\r%zu VMs read.   \n", count);
	rc = 0;
out:
	pg_load_series_release(&s);
	ops->close(st);
	return rc;
}

/* estimate's options into o (o->p holds the defaults). */
static int
parse_est_opts(int argc, char **argv, struct est_opts *o)
{
	struct loadopt l = {0};
	int first, ex;

	l.k1 = o->p.k1;
	l.seed = (size_t)o->p.seed;
	l.threads = (size_t)o->p.n_threads;
	if ((ex = pg_cli_parse(argc, argv, estimate_opts, &l, &first)))
		return ex;
	if (l.k2 && strcmp(l.k2, "auto") == 0)
		o->p.k2 = 0;
	else if (l.k2 && parse_size(l.k2, 1, 64, &o->p.k2) < 0)
		return pg_cli_usage(argv[0], "bad --k2 '%s' (a number or 'auto')", l.k2);
	o->source = l.source;
	o->p.k1 = l.k1;
	o->p.seed = l.seed;
	o->p.n_threads = (int)l.threads;
	o->csv = l.csv;
	o->png = l.png;
	o->json = l.json;
	o->vms = l.vms;
	return 0;
}

static int
emit_estimate(const struct pg_load_est *e, const struct est_opts *o, const struct rejected *rej,
	      size_t nrej)
{
	int rc;

	if (o->csv && (rc = write_csv(e, o->csv)) < 0)
		return pg_cli_fail(rc, "load estimate: --csv '%s'", o->csv);
	if (o->png && (rc = pg_load_plot(e, o->png)) < 0)
		return pg_cli_fail(rc, "load estimate: --png '%s'", o->png);
	if (o->json) {
		json_t *root = json_object(), *vms = json_array(), *jr = json_array();
		size_t *idx = vm_order(e);

		if (!idx) {
			json_decref(root);
			json_decref(vms);
			json_decref(jr);
			return pg_cli_fail(PG_ENOMEM, "load estimate");
		}
		for (size_t i = 0; i < pg_load_est_count(e); i++) {
			const struct pg_load_vm *v = pg_load_est_vm(e, idx[i]);
			json_t *vo = json_object(), *f = json_object();

			for (size_t j = 0; j < PG_LOAD_NFEAT; j++)
				json_object_set_new(f, feat_names[j], json_real(v->feat[j]));
			json_object_set_new(vo, "vm", json_string(v->name));
			if (v->info[0]) /* what the trace says of the VM (Azure's vmtable) */
				json_object_set_new(vo, "info", json_string(v->info));
			json_object_set_new(vo, "type", json_integer(v->type));
			json_object_set_new(
			    vo, "type_name",
			    json_string(pg_load_est_type(e, (size_t)v->type)->name));
			json_object_set_new(vo, "load", json_real(v->load));
			json_object_set_new(vo, "characteristic", f);
			json_object_set_new(vo, "samples", json_integer((json_int_t)v->nsamples));
			json_array_append_new(vms, vo);
		}
		free(idx);
		for (size_t i = 0; i < nrej; i++) {
			json_t *r = json_object();
			json_object_set_new(r, "vm", json_string(rej[i].vm));
			json_object_set_new(r, "error", json_string(rej[i].err));
			json_array_append_new(jr, r);
		}
		json_object_set_new(root, "k1", json_integer((json_int_t)o->p.k1));
		json_object_set_new(root, "k2", json_integer((json_int_t)pg_load_est_ntypes(e)));
		json_object_set_new(root, "silhouette", json_real(pg_load_est_silhouette(e)));
		json_object_set_new(root, "types", types_json(e));
		json_object_set_new(root, "vms", vms);
		json_object_set_new(root, "rejected", jr);
		return pg_cli_print_json(root);
	}
	print_types(e);
	if (o->vms) {
		static const char *const hdr[] = {"vm",	    "type", "load",   "cpu",
						  "memory", "disk", "network"};
		struct pg_table *t = pg_table_new(7, hdr);
		size_t *idx = vm_order(e);

		printf("\n");
		for (size_t i = 0; t && idx && i < pg_load_est_count(e); i++) {
			const struct pg_load_vm *v = pg_load_est_vm(e, idx[i]);
			char c[7][64];
			const char *cells[7];

			snprintf(c[0], 64, "%s", v->name);
			snprintf(c[1], 64, "%s", pg_load_est_type(e, (size_t)v->type)->name);
			snprintf(c[2], 64, "%.1f", v->load);
			for (int j = 0; j < 4; j++)
				snprintf(c[3 + j], 64, "%.3f", v->feat[j]);
			for (int j = 0; j < 7; j++)
				cells[j] = c[j];
			pg_table_add(t, cells);
		}
		pg_table_print(t);
		pg_table_free(t);
		free(idx);
	}
	print_summary(e);
	if (nrej)
		printf("%zu VM(s) skipped (see above)\n", nrej);
	return PG_EXIT_OK;
}

static int
cmd_load_estimate(int argc, char **argv)
{
	struct est_opts o = {0};
	struct pg_load_est *e = NULL;
	struct rejected *rej = NULL;
	size_t nrej = 0;
	int rc, ret;

	pg_load_params_init(&o.p);
	if ((rc = parse_est_opts(argc, argv, &o)) != 0)
		return rc;
	if (!o.source)
		return pg_cli_usage(argv[0], "need --source KIND:ARG");
	rc = pg_load_est_new(&e, &o.p);
	if (rc < 0)
		return pg_cli_fail(rc, "load estimate");
	rc = feed_estimator(e, o.source, &rej, &nrej, o.json);
	if (rc == 0)
		rc = pg_load_est_finish(e);
	if (rc < 0) {
		ret = pg_cli_fail(rc, "load estimate '%s'", o.source);
		goto out;
	}
	ret = emit_estimate(e, &o, rej, nrej);
out:
	free(rej);
	pg_load_est_free(e);
	return ret;
}

/* ---- import / collect ---- */

struct collect_ctx {
	struct pg_store *st;
	size_t window;
	size_t samples;
};

static int
collect_cb(void *ctx, const char *vm, const struct pg_load_sample *s)
{
	struct collect_ctx *c = ctx;
	int rc = pg_load_store_put(c->st, vm, s, 1, c->window);

	if (rc == 0)
		c->samples++;
	return rc;
}

static int
cmd_load_import(int argc, char **argv)
{
	struct loadopt lo = {.window = 10080};
	const char *spec = NULL, *db = NULL, *arg;
	const struct pg_load_ops *ops;
	struct pg_store st = {0};
	struct pg_load_series s;
	void *src = NULL;
	size_t window, vms = 0, samples = 0, bad = 0;
	int first, rc, json, ret = PG_EXIT_OK;

	if ((rc = pg_cli_parse(argc, argv, import_opts, &lo, &first)))
		return rc;
	spec = lo.source;
	db = lo.db;
	window = lo.window;
	json = lo.json;
	if (!spec)
		return pg_cli_usage(argv[0], "need --source KIND:ARG");
	if ((rc = pg_load_source_lookup(spec, &ops, &arg)) < 0)
		return pg_cli_fail(rc, "load import");
	if (!ops->next)
		return pg_cli_usage(argv[0], "'%s' is live: use 'payguard load collect'", spec);
	if ((rc = pg_store_open_default(&st, db)) < 0 || (rc = pg_load_store_migrate(&st)) < 0)
		return pg_cli_fail(rc, "load import: store");
	if ((rc = ops->open(arg, &src)) < 0) {
		pg_store_close(&st);
		return pg_cli_fail(rc, "load import '%s'", spec);
	}
	pg_load_series_init(&s, 0);
	while ((rc = ops->next(src, &s)) != 0) {
		if (rc > 0) {
			/* One transaction per VM: a VM is in the store whole or not at all. */
			rc = pg_store_begin(&st);
			if (rc == 0)
				rc = pg_load_store_put(&st, s.vm, s.s, s.n, window);
			if (rc == 0)
				rc = pg_store_commit(&st);
			else
				pg_store_rollback(&st);
			if (rc < 0) {
				ret = pg_cli_fail(rc, "load import: VM '%s'", s.vm);
				break;
			}
			vms++;
			samples += s.n < window || !window ? s.n : window;
		} else {
			fprintf(stderr, "payguard: load import: skipped VM '%s': %s\n",
				s.vm[0] ? s.vm : "?", pg_last_error());
			bad++;
		}
	}
	pg_load_series_release(&s);
	ops->close(src);
	pg_store_close(&st);
	if (ret != PG_EXIT_OK)
		return ret;
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "vms", json_integer((json_int_t)vms));
		json_object_set_new(o, "samples", json_integer((json_int_t)samples));
		json_object_set_new(o, "skipped", json_integer((json_int_t)bad));
		return pg_cli_print_json(o);
	}
	printf("imported %zu VMs (%zu samples kept), %zu skipped\n", vms, samples, bad);
	return bad && !vms ? PG_EXIT_INPUT : PG_EXIT_OK;
}

static int
cmd_load_collect(int argc, char **argv)
{
	struct loadopt lo = {.interval = 10, .count = 7, .window = 1440};
	const char *spec = NULL, *db = NULL, *arg;
	const struct pg_load_ops *ops;
	struct pg_store st = {0};
	struct collect_ctx cc = {&st, 1440, 0};
	void *src = NULL;
	double interval;
	size_t count, polls = 0;
	int first, rc, json, ret = PG_EXIT_OK, last = 0;

	if ((rc = pg_cli_parse(argc, argv, collect_opts, &lo, &first)))
		return rc;
	spec = lo.source;
	db = lo.db;
	interval = lo.interval;
	count = lo.count;
	cc.window = lo.window;
	json = lo.json;
	if (!spec)
		return pg_cli_usage(argv[0], "need --source KIND:ARG");
	if ((rc = pg_load_source_lookup(spec, &ops, &arg)) < 0)
		return pg_cli_fail(rc, "load collect");
	if (!ops->poll)
		return pg_cli_usage(argv[0], "'%s' is a trace: use 'payguard load import'", spec);
	if ((rc = pg_store_open_default(&st, db)) < 0 || (rc = pg_load_store_migrate(&st)) < 0)
		return pg_cli_fail(rc, "load collect: store");
	if ((rc = (ops->open_live ? ops->open_live : ops->open)(arg, &src)) < 0) {
		pg_store_close(&st);
		return pg_cli_fail(rc, "load collect '%s'", spec);
	}
	/* count polls: the first primes the counters, each later one gives a sample per VM. */
	for (polls = 0; polls < count; polls++) {
		if (polls > 0) {
			struct timespec ts = {(time_t)interval,
					      (long)((interval - (double)(time_t)interval) * 1e9)};
			nanosleep(&ts, NULL);
		}
		pg_store_begin(&st);
		rc = ops->poll(src, collect_cb, &cc);
		last = rc;
		if (rc < 0) {
			pg_store_rollback(&st);
			ret = pg_cli_fail(rc, "load collect '%s'", spec);
			break;
		}
		if ((rc = pg_store_commit(&st)) < 0) {
			ret = pg_cli_fail(rc, "load collect: store");
			break;
		}
		if (!json)
			fprintf(stderr, "poll %zu/%zu: %d samples\n", polls + 1, count, last);
	}
	ops->close(src);
	pg_store_close(&st);
	if (ret != PG_EXIT_OK)
		return ret;
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "polls", json_integer((json_int_t)polls));
		json_object_set_new(o, "samples", json_integer((json_int_t)cc.samples));
		return pg_cli_print_json(o);
	}
	printf("%zu polls, %zu samples stored\n", polls, cc.samples);
	return PG_EXIT_OK;
}

/* ---- generate ---- */

static int
cmd_load_generate(int argc, char **argv)
{
	struct loadopt o = {.vms_n = 100, .samples = 1440, .seed = 1, .format = "csv"};
	size_t nvm, samples, seed;
	const char *out, *truth, *format;
	struct pg_load_series s;
	FILE *tf = NULL, *cf = NULL;
	int first, rc = 0, ret = PG_EXIT_OK;

	if ((rc = pg_cli_parse(argc, argv, generate_opts, &o, &first)))
		return rc;
	nvm = o.vms_n;
	samples = o.samples;
	seed = o.seed;
	out = o.out;
	truth = o.truth;
	format = o.format;
	if (!out)
		return pg_cli_usage(argv[0], "need --out (a folder for bitbrains, a file for csv)");
	if (strcmp(format, "csv") != 0 && strcmp(format, "bitbrains") != 0)
		return pg_cli_usage(argv[0], "--format is csv or bitbrains");
	if (strcmp(format, "bitbrains") == 0 && (rc = pg_mkdir_p(out, 0755)) < 0)
		return pg_cli_fail(rc, "load generate: '%s'", out);
	if (strcmp(format, "csv") == 0 && !(cf = fopen(out, "w")))
		return pg_cli_fail(pg_error(PG_EIO, "load", "'%s': %s", out, strerror(errno)),
				   "load generate");
	if (truth && !(tf = fopen(truth, "w"))) {
		if (cf)
			fclose(cf);
		return pg_cli_fail(pg_error(PG_EIO, "load", "'%s': %s", truth, strerror(errno)),
				   "load generate");
	}
	if (tf)
		fprintf(tf, "vm,type,type_name,heaviness\n");
	pg_load_series_init(&s, 0);
	for (size_t i = 0; i < nvm && rc == 0; i++) {
		int type;
		double h;

		rc = pg_load_gen_vm(seed, i, samples, &s, &type, &h);
		if (rc < 0)
			break;
		if (tf)
			fprintf(tf, "%s,%d,%s,%.5f\n", s.vm, type, pg_load_gen_type_name(type), h);
		if (cf) {
			rc = pg_load_csv_write(cf, &s, i == 0);
		} else {
			/* Bitbrains layout: 4 cores of 2.6 GHz, 16 GiB, seconds in "[ms]". */
			char path[4096];
			FILE *f;

			snprintf(path, sizeof(path), "%s/%s.csv", out, s.vm);
			f = fopen(path, "w");
			if (!f) {
				rc = pg_error(PG_EIO, "load", "'%s': %s", path, strerror(errno));
				break;
			}
			fprintf(f, "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\t"
				   "CPU usage [MHZ];\tCPU usage [%%];\tMemory capacity provisioned "
				   "[KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk "
				   "write throughput [KB/s];\tNetwork received throughput "
				   "[KB/s];\tNetwork transmitted throughput [KB/s]\n");
			for (size_t j = 0; j < s.n; j++) {
				const double *v = s.s[j].v;
				fprintf(f,
					"%lld;\t4;\t10400;\t%.6f;\t%.6f;\t16777216;\t%.3f;\t%.6f;"
					"\t%.6f;\t%.6f;\t%.6f\n",
					(long long)(s.s[j].ts_ms / 1000), 104.0 * v[0], v[0],
					167772.16 * v[1], v[2], v[3], v[4], v[5]);
			}
			if (fclose(f) != 0)
				rc = pg_error(PG_EIO, "load", "'%s': write error", path);
		}
	}
	pg_load_series_release(&s);
	if (cf && fclose(cf) != 0 && rc == 0)
		rc = pg_error(PG_EIO, "load", "'%s': write error", out);
	if (tf && fclose(tf) != 0 && rc == 0)
		rc = pg_error(PG_EIO, "load", "'%s': write error", truth);
	if (rc < 0)
		ret = pg_cli_fail(rc, "load generate");
	else
		fprintf(stderr, "generated %zu VMs x %zu samples into %s\n", nvm, samples, out);
	return ret;
}

/* ---- sources, demo ---- */

static int
cmd_load_sources(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	for (size_t i = 0; pg_load_sources[i]; i++)
		printf("  %s\n", pg_load_sources[i]->help);
	return PG_EXIT_OK;
}

static int
cmd_load_demo(int argc, char **argv)
{
	struct loadopt o = {.vms_n = 300, .seed = 7};
	size_t nvm, seed;
	struct pg_load_params p;
	struct pg_load_est *e = NULL;
	struct pg_load_series s;
	char dir[4096], png[4200], spec[64];
	int *truth = NULL, *got = NULL;
	double *heavy = NULL, *load = NULL;
	int first, rc, ret = PG_EXIT_OK;
	uint64_t t0 = pg_mono_ns();

	if ((rc = pg_cli_parse(argc, argv, demo_opts, &o, &first)))
		return rc;
	nvm = o.vms_n;
	seed = o.seed;
	pg_load_params_init(&p);
	pg_load_series_init(&s, 0);
	truth = malloc(nvm * sizeof(int));
	got = malloc(nvm * sizeof(int));
	heavy = malloc(nvm * sizeof(double));
	load = malloc(nvm * sizeof(double));
	if (!truth || !got || !heavy || !load) {
		ret = pg_cli_fail(PG_ENOMEM, "load demo");
		goto out;
	}
	if ((rc = pg_load_est_new(&e, &p)) < 0 || (rc = pg_data_dir(dir, sizeof(dir))) < 0) {
		ret = pg_cli_fail(rc, "load demo");
		goto out;
	}
	snprintf(spec, sizeof(spec), "gen:%zu,%zu,1440", nvm, seed);
	printf("== load estimation (seed 3): %zu generated VMs x 1440 samples (one a minute), "
	       "source %s\n",
	       nvm, spec);
	printf("   first level: k-means k1=%zu per VM; second level: k-means k2=%zu over the "
	       "fleet\n\n",
	       p.k1, p.k2);
	for (size_t i = 0; i < nvm; i++) {
		rc = pg_load_gen_vm(seed, i, 1440, &s, &truth[i], &heavy[i]);
		if (rc == 0)
			rc = pg_load_est_add(e, &s);
		if (rc < 0) {
			ret = pg_cli_fail(rc, "load demo");
			goto out;
		}
	}
	if ((rc = pg_load_est_finish(e)) < 0) {
		ret = pg_cli_fail(rc, "load demo");
		goto out;
	}
	print_types(e);
	print_summary(e);
	for (size_t i = 0; i < nvm; i++) {
		got[i] = pg_load_est_vm(e, i)->type;
		load[i] = pg_load_est_vm(e, i)->load;
	}
	printf("agreement with the generator's known types: adjusted Rand index %.3f; "
	       "load vs true heaviness: Spearman %.3f\n",
	       pg_load_ari(truth, got, nvm), pg_load_spearman(load, heavy, nvm));
	snprintf(png, sizeof(png), "%s/load-demo.png", dir);
	if ((rc = pg_load_plot_png(e, png)) < 0) {
		ret = pg_cli_fail(rc, "load demo: plot");
		goto out;
	}
	printf("scatter plot: %s  (%.2f s)\n", png, (double)(pg_mono_ns() - t0) / 1e9);
out:
	pg_load_series_release(&s);
	pg_load_est_free(e);
	free(truth);
	free(got);
	free(heavy);
	free(load);
	return ret;
}

const struct pg_cmd pg_cli_load[] = {
    {"estimate", cmd_load_estimate, "two-level k-means load estimate of a fleet",
     "--source is required.", estimate_opts, NULL},
    {"import", cmd_load_import, "read traces into the store", "--source is required.", import_opts,
     NULL},
    {"collect", cmd_load_collect, "sample a live source into the store", "--source is required.",
     collect_opts, NULL},
    {"kmeans", cmd_load_kmeans, "run the k-means engine on a CSV matrix",
     "--data and one of --k or --init are required (scikit-learn meanings).", kmeans_opts, NULL},
    {"generate", cmd_load_generate, "write a generated fleet with known types",
     "--out is required.", generate_opts, NULL},
    {"sources", cmd_load_sources, "list the collectors", "Takes no options.", no_opts, NULL},
    {"demo", cmd_load_demo, "estimate a generated fleet of 300 VMs (the main demo's part)",
     "Prints the type table and a load summary; the plot goes to the data directory.", demo_opts,
     NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
