/* Fuzz target: the dpkg status parser (deb822 paragraphs), the package list
 * built from it, the rewrite round trip and Debian version ordering. */
#include "image/image_int.h"
#include "image/inspect.h"

#include "payguard/image.h"
#include "payguard/log.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_deb822 d, again;
	json_t *pk = NULL;
	char *out = NULL;
	size_t olen = 0;

	pg_log_set_level(-1);
	if (size > (1u << 20))
		return 0;
	if (pgi_dpkg_packages_json((const char *)data, size, &pk) == 0) {
		/* order must be antisymmetric on whatever versions appear */
		for (size_t i = 0; i + 1 < json_array_size(pk); i++) {
			const char *a =
			    json_string_value(json_object_get(json_array_get(pk, i), "version"));
			const char *b = json_string_value(
			    json_object_get(json_array_get(pk, i + 1), "version"));

			if (a && b) {
				int x = pg_debver_cmp(a, b), y = pg_debver_cmp(b, a);

				if ((x < 0 && y <= 0) || (x > 0 && y >= 0) || (x == 0 && y != 0))
					abort();
			}
		}
		json_decref(pk);
	}
	if (pgi_deb822_parse((const char *)data, size, &d) == 0) {
		if (pgi_deb822_write(&d, &out, &olen) == 0) {
			/* what we write, we read back to the same paragraphs */
			if (pgi_deb822_parse(out, olen, &again) != 0 || again.n != d.n)
				abort();
			pgi_deb822_release(&again);
			free(out);
		}
		pgi_deb822_release(&d);
	}
	return 0;
}
