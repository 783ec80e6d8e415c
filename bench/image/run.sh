#!/usr/bin/env bash
# Benchmark (seed 1): on the same Debian 12 minbase image (debootstrap,
# mkfs.ext4 -d, GPT), in one run:
#   inventory   payguard image scan        vs virt-inspector
#   upgrade     payguard image upgrade     vs virt-customize --no-network
#               (3 packages)                  --upload ... --run-command 'dpkg -i ...'
# libguestfs (the peer) runs its appliance under software emulation (TCG), as
# the issue asks; this script installs libguestfs-tools (and a kernel for the
# appliance) itself: the test suite does not need them. Each side runs once
# untimed first (libguestfs builds its appliance then, payguard hashes the
# image), then RUNS rounds in which payguard and libguestfs take turns, so
# both see the same load on a shared machine. Every round's times, the
# medians, the ratios, the date, the load average, the commit and the peer's
# configuration are written to bench/results/image-DATE.json (issue 18 item
# 5: docs quote result files only).
# usage: bench/image/run.sh [RUNS]   (default 5; PG_BENCH_GUESTFS_RUNS=N runs
#        libguestfs in the first N rounds only, default all: each of its runs
#        takes about a minute under TCG)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
gruns=${PG_BENCH_GUESTFS_RUNS:-$runs}
# Software emulation (TCG) as the issue asks; nested KVM here also hangs.
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg DEBIAN_FRONTEND=noninteractive
PATH=$PATH:/usr/sbin:/sbin
if ! command -v virt-inspector >/dev/null || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	echo "installing libguestfs-tools and a kernel for its appliance ..." >&2
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get install -y -q --no-install-recommends libguestfs-tools linux-image-amd64 >/dev/null
fi
build=${PG_BENCH_BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target payguard >/dev/null
P=$(pwd)/$build/src/payguard
root=$(bash scripts/image-rootfs.sh "$(pwd)/$build/image-cache")
work=$(mktemp -d "${TMPDIR:-/tmp}/pg-image-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data

mkfs.ext4 -q -F -L root -d "$root" "$work/fs" 600M
truncate -s 700M "$work/disk.img"
printf 'label: gpt\nstart=2048, size=1228800, type=L, name=root\n' | sfdisk -q "$work/disk.img"
dd if="$work/fs" of="$work/disk.img" bs=1M seek=1 conv=sparse,notrunc status=none
rm -f "$work/fs"
mkdir "$work/debs"
for p in hostname mawk; do /usr/bin/python3 tests/integration/image/mkdeb.py "$root" $p "$work/debs" >/dev/null; done
/usr/bin/python3 tests/integration/image/mkdeb.py "$root" ncurses-base "$work/debs" --change-conffile /etc/terminfo/README >/dev/null
debs=("$work"/debs/*.deb)
npk=$(dpkg-query --admindir="$root/var/lib/dpkg" -W | wc -l)

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

args=(); for d in "${debs[@]}"; do args+=(--deb "$d"); done
upload=(); for d in "${debs[@]}"; do upload+=(--upload "$d:/tmp/"); done
pg_inv() { "$P" image scan "$work/disk.img" >/dev/null 2>&1; }
pg_up() { "$P" image upgrade --output "$work/ov$1.qcow2" "${args[@]}" "$work/disk.img" >/dev/null 2>&1; rm -f "$work/ov$1.qcow2"; }
g_inv() {
	virt-inspector --format=raw -a "$work/disk.img" >"$work/inspector.xml" 2>"$work/inspector.err" ||
		{ cat "$work/inspector.err" >&2; exit 1; }
}
g_up() {
	qemu-img create -q -f qcow2 -b "$work/disk.img" -F raw "$work/g$1.qcow2"
	t=$(date +%s%N)
	virt-customize --no-network -a "$work/g$1.qcow2" "${upload[@]}" \
		--run-command 'dpkg -i /tmp/*.deb' >"$work/customize.log" 2>&1 || { tail -20 "$work/customize.log" >&2; exit 1; }
	ms "$t" >>"$work/g_up"
	rm -f "$work/g$1.qcow2"
}
# untimed first runs: payguard hashes the image on its first scan, libguestfs
# builds its appliance (supermin) on its first launch
pg_inv
[ "$gruns" -gt 0 ] && g_inv
cat /proc/loadavg >"$work/load0"
echo "load average at the start: $(cut -d' ' -f1-3 "$work/load0")" >&2
: >"$work/pg_inv"; : >"$work/pg_up"; : >"$work/g_inv"; : >"$work/g_up"
for i in $(seq 1 "$runs"); do
	t=$(date +%s%N); pg_inv; ms "$t" >>"$work/pg_inv"
	if [ "$i" -le "$gruns" ]; then t=$(date +%s%N); g_inv; ms "$t" >>"$work/g_inv"; fi
	t=$(date +%s%N); pg_up "$i"; ms "$t" >>"$work/pg_up"
	if [ "$i" -le "$gruns" ]; then g_up "$i"; fi
	echo "  round $i: scan $(tail -1 "$work/pg_inv") ms, upgrade $(tail -1 "$work/pg_up") ms; libguestfs:" \
		"$(tail -1 "$work/g_inv" 2>/dev/null) / $(tail -1 "$work/g_up" 2>/dev/null) ms" >&2
done
"$P" image show --json "$work/disk.img" | /usr/bin/python3 -c '
import json, sys; d = json.load(sys.stdin); assert len(d["packages"]) == int(sys.argv[1]), len(d["packages"])' "$npk"
gpk=$(grep -c "<application>" "$work/inspector.xml" || true)
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
peercfg="libguestfs-tools $(ver libguestfs-tools), qemu-system-x86 $(ver qemu-system-x86), backend direct, force_tcg (software emulation), appliance kernel $(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | sort -V | tail -1), default appliance memory and vCPUs"
mkdir -p bench/results
/usr/bin/python3 - "$work" "$npk" ${#debs[@]} "$gpk" "$(git rev-parse --short HEAD)" "$peercfg" <<'PY'
import json, os, statistics, sys, time
work, npk, ndebs, gpk, commit, peercfg = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                          sys.argv[5], sys.argv[6])
def runs(name):
    return [int(x) for x in open(os.path.join(work, name)).read().split()]
res = {"bench": "image", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
       "cpus": os.cpu_count(),
       "loadavg_start": [float(x) for x in open(os.path.join(work, "load0")).read().split()[:3]],
       "loadavg_end": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
       "image": {"packages": npk, "disk_mib": 700, "layout": "GPT raw, ext4, Debian 12 minbase",
                 "packages_upgraded": ndebs, "inspector_applications": gpk},
       "config": {"peer": peercfg, "payguard": "release build, the image's hash reused after the untimed first scan",
                  "order": "one untimed run of each side, then rounds of payguard and libguestfs in turn"}}
print("\nimage: Debian 12 minbase (%d packages), 700 MiB GPT raw, ext4; %d packages upgraded" % (npk, ndebs))
print("%-28s %12s %16s %8s" % ("task (median)", "payguard", "libguestfs", "ratio"))
for task, a, b, label in (("inventory", "pg_inv", "g_inv", "inventory (scan/inspector)"),
                          ("upgrade", "pg_up", "g_up", "upgrade (upgrade/customize)")):
    p, g = runs(a), runs(b)
    t = {"payguard_ms_runs": p, "libguestfs_ms_runs": g, "payguard_ms_median": statistics.median(p)}
    if g:
        t["libguestfs_ms_median"] = statistics.median(g)
        t["ratio_libguestfs_over_payguard"] = t["libguestfs_ms_median"] / max(1, t["payguard_ms_median"])
        print("%-28s %10.0f ms %14.0f ms %7.0fx" % (label, t["payguard_ms_median"], t["libguestfs_ms_median"],
                                                  t["ratio_libguestfs_over_payguard"]))
    else:
        print("%-28s %10.0f ms %16s" % (label, t["payguard_ms_median"], "-"))
    res[task] = t
res["runs"] = len(runs("pg_inv"))
res["libguestfs_runs"] = len(runs("g_inv"))
print("runs: payguard %d, libguestfs %d; virt-inspector listed %d applications; peer: %s"
      % (res["runs"], res["libguestfs_runs"], gpk, peercfg))
print("load average %s at the start, %s at the end" % (res["loadavg_start"], res["loadavg_end"]))
path = "bench/results/image-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(res, open(path, "w"), indent=1)
print("written to " + path)
PY
