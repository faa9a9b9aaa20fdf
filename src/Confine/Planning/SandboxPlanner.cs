using System.Collections.Immutable;
using Confine.Native;
using static Confine.Native.HelperProtocol;

namespace Confine.Planning;

/// <summary>The identity Confine runs under, which decides how the sandbox's ids can be mapped.</summary>
internal readonly record struct HostIdentity(uint Uid, uint Gid)
{
    public static HostIdentity Current => new(Interop.geteuid(), Interop.getegid());

    public bool IsRoot => Uid == 0;
}

/// <summary>Extra plan input that comes from the run rather than the policy.</summary>
internal sealed record PlanExtras
{
    public byte[]? SeccompProgram { get; init; }

    public uint SeccompFlags { get; init; }

    /// <summary>
    /// The v1 <c>tasks</c> files the init joins itself through, before it forks the command; their
    /// descriptors travel with the command plan, in this order.
    /// </summary>
    public IReadOnlyList<string> CgroupTasksFiles { get; init; } = [];
}

/// <summary>
/// Turns a validated policy into the helper's plan: every decision about ids, namespaces and the
/// order of mounts is made here, so the helper only has to act.
/// </summary>
internal static class SandboxPlanner
{
    /// <summary>Files under /proc that leak host secrets or control the host; hidden behind /dev/null or an empty tmpfs.</summary>
    internal static readonly string[] MaskedProcPaths =
    [
        "/proc/kcore", "/proc/kallsyms", "/proc/keys", "/proc/key-users", "/proc/kmsg", "/proc/kpagecount",
        "/proc/kpageflags", "/proc/kpagecgroup", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
        "/proc/sysrq-trigger", "/proc/config.gz", "/proc/vmallocinfo", "/proc/acpi", "/proc/scsi",
        "/proc/asound", "/proc/driver",
    ];

    /// <summary>Subtrees of /proc that stay readable but must not be written.</summary>
    internal static readonly string[] ReadOnlyProcPaths = ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"];

    /// <summary>Device nodes of the sandbox's /dev, bound from the host's.</summary>
    internal static readonly string[] DeviceNodes = ["null", "zero", "full", "random", "urandom"];

    private const ulong TmpfsFlags = MS_NOSUID | MS_NODEV;

    /// <summary>The setup plan: namespaces, ids, cgroups, the root filesystem. It does not depend on the command.</summary>
    public static byte[] BuildSetup(SandboxPolicy policy, HostIdentity host, PlanExtras extras)
    {
        var plan = new PlanWriter();

        uint flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
        if (policy.Network == NetworkMode.None)
        {
            flags |= CLONE_NEWNET;
        }

        plan.UInt32(PLAN_CLONE_FLAGS, flags);
        WriteIdMaps(plan, policy, host);

        plan.String(PLAN_BASE_DIR, ChooseStagingDirectory());
        // The root only holds mount points, and is made read-only once they exist.
        plan.String(PLAN_ROOTFS, "size=1m,nr_inodes=4096,mode=0755");
        WriteMounts(plan, policy);

        plan.String(PLAN_HOSTNAME, policy.Hostname);
        if (policy.Network == NetworkMode.None)
        {
            plan.Empty(PLAN_LOOPBACK_UP);
        }

        return plan.WrittenSpan.ToArray();
    }

    /// <summary>The host paths the setup plan binds into the sandbox.</summary>
    public static ImmutableArray<string> BindSources(SandboxPolicy policy) =>
        [.. policy.SystemPaths, .. policy.Binds.Select(b => b.Source)];

