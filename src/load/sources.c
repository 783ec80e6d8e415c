/*
 * The table of collectors (seed 3's "collect monitored data of the VMs"):
 * a source is named "kind:argument" and resolved here, so the CLI and the
 * estimator never know which collector they read.
 */
#include "payguard/error.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <string.h>

/* Order: trace sources first, then live ones; `--help` lists them so. */
const struct pg_load_ops *const pg_load_sources[] = {
    &pg_load_bitbrains_ops,
    &pg_load_azure_ops,
    &pg_load_alibaba_ops,
    &pg_load_google2011_ops,
    &pg_load_csv_ops,
    &pg_load_store_ops,
    &pg_load_gen_ops,
    &pg_load_prom_ops,
    &pg_load_libvirt_ops,
    &pg_load_cgroup_ops,
    NULL,
};

int
pg_load_source_lookup(const char *spec, const struct pg_load_ops **ops, const char **arg)
{
	const char *colon = spec ? strchr(spec, ':') : NULL;

	if (!colon)
		return pg_error(PG_EINVAL, "load",
				"source '%s' is not KIND:ARG (e.g. bitbrains:DIR)",
				spec ? spec : "");
	for (size_t i = 0; pg_load_sources[i]; i++) {
		const struct pg_load_ops *o = pg_load_sources[i];
		if (strlen(o->name) == (size_t)(colon - spec) &&
		    strncmp(o->name, spec, (size_t)(colon - spec)) == 0) {
			*ops = o;
			*arg = colon + 1;
			return 0;
		}
	}
	return pg_error(PG_ENOENT, "load", "unknown source kind in '%s'", spec);
}
