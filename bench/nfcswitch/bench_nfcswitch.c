/*
 * NFC switch benchmark (issue 8), one run, medians of batch means:
 *  - routing decision (exact AID and partial AID) with 100,000 registered AIDs;
 *  - one APDU (transit GET BALANCE) sent to an SE (the GP card) over the in-process SWP
 *    link directly, the same through the switch (pg_nfcsw_process: session
 *    lookup + forwarding) and through the whole slave port (simulated NFC
 *    controller -> SHDLC/HCP card RF gate -> switch -> SWP -> SE).
 *   bench_nfcswitch [--aids N] [--batches B] [--batch K]
 */
#include "payguard/clock.h"
#include "payguard/error.h"
#include "payguard/card_gp.h"
#include "payguard/log.h"
#include "payguard/nfcswitch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t
next_rand(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return rng;
}

static void
make_aid(uint8_t *aid, size_t *len, uint32_t i)
{
	uint64_t r = next_rand();

	/* RID-like 5 bytes from a handful of registered providers, then a PIX. */
	aid[0] = 0xA0, aid[1] = 0x00, aid[2] = 0x00, aid[3] = (uint8_t)(r % 64),
	aid[4] = (uint8_t)(r >> 8);
	aid[5] = (uint8_t)(i >> 16), aid[6] = (uint8_t)(i >> 8), aid[7] = (uint8_t)i;
	*len = 8 + (size_t)((r >> 16) % 9);
	for (size_t k = 8; k < *len; k++)
		aid[k] = (uint8_t)(r >> (8 * (k - 6)));
}

