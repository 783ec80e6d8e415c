/*
 * Fuzzes the hypervisor's socket-API decoder (seed 6: the SEM's request):
 * JSON -> op + VSE request with every field validated. An accepted request
 * must survive a storage round trip unchanged.
 */
#include "payguard/vse.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_vse_api_req q, q2;
	char sz[32];

	if (size < sizeof(sz)) {
		uint64_t v;

		memcpy(sz, data, size);
		sz[size] = '\0';
		(void)pg_vse_parse_size(sz, &v);
		(void)pg_vse_name_ok(sz);
	}
	if (pg_vse_api_decode(&q, data, size) == 0 && q.op == PG_VSE_OP_CREATE) {
		json_t *j = pg_vse_request_to_json(&q.vse, 1);

		if (!j || pg_vse_request_from_json(&q2.vse, j) != 0)
			abort();
		if (strcmp(q.vse.name, q2.vse.name) != 0 || q.vse.arena_size != q2.vse.arena_size ||
		    q.vse.pmem_size != q2.vse.pmem_size || q.vse.n_applets != q2.vse.n_applets ||
		    strcmp(q.vse.expose.link, q2.vse.expose.link) != 0 ||
		    memcmp(q.vse.master, q2.vse.master, sizeof(q.vse.master)) != 0)
			abort();
		json_decref(j);
		j = pg_vse_request_to_json(&q.vse, 0);
		json_decref(j);
	}
	return 0;
}
