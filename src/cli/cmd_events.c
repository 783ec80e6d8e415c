/*
 * `payguard events ...` (issue 15): run the outbox relay, tail the event
 * stream, emit a test event. Thin wrappers over src/events.
 */
#include "cli.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/events.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/store.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int g_stop;

static void
on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void
catch_stop(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

struct evopt {
	const char *db, *nats, *stream, *secret_file, *subject, *durable, *type, *data;
	struct pg_opt_strings webhooks;
	int once, replicas, all, json;
	size_t count;
	double timeout;
};

#define E struct evopt
static const struct pg_opt relay_opts[] = {
    PG_STR(E, db, "db", "URL", "the store (default: $PAYGUARD_STORE, else the data directory's)"),
    PG_STR(E, nats, "nats", "URL", "NATS server(s) to publish to (comma-separated)"),
    PG_STR(E, stream, "stream", "NAME", "the JetStream stream (default PAYGUARD)"),
    PG_INT(E, replicas, "replicas", "N", 1, 5, "replicas of a stream it creates (default 3)"),
    PG_STRS(E, webhooks, "webhook", "URL", "POST every event to URL (repeatable)"),
    PG_STR(E, secret_file, "webhook-secret-file", "FILE",
	   "the webhooks' signing secret, \"whsec_<base64>\" (a private file)"),
    PG_FLAG(E, once, "once", "one round, then exit"),
    {NULL, 0, NULL, NULL, 0, 0, 0},
};
static const struct pg_opt tail_opts[] = {
    PG_STR(E, nats, "nats", "URL", "NATS server(s) (comma-separated)"),
    PG_STR(E, stream, "stream", "NAME", "the JetStream stream (default PAYGUARD)"),
    PG_STR(E, subject, "subject", "S", "subject filter (default payguard.>)"),
    PG_STR(E, durable, "durable", "NAME", "a durable consumer: resume where it stopped"),
    PG_FLAG(E, all, "all", "from the start of the stream, not only new events"),
    PG_SIZE(E, count, "count", "N", 1, 1e12, "stop after N events"),
    PG_DBL(E, timeout, "timeout", "S", 0, 1e6, "stop after S seconds without an event"),
    {NULL, 0, NULL, NULL, 0, 0, 0},
};
static const struct pg_opt emit_opts[] = {
    PG_STR(E, db, "db", "URL", "the store (default: $PAYGUARD_STORE, else the data directory's)"),
    PG_STR(E, type, "type", "AREA.EVENT", "the event (its type is payguard.AREA.EVENT)"),
    PG_STR(E, subject, "subject", "S", "what the event is about"),
    PG_STR(E, data, "data", "JSON", "the event's data (default {})"),
    PG_SIZE(E, count, "count", "N", 1, 1000000, "emit N events in one transaction (default 1)"),
    PG_FLAG(E, json, "json", "print the event ids as JSON"),
    {NULL, 0, NULL, NULL, 0, 0, 0},
};

static int
open_store(struct pg_store *st, const char *db)
{
	int rc = pg_store_open_default(st, db);

	if (rc == 0)
		rc = pg_events_migrate(st->pdb);
	return rc;
}

static int
cmd_events_relay(int argc, char **argv)
{
	struct evopt o = {0};
	struct pg_events_relay_cfg c = {0};
	struct pg_store st = {0};
	char secret[128] = "";
	int first, rc;

	if ((rc = pg_cli_parse(argc, argv, relay_opts, &o, &first)) != 0)
		return rc;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected '%s'", argv[first]);
	if (o.secret_file &&
	    (rc = pg_events_read_secret(o.secret_file, secret, sizeof(secret))) < 0)
		return pg_cli_fail(rc, "events relay: webhook secret");
	if ((rc = open_store(&st, o.db)) < 0)
		return pg_cli_fail(rc, "events relay: store");
	c.nats = o.nats;
	c.stream = o.stream;
	c.replicas = o.replicas;
	c.webhooks = o.webhooks.v;
	c.nwebhooks = (size_t)o.webhooks.n;
	c.webhook_secret = secret[0] ? secret : NULL;
	c.once = o.once;
	catch_stop();
	rc = pg_events_relay(st.pdb, &c, &g_stop);
	pg_memzero(secret, sizeof(secret));
	pg_store_close(&st);
	return rc < 0 ? pg_cli_fail(rc, "events relay") : PG_EXIT_OK;
}

static int
print_event(const char *json, size_t len, void *arg)
{
	(void)arg;
	fwrite(json, 1, len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	return 0;
}

static int
cmd_events_tail(int argc, char **argv)
{
	struct evopt o = {0};
	struct pg_events_tail_cfg c = {0};
	int first, rc;

	if ((rc = pg_cli_parse(argc, argv, tail_opts, &o, &first)) != 0)
		return rc;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected '%s'", argv[first]);
	if (!o.nats)
		return pg_cli_usage(argv[0], "--nats is required");
	c.nats = o.nats;
	c.stream = o.stream;
	c.subject = o.subject;
	c.durable = o.durable;
	c.all = o.all;
	c.count = (long)o.count;
	c.timeout_ms = (int)(o.timeout * 1000);
	catch_stop();
	rc = pg_events_tail(&c, print_event, NULL, &g_stop);
	return rc < 0 ? pg_cli_fail(rc, "events tail") : PG_EXIT_OK;
}

static int
cmd_events_emit(int argc, char **argv)
{
	struct evopt o = {0};
	struct pg_store st = {0};
	char area[80], id[37];
	const char *dot;
	json_t *data = NULL, *ids;
	json_error_t jerr;
	int first, rc;

	if ((rc = pg_cli_parse(argc, argv, emit_opts, &o, &first)) != 0)
		return rc;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected '%s'", argv[first]);
	if (!o.type || !(dot = strchr(o.type, '.')) || (size_t)(dot - o.type) >= sizeof(area))
		return pg_cli_usage(argv[0], "--type AREA.EVENT is required");
	snprintf(area, sizeof(area), "%.*s", (int)(dot - o.type), o.type);
	data = o.data ? json_loads(o.data, JSON_REJECT_DUPLICATES, &jerr) : json_object();
	if (!data) {
		fprintf(stderr, "payguard: events emit: --data is not JSON: %s\n", jerr.text);
		return PG_EXIT_INPUT;
	}
	if ((rc = open_store(&st, o.db)) < 0) {
		json_decref(data);
		return pg_cli_fail(rc, "events emit: store");
	}
	ids = json_array();
	rc = ids ? pg_db_begin(st.pdb) : PG_ENOMEM;
	for (size_t i = 0; rc == 0 && i < (o.count ? o.count : 1); i++) {
		rc = pg_event_emit(st.pdb, area, dot + 1, o.subject, data, id);
		if (rc == 0)
			rc = json_array_append_new(ids, json_string(id)) ? PG_ENOMEM : 0;
	}
	if (rc == 0)
		rc = pg_db_commit(st.pdb);
	else
		pg_db_rollback(st.pdb);
	json_decref(data);
	pg_store_close(&st);
	if (rc < 0) {
		json_decref(ids);
		return pg_cli_fail(rc, "events emit");
	}
	if (o.json)
		return pg_cli_print_json(json_pack("{s:o}", "ids", ids));
	for (size_t i = 0; i < json_array_size(ids); i++)
		printf("%s\n", json_string_value(json_array_get(ids, i)));
	json_decref(ids);
	return PG_EXIT_OK;
}

const struct pg_cmd pg_cli_events[] = {
    {"relay", cmd_events_relay, "publish the store's events to NATS JetStream and webhooks",
     "Runs until SIGINT/SIGTERM (or one round with --once). Without --nats and --webhook it only "
     "trims the outbox.",
     relay_opts, NULL},
    {"tail", cmd_events_tail, "print events from the stream as they come (one JSON per line)",
     "--nats is required.", tail_opts, NULL},
    {"emit", cmd_events_emit, "write a test event into the outbox",
     "--type is required; the relay publishes it like any other.", emit_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