int
main(int argc, char **argv)
{
	static const uint8_t tr[] = {0xF0, 0x50, 0x47, 0x54, 0x52, 0x4E, 0x53, 0x01};
	static const uint8_t bal[] = {0x80, 0x5C, 0x00, 0x00, 0x04};
	uint32_t naids = 100000;
	int batches = 101, batch = 2000;
	struct pg_nfcsw *sw = NULL;
	static const struct pg_nfcsw_sim_app metro = {NULL, PG_NFCSW_APPLET_TRANSIT,
						      "F0504754524E5301", "METRO", 0};
	struct pg_gp_card *se = NULL;
	struct pg_nfcsw_slave *slave = NULL;
	struct pg_nfcsw_clf *clf = NULL;
	struct pg_stream *st = NULL;
	struct pg_link *l = NULL;
	uint8_t(*aids)[16];
	size_t *lens;
	double *t;
	uint8_t r[512];
	size_t rl;
	int slot, rc;
	double route_exact, route_partial, direct, via_switch, via_slave;
	volatile int sink = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--aids"))
			naids = (uint32_t)strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--batches"))
			batches = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			batch = atoi(argv[i + 1]);
	}
	if (naids < 1 || batches < 1 || batch < 1)
		return 2;
	aids = malloc(naids * sizeof(*aids));
	lens = malloc(naids * sizeof(*lens));
	t = malloc((size_t)batches * sizeof(*t));
	if (!aids || !lens || !t || pg_nfcsw_new(&sw) < 0)
		return 1;
	/* The SE on an in-process SWP link, then 100,000 more AIDs on 15 registry-only slots. */
	if (pg_nfcsw_sim_se_new(&se, 1, 1, &metro, 1, NULL) < 0 ||
	    pg_link_open_memory(&l, pg_link_find("swp"), pg_gp_card_card(se), NULL) < 0 ||
	    (slot = pg_nfcsw_attach(sw, "uicc", l, "memory", 1)) < 0)
		return 1;
	for (int s = 0; s < 15; s++) {
		char name[16];

		snprintf(name, sizeof(name), "se%02d", s);
		if (pg_nfcsw_add_slot(sw, name, 1 + s % 15) < 0)
			return 1;
	}
	for (uint32_t i = 0; i < naids; i++) {
		make_aid(aids[i], &lens[i], i);
		if (pg_nfcsw_register(sw, 1 + (int)(i % 15), aids[i], lens[i], 0x07, 0, NULL, 0) <
		    0)
			return 1;
	}
	{
		struct pg_nfcsw_app app;

		pg_nfcsw_route(sw, tr, sizeof(tr), 0, &app); /* sorts the table once */
	}
	/* 1. routing decisions */
	for (int b = 0; b < batches; b++) {
		uint64_t t0 = pg_mono_ns();

		for (int k = 0; k < batch; k++) {
			struct pg_nfcsw_app app;
			uint32_t i = (uint32_t)(next_rand() % naids);

			sink += pg_nfcsw_route(sw, aids[i], lens[i], 0, &app);
		}
		t[b] = (double)(pg_mono_ns() - t0) / batch;
	}
	route_exact = median(t, batches);
	for (int b = 0; b < batches; b++) {
		uint64_t t0 = pg_mono_ns();

		for (int k = 0; k < batch; k++) {
			struct pg_nfcsw_app app;
			uint32_t i = (uint32_t)(next_rand() % naids);

			sink += pg_nfcsw_route(sw, aids[i], 7, 0, &app);
		}
		t[b] = (double)(pg_mono_ns() - t0) / batch;
	}
	route_partial = median(t, batches);
	/* 2. the same APDU: directly, through the switch, through the slave port */
	{
		uint8_t sel[6 + sizeof(tr)] = {0x00, 0xA4, 0x04, 0x00, sizeof(tr)};

		memcpy(sel + 5, tr, sizeof(tr));
		rl = sizeof(r);
		if (pg_link_transmit(l, sel, sizeof(sel), r, &rl) < 0)
			return 1;
		for (int b = 0; b < batches; b++) {
			uint64_t t0 = pg_mono_ns();

			for (int k = 0; k < batch; k++) {
				rl = sizeof(r);
				rc = pg_link_transmit(l, bal, sizeof(bal), r, &rl);
				if (rc < 0 || r[rl - 2] != 0x90)
					return 1;
			}
			t[b] = (double)(pg_mono_ns() - t0) / batch;
		}
		direct = median(t, batches);
		rl = sizeof(r);
		if (pg_nfcsw_process(sw, sel, sizeof(sel), r, &rl) < 0 || r[rl - 2] != 0x90)
			return 1;
		for (int b = 0; b < batches; b++) {
			uint64_t t0 = pg_mono_ns();

			for (int k = 0; k < batch; k++) {
				rl = sizeof(r);
				rc = pg_nfcsw_process(sw, bal, sizeof(bal), r, &rl);
				if (rc < 0 || r[rl - 2] != 0x90)
					return 1;
			}
			t[b] = (double)(pg_mono_ns() - t0) / batch;
		}
		via_switch = median(t, batches);
		if (pg_nfcsw_slave_new(&slave, sw) < 0 ||
		    pg_stream_memory_pair(&st, pg_nfcsw_slave_packet, slave, NULL) < 0 ||
		    pg_nfcsw_clf_open(&clf, st, 1000) < 0 || pg_nfcsw_clf_field_on(clf) < 0)
			return 1;
		rl = sizeof(r);
		if (pg_nfcsw_clf_transceive(clf, sel, sizeof(sel), r, &rl) < 0 || r[rl - 2] != 0x90)
			return 1;
		for (int b = 0; b < batches; b++) {
			uint64_t t0 = pg_mono_ns();

			for (int k = 0; k < batch; k++) {
				rl = sizeof(r);
				rc = pg_nfcsw_clf_transceive(clf, bal, sizeof(bal), r, &rl);
				if (rc < 0 || r[rl - 2] != 0x90)
					return 1;
			}
			t[b] = (double)(pg_mono_ns() - t0) / batch;
		}
		via_slave = median(t, batches);
	}
	printf("registered AIDs: %u on 16 SEs (medians of %d batches of %d)\n", naids + 1, batches,
	       batch);
	printf("routing decision, exact AID:          %8.1f ns   (target < 1000 ns)\n",
	       route_exact);
	printf("routing decision, partial AID (7 B):  %8.1f ns\n", route_partial);
	printf("APDU to the SE directly (SWP link):   %8.2f us\n", direct / 1000);
	printf("APDU through the switch:              %8.2f us   added %.2f us (ratio %.2f; target "
	       "< 50 us added)\n",
	       via_switch / 1000, (via_switch - direct) / 1000, via_switch / direct);
	printf("APDU through the slave port + switch: %8.2f us   added %.2f us (ratio %.2f)\n",
	       via_slave / 1000, (via_slave - direct) / 1000, via_slave / direct);
	/* Every timed APDU really reached the SE's applet: */
	printf("SE (GP card) answered %llu commands (3 paths x %d timed + setup), link "
	       "%llu APDUs\n",
	       (unsigned long long)pg_gp_card_apdus(se), batches * batch,
	       (unsigned long long)l->apdus);
	(void)sink;
	pg_nfcsw_clf_close(clf);
	pg_nfcsw_slave_free(slave);
	pg_nfcsw_free(sw);
	pg_gp_card_free(se);
	free(aids);
	free(lens);
	free(t);
	return 0;
}
