/*
 * The two-level estimator (seed 3) on a generated fleet with known types:
 * it must recover the types (ARI >= 0.9) and rank heavier machines higher
 * (Spearman >= 0.9), while naive one-level methods (k-means on each VM's
 * mean, or on its maximum) must not score 1.0 on the same fleet, so the
 * generator is hard enough to tell them apart. Also: bad VMs are refused with
 * their name and the rest of the fleet is still estimated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/error.h"
#include "payguard/kmeans.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVM 600

/* A naive estimate: one number per VM and feature (mean or max), one k-means. */
static double
naive_ari(uint64_t seed, int use_max, const int *truth)
{
	double *x = calloc(NVM * PG_LOAD_NFEAT, sizeof(double)), c[5 * PG_LOAD_NFEAT];
	int32_t lab[NVM];
	int got[NVM];
	struct pg_load_series s;
	struct pg_kmeans_params p;

	pg_load_series_init(&s, 0);
	for (size_t i = 0; i < NVM; i++) {
		assert_int_equal(pg_load_gen_vm(seed, i, 1440, &s, NULL, NULL), 0);
		for (size_t t = 0; t < s.n; t++) {
			double f[PG_LOAD_NFEAT];
			pg_load_features(&s.s[t], f);
			for (int j = 0; j < PG_LOAD_NFEAT; j++) {
				double *v = &x[i * PG_LOAD_NFEAT + j];
				if (use_max)
					*v = f[j] > *v ? f[j] : *v;
				else
					*v += f[j] / (double)s.n;
			}
		}
	}
	pg_kmeans_params_init(&p, 5);
	p.n_init = 10;
	p.seed = 1;
	assert_int_equal(pg_kmeans_fit(x, PG_KMEANS_F64, NVM, PG_LOAD_NFEAT, &p, lab, c, NULL), 0);
	for (size_t i = 0; i < NVM; i++)
		got[i] = lab[i];
	pg_load_series_release(&s);
	free(x);
	return pg_load_ari(truth, got, NVM);
}

static void
test_generated_fleet(void **state)
{
	uint64_t seeds[2] = {1, 42};

	(void)state;
	for (int si = 0; si < 2; si++) {
		struct pg_load_params p;
		struct pg_load_est *e;
		struct pg_load_series s;
		int truth[NVM], got[NVM];
		double heavy[NVM], load[NVM], ari, rho, ari_mean, ari_max;

		pg_load_params_init(&p);
		assert_int_equal(pg_load_est_new(&e, &p), 0);
		pg_load_series_init(&s, 0);
		for (size_t i = 0; i < NVM; i++) {
			assert_int_equal(
			    pg_load_gen_vm(seeds[si], i, 1440, &s, &truth[i], &heavy[i]), 0);
			assert_int_equal(pg_load_est_add(e, &s), 0);
		}
		assert_int_equal(pg_load_est_finish(e), 0);
		assert_int_equal(pg_load_est_count(e), NVM);
		for (size_t i = 0; i < NVM; i++) {
			got[i] = pg_load_est_vm(e, i)->type;
			load[i] = pg_load_est_vm(e, i)->load;
			assert_true(load[i] >= 0 && load[i] <= 100);
		}
		ari = pg_load_ari(truth, got, NVM);
		rho = pg_load_spearman(load, heavy, NVM);
		ari_mean = naive_ari(seeds[si], 0, truth);
		ari_max = naive_ari(seeds[si], 1, truth);
		printf("seed %llu: two-level ARI %.3f, Spearman %.3f; naive mean ARI %.3f, naive "
		       "max ARI %.3f\n",
		       (unsigned long long)seeds[si], ari, rho, ari_mean, ari_max);
		assert_true(ari >= 0.9);
		assert_true(rho >= 0.9);
		assert_true(ari_mean < 1.0 && ari_max < 1.0);
		assert_true(ari > ari_mean && ari > ari_max);
		/* Every generated type is named after its dominant resource. */
		for (size_t t = 0; t < pg_load_est_ntypes(e); t++) {
			const char *n = pg_load_est_type(e, t)->name;
			int known = 0;
			for (int g = 0; g < PG_LOAD_GEN_NTYPES; g++)
				known |= strcmp(n, pg_load_gen_type_name(g)) == 0;
			printf("  type %zu: %s (%zu VMs)\n", t, n, pg_load_est_type(e, t)->count);
			assert_true(known);
		}
		pg_load_series_release(&s);
		pg_load_est_free(e);
	}
}

