#!/usr/bin/env bash
# Runs one command inside a QEMU guest that boots Debian's stock kernel with a real cgroup v2
# hierarchy, and exits with that command's exit status.
#
#   scripts/cgroup-v2-vm/run.sh [--] COMMAND [ARGS...]
#
# The host this project is developed on mounts cgroup v1 controllers only, so the cgroup v2
# backend can only be proven in a guest. The guest sees the host's / read-only with a tmpfs
# overlay on top, the repository read-write at its own path, and runs COMMAND as root in a
# child cgroup of the root, with every controller available, as on a systemd host.
#
# Exit status: COMMAND's status; 124 if the guest timed out; 125 if the harness itself failed
# (the guest's console log is then printed to stderr). See README.md for the knobs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
cache="$repo/.vm"

# A normal run takes well under a minute; this only stops a hung guest from holding CI.
timeout_seconds=${CONFINE_VM_TIMEOUT:-600}
memory=${CONFINE_VM_MEMORY:-4G}
cpus=${CONFINE_VM_CPUS:-2}
verbose=${CONFINE_VM_VERBOSE:-0}

# Debian builds these as modules while cgroups, the serial console, devtmpfs and tmpfs are built
# in. Their dependencies are worked out from modules.dep, so only the leaves are named here.
guest_modules=(virtio_pci 9pnet_virtio 9p overlay virtio_blk crc32c_generic ext4)

# A small ext4 disk on virtio-blk, mounted in the guest at this path: the I/O throttling tests
# need a directory on a real block device, which 9p, the overlay and tmpfs are not.
scratch_disk_size=256M
scratch_mount=/mnt/confine-block

# The largest 9p message the guest's virtio transport accepts; big messages matter because every
# file the .NET runtime opens comes over 9p.
msize=512000

die() {
  echo "cgroup-v2-vm: $*" >&2
  exit 125
}

# Progress for CONFINE_VM_VERBOSE=1, stamped with seconds since run.sh started.
started_at=$EPOCHREALTIME
note() {
  if [[ $verbose == 1 ]]; then
    local now=$EPOCHREALTIME
    local ms=$(((${now/./} - ${started_at/./}) / 1000))
    printf 'cgroup-v2-vm: [%d.%03d] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
  fi
}

usage() {
  echo "usage: $0 [--] COMMAND [ARGS...]" >&2
  exit 2
}

