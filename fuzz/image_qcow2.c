/* Fuzz target: the qcow2 reader (header, extensions, L1/L2 tables,
 * compressed clusters) on an in-memory file; backing files are never opened. */
#include "image/image_int.h"

#include "payguard/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_qcow2_hdr h;

	pg_log_set_level(-1);
	if (size > (4u << 20))
		return 0;
	pgi_qcow2_parse_header(data, size, size, &h);
	pgi_qcow2_check_mem(data, size);
	return 0;
}
