/* `payguard image ...` verbs: thin wrappers over the image library (seed 1). */
#include "cli.h"

#include "payguard/error.h"
#include "payguard/image.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
	OPT_JSON = 1000,
	OPT_DB,
	OPT_DEB,
	OPT_REPO,
	OPT_FIX,
	OPT_OUTPUT,
	OPT_MAX,
	OPT_KEEP,
	OPT_DIR,
	OPT_JOB,
	OPT_BACKING_DIR
};

struct common {
	int json;
	const char *db;
	const char *backing[64]; /* --backing-dir, repeatable */
	size_t nbacking;
};

static int
open_store(struct pg_store *st, const struct common *c)
{
	int rc = pg_store_open_default(st, c->db);

	if (rc < 0)
		return rc;
	rc = pg_image_db_open(st);
	if (rc < 0)
		pg_store_close(st);
	return rc;
}

static const char *
jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	static char num[4][32];
	static int slot;

	if (json_is_integer(v)) {
		slot = (slot + 1) % 4;
		snprintf(num[slot], sizeof(num[slot]), "%lld", (long long)json_integer_value(v));
		return num[slot];
	}
	return json_string_value(v);
}

static void
print_rows(json_t *rows, size_t ncols, const char *const *headers, const char *const *keys)
{
	struct pg_table *t = pg_table_new(ncols, headers);
	size_t i;
	json_t *r;

	if (!t)
		return;
	json_array_foreach(rows, i, r)
	{
		const char *cells[16];

		for (size_t c = 0; c < ncols && c < 16; c++)
			cells[c] = jstr(r, keys[c]);
		pg_table_add(t, cells);
	}
	pg_table_print(t);
	pg_table_free(t);
}

/* Parses the options every verb shares; returns optind or -1 after usage. */
static int
parse_common(int argc, char **argv, struct common *c, const char *extra_short,
	     const struct option *extra, int (*on_extra)(int, const char *, void *), void *ctx)
{
	struct option opts[17];
	size_t n = 0;
	int o;

	memset(c, 0, sizeof(*c));
	opts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
	opts[n++] = (struct option){"db", required_argument, NULL, OPT_DB};
	opts[n++] = (struct option){"backing-dir", required_argument, NULL, OPT_BACKING_DIR};
	for (const struct option *e = extra; e && e->name && n < 16; e++)
		opts[n++] = *e;
	opts[n] = (struct option){NULL, 0, NULL, 0};
	optind = 1;
	while ((o = getopt_long(argc, argv, extra_short ? extra_short : "", opts, NULL)) != -1) {
		if (o == OPT_JSON)
			c->json = 1;
		else if (o == OPT_DB)
			c->db = optarg;
		else if (o == OPT_BACKING_DIR && c->nbacking < 64)
			c->backing[c->nbacking++] = optarg;
		else if (on_extra && on_extra(o, optarg, ctx) == 0)
			continue;
		else
			return -1;
	}
	/* qcow2 backing files outside an image's folder are read only from these */
	if (c->nbacking && pg_image_set_backing_dirs(c->backing, c->nbacking) < 0) {
		pg_cli_fail(PG_EINVAL, "--backing-dir");
		return -1;
	}
	return optind;
}

static int
cmd_image_scan(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *all = json_array();
	int first, rc, worst = 0;

	first = parse_common(argc, argv, &c, NULL, NULL, NULL, NULL);
	if (first < 0)
		return pg_cli_usage(argv[0], "bad option");
	if (first >= argc)
		return pg_cli_usage(argv[0], "give at least one image file or directory");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	for (int i = first; i < argc; i++) {
		struct stat sb;
		json_t *res = NULL;

		if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
			rc = pg_image_scan_dir(&st, argv[i], &res);
			if (rc < 0) {
				worst = pg_cli_fail(rc, "scan '%s'", argv[i]);
				continue;
			}
			json_array_extend(all, res);
			json_decref(res);
			continue;
		}
		fprintf(stderr, "scanning %s ...\n", argv[i]);
		rc = pg_image_scan(&st, argv[i], &res);
		if (rc < 0) {
			worst = pg_cli_fail(rc, "scan '%s'", argv[i]);
			continue;
		}
		json_array_append_new(all, res);
	}
	pg_store_close(&st);
	if (c.json) {
		pg_cli_print_json(all);
	} else {
		static const char *h[] = {"ID", "PATH", "FORMAT", "OS", "PACKAGES", "RESULT"};
		static const char *k[] = {"id", "path", "format", "os", "packages", "error"};

		print_rows(all, 6, h, k);
		json_decref(all);
	}
	return worst;
}

