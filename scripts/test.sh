#!/usr/bin/env bash
# Runs every test of Confine on this machine: the xunit suite (real namespaces, cgroups and
# seccomp, as root and, through setpriv, as an unprivileged user), then the benchmark.
# Expects scripts/setup.sh to have run.
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

if [ "${RUN_BENCHMARK:-1}" = 1 ] && [ "$status" -eq 0 ]; then
  dotnet bench/Confine.Bench/bin/Release/net10.0/Confine.Bench.dll --runs 200
fi

echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
