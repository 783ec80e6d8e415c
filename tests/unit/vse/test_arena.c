/*
 * Arena allocator (include/payguard/arena.h), the VSE address space of seed 6:
 * the limit is enforced (NULL, never growth), guard pages fault, released
 * blocks coalesce so fragmentation heals, and bad releases are ignored.
 */
#include "payguard/arena.h"
#include "payguard/error.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static void
test_limit(void **state)
{
	struct pg_arena *a;
	struct pg_arena_stats st;
	size_t total = 0;
	void *p;

	(void)state;
	assert_int_equal(pg_arena_new(&a, 64 * 1024), 0);
	assert_int_equal(pg_arena_size(a), 64 * 1024);
	/* 1000-byte blocks until the arena says no: never more than its size. */
	while ((p = pg_arena_alloc(a, 1000)) != NULL) {
		memset(p, 0xA5, 1000);
		total += 1000;
		assert_true(total <= 64 * 1024);
	}
	assert_true(total >= 60 * 1000); /* headers cost 16-24 bytes a block, no more */
	pg_arena_stats(a, &st);
	assert_int_equal(st.failures, 1);
	assert_true(st.used <= st.size);
	assert_null(pg_arena_alloc(a, 64 * 1024 + 1));
	assert_null(pg_arena_alloc(a, SIZE_MAX));
	assert_null(pg_arena_calloc(a, SIZE_MAX / 2, 4));
	pg_arena_free(a);
	assert_int_equal(pg_arena_new(&a, 1), PG_ERANGE);
	pg_arena_free(NULL);
}

static void
test_alignment_and_reuse(void **state)
{
	struct pg_arena *a;
	struct pg_arena_stats st;
	void *p[64];

	(void)state;
	assert_int_equal(pg_arena_new(&a, 8192), 0);
	for (int i = 0; i < 64; i++) {
		p[i] = pg_arena_alloc(a, (size_t)i + 1);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % PG_ARENA_ALIGN, 0);
		assert_true((uint8_t *)p[i] >= (uint8_t *)pg_arena_base(a));
		assert_true((uint8_t *)p[i] + i + 1 <= (uint8_t *)pg_arena_base(a) + 8192);
	}
	for (int i = 0; i < 64; i++)
		pg_arena_dealloc(a, p[i]);
	pg_arena_stats(a, &st);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.free_blocks, 1);
	assert_int_equal(st.largest_free, 8192);
	assert_int_equal(st.allocs, 64);
	assert_int_equal(st.frees, 64);
	pg_arena_free(a);
}

static void
test_fragmentation(void **state)
{
	struct pg_arena *a;
	struct pg_arena_stats st;
	void *p[32];

	(void)state;
	assert_int_equal(pg_arena_new(&a, 32 * 1024), 0);
	for (int i = 0; i < 32; i++)
		assert_non_null(p[i] = pg_arena_alloc(a, 1024 - 16));
	assert_null(pg_arena_alloc(a, 16)); /* exactly full */
	/* Free every other block: half the space is free but in 1 KiB holes. */
	for (int i = 0; i < 32; i += 2)
		pg_arena_dealloc(a, p[i]);
	pg_arena_stats(a, &st);
	assert_int_equal(st.free_blocks, 16);
	assert_int_equal(st.largest_free, 1024);
	assert_null(pg_arena_alloc(a, 2000)); /* no hole is big enough */
	/* First fit: 500 bytes (a 528-byte block) go to the first hole. */
	assert_ptr_equal(pg_arena_alloc(a, 500), p[0]);
	/* Freeing the odd ones merges everything after that block into one. */
	for (int i = 1; i < 32; i += 2)
		pg_arena_dealloc(a, p[i]);
	pg_arena_stats(a, &st);
	assert_int_equal(st.free_blocks, 1);
	assert_int_equal(st.largest_free, 32 * 1024 - 528);
	assert_non_null(pg_arena_alloc(a, 30000));
	pg_arena_free(a);
}

static void
test_bad_release(void **state)
{
	struct pg_arena *a;
	struct pg_arena_stats st;
	int local;
	void *p;

	(void)state;
	assert_int_equal(pg_arena_new(&a, 4096), 0);
	p = pg_arena_alloc(a, 100);
	pg_arena_dealloc(a, &local);		/* not ours */
	pg_arena_dealloc(a, (uint8_t *)p + 16); /* not a block start */
	pg_arena_dealloc(a, p);
	pg_arena_dealloc(a, p); /* double free */
	pg_arena_stats(a, &st);
	assert_int_equal(st.frees, 1);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.free_blocks, 1);
	pg_arena_free(a);
}

/* Touches one byte at `off` from the arena base in a child; returns its wait status. */
static int
touch_in_child(ptrdiff_t off)
{
	struct pg_arena *a;
	int status = 0;
	pid_t pid;

	assert_int_equal(pg_arena_new(&a, 16384), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		volatile uint8_t *b = pg_arena_base(a);

		alarm(10);
		b[off] = 1;
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	pg_arena_free(a);
	return status;
}

static int
faulted(int status)
{
	/* SIGSEGV plainly; under ASan its SEGV report ends in abort() or exit(1). */
	if (WIFSIGNALED(status))
		return WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS ||
		       WTERMSIG(status) == SIGABRT;
	return WIFEXITED(status) && WEXITSTATUS(status) != 0;
}

static void
test_guard_pages(void **state)
{
	int st;

	(void)state;
	st = touch_in_child(0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = touch_in_child(16383);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(faulted(touch_in_child(-1)));    /* guard page before */
	assert_true(faulted(touch_in_child(16384))); /* guard page after */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limit),	  cmocka_unit_test(test_alignment_and_reuse),
	    cmocka_unit_test(test_fragmentation), cmocka_unit_test(test_bad_release),
	    cmocka_unit_test(test_guard_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