static volatile sig_atomic_t watch_stop;

static void
on_sigint(int sig)
{
	(void)sig;
	watch_stop = 1;
}

static int
watch_opt(int o, const char *arg, void *ctx)
{
	if (o != OPT_MAX)
		return -1;
	*(unsigned *)ctx = (unsigned)strtoul(arg, NULL, 10);
	return 0;
}

static int
cmd_image_watch(int argc, char **argv)
{
	static const struct option extra[] = {{"max-events", required_argument, NULL, OPT_MAX},
					      {NULL, 0, NULL, 0}};
	struct common c;
	struct pg_store st;
	unsigned max = 0;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, extra, watch_opt, &max);
	if (first < 0 || first != argc - 1)
		return pg_cli_usage(argv[0], "give one directory");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	rc = pg_image_watch(&st, argv[first], max, (volatile int *)&watch_stop);
	pg_store_close(&st);
	return rc < 0 ? pg_cli_fail(rc, "watch '%s'", argv[first]) : 0;
}

static int
cmd_image_list(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *rows = NULL;
	int rc;

	if (parse_common(argc, argv, &c, NULL, NULL, NULL, NULL) != argc)
		return pg_cli_usage(argv[0], "no arguments expected");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_list(&st, &rows);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "list");
	if (c.json)
		return pg_cli_print_json(rows);
	{
		static const char *h[] = {"ID", "PATH", "FORMAT", "SIZE", "OS", "PKGS", "SHA256"};
		static const char *k[] = {"id",	       "path",	   "format", "virtual_size",
					  "os_pretty", "packages", "sha256"};

		print_rows(rows, 7, h, k);
	}
	json_decref(rows);
	return 0;
}

static int
cmd_image_show(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *img = NULL;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, NULL, NULL, NULL);
	if (first < 0 || first != argc - 1)
		return pg_cli_usage(argv[0], "give one image (id, path or sha256 prefix)");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_show(&st, argv[first], &img);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "show '%s'", argv[first]);
	if (c.json)
		return pg_cli_print_json(img);
	printf("image %s (id %s)\n  format %s v%s, virtual size %s bytes, file %s bytes\n"
	       "  sha256 %s\n  partition table %s\n  os %s\n",
	       jstr(img, "path"), jstr(img, "id"), jstr(img, "format"), jstr(img, "format_version"),
	       jstr(img, "virtual_size"), jstr(img, "file_size"), jstr(img, "sha256"),
	       jstr(img, "ptable"), jstr(img, "os_pretty") ? jstr(img, "os_pretty") : "-");
	{
		static const char *h[] = {"PART", "START", "SIZE", "TYPE", "FS", "ROOT"};
		static const char *k[] = {"idx", "start", "size", "type", "fs", "is_root"};

		print_rows(json_object_get(img, "partitions"), 6, h, k);
	}
	if (json_array_size(json_object_get(img, "kernels"))) {
		static const char *h[] = {"PART", "KERNEL", "VERSION"};
		static const char *k[] = {"part_idx", "path", "version"};

		print_rows(json_object_get(img, "kernels"), 3, h, k);
	}
	{
		static const char *h[] = {"PACKAGE", "VERSION", "ARCH", "SOURCE", "STATUS"};
		static const char *k[] = {"name", "version", "arch", "source", "status"};

		print_rows(json_object_get(img, "packages"), 5, h, k);
	}
	json_decref(img);
	return 0;
}

