/* Fuzzes the NFC switch routing configuration parser (issue 8) and feeds what it accepts to a
 * switch. */
#include "payguard/log.h"
#include "payguard/nfcswitch.h"

#include <stdint.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_nfcsw_conf c;
	struct pg_nfcsw *sw = NULL;

	pg_log_set_level(-1);
	if (pg_nfcsw_conf_parse(&c, (const char *)data, size) < 0)
		return 0;
	if (pg_nfcsw_new(&sw) == 0) {
		struct pg_nfcsw_app app;

		pg_nfcsw_set_policy(sw, c.policy);
		for (size_t i = 0; i < c.n_se; i++)
			pg_nfcsw_add_slot(sw, c.se[i].name, c.se[i].priority);
		for (size_t i = 0; i < c.n_apps; i++) {
			int se = pg_nfcsw_find_se(sw, c.apps[i].se);

			if (se >= 0)
				pg_nfcsw_register(sw, se, c.apps[i].aid, c.apps[i].aid_len, 0x07,
						  c.apps[i].priority, c.apps[i].label,
						  c.apps[i].flags);
		}
		for (size_t i = 0; i < c.n_apps; i++)
			pg_nfcsw_route(sw, c.apps[i].aid,
				       c.apps[i].aid_len > 5 ? 5 : c.apps[i].aid_len, (int)(i & 1),
				       &app);
		pg_nfcsw_free(sw);
	}
	pg_nfcsw_conf_release(&c);
	return 0;
}
