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
"$pg" vse create --name c --arena 52K --pmem 16K --master $MASTER --link ccid >/dev/null
[ "$(sw a --scp03 --master $MASTER "$(install_pin 000A)")" = 9000 ] || fail "install into a"
[ "$(sw b --scp03 --master $MASTER "$(install_pin 000B)")" = 9000 ] || fail "install into b"
[ "$(sw a "$(select_pin 000B)")" = 6A82 ] || fail "a sees b's applet"
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

# 2. arena exhaustion in c (52 KiB: the card and two PIN instances): INSTALLs in
#    one SCP03 session until 6A84, and c keeps running under the same pid
pid_c=$(field c pid)
apdus=()
for i in $(seq 1 12); do apdus+=("$(install_pin "$(printf '%04X' "$i")")"); done
"$pg" vse apdu c --scp03 --master $MASTER "${apdus[@]}" >"$work/c.txt" || fail "installs into c"
n_ok=$(grep -c '^< 009000$' "$work/c.txt" || true)
grep -q '^< 6A84$' "$work/c.txt" || { cat "$work/c.txt" >&2; fail "no 6A84 from a full arena"; }
[ "$(field c pid)" = "$pid_c" ] && [ "$(field c restarts)" = 0 ] || fail "c crashed on a full arena"
[ "$(sw c $SEL_ISD 80CA9F7F00)" = 9000 ] || fail "c no longer answers after 6A84"
# The same request with a 256K arena installs more: it was the arena that ran out.
"$pg" vse create --name c2 --arena 256K --pmem 16K --master $MASTER --link ccid >/dev/null
"$pg" vse apdu c2 --scp03 --master $MASTER "${apdus[@]}" >"$work/c2.txt" || fail "installs into c2"
n_ok2=$(grep -c '^< 009000$' "$work/c2.txt" || true)
[ "$n_ok2" -gt "$n_ok" ] || fail "a 256K arena installed $n_ok2, the 52K one $n_ok: not the arena's limit"
echo "arena of 52K full after $n_ok PIN instances: 6A84 (256K: $n_ok2)"

# 3. a forbidden syscall kills only a; the hypervisor restarts it, memory intact
pid_a=$(field a pid)
"$pg" vse apdu a 80EE020000 >/dev/null 2>&1 && fail "a answered after a forbidden syscall"
wait_restarted a "$pid_a"
grep -q "signal 31" <<<"$(field a last_exit)" || fail "a ended by '$(field a last_exit)', want SIGSYS"
[ "$(sw a "$(select_pin 000A)")" = 9000 ] || fail "a lost its persistent memory"
[ "$(field b pid)" = "$pid_b" ] && [ "$(field b restarts)" = 0 ] || fail "b was disturbed"
[ "$(sw b "$(select_pin 000B)")" = 9000 ] || fail "b lost its data"

# 4. a write into the guard page before the arena: a dies, is restarted
pid_a=$(field a pid)
"$pg" vse apdu a 80EE030000 >/dev/null 2>&1 && fail "a survived a guard-page write"
wait_restarted a "$pid_a"
[ "$(field a restarts)" = 2 ] || fail "restart count $(field a restarts)"
# 5. killed from outside
pid_a=$(field a pid)
kill -9 "$pid_a"
wait_restarted a "$pid_a"
[ "$(sw a "$(select_pin 000A)")" = 9000 ] || fail "a lost its persistent memory after SIGKILL"
[ "$(field b pid)" = "$pid_b" ] || fail "b was disturbed"

# 6. the test instructions do nothing without PAYGUARD_VSE_TEST_HOOKS=1
stop_hv
unset PAYGUARD_VSE_TEST_HOOKS
start_hv
for _ in $(seq 1 50); do [ "$(field a state)" = running ] && break; sleep 0.1; done
[ "$(sw a $SEL_ISD 80EE020000)" = 6D00 ] || fail "test hook active without the variable"
echo "vse isolation: ok"