static int
on_adv_format(int o, const char *arg, void *ctx)
{
	if (o != 'f' ||
	    (strcmp(arg, "auto") && strcmp(arg, "osv") && strcmp(arg, "debian-tracker")))
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static int
cmd_image_advisories(int argc, char **argv)
{
	static const struct option fmt_opt[] = {{"format", required_argument, NULL, 'f'},
						{NULL, 0, NULL, 0}};
	struct common c;
	struct pg_store st;
	int first, rc, worst = 0;
	size_t total = 0;
	const char *format = "auto";

	first = parse_common(argc, argv, &c, NULL, fmt_opt, on_adv_format, &format);
	if (first < 0 || first >= argc || strcmp(argv[first], "import") != 0 || first + 1 >= argc)
		return pg_cli_usage(argv[0], "usage: advisories [--format auto|osv|debian-tracker] "
					     "import FILE...");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	for (int i = first + 1; i < argc; i++) {
		size_t n = 0;

		rc = pg_image_advisories_import_fmt(&st, argv[i], format, &n);
		if (rc < 0)
			worst = pg_cli_fail(rc, "import '%s'", argv[i]);
		total += n;
	}
	pg_store_close(&st);
	if (c.json)
		pg_cli_print_json(json_pack("{s:I}", "imported", (json_int_t)total));
	else
		printf("imported %zu advisories\n", total);
	return worst;
}

static int
cmd_image_findings(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *rows = NULL;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, NULL, NULL, NULL);
	if (first < 0 || argc - first > 1)
		return pg_cli_usage(argv[0], "give at most one image");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_findings(&st, first < argc ? argv[first] : NULL, &rows);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "findings");
	if (c.json)
		return pg_cli_print_json(rows);
	{
		static const char *h[] = {"IMAGE",  "PACKAGE",	"INSTALLED",
					  "SOURCE", "ADVISORY", "FIXED"};
		static const char *k[] = {"image_id", "package",  "version",
					  "source",   "advisory", "fixed"};

		print_rows(rows, 6, h, k);
	}
	json_decref(rows);
	return 0;
}

struct upgrade_ctx {
	const char *debs[256];
	size_t ndebs;
	struct pg_upgrade_opts o;
	int bad;
};

static int
upgrade_opt(int o, const char *arg, void *vctx)
{
	struct upgrade_ctx *c = vctx;

	switch (o) {
	case OPT_DEB:
		if (c->ndebs >= 256) {
			c->bad = 1;
			return -1;
		}
		c->debs[c->ndebs++] = arg;
		return 0;
	case OPT_REPO:
		c->o.repo = arg;
		return 0;
	case OPT_FIX:
		c->o.fix = 1;
		return 0;
	case OPT_OUTPUT:
		c->o.output = arg;
		return 0;
	case OPT_JOB: {
		char *end;

		c->o.job = strtoll(arg, &end, 10);
		if (*arg && !*end && c->o.job > 0)
			return 0;
		c->bad = 1;
		return -1;
	}
	}
	return -1;
}

/* Progress on stderr: one line per tenth, so logs stay short. */
static void
upgrade_progress(void *arg, double frac)
{
	int *last = arg, tenth = (int)(frac * 10.0 + 1e-9);

	if (tenth == *last)
		return;
	*last = tenth;
	fprintf(stderr, "upgrade: %3.0f%%\n", frac * 100.0);
}

static int
cmd_image_upgrade(int argc, char **argv)
{
	static const struct option extra[] = {{"deb", required_argument, NULL, OPT_DEB},
					      {"repo", required_argument, NULL, OPT_REPO},
					      {"fix", no_argument, NULL, OPT_FIX},
					      {"output", required_argument, NULL, OPT_OUTPUT},
					      {"job", required_argument, NULL, OPT_JOB},
					      {NULL, 0, NULL, 0}};
	struct upgrade_ctx u;
	struct common c;
	struct pg_store st;
	json_t *res = NULL;
	int first, rc, last = -1;

	memset(&u, 0, sizeof(u));
	first = parse_common(argc, argv, &c, NULL, extra, upgrade_opt, &u);
	if (first < 0 || u.bad || (first >= argc && u.o.job <= 0))
		return pg_cli_usage(argv[0], "give one image (or --job ID) and --deb FILE... or "
					     "--fix --repo DIR");
	/* `--deb a.deb b.deb`: getopt leaves b.deb positional, after the image;
	 * with --job the image may be left out, and a positional .deb is one */
	if (first < argc && u.o.job > 0 && strlen(argv[first]) > 4 &&
	    !strcmp(argv[first] + strlen(argv[first]) - 4, ".deb"))
		first--;
	for (int i = first + 1; i < argc && u.ndebs < 256; i++)
		u.debs[u.ndebs++] = argv[i];
	if (!u.o.fix && u.ndebs == 0)
		return pg_cli_usage(argv[0], "give --deb FILE (repeatable) or --fix --repo DIR");
	if (u.o.fix && !u.o.repo)
		return pg_cli_usage(argv[0], "--fix needs --repo DIR");
	u.o.image = first < argc ? argv[first] : NULL;
	u.o.debs = u.debs;
	u.o.ndebs = u.ndebs;
	u.o.progress = upgrade_progress;
	u.o.progress_arg = &last;
	u.o.stop = (const volatile int *)&watch_stop;
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	/* Ctrl-C or SIGTERM: the upgrade stops cleanly, the job says so. */
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	rc = pg_image_upgrade(&st, &u.o, &res);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "upgrade '%s'", u.o.image ? u.o.image : "(queued job)");
	if (c.json)
		return pg_cli_print_json(res);
	printf("job %s: overlay %s (backing file %s)\n", jstr(res, "job"), jstr(res, "overlay"),
	       jstr(res, "image"));
	{
		static const char *h[] = {"PACKAGE", "FROM",	"TO",	    "STATE",
					  "FILES",   "REMOVED", "KEPT-CONF"};
		static const char *k[] = {"package", "from",	      "to", "state", "files",
					  "removed", "conffiles_kept"};

		print_rows(json_object_get(res, "packages"), 7, h, k);
	}
	if (json_integer_value(json_object_get(res, "first_boot")))
		printf("first boot: payguard-firstboot.service runs dpkg --configure -a\n");
	json_decref(res);
	return 0;
}

