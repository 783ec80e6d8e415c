/*
 * Fixed-size arena (include/payguard/arena.h): the address space the
 * hypervisor gives a virtual secure element's card runtime (seed 6). Layout:
 * [guard page][size bytes][guard page]; blocks carry a 16-byte header and
 * free blocks sit on an address-ordered list so a release merges neighbours.
 */
#include "payguard/arena.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HDR	  16u
#define MIN_BLOCK 32u			/* header + a free-list link, rounded to the alignment */
#define TAG_USED  0x5553454455534544ull /* "USEDUSED" */
#define TAG_FREE  0x4652454546524545ull /* "FREEFREE" */
#define ARENA_MAX ((size_t)1 << 40)

struct blk {
	size_t size; /* whole block, header included, multiple of PG_ARENA_ALIGN */
	uint64_t tag;
	struct blk *next; /* free blocks only (lives in the payload) */
};

struct pg_arena {
	uint8_t *map;
	size_t map_len;
	uint8_t *base;
	size_t size;
	struct blk *free;
	struct pg_arena_stats st;
};

int
pg_arena_new(struct pg_arena **out, size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096u;
	struct pg_arena *a;
	struct blk *b;

	*out = NULL;
	if (size < MIN_BLOCK || size > ARENA_MAX)
		return pg_error(PG_ERANGE, "arena", "size %zu outside %u..%zu", size, MIN_BLOCK,
				ARENA_MAX);
	size = (size + page - 1) / page * page;
	a = calloc(1, sizeof(*a));
	if (!a)
		return PG_ENOMEM;
	a->map_len = size + 2 * page;
	/* PROT_NONE everywhere first, then open the middle: the guards never were accessible. */
	a->map =
	    mmap(NULL, a->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a->map == MAP_FAILED) {
		int e = errno;

		free(a);
		return pg_error(PG_ENOMEM, "arena", "mmap %zu bytes: %s", size, strerror(e));
	}
	a->base = a->map + page;
	if (mprotect(a->base, size, PROT_READ | PROT_WRITE) != 0) {
		int e = errno;

		munmap(a->map, a->map_len);
		free(a);
		return pg_error(PG_ENOMEM, "arena", "mprotect: %s", strerror(e));
	}
	a->size = size;
	b = (struct blk *)a->base;
	b->size = size;
	b->tag = TAG_FREE;
	b->next = NULL;
	a->free = b;
	a->st.size = size;
	*out = a;
	return 0;
}

void
pg_arena_free(struct pg_arena *a)
{
	if (!a)
		return;
	munmap(a->map, a->map_len);
	free(a);
}

void *
pg_arena_alloc(struct pg_arena *a, size_t n)
{
	struct blk **pp, *b;
	size_t need;

	if (!a)
		return NULL;
	if (n > a->size) {
		a->st.failures++;
		return NULL;
	}
	need = (n + HDR + PG_ARENA_ALIGN - 1) & ~(size_t)(PG_ARENA_ALIGN - 1);
	if (need < MIN_BLOCK)
		need = MIN_BLOCK;
	for (pp = &a->free; (b = *pp); pp = &b->next) {
		if (b->size < need)
			continue;
		if (b->size - need >= MIN_BLOCK) {
			/* Split: the tail stays free, in the same list position. */
			struct blk *rest = (struct blk *)((uint8_t *)b + need);

			rest->size = b->size - need;
			rest->tag = TAG_FREE;
			rest->next = b->next;
			*pp = rest;
			b->size = need;
		} else {
			*pp = b->next;
		}
		b->tag = TAG_USED;
		a->st.used += b->size;
		if (a->st.used > a->st.peak)
			a->st.peak = a->st.used;
		a->st.allocs++;
		return (uint8_t *)b + HDR;
	}
	a->st.failures++;
	return NULL;
}

void *
pg_arena_calloc(struct pg_arena *a, size_t n, size_t m)
{
	void *p;

	if (m && n > SIZE_MAX / m)
		return NULL;
	p = pg_arena_alloc(a, n * m);
	if (p)
		memset(p, 0, n * m);
	return p;
}

void
pg_arena_dealloc(struct pg_arena *a, void *p)
{
	struct blk *b, **pp, *prev = NULL;
	uint8_t *u = p;

	if (!a || !p)
		return;
	if (u < a->base + HDR || u >= a->base + a->size || ((uintptr_t)u % PG_ARENA_ALIGN) != 0) {
		pg_warn("arena", "release of %p outside the arena ignored", p);
		return;
	}
	b = (struct blk *)(u - HDR);
	if (b->tag != TAG_USED) {
		pg_warn("arena", "release of %p: not a live block (double free?) ignored", p);
		return;
	}
	b->tag = TAG_FREE;
	a->st.used -= b->size;
	a->st.frees++;
	for (pp = &a->free; *pp && *pp < b; pp = &(*pp)->next)
		prev = *pp;
	b->next = *pp;
	*pp = b;
	/* Merge with the following block, then with the preceding one. */
	if (b->next && (uint8_t *)b + b->size == (uint8_t *)b->next) {
		b->size += b->next->size;
		b->next = b->next->next;
	}
	if (prev && (uint8_t *)prev + prev->size == (uint8_t *)b) {
		prev->size += b->size;
		prev->next = b->next;
	}
}

void
pg_arena_stats(const struct pg_arena *a, struct pg_arena_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!a)
		return;
	*st = a->st;
	for (const struct blk *b = a->free; b; b = b->next) {
		st->free_blocks++;
		if (b->size > st->largest_free)
			st->largest_free = b->size;
	}
}

void *
pg_arena_base(const struct pg_arena *a)
{
	return a ? a->base : NULL;
}

size_t
pg_arena_size(const struct pg_arena *a)
{
	return a ? a->size : 0;
}
