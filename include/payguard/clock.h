/* Time sources: monotonic for intervals and deadlines, wall clock for records. */
#ifndef PAYGUARD_CLOCK_H
#define PAYGUARD_CLOCK_H

#include <stdint.h>

uint64_t pg_mono_ns(void);
uint64_t pg_mono_ms(void);
/* Milliseconds since the Unix epoch. */
int64_t pg_wall_ms(void);
/* Formats ms since the epoch as RFC 3339 UTC into a buffer of 80 ("2026-11-25T21:22:45.123Z"). */
void pg_format_time(char out[80], int64_t wall_ms);

#endif