static void
test_bad_vms(void **state)
{
	struct pg_load_params p;
	struct pg_load_est *e;
	struct pg_load_series s;
	double f[2 * PG_LOAD_NFEAT] = {0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2};

	(void)state;
	pg_load_params_init(&p);
	p.k2 = 2;
	assert_int_equal(pg_load_est_new(&e, &p), 0);
	/* Fewer samples than k1: refused, named. */
	assert_int_equal(pg_load_est_add_features(e, "tiny", f, 2), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "tiny"));
	f[3] = NAN;
	pg_load_series_init(&s, 0);
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(pg_load_gen_vm(5, i, 200, &s, NULL, NULL), 0);
		assert_int_equal(pg_load_est_add(e, &s), 0);
	}
	{
		double g[3 * PG_LOAD_NFEAT] = {0.1, 0.1, 0.1, NAN, 0, 0, 0, 0, 1, 1, 1, 1};
		assert_int_equal(pg_load_est_add_features(e, "nan-vm", g, 3), PG_EINVAL);
		assert_non_null(strstr(pg_last_error(), "nan-vm"));
	}
	/* The rest of the fleet is still estimated. */
	assert_int_equal(pg_load_est_finish(e), 0);
	assert_int_equal(pg_load_est_count(e), 10);
	assert_int_equal(pg_load_est_ntypes(e), 2);
	pg_load_series_release(&s);
	pg_load_est_free(e);
}

/*
 * Float32 features (pg_load_est_add_features_f32, what the bench and .npy
 * fleets hand over) give the same estimate as the same values in double, and
 * a non-finite value anywhere is refused with its sample number.
 */
static void
test_features_f32(void **state)
{
	size_t nvm = 300, n = 500;
	struct pg_load_params p;
	struct pg_load_est *a, *b;
	double *f = malloc(n * PG_LOAD_NFEAT * sizeof(double));
	float *ff = malloc(n * PG_LOAD_NFEAT * sizeof(float));
	struct pg_load_series s;
	char name[32];

	(void)state;
	pg_load_params_init(&p);
	p.k2 = 4;
	assert_int_equal(pg_load_est_new(&a, &p), 0);
	assert_int_equal(pg_load_est_new(&b, &p), 0);
	pg_load_series_init(&s, 0);
	for (size_t v = 0; v < nvm; v++) {
		assert_int_equal(pg_load_gen_vm(3, v, n, &s, NULL, NULL), 0);
		for (size_t i = 0; i < n; i++)
			pg_load_features(&s.s[i], f + i * PG_LOAD_NFEAT);
		for (size_t i = 0; i < n * PG_LOAD_NFEAT; i++) {
			ff[i] = (float)f[i];
			f[i] = ff[i]; /* the same values on both sides */
		}
		snprintf(name, sizeof(name), "vm-%zu", v);
		assert_int_equal(pg_load_est_add_features(a, name, f, n), 0);
		assert_int_equal(pg_load_est_add_features_f32(b, name, ff, n), 0);
	}
	assert_int_equal(pg_load_est_finish(a), 0);
	assert_int_equal(pg_load_est_finish(b), 0);
	for (size_t v = 0; v < nvm; v++) {
		assert_memory_equal(pg_load_est_vm(a, v)->feat, pg_load_est_vm(b, v)->feat,
				    sizeof(pg_load_est_vm(a, v)->feat));
		assert_int_equal(pg_load_est_vm(a, v)->type, pg_load_est_vm(b, v)->type);
	}
	pg_load_est_free(a);
	pg_load_est_free(b);
	assert_int_equal(pg_load_est_new(&b, &p), 0);
	ff[137 * PG_LOAD_NFEAT + 2] = INFINITY;
	assert_int_equal(pg_load_est_add_features_f32(b, "inf-vm", ff, n), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "inf-vm"));
	assert_non_null(strstr(pg_last_error(), "sample 137 "));
	ff[137 * PG_LOAD_NFEAT + 2] = 0.5f;
	ff[(n - 1) * PG_LOAD_NFEAT + 3] = NAN;
	assert_int_equal(pg_load_est_add_features_f32(b, "nan-vm", ff, n), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "sample 499 "));
	f[3] = -INFINITY;
	assert_int_equal(pg_load_est_add_features(b, "dinf-vm", f, n), PG_EINVAL);
	assert_non_null(strstr(pg_last_error(), "sample 0 "));
	assert_int_equal(pg_load_est_count(b), 0);
	pg_load_est_free(b);
	pg_load_series_release(&s);
	free(f);
	free(ff);
}

/*
 * The first level runs on a pipeline of threads while VMs are still being
 * added: 1, 2 and 5 threads give the same characteristic values, types and
 * silhouette, over more VMs than the pipeline holds and with sample counts
 * that change from VM to VM (slot buffers grow). An estimator freed before
 * finish stops its threads and leaks nothing (the sanitizer build checks).
 */
