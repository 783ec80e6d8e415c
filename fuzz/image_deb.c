/* Fuzz target: the .deb reader (ar members, control.tar and data.tar through
 * libarchive, path normalisation that refuses escapes), then the streaming
 * second pass over every regular file, whose MD5 must match the first. */
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
	if (pgi_deb_read_mem(data, size, &d) == 0) {
		for (size_t i = 0; i < d.nfiles; i++)
			if (d.files[i].path[0] == '/' || strstr(d.files[i].path, ".."))
				if (strstr(d.files[i].path, "/../") ||
				    !strncmp(d.files[i].path, "../", 3) ||
				    d.files[i].path[0] == '/')
					abort(); /* an escaping path got through */
		{
			struct pg_deb_data *s = NULL;
			static uint8_t buf[65536];

			if (pgi_deb_data_open(&d, &s) != 0)
				abort(); /* it opened in the first pass */
			for (size_t i = 0; i < d.nfiles; i++) {
				size_t got = 1, total = 0;

				if (d.files[i].type != 'f')
					continue;
				if (pgi_deb_data_file(s, &d.files[i]) != 0)
					abort(); /* same bytes, same members */
				while (got) {
					if (pgi_deb_data_read(s, buf, sizeof(buf), &got) != 0)
						abort(); /* same bytes, same MD5 */
					total += got;
				}
				if (total != d.files[i].size)
					abort();
			}
			pgi_deb_data_close(s);
		}
		pgi_deb_release(&d);
	}
	return 0;
}
