/*
 * Memory helpers for secrets: a wipe the compiler cannot drop, and a
 * constant-time comparison for keys, MACs and cryptograms.
 */
#ifndef PAYGUARD_MEM_H
#define PAYGUARD_MEM_H

#include <stddef.h>

void pg_memzero(void *p, size_t n);
/* 1 if equal, 0 if not; time depends only on n. */
int pg_ct_equal(const void *a, const void *b, size_t n);

#endif
