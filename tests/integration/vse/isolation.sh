#!/usr/bin/env bash
# Isolation of VSE address spaces (seed 6, issue 3's isolation acceptance):
#  - a VSE cannot open another VSE's persistent-memory file nor its
#    /proc/<pid>/mem (openat answers EACCES under its seccomp filter);
#  - exceeding the arena gives status word 6A84, not a crash;
#  - a system call outside the allow-list (socket) kills only that VSE
#    (SIGSYS), the hypervisor restarts it with its persistent memory, and the
#    other VSE keeps running under the same pid; a write to a guard page and
#    an outside SIGKILL are survived the same way.
# Uses the test-only instructions (CLA 80 INS EE) that exist only in builds
# with BUILD_TESTING and only act when PAYGUARD_VSE_TEST_HOOKS=1.
. "$(dirname "$0")/common.sh"
export PAYGUARD_VSE_TEST_HOOKS=1
start_hv

"$pg" vse create --name a --arena 256K --pmem 16K --applet test --master $MASTER --link t1 >/dev/null
"$pg" vse create --name b --arena 256K --pmem 16K --applet test --master $MASTER --link swp >/dev/null
"$pg" vse create --name c --arena 64K --pmem 1M --master $MASTER --link ccid >/dev/null
[ "$(sw a $SEL_ISD 80E2000005AA0102A1A2)" = 9000 ] || fail "store into a"
[ "$(sw b $SEL_ISD 80E2000005BB0102B1B2)" = 9000 ] || fail "store into b"
pid_b=$(field b pid)

hexpath() { printf '%s' "$1" | od -v -An -tx1 | tr -d ' \n'; }
lc() { printf '%02X' $(( ${#1} / 2 )); }

# 1. a opens b's persistent memory file / b's memory: refused with EACCES (0D)
p=$(hexpath "$PAYGUARD_DATA_DIR/vse/b/pmem")
r=$(resp a 80EE0100"$(lc "$p")""$p")
[ "$r" = 0D6982 ] || fail "a opening b's pmem answered '$r', want 0D6982 (EACCES)"
p=$(hexpath "/proc/$pid_b/mem")
r=$(resp a 80EE0100"$(lc "$p")""$p")
[ "$r" = 0D6982 ] || fail "a opening /proc/$pid_b/mem answered '$r'"
# Outside seccomp too: each VSE runs under its own uid, so uid a cannot read b's file
[ "$(stat -c %a "$PAYGUARD_DATA_DIR/vse/b/pmem")" = 600 ] || fail "pmem mode"
if [ "$(id -u)" = 0 ]; then
	uid_a=$(awk '/^Uid:/{print $2}' "/proc/$(field a pid)/status")
	uid_b=$(awk '/^Uid:/{print $2}' "/proc/$pid_b/status")
	[ "$uid_a" != 0 ] && [ "$uid_a" != "$uid_b" ] || fail "VSE uids $uid_a / $uid_b"
fi

# 2. arena exhaustion in c: 6A84, and c keeps running under the same pid
pid_c=$(field c pid)
last=""
for i in $(seq 1 400); do
	data=$(printf '%04X' $i)FA$(head -c 250 /dev/zero | od -v -An -tx1 | tr -d ' \n')
	last=$(sw c $SEL_ISD 80E20000FD"$data")
	[ "$last" = 9000 ] || break
done
[ "$last" = 6A84 ] || fail "arena exhaustion answered '$last' after $i DGIs, want 6A84"
[ "$(field c pid)" = "$pid_c" ] && [ "$(field c restarts)" = 0 ] || fail "c crashed on a full arena"
[ "$(sw c $SEL_ISD 80CA9F7F00)" = 9000 ] || fail "c no longer answers after 6A84"
echo "arena of 64K full after $((i - 1)) DGIs of 250 bytes: 6A84"

# 3. a forbidden syscall kills only a; the hypervisor restarts it, memory intact
pid_a=$(field a pid)
"$pg" vse apdu a 80EE020000 >/dev/null 2>&1 && fail "a answered after a forbidden syscall"
wait_restarted a "$pid_a"
grep -q "signal 31" <<<"$(field a last_exit)" || fail "a ended by '$(field a last_exit)', want SIGSYS"
[ "$(resp a $SEL_ISD 80CAAA0100)" = A1A29000 ] || fail "a lost its persistent memory"
[ "$(field b pid)" = "$pid_b" ] && [ "$(field b restarts)" = 0 ] || fail "b was disturbed"
[ "$(resp b $SEL_ISD 80CABB0100)" = B1B29000 ] || fail "b lost its data"

# 4. a write into the guard page before the arena: a dies, is restarted
pid_a=$(field a pid)
"$pg" vse apdu a 80EE030000 >/dev/null 2>&1 && fail "a survived a guard-page write"
wait_restarted a "$pid_a"
[ "$(field a restarts)" = 2 ] || fail "restart count $(field a restarts)"
# 5. killed from outside
pid_a=$(field a pid)
kill -9 "$pid_a"
wait_restarted a "$pid_a"
[ "$(resp a $SEL_ISD 80CAAA0100)" = A1A29000 ] || fail "a lost its persistent memory after SIGKILL"
[ "$(field b pid)" = "$pid_b" ] || fail "b was disturbed"

# 6. the test instructions do nothing without PAYGUARD_VSE_TEST_HOOKS=1
stop_hv
unset PAYGUARD_VSE_TEST_HOOKS
start_hv
for _ in $(seq 1 50); do [ "$(field a state)" = running ] && break; sleep 0.1; done
[ "$(sw a $SEL_ISD 80EE020000)" = 6D00 ] || fail "test hook active without the variable"
echo "vse isolation: ok"
