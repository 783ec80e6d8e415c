/* Fuzz target: the .deb reader (ar members, control.tar and data.tar through
 * libarchive, path normalisation that refuses escapes). */
#include "image/image_int.h"

#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_deb d;

	pg_log_set_level(-1);
	if (size > (4u << 20))
		return 0;
	if (pg_deb_read_mem(data, size, &d) == 0) {
		for (size_t i = 0; i < d.nfiles; i++)
			if (d.files[i].path[0] == '/' || strstr(d.files[i].path, ".."))
				if (strstr(d.files[i].path, "/../") ||
				    !strncmp(d.files[i].path, "../", 3) ||
				    d.files[i].path[0] == '/')
					abort(); /* an escaping path got through */
		pg_deb_free(&d);
	}
	return 0;
}
