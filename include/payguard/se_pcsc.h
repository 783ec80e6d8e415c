/*
 * The PC/SC side of the SE links: listing pcscd's readers, and plugging a
 * simulated card into pcscd through vsmartcard's virtual reader (Debian's
 * vsmartcard-vpcd): the card side connects to vpcd's TCP port (35963 for
 * reader slot 0, 35964 for slot 1) and answers its messages.
 */
#ifndef PAYGUARD_SE_PCSC_H
#define PAYGUARD_SE_PCSC_H

#include "payguard/link.h"

#define PG_VPCD_PORT 35963

/*
 * Connects to vpcd at `addr` ("tcp:127.0.0.1:35963"), retrying for up to
 * connect_timeout_ms while it is not listening yet, and serves `card` until
 * vpcd closes the connection (returns 0), *stop becomes non-zero (checked
 * every 100 ms; stop may be NULL) or a protocol error.
 */
int pg_vpcd_serve(const char *addr, const struct pg_card *card, int connect_timeout_ms,
		  const int *stop);

/* Calls fn for each reader pcscd lists; returns the count or a negative code. */
int pg_pcsc_list_readers(void (*fn)(void *arg, const char *reader), void *arg);

#endif
