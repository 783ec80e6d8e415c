/* Fuzzes the USB CCID (bulk message decoder, chaining, slot status) host role on outside bytes. */
#include "se_double.h"

extern const struct pg_link_ops pgi_link_ccid_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_link_params p = {.retries = 1, .max_frame = 600};

	sd_fuzz_host_role(&pgi_link_ccid_ops, &p, data, size);
	return 0;
}
