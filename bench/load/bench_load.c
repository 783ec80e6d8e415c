/*
 * Benchmark helper for bench/load/run.py (seed 3's engine and estimator):
 *   bench_load fit DATA INIT N D K f32|f64 lloyd|hamerly THREADS REPEAT
 *       times pg_kmeans_fit from the given initial centers (raw little-endian
 *       arrays as numpy's tofile writes them); prints JSON.
 *   bench_load seed DATA N D K f32|f64 THREADS REPEAT
 *       times k-means++ seeding alone (pg_kmeans_plusplus_mt, seed 0); prints
 *       JSON with the centers' potential (sum of squared distances to them).
 *   bench_load twolevel FEATURES VMS SAMPLES K1 K2 THREADS OUTDIR
 *       times the estimator on float32 features (VMS x SAMPLES x 4), then,
 *       untimed, writes the initial centers it used (init1.bin, init2.bin),
 *       the characteristic values and the inertias for the comparison.
 *   bench_load features PATH VMS SAMPLES
 *       writes the generated fleet's normalised features (float32).
 *   bench_load stream VMS SAMPLES
 *       the generated fleet streamed through the estimator: time, peak memory.
 *   bench_load ingest SPEC REPEAT
 *       reads a trace source (bitbrains:DIR, csv:FILE, ...) or, with SPEC
 *       matrix:FILE, a matrix (CSV or .npy) REPEAT times on one thread; prints
 *       JSON with the bytes read (the files' sizes), the median seconds and
 *       MB/s, and the samples or values read (a check that all was parsed).
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/kmeans.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

static void *
map_file(const char *path, size_t want)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	void *p;

	if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size != want) {
		fprintf(stderr, "bench_load: '%s' is not %zu bytes\n", path, want);
		exit(2);
	}
	p = mmap(NULL, want, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int
bench_fit(char **av)
{
	size_t n = strtoull(av[2], NULL, 10), d = strtoull(av[3], NULL, 10),
	       k = strtoull(av[4], NULL, 10);
	int f32 = strcmp(av[5], "f32") == 0, repeat = atoi(av[8]);
	const void *x = map_file(av[0], n * d * (f32 ? 4 : 8));
	const double *init = map_file(av[1], k * d * 8);
	struct pg_kmeans_params p;
	struct pg_kmeans_info info;
	int32_t *lab = malloc(n * sizeof(int32_t));
	double *c = malloc(k * d * sizeof(double)), t[64];

	pg_kmeans_params_init(&p, k);
	p.init = init;
	p.algo = strcmp(av[6], "hamerly") == 0 ? PG_KMEANS_HAMERLY : PG_KMEANS_LLOYD;
	p.n_threads = atoi(av[7]);
	if (repeat < 1 || repeat > 64)
		repeat = 5;
	for (int r = 0; r < repeat; r++) {
		uint64_t t0 = pg_mono_ns();
		if (pg_kmeans_fit(x, f32 ? PG_KMEANS_F32 : PG_KMEANS_F64, n, d, &p, lab, c, &info) <
		    0) {
			fprintf(stderr, "bench_load: %s\n", pg_last_error());
			return 1;
		}
		t[r] = (double)(pg_mono_ns() - t0) / 1e9;
	}
	qsort(t, (size_t)repeat, sizeof(double), cmp_dbl);
	printf("{\"median\": %.6f, \"min\": %.6f, \"inertia\": %.10g, \"n_iter\": %d}\n",
	       t[repeat / 2], t[0], info.inertia, info.n_iter);
	return 0;
}

static int
bench_seed(char **av)
{
	size_t n = strtoull(av[1], NULL, 10), d = strtoull(av[2], NULL, 10),
	       k = strtoull(av[3], NULL, 10);
	int f32 = strcmp(av[4], "f32") == 0, threads = atoi(av[5]), repeat = atoi(av[6]);
	const void *x = map_file(av[0], n * d * (f32 ? 4 : 8));
	double *c = malloc(k * d * sizeof(double)), t[64], pot = 0;

	if (repeat < 1 || repeat > 64)
		repeat = 5;
	for (int r = 0; r < repeat; r++) {
		uint64_t t0 = pg_mono_ns();
		if (pg_kmeans_plusplus_mt(x, f32 ? PG_KMEANS_F32 : PG_KMEANS_F64, n, d, k, 0,
					  threads, c) < 0) {
			fprintf(stderr, "bench_load: %s\n", pg_last_error());
			return 1;
		}
		t[r] = (double)(pg_mono_ns() - t0) / 1e9;
	}
	for (size_t i = 0; i < n; i++) {
		double best = INFINITY;
		for (size_t ci = 0; ci < k; ci++) {
			double s = 0;
			for (size_t j = 0; j < d; j++) {
				double v = (f32 ? (double)((const float *)x)[i * d + j]
						: ((const double *)x)[i * d + j]) -
					   c[ci * d + j];
				s += v * v;
			}
			best = s < best ? s : best;
		}
		pot += best;
	}
	qsort(t, (size_t)repeat, sizeof(double), cmp_dbl);
	printf("{\"median\": %.6f, \"min\": %.6f, \"potential\": %.10g}\n", t[repeat / 2], t[0],
	       pot);
	free(c);
	return 0;
}

static int
write_all(const char *dir, const char *name, const void *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "bench_load: cannot write '%s'\n", path);
		return 1;
	}
	return 0;
}

static int
bench_twolevel(char **av)
{
	size_t vms = strtoull(av[1], NULL, 10), ns = strtoull(av[2], NULL, 10);
	size_t k1 = strtoull(av[3], NULL, 10), k2 = strtoull(av[4], NULL, 10);
	const char *dir = av[6];
	const float *feat = map_file(av[0], vms * ns * 4 * sizeof(float));
	struct pg_load_params p;
	struct pg_load_est *e;
	double *f = malloc(ns * 4 * sizeof(double)), secs, inertia1 = 0;
	double *init1 = malloc(vms * k1 * 4 * sizeof(double)),
	       *chars = malloc(vms * 4 * sizeof(double));
	double init2[64 * 4], c2[64 * 4], c1[64 * 4];
	int32_t *lab = malloc((ns > vms ? ns : vms) * sizeof(int32_t));
	struct pg_kmeans_params kp;
	struct pg_kmeans_info info;
	uint64_t t0;
	char name[64];

	pg_load_params_init(&p);
	p.k1 = k1;
	p.k2 = k2;
	p.n_threads = atoi(av[5]);
	p.n_init2 = 1; /* so its initial centers are pg_kmeans_plusplus(seed): exportable */
	t0 = pg_mono_ns();
	if (pg_load_est_new(&e, &p) < 0)
		return 1;
	for (size_t v = 0; v < vms; v++) {
		const float *src = feat + v * ns * 4;
		snprintf(name, sizeof(name), "vm-%06zu", v);
		/* The features are float32, the first level's type: added as they are. */
		if (pg_load_est_add_features_f32(e, name, src, ns) < 0) {
			fprintf(stderr, "bench_load: %s\n", pg_last_error());
			return 1;
		}
	}
	if (pg_load_est_finish(e) < 0) {
		fprintf(stderr, "bench_load: %s\n", pg_last_error());
		return 1;
	}
	secs = (double)(pg_mono_ns() - t0) / 1e9;
	/* Untimed: the initial centers the estimator used, and the inertias. */
	for (size_t v = 0; v < vms; v++) {
		const float *src = feat + v * ns * 4;
		for (size_t i = 0; i < ns * 4; i++)
			f[i] = src[i];
		/* The estimator's first level is float32 (docs/load.md). */
		pg_kmeans_plusplus(src, PG_KMEANS_F32, ns, 4, k1, p.seed + v, init1 + v * k1 * 4);
		pg_kmeans_params_init(&kp, k1);
		kp.init = init1 + v * k1 * 4;
		pg_kmeans_fit(src, PG_KMEANS_F32, ns, 4, &kp, lab, c1, &info);
		inertia1 += info.inertia;
		memcpy(chars + v * 4, pg_load_est_vm(e, v)->feat, 4 * sizeof(double));
	}
	pg_kmeans_plusplus(chars, PG_KMEANS_F64, vms, 4, k2, p.seed, init2);
	pg_kmeans_params_init(&kp, k2);
	kp.init = init2;
	pg_kmeans_fit(chars, PG_KMEANS_F64, vms, 4, &kp, lab, c2, &info);
	if (write_all(dir, "init1.bin", init1, vms * k1 * 4 * sizeof(double)) ||
	    write_all(dir, "init2.bin", init2, k2 * 4 * sizeof(double)) ||
	    write_all(dir, "chars.bin", chars, vms * 4 * sizeof(double)))
		return 1;
	printf("{\"seconds\": %.6f, \"inertia1\": %.10g, \"inertia2\": %.10g, \"types\": %zu}\n",
	       secs, inertia1, info.inertia, pg_load_est_ntypes(e));
	pg_load_est_free(e);
	return 0;
}