    /// <summary>The command plan: what runs in the sandbox, as whom, and under which filters.</summary>
    public static byte[] BuildCommand(SandboxPolicy policy, IReadOnlyList<string> command, HostIdentity host, PlanExtras extras)
    {
        var plan = new PlanWriter();
        foreach (string tasks in extras.CgroupTasksFiles)
        {
            plan.String(PLAN_CGROUP_TASKS, tasks);
        }

        plan.User(policy.User.Uid, policy.User.Gid);
        if (!host.IsRoot && policy.User != SandboxUser.Root)
        {
            // An ordinary user's sandbox has one id, its root; other ids live in a nested namespace.
            plan.Empty(PLAN_NESTED_USERNS);
        }

        plan.String(PLAN_WORKDIR, policy.WorkingDirectory);
        foreach (string argument in command)
        {
            plan.String(PLAN_ARG, argument);
        }

        foreach ((string name, string value) in policy.Environment)
        {
            plan.String(PLAN_ENV, $"{name}={value}");
        }

        foreach (Rlimit limit in policy.Rlimits.Where(l => l.Resource != RlimitResource.Core))
        {
            plan.Rlimit((uint)limit.Resource, limit.Soft, limit.Hard);
        }

        // Core dumps are off whatever the policy says: a core file could carry the sandbox's memory out.
        plan.Rlimit((uint)RlimitResource.Core, 0, 0);

        if (policy.Landlock)
        {
            WriteLandlock(plan, policy);
        }

        if (extras.SeccompProgram is { } program)
        {
            plan.Bytes(PLAN_SECCOMP, extras.SeccompFlags, program);
        }

        return plan.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Landlock rules that mirror the mounts: system paths and read-only binds can be read and
    /// executed, tmpfs mounts and writable binds also written, the device nodes read and written,
    /// /proc read, every directory listed. No file outside those can be opened, so a mount that is
    /// wider than it should be is still held to the policy.
    /// </summary>
    private static void WriteLandlock(PlanWriter plan, SandboxPolicy policy)
    {
        int abi = Landlock.Abi;
        if (abi < 1)
        {
            // SandboxRun's preflight refuses (or, when allowed, drops) Landlock on such a host first.
            throw new InvalidOperationException("Landlock was asked for on a kernel without it");
        }

        ulong handled = Landlock.HandledFileSystemAccess(abi);
        const ulong Read = Landlock.LANDLOCK_ACCESS_FS_EXECUTE | Landlock.LANDLOCK_ACCESS_FS_READ_FILE | Landlock.LANDLOCK_ACCESS_FS_READ_DIR;
        ulong write = handled & ~(Landlock.LANDLOCK_ACCESS_FS_MAKE_CHAR | Landlock.LANDLOCK_ACCESS_FS_MAKE_BLOCK | Landlock.LANDLOCK_ACCESS_FS_IOCTL_DEV);
        ulong device = handled & (Landlock.LANDLOCK_ACCESS_FS_READ_FILE | Landlock.LANDLOCK_ACCESS_FS_WRITE_FILE | Landlock.LANDLOCK_ACCESS_FS_TRUNCATE);

        var rules = new List<(ulong Access, string Path)>
        {
            // Listing is allowed everywhere: the mounts decide what exists, and programs list the
            // parents of what they may read (ls /, a shell's path completion, Python's sys.path).
            (Landlock.LANDLOCK_ACCESS_FS_READ_DIR, "/"),
        };
        rules.AddRange(policy.SystemPaths.Select(p => (Read, p)));
        rules.AddRange(policy.Binds.Select(b => (b.Writable ? write : Read, b.Target)));
        rules.AddRange(policy.Tmpfs.Select(t => (write, t.Target)));
        rules.AddRange(DeviceNodes.Select(n => (device, $"/dev/{n}")));
        rules.Add((Landlock.LANDLOCK_ACCESS_FS_READ_FILE | Landlock.LANDLOCK_ACCESS_FS_READ_DIR | Landlock.LANDLOCK_ACCESS_FS_WRITE_FILE, "/proc"));

        plan.Landlock(handled, 0, Landlock.Scopes(abi), rules);
    }

    private static void WriteIdMaps(PlanWriter plan, SandboxPolicy policy, HostIdentity host)
    {
        if (host.IsRoot)
        {
            // Root can map a whole range, so sandbox ids keep their meaning and none is a host id in use.
            uint count = SandboxUser.MaxId + 1;
            plan.String(PLAN_UID_MAP, $"0 {policy.HostIdBase} {count}\n");
            plan.String(PLAN_GID_MAP, $"0 {policy.HostIdBase} {count}\n");
            return;
        }

        // An ordinary user may map exactly its own ids, and only after giving up setgroups. The init
        // builds the filesystem as the sandbox's root; a command that asked for other ids gets them
        // in a nested namespace.
        plan.String(PLAN_UID_MAP, $"0 {host.Uid} 1\n");
        plan.Empty(PLAN_SETGROUPS_DENY);
        plan.String(PLAN_GID_MAP, $"0 {host.Gid} 1\n");
    }

    private static string ChooseStagingDirectory()
    {
        // Any directory will do: the staging tmpfs is mounted in the sandbox's own mount namespace.
        foreach (string candidate in (string[])["/tmp", "/mnt", "/run", "/var/tmp"])
        {
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        return "/";
    }

    private readonly record struct MountStep(uint Op, uint Flags, ulong MountFlags, string Source, string Target, string Data);

    private static void WriteMounts(PlanWriter plan, SandboxPolicy policy)
    {
        var filesystem = new List<MountStep>();
        IReadOnlyList<string> hostMounts = HostMountTable.MountPoints();

        // Only a read-only bind whose source has mounts beneath it needs the helper's extra pass.
        uint Submounts(string source, bool writable) =>
            !writable && hostMounts.Any(m => m.StartsWith(source.TrimEnd('/') + "/", StringComparison.Ordinal))
                ? MOUNT_FLAG_SUBMOUNTS
                : 0;

        foreach (string path in policy.SystemPaths)
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is string link)
            {
                filesystem.Add(new MountStep(MOUNT_OP_SYMLINK, 0, 0, link, path, ""));
            }
            else if (Directory.Exists(path) || File.Exists(path))
            {
                filesystem.Add(new MountStep(MOUNT_OP_BIND, MOUNT_FLAG_OPTIONAL | Submounts(path, false), 0, path, path, ""));
            }
        }

        foreach (BindMount bind in policy.Binds)
        {
            uint flags = (bind.Writable ? MOUNT_FLAG_WRITABLE : 0) | Submounts(bind.Source, bind.Writable);
            filesystem.Add(new MountStep(MOUNT_OP_BIND, flags, 0, bind.Source, bind.Target, ""));
        }

        filesystem.Add(new MountStep(MOUNT_OP_TMPFS, 0, TmpfsFlags | MS_NOEXEC, "", "/dev", "size=64k,nr_inodes=64,mode=0755"));
        foreach (string node in DeviceNodes)
        {
            filesystem.Add(new MountStep(
                MOUNT_OP_BIND, MOUNT_FLAG_WRITABLE | MOUNT_FLAG_DEVICES, 0, $"/dev/{node}", $"/dev/{node}", ""));
        }

        filesystem.Add(new MountStep(MOUNT_OP_SYMLINK, 0, 0, "/proc/self/fd", "/dev/fd", ""));
        filesystem.Add(new MountStep(MOUNT_OP_SYMLINK, 0, 0, "/proc/self/fd/0", "/dev/stdin", ""));
        filesystem.Add(new MountStep(MOUNT_OP_SYMLINK, 0, 0, "/proc/self/fd/1", "/dev/stdout", ""));
        filesystem.Add(new MountStep(MOUNT_OP_SYMLINK, 0, 0, "/proc/self/fd/2", "/dev/stderr", ""));

        foreach (TmpfsMount tmpfs in policy.Tmpfs)
        {
            string mode = tmpfs.Target is "/tmp" or "/dev/shm" or "/var/tmp" ? "1777" : "0755";
            filesystem.Add(new MountStep(
                MOUNT_OP_TMPFS, 0, TmpfsFlags, "", tmpfs.Target,
                $"size={tmpfs.SizeBytes},nr_inodes={tmpfs.EffectiveInodes},mode={mode}"));
        }

        if (NeedsWorkingDirectory(policy))
        {
            filesystem.Add(new MountStep(MOUNT_OP_MKDIR, 0, 0, "", policy.WorkingDirectory, ""));
        }

        // Parents before children; otherwise the order of the policy, so a later bind can cover an earlier one.
        foreach (MountStep step in filesystem.OrderBy(s => Depth(s.Target)))
        {
            plan.Mount(step.Op, step.Flags, step.MountFlags, step.Source, step.Target, step.Data);
        }

        plan.Mount(MOUNT_OP_PROC, 0, 0, "", "/proc", "");
        foreach (string path in MaskedProcPaths)
        {
            plan.Mount(MOUNT_OP_MASK, 0, 0, "", path, "");
        }

        foreach (string path in ReadOnlyProcPaths)
        {
            plan.Mount(MOUNT_OP_READONLY, 0, 0, "", path, "");
        }
    }

    /// <summary>
    /// The working directory is created when it would land on one of the sandbox's own tmpfs mounts;
    /// inside a bind it must already exist, since creating it would write to the host.
    /// </summary>
    private static bool NeedsWorkingDirectory(SandboxPolicy policy)
    {
        string dir = policy.WorkingDirectory;
        if (dir == "/")
        {
            return false;
        }

        static bool Within(string dir, string mount) =>
            dir == mount || (dir.StartsWith(mount, StringComparison.Ordinal) && dir[mount.Length] == '/');

        if (Within(dir, "/proc") || Within(dir, "/dev"))
        {
            return false;
        }

        foreach (string path in policy.SystemPaths)
        {
            if (Within(dir, path))
            {
                return false;
            }
        }

        foreach (BindMount bind in policy.Binds)
        {
            if (Within(dir, bind.Target))
            {
                return false;
            }
        }

        return true;
    }

    private static int Depth(string path) => path.AsSpan().Count('/');
}