# Installs the host packages the harness needs, only when one is missing, so that a prepared
# machine needs neither root nor the network. A fresh machine may have no package lists yet,
# hence the update-and-retry.
ensure_packages() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  # The guest's /init runs busybox before any library exists, so it must be the static build.
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v timeout >/dev/null || missing+=(coreutils)
  command -v xz >/dev/null || missing+=(xz-utils)
  if ((${#missing[@]} == 0)); then
    return
  fi

  [[ $EUID == 0 ]] || die "missing packages: ${missing[*]} (install them, or run as root)"
  note "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# Prints the name of the kernel package to boot: CONFINE_VM_KERNEL_PACKAGE if set, else the one
# an earlier run cached (a second run needs neither apt nor the network, and keeps testing the
# same kernel), else the versioned package (linux-image-6.1.0-N-amd64) that Debian's
# linux-image-amd64 currently depends on.
resolve_kernel_package() {
  if [[ -n ${CONFINE_VM_KERNEL_PACKAGE:-} ]]; then
    echo "$CONFINE_VM_KERNEL_PACKAGE"
    return
  fi

  local name
  name=$(cd "$cache/kernel" 2>/dev/null && ls -1d linux-image-*/.complete 2>/dev/null |
    sed 's|/.complete$||' | sort -V | tail -n 1 || true)
  if [[ -n $name ]]; then
    echo "$name"
    return
  fi

  local attempt
  for attempt in 1 2; do
    name=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9][0-9.]*-[0-9]+-amd64$/ { print $2; exit }')
    if [[ -n $name ]]; then
      echo "$name"
      return
    fi
    if ((attempt == 1)); then
      # A fresh machine may have no package lists yet.
      [[ $EUID == 0 ]] || die "apt-cache knows no linux-image-amd64; run apt-get update as root"
      apt-get update -qq >&2
    fi
  done
  die "cannot find the kernel package linux-image-amd64 depends on"
}

# Writes the uncompressed kernel (an ELF vmlinux) held inside a bzImage. Booted through its PVH
# entry point it skips the kernel's own decompressor, which takes several seconds under
# emulation. The compressed payload's place is given by the boot protocol's setup header:
# setup_sects at 0x1f1, payload_offset and payload_length at 0x248. Debian compresses with xz;
# for anything else this fails and the caller boots the bzImage as it is.
extract_vmlinux() {
  local bzimage=$1 out=$2
  local setup_sects offset length
  setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bzimage")
  ((setup_sects != 0)) || setup_sects=4
  read -r offset length < <(od -An -tu4 -j $((0x248)) -N8 "$bzimage")
  local start=$(((setup_sects + 1) * 512 + offset))

  local magic
  magic=$(od -An -tx1 -j "$start" -N6 "$bzimage" | tr -d ' \n')
  [[ $magic == fd377a585a00 ]] || return 1
  # The payload ends with the uncompressed size, which xz would take for a truncated stream.
  dd if="$bzimage" iflag=skip_bytes,count_bytes skip="$start" count="$length" status=none |
    xz -dc --single-stream >"$out"
}

# Downloads and unpacks the kernel package into $cache/kernel/NAME unless an earlier run did.
# It is never installed: nothing on the host's /boot or /lib/modules changes. The unpacked tree
# gets its modules.dep from busybox's depmod, because the package ships none (dpkg's postinst
# normally runs depmod) and the host need not have kmod.
fetch_kernel() {
  local name=$1
  local dest="$cache/kernel/$name"
  if [[ -e $dest/.complete ]]; then
    return
  fi

  mkdir -p "$cache/kernel"
  local work
  work=$(mktemp -d "$cache/kernel/.fetch.XXXXXX")
  chmod 0755 "$work"
  note "downloading $name"
  # apt drops to the _apt user for downloads, which cannot write into a root-owned cache.
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$name" >&2) ||
    die "apt-get download $name failed"
  note "downloaded; unpacking"
  dpkg -x "$work"/*.deb "$work/root"
  rm -f "$work"/*.deb

  local kver
  kver=$(ls -1 "$work/root/lib/modules")
  local bzimage="$work/root/boot/vmlinuz-$kver"
  [[ -f $bzimage ]] || die "$name has no boot/vmlinuz-$kver"
  # PVH boot needs the kernel to have the entry point (CONFIG_PVH); Debian's has.
  if ! { grep -qx 'CONFIG_PVH=y' "$work/root/boot/config-$kver" &&
    extract_vmlinux "$bzimage" "$work/vmlinux"; }; then
    rm -f "$work/vmlinux"
    note "cannot unpack $bzimage for a PVH boot; booting it compressed"
  fi
  busybox depmod -b "$work/root" "$kver"
  echo "$kver" >"$work/kver"
  touch "$work/.complete"

  # Another run may have finished the same download meanwhile; either copy is fine.
  mv -T "$work" "$dest" 2>/dev/null || rm -rf "$work"
  note "kernel ready"
}

# Prints the modules (paths relative to the module tree) that must be loaded for $@, each after
# everything it depends on.
module_load_order() {
  local tree=$1
  shift
  declare -A deps=() by_name=() emitted=()
  local line path rest name
  while IFS= read -r line; do
    path=${line%%:*}
    rest=${line#*:}
    deps[$path]=$rest
    name=${path##*/}
    name=${name%%.ko*}
    by_name[${name//-/_}]=$path
  done <"$tree/modules.dep"

  visit() {
    local path=$1 dep
    [[ -z ${emitted[$path]:-} ]] || return 0
    emitted[$path]=1
    for dep in ${deps[$path]}; do
      visit "$dep"
    done
    echo "$path"
  }

  local module
  for module in "$@"; do
    path=${by_name[${module//-/_}]:-}
    [[ -n $path ]] || die "kernel has no module $module"
    visit "$path"
  done
}

# Single-quotes one word for the guest's shell.
shell_quote() {
  printf "'%s'" "${1//\'/\'\\\'\'}"
}

# Writes the script the guest runs as the payload: a clean environment, the caller's working
# directory, then COMMAND.
write_payload() {
  local file=$1
  shift
  {
    echo "export PATH=$(shell_quote "${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}")"
    echo "export HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb CONFINE_VM=1"
    # The guest has no network, and .NET's first-run and telemetry steps would try it.
    echo "export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1"
    echo "export DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1"
    # Build servers would outlive the payload, and the guest powers off when it exits.
    echo "export MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 UseSharedCompilation=false"
    local var
    for var in $(compgen -e); do
      case $var in
        CONFINE_VM_*) ;;
        CONFINE_* | DOTNET_* | NUGET_* | CI | GITHUB_ACTIONS)
          echo "export $var=$(shell_quote "${!var}")"
          ;;
      esac
    done
    echo "[ -d $(shell_quote "$scratch_mount/lost+found") ] && export CONFINE_TEST_BLOCK_DIRECTORY=$(shell_quote "$scratch_mount")"
    echo "cd $(shell_quote "$PWD") 2>/dev/null || cd /"
    printf 'exec'
    local arg
    for arg in "$@"; do
      printf ' %s' "$(shell_quote "$arg")"
    done
    echo
  } >"$file"
}

# Builds an uncompressed initramfs (the guest unpacks it faster than a compressed one under
# emulation): static busybox, the two guest stages, the modules, and this run's payload.
build_initramfs() {
  local tree=$1 out=$2 staging=$3
  shift 3
  mkdir -p "$staging/bin" "$staging/lib/modules"
  cp /bin/busybox "$staging/bin/busybox"
  cp "$here/guest-init" "$staging/init"
  cp "$here/guest-payload-init" "$staging/payload-init"
  chmod 0755 "$staging/init" "$staging/payload-init"

  # Worked out before the loop so that a missing module stops the run (set -e does not see a
  # failure inside a process substitution).
  local order
  order=$(module_load_order "$tree" "${guest_modules[@]}")

  local path file n=0
  : >"$staging/lib/modules/load-order"
  while IFS= read -r path; do
    n=$((n + 1))
    file="$(printf '%02d' "$n")-${path##*/}"
    # busybox insmod reads plain .ko files only; compressed modules are unpacked here.
    case $path in
      *.ko) cp "$tree/$path" "$staging/lib/modules/$file" ;;
      *.ko.xz)
        file=${file%.xz}
        xz -dc "$tree/$path" >"$staging/lib/modules/$file"
        ;;
      *.ko.zst)
        file=${file%.zst}
        zstd -qdc "$tree/$path" >"$staging/lib/modules/$file"
        ;;
      *.ko.gz)
        file=${file%.gz}
        gzip -dc "$tree/$path" >"$staging/lib/modules/$file"
        ;;
      *) die "cannot load module $path" ;;
    esac
    echo "$file" >>"$staging/lib/modules/load-order"
  done <<<"$order"

  echo "project_dir=$(shell_quote "$repo")" >"$staging/confine-vm.conf"
  echo "msize=$msize" >>"$staging/confine-vm.conf"
  echo "scratch_mount=$(shell_quote "$scratch_mount")" >>"$staging/confine-vm.conf"
  write_payload "$staging/payload" "$@"

  (cd "$staging" && find . -mindepth 1 | busybox cpio -o -H newc 2>/dev/null) >"$out"
}

