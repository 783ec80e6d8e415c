/*
 * libFuzzer harness: the public trace readers of src/load/traces.c (Azure
 * readings and vmtable, Alibaba machine and container usage, Google 2011
 * task_usage per machine and per job). The first byte picks the layout, the
 * rest is the file's text.
 */
#include "load/load_int.h"

#include <stdint.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum load_trace_kind kind;
	struct load_trace *t;

	if (size < 1)
		return 0;
	kind = (enum load_trace_kind)(data[0] % 6);
	t = pgi_load_trace_new(kind);
	if (!t)
		return 0;
	if (pgi_load_trace_feed(t, kind, (const char *)data + 1, size - 1, "fuzz.csv") == 0)
		(void)pgi_load_trace_finish(t);
	pgi_load_trace_free(t);
	return 0;
}
