/*
 * payguard: one binary, `payguard <area> <verb> [options]`. This file holds
 * the table of areas and the dispatcher; verbs live in cmd_<area>.c.
 */
#include "cli.h"
#include "payguard/json.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PAYGUARD_VERSION "0.1.0"

/* Order is the order `payguard --help` lists them in. */
static const struct pg_area areas[] = {
    {"se", "secure-element links, simulated SEs and the protocol converter", pg_cli_se, NULL},
    {"vse", "virtual secure elements and their hypervisor", pg_cli_vse, NULL},
    {"seos", "the device-side SE operating system", pg_cli_seos, NULL},
    {"nfcswitch", "NFC switch routing reader commands to SEs by AID", pg_cli_nfcswitch, NULL},
    {"image", "VM image inventory, advisories and offline upgrade", pg_cli_image, NULL},
    {"load", "VM load collection and two-level k-means estimation", pg_cli_load, NULL},
    {"pos", "relocation monitoring of mobile POS terminals", pg_cli_pos, NULL},
    {"events", "state changes out to NATS JetStream and webhooks", pg_cli_events, NULL},
    {"serve", "the daemon: supervised services, HTTP API and dashboard", pg_cli_serve, "run"},
    {"demo", "the end-to-end demonstration (the README's main job)", pg_cli_demo, NULL},
};

const struct pg_cmd *
pg_cli_find(const char *area, const char *verb)
{
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
		if (strcmp(areas[i].name, area) != 0)
			continue;
		for (const struct pg_cmd *c = areas[i].cmds; c->verb; c++)
			if (strcmp(c->verb, verb) == 0)
				return c;
	}
	return NULL;
}

static void
print_main_help(FILE *f)
{
	fprintf(f, "usage: payguard [--log-level LEVEL] <area> <verb> [options]\n"
		   "       payguard <area> <verb> --help\n\n"
		   "Global options (before the area):\n"
		   "  --log-level LEVEL  error, warn (default), info, debug or trace\n"
		   "  --version          print the version\n\nAreas:\n");
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
		int any = 0;

		for (const struct pg_cmd *c = areas[i].cmds; c->verb; c++)
			any = 1;
		if (any)
			fprintf(f, "  %-10s %s\n", areas[i].name, areas[i].summary);
	}
	fprintf(f, "\nExit codes: 0 ok, 1 failed, 2 usage, 3 input rejected, 4 not found, "
		   "5 denied.\n");
}

static void
print_area_help(FILE *f, const struct pg_area *a)
{
	fprintf(f, "usage: payguard %s <verb> [options]\n\n%s.\n", a->name, a->summary);
	if (a->default_verb)
		fprintf(f, "\n'payguard %s [options]' runs 'payguard %s %s [options]'.\n", a->name,
			a->name, a->default_verb);
	fprintf(f, "\nVerbs:\n");
	for (const struct pg_cmd *c = a->cmds; c->verb; c++)
		fprintf(f, "  %-12s %s\n", c->verb, c->summary);
}

static int
wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return 0;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	}
	return 0;
}

/* The global options before the area; the index of the area, or -1 with
 * *exit set (help, version, a usage error). */
static int
global_options(int argc, char **argv, int *exit_code)
{
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			print_main_help(stdout);
			*exit_code = 0;
			return -1;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("payguard %s\n", PAYGUARD_VERSION);
			*exit_code = 0;
			return -1;
		} else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
			int lv = pg_log_parse_level(argv[++i]);

			if (lv < 0) {
				*exit_code =
				    pg_cli_usage("payguard", "unknown log level '%s'", argv[i]);
				return -1;
			}
			pg_log_set_level(lv);
		} else {
			*exit_code = pg_cli_usage("payguard", "unknown option '%s'", argv[i]);
			return -1;
		}
	}
	if (i >= argc) {
		print_main_help(stderr);
		*exit_code = PG_EXIT_USAGE;
		return -1;
	}
	return i;
}

static int
is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static const struct pg_cmd *
find_verb(const struct pg_area *area, const char *verb)
{
	for (const struct pg_cmd *c = area->cmds; c->verb; c++)
		if (strcmp(c->verb, verb) == 0)
			return c;
	return NULL;
}

/* Runs a verb: argv[0] becomes "payguard AREA VERB"; --help never reaches it. */
static int
run_verb(const struct pg_area *area, const struct pg_cmd *cmd, int argc, char **argv)
{
	char argv0[128];

	snprintf(argv0, sizeof(argv0), "payguard %s %s", area->name, cmd->verb);
	argv[0] = argv0;
	if (wants_help(argc, argv)) {
		if (cmd->opts)
			pg_cli_print_help(stdout, argv0, cmd);
		else
			printf("usage: %s %s\n", argv0, cmd->usage ? cmd->usage : "");
		return 0;
	}
	return cmd->fn(argc, argv);
}

int
main(int argc, char **argv)
{
	const struct pg_area *area = NULL;
	const struct pg_cmd *cmd;
	const char *env = getenv("PAYGUARD_LOG");
	int i, ex = 0;

	/* before any file is made: the data directory, the store and its -wal,
	 * keys and sockets are this user's alone, whatever umask we inherit */
	umask(077);
	if (env && pg_log_parse_level(env) >= 0)
		pg_log_set_level(pg_log_parse_level(env));
	i = global_options(argc, argv, &ex);
	if (i < 0)
		return ex;
	for (size_t a = 0; a < sizeof(areas) / sizeof(areas[0]); a++)
		if (strcmp(areas[a].name, argv[i]) == 0)
			area = &areas[a];
	if (!area)
		return pg_cli_usage("payguard", "unknown area '%s'", argv[i]);
	i++;
	/* the area's verb is implied: argv[i-1] (the area's name) becomes its slot */
	if (area->default_verb && (i >= argc || (argv[i][0] == '-' && !is_help(argv[i]))))
		return run_verb(area, find_verb(area, area->default_verb), argc - i + 1,
				argv + i - 1);
	if (i >= argc || is_help(argv[i])) {
		print_area_help(i >= argc ? stderr : stdout, area);
		return i >= argc ? PG_EXIT_USAGE : 0;
	}
	cmd = find_verb(area, argv[i]);
	if (!cmd) {
		char argv0[128];

		snprintf(argv0, sizeof(argv0), "payguard %s", area->name);
		return pg_cli_usage(argv0, "unknown verb '%s'", argv[i]);
	}
	return run_verb(area, cmd, argc - i, argv + i);
}