static void
test_threads_same(void **state)
{
	static const int threads[] = {1, 2, 5};
	size_t nvm = 200;
	struct pg_load_est *e[3];
	struct pg_load_series s;

	(void)state;
	pg_load_series_init(&s, 0);
	for (size_t t = 0; t < 3; t++) {
		struct pg_load_params p;
		pg_load_params_init(&p);
		p.n_threads = threads[t];
		assert_int_equal(pg_load_est_new(&e[t], &p), 0);
	}
	for (size_t v = 0; v < nvm; v++) {
		assert_int_equal(pg_load_gen_vm(5, v, 60 + (v * 37) % 400, &s, NULL, NULL), 0);
		snprintf(s.vm, sizeof(s.vm), "vm-%zu", v);
		for (size_t t = 0; t < 3; t++)
			assert_int_equal(pg_load_est_add(e[t], &s), 0);
	}
	for (size_t t = 0; t < 3; t++)
		assert_int_equal(pg_load_est_finish(e[t]), 0);
	for (size_t t = 1; t < 3; t++) {
		assert_true(pg_load_est_silhouette(e[t]) == pg_load_est_silhouette(e[0]));
		for (size_t v = 0; v < nvm; v++) {
			const struct pg_load_vm *a = pg_load_est_vm(e[0], v),
						*b = pg_load_est_vm(e[t], v);
			assert_memory_equal(a->feat, b->feat, sizeof(a->feat));
			assert_true(a->load == b->load);
			assert_int_equal(a->type, b->type);
			assert_string_equal(a->name, b->name);
			assert_int_equal(a->nsamples, b->nsamples);
		}
	}
	/* Every VM got its first level: no characteristic value left at zero. */
	for (size_t v = 0; v < nvm; v++)
		assert_true(pg_load_est_vm(e[1], v)->load > 0);
	for (size_t t = 0; t < 3; t++)
		pg_load_est_free(e[t]);
	/* Freed with VMs still in the pipeline. */
	{
		struct pg_load_params p;
		pg_load_params_init(&p);
		assert_int_equal(pg_load_est_new(&e[0], &p), 0);
		for (size_t v = 0; v < 100; v++) {
			assert_int_equal(pg_load_gen_vm(5, v, 300, &s, NULL, NULL), 0);
			assert_int_equal(pg_load_est_add(e[0], &s), 0);
		}
		pg_load_est_free(e[0]);
	}
	pg_load_series_release(&s);
}

static void
test_auto_k2(void **state)
{
	struct pg_load_params p;
	struct pg_load_est *e;
	struct pg_load_series s;

	(void)state;
	pg_load_params_init(&p);
	p.k2 = 0;
	assert_int_equal(pg_load_est_new(&e, &p), 0);
	pg_load_series_init(&s, 0);
	for (size_t i = 0; i < 300; i++) {
		assert_int_equal(pg_load_gen_vm(3, i, 288, &s, NULL, NULL), 0);
		assert_int_equal(pg_load_est_add(e, &s), 0);
	}
	assert_int_equal(pg_load_est_finish(e), 0);
	printf("auto k2: %zu types, silhouette %.3f\n", pg_load_est_ntypes(e),
	       pg_load_est_silhouette(e));
	assert_true(pg_load_est_ntypes(e) >= 2 && pg_load_est_ntypes(e) <= 8);
	assert_true(pg_load_est_silhouette(e) > 0.3);
	pg_load_series_release(&s);
	pg_load_est_free(e);
}

static void
test_measures(void **state)
{
	int a[6] = {0, 0, 1, 1, 2, 2}, b[6] = {1, 1, 0, 0, 2, 2}, c[6] = {0, 1, 0, 1, 0, 1};
	double x[5] = {1, 2, 3, 4, 5}, y[5] = {10, 20, 30, 40, 50}, z[5] = {5, 4, 3, 2, 1};

	(void)state;
	assert_true(fabs(pg_load_ari(a, b, 6) - 1.0) < 1e-12);
	assert_true(pg_load_ari(a, c, 6) < 0.1);
	assert_true(fabs(pg_load_spearman(x, y, 5) - 1.0) < 1e-12);
	assert_true(fabs(pg_load_spearman(x, z, 5) + 1.0) < 1e-12);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_measures),	 cmocka_unit_test(test_bad_vms),
	    cmocka_unit_test(test_features_f32), cmocka_unit_test(test_threads_same),
	    cmocka_unit_test(test_auto_k2),	 cmocka_unit_test(test_generated_fleet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
