#!/usr/bin/env bash
# Runs every test of Confine on this machine: the xunit suite (real namespaces, cgroups and
# seccomp, as root and, through setpriv, as an unprivileged user); the tests of the confine
# command again on the published NativeAOT command; the cgroup v2 tests again in a
# QEMU guest with a real cgroup v2 hierarchy, since this host's cgroup v2 mount has no
# controllers; then the benchmark. Expects scripts/setup.sh to have run.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
dotnet test tests/Confine.Tests -c Release --no-build -nologo 2>&1 | tee "$log" || status=$?

# One plain summary line for whoever reads the end of the log.
summary=$(grep -E '^(Passed|Failed)!' "$log" | tail -n 1 || true)
passed=$(sed -nE 's/.*Passed: +([0-9]+).*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.*Failed: +([0-9]+),.*/\1/p' <<<"$summary")
skipped=$(sed -nE 's/.*Skipped: +([0-9]+).*/\1/p' <<<"$summary")

# The tests that run the confine command, again on the NativeAOT command scripts/setup.sh
# publishes: it starts its helper before its runtime (native/confine-prestart.c), which the
# JIT-compiled command of the first pass cannot.
published_log=$(mktemp)
published_status=0
CONFINE_TEST_PUBLISHED_CLI=artifacts/confine/confine \
  dotnet tests/Confine.Tests/bin/Release/net10.0/Confine.Tests.dll --trait Command=confine --no-skips \
  2>&1 | tee "$published_log" || published_status=$?
published_line=$(grep -E '^[0-9]+ run, [0-9]+ failed' "$published_log" | tail -n 1 || true)
rm -f "$published_log"
published_run=$(sed -nE 's/^([0-9]+) run.*/\1/p' <<<"$published_line")
published_failed=$(sed -nE 's/^[0-9]+ run, ([0-9]+) failed.*/\1/p' <<<"$published_line")
passed=$(( ${passed:-0} + ${published_run:-0} - ${published_failed:-0} ))
failed=$(( ${failed:-0} + ${published_failed:-0} ))
if [ "$published_status" -ne 0 ]; then
  echo "test: the command-line tests on the published command failed (exit $published_status)" >&2
  status=1
  [ "${failed:-0}" -gt 0 ] || failed=1
fi

if [ "${RUN_CGROUP_V2_VM:-1}" = 1 ]; then
  vm_status=0
  # First the tests that exist only for v2, none of which may skip there; then every cgroup
  # test, the sandbox-level limits among them (v1-only and block-device tests skip in the guest).
  tests=tests/Confine.Tests/bin/Release/net10.0/Confine.Tests.dll
  scripts/cgroup-v2-vm/run.sh sh -c "dotnet $tests --trait Requirement=CgroupV2 --no-skips && dotnet $tests --trait Category=Cgroup" \
    2>&1 | tee -a "$log" || vm_status=$?
  while read -r vm_line; do
    vm_run=$(sed -nE 's/^([0-9]+) run.*/\1/p' <<<"$vm_line")
    vm_failed=$(sed -nE 's/^[0-9]+ run, ([0-9]+) failed.*/\1/p' <<<"$vm_line")
    passed=$(( ${passed:-0} + ${vm_run:-0} - ${vm_failed:-0} ))
    failed=$(( ${failed:-0} + ${vm_failed:-0} ))
  done < <(grep -E '^[0-9]+ run, [0-9]+ failed' "$log" || true)
  if [ "$vm_status" -ne 0 ]; then
    echo "test: the cgroup v2 tests in the VM failed (exit $vm_status)" >&2
    status=1
    # A guest that failed without a failing test (a forbidden skip, a harness error) still counts.
    [ "${failed:-0}" -gt 0 ] || failed=1
  fi
fi

if [ "${RUN_BENCHMARK:-1}" = 1 ] && [ "$status" -eq 0 ]; then
  dotnet bench/Confine.Bench/bin/Release/net10.0/Confine.Bench.dll --runs 200
fi

echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
