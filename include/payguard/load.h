/*
 * VM load estimation (seed 3, "load estimation of virtual machines in a cloud
 * environment"): collectors that yield per-VM time series behind one ops
 * table, and the two-level k-means estimator (first level per VM as its data
 * arrive, second level over the fleet). The engine is payguard/kmeans.h.
 */
#ifndef PAYGUARD_LOAD_H
#define PAYGUARD_LOAD_H

#include <stddef.h>
#include <stdint.h>

/* What one sample holds; units as in the Bitbrains GWA-T-12 traces. */
enum pg_load_metric {
	PG_LOAD_CPU = 0,     /* CPU usage, percent of provisioned */
	PG_LOAD_MEM = 1,     /* memory usage, percent of provisioned */
	PG_LOAD_DISK_RD = 2, /* KB/s */
	PG_LOAD_DISK_WR = 3, /* KB/s */
	PG_LOAD_NET_RX = 4,  /* KB/s */
	PG_LOAD_NET_TX = 5,  /* KB/s */
	PG_LOAD_NMETRICS = 6,
};

struct pg_load_sample {
	int64_t ts_ms;
	double v[PG_LOAD_NMETRICS];
};

/* One VM's series. Invariant: n <= cap <= max; the owner frees with _release. */
struct pg_load_series {
	char vm[128];
	char info[64]; /* what the trace says of the VM besides samples ("" if nothing) */
	struct pg_load_sample *s;
	size_t n, cap, max;
};

#define PG_LOAD_MAX_SAMPLES (1u << 20) /* per VM; a week at 1 s is 604,800 */

void pg_load_series_init(struct pg_load_series *s, size_t max);
void pg_load_series_release(struct pg_load_series *s);
void pg_load_series_reset(struct pg_load_series *s);
/* Appends; PG_ETOOBIG past max. */
int pg_load_series_push(struct pg_load_series *s, const struct pg_load_sample *x);

/* Callback of live sources: one sample of one VM. */
typedef int (*pg_load_sample_cb)(void *ctx, const char *vm, const struct pg_load_sample *s);

/*
 * A collector. A source is a trace (next() yields VMs one by one), live
 * (poll() takes one sample of every VM now), or both (prometheus); a slot a
 * source does not have is NULL.
 */
struct pg_load_ops {
	const char *name; /* the prefix of a source spec: "bitbrains:DIR" */
	const char *help;
	/* Opens the source named by arg (the spec after "name:"). */
	int (*open)(const char *arg, void **state);
	/*
	 * Sources that are both a trace and live (prometheus): opens for poll()
	 * without reading a trace now. NULL: open() serves poll() too.
	 */
	int (*open_live)(const char *arg, void **state);
	/*
	 * Trace sources: fills out with the next VM. Returns 1 for a VM, 0 at
	 * the end, or a negative code for a VM that was rejected: the detail
	 * (file, line, source) is in pg_last_error() and the next call goes on
	 * with the next VM. May be NULL.
	 */
	int (*next)(void *state, struct pg_load_series *out);
	/*
	 * Live sources: one sample of every VM, as rates since the previous
	 * poll (the first poll only primes the counters and reports nothing;
	 * prometheus, whose rates the server computes, reports from the first
	 * poll and may report several samples of a VM).
	 * Returns the number of samples reported. May be NULL.
	 */
	int (*poll)(void *state, pg_load_sample_cb cb, void *ctx);
	void (*close)(void *state);
};

/* The collectors, in the order `payguard load --help` lists them. */
extern const struct pg_load_ops pg_load_bitbrains_ops;	/* DIR of <vm>.csv files, or one file */
extern const struct pg_load_ops pg_load_csv_ops;	/* our plain CSV, many VMs per file */
extern const struct pg_load_ops pg_load_azure_ops;	/* Azure Public Dataset v1/v2 */
extern const struct pg_load_ops pg_load_alibaba_ops;	/* Alibaba cluster-trace-v2018 */
extern const struct pg_load_ops pg_load_google2011_ops; /* Google cluster-data 2011 task_usage */
extern const struct pg_load_ops pg_load_libvirt_ops;	/* libvirt URI */
extern const struct pg_load_ops pg_load_prom_ops;	/* Prometheus base URL + range */
extern const struct pg_load_ops pg_load_cgroup_ops;	/* parent cgroup v2 folder */
extern const struct pg_load_ops pg_load_gen_ops;	/* generated fleet "N[,seed]" */
extern const struct pg_load_ops pg_load_store_ops;	/* samples in the store */
extern const struct pg_load_ops *const pg_load_sources[];

/* Finds the ops for "name:arg"; *arg points into spec. PG_ENOENT if unknown. */
int pg_load_source_lookup(const char *spec, const struct pg_load_ops **ops, const char **arg);

/* Samples in the store: table load_samples, newest `window` kept per VM (0: all). */
struct pg_store;
int pg_load_store_migrate(struct pg_store *st);
/* The same on any store of the store API (db.h): SQLite or PostgreSQL. */
struct pg_db;
int pg_load_db_migrate(struct pg_db *db);
int pg_load_db_put(struct pg_db *db, const char *vm, const struct pg_load_sample *s, size_t n,
		   size_t window);
int pg_load_store_put(struct pg_store *st, const char *vm, const struct pg_load_sample *s, size_t n,
		      size_t window);

/* Writes a series as our plain CSV (header when header != 0) to a FILE *. */
int pg_load_csv_write(void *file, const struct pg_load_series *s, int header);

