/*
 * The NATS connection of the relay and the tail (libnats, the NATS C client).
 * A list of servers is given to the client whole, so it reconnects to any
 * server of a JetStream cluster when the one it uses dies.
 */
#include "events_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS 16

int
pgi_events_nats_fail(natsStatus s, int jerr, const char *what)
{
	const char *last = nats_GetLastError(NULL);

	if (jerr)
		return pg_error(PG_EIO, "events", "%s: %s%s%s (JetStream error %d)", what,
				natsStatus_GetText(s), last ? ": " : "", last ? last : "", jerr);
	return pg_error(PG_EIO, "events", "%s: %s%s%s", what, natsStatus_GetText(s),
			last ? ": " : "", last ? last : "");
}

int
pgi_events_nats_connect(const char *urls, natsConnection **nc, jsCtx **js)
{
	const char *servers[MAX_SERVERS];
	char *copy = strdup(urls ? urls : ""), *save = NULL, *tok;
	natsOptions *o = NULL;
	natsStatus s;
	int n = 0, rc = 0;

	*nc = NULL;
	*js = NULL;
	if (!copy)
		return PG_ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && n < MAX_SERVERS;
	     tok = strtok_r(NULL, ",", &save))
		if (*tok)
			servers[n++] = tok;
	if (n == 0) {
		free(copy);
		return pg_error(PG_EINVAL, "events", "no NATS server URL given");
	}
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, servers, n);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1); /* ride out a server's restart */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 200);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 5000);
	if (s == NATS_OK)
		s = natsConnection_Connect(nc, o);
	natsOptions_Destroy(o);
	free(copy);
	if (s != NATS_OK)
		return pgi_events_nats_fail(s, 0, "connect to NATS");
	s = natsConnection_JetStream(js, *nc, NULL);
	if (s != NATS_OK) {
		rc = pgi_events_nats_fail(s, 0, "JetStream context");
		natsConnection_Destroy(*nc);
		*nc = NULL;
	}
	return rc;
}
