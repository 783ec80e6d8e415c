/*
 * The VSE's card over its arena and persistent memory (seed 6): GP ISD
 * answers, arena exhaustion becomes status word 6A84 (never a crash), the
 * persistent image survives a new incarnation, a torn commit leaves the old
 * or the new image (SIGKILL at seeded random points), and SCP03 opens with
 * the request's diversified keys.
 */
#include "payguard/arena.h"
#include "payguard/error.h"
#include "payguard/scp03.h"
#include "payguard/vse.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

struct rig {
	char path[64];
	int fd;
	struct pg_arena *arena;
	struct pg_vse_card *card;
	const struct pg_card *c;
	struct pg_vse_request req;
};

static void
rig_open(struct rig *g, size_t arena, size_t pmem, int fresh)
{
	if (fresh) {
		strcpy(g->path, "/tmp/pg-vse-card-XXXXXX");
		g->fd = mkstemp(g->path);
		assert_true(g->fd >= 0);
		close(g->fd);
		unlink(g->path);
		assert_int_equal(pg_vse_pmem_create(g->path, pmem), 0);
		memset(&g->req, 0, sizeof(g->req));
		strcpy(g->req.name, "t");
		g->req.arena_size = arena;
		g->req.pmem_size = pmem;
		g->req.n_applets = 1;
		strcpy(g->req.applets[0], "test");
		g->req.diversified = 1;
		g->req.master_len = 16;
		for (int i = 0; i < 16; i++)
			g->req.master[i] = (uint8_t)(0x40 + i);
		g->req.keys.kvn = 0x30;
		memcpy(g->req.cin, "PGVS\0\0\0\7", 8);
		g->req.has_cin = 1;
		assert_int_equal(pg_vse_request_resolve_keys(&g->req), 0);
		strcpy(g->req.expose.link, "t1");
	}
	g->fd = open(g->path, O_RDWR);
	assert_true(g->fd >= 0);
	assert_int_equal(pg_arena_new(&g->arena, arena), 0);
	assert_int_equal(pg_vse_card_new(&g->card, &g->req, 7, g->arena, g->fd), 0);
	g->c = pg_vse_card_card(g->card);
}

static void
rig_close(struct rig *g, int remove)
{
	pg_vse_card_free(g->card);
	pg_arena_free(g->arena);
	close(g->fd);
	if (remove)
		unlink(g->path);
}

