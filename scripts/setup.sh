#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to build, run and test Confine, then builds it.
# Installs only what is missing, so running it again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

# musl-tools: a 90 KB static helper instead of a 700 KB glibc one (cc -static is the fallback).
# bubblewrap: the peer the benchmark compares against. python3: used by tests and examples.
# qemu-system-x86, busybox-static: the cgroup v2 test VM. libseccomp-dev: only its header, for the
# test that checks Confine's libseccomp constants against it (Confine itself needs no -dev package).
packages=(musl-tools bubblewrap python3 util-linux qemu-system-x86 busybox-static libseccomp-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v dotnet >/dev/null || { echo "setup: the .NET 10 SDK is required (dotnet on PATH)" >&2; exit 1; }

dotnet build -c Release Confine.slnx -nologo -v quiet
# The confine command, compiled ahead of time: it starts in milliseconds instead of tens of them.
dotnet publish src/Confine.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/confine -nologo -v quiet
echo "setup: built artifacts/confine/confine"
