using System.CommandLine;
using System.Globalization;
using Confine.Configuration;

namespace Confine.Cli;

/// <summary>
/// The flags that build a policy, named as Docker names them where Docker has an equivalent.
/// Shared by every command that builds a policy (<c>run</c>, <c>policy show</c>), so they cannot
/// drift apart. The policy is layered: the level, then the <c>--config</c> file, then these flags.
/// </summary>
internal sealed class PolicyOptions
{
    public Option<string?> Level { get; } = new("--level")
    {
        Description = "Preset to start from: maximum, balanced (the default) or development; see docs/levels.md",
    };

    public Option<string?> Config { get; } = new("--config")
    {
        Description = "Policy file (JSON or YAML) refining the level; flags refine it in turn",
    };

    public Option<string[]> Volumes { get; } = new("--volume", "-v")
    {
        Description = "Bind a host path: HOST:SANDBOX[:ro|rw] (read-only unless rw)",
        AllowMultipleArgumentsPerToken = false,
    };

    public Option<string[]> Tmpfs { get; } = new("--tmpfs")
    {
        Description = "Mount a private tmpfs: PATH[:size=SIZE[,nr_inodes=N]]",
    };

    public Option<bool> ReadOnly { get; } = new("--read-only")
    {
        Description = "Drop the level's and file's writable tmpfs mounts: nothing is writable but --tmpfs and rw binds",
    };

    public Option<string?> Workdir { get; } = new("--workdir", "-w") { Description = "Working directory inside the sandbox" };

    public Option<string[]> Env { get; } = new("--env", "-e") { Description = "Set an environment variable: NAME=VALUE, or NAME to pass the caller's" };

    public Option<string?> User { get; } = new("--user", "-u") { Description = "Run as UID[:GID] inside the sandbox (default 0:0, the sandbox's own root)" };

    public Option<string?> Hostname { get; } = new("--hostname") { Description = "Hostname inside the sandbox" };

    public Option<string?> Network { get; } = new("--network") { Description = "none (own loopback only) or host" };

    public Option<string?> Timeout { get; } = new("--timeout") { Description = "Wall-clock limit: 10s, 500ms, 2m, or none" };

    public Option<string?> StdoutLimit { get; } = new("--stdout-limit") { Description = "Most bytes of standard output" };

    public Option<string?> StderrLimit { get; } = new("--stderr-limit") { Description = "Most bytes of standard error" };

    public Option<string?> Memory { get; } = new("--memory", "-m") { Description = "Memory limit of the whole sandbox: 512m, 2g, or none" };

    public Option<string?> MemorySwap { get; } = new("--memory-swap")
    {
        Description = "Memory plus swap (at least --memory); -1 for unlimited swap; unset means no swap",
    };

    public Option<string?> Cpus { get; } = new("--cpus") { Description = "CPU bandwidth in cores: 1.5, or none" };

    public Option<string?> CpusetCpus { get; } = new("--cpuset-cpus") { Description = "CPUs to run on: 0-1,3" };

    public Option<string?> CpuTime { get; } = new("--cpu-time") { Description = "CPU time of the whole sandbox: 10s, 2m, or none" };

    public Option<string?> PidsLimit { get; } = new("--pids-limit")
    {
        Description = "Most processes and threads at once; -1 or none for no limit",
    };

    public Option<string[]> DeviceReadBps { get; } = new("--device-read-bps")
    {
        Description = "Read rate of a block device: DEVICE:RATE (/dev/sda:10mb)",
    };

    public Option<string[]> DeviceWriteBps { get; } = new("--device-write-bps") { Description = "Write rate of a block device: DEVICE:RATE" };

    public Option<string[]> DeviceReadIops { get; } = new("--device-read-iops")
    {
        Description = "Read operations per second of a block device: DEVICE:N",
    };

    public Option<string[]> DeviceWriteIops { get; } = new("--device-write-iops")
    {
        Description = "Write operations per second of a block device: DEVICE:N",
    };

    public Option<string?> CgroupParent { get; } = new("--cgroup-parent") { Description = "Cgroup beneath which the sandbox's cgroup is made" };

    public Option<string[]> Ulimit { get; } = new("--ulimit") { Description = "An rlimit: NAME=SOFT[:HARD] (nofile=1024:2048, nproc=64)" };

    public Option<string?> Seccomp { get; } = new("--seccomp")
    {
        Description = "Seccomp profile: default, strict, permissive, unconfined (no filter), or a profile file",
    };

