/* Fuzzes the SWP (SHDLC frames, HCP reassembly, HCI messages) card role on outside bytes. */
#include "se_double.h"

extern const struct pg_link_ops pgi_link_swp_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_link_params p = {.retries = 1};

	sd_fuzz_card_role(&pgi_link_swp_ops, &p, data, size);
	return 0;
}