static int
cmd_image_jobs(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *rows = NULL;
	int rc;

	if (parse_common(argc, argv, &c, NULL, NULL, NULL, NULL) != argc)
		return pg_cli_usage(argv[0], "no arguments expected");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_jobs(&st, &rows);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "jobs");
	if (c.json)
		return pg_cli_print_json(rows);
	{
		static const char *h[] = {"JOB",      "IMAGE",	 "KIND",    "STATE",
					  "PROGRESS", "OVERLAY", "STARTED", "FINISHED"};
		static const char *k[] = {"id",		"image_path",	"kind",
					  "state",	"progress_pct", "overlay",
					  "started_at", "finished_at"};
		size_t i;
		json_t *r;

		json_array_foreach(rows, i, r)
		{
			json_t *p = json_object_get(r, "progress");
			char pct[16] = "-";

			if (json_is_number(p))
				snprintf(pct, sizeof(pct), "%.0f%%", json_number_value(p) * 100.0);
			json_object_set_new(r, "progress_pct", json_string(pct));
		}
		print_rows(rows, 8, h, k);
	}
	json_decref(rows);
	return 0;
}

static int
cmd_image_queue(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	int64_t job = 0;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, NULL, NULL, NULL);
	if (first < 0 || first != argc - 1)
		return pg_cli_usage(argv[0], "give one image");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_job_queue(&st, argv[first], &job);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "queue '%s'", argv[first]);
	if (c.json)
		return pg_cli_print_json(
		    json_pack("{s:I, s:s}", "job", (json_int_t)job, "state", "queued"));
	printf("job %lld queued; run it with: payguard image upgrade --job %lld --deb FILE...\n",
	       (long long)job, (long long)job);
	return 0;
}

static int
out_opt(int o, const char *arg, void *ctx)
{
	if (o != OPT_OUTPUT)
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static int
cmd_image_commit(int argc, char **argv)
{
	static const struct option extra[] = {{"output", required_argument, NULL, OPT_OUTPUT},
					      {NULL, 0, NULL, 0}};
	struct common c;
	struct pg_store st;
	const char *output = NULL;
	json_t *res = NULL;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, extra, out_opt, &output);
	if (first < 0 || first != argc - 1 || !output)
		return pg_cli_usage(argv[0], "give one job id and --output FILE");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_commit(&st, strtoll(argv[first], NULL, 10), output, &res);
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "commit job %s", argv[first]);
	if (c.json)
		return pg_cli_print_json(res);
	printf("job %s committed to %s (%s bytes of data)\n", argv[first], output,
	       jstr(res, "bytes_written"));
	json_decref(res);
	return 0;
}

static int
cmd_image_rollback(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	int first, rc;

	first = parse_common(argc, argv, &c, NULL, NULL, NULL, NULL);
	if (first < 0 || first != argc - 1)
		return pg_cli_usage(argv[0], "give one job id");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	rc = pg_image_rollback(&st, strtoll(argv[first], NULL, 10));
	pg_store_close(&st);
	if (rc < 0)
		return pg_cli_fail(rc, "rollback job %s", argv[first]);
	printf("job %s rolled back: overlay removed, original untouched\n", argv[first]);
	return 0;
}

/* Compares pairs: "A B" per stdin line with --stdin, prints -1/0/1. */
static int
cmd_image_vercmp(int argc, char **argv)
{
	if (argc == 3) {
		int r = pg_debver_cmp(argv[1], argv[2]);

		printf("%d\n", r < 0 ? -1 : r > 0);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--stdin") == 0) {
		char line[1024], a[512], b[512];

		while (fgets(line, sizeof(line), stdin)) {
			int r;

			if (sscanf(line, "%511s %511s", a, b) != 2)
				continue;
			r = pg_debver_cmp(a, b);
			printf("%d\n", r < 0 ? -1 : r > 0);
		}
		return 0;
	}
	return pg_cli_usage(argv[0], "give two versions, or --stdin");
}

