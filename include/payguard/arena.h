/*
 * A fixed-size memory arena: one mmap'd region of the requested size between
 * two PROT_NONE guard pages, with a first-fit allocator over an address-ordered
 * free list (coalescing on release). Past its limit an allocation returns NULL;
 * it never grows. Seed 6 ("virtual secure element"): the VSE's card runtime
 * allocates only from the arena the hypervisor sized from the request.
 * Not thread-safe: one arena belongs to one card runtime.
 */
#ifndef PAYGUARD_ARENA_H
#define PAYGUARD_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define PG_ARENA_ALIGN 16u

struct pg_arena;

struct pg_arena_stats {
	size_t size;	     /* usable bytes (the request, rounded up to whole pages) */
	size_t used;	     /* bytes in live blocks, headers included */
	size_t peak;	     /* highest `used` seen */
	size_t largest_free; /* the biggest allocation that would succeed now (+ header) */
	size_t free_blocks;  /* entries on the free list (fragmentation) */
	uint64_t allocs, frees, failures;
};

/* Maps size bytes (rounded up to pages) plus one guard page on each side. */
int pg_arena_new(struct pg_arena **out, size_t size);
/* Unmaps everything (NULL ok). */
void pg_arena_free(struct pg_arena *a);
/* n bytes aligned to PG_ARENA_ALIGN, or NULL when the arena cannot hold them. */
void *pg_arena_alloc(struct pg_arena *a, size_t n);
/* Zeroed allocation of n * m bytes (NULL on overflow or exhaustion). */
void *pg_arena_calloc(struct pg_arena *a, size_t n, size_t m);
/* Returns a block (NULL ok). A pointer not from this arena is ignored and logged. */
void pg_arena_dealloc(struct pg_arena *a, void *p);
void pg_arena_stats(const struct pg_arena *a, struct pg_arena_stats *st);
/* First usable byte; the page before it and the page after base+size are guards. */
void *pg_arena_base(const struct pg_arena *a);
size_t pg_arena_size(const struct pg_arena *a);

#endif
