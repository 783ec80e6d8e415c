/*
 * Events (issue 15): every state change another system would act on is a
 * CloudEvents 1.0 JSON document (specversion, id, source, type, time,
 * subject, data) of type "payguard.<area>.<event>", published on the NATS
 * subject of the same name.
 *
 * Never lost, never doubled: pg_event_emit() writes the event into the
 * outbox table inside the caller's store transaction, so it exists exactly
 * when the change it reports is committed. The relay then gives each event a
 * publication number in outbox order (one relay at a time: in a cluster it
 * is a singleton) and every sink follows that order with its own progress
 * row: NATS JetStream (each message carries `Nats-Msg-Id` = the event id,
 * so the stream's duplicate window drops a repeat after a crash between
 * publish and progress) and webhooks (Standard Webhooks headers and
 * signature; a receiver dedupes by `webhook-id`). Events every sink has are
 * trimmed; with no sink configured the outbox only trims.
 */
#ifndef PAYGUARD_EVENTS_H
#define PAYGUARD_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct pg_db;

/* The outbox tables (event_outbox, event_sink); both engines. */
int pg_events_migrate(struct pg_db *db);

/* The CloudEvents `source` of this process's events: "/payguard/<node>"
 * (default: the host name). Call before the first emit. */
void pg_events_set_node(const char *node);

/*
 * Writes one event into the outbox; call inside the transaction of the
 * change it reports. area and event are lowercase tokens ([a-z0-9_-]);
 * subject names the thing (a terminal id, an image, a VSE) and may be NULL;
 * data is borrowed. id_out (may be NULL) gets the event id (a UUID).
 */
int pg_event_emit(struct pg_db *db, const char *area, const char *event, const char *subject,
		  json_t *data, char id_out[37]);

/* Checks one event document against the CloudEvents 1.0 JSON format as
 * payguard writes it; 0 or PG_EBADMSG with the reason. */
int pg_event_check(const json_t *ev);

struct pg_events_relay_cfg {
	const char *nats;	     /* NATS server URL(s), comma-separated; NULL: none */
	const char *stream;	     /* JetStream stream; NULL: "PAYGUARD" */
	int replicas;		     /* 0: 3, or 1 on a server without a cluster */
	const char *const *webhooks; /* URLs to POST each event to */
	size_t nwebhooks;
	const char *webhook_secret; /* "whsec_<base64>" (Standard Webhooks) */
	int batch;		    /* events per round; 0: 256 */
	int idle_ms;		    /* pause when there is nothing to do; 0: 100 */
	int once;		    /* one round and return (tests, scripts) */
	/* on *stop: one last round, so what is committed when the daemon
	 * stops is published before the relay exits */
	int drain_on_stop;
};

/* Reads a webhook signing secret from path: a file only its owner may read
 * (pg_fs_check_private), "whsec_<base64>" or 16..64 raw bytes, trailing
 * newline dropped. out (outlen >= 128) gets it; wipe it after use. The
 * secret is never put into an error message. */
int pg_events_read_secret(const char *path, char *out, size_t outlen);

/* Runs the relay on its own connection until *stop (or one round with
 * cfg->once). Returns 0 or a PG_E... code. */
int pg_events_relay(struct pg_db *db, const struct pg_events_relay_cfg *cfg,
		    const volatile int *stop);

struct pg_events_tail_cfg {
	const char *nats;    /* server URL(s) */
	const char *stream;  /* NULL: "PAYGUARD" */
	const char *subject; /* NULL: "payguard.>" */
	const char *durable; /* NULL: an ephemeral consumer */
	int all;	     /* from the start of the stream, not only new events */
	long count;	     /* stop after this many; 0: no limit */
	int timeout_ms;	     /* stop after this long without an event; 0: never */
};
/* Calls fn for each event (its JSON text) as it arrives; fn returning
 * non-zero stops. */
int pg_events_tail(const struct pg_events_tail_cfg *cfg,
		   int (*fn)(const char *json, size_t len, void *arg), void *arg,
		   const volatile int *stop);

#endif
