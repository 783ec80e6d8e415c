/*
 * `payguard demo run`: the README's main job. Runs each area's own demo verb
 * in turn (secure elements, images, load, POS) on the embedded defaults and
 * prints what each did; a failing part is reported and the others still run.
 */
#include "cli.h"
#include "payguard/clock.h"

#include <stdio.h>
#include <string.h>

static const char *const demo_areas[] = {"se", "vse", "seos", "nfcswitch", "image", "load", "pos"};

struct demo_opts {
	const char *only;
};
static const struct pg_opt run_opts[] = {
    PG_STR(struct demo_opts, only, "only", "AREA", "run only that area's part"), {0}};

static int
cmd_demo_run(int argc, char **argv)
{
	struct demo_opts o = {0};
	const char *only;
	int first, failed = 0, ran = 0;

	if (pg_cli_parse(argc, argv, run_opts, &o, &first))
		return PG_EXIT_USAGE;
	if (first < argc)
		return pg_cli_usage(argv[0], "unexpected argument '%s'", argv[first]);
	only = o.only;
	for (size_t i = 0; i < sizeof(demo_areas) / sizeof(demo_areas[0]); i++) {
		const struct pg_cmd *cmd = pg_cli_find(demo_areas[i], "demo");
		char name[64];
		char *args[2];
		uint64_t t0;
		int rc;

		if (!cmd || (only && strcmp(only, demo_areas[i]) != 0))
			continue;
		snprintf(name, sizeof(name), "payguard %s demo", demo_areas[i]);
		args[0] = name;
		args[1] = NULL;
		printf("\n==== %s ====\n", name);
		fflush(stdout);
		t0 = pg_mono_ms();
		rc = cmd->fn(1, args);
		fflush(stdout);
		printf("==== %s: %s (%.1f s) ====\n", name, rc == 0 ? "ok" : "FAILED",
		       (double)(pg_mono_ms() - t0) / 1000.0);
		ran++;
		if (rc != 0)
			failed++;
	}
	if (!ran) {
		fprintf(stderr, "payguard: no demo part matched\n");
		return PG_EXIT_USAGE;
	}
	printf("\n%d of %d demo parts succeeded\n", ran - failed, ran);
	return failed ? PG_EXIT_FAIL : PG_EXIT_OK;
}

const struct pg_cmd pg_cli_demo[] = {
    {"run", cmd_demo_run, "run every area's demonstration in turn",
     "Runs the demo verb of each area (se, image, load, pos, ...) on embedded defaults:\n"
     "simulated secure elements of every link type through the converter, a small VM\n"
     "image inventoried and upgraded offline, a generated VM fleet estimated, and a POS\n"
     "run with moving terminals. State goes to $PAYGUARD_DATA_DIR.",
     run_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