    public Option<bool> Landlock { get; } = new("--landlock") { Description = "Confine file access with Landlock too (Linux 5.13+)" };

    public Option<bool> NoLandlock { get; } = new("--no-landlock") { Description = "Do not use Landlock" };

    public Option<bool> AllowDegrade { get; } = new("--allow-degrade")
    {
        Description = "Run with what the host can give when it cannot give every protection asked for; the verdict lists what was weakened",
    };

    public PolicyOptions()
    {
        foreach (Option option in All)
        {
            if (option is Option<string[]> list)
            {
                StringLists.TakeAsGiven(list);
            }
        }
    }

    public IEnumerable<Option> All =>
    [
        Level, Config, Volumes, Tmpfs, ReadOnly, Workdir, Env, User, Hostname, Network, Timeout, StdoutLimit, StderrLimit,
        Memory, MemorySwap, Cpus, CpusetCpus, CpuTime, PidsLimit, DeviceReadBps, DeviceWriteBps, DeviceReadIops,
        DeviceWriteIops, CgroupParent, Ulimit, Seccomp, Landlock, NoLandlock, AllowDegrade,
    ];

    /// <summary>The layered policy: level, then the file, then every flag that was given. Not yet validated.</summary>
    public PolicyBuilder Build(ParseResult result)
    {
        PolicyFile? file = result.GetValue(Config) is string path ? PolicyFile.Load(path) : null;
        IsolationLevel level = result.GetValue(Level) is string name
            ? IsolationLevels.Parse("level", name)
            : file?.Level ?? IsolationLevels.Default;

        PolicyBuilder builder = PolicyBuilder.ForLevel(level);
        file?.ApplyTo(builder);
        ApplyFlags(result, builder);
        return builder;
    }

    private void ApplyFlags(ParseResult result, PolicyBuilder builder)
    {
        if (result.GetValue(ReadOnly))
        {
            builder.ReplaceTmpfs([]);
        }

        foreach (string volume in result.GetValue(Volumes) ?? [])
        {
            BindMount bind = BindMount.Parse(volume);
            builder.AddBind(bind with { Source = Path.GetFullPath(bind.Source) }, Origin(Volumes));
        }

        foreach (string tmpfs in result.GetValue(Tmpfs) ?? [])
        {
            builder.PutTmpfs(PolicySyntax.ParseTmpfs("tmpfs", tmpfs), Origin(Tmpfs));
        }

        if (result.GetValue(Workdir) is string workdir)
        {
            builder.Set("workdir", Origin(Workdir), p => p with { WorkingDirectory = workdir });
        }

        foreach (string entry in result.GetValue(Env) ?? [])
        {
            int equals = entry.IndexOf('=');
            if (equals < 0)
            {
                if (Environment.GetEnvironmentVariable(entry) is string inherited)
                {
                    builder.SetEnvironment(entry, inherited, Origin(Env));
                }

                continue;
            }

            builder.SetEnvironment(entry[..equals], entry[(equals + 1)..], Origin(Env));
        }

        if (result.GetValue(User) is string user)
        {
            SandboxUser ids = SandboxUser.Parse(user);
            builder.Set("user", Origin(User), p => p with { User = ids });
        }

        if (result.GetValue(Hostname) is string hostname)
        {
            builder.Set("hostname", Origin(Hostname), p => p with { Hostname = hostname });
        }

        if (result.GetValue(Network) is string network)
        {
            NetworkMode mode = PolicySyntax.ParseNetwork("network", network);
            builder.Set("network", Origin(Network), p => p with { Network = mode });
        }

        if (result.GetValue(Timeout) is string timeout)
        {
            TimeSpan? limit = timeout == "none" ? null : Units.ParseDuration("timeout", timeout);
            builder.Set("timeout", Origin(Timeout), p => p with { Timeout = limit });
        }

        if (result.GetValue(StdoutLimit) is string stdoutLimit)
        {
            long bytes = Units.ParseSize("limits.stdout", stdoutLimit);
            builder.Set("limits.stdout", Origin(StdoutLimit), p => p with { StdoutLimitBytes = bytes });
        }

        if (result.GetValue(StderrLimit) is string stderrLimit)
        {
            long bytes = Units.ParseSize("limits.stderr", stderrLimit);
            builder.Set("limits.stderr", Origin(StderrLimit), p => p with { StderrLimitBytes = bytes });
        }

        ApplyResourceFlags(result, builder);

        foreach (string ulimit in result.GetValue(Ulimit) ?? [])
        {
            builder.SetRlimit(PolicySyntax.ParseUlimit(ulimit), Origin(Ulimit));
        }

        if (result.GetValue(Seccomp) is string profile)
        {
            string resolved = PolicyFile.BuiltinSeccompProfiles.Contains(profile) || !profile.Contains('/')
                ? profile
                : Path.GetFullPath(profile);
            builder.Set("seccomp_profile", Origin(Seccomp), p => p with { SeccompProfile = resolved });
        }

        bool landlock = result.GetValue(Landlock);
        bool noLandlock = result.GetValue(NoLandlock);
        if (landlock && noLandlock)
        {
            throw new PolicyException("landlock", "--landlock and --no-landlock contradict each other");
        }

        if (landlock || noLandlock)
        {
            builder.Set("landlock", Origin(landlock ? Landlock : NoLandlock), p => p with { Landlock = landlock });
        }

        if (result.GetValue(AllowDegrade))
        {
            builder.Set("allow_degrade", Origin(AllowDegrade), p => p with { AllowDegrade = true });
        }
    }

