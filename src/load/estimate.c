/*
 * The two-level estimator of seed 3: a first k-means over each VM's samples
 * (run as the VM arrives, on a pipeline of threads, keeping only its
 * characteristic value), then a second k-means over the fleet's
 * characteristic values, giving each VM a type and a load value.
 * docs/load.md gives the formulas and why.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/kmeans.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING	  64   /* VMs held at once between the caller and the threads */
#define SIL_MAX	  2000 /* VMs the silhouette is computed on */
#define LIGHT_MAX 0.2  /* a type whose center stays below this everywhere is light */

static const char *const feat_names[PG_LOAD_NFEAT] = {"cpu", "memory", "disk", "network"};

void
pg_load_params_init(struct pg_load_params *p)
{
	memset(p, 0, sizeof(*p));
	p->k1 = 3;
	p->k2 = 5;
	p->k2_min = 2;
	p->k2_max = 8;
	p->peak_share = 0.05;
	p->seed = 1;
	p->n_threads = 2;
	p->n_init2 = 10;
}

static double
clamp01(double v)
{
	return v < 0 ? 0 : (v > 1 ? 1 : v);
}

void
pg_load_features(const struct pg_load_sample *s, double f[PG_LOAD_NFEAT])
{
	double disk = s->v[PG_LOAD_DISK_RD] + s->v[PG_LOAD_DISK_WR];
	double net = s->v[PG_LOAD_NET_RX] + s->v[PG_LOAD_NET_TX];

	f[0] = clamp01(s->v[PG_LOAD_CPU] / 100.0);
	f[1] = clamp01(s->v[PG_LOAD_MEM] / 100.0);
	/* Throughputs have no ceiling: x / (x + ref) maps them onto [0, 1). */
	f[2] = disk > 0 ? disk / (disk + LOAD_DISK_REF) : 0;
	f[3] = net > 0 ? net / (net + LOAD_NET_REF) : 0;
}

/*
 * The first level runs in float32: features live in [0, 1] and seven digits
 * are far more than their noise, while float32 vectors hold twice the points.
 */
static int
characteristic_f32(const float *f, size_t n, size_t k1, double peak_share, uint64_t seed,
		   double out[PG_LOAD_NFEAT])
{
	struct pg_kmeans_params p;
	struct pg_kmeans_info info;
	int32_t *lab = malloc(n * sizeof(int32_t));
	double *c = malloc(k1 * PG_LOAD_NFEAT * sizeof(double));
	size_t *cnt = calloc(k1, sizeof(size_t));
	int rc;

	if (!lab || !c || !cnt) {
		rc = pg_error(PG_ENOMEM, "load", "first level work space");
		goto out;
	}
	pg_kmeans_params_init(&p, k1);
	p.seed = seed;
	rc = pg_kmeans_fit(f, PG_KMEANS_F32, n, PG_LOAD_NFEAT, &p, lab, c, &info);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		cnt[lab[i]]++;
	for (size_t j = 0; j < PG_LOAD_NFEAT; j++) {
		double mean = 0, peak = 0;

		for (size_t g = 0; g < k1; g++) {
			double share = (double)cnt[g] / (double)n, v = c[g * PG_LOAD_NFEAT + j];
			mean += share * v;
			/* Groups holding less than peak_share of the time are bursts. */
			if (share >= peak_share && v > peak)
				peak = v;
		}
		out[j] = 0.25 * mean + 0.75 * peak;
	}
out:
	free(lab);
	free(c);
	free(cnt);
	return rc;
}

int
pg_load_characteristic(const double *f, size_t n, size_t k1, double peak_share, uint64_t seed,
		       double out[PG_LOAD_NFEAT])
{
	float *ff = malloc(n * PG_LOAD_NFEAT * sizeof(float));
	int rc;

	if (!ff)
		return pg_error(PG_ENOMEM, "load", "first level work space");
	for (size_t i = 0; i < n * PG_LOAD_NFEAT; i++)
		ff[i] = (float)f[i];
	rc = characteristic_f32(ff, n, k1, peak_share, seed, out);
	free(ff);
	return rc;
}

