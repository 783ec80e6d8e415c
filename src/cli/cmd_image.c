/* `payguard image ...` verbs: thin wrappers over the image library (seed 1). */
#include "cli.h"

#include "payguard/error.h"
#include "payguard/image.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every option of every image verb; each verb's table lists the ones it takes. */
struct common {
	int json, fix, stdin_pairs, next;
	const char *db, *format, *repo, *output, *dir, *node;
	struct pg_opt_strings backing, debs; /* --backing-dir, --deb: repeatable */
	size_t max_events, job, lease_ms;
};

#define C struct common
/* The options every image verb takes. */
#define IMG_COMMON                                                                                 \
	PG_FLAG(C, json, "json", "print JSON"), PG_STR(C, db, "db", "FILE", "the store"),          \
	    PG_STRS(C, backing, "backing-dir", "DIR",                                              \
		    "a folder qcow2 backing files may also be read from")

static const struct pg_opt common_opts[] = {IMG_COMMON, {0}};
static const struct pg_opt watch_opts[] = {
    IMG_COMMON,
    PG_SIZE(C, max_events, "max-events", "N", 0, 4294967295.0,
	    "stop after N events (0, the default: run until SIGINT)"),
    {0}};
static const struct pg_opt advisories_opts[] = {
    IMG_COMMON,
    PG_STR(C, format, "format", "F",
	   "auto (default: OSV when the JSON is an array or has \"id\", else the tracker's), osv, "
	   "or debian-tracker (the feed debsecan reads)"),
    {0}};
static const struct pg_opt upgrade_opts[] = {
    IMG_COMMON,
    PG_STRS(C, debs, "deb", "FILE.deb", "a package to install"),
    PG_FLAG(C, fix, "fix", "install the fixed versions of the image's findings (needs --repo)"),
    PG_STR(C, repo, "repo", "DIR", "a folder of .deb files for --fix"),
    PG_STR(C, output, "output", "OVERLAY", "the overlay (default under the data dir)"),
    PG_SIZE(C, job, "job", "ID", 1, 9223372036854775807.0,
	    "run a job made by `image queue` (IMAGE may then be left out)"),
    PG_FLAG(C, next, "next",
	    "run the oldest queued job, or one whose node's lease expired (cluster runners)"),
    PG_STR(C, node, "node", "NAME",
	   "run the job as this cluster node, under a lease renewed as it progresses"),
    PG_SIZE(C, lease_ms, "lease-ms", "MS", 100, 86400000.0,
	    "the node's lease (default 30000): another node takes the job over once it "
	    "expires"),
    {0}};
static const struct pg_opt commit_opts[] = {
    IMG_COMMON, PG_STR(C, output, "output", "FILE", "the new raw image (required)"), {0}};
static const struct pg_opt vercmp_opts[] = {
    PG_FLAG(C, stdin_pairs, "stdin", "compare the pairs 'A B' of each stdin line"), {0}};
static const struct pg_opt demo_opts[] = {
    IMG_COMMON, PG_STR(C, dir, "dir", "DIR", "keep the files in DIR"), {0}};
#undef C

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

/* Parses a verb's options (its table); the first operand, or -1 after a message. */
static int
parse_common(int argc, char **argv, struct common *c, const struct pg_opt *tab)
{
	int first;

	memset(c, 0, sizeof(*c));
	if (pg_cli_parse(argc, argv, tab, c, &first))
		return -1;
	/* qcow2 backing files outside an image's folder are read only from these */
	if (c->backing.n && pg_image_set_backing_dirs(c->backing.v, (size_t)c->backing.n) < 0) {
		pg_cli_fail(PG_EINVAL, "--backing-dir");
		return -1;
	}
	return first;
}