/*
 * Reads a matrix for `load kmeans`: a numeric CSV (comma, optional header
 * line) or a NumPy .npy file (format 1.0-3.0, 2-D, C order, '<f4' or '<f8';
 * known by its magic bytes, whatever the file name). Values are finite.
 */
int pg_load_read_matrix(const char *path, double **x, size_t *n, size_t *d);
int pg_load_parse_matrix(const char *text, size_t len, const char *name, double **x, size_t *n,
			 size_t *d);
int pg_load_parse_npy(const char *buf, size_t len, const char *name, double **x, size_t *n,
		      size_t *d);

/*
 * Prometheus: parses a query_range response body (a matrix) and hands every
 * (series label value, timestamp, value) to cb. label names the label that
 * identifies the VM ("domain"). Exposed for the fuzz harness.
 */
typedef int (*pg_load_prom_cb)(void *ctx, const char *vm, int64_t ts_ms, double v);
int pg_load_prom_parse(const char *body, size_t len, const char *label, pg_load_prom_cb cb,
		       void *ctx);

/* ---- generated fleet (tests, demo, benchmark) ---- */
enum pg_load_gen_type {
	PG_LOAD_GEN_LIGHT = 0,
	PG_LOAD_GEN_CPU,
	PG_LOAD_GEN_MEM,
	PG_LOAD_GEN_DISK,
	PG_LOAD_GEN_NET,
	PG_LOAD_GEN_NTYPES,
};

/*
 * VM number idx of the fleet of the given seed: samples per day at a fixed
 * step (1440 = one per minute). Deterministic per (seed, idx), so a fleet of
 * any size streams. Reports its true type and heaviness (0..1).
 */
int pg_load_gen_vm(uint64_t seed, size_t idx, size_t samples, struct pg_load_series *out, int *type,
		   double *heaviness);
const char *pg_load_gen_type_name(int type);

/* ---- the two-level estimator ---- */
#define PG_LOAD_NFEAT 4 /* cpu, memory, disk, network: see docs/load.md */

struct pg_load_params {
	size_t k1; /* first level, per VM (default 3) */
	size_t k2; /* second level; 0 = by silhouette over k2_min..k2_max */
	size_t k2_min, k2_max;
	double peak_share; /* groups below this share of time are bursts (0.05) */
	uint64_t seed;
	int n_threads; /* first-level fits run on this many threads (2) */
	int n_init2;   /* k-means++ restarts of the second level (10) */
};

void pg_load_params_init(struct pg_load_params *p);

/* Normalised features of one sample (docs/load.md). */
void pg_load_features(const struct pg_load_sample *s, double f[PG_LOAD_NFEAT]);

struct pg_load_vm {
	char name[128];
	char info[64]; /* the series' info: e.g. Azure's "Interactive, 2 cores, 4 GB" */
	double feat[PG_LOAD_NFEAT]; /* the first characteristic value */
	size_t nsamples;
	int type;    /* second-level cluster */
	double load; /* 0..100 */
};

struct pg_load_type {
	char name[48]; /* "cpu-intensive", "light", "mixed" ... */
	double center[PG_LOAD_NFEAT];
	size_t count;
	double mean_load;
};

struct pg_load_est;

int pg_load_est_new(struct pg_load_est **e, const struct pg_load_params *p);
void pg_load_est_free(struct pg_load_est *e);
/*
 * Adds one VM: its first-level k-means runs now (batched over threads), and
 * only its characteristic value is kept. PG_EINVAL (with the VM's name in the
 * detail) when it has fewer samples than k1 or a non-finite value; the
 * estimator is still usable.
 */
int pg_load_est_add(struct pg_load_est *e, const struct pg_load_series *s);
/* Same with features already normalised (n x PG_LOAD_NFEAT). */
int pg_load_est_add_features(struct pg_load_est *e, const char *vm, const double *f, size_t n);
/* Same with float32 features, the first level's own type (no conversion pass). */
int pg_load_est_add_features_f32(struct pg_load_est *e, const char *vm, const float *f, size_t n);
/* Runs the second level. */
int pg_load_est_finish(struct pg_load_est *e);
size_t pg_load_est_count(const struct pg_load_est *e);
const struct pg_load_vm *pg_load_est_vm(const struct pg_load_est *e, size_t i);
size_t pg_load_est_ntypes(const struct pg_load_est *e);
const struct pg_load_type *pg_load_est_type(const struct pg_load_est *e, size_t i);
/* Silhouette of the chosen second level (computed on at most 2,000 VMs). */
double pg_load_est_silhouette(const struct pg_load_est *e);

/* First characteristic value of one VM from its features (exposed for tests). */
int pg_load_characteristic(const double *f, size_t n, size_t k1, double peak_share, uint64_t seed,
			   double out[PG_LOAD_NFEAT]);
double pg_load_value(const double feat[PG_LOAD_NFEAT]);

/*
 * Scatter plot of the VMs (x = max(CPU, memory) in %, y = the I/O scale),
 * a marker shape and a behaviour colour per type: SVG when path ends in
 * ".svg", PNG otherwise. pg_load_plot_png is the same function.
 */
int pg_load_plot(const struct pg_load_est *e, const char *path);
int pg_load_plot_png(const struct pg_load_est *e, const char *path);

/* Adjusted Rand index and Spearman rank correlation (tests and demo). */
double pg_load_ari(const int *a, const int *b, size_t n);
double pg_load_spearman(const double *a, const double *b, size_t n);

#endif
