/*
 * k-means clustering, usable on its own (seed 3 needs it twice: per VM and
 * over the fleet). Parameters mean what they mean in scikit-learn's KMeans:
 * greedy k-means++ init, `tol` relative to the data's mean feature variance,
 * `max_iter`, `n_init` (best inertia wins), explicit initial centers.
 * Lloyd and Hamerly iterations give the same result up to rounding.
 * Results depend only on the data, the parameters and the seed: partial sums
 * are reduced in a fixed chunk order, so the thread count does not change them.
 */
#ifndef PAYGUARD_KMEANS_H
#define PAYGUARD_KMEANS_H

#include <stddef.h>
#include <stdint.h>

enum pg_kmeans_algo {
	PG_KMEANS_LLOYD = 0,
	PG_KMEANS_HAMERLY = 1, /* one upper and one lower bound per point */
};

enum pg_kmeans_dtype {
	PG_KMEANS_F64 = 0,
	PG_KMEANS_F32 = 1,
};

struct pg_kmeans_params {
	size_t k;
	int max_iter;	    /* 300 in scikit-learn */
	double tol;	    /* 1e-4; scaled by the mean per-feature variance */
	int n_init;	    /* runs from different seeds; forced to 1 with init */
	uint64_t seed;	    /* for k-means++ */
	int algo;	    /* enum pg_kmeans_algo */
	int n_threads;	    /* 1 or more; 0 means 1 */
	const double *init; /* k x d initial centers, or NULL for k-means++ */
};

struct pg_kmeans_info {
	double inertia; /* sum of squared distances to the assigned center */
	int n_iter;	/* iterations of the best run */
	int relocated;	/* empty clusters relocated in the best run */
};

/* Defaults as scikit-learn: max_iter 300, tol 1e-4, n_init 1, Lloyd, 1 thread. */
void pg_kmeans_params_init(struct pg_kmeans_params *p, size_t k);

/*
 * Clusters n rows of d values (row-major; double or float by dtype).
 * labels (n) and centers (k x d, double) are written on success.
 * PG_EINVAL: k == 0, k > n, d == 0, a non-finite value; PG_ENOMEM.
 */
int pg_kmeans_fit(const void *x, int dtype, size_t n, size_t d, const struct pg_kmeans_params *p,
		  int32_t *labels, double *centers, struct pg_kmeans_info *info);

/*
 * Greedy k-means++ seeding alone (as scikit-learn's kmeans_plusplus with
 * 2 + log(k) local trials); writes k x d centers.
 */
int pg_kmeans_plusplus(const void *x, int dtype, size_t n, size_t d, size_t k, uint64_t seed,
		       double *centers);

/* The same on n_threads threads (0 means 1); the centers do not depend on it. */
int pg_kmeans_plusplus_mt(const void *x, int dtype, size_t n, size_t d, size_t k, uint64_t seed,
			  int n_threads, double *centers);

/* Mean silhouette coefficient of a labelling (double rows, k <= 64); O(n^2). */
int pg_kmeans_silhouette(const double *x, size_t n, size_t d, const int32_t *labels, size_t k,
			 double *score);

/* The same on n_threads threads (0 means 1); the score does not depend on it. */
int pg_kmeans_silhouette_mt(const double *x, size_t n, size_t d, const int32_t *labels, size_t k,
			    int n_threads, double *score);

#endif