double
pg_load_value(const double feat[PG_LOAD_NFEAT])
{
	double mx = 0, mean = 0;

	for (size_t j = 0; j < PG_LOAD_NFEAT; j++) {
		mx = feat[j] > mx ? feat[j] : mx;
		mean += feat[j] / PG_LOAD_NFEAT;
	}
	/* The busiest resource sets most of the load; the others add to it. */
	return 100.0 * clamp01(0.75 * mx + 0.25 * mean);
}

/*
 * One VM waiting for, or done with, its first level. Slots form a ring the
 * caller fills while worker threads empty it, so copying the next VMs in
 * overlaps the fits of the last ones; a slot's buffer is kept for reuse.
 */
enum { SLOT_FREE, SLOT_READY, SLOT_BUSY, SLOT_DONE };

struct pending {
	float *f; /* n x NFEAT */
	size_t n, fcap;
	size_t vm; /* index into e->vms */
	int state, rc;
	double feat[PG_LOAD_NFEAT], load; /* the results, copied to vms[vm] on reclaim */
	char err[256];
};

struct pg_load_est {
	struct pg_load_params p;
	struct pg_load_vm *vms; /* touched by the caller's thread only */
	size_t nvms, cap;
	struct pending ring[RING];
	/* Positions, ever increasing: reclaim <= claim <= fill <= reclaim + RING. */
	size_t fill, claim, reclaim;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t th[7];
	size_t nth;
	int stop;
	struct pg_load_type *types;
	size_t ntypes;
	double silhouette;
	int finished;
};

int
pg_load_est_new(struct pg_load_est **out, const struct pg_load_params *p)
{
	struct pg_load_est *e;

	if (p->k1 < 1 || p->k1 > 64 ||
	    (p->k2 == 0 && (p->k2_min < 2 || p->k2_max < p->k2_min || p->k2_max > 64)) ||
	    p->k2 > 64 || p->peak_share < 0 || p->peak_share >= 1)
		return pg_error(PG_EINVAL, "load", "bad estimator parameters (k1 %zu, k2 %zu)",
				p->k1, p->k2);
	e = calloc(1, sizeof(*e));
	if (!e)
		return pg_error(PG_ENOMEM, "load", "estimator");
	e->p = *p;
	if (e->p.n_threads < 1)
		e->p.n_threads = 1;
	if (e->p.n_init2 < 1)
		e->p.n_init2 = 1;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->work, NULL);
	pthread_cond_init(&e->done, NULL);
	*out = e;
	return 0;
}

static void stop_threads(struct pg_load_est *e);

void
pg_load_est_free(struct pg_load_est *e)
{
	if (!e)
		return;
	stop_threads(e);
	for (size_t i = 0; i < RING; i++)
		free(e->ring[i].f);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->work);
	pthread_cond_destroy(&e->done);
	free(e->vms);
	free(e->types);
	free(e);
}

/* Runs the first level of the next ready slot; called and returns with e->mu held. */
static void
run_one(struct pg_load_est *e)
{
	struct pending *b = &e->ring[e->claim % RING];

	e->claim++;
	b->state = SLOT_BUSY;
	pthread_mutex_unlock(&e->mu);
	/* Seeded per VM so the result does not depend on batching or threads. */
	b->rc =
	    characteristic_f32(b->f, b->n, e->p.k1, e->p.peak_share, e->p.seed + b->vm, b->feat);
	if (b->rc < 0)
		snprintf(b->err, sizeof(b->err), "%s", pg_last_error());
	b->load = pg_load_value(b->feat);
	pthread_mutex_lock(&e->mu);
	b->state = SLOT_DONE;
	pthread_cond_signal(&e->done);
}

