/*
 * payguard-vse: the VSE process image (seed 6's address space for one VSE).
 * The hypervisor execs this small program, linked only with the SE
 * libraries, rather than the whole payguard CLI: every VSE then maps and
 * relocates a handful of libraries instead of every area's (libvirt, cairo,
 * ...), which keeps its private memory and its start-up time down.
 */
#include "payguard/log.h"
#include "payguard/vse.h"

#include <stdlib.h>

int
main(void)
{
	const char *env = getenv("PAYGUARD_LOG");

	if (env && pg_log_parse_level(env) >= 0)
		pg_log_set_level(pg_log_parse_level(env));
	return pg_vse_run_one() < 0 ? 1 : 0;
}