# Copies one guest serial port's output (arriving through a FIFO) to one of our descriptors.
# A FIFO rather than handing QEMU a path to our stdout works whatever that stdout is (a
# terminal, a pipe, a socket, a file opened for appending). The serial port delivers a few bytes
# at a time, so the copy goes a whole line at a time (sed -u): where stdout and stderr end up
# in the same log, their lines then alternate instead of their bytes.
relay() {
  local fifo=$1 fd=$2
  sed -u '' "$fifo" >&"$fd" &
  relay_pids+=($!)
}

# A relay whose FIFO QEMU never opened (it failed to start) is still blocked in open(); opening
# the FIFO read-write here gives it a writer, and closing it gives it end-of-file.
release_relays() {
  local fifo fd
  for fifo in "$@"; do
    exec {fd}<>"$fifo"
    exec {fd}>&-
  done
  local pid
  for pid in "${relay_pids[@]}"; do
    wait "$pid" || true
  done
}

main() {
  if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage
  fi
  if [[ ${1:-} == -- ]]; then
    shift
  fi
  (($# > 0)) || usage

  ensure_packages
  local package
  package=$(resolve_kernel_package)
  fetch_kernel "$package"
  local kernel_dir="$cache/kernel/$package"
  local kver
  kver=$(<"$kernel_dir/kver")
  local kernel="$kernel_dir/vmlinux"
  [[ -f $kernel ]] || kernel="$kernel_dir/root/boot/vmlinuz-$kver"

  run_dir=$(mktemp -d "${TMPDIR:-/tmp}/confine-vm.XXXXXX")
  [[ -n ${CONFINE_VM_KEEP:-} ]] || trap 'rm -rf "$run_dir"' EXIT
  note "building the initramfs"
  build_initramfs "$kernel_dir/root/lib/modules/$kver" "$run_dir/initramfs.cpio" "$run_dir/initramfs" "$@"

  # Sparse, so it costs the host almost nothing; mkfs.ext4 comes with e2fsprogs, which every
  # Debian system has.
  truncate -s "$scratch_disk_size" "$run_dir/scratch.img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$run_dir/scratch.img" ||
    die "mkfs.ext4 on the scratch disk failed"

  local accel=(-accel tcg,thread=multi -cpu max)
  if [[ ${CONFINE_VM_KVM:-0} == 1 ]]; then
    # Opt-in only: this project's usual host exposes a nested /dev/kvm that cannot boot a
    # stock kernel, while emulation always works.
    accel=(-accel kvm -cpu host)
  fi

  # The root filesystem is exported read-only at the 9p server, so the guest cannot change the
  # host even by mistake; multidevs=remap keeps inode numbers unique across the host's mounts.
  # The project is shared with passthrough so files the guest writes keep their real owner
  # (QEMU's option syntax wants a comma in a path doubled).
  local project_model=passthrough
  [[ $EUID == 0 ]] || project_model=none

  mkfifo "$run_dir/stdout" "$run_dir/stderr"
  relay_pids=()
  relay "$run_dir/stdout" 1
  relay "$run_dir/stderr" 2

  # ttyS0 is the console (kernel and harness messages, kept in a log), ttyS1 and ttyS2 carry the
  # payload's stdout and stderr. isa-debug-exit lets the guest end QEMU with a status.
  local qemu=(
    qemu-system-x86_64 "${accel[@]}" -smp "$cpus" -m "$memory"
    -nodefaults -display none -no-reboot
    -kernel "$kernel"
    -initrd "$run_dir/initramfs.cpio"
    -append "console=ttyS0 loglevel=4 panic=-1 mitigations=off"
    -serial "file:$run_dir/console.log"
    -serial "file:$run_dir/stdout"
    -serial "file:$run_dir/stderr"
    -device isa-debug-exit,iobase=0xf4,iosize=0x01
    -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
    -fsdev "local,id=project,path=${repo//,/,,},security_model=$project_model,multidevs=remap"
    -device virtio-9p-pci,fsdev=project,mount_tag=project
    -drive "file=$run_dir/scratch.img,if=virtio,format=raw,cache=unsafe"
  )
  note "booting $package ($kver), $cpus vCPUs, $memory"
  local rc=0
  # --foreground keeps QEMU in our process group, so that ^C at a terminal reaches it.
  timeout --foreground --kill-after=10 "$timeout_seconds" "${qemu[@]}" </dev/null || rc=$?
  release_relays "$run_dir/stdout" "$run_dir/stderr"
  note "QEMU exited with $rc"

  if [[ $verbose == 1 ]]; then
    sed 's/^/cgroup-v2-vm: console: /' "$run_dir/console.log" >&2
  fi

  # The guest writes its full status to the console, then ends QEMU through isa-debug-exit,
  # which exits with (value << 1) | 1, cut to 8 bits. Both must agree: QEMU's own failures also
  # exit 1, and a status above 127 loses its top bit on the way out.
  local status
  status=$(sed -n 's/^confine-vm: exit status \([0-9]\{1,3\}\)\r\{0,1\}$/\1/p' "$run_dir/console.log" | tail -n 1)
  if [[ -n $status ]] && (((rc & 1) == 1 && rc >> 1 == (status & 127))); then
    exit "$status"
  fi

  if ((rc == 124 || rc == 137)); then
    echo "cgroup-v2-vm: guest timed out after $timeout_seconds s; its console said:" >&2
  else
    echo "cgroup-v2-vm: guest ended without a status (QEMU exit $rc); its console said:" >&2
  fi
  tail -n 40 "$run_dir/console.log" >&2 || true
  if ((rc == 124 || rc == 137)); then
    exit 124
  fi
  exit 125
}

main "$@"
