/*
 * Fuzzes the GlobalPlatform SPI/I2C T=1 host role on outside bytes: block
 * decoder, S-block handling, the CIP parser, chaining. Byte 0 picks SPI or I2C and the IFS.
 */
#include "se_double.h"

extern const struct pg_link_ops pgi_link_spi_ops, pgi_link_i2c_ops;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_link_params p = {.retries = 1};

	if (size < 1)
		return 0;
	p.ifsc = p.ifsd = (data[0] & 2) ? 16 : 0;
	sd_fuzz_host_role((data[0] & 1) ? &pgi_link_i2c_ops : &pgi_link_spi_ops, &p, data + 1,
			  size - 1);
	return 0;
}