static void *
worker_main(void *arg)
{
	struct pg_load_est *e = arg;

	/* VMs are taken one at a time: a thread the machine holds up delays nobody. */
	pthread_mutex_lock(&e->mu);
	for (;;) {
		while (e->claim == e->fill && !e->stop)
			pthread_cond_wait(&e->work, &e->mu);
		if (e->claim == e->fill)
			break;
		run_one(e);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

static void
stop_threads(struct pg_load_est *e)
{
	pthread_mutex_lock(&e->mu);
	e->stop = 1;
	pthread_cond_broadcast(&e->work);
	pthread_mutex_unlock(&e->mu);
	for (size_t t = 0; t < e->nth; t++)
		pthread_join(e->th[t], NULL);
	e->nth = 0;
}

/*
 * With e->mu held: hands finished slots, oldest first, back to the ring and
 * their results to e->vms; the first failure found is returned (the other
 * VMs are kept).
 */
static int
reclaim_done(struct pg_load_est *e)
{
	int rc = 0;

	while (e->reclaim < e->fill && e->ring[e->reclaim % RING].state == SLOT_DONE) {
		struct pending *b = &e->ring[e->reclaim % RING];
		struct pg_load_vm *vm = &e->vms[b->vm];

		memcpy(vm->feat, b->feat, sizeof(vm->feat));
		vm->load = b->load;
		if (b->rc < 0 && rc == 0)
			rc = pg_error(b->rc, "load", "%s", b->err);
		b->state = SLOT_FREE;
		e->reclaim++;
	}
	return rc;
}

/*
 * Waits, with e->mu held, until at most `room` slots are in use, running
 * ready slots on this thread meanwhile; returns the first failure reclaimed.
 */
static int
drain(struct pg_load_est *e, size_t room)
{
	int rc = 0, r;

	for (;;) {
		r = reclaim_done(e);
		rc = rc ? rc : r;
		if (e->fill - e->reclaim <= room)
			return rc;
		if (e->claim < e->fill)
			run_one(e);
		else
			pthread_cond_wait(&e->done, &e->mu);
	}
}

/* Starts the worker threads beside the caller's, once. */
static void
start_threads(struct pg_load_est *e)
{
	size_t want = (size_t)e->p.n_threads - 1;

	if (want > sizeof(e->th) / sizeof(e->th[0]))
		want = sizeof(e->th) / sizeof(e->th[0]);
	/* Fewer threads than asked only costs time: the caller's thread runs the rest. */
	while (e->nth < want && pthread_create(&e->th[e->nth], NULL, worker_main, e) == 0)
		e->nth++;
}

/* Adds one VM from double (f) or float (ff) features. */
static int
add_features(struct pg_load_est *e, const char *vm, const double *f, const float *ff, size_t n)
{
	struct pending *b;
	size_t bad = SIZE_MAX;
	int rc;

	if (e->finished)
		return pg_error(PG_ESTATE, "load", "estimator already finished");
	if (n < e->p.k1)
		return pg_error(PG_EINVAL, "load", "VM '%s': %zu samples, fewer than k1 = %zu", vm,
				n, e->p.k1);
	/* One branch-free pass (exponent bits all set: infinity or NaN), then which. */
	if (f) {
		int any = 0;
		for (size_t i = 0; i < n * PG_LOAD_NFEAT; i++) {
			uint64_t u;
			memcpy(&u, &f[i], sizeof(u));
			any |= (u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL;
		}
		for (size_t i = 0; any && i < n * PG_LOAD_NFEAT && bad == SIZE_MAX; i++)
			if (!isfinite(f[i]))
				bad = i;
	} else {
		int any = 0;
		for (size_t i = 0; i < n * PG_LOAD_NFEAT; i++) {
			uint32_t u;
			memcpy(&u, &ff[i], sizeof(u));
			any |= (u & 0x7f800000U) == 0x7f800000U;
		}
		for (size_t i = 0; any && i < n * PG_LOAD_NFEAT && bad == SIZE_MAX; i++)
			if (!isfinite(ff[i]))
				bad = i;
	}
	if (bad != SIZE_MAX)
		return pg_error(PG_EINVAL, "load", "VM '%s': sample %zu is not finite", vm,
				bad / PG_LOAD_NFEAT);
	if (e->nvms == e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 1024;
		struct pg_load_vm *p = realloc(e->vms, ncap * sizeof(*p));
		if (!p)
			return pg_error(PG_ENOMEM, "load", "fleet of %zu VMs", ncap);
		e->vms = p;
		e->cap = ncap;
	}
	if (e->nvms == 0 && e->nth == 0)
		start_threads(e);
	pthread_mutex_lock(&e->mu);
	rc = drain(e, RING - 1);
	pthread_mutex_unlock(&e->mu);
	/* Slot `fill` is free and no thread looks at it until fill moves on. */
	b = &e->ring[e->fill % RING];
	if (b->fcap < n) {
		float *nf = realloc(b->f, n * PG_LOAD_NFEAT * sizeof(float));
		if (!nf)
			return pg_error(PG_ENOMEM, "load", "VM '%s': %zu samples", vm, n);
		b->f = nf;
		b->fcap = n;
	}
	if (f)
		for (size_t i = 0; i < n * PG_LOAD_NFEAT; i++)
			b->f[i] = (float)f[i];
	else
		memcpy(b->f, ff, n * PG_LOAD_NFEAT * sizeof(float));
	b->n = n;
	b->vm = e->nvms;
	b->state = SLOT_READY;
	memset(&e->vms[e->nvms], 0, sizeof(e->vms[0]));
	snprintf(e->vms[e->nvms].name, sizeof(e->vms[0].name), "%s", vm);
	e->vms[e->nvms].nsamples = n;
	e->vms[e->nvms].type = -1;
	e->nvms++;
	pthread_mutex_lock(&e->mu);
	e->fill++;
	pthread_cond_signal(&e->work);
	pthread_mutex_unlock(&e->mu);
	/* A failure of an earlier VM: this one is added all the same. */
	return rc;
}

int
pg_load_est_add_features(struct pg_load_est *e, const char *vm, const double *f, size_t n)
{
	return add_features(e, vm, f, NULL, n);
}

int
pg_load_est_add_features_f32(struct pg_load_est *e, const char *vm, const float *f, size_t n)
{
	return add_features(e, vm, NULL, f, n);
}

int
pg_load_est_add(struct pg_load_est *e, const struct pg_load_series *s)
{
	double *f;
	size_t before;
	int rc;

	if (s->n < e->p.k1)
		return pg_error(PG_EINVAL, "load", "VM '%s': %zu samples, fewer than k1 = %zu",
				s->vm, s->n, e->p.k1);
	f = malloc(s->n * PG_LOAD_NFEAT * sizeof(double));
	if (!f)
		return pg_error(PG_ENOMEM, "load", "VM '%s': %zu samples", s->vm, s->n);
	for (size_t i = 0; i < s->n; i++)
		pg_load_features(&s->s[i], f + i * PG_LOAD_NFEAT);
	before = e->nvms;
	rc = pg_load_est_add_features(e, s->vm, f, s->n);
	if (e->nvms > before) /* added (its batch may have run already) */
		memcpy(e->vms[before].info, s->info, sizeof(s->info));
	free(f);
	return rc;
}

/* Names a type by its center: light, <resource>-intensive or mixed. */
static void
name_type(const double *z, char out[48])
{
	size_t a = 0, b = 1;

	if (z[1] > z[0]) {
		a = 1;
		b = 0;
	}
	for (size_t j = 2; j < PG_LOAD_NFEAT; j++) {
		if (z[j] > z[a]) {
			b = a;
			a = j;
		} else if (z[j] > z[b]) {
			b = j;
		}
	}
	if (z[a] < LIGHT_MAX)
		snprintf(out, 48, "light");
	else if (z[a] >= 1.5 * z[b])
		snprintf(out, 48, "%s-intensive", feat_names[a]);
	else
		snprintf(out, 48, "mixed (%s+%s)", feat_names[a], feat_names[b]);
}

static int
cmp_load(const void *x, const void *y)
{
	const struct pg_load_type *a = x, *b = y;
	return a->mean_load < b->mean_load ? -1 : a->mean_load > b->mean_load;
}

/* The second level's k means runs, one per k in [klo, khi] (n VMs' features
 * x): the labels (best) and centers (bestc) of the k with the best
 * silhouette into *kbest and *best_sil. lab and c are scratch. */
static int
fit_best_k(const struct pg_load_est *e, const double *x, size_t n, size_t klo, size_t khi,
	   int32_t *lab, double *c, int32_t *best, double *bestc, size_t *kbest, double *best_sil)
{
	struct pg_kmeans_params kp;
	struct pg_kmeans_info info;
	size_t nsil = n < SIL_MAX ? n : SIL_MAX;
	int rc;

	for (size_t k = klo; k <= khi; k++) {
		double sil = 0;

		pg_kmeans_params_init(&kp, k);
		kp.n_init = e->p.n_init2;
		kp.seed = e->p.seed;
		kp.n_threads = e->p.n_threads;
		rc = pg_kmeans_fit(x, PG_KMEANS_F64, n, PG_LOAD_NFEAT, &kp, lab, c, &info);
		if (rc < 0)
			return rc;
		if (k > 1 && nsil > k) {
			/* The first nsil VMs: arrival order is the only order we have. */
			rc = pg_kmeans_silhouette_mt(x, nsil, PG_LOAD_NFEAT, lab, k, e->p.n_threads,
						     &sil);
			if (rc < 0)
				return rc;
		}
		if (*kbest == 0 || sil > *best_sil) {
			*best_sil = sil;
			*kbest = k;
			memcpy(best, lab, n * sizeof(int32_t));
			memcpy(bestc, c, k * PG_LOAD_NFEAT * sizeof(double));
		}
	}
	return 0;
}

/* Types are listed from the lightest to the heaviest: e's kbest types get
 * their count, mean load and name, sorted, and each VM (labelled best) its
 * type's new index. */
static int
order_types(struct pg_load_est *e, const int32_t *best, size_t kbest)
{
	size_t n = e->nvms;
	double *sum = calloc(kbest, sizeof(double));
	size_t *cnt = calloc(kbest, sizeof(size_t));
	int32_t map[64];
	struct pg_load_type tmp[64];

	if (!sum || !cnt) {
		free(sum);
		free(cnt);
		return pg_error(PG_ENOMEM, "load", "types");
	}
	for (size_t i = 0; i < n; i++) {
		sum[best[i]] += e->vms[i].load;
		cnt[best[i]]++;
	}
	for (size_t t = 0; t < kbest; t++) {
		tmp[t] = e->types[t];
		tmp[t].count = cnt[t];
		tmp[t].mean_load = cnt[t] ? sum[t] / (double)cnt[t] : 0;
		/* Stash the original index in the name until after the sort. */
		snprintf(tmp[t].name, sizeof(tmp[t].name), "%zu", t);
	}
	qsort(tmp, kbest, sizeof(tmp[0]), cmp_load);
	for (size_t t = 0; t < kbest; t++) {
		map[atoi(tmp[t].name)] = (int32_t)t;
		name_type(tmp[t].center, tmp[t].name);
		e->types[t] = tmp[t];
	}
	for (size_t i = 0; i < n; i++)
		e->vms[i].type = map[best[i]];
	free(sum);
	free(cnt);
	return 0;
}

int
pg_load_est_finish(struct pg_load_est *e)
{
	double *x = NULL, *c = NULL, *bestc = NULL;
	int32_t *lab = NULL, *best = NULL;
	size_t n, kbest = 0, klo, khi;
	double best_sil = -2;
	int rc;

	if (e->finished)
		return 0;
	pthread_mutex_lock(&e->mu);
	rc = drain(e, 0);
	pthread_mutex_unlock(&e->mu);
	if (rc < 0)
		return rc; /* the VM's error; the others are kept */
	stop_threads(e);
	n = e->nvms;
	if (n == 0)
		return pg_error(PG_EINVAL, "load", "no VM to estimate");
	x = malloc(n * PG_LOAD_NFEAT * sizeof(double));
	lab = malloc(n * sizeof(int32_t));
	best = malloc(n * sizeof(int32_t));
	c = malloc(64 * PG_LOAD_NFEAT * sizeof(double));
	bestc = malloc(64 * PG_LOAD_NFEAT * sizeof(double));
	if (!x || !lab || !best || !c || !bestc) {
		rc = pg_error(PG_ENOMEM, "load", "second level for %zu VMs", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		memcpy(x + i * PG_LOAD_NFEAT, e->vms[i].feat, sizeof(e->vms[i].feat));
	klo = e->p.k2 ? e->p.k2 : e->p.k2_min;
	khi = e->p.k2 ? e->p.k2 : e->p.k2_max;
	if (khi > n)
		khi = n;
	if (klo > khi)
		klo = khi;
	rc = fit_best_k(e, x, n, klo, khi, lab, c, best, bestc, &kbest, &best_sil);
	if (rc < 0)
		goto out;
	e->types = calloc(kbest, sizeof(*e->types));
	if (!e->types) {
		rc = pg_error(PG_ENOMEM, "load", "types");
		goto out;
	}
	e->ntypes = kbest;
	e->silhouette = best_sil;
	for (size_t t = 0; t < kbest; t++) {
		memcpy(e->types[t].center, bestc + t * PG_LOAD_NFEAT, sizeof(e->types[t].center));
		e->types[t].count = 0;
		e->types[t].mean_load = (double)t; /* keeps the original index during sort */
	}
	rc = order_types(e, best, kbest);
	if (rc < 0)
		goto out;
	e->finished = 1;
out:
	free(x);
	free(lab);
	free(best);
	free(c);
	free(bestc);
	return rc;
}

size_t
pg_load_est_count(const struct pg_load_est *e)
{
	return e->nvms;
}

const struct pg_load_vm *
pg_load_est_vm(const struct pg_load_est *e, size_t i)
{
	return i < e->nvms ? &e->vms[i] : NULL;
}

size_t
pg_load_est_ntypes(const struct pg_load_est *e)
{
	return e->ntypes;
}

const struct pg_load_type *
pg_load_est_type(const struct pg_load_est *e, size_t i)
{
	return i < e->ntypes ? &e->types[i] : NULL;
}

double
pg_load_est_silhouette(const struct pg_load_est *e)
{
	return e->silhouette;
}

/* ---- agreement measures for tests and the demo ---- */

double
pg_load_ari(const int *a, const int *b, size_t n)
{
	int ma = 0, mb = 0;
	double sum_ij = 0, sum_a = 0, sum_b = 0, expected, maxi, total;
	double *tab, *ra, *rb;

	for (size_t i = 0; i < n; i++) {
		ma = a[i] + 1 > ma ? a[i] + 1 : ma;
		mb = b[i] + 1 > mb ? b[i] + 1 : mb;
	}
	tab = calloc((size_t)ma * (size_t)mb + (size_t)ma + (size_t)mb, sizeof(double));
	if (!tab || n < 2) {
		free(tab);
		return NAN;
	}
	ra = tab + (size_t)ma * (size_t)mb;
	rb = ra + ma;
	for (size_t i = 0; i < n; i++) {
		if (a[i] < 0 || b[i] < 0)
			continue;
		tab[(size_t)a[i] * (size_t)mb + (size_t)b[i]] += 1;
		ra[a[i]] += 1;
		rb[b[i]] += 1;
	}
	for (size_t i = 0; i < (size_t)ma * (size_t)mb; i++)
		sum_ij += tab[i] * (tab[i] - 1) / 2;
	for (int i = 0; i < ma; i++)
		sum_a += ra[i] * (ra[i] - 1) / 2;
	for (int j = 0; j < mb; j++)
		sum_b += rb[j] * (rb[j] - 1) / 2;
	total = (double)n * (double)(n - 1) / 2;
	expected = sum_a * sum_b / total;
	maxi = (sum_a + sum_b) / 2;
	free(tab);
	if (maxi == expected)
		return 1.0;
	return (sum_ij - expected) / (maxi - expected);
}

struct rank_item {
	double v;
	size_t i;
};

static int
cmp_rank(const void *x, const void *y)
{
	const struct rank_item *a = x, *b = y;
	if (a->v != b->v)
		return a->v < b->v ? -1 : 1;
	return a->i < b->i ? -1 : (a->i > b->i);
}

/* Average ranks (ties share their mean rank), as scipy.stats.rankdata. */
static int
ranks(const double *v, size_t n, double *r)
{
	struct rank_item *it = malloc(n * sizeof(*it));

	if (!it)
		return -1;
	for (size_t i = 0; i < n; i++)
		it[i] = (struct rank_item){v[i], i};
	qsort(it, n, sizeof(*it), cmp_rank);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && it[j + 1].v == it[i].v)
			j++;
		for (size_t k = i; k <= j; k++)
			r[it[k].i] = (double)(i + j) / 2 + 1;
		i = j + 1;
	}
	free(it);
	return 0;
}

double
pg_load_spearman(const double *a, const double *b, size_t n)
{
	double *ra = malloc(n * sizeof(double)), *rb = malloc(n * sizeof(double));
	double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0, res = NAN;

	if (!ra || !rb || n < 2 || ranks(a, n, ra) < 0 || ranks(b, n, rb) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		ma += ra[i] / (double)n;
		mb += rb[i] / (double)n;
	}
	for (size_t i = 0; i < n; i++) {
		sab += (ra[i] - ma) * (rb[i] - mb);
		saa += (ra[i] - ma) * (ra[i] - ma);
		sbb += (rb[i] - mb) * (rb[i] - mb);
	}
	res = sab / sqrt(saa * sbb);
out:
	free(ra);
	free(rb);
	return res;
}