static int
cmd_image_scan(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	json_t *all = json_array();
	int first, rc, worst = 0;

	first = parse_common(argc, argv, &c, common_opts);
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
cmd_image_watch(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	unsigned max;
	int first, rc;

	first = parse_common(argc, argv, &c, watch_opts);
	max = (unsigned)c.max_events;
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

	if (parse_common(argc, argv, &c, common_opts) != argc)
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

	first = parse_common(argc, argv, &c, common_opts);
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
cmd_image_advisories(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	int first, rc, worst = 0;
	size_t total = 0;
	const char *format = "auto";

	first = parse_common(argc, argv, &c, advisories_opts);
	if (first >= 0 && c.format)
		format = c.format;
	if (first >= 0 && strcmp(format, "auto") && strcmp(format, "osv") &&
	    strcmp(format, "debian-tracker"))
		first = -1;
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

	first = parse_common(argc, argv, &c, common_opts);
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
};

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

/* The cluster options of `image upgrade` (--next, --node, --lease-ms):
 * NULL when they fit together, else what to tell the user. */
static const char *
cluster_opts_misuse(const struct common *c)
{
	if (c->next && c->job)
		return "give --next or --job ID, not both";
	if ((c->node || c->lease_ms) && !c->next && !c->job)
		return "--node and --lease-ms run a queued job: give --next or --job ID";
	if (c->lease_ms && !c->node)
		return "--lease-ms needs --node NAME";
	return NULL;
}

/* --next: takes the oldest free job (as the node, under its lease). */
static int
claim_next(struct pg_store *st, const struct common *c, struct pg_upgrade_opts *o)
{
	int64_t job = 0;
	int rc = pg_image_job_claim(st, c->node, o->lease_ms, &job, NULL);

	if (rc < 0)
		return rc;
	o->job = job;
	fprintf(stderr, "upgrade: job %lld%s%s\n", (long long)job, c->node ? " on node " : "",
		c->node ? c->node : "");
	return 0;
}

static int
cmd_image_upgrade(int argc, char **argv)
{
	struct upgrade_ctx u;
	struct common c;
	struct pg_store st;
	json_t *res = NULL;
	int first, rc, last = -1;

	memset(&u, 0, sizeof(u));
	first = parse_common(argc, argv, &c, upgrade_opts);
	if (first >= 0) {
		for (int i = 0; i < c.debs.n; i++)
			u.debs[u.ndebs++] = c.debs.v[i];
		u.o.repo = c.repo;
		u.o.fix = c.fix;
		u.o.output = c.output;
		u.o.job = (int64_t)c.job;
		u.o.node = c.node;
		u.o.lease_ms = (int64_t)c.lease_ms;
		if (cluster_opts_misuse(&c))
			return pg_cli_usage(argv[0], "%s", cluster_opts_misuse(&c));
		if (c.next)
			u.o.job = -1; /* claimed below, once the store is open */
	}
	if (first < 0 || (first >= argc && u.o.job == 0))
		return pg_cli_usage(argv[0],
				    "give one image (or --job ID / --next) and --deb FILE... or "
				    "--fix --repo DIR");
	/* `--deb a.deb b.deb`: getopt leaves b.deb positional, after the image;
	 * with --job the image may be left out, and a positional .deb is one */
	if (first < argc && u.o.job != 0 && strlen(argv[first]) > 4 &&
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
	if (u.o.job < 0 && u.o.image)
		return pg_cli_usage(argv[0], "--next takes the job's own image: give no IMAGE");
	rc = open_store(&st, &c);
	if (rc < 0)
		return pg_cli_fail(rc, "store");
	if (u.o.job < 0 && (rc = claim_next(&st, &c, &u.o)) < 0) {
		pg_store_close(&st);
		return pg_cli_fail(rc, "upgrade --next");
	}
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

	if (parse_common(argc, argv, &c, common_opts) != argc)
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
		static const char *h[] = {"JOB",     "IMAGE",	"KIND",	    "STATE", "PROGRESS",
					  "OVERLAY", "STARTED", "FINISHED", "NODE"};
		static const char *k[] = {"id",		"image_path",	"kind",
					  "state",	"progress_pct", "overlay",
					  "started_at", "finished_at",	"node"};
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
		print_rows(rows, 9, h, k);
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

	first = parse_common(argc, argv, &c, common_opts);
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
cmd_image_commit(int argc, char **argv)
{
	struct common c;
	struct pg_store st;
	const char *output;
	json_t *res = NULL;
	int first, rc;

	first = parse_common(argc, argv, &c, commit_opts);
	output = c.output;
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

	first = parse_common(argc, argv, &c, common_opts);
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
	struct common c = {0};
	int first;

	if (pg_cli_parse(argc, argv, vercmp_opts, &c, &first))
		return PG_EXIT_USAGE;
	if (!c.stdin_pairs && argc - first == 2) {
		int r = pg_debver_cmp(argv[first], argv[first + 1]);

		printf("%d\n", r < 0 ? -1 : r > 0);
		return 0;
	}
	if (c.stdin_pairs && argc == first) {
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
cmd_image_demo(int argc, char **argv)
{
	struct common c;
	const char *dir;
	int rc;

	if (parse_common(argc, argv, &c, demo_opts) != argc)
		return pg_cli_usage(argv[0], "no arguments expected");
	dir = c.dir;
	rc = pg_image_demo(dir, dir != NULL);
	return rc < 0 ? pg_cli_fail(rc, "image demo") : 0;
}

const struct pg_cmd pg_cli_image[] = {
    {"scan", cmd_image_scan, "inspect images (files or directory stores) and store their inventory",
     "PATH is a raw or qcow2 image (detected by content) or a directory of them.\n"
     "A qcow2 backing file must be in its image's folder (no '..', no symlink out)\n"
     "or in a --backing-dir folder; any other is refused (exit 3).",
     common_opts, "PATH..."},
    {"watch", cmd_image_watch, "scan a directory, then new and changed images as they appear", NULL,
     watch_opts, "DIR"},
    {"list", cmd_image_list, "list stored images", NULL, common_opts, NULL},
    {"show", cmd_image_show, "show one image's partitions, OS, kernels and packages",
     "IMAGE is an id, a path or a sha256 prefix (8+ hex digits).", common_opts, "IMAGE"},
    {"advisories", cmd_image_advisories,
     "import advisories: OSV (Debian ecosystems) or the Debian Security Tracker JSON", NULL,
     advisories_opts, "import FILE..."},
    {"findings", cmd_image_findings, "vulnerable packages per image with the fixed version", NULL,
     common_opts, "[IMAGE]"},
    {"upgrade", cmd_image_upgrade, "upgrade an image offline into a qcow2 overlay",
     "Give --deb FILE.deb ... or --fix --repo DIR. The original is never written: the\n"
     "result is a qcow2 overlay whose backing file is the original. Packages with\n"
     "maintainer scripts stay 'unpacked' and a first-boot unit runs dpkg --configure -a.\n"
     "Progress goes to stderr; SIGINT/SIGTERM stop it cleanly (job 'interrupted').",
     upgrade_opts, "[IMAGE]"},
    {"queue", cmd_image_queue, "record an upgrade job for an image, to be run with --job", NULL,
     common_opts, "IMAGE"},
    {"jobs", cmd_image_jobs, "list upgrade jobs with their states and progress", NULL, common_opts,
     NULL},
    {"commit", cmd_image_commit, "merge a job's overlay into a new standalone raw image", NULL,
     commit_opts, "JOB"},
    {"rollback", cmd_image_rollback, "drop a job's overlay", NULL, common_opts, "JOB"},
    {"vercmp", cmd_image_vercmp, "compare Debian versions (-1, 0, 1)",
     "With --stdin, no operands: one 'A B' pair per line.", vercmp_opts, "A B"},
    {"demo", cmd_image_demo, "build a tiny image, scan, match an advisory, upgrade offline",
     "Needs no network: the image, the advisory and the .deb are generated. Without\n"
     "--dir a temporary folder is used.",
     demo_opts, NULL},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
