/*
 * Fuzzes the serve API's request-body parsers (issue 9: alert and VSE
 * actions, image upgrade requests): any bytes either
 * fail cleanly or yield a validated action whose fields hold their limits.
 */
#include "payguard/serve.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_serve_alert_action a;
	struct pg_serve_upgrade_req u;
	char action[16];

	if (pg_serve_parse_upgrade((const char *)data, size, &u) == 0) {
		if (u.fix == (u.ndebs > 0) || u.ndebs > PG_SERVE_MAX_DEBS)
			abort();
		for (size_t i = 0; i < u.ndebs; i++)
			if (!memchr(u.debs[i], 0, sizeof(u.debs[i])) || strchr(u.debs[i], '/') ||
			    u.debs[i][0] == '.')
				abort();
	}

	if (pg_serve_parse_vse_action((const char *)data, size, action) == 0 &&
	    strcmp(action, "start") != 0 && strcmp(action, "stop") != 0 &&
	    strcmp(action, "destroy") != 0)
		abort();
	if (pg_serve_parse_alert_action((const char *)data, size, &a) < 0)
		return 0;
	if (size > PG_SERVE_MAX_BODY)
		abort();
	if (strcmp(a.state, "acknowledged") != 0 && strcmp(a.state, "closed") != 0)
		abort();
	if (memchr(a.note, 0, sizeof(a.note)) == NULL)
		abort();
	return 0;
}