static int
demo_opt(int o, const char *arg, void *ctx)
{
	if (o != OPT_DIR)
		return -1;
	*(const char **)ctx = arg;
	return 0;
}

static int
cmd_image_demo(int argc, char **argv)
{
	static const struct option extra[] = {{"dir", required_argument, NULL, OPT_DIR},
					      {NULL, 0, NULL, 0}};
	struct common c;
	const char *dir = NULL;
	int rc;

	if (parse_common(argc, argv, &c, NULL, extra, demo_opt, &dir) != argc)
		return pg_cli_usage(argv[0], "no arguments expected");
	rc = pg_image_demo(dir, dir != NULL);
	return rc < 0 ? pg_cli_fail(rc, "image demo") : 0;
}

const struct pg_cmd pg_cli_image[] = {
    {"scan", cmd_image_scan, "inspect images (files or directory stores) and store their inventory",
     "[--json] [--db FILE] [--backing-dir DIR]... PATH...\n"
     "  PATH is a raw or qcow2 image (detected by content) or a directory of them.\n"
     "  A qcow2 backing file must be in its image's folder (no '..', no symlink out)\n"
     "  or in a --backing-dir folder (repeatable); any other is refused (exit 3).\n",
     NULL, NULL},
    {"watch", cmd_image_watch, "scan a directory, then new and changed images as they appear",
     "[--db FILE] [--max-events N] [--backing-dir DIR]... DIR\n", NULL, NULL},
    {"list", cmd_image_list, "list stored images", "[--json] [--db FILE]\n", NULL, NULL},
    {"show", cmd_image_show, "show one image's partitions, OS, kernels and packages",
     "[--json] [--db FILE] IMAGE\n"
     "  IMAGE is an id, a path or a sha256 prefix (8+ hex digits).\n",
     NULL, NULL},
    {"advisories", cmd_image_advisories,
     "import advisories: OSV (Debian ecosystems) or the Debian Security Tracker JSON",
     "[--json] [--db FILE] [--format F] import FILE...\n"
     "  --format F  auto (default: OSV when the JSON is an array or has \"id\", else the\n"
     "              tracker's), osv, or debian-tracker (the feed debsecan reads)\n",
     NULL, NULL},
    {"findings", cmd_image_findings, "vulnerable packages per image with the fixed version",
     "[--json] [--db FILE] [IMAGE]\n", NULL, NULL},
    {"upgrade", cmd_image_upgrade, "upgrade an image offline into a qcow2 overlay",
     "[--json] [--db FILE] [--output OVERLAY] [--job ID] [--backing-dir DIR]...\n"
     "                              (--deb FILE.deb ... | --fix --repo DIR) [IMAGE]\n"
     "  The original is never written: the result is a qcow2 overlay whose backing\n"
     "  file is the original (default under the data dir). Packages with maintainer\n"
     "  scripts stay 'unpacked' and a first-boot unit runs dpkg --configure -a.\n"
     "  --job ID runs a job made by `image queue` (IMAGE may then be left out).\n"
     "  Progress goes to stderr; SIGINT/SIGTERM stop it cleanly (job 'interrupted').\n",
     NULL, NULL},
    {"queue", cmd_image_queue, "record an upgrade job for an image, to be run with --job",
     "[--json] [--db FILE] IMAGE\n", NULL, NULL},
    {"jobs", cmd_image_jobs, "list upgrade jobs with their states and progress",
     "[--json] [--db FILE]\n", NULL, NULL},
    {"commit", cmd_image_commit, "merge a job's overlay into a new standalone raw image",
     "[--json] [--db FILE] [--backing-dir DIR]... --output FILE JOB\n", NULL, NULL},
    {"rollback", cmd_image_rollback, "drop a job's overlay", "[--db FILE] JOB\n", NULL, NULL},
    {"vercmp", cmd_image_vercmp, "compare Debian versions (-1, 0, 1)",
     "A B | payguard image vercmp --stdin  (lines 'A B')\n", NULL, NULL},
    {"demo", cmd_image_demo, "build a tiny image, scan, match an advisory, upgrade offline",
     "[--dir DIR]\n"
     "  Needs no network: the image, the advisory and the .deb are generated.\n"
     "  With --dir the files are kept there; otherwise a temporary folder is used.\n",
     NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
