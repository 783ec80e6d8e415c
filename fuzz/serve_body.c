/*
 * Fuzzes the serve API's request-body parsers (issue 9: alert and VSE
 * actions): any bytes either
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
	char action[16];

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
