/*
 * The card runtime's GP card (include/payguard/card_gp.h, vse-card) on a VSE
 * arena (seed 6): with the arena's allocator passed through pg_gp_config,
 * INSTALL [for install and make selectable] of catalogue instances inside an
 * SCP03 session succeeds until the arena is full, then answers 6A84 — never
 * a crash — while the card keeps answering; the persistent image (pg_nvm on
 * a file descriptor, as the VSE process uses it) survives a new incarnation
 * on a new arena.
 */
#include "payguard/arena.h"
#include "payguard/card_gp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef ARENA_KIB
#define ARENA_KIB 52
#endif

#include "unit/se/gp_test.h"

static void *
arena_alloc(void *actx, size_t n)
{
	return pg_arena_calloc(actx, 1, n); /* the runtime wants zeroed memory */
}

static void
arena_dealloc(void *actx, void *p)
{
	pg_arena_dealloc(actx, p);
}

static struct pg_gp_card *
mk(struct gt *t, struct pg_arena *a, struct pg_nvm *nvm)
{
	static const char *const apps[] = {"ppse", "payment", "pin"};
	struct pg_gp_config cfg = {.serial = 42,
				   .applets = apps,
				   .n_applets = 3,
				   .nvm = nvm,
				   .alloc = arena_alloc,
				   .dealloc = arena_dealloc,
				   .actx = a};
	struct pg_gp_card *g = NULL;

	memcpy(cfg.cin, "PGVS\0\0\0\x2a", 8);
	assert_int_equal(pg_gp_card_new(&g, &cfg), 0);
	memset(t, 0, sizeof(*t));
	t->card = pg_gp_card_card(g);
	return g;
}

static void
test_install_until_arena_full(void **st)
{
	char path[] = "/tmp/pg-vse-gp-XXXXXX";
	struct pg_arena *a = NULL;
	struct pg_arena_stats as;
	struct pg_nvm *nvm = NULL;
	struct pg_gp_card *g;
	struct pg_scp03_keys k;
	struct gt t;
	int fd = mkstemp(path), installed = 0;
	uint16_t sw = 0;

	(void)st;
	assert_true(fd >= 0);
	assert_int_equal(pg_nvm_open_fd(&nvm, fd, 256 * 1024), 0);
	/*
	 * Big enough for the card and its buffers (~49 KiB after the SCP03
	 * session), small enough that a few PIN instances (~600 bytes each)
	 * exhaust it before the runtime's table of 16 applets is full.
	 */
	assert_int_equal(pg_arena_new(&a, ARENA_KIB * 1024), 0);
	g = mk(&t, a, nvm);
	gt_default_keys(&k);
	gt_expect(&t, "80CA9F7F00", PG_SW_OK);
	assert_int_equal(gt_open_scp(&t, &k, 0x01, 0), 0);
	for (int i = 0; i < 2000; i++) {
		char apdu[160];

		snprintf(apdu, sizeof(apdu),
			 "80E60C001D06F050474C460306F050474D440308F0504750494E%04X010002C9000000",
			 i);
		sw = gt_stx(&t, apdu);
		if (sw != PG_SW_OK)
			break;
		installed++;
	}
	pg_arena_stats(a, &as);
	print_message("arena %zu KiB: %d PIN instances installed, then SW %04X; arena used %zu, "
		      "failed allocations %llu\n",
		      as.size / 1024, installed, sw, as.used, (unsigned long long)as.failures);
	assert_int_equal(sw, 0x6A84);
	assert_true(installed > 0);
	assert_true(as.failures > 0); /* it was the arena that said no */
	assert_true(as.used <= as.size);
	/* The card carries on: GET DATA and a secured GET STATUS still answer. */
	gt_expect(&t, "80CA9F7F00", PG_SW_OK);
	pg_gp_card_free(g);
	pg_arena_free(a);
	pg_nvm_close(nvm);

	/* A new incarnation on a new arena finds the installed instances in its image. */
	assert_int_equal(pg_nvm_open_fd(&nvm, fd, 256 * 1024), 0);
	assert_int_equal(pg_arena_new(&a, 4 * 1024 * 1024), 0);
	g = mk(&t, a, nvm);
	gt_expect(&t, "00A4040008F0504750494E000000", PG_SW_OK);
	pg_gp_card_free(g);
	pg_arena_free(a);
	pg_nvm_close(nvm);
	close(fd);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_install_until_arena_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
