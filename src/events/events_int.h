/* Private to src/events: the NATS connection both the relay and the tail open. */
#ifndef PAYGUARD_EVENTS_INT_H
#define PAYGUARD_EVENTS_INT_H

#include <nats/nats.h>

/* Connects to one of the comma-separated server URLs (reconnecting forever
 * afterwards, to any server of the cluster) and opens a JetStream context. */
int pgi_events_nats_connect(const char *urls, natsConnection **nc, jsCtx **js);
/* Records a libnats failure as the thread's error detail; returns PG_EIO. */
int pgi_events_nats_fail(natsStatus s, int jerr, const char *what);

#endif
