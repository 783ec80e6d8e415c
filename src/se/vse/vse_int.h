/*
 * Private to src/se/vse: the socket API's framing shared by the hypervisor
 * and the manager, and the registry's writes used by the hypervisor.
 */
#ifndef PG_VSE_INT_H
#define PG_VSE_INT_H

#include "payguard/vse.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One message: 4-byte big-endian length, then that many JSON bytes (at most max). */
int pgi_vse__send_json(int fd, json_t *j, size_t max, int timeout_ms);
/* Reads one message of at most max bytes into a malloc'd NUL-terminated buffer. */
int pgi_vse__recv_msg(int fd, char **out, size_t *len, size_t max, int timeout_ms);
/* {"ok":false,"error":NAME,"message":...} for a code and the current detail. */
json_t *pgi_vse__error_json(int rc);

/* The registry's writes (registry.c); PG_ENOENT when no row has that id. */
int pgi_vse__reg_insert(struct pg_db *db, const char *name, const char *node, const char *config,
			int64_t now_ms, int64_t *id);
int pgi_vse__reg_set_config(struct pg_db *db, int64_t id, const char *config);
int pgi_vse__reg_update(struct pg_db *db, int64_t id, int running, int restarts,
			const char *last_exit, int64_t now_ms);
int pgi_vse__reg_delete(struct pg_db *db, int64_t id);

#endif
