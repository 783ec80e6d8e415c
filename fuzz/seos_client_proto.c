/* Fuzzes the SE OS client-protocol request decoder (one frame body, as the daemon receives it). */
#include "se/seos/proto.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_seos_req r;

	if (pgi_seos_req_decode(&r, data, size) < 0)
		return 0;
	if (r.aid_len > sizeof(r.aid) || strlen(r.name) > PG_SEOS_NAME_MAX)
		abort();
	if (r.apdu && (r.apdu < data || r.apdu + r.apdu_len > data + size))
		abort();
	return 0;
}