static int
bench_stream(char **av)
{
	size_t vms = strtoull(av[0], NULL, 10), ns = strtoull(av[1], NULL, 10);
	struct pg_load_params p;
	struct pg_load_est *e;
	struct pg_load_series s;
	struct rusage ru;
	double gen = 0;
	uint64_t t0 = pg_mono_ns(), t;

	pg_load_params_init(&p);
	pg_load_series_init(&s, 0);
	if (pg_load_est_new(&e, &p) < 0)
		return 1;
	for (size_t v = 0; v < vms; v++) {
		t = pg_mono_ns();
		pg_load_gen_vm(1, v, ns, &s, NULL, NULL);
		gen += (double)(pg_mono_ns() - t) / 1e9;
		if (pg_load_est_add(e, &s) < 0)
			return 1;
		if (v % 10000 == 9999)
			fprintf(stderr, "%zu VMs...\n", v + 1);
	}
	if (pg_load_est_finish(e) < 0)
		return 1;
	/* VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent. */
	ru.ru_maxrss = 0;
	{
		FILE *st = fopen("/proc/self/status", "r");
		char line[256];
		while (st && fgets(line, sizeof(line), st))
			if (strncmp(line, "VmHWM:", 6) == 0)
				ru.ru_maxrss = strtol(line + 6, NULL, 10);
		if (st)
			fclose(st);
	}
	printf("{\"seconds\": %.3f, \"generator_seconds\": %.3f, \"peak_rss_mb\": %.1f, \"types\": "
	       "%zu}\n",
	       (double)(pg_mono_ns() - t0) / 1e9, gen, (double)ru.ru_maxrss / 1024.0,
	       pg_load_est_ntypes(e));
	pg_load_est_free(e);
	pg_load_series_release(&s);
	return 0;
}