    private void ApplyResourceFlags(ParseResult result, PolicyBuilder builder)
    {
        if (result.GetValue(Memory) is string memory)
        {
            long? bytes = memory == "none" ? null : Units.ParseSize("resources.memory", memory);
            builder.SetResources("resources.memory", Origin(Memory), r => r with { MemoryBytes = bytes });
        }

        if (result.GetValue(MemorySwap) is string swap)
        {
            long bytes = PolicySyntax.ParseMemorySwap("resources.memory_swap", swap);
            builder.SetResources("resources.memory_swap", Origin(MemorySwap), r => r with { MemorySwapBytes = bytes });
        }

        if (result.GetValue(Cpus) is string cpus)
        {
            double? cores = cpus == "none"
                ? null
                : double.TryParse(cpus, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value)
                    ? value
                    : throw new PolicyException("resources.cpus", $"'{cpus}' is not a number of cores such as 1.5");
            builder.SetResources("resources.cpus", Origin(Cpus), r => r with { Cpus = cores });
        }

        if (result.GetValue(CpusetCpus) is string cpuset)
        {
            builder.SetResources("resources.cpuset_cpus", Origin(CpusetCpus), r => r with { CpusetCpus = cpuset });
        }

        if (result.GetValue(CpuTime) is string cpuTime)
        {
            TimeSpan? limit = cpuTime == "none" ? null : Units.ParseDuration("resources.cpu_time", cpuTime);
            builder.SetResources("resources.cpu_time", Origin(CpuTime), r => r with { CpuTime = limit });
        }

        if (result.GetValue(PidsLimit) is string pids)
        {
            int? limit = pids is "none" or "-1"
                ? null
                : int.TryParse(pids, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n)
                    ? n
                    : throw new PolicyException("resources.pids_limit", $"'{pids}' is not a whole number");
            builder.SetResources("resources.pids_limit", Origin(PidsLimit), r => r with { PidsLimit = limit });
        }

        ApplyDeviceFlags(result, builder, DeviceReadBps, "read_bps", isBytes: true, (d, v) => d with { ReadBps = v });
        ApplyDeviceFlags(result, builder, DeviceWriteBps, "write_bps", isBytes: true, (d, v) => d with { WriteBps = v });
        ApplyDeviceFlags(result, builder, DeviceReadIops, "read_iops", isBytes: false, (d, v) => d with { ReadIops = v });
        ApplyDeviceFlags(result, builder, DeviceWriteIops, "write_iops", isBytes: false, (d, v) => d with { WriteIops = v });

        if (result.GetValue(CgroupParent) is string parent)
        {
            builder.SetResources("resources.cgroup_parent", Origin(CgroupParent), r => r with { CgroupParent = parent });
        }
    }

    private static void ApplyDeviceFlags(
        ParseResult result, PolicyBuilder builder, Option<string[]> option, string field, bool isBytes,
        Func<DeviceIoLimit, long, DeviceIoLimit> set)
    {
        foreach (string text in result.GetValue(option) ?? [])
        {
            (string device, long rate) = PolicySyntax.ParseDeviceRate($"resources.device_io.{field}", text, isBytes);
            builder.PutDeviceIo(device, d => set(d, rate), Origin(option));
        }
    }

    private static PolicyOrigin Origin(Option option) => PolicyOrigin.FromFlag(option.Name);
}
