#!/usr/bin/env bash
# Benchmark (seed 1): on the same Debian 12 minbase image (debootstrap,
# mkfs.ext4 -d, GPT), in one run:
#   inventory   payguard image scan        vs virt-inspector
#   upgrade     payguard image upgrade     vs virt-customize --no-network
#               (3 packages)                  --upload ... --run-command 'dpkg -i ...'
# and prints medians and ratios. libguestfs runs its appliance under software
# emulation here (no /dev/kvm); this script installs libguestfs-tools (and a
# kernel for the appliance) itself: the test suite does not need them.
# usage: bench/image/run.sh [RUNS]   (RUNS for payguard, default 7; libguestfs 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7} gruns=${PG_BENCH_GUESTFS_RUNS:-3}
# Software emulation (TCG) as the issue asks; nested KVM here also hangs.
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg DEBIAN_FRONTEND=noninteractive
PATH=$PATH:/usr/sbin:/sbin
if ! command -v virt-inspector >/dev/null || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	echo "installing libguestfs-tools and a kernel for its appliance ..." >&2
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get install -y -q libguestfs-tools linux-image-amd64 >/dev/null
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
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }

: >"$work/pg_inv"
for _ in $(seq 1 "$runs"); do
	t=$(date +%s%N); "$P" image scan "$work/disk.img" >/dev/null 2>&1; ms "$t" >>"$work/pg_inv"
done
"$P" image show --json "$work/disk.img" | /usr/bin/python3 -c '
import json, sys; d = json.load(sys.stdin); assert len(d["packages"]) == int(sys.argv[1]), len(d["packages"])' "$npk"
: >"$work/pg_up"
args=(); for d in "${debs[@]}"; do args+=(--deb "$d"); done
for i in $(seq 1 "$runs"); do
	t=$(date +%s%N); "$P" image upgrade --output "$work/ov$i.qcow2" "${args[@]}" "$work/disk.img" >/dev/null 2>&1
	ms "$t" >>"$work/pg_up"; rm -f "$work/ov$i.qcow2"
done

: >"$work/g_inv"
for _ in $(seq 1 "$gruns"); do
	t=$(date +%s%N); virt-inspector --format=raw -a "$work/disk.img" >"$work/inspector.xml" 2>"$work/inspector.err" \
		|| { cat "$work/inspector.err" >&2; exit 1; }
	ms "$t" >>"$work/g_inv"
done
gpk=$(grep -c "<application>" "$work/inspector.xml" || true)
: >"$work/g_up"
upload=(); for d in "${debs[@]}"; do upload+=(--upload "$d:/tmp/"); done
for i in $(seq 1 "$gruns"); do
	qemu-img create -q -f qcow2 -b "$work/disk.img" -F raw "$work/g$i.qcow2"
	t=$(date +%s%N)
	virt-customize --no-network -a "$work/g$i.qcow2" "${upload[@]}" \
		--run-command 'dpkg -i /tmp/*.deb' >"$work/customize.log" 2>&1 || { tail -20 "$work/customize.log" >&2; exit 1; }
	ms "$t" >>"$work/g_up"; rm -f "$work/g$i.qcow2"
done

pi=$(median <"$work/pg_inv") pu=$(median <"$work/pg_up") gi=$(median <"$work/g_inv") gu=$(median <"$work/g_up")
printf '\nimage: Debian 12 minbase (%d packages), 700 MiB GPT raw, ext4; %d packages upgraded\n' "$npk" ${#debs[@]}
printf '%-28s %12s %16s %8s\n' "task (median)" "payguard" "libguestfs" "ratio"
printf '%-28s %10d ms %14d ms %7.0fx\n' "inventory (scan/inspector)" "$pi" "$gi" "$(awk -v a="$gi" -v b="$pi" 'BEGIN {print a / (b ? b : 1)}')"
printf '%-28s %10d ms %14d ms %7.0fx\n' "upgrade (upgrade/customize)" "$pu" "$gu" "$(awk -v a="$gu" -v b="$pu" 'BEGIN {print a / (b ? b : 1)}')"
printf 'runs: payguard %d, libguestfs %d; virt-inspector listed %d applications\n' "$runs" "$gruns" "$gpk"
