/*
 * The ISO 8583 dialects shipped with payguard (src/pos/dialects/NAME.def),
 * compiled in so `--dialect NAME` works from the build tree and when installed;
 * the package also installs the files as examples for writing new ones.
 */
#include "payguard/pos_iso8583.h"

#include <string.h>

static const struct {
	const char *name, *text;
} shipped[] = {
#include "pos_dialects.inc"
};

const char *
pg_iso_dialect_shipped(const char *name)
{
	for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++)
		if (strcmp(shipped[i].name, name) == 0)
			return shipped[i].text;
	return NULL;
}

const char *
pg_iso_dialect_names(void)
{
	return "binary ascii iso93 iso93-binary " PG_POS_SHIPPED_NAMES;
}
