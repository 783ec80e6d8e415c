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
	/* the events keys (issue 15): terminated strings, accepted webhooks only */
	if (!memchr(c.nats, 0, sizeof(c.nats)) ||
	    !memchr(c.webhook_secret_file, 0, sizeof(c.webhook_secret_file)) || c.nwebhooks < 0 ||
	    c.nwebhooks > PG_SERVE_MAX_WEBHOOKS ||
	    (c.intake_jetstream != 0 && c.intake_jetstream != 1))
		abort();
	for (int i = 0; i < c.nwebhooks; i++)
		if (!memchr(c.webhooks[i], 0, sizeof(c.webhooks[i])) ||
		    pg_serve_check_webhook(c.webhooks[i]) < 0)
			abort();
	return 0;
}
