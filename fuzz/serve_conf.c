/*
 * Fuzzes the serve configuration-file parser (issue 9): any bytes either
 * fail cleanly (leaving the configuration untouched) or give values in range.
 */
#include "payguard/serve.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_serve_conf c, before;

	pg_serve_conf_default(&c);
	before = c;
	if (pg_serve_conf_parse((const char *)data, size, &c) < 0) {
		if (memcmp(&c, &before, sizeof(c)) != 0)
			abort();
		return 0;
	}
	if (c.port < 0 || c.port > 65535 || c.load_period_ms < 100 || c.load_period_ms > 3600000 ||
	    !memchr(c.listen, 0, sizeof(c.listen)) ||
	    !memchr(c.token_file, 0, sizeof(c.token_file)) || c.nallowed_hosts < 0 ||
	    c.nallowed_hosts > PG_SERVE_MAX_ALLOW_HOSTS)
		abort();
	for (int i = 0; i < c.nallowed_hosts; i++)
		if (!memchr(c.allowed_hosts[i], 0, PG_SERVE_HOST_NAME) ||
		    pg_serve_check_host_name(c.allowed_hosts[i]) < 0)
			abort();
	return 0;
}
