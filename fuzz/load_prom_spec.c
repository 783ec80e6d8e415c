/*
 * libFuzzer harness: the Prometheus source's spec (URL[,START,END,STEP]
 * [,KEY=VALUE...], src/load/prom.c), which comes from serve.json or the
 * command line, and systemd unit names as the cgroup collector unescapes
 * them (src/load/cgroup.c). Opening for live use reads nothing from the
 * network.
 */
#include "load/load_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), name[128];
	void *st = NULL;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (pg_load_prom_ops.open_live(s, &st) == 0)
		pg_load_prom_ops.close(st);
	pgi_load_cgroup_name(s, name);
	free(s);
	return 0;
}
