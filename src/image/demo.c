/*
 * `payguard image demo`: the seed-1 flow end to end in seconds with no
 * network. It generates a tiny Debian-like root (os-release, a kernel in
 * /boot, a dpkg database), packs it with mkfs.ext4 -d into an MBR disk,
 * scans it, imports a generated OSV advisory, shows the finding, builds the
 * fixed .deb with dpkg-deb --build and upgrades the image offline.
 */
#include "image_int.h"
#include "imagedb.h"

#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

extern char **environ;

static int
run(char *const argv[], const char *stdin_text)
{
	posix_spawn_file_actions_t fa;
	int pfd[2] = {-1, -1}, status = 0, rc;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	if (stdin_text) {
		if (pipe(pfd) < 0)
			return PG_ESYS;
		posix_spawn_file_actions_adddup2(&fa, pfd[0], 0);
		posix_spawn_file_actions_addclose(&fa, pfd[1]);
	}
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (stdin_text) {
		close(pfd[0]);
		if (rc == 0 && write(pfd[1], stdin_text, strlen(stdin_text)) < 0)
			rc = errno;
		close(pfd[1]);
	}
	if (rc != 0)
		return pg_error(PG_ENOENT, "demo", "cannot run %s: %s (run scripts/setup.sh)",
				argv[0], strerror(rc));
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return pg_error(PG_EIO, "demo", "%s failed", argv[0]);
	return 0;
}

