/*
 * A seeded generator of VM fleets with known types, for the estimator's
 * acceptance test, the demo and the benchmark (seed 3). Hard on purpose:
 * daily cycles, short bursts, idle machines, machines that start working
 * part way through the day, overlapping secondary loads and noise, so that a
 * naive method (k-means on per-VM means or maxima) does not recover the types.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_T0_MS 1795478400000LL /* 2026-11-25T00:00:00Z */

struct gen_rng {
	uint64_t s;
};

static uint64_t
gen_next(struct gen_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double
gen_u(struct gen_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * ((double)(gen_next(r) >> 11) * 0x1.0p-53);
}

static double
gen_normal(struct gen_rng *r)
{
	double u1 = gen_u(r, 1e-12, 1), u2 = gen_u(r, 0, 1);
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double
clip01(double v)
{
	return v < 0 ? 0 : (v > 0.98 ? 0.98 : v);
}

const char *
pg_load_gen_type_name(int type)
{
	static const char *const names[] = {"light", "cpu-intensive", "memory-intensive",
					    "disk-intensive", "network-intensive"};
	return type >= 0 && type < PG_LOAD_GEN_NTYPES ? names[type] : "?";
}

int
pg_load_gen_vm(uint64_t seed, size_t idx, size_t samples, struct pg_load_series *out, int *type,
	       double *heaviness)
{
	struct gen_rng r = {seed * 0x2545f4914f6cdd1dULL ^ (idx + 1) * 0x9e3779b97f4a7c15ULL};
	double u = gen_u(&r, 0, 1), h, base[4], amp[4], phase, start = 0, noise;
	double burst_at[3], burst_len[3];
	int t, primary, changer = 0, nburst = 0, burst_res[3];
	int rc;

	if (samples == 0 || samples > out->max)
		return pg_error(PG_EINVAL, "load", "generator: %zu samples per VM", samples);
	pg_load_series_reset(out);
	snprintf(out->vm, sizeof(out->vm), "vm-%06zu", idx);
	t = u < 0.25 ? PG_LOAD_GEN_LIGHT : 1 + (int)((u - 0.25) / 0.75 * 4);
	if (t >= PG_LOAD_GEN_NTYPES)
		t = PG_LOAD_GEN_NTYPES - 1;
	primary = t - 1;
	phase = gen_u(&r, 0, 2 * M_PI);
	noise = gen_u(&r, 0.01, 0.04);
	if (t == PG_LOAD_GEN_LIGHT) {
		h = gen_u(&r, 0.02, 0.12);
		for (int j = 0; j < 4; j++) {
			base[j] = h * gen_u(&r, 0.3, 1.0);
			amp[j] = gen_u(&r, 0, 0.5);
		}
		base[(int)gen_u(&r, 0, 3.999)] = h;
	} else {
		h = gen_u(&r, 0.35, 0.95);
		for (int j = 0; j < 4; j++) {
			/* Overlap: secondary resources up to 0.3 beside a primary from 0.35. */
			base[j] = gen_u(&r, 0.02, 0.3);
			amp[j] = gen_u(&r, 0, 0.4);
		}
		base[primary] = h;
		amp[primary] = gen_u(&r, 0, 0.6); /* daily cycle depth */
		if (gen_u(&r, 0, 1) < 0.2) {
			changer = 1; /* idle until part way through the day */
			start = gen_u(&r, 0.25, 0.6);
		}
	}
	/* Short bursts (1-3% of the day in all) on any resource. */
	if (gen_u(&r, 0, 1) < (t == PG_LOAD_GEN_LIGHT ? 0.5 : 0.3)) {
		nburst = 1 + (int)gen_u(&r, 0, 2.999);
		for (int b = 0; b < nburst; b++) {
			burst_at[b] = gen_u(&r, 0, 0.97);
			burst_len[b] = gen_u(&r, 0.01, 0.03) / nburst;
			burst_res[b] = (int)gen_u(&r, 0, 3.999);
		}
	}
	for (size_t i = 0; i < samples; i++) {
		double x = (double)i / (double)samples, lvl[4];
		struct pg_load_sample s;

		for (int j = 0; j < 4; j++) {
			/* Daily cycle: the level swings between base*(1-amp) and base. */
			double cyc = 1 - amp[j] * 0.5 * (1 + cos(2 * M_PI * x + phase));
			lvl[j] = base[j] * cyc;
			if (changer && x < start)
				lvl[j] = 0.03 * gen_u(&r, 0.5, 1.5);
			lvl[j] = clip01(lvl[j] + noise * gen_normal(&r));
		}
		for (int b = 0; b < nburst; b++)
			if (x >= burst_at[b] && x < burst_at[b] + burst_len[b])
				lvl[burst_res[b]] = clip01(gen_u(&r, 0.7, 0.97));
		s.ts_ms = GEN_T0_MS + (int64_t)(i * (86400000.0 / (double)samples));
		s.v[PG_LOAD_CPU] = 100 * lvl[0];
		s.v[PG_LOAD_MEM] = 100 * lvl[1];
		{
			double disk = LOAD_DISK_REF * lvl[2] / (1 - lvl[2]);
			double net = LOAD_NET_REF * lvl[3] / (1 - lvl[3]);
			double rd = gen_u(&r, 0.2, 0.8), rx = gen_u(&r, 0.3, 0.7);
			s.v[PG_LOAD_DISK_RD] = disk * rd;
			s.v[PG_LOAD_DISK_WR] = disk * (1 - rd);
			s.v[PG_LOAD_NET_RX] = net * rx;
			s.v[PG_LOAD_NET_TX] = net * (1 - rx);
		}
		rc = pg_load_series_push(out, &s);
		if (rc < 0)
			return rc;
	}
	if (type)
		*type = t;
	if (heaviness)
		*heaviness = h;
	return 0;
}

/* ---- the generator as a trace source: "gen:N[,SEED[,SAMPLES]]" ---- */

struct gen_state {
	size_t n, next, samples;
	uint64_t seed;
};

static int
gen_open(const char *arg, void **state)
{
	struct gen_state *g = calloc(1, sizeof(*g));
	unsigned long long n = 0, seed = 1, samples = 1440;
	char extra;
	int got;

	if (!g)
		return pg_error(PG_ENOMEM, "load", "generator state");
	got = sscanf(arg, "%llu,%llu,%llu%c", &n, &seed, &samples, &extra);
	if (got < 1 || got > 3 || n == 0 || n > 10000000 || samples < 1 ||
	    samples > PG_LOAD_MAX_SAMPLES) {
		free(g);
		return pg_error(PG_EINVAL, "load", "generator '%s': want N[,SEED[,SAMPLES]]", arg);
	}
	g->n = n;
	g->seed = seed;
	g->samples = samples;
	*state = g;
	return 0;
}

static int
gen_next_vm(void *st, struct pg_load_series *out)
{
	struct gen_state *g = st;
	int rc;

	if (g->next >= g->n)
		return 0;
	rc = pg_load_gen_vm(g->seed, g->next++, g->samples, out, NULL, NULL);
	return rc < 0 ? rc : 1;
}

static void
gen_close(void *st)
{
	free(st);
}

const struct pg_load_ops pg_load_gen_ops = {
    .name = "gen",
    .help = "gen:N[,SEED[,SAMPLES]]  a generated fleet of N VMs (1440 samples = one a minute)",
    .open = gen_open,
    .next = gen_next_vm,
    .close = gen_close,
};