static int
bench_features(char **av)
{
	size_t vms = strtoull(av[1], NULL, 10), ns = strtoull(av[2], NULL, 10);
	FILE *f = fopen(av[0], "wb");
	float *row = malloc(ns * 4 * sizeof(float));
	struct pg_load_series s;

	if (!f || !row)
		return 1;
	pg_load_series_init(&s, 0);
	for (size_t v = 0; v < vms; v++) {
		if (pg_load_gen_vm(1, v, ns, &s, NULL, NULL) < 0)
			return 1;
		for (size_t i = 0; i < ns; i++) {
			double x[4];
			pg_load_features(&s.s[i], x);
			for (int j = 0; j < 4; j++)
				row[i * 4 + j] = (float)x[j];
		}
		if (fwrite(row, sizeof(float), ns * 4, f) != ns * 4)
			return 1;
	}
	pg_load_series_release(&s);
	free(row);
	return fclose(f) != 0;
}

/* Bytes of the file or of every regular file below a folder. */
static size_t tree_total;

static int
tree_add(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F)
		tree_total += (size_t)st->st_size;
	return 0;
}

static size_t
tree_bytes(const char *path)
{
	tree_total = 0;
	if (nftw(path, tree_add, 16, FTW_PHYS) != 0)
		return 0;
	return tree_total;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int
bench_ingest(char **av)
{
	int repeat = atoi(av[1]);
	double t[64], c[64];
	size_t items = 0, bytes;
	const char *arg;

	if (repeat < 1 || repeat > 64)
		return 2;
	bytes = tree_bytes(strchr(av[0], ':') ? strchr(av[0], ':') + 1 : av[0]);
	for (int r = 0; r < repeat; r++) {
		uint64_t t0 = pg_mono_ns();
		double c0 = cpu_seconds();

		items = 0;
		if (strncmp(av[0], "matrix:", 7) == 0) {
			double *x;
			size_t n, d;
			if (pg_load_read_matrix(av[0] + 7, &x, &n, &d) < 0)
				goto fail;
			items = n * d;
			free(x);
		} else {
			const struct pg_load_ops *ops;
			struct pg_load_series s;
			void *st;
			int rc;

			if (pg_load_source_lookup(av[0], &ops, &arg) < 0 || ops->open(arg, &st) < 0)
				goto fail;
			pg_load_series_init(&s, 0);
			while ((rc = ops->next(st, &s)) > 0)
				items += s.n;
			ops->close(st);
			pg_load_series_release(&s);
			if (rc < 0)
				goto fail;
		}
		t[r] = (double)(pg_mono_ns() - t0) / 1e9;
		c[r] = cpu_seconds() - c0;
	}
	qsort(t, (size_t)repeat, sizeof(double), cmp_dbl);
	qsort(c, (size_t)repeat, sizeof(double), cmp_dbl);
	/* Per core: bytes over the process's CPU time, steadier than wall time on
	 * a shared machine (the other helpers' builds take turns on the cores). */
	printf("{\"bytes\": %zu, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"mb_per_s\": %.1f, "
	       "\"mb_per_cpu_s\": %.1f, \"items\": %zu}\n",
	       bytes, t[repeat / 2], c[repeat / 2], (double)bytes / 1e6 / t[repeat / 2],
	       (double)bytes / 1e6 / c[repeat / 2], items);
	return 0;
fail:
	fprintf(stderr, "bench_load ingest: %s\n", pg_last_error());
	return 1;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "ingest") == 0)
		return bench_ingest(argv + 2);
	if (argc == 11 && strcmp(argv[1], "fit") == 0)
		return bench_fit(argv + 2);
	if (argc == 9 && strcmp(argv[1], "seed") == 0)
		return bench_seed(argv + 2);
	if (argc == 9 && strcmp(argv[1], "twolevel") == 0)
		return bench_twolevel(argv + 2);
	if (argc == 5 && strcmp(argv[1], "features") == 0)
		return bench_features(argv + 2);
	if (argc == 4 && strcmp(argv[1], "stream") == 0)
		return bench_stream(argv + 2);
	fprintf(stderr, "usage: see the comment at the top of bench/load/bench_load.c\n");
	return 2;
}