static int
put(const char *dir, const char *rel, const char *text, unsigned mode)
{
	char path[4096], d[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	snprintf(d, sizeof(d), "%s", path);
	*strrchr(d, '/') = 0;
	if (pg_mkdir_p(d, 0755) < 0)
		return PG_EIO;
	f = fopen(path, "w");
	if (!f)
		return pg_error(PG_EIO, "demo", "write '%s': %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return 0;
}

static void
md5_of(const char *text, char out[33])
{
	uint8_t md[16];
	unsigned n = 0;

	EVP_Digest(text, strlen(text), md, &n, EVP_md5(), NULL);
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A file that looks like an x86 bzImage to the kernel-version reader. */
static int
fake_kernel(const char *root)
{
	static uint8_t k[8192];
	const char *ver = "6.1.0-99-amd64 (demo@payguard) #1 SMP Debian 6.1.999-1";
	char path[4096];
	int fd;

	memcpy(k + 0x202, "HdrS", 4);
	k[0x20E] = 0x00;
	k[0x20F] = 0x10; /* version string at 0x200 + 0x1000 */
	memcpy(k + 0x1200, ver, strlen(ver) + 1);
	snprintf(path, sizeof(path), "%s/boot/vmlinuz-6.1.0-99-amd64", root);
	{
		char b[4096];

		snprintf(b, sizeof(b), "%s/boot", root);
		pg_mkdir_p(b, 0755);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		if (fd >= 0)
			close(fd);
		return PG_EIO;
	}
	close(fd);
	return 0;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char tool_v1[] = "#!/bin/sh\necho demo-tool 1.0 (vulnerable)\n";
static const char tool_v2[] = "#!/bin/sh\necho demo-tool 1.0-2 (fixed)\n";
static const char conf_v1[] = "# demo-tool configuration\nlisten=127.0.0.1\n";
static const char conf_v2[] = "# demo-tool configuration\nlisten=127.0.0.1\nstrict=yes\n";

static int
make_root(const char *root)
{
	char m_tool[33], m_conf[33], m_lib[33], status[4096], md5s[512];
	const char *lib = "libdemo 1.0\n";
	int rc = 0;

	md5_of(tool_v1, m_tool);
	md5_of(conf_v1, m_conf);
	md5_of(lib, m_lib);
	rc |= put(root, "usr/lib/os-release",
		  "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n"
		  "VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
		  0644);
	{
		char p[4096], d[4096];

		snprintf(d, sizeof(d), "%s/etc", root);
		pg_mkdir_p(d, 0755);
		snprintf(p, sizeof(p), "%s/etc/os-release", root);
		if (symlink("../usr/lib/os-release", p) < 0 && errno != EEXIST)
			return PG_EIO;
	}
	rc |= fake_kernel(root);
	rc |= put(root, "usr/bin/demo-tool", tool_v1, 0755);
	rc |= put(root, "etc/demo-tool.conf", conf_v1, 0644);
	rc |= put(root, "usr/share/doc/demo-tool/README", "demo-tool documentation\n", 0644);
	rc |= put(root, "usr/lib/libdemo.so.1", lib, 0644);
	snprintf(status, sizeof(status),
		 "Package: base-files\nStatus: install ok installed\nPriority: required\n"
		 "Architecture: amd64\nVersion: 12.4+deb12u5\nMaintainer: demo\n"
		 "Description: Debian base system miscellaneous files\n\n"
		 "Package: demo-tool\nStatus: install ok installed\nPriority: optional\n"
		 "Architecture: amd64\nSource: demo\nVersion: 1.0-1\nMaintainer: demo\n"
		 "Conffiles:\n /etc/demo-tool.conf %s\n"
		 "Description: a tool the demo upgrades\n\n"
		 "Package: libdemo1\nStatus: install ok installed\nPriority: optional\n"
		 "Architecture: amd64\nSource: libdemo\nVersion: 1.0-1\nMaintainer: demo\n"
		 "Description: a library the advisory does not touch\n\n",
		 m_conf);
	rc |= put(root, "var/lib/dpkg/status", status, 0644);
	rc |= put(root, "var/lib/dpkg/info/demo-tool.list",
		  "/.\n/usr\n/usr/bin\n/usr/bin/demo-tool\n/etc\n/etc/demo-tool.conf\n/usr/share\n"
		  "/usr/share/doc\n/usr/share/doc/demo-tool\n/usr/share/doc/demo-tool/README\n",
		  0644);
	{
		char m_readme[33];

		md5_of("demo-tool documentation\n", m_readme);
		snprintf(md5s, sizeof(md5s),
			 "%s  usr/bin/demo-tool\n%s  usr/share/doc/demo-tool/README\n", m_tool,
			 m_readme);
	}
	rc |= put(root, "var/lib/dpkg/info/demo-tool.md5sums", md5s, 0644);
	rc |= put(root, "var/lib/dpkg/info/demo-tool.conffiles", "/etc/demo-tool.conf\n", 0644);
	rc |= put(root, "var/lib/dpkg/info/libdemo1:amd64.list",
		  "/.\n/usr\n/usr/lib\n/usr/lib/libdemo.so.1\n", 0644);
	snprintf(md5s, sizeof(md5s), "%s  usr/lib/libdemo.so.1\n", m_lib);
	rc |= put(root, "var/lib/dpkg/info/libdemo1:amd64.md5sums", md5s, 0644);
	return rc ? PG_EIO : 0;
}

static int
make_deb(const char *dir, char *out, size_t outlen)
{
	char stage[4096];
	int rc = 0;

	snprintf(stage, sizeof(stage), "%s/demo-tool-1.0-2", dir);
	rc |= put(stage, "DEBIAN/control",
		  "Package: demo-tool\nVersion: 1.0-2\nArchitecture: amd64\nSource: demo\n"
		  "Maintainer: demo\nPriority: optional\n"
		  "Description: a tool the demo upgrades\n fixed version of the demo tool\n",
		  0644);
	rc |= put(stage, "DEBIAN/conffiles", "/etc/demo-tool.conf\n", 0644);
	rc |= put(stage, "usr/bin/demo-tool", tool_v2, 0755);
	rc |= put(stage, "etc/demo-tool.conf", conf_v2, 0644);
	rc |=
	    put(stage, "usr/share/doc/demo-tool/README", "demo-tool documentation, fixed\n", 0644);
	if (rc)
		return PG_EIO;
	snprintf(out, outlen, "%s/demo-tool_1.0-2_amd64.deb", dir);
	{
		char *argv[] = {"dpkg-deb", "--root-owner-group", "-Zgzip", "--build", stage, out,
				NULL};

		return run(argv, NULL);
	}
}

/* Copies a filesystem image into a disk at 1 MiB, leaving zero blocks as holes. */
static int
pack_disk(const char *fsimg, const char *disk, uint64_t fs_size)
{
	char *sf[] = {"sfdisk", "-q", (char *)disk, NULL};
	char script[128];
	uint8_t buf[65536];
	int in = -1, out = -1, rc = 0;
	ssize_t n;
	off_t off = 0;

	out = open(disk, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0 || ftruncate(out, (off_t)(fs_size + (2u << 20))) < 0)
		return pg_error(PG_EIO, "demo", "create '%s'", disk);
	close(out);
	snprintf(script, sizeof(script), "label: dos\nstart=2048, size=%llu, type=83\n",
		 (unsigned long long)(fs_size / 512));
	rc = run(sf, script);
	if (rc < 0)
		return rc;
	in = open(fsimg, O_RDONLY);
	out = open(disk, O_WRONLY);
	if (in < 0 || out < 0) {
		rc = PG_EIO;
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		int zero = 1;

		for (ssize_t i = 0; i < n && zero; i++)
			zero = !buf[i];
		if (!zero && pwrite(out, buf, (size_t)n, off + (1 << 20)) != n) {
			rc = PG_EIO;
			goto out;
		}
		off += n;
	}
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

int
pg_image_demo(const char *workdir, int keep)
{
	char dir[4096], root[4200], fsimg[4200], disk[4200], deb[4200], osv[4200], db[4200],
	    overlay[4200];
	struct pg_store st = {0};
	json_t *sum = NULL, *rows = NULL, *res = NULL;
	double t0 = now_s(), t;
	size_t nadv = 0;
	mode_t old_umask;
	int rc;

	if (workdir) {
		snprintf(dir, sizeof(dir), "%s", workdir);
		if (pg_mkdir_p(dir, 0755) < 0)
			return pg_error(PG_EIO, "demo", "cannot create '%s'", dir);
	} else {
		snprintf(dir, sizeof(dir), "%s/payguard-image-demo.XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(dir))
			return pg_error(PG_EIO, "demo", "mkdtemp: %s", strerror(errno));
	}
	/* The generated root, disk and .deb are an OS image's contents, not
	 * secrets: the usual 022, not payguard's 077 (dpkg-deb refuses a 0700
	 * DEBIAN directory, and the image's files should carry normal modes).
	 * The store is made 0600 by pg_store_open all the same. */
	old_umask = umask(022);
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(fsimg, sizeof(fsimg), "%s/root.ext4", dir);
	snprintf(disk, sizeof(disk), "%s/demo-disk.img", dir);
	snprintf(osv, sizeof(osv), "%s/DEBIAN-DEMO-2026-0001.json", dir);
	snprintf(db, sizeof(db), "%s/payguard.db", dir);
	snprintf(overlay, sizeof(overlay), "%s/demo-disk.upgrade.qcow2", dir);
	unlink(db);
	unlink(overlay);
	unlink(disk);

	printf("== payguard image demo (seed 1: offline updating of VM images) in %s\n", dir);
	PG_TRY_GOTO(make_root(root), out, "demo", "root");
	{
		char *mk[] = {"mkfs.ext4", "-q", "-F",	"-L",  "demo-root",
			      "-d",	   root, fsimg, "32M", NULL};

		PG_TRY_GOTO(run(mk, NULL), out, "demo", "mkfs");
	}
	PG_TRY_GOTO(pack_disk(fsimg, disk, 32u << 20), out, "demo", "disk");
	unlink(fsimg);
	printf("1. built %s: MBR disk, ext4 (mkfs.ext4 -d) with a dpkg database\n", disk);

	PG_TRY_GOTO(pg_store_open(&st, db), out, "demo", "store");
	PG_TRY_GOTO(pg_image_db_open(&st), out, "demo", "migrate");
	t = now_s();
	PG_TRY_GOTO(pg_image_scan(&st, disk, &sum), out, "demo", "scan");
	printf("2. scanned in %.0f ms: image id %lld, %s, %lld partition(s), %lld packages, os "
	       "\"%s\"\n",
	       (now_s() - t) * 1e3, (long long)json_integer_value(json_object_get(sum, "id")),
	       json_string_value(json_object_get(sum, "format")),
	       (long long)json_integer_value(json_object_get(sum, "partitions")),
	       (long long)json_integer_value(json_object_get(sum, "packages")),
	       json_string_value(json_object_get(sum, "os")));
	json_decref(sum);
	sum = NULL;
	PG_TRY_GOTO(pgi_image_query(
			&st, "SELECT path, version, banner FROM image_kernel WHERE image_id = 1",
			NULL, &rows),
		    out, "demo", "kernels");
	for (size_t i = 0; i < json_array_size(rows); i++)
		printf("   kernel %s (%s)\n",
		       json_string_value(json_object_get(json_array_get(rows, i), "path")),
		       json_string_value(json_object_get(json_array_get(rows, i), "banner")));
	json_decref(rows);
	rows = NULL;

	PG_TRY_GOTO(
	    put(dir, "DEBIAN-DEMO-2026-0001.json",
		"{\"schema_version\": \"1.6.0\", \"id\": \"DEBIAN-DEMO-2026-0001\",\n"
		" \"modified\": \"2026-11-25T00:00:00Z\",\n"
		" \"summary\": \"demo: remote crash in demo-tool's parser\",\n"
		" \"affected\": [{\"package\": {\"ecosystem\": \"Debian:12\", \"name\": "
		"\"demo\"},\n"
		"   \"ranges\": [{\"type\": \"ECOSYSTEM\", \"events\": [{\"introduced\": \"0\"},"
		" {\"fixed\": \"1.0-2\"}]}]}]}\n",
		0644),
	    out, "demo", "osv");
	PG_TRY_GOTO(pg_image_advisories_import(&st, osv, &nadv), out, "demo", "import");
	printf("3. imported %zu OSV advisory (Debian:12, source package demo, fixed in 1.0-2)\n",
	       nadv);
	PG_TRY_GOTO(pg_image_findings(&st, "1", &rows), out, "demo", "findings");
	printf("4. findings: %zu\n", json_array_size(rows));
	for (size_t i = 0; i < json_array_size(rows); i++) {
		json_t *r = json_array_get(rows, i);

		printf("   %s %s (source %s) is affected by %s, fixed in %s\n",
		       json_string_value(json_object_get(r, "package")),
		       json_string_value(json_object_get(r, "version")),
		       json_string_value(json_object_get(r, "source")),
		       json_string_value(json_object_get(r, "advisory")),
		       json_string_value(json_object_get(r, "fixed")));
	}
	json_decref(rows);
	rows = NULL;

	PG_TRY_GOTO(make_deb(dir, deb, sizeof(deb)), out, "demo", "deb");
	printf("5. built %s with dpkg-deb --build\n", deb);
	{
		const char *debs[1] = {deb};
		struct pg_upgrade_opts o = {
		    .image = "1", .debs = debs, .ndebs = 1, .output = overlay};
		json_t *pk;

		fflush(stdout);
		t = now_s();
		PG_TRY_GOTO(pg_image_upgrade(&st, &o, &res), out, "demo", "upgrade");
		pk = json_array_get(json_object_get(res, "packages"), 0);
		printf("6. upgraded offline in %.0f ms: %s %s -> %s (%s), overlay %s\n",
		       (now_s() - t) * 1e3, json_string_value(json_object_get(pk, "package")),
		       json_string_value(json_object_get(pk, "from")),
		       json_string_value(json_object_get(pk, "to")),
		       json_string_value(json_object_get(pk, "state")), overlay);
	}
	PG_TRY_GOTO(pg_image_scan(&st, overlay, &sum), out, "demo", "rescan");
	{
		char id[32];

		snprintf(id, sizeof(id), "%lld",
			 (long long)json_integer_value(json_object_get(sum, "id")));
		PG_TRY_GOTO(pg_image_findings(&st, id, &rows), out, "demo", "findings");
		printf("7. rescanned the overlay (qcow2, backing file %s): %zu finding(s) left\n",
		       disk, json_array_size(rows));
		json_decref(rows);
		rows = NULL;
		PG_TRY_GOTO(pg_image_findings(&st, "1", &rows), out, "demo", "findings");
		printf("   the original image is unchanged and still has %zu finding(s)\n",
		       json_array_size(rows));
	}
	if (keep)
		printf("done in %.1f s; files and store (%s) kept in %s\n", now_s() - t0, db, dir);
	else
		printf("done in %.1f s (temporary files removed; --dir DIR keeps them)\n",
		       now_s() - t0);
	rc = 0;
out:
	umask(old_umask);
	json_decref(sum);
	json_decref(rows);
	json_decref(res);
	pg_store_close(&st);
	if (!keep) {
		char *rm[] = {"rm", "-rf", dir, NULL};

		run(rm, NULL);
	}
	return rc;
}