static uint16_t
tx(struct rig *g, const char *hex, uint8_t *resp, size_t *rlen)
{
	uint8_t c[600], r[600];
	size_t n = 0, rl = sizeof(r);

	for (; hex[2 * n] && hex[2 * n + 1]; n++) {
		unsigned v;

		sscanf(hex + 2 * n, "%2x", &v);
		c[n] = (uint8_t)v;
	}
	assert_int_equal(g->c->process(g->c->ctx, c, n, r, &rl), 0);
	assert_true(rl >= 2);
	if (resp) {
		memcpy(resp, r, rl - 2);
		*rlen = rl - 2;
	}
	return (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
}

static uint16_t
tx_raw(struct rig *g, const uint8_t *c, size_t n, uint8_t *r, size_t *rl)
{
	assert_int_equal(g->c->process(g->c->ctx, c, n, r, rl), 0);
	return (uint16_t)(r[*rl - 2] << 8 | r[*rl - 1]);
}

static void
test_isd(void **state)
{
	struct rig g;
	uint8_t r[300];
	size_t n;

	(void)state;
	rig_open(&g, 64 * 1024, 4096, 1);
	assert_int_equal(tx(&g, "80CA9F7F00", NULL, NULL), 0x6985); /* nothing selected */
	assert_int_equal(tx(&g, "00A4040008A000000151000000", r, &n), 0x9000);
	assert_int_equal(r[0], 0x6F);
	assert_int_equal(tx(&g, "80CA9F7F00", r, &n), 0x9000);
	assert_int_equal(n, 45);
	assert_memory_equal(r, "\x9F\x7F\x2A", 3);
	assert_int_equal(tx(&g, "00CA004500", r, &n), 0x9000);
	assert_memory_equal(r, "\x45\x08PGVS\0\0\0\7", 10);
	assert_int_equal(tx(&g, "80CA006600", r, &n), 0x9000);
	assert_int_equal(tx(&g, "00A4040005A000000151", r, &n), 0x9000); /* partial AID */
	assert_int_equal(tx(&g, "00A4040005A000000999", r, &n), 0x6A82);
	assert_int_equal(tx(&g, "00A404000AF070617967756172640100", r, &n), 0x9000);
	assert_int_equal(tx(&g, "001000000301020300", r, &n), 0x9000);
	assert_int_equal(n, 3);
	assert_int_equal(tx(&g, "01A4040008A000000151000000", r, &n), 0x6881);
	rig_close(&g, 1);
}

static void
test_arena_exhaustion(void **state)
{
	struct rig g;
	struct pg_arena_stats st;
	char cmd[2 * 260 + 1];
	int stored = 0;
	uint16_t sw = 0;

	(void)state;
	/* 64 KiB arena, 1 MiB persistent memory: the arena runs out first. */
	rig_open(&g, 64 * 1024, 1024 * 1024, 1);
	assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
	for (int i = 0; i < 1000; i++) {
		int k = snprintf(cmd, sizeof(cmd),
				 "80E20000FE%04X"
				 "FB",
				 0x0100 + i);

		for (int b = 0; b < 0xFB; b++)
			k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%02X", (uint8_t)(i + b));
		sw = tx(&g, cmd, NULL, NULL);
		if (sw != 0x9000)
			break;
		stored++;
	}
	assert_int_equal(sw, 0x6A84);
	assert_true(stored > 150 && stored < 260); /* ~64K / 270 bytes a DGI */
	pg_arena_stats(g.arena, &st);
	assert_true(st.failures >= 1);
	/* The card lives on: reads work, and deleting a DGI makes room again. */
	assert_int_equal(tx(&g, "80CA010000", NULL, NULL), 0x9000);
	assert_int_equal(tx(&g, "80E2000003010000", NULL, NULL), 0x9000);
	assert_int_equal(tx(&g, "80CA010000", NULL, NULL), 0x6A88);
	assert_int_equal(tx(&g, "80E2000004010001AA", NULL, NULL), 0x9000);
	rig_close(&g, 1);
}

static void
test_pmem_limit_and_persistence(void **state)
{
	struct rig g;
	uint8_t r[300];
	size_t n;

	(void)state;
	rig_open(&g, 256 * 1024, 4096, 1);
	assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
	assert_int_equal(tx(&g, "80E2000006AB0103010203", NULL, NULL), 0x9000);
	/* 4 KiB of persistent memory: the 17th 250-byte DGI cannot fit. */
	{
		char cmd[2 * 260 + 1];
		uint16_t sw = 0;
		int i;

		for (i = 0; i < 40; i++) {
			int k = snprintf(cmd, sizeof(cmd), "80E20000FD%04XFA", 0x0200 + i);

			for (int b = 0; b < 0xFA; b++)
				k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%02X", b);
			if ((sw = tx(&g, cmd, NULL, NULL)) != 0x9000)
				break;
		}
		assert_int_equal(sw, 0x6A84);
		assert_true(i >= 14 && i <= 16);
	}
	rig_close(&g, 0);
	/* A new incarnation (a restarted VSE) finds the image. */
	rig_open(&g, 256 * 1024, 4096, 0);
	assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
	assert_int_equal(tx(&g, "80CAAB0100", r, &n), 0x9000);
	assert_int_equal(n, 3);
	assert_memory_equal(r, "\x01\x02\x03", 3);
	assert_int_equal(tx(&g, "80CA020000", r, &n), 0x9000);
	assert_int_equal(n, 0xFA);
	rig_close(&g, 1);
}

/*
 * Tear safety of the persistent image: a child commits 1, 2, 3 ... (each
 * STORE DATA acknowledged on a pipe after its 9000) until the parent kills it
 * at a seeded random moment, 1000 times. The next incarnation must hold the
 * last acknowledged value or the one in flight, never anything else.
 */
static void
test_torn_commits(void **state)
{
	struct rig g;
	uint32_t seed = 12345, cur = 0;
	int olds = 0, news = 0;

	(void)state;
	rig_open(&g, 256 * 1024, 64 * 1024, 1);
	assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
	/* 30 neighbours of 250 bytes make each commit two 4 KiB writes long. */
	assert_int_equal(tx(&g, "80E200000701010400000000", NULL, NULL), 0x9000);
	for (int i = 0; i < 30; i++) {
		char cmd[2 * 260 + 1];
		int k = snprintf(cmd, sizeof(cmd), "80E20000FD%04XFA", 0x0300 + i);

		for (int b = 0; b < 0xFA; b++)
			k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%02X", b);
		assert_int_equal(tx(&g, cmd, NULL, NULL), 0x9000);
	}
	rig_close(&g, 0);
	for (int it = 0; it < 1000; it++) {
		uint8_t r[300];
		size_t n;
		uint32_t v, acked = cur, a;
		int status, pfd[2];
		pid_t pid;

		seed = seed * 1103515245u + 12345u;
		assert_int_equal(pipe(pfd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(pfd[0]);
			rig_open(&g, 256 * 1024, 64 * 1024, 0);
			tx(&g, "00A4040008A000000151000000", NULL, NULL);
			for (uint32_t x = cur + 1;; x++) {
				char cmd[64];

				snprintf(cmd, sizeof(cmd), "80E200000701010400%06X", x & 0xFFFFFF);
				if (tx(&g, cmd, NULL, NULL) != 0x9000)
					_exit(1);
				if (write(pfd[1], &x, sizeof(x)) != sizeof(x))
					_exit(1);
			}
		}
		close(pfd[1]);
		usleep((seed >> 16) % 4000);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		while (read(pfd[0], &a, sizeof(a)) == sizeof(a))
			acked = a;
		close(pfd[0]);
		rig_open(&g, 256 * 1024, 64 * 1024, 0);
		assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
		assert_int_equal(tx(&g, "80CA010100", r, &n), 0x9000);
		assert_int_equal(n, 4);
		v = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
		if (v == acked)
			olds++;
		else if (v == acked + 1)
			news++; /* committed, killed before it could acknowledge */
		else
			fail_msg("kill %d: image holds %u, last acknowledged %u", it, v, acked);
		/* The neighbours are intact too. */
		assert_int_equal(tx(&g, "80CA031D00", r, &n), 0x9000);
		assert_int_equal(n, 0xFA);
		assert_int_equal(r[0xF9], 0xF9);
		cur = v;
		rig_close(&g, 0);
	}
	print_message("1000 kills: %d at the acknowledged value, %d one past it (final %u)\n", olds,
		      news, cur);
	unlink(g.path);
}

static void
test_scp03_diversified(void **state)
{
	struct rig g;
	struct pg_scp03 host = {0};
	uint8_t a[300], r[300];
	size_t rl;
	int n;

	(void)state;
	rig_open(&g, 256 * 1024, 4096, 1);
	assert_int_equal(tx(&g, "00A4040008A000000151000000", NULL, NULL), 0x9000);
	n = pg_scp03_host_init_update(&host, 0x30, NULL, 8, a, sizeof(a));
	assert_true(n > 0);
	rl = sizeof(r);
	assert_int_equal(tx_raw(&g, a, (size_t)n, r, &rl), 0x9000);
	n = pg_scp03_host_auth(&host, &g.req.keys, r, rl, PG_SCP03_SL_CMAC, a, sizeof(a));
	assert_true(n > 0);
	rl = sizeof(r);
	assert_int_equal(tx_raw(&g, a, (size_t)n, r, &rl), 0x9000);
	assert_int_equal(pg_scp03_host_auth_done(&host, r, rl), 0);
	/* A C-MACed GET DATA CPLC inside the session. */
	{
		static const uint8_t plain[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};

		n = pg_scp03_host_wrap(&host, plain, sizeof(plain), a, sizeof(a));
		assert_true(n > 0);
		rl = sizeof(r);
		assert_int_equal(tx_raw(&g, a, (size_t)n, r, &rl), 0x9000);
		assert_int_equal(rl, 47);
	}
	/* Keys from another CIN do not open a session (wrong card cryptogram). */
	{
		struct pg_scp03_keys other;
		struct pg_scp03 h2 = {0};

		assert_int_equal(pg_scp03_diversify(g.req.master, 16,
						    (const uint8_t *)"PGVS\0\0\0\10", 8, 0x30,
						    &other),
				 0);
		n = pg_scp03_host_init_update(&h2, 0x30, NULL, 8, a, sizeof(a));
		rl = sizeof(r);
		assert_int_equal(tx_raw(&g, a, (size_t)n, r, &rl), 0x9000);
		assert_int_equal(
		    pg_scp03_host_auth(&h2, &other, r, rl, PG_SCP03_SL_CMAC, a, sizeof(a)),
		    PG_EAUTH);
	}
	rig_close(&g, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_isd),
	    cmocka_unit_test(test_arena_exhaustion),
	    cmocka_unit_test(test_pmem_limit_and_persistence),
	    cmocka_unit_test(test_torn_commits),
	    cmocka_unit_test(test_scp03_diversified),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
