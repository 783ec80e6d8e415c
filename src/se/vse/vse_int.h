/*
 * Private to src/se/vse: the socket API's framing shared by the hypervisor
 * and the manager.
 */
#ifndef PG_VSE_INT_H
#define PG_VSE_INT_H

#include "payguard/vse.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One message: 4-byte big-endian length, then that many JSON bytes (at most max). */
int pg_vse__send_json(int fd, json_t *j, size_t max, int timeout_ms);
/* Reads one message of at most max bytes into a malloc'd NUL-terminated buffer. */
int pg_vse__recv_msg(int fd, char **out, size_t *len, size_t max, int timeout_ms);
/* {"ok":false,"error":NAME,"message":...} for a code and the current detail. */
json_t *pg_vse__error_json(int rc);

#endif
