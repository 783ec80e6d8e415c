/* Fuzzes the ARA-M rule parser (GET DATA [All] FF40 data) and the access decision over its rules.
 */
#include "payguard/seos.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_ara_rules r;
	struct pg_ara_client c;
	struct pg_ara_access a;

	if (pg_ara_parse(&r, data, size) < 0)
		return 0;
	pg_ara_client_from(&c, "uid:1000:/usr/bin/wallet", 24);
	for (size_t i = 0; i <= r.n && i < 8; i++) {
		const uint8_t *aid = i < r.n ? r.rule[i].aid : NULL;
		size_t alen = i < r.n ? r.rule[i].aid_len : 0;

		if (i < r.n && r.rule[i].hash_len == 20)
			memcpy(c.sha1, r.rule[i].hash, 20);
		if (pg_ara_decide(&r, aid, alen, &c, &a) == 0) {
			if (a.nfilters > PG_ARA_MAX_FILTERS)
				abort();
			(void)pg_ara_check_apdu(&a, data, size);
		}
	}
	pg_ara_rules_release(&r);
	return 0;
}
