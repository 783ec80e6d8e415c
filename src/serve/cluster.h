/*
 * Private to src/serve: cluster mode (issue 14, "Cluster mode"). With a
 * PostgreSQL store every `payguard serve --node NAME` registers in table
 * cluster_node and heartbeats on a connection of its own; the singletons
 * (the load estimator, pos_txn retention, the image folder watcher, demo
 * traffic) run on the one node that holds the advisory lock
 * "payguard.singleton.<name>". With a SQLite store the node is alone and
 * leads every singleton (behaviour as before clusters). docs/cluster.md.
 */
#ifndef PG_SERVE_CLUSTER_H
#define PG_SERVE_CLUSTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct pg_serve_state;
struct pg_serve_cluster;

#define PG_SERVE_CLUSTER_BEAT_MS 1000 /* heartbeat and lock attempts */
#define PG_SERVE_CLUSTER_DOWN_MS 5000 /* a node silent this long is down */
/* a node whose rounds have failed this long stops its singletons: less than
 * the cluster session's idle_session_timeout (CLUSTER_IDLE_S in cluster.c),
 * after which the server ends a partitioned node's session and its locks go */
#define PG_SERVE_CLUSTER_FENCE_MS 8000

/*
 * Joins the cluster: on PostgreSQL opens the cluster connection, migrates
 * the cluster tables, takes the node's name lock (PG_EBUSY when another
 * daemon runs as `node`), registers and runs a first round, so singletons
 * free now are led from the start. `address` is the API's host:port others
 * forward to. SQLite (store_url not PostgreSQL): no connection, leads all.
 */
int pgi_serve_cluster_open(struct pg_serve_state *s, const char *store_url, const char *node,
			   const char *address, struct pg_serve_cluster **out);
/* Starts the heartbeat thread (PostgreSQL; nothing on SQLite). */
int pgi_serve_cluster_start(struct pg_serve_cluster *c);
/* Leaves: stops the thread, marks the node down and closes the connection,
 * which releases its locks (call after the singleton workers stopped). */
void pgi_serve_cluster_close(struct pg_serve_cluster *c);

/* The singleton a worker of the worker table is, or NULL (runs everywhere). */
const char *pgi_serve_cluster_singleton_of(const char *worker);
/* 1 when this node runs the singleton now: it holds the lock and its last
 * round is younger than PG_SERVE_CLUSTER_FENCE_MS. c NULL: 1. */
int pgi_serve_cluster_leads(struct pg_serve_cluster *c, const char *singleton);
/* 1 when this node should run worker `name` now (a singleton it leads, or
 * not a singleton). */
int pgi_serve_cluster_runs(struct pg_serve_cluster *c, const char *worker);
/* The supervisor loop's step: starts singleton workers this node leads now
 * ("standby" -> started) and stops those it no longer leads. */
void pgi_serve_cluster_apply(struct pg_serve_state *s, uint64_t now_mono);

/* 1 when the store is shared (PostgreSQL): several nodes may run. */
int pgi_serve_cluster_shared(const struct pg_serve_cluster *c);
/*
 * The supervisor loop's step for image jobs (cluster mode only): at most
 * twice a second, when an upgrade slot is free, takes the oldest queued job
 * or one whose runner's lease expired (its node died) with
 * pg_image_job_claim and starts the upgrade task for it.
 */
void pgi_serve_cluster_jobs(struct pg_serve_state *s, uint64_t now_mono);

/* GET /api/cluster: a copy of the last snapshot of nodes and leaders,
 * refreshed every round; NULL when out of memory. */
json_t *pgi_serve_cluster_json(struct pg_serve_cluster *c);
/* This node's name. */
const char *pgi_serve_cluster_node(const struct pg_serve_cluster *c);
/* The API address of node `node` if it is up: 0, PG_ENOENT (unknown or down). */
int pgi_serve_cluster_address(struct pg_serve_cluster *c, const char *node, char *out, size_t size);

/*
 * Forwards an API POST to node `node` (the owner of a VSE, say): POST
 * http://ADDRESS/path with the JSON body, this daemon's Bearer token (the
 * nodes of a cluster share the token file) and the header
 * PG_SERVE_FORWARDED_HEADER naming this node, so the owner never forwards it
 * again. *status and *reply (its JSON) are the owner's answer. PG_ENOENT
 * when the node is not up, PG_EIO when it does not answer in
 * PG_SERVE_CLUSTER_FORWARD_MS, PG_EFORMAT for an answer that is not JSON.
 */
#define PG_SERVE_FORWARDED_HEADER   "X-Payguard-Forwarded-By"
#define PG_SERVE_CLUSTER_FORWARD_MS 10000
int pgi_serve_cluster_forward(struct pg_serve_cluster *c, const char *node, const char *path,
			      const char *body, size_t len, const char *token, long *status,
			      json_t **reply);

#endif
