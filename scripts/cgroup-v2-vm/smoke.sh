#!/usr/bin/env bash
# A small real cgroup v2 check, meant to run in the guest:
#
#   scripts/cgroup-v2-vm/run.sh scripts/cgroup-v2-vm/smoke.sh
#
# Beneath its own cgroup it creates a cgroup with memory.max 32M and runs a memory hog there,
# which must be OOM-killed; then one with pids.max 10 and a fork burst, which must be capped.
# It removes what it creates and exits 0 only if every check holds.
set -euo pipefail

cgroot=/sys/fs/cgroup
failures=0

check() {
  local what=$1
  shift
  if "$@"; then
    echo "PASS $what"
  else
    echo "FAIL $what"
    failures=$((failures + 1))
  fi
}

# Prints the value of KEY in a flat-keyed file such as memory.events.
field() {
  awk -v key="$2" '$1 == key { print $2 }' "$1"
}

# Removes a cgroup once its processes are gone; cgroup.kill does not wait for them to exit.
remove_cgroup() {
  local cg=$1
  [[ -d $cg ]] || return 0
  echo 1 >"$cg/cgroup.kill"
  local _
  for _ in $(seq 100); do
    grep -qx 'populated 0' "$cg/cgroup.events" && break
    sleep 0.05
  done
  rmdir "$cg"
}

if [[ $(stat -f -c %T "$cgroot") != cgroup2fs ]]; then
  echo "smoke.sh: $cgroot is not cgroup v2; run it through scripts/cgroup-v2-vm/run.sh" >&2
  exit 1
fi

# Our own cgroup, from the single "0::" line a pure cgroup v2 system has.
own="$cgroot$(sed -n 's/^0:://p' /proc/self/cgroup)"
[[ $own != "$cgroot/" ]] || own=$cgroot
echo "own cgroup: $own"
check "own cgroup offers memory and pids" \
  grep -qwE 'memory.*pids|pids.*memory' "$own/cgroup.controllers"

# cgroup v2 lets a cgroup hand controllers to its children only while it has no processes of
# its own, so this script first moves itself into a leaf beneath its cgroup (a delegated
# systemd unit must do the same) and moves back at the end.
leaf="$own/smoke-self"
memory_cg="$own/smoke-memory"
pids_cg="$own/smoke-pids"
cleanup() {
  remove_cgroup "$memory_cg" || true
  remove_cgroup "$pids_cg" || true
  echo "-memory -pids" >"$own/cgroup.subtree_control" 2>/dev/null || true
  echo $$ >"$own/cgroup.procs" 2>/dev/null || true
  rmdir "$leaf" 2>/dev/null || true
}
trap cleanup EXIT

mkdir "$leaf"
echo $$ >"$leaf/cgroup.procs"
echo "+memory +pids" >"$own/cgroup.subtree_control"
check "own subtree_control enables memory and pids" \
  grep -qwE 'memory.*pids|pids.*memory' "$own/cgroup.subtree_control"

# Memory: dd's 64 MiB block buffer is touched in full by its first read, twice the limit.
mkdir "$memory_cg"
echo 32M >"$memory_cg/memory.max"
[[ ! -e $memory_cg/memory.swap.max ]] || echo 0 >"$memory_cg/memory.swap.max"
# The braces carry the redirection, so bash's own "Killed" report goes to /dev/null as well.
hog_status=0
{
  sh -c 'echo $$ >"$1/cgroup.procs" && exec dd if=/dev/zero of=/dev/null bs=64M count=1 status=none' \
    hog "$memory_cg"
} 2>/dev/null || hog_status=$?
oom_kills=$(field "$memory_cg/memory.events" oom_kill)
echo "memory hog exited with $hog_status; memory.events oom_kill $oom_kills"
check "memory.max reads back 32M" test "$(cat "$memory_cg/memory.max")" = $((32 * 1024 * 1024))
check "memory hog was killed by SIGKILL" test "$hog_status" = 137
check "memory.events counts an oom_kill" test "${oom_kills:-0}" -ge 1
remove_cgroup "$memory_cg"
check "memory cgroup removed" test ! -e "$memory_cg"

# Pids: a burst of 30 sleepers against pids.max 10. dash stops at the first refused fork
# (bash would retry for many seconds); the kernel counts each refusal in pids.events.
mkdir "$pids_cg"
echo 10 >"$pids_cg/pids.max"
burst='echo $$ >"$1/cgroup.procs" || exit 99
i=0
while [ $i -lt 30 ]; do sleep 30 & i=$((i + 1)); done'
burst_status=0
dash -c "$burst" burst "$pids_cg" 2>/dev/null || burst_status=$?
tasks=$(wc -l <"$pids_cg/cgroup.procs")
refused=$(field "$pids_cg/pids.events" max)
echo "fork burst exited with $burst_status; $tasks tasks left; pids.events max $refused"
check "fork burst was stopped by a refused fork" test "$burst_status" != 0 -a "$burst_status" != 99
check "no more than pids.max tasks in the cgroup" test "$tasks" -le 10
check "pids.events counts refused forks" test "${refused:-0}" -ge 1
remove_cgroup "$pids_cg"
check "pids cgroup removed" test ! -e "$pids_cg"

if ((failures > 0)); then
  echo "smoke.sh: $failures check(s) failed"
  exit 1
fi
echo "smoke.sh: all checks passed"
