namespace Confine;

/// <summary>
/// Rejects malformed, impossible and contradictory policies before anything is created, naming
/// the offending key. Checks that need the host (a bind source that must exist) run here too, so
/// a bad policy never gets as far as a half-built sandbox.
/// </summary>
public static class PolicyValidator
{
    /// <summary>Paths the sandbox's own filesystems own; nothing may be bound onto or beneath them.</summary>
    private static readonly string[] s_reservedTargets = ["/proc", "/dev"];

    /// <summary>Throws <see cref="PolicyException"/> for the first problem found.</summary>
    public static void Validate(SandboxPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);

        // Limits first: a tmpfs is checked against the memory limit, which must itself be sound.
        ValidateResources(policy.Resources);
        ValidateHostname(policy.Hostname);
        RequireSandboxPath("workdir", policy.WorkingDirectory, allowRoot: true);

        for (int i = 0; i < policy.SystemPaths.Length; i++)
        {
            RequireSandboxPath($"system_paths[{i}]", policy.SystemPaths[i], allowRoot: false);
        }

        var targets = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < policy.Binds.Length; i++)
        {
            BindMount bind = policy.Binds[i];
            string key = $"binds[{i}]";
            RequireHostPath($"{key}.source", bind.Source);
            RequireSandboxPath($"{key}.target", bind.Target, allowRoot: false);
            RequireNotReserved($"{key}.target", bind.Target);
            if (!File.Exists(bind.Source) && !Directory.Exists(bind.Source))
            {
                throw new PolicyException($"{key}.source", $"'{bind.Source}' does not exist on the host");
            }

            if (!targets.Add(bind.Target))
            {
                throw new PolicyException($"{key}.target", $"'{bind.Target}' is mounted twice");
            }
        }

        for (int i = 0; i < policy.Tmpfs.Length; i++)
        {
            TmpfsMount tmpfs = policy.Tmpfs[i];
            string key = $"tmpfs[{i}]";
            RequireSandboxPath($"{key}.target", tmpfs.Target, allowRoot: false);
            if (tmpfs.Target != "/dev/shm")
            {
                RequireNotReserved($"{key}.target", tmpfs.Target);
            }

            if (tmpfs.SizeBytes <= 0)
            {
                throw new PolicyException($"{key}.size", $"must be positive, not {tmpfs.SizeBytes}");
            }

            if (tmpfs.Inodes is <= 0)
            {
                throw new PolicyException($"{key}.inodes", $"must be positive, not {tmpfs.Inodes}");
            }

            if (!targets.Add(tmpfs.Target))
            {
                throw new PolicyException($"{key}.target", $"'{tmpfs.Target}' is mounted twice");
            }

            if (policy.Resources.MemoryBytes is long memory && tmpfs.SizeBytes > memory)
            {
                throw new PolicyException(
                    $"{key}.size",
                    $"{tmpfs.SizeBytes} bytes is larger than the memory limit of {memory} bytes, and tmpfs " +
                    "pages count against that limit: lower the tmpfs size or raise resources.memory");
            }
        }

        foreach ((string name, string value) in policy.Environment)
        {
            if (name.Length == 0 || name.Contains('=') || name.Contains('\0'))
            {
                throw new PolicyException("env", $"'{name}' is not a valid variable name");
            }

            if (value.Contains('\0'))
            {
                throw new PolicyException($"env.{name}", "the value holds a NUL character");
            }
        }

        if (policy.Timeout is TimeSpan timeout && timeout <= TimeSpan.Zero)
        {
            throw new PolicyException("timeout", $"must be positive, not {timeout}");
        }

        if (policy.Timeout > Units.MaxDuration)
        {
            throw new PolicyException("timeout", $"must be at most {Units.MaxDuration.TotalDays:0} days, the longest Confine can time");
        }

        if (policy.StdoutLimitBytes < 0)
        {
            throw new PolicyException("limits.stdout", "must not be negative");
        }

        if (policy.StderrLimitBytes < 0)
        {
            throw new PolicyException("limits.stderr", "must not be negative");
        }

        if (policy.User.Uid > SandboxUser.MaxId || policy.User.Gid > SandboxUser.MaxId)
        {
            throw new PolicyException("user", $"ids must be at most {SandboxUser.MaxId}");
        }

        for (int i = 0; i < policy.Rlimits.Length; i++)
        {
            Rlimit limit = policy.Rlimits[i];
            if (limit.Soft > limit.Hard)
            {
                throw new PolicyException($"rlimits[{i}]", $"soft limit {limit.Soft} is above the hard limit {limit.Hard}");
            }

            // Raising a hard limit needs CAP_SYS_RESOURCE on the host, which the sandbox never has
            // (and which even root here may lack): setrlimit would fail inside, after the sandbox
            // was built.
            ulong ownHard = Native.Posix.HardRlimit((int)limit.Resource);
            if (limit.Hard > ownHard)
            {
                string own = ownHard == Rlimit.Infinity ? "unlimited" : ownHard.ToString(System.Globalization.CultureInfo.InvariantCulture);
                throw new PolicyException(
                    $"rlimits[{i}]",
                    $"hard limit {limit.Hard} is above Confine's own hard limit of {own}; a sandbox can only lower it "
                        + "(raise Confine's own limit first, for example with LimitNOFILE= in its systemd unit or ulimit -H)");
            }
        }

        ValidateHostIds(policy.HostIdBase);
        ValidateSeccompProfile(policy.SeccompProfile);
    }

    /// <summary>Checks a command line: a non-empty program name and no NUL characters.</summary>
    public static void ValidateCommand(IReadOnlyList<string> command)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (command.Count == 0 || string.IsNullOrEmpty(command[0]))
        {
            throw new PolicyException("command", "no command was given");
        }

        for (int i = 0; i < command.Count; i++)
        {
            if (command[i].Contains('\0'))
            {
                throw new PolicyException($"command[{i}]", "holds a NUL character");
            }
        }
    }

    private static void ValidateHostname(string hostname)
    {
        if (hostname.Length is 0 or > 64
            || !hostname.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.'))
        {
            throw new PolicyException("hostname", $"'{hostname}' is not 1-64 letters, digits, '-' or '.'");
        }
    }

    private static void RequireHostPath(string key, string path)
    {
        if (!path.StartsWith('/') || path.Contains('\0'))
        {
            throw new PolicyException(key, $"'{path}' is not an absolute path");
        }
    }

    /// <summary>Sandbox paths must be absolute and already normal, so prefix checks mean what they say.</summary>
    private static void RequireSandboxPath(string key, string path, bool allowRoot)
    {
        if (!path.StartsWith('/') || path.Contains('\0'))
        {
            throw new PolicyException(key, $"'{path}' is not an absolute path");
        }

        if (path == "/")
        {
            if (!allowRoot)
            {
                throw new PolicyException(key, "cannot be '/': the sandbox's root is its own read-only tmpfs");
            }

            return;
        }

        string[] parts = path[1..].Split('/');
        if (parts.Any(p => p is "" or "." or ".."))
        {
            throw new PolicyException(key, $"'{path}' is not a normal path (no '.', '..', '//' or trailing '/')");
        }
    }

    private static void RequireNotReserved(string key, string target)
    {
        foreach (string reserved in s_reservedTargets)
        {
            if (target == reserved || target.StartsWith(reserved + "/", StringComparison.Ordinal))
            {
                throw new PolicyException(key, $"'{target}' is inside {reserved}, which the sandbox builds itself");
            }
        }
    }

    /// <summary>
    /// Root maps the sandbox's 65536 ids onto <c>HostIdBase</c> and up. A base of 0 would make the
    /// sandbox's root the host's root, and a range past 2^32 - 1 (the kernel's "no id") cannot be
    /// mapped, so neither is accepted, whatever else the policy says.
    /// </summary>
    private static void ValidateHostIds(uint hostIdBase)
    {
        if (hostIdBase == 0)
        {
            throw new PolicyException(
                "host_id_base", "0 would map the sandbox's root to the host's root; use an unused range such as 1000000000");
        }

        if (hostIdBase > uint.MaxValue - 1 - (SandboxUser.MaxId + 1))
        {
            throw new PolicyException("host_id_base", $"{hostIdBase} leaves no room for {SandboxUser.MaxId + 1} ids below 2^32 - 1");
        }
    }

    /// <summary>
    /// Impossible cgroup limits are refused here, before any cgroup exists, so <c>confine policy
    /// validate</c> catches them too. Whether the host can enforce them is the cgroup backend's to say.
    /// </summary>
    private static void ValidateResources(ResourceLimits resources)
    {
        if (resources.MemoryBytes is <= 0)
        {
            throw new PolicyException("resources.memory", $"must be positive, not {resources.MemoryBytes}; leave it unset for no limit");
        }

        if (resources.MemorySwapBytes is long swap)
        {
            if (resources.MemoryBytes is not long memory)
            {
                throw new PolicyException("resources.memory_swap", "needs resources.memory: it is memory plus swap");
            }

            if (swap != -1 && swap < memory)
            {
                throw new PolicyException(
                    "resources.memory_swap",
                    $"{swap} bytes is below the memory limit of {memory} bytes; it counts memory plus swap (-1 for unlimited swap)");
            }
        }

        if (resources.Cpus is double cpus && (!double.IsFinite(cpus) || cpus <= 0))
        {
            throw new PolicyException("resources.cpus", $"must be a positive number of cores, not {cpus}");
        }

        if (resources.CpusetCpus is string cpuset && !IsCpuList(cpuset))
        {
            throw new PolicyException("resources.cpuset_cpus", $"'{cpuset}' is not a CPU list such as 0-3,5");
        }

        if (resources.CpuTime > Units.MaxDuration)
        {
            throw new PolicyException("resources.cpu_time", $"must be at most {Units.MaxDuration.TotalDays:0} days");
        }

        if (resources.CpuTime is TimeSpan cpuTime && cpuTime <= TimeSpan.Zero)
        {
            throw new PolicyException("resources.cpu_time", $"must be positive, not {cpuTime}; leave it unset for no limit");
        }

        if (resources.PidsLimit is <= 0)
        {
            throw new PolicyException(
                "resources.pids_limit", $"must be positive, not {resources.PidsLimit}; leave it unset for no limit");
        }

        var devices = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < resources.DeviceIo.Length; i++)
        {
            DeviceIoLimit device = resources.DeviceIo[i];
            string key = $"resources.device_io[{i}]";
            if (string.IsNullOrWhiteSpace(device.Device))
            {
                throw new PolicyException($"{key}.device", "names no device");
            }

            if (!devices.Add(device.Device))
            {
                throw new PolicyException($"{key}.device", $"'{device.Device}' is limited twice");
            }

            foreach ((string field, long? rate) in (ReadOnlySpan<(string, long?)>)
                [("read_bps", device.ReadBps), ("write_bps", device.WriteBps), ("read_iops", device.ReadIops), ("write_iops", device.WriteIops)])
            {
                if (rate is <= 0)
                {
                    throw new PolicyException($"{key}.{field}", $"must be positive, not {rate}");
                }
            }

            if (device.ReadBps is null && device.WriteBps is null && device.ReadIops is null && device.WriteIops is null)
            {
                throw new PolicyException(key, $"sets no limit for '{device.Device}'");
            }
        }

        if (resources.CgroupParent is string parent
            && (parent.Length == 0 || parent.Contains('\0') || parent.Split('/').Any(p => p is "." or "..")))
        {
            throw new PolicyException("resources.cgroup_parent", $"'{parent}' is not a cgroup path without '.' or '..'");
        }
    }

    /// <summary>The kernel's list format: comma-separated numbers and ranges (<c>0-3,5,8-9</c>).</summary>
    private static bool IsCpuList(string text) =>
        text.Length > 0 && text.Split(',').All(part =>
        {
            string[] range = part.Split('-');
            return range.Length is 1 or 2
                && range.All(n => n.Length is > 0 and < 6 && n.All(char.IsAsciiDigit))
                && (range.Length == 1 || int.Parse(range[0]) <= int.Parse(range[1]));
        });

    private static void ValidateSeccompProfile(string profile)
    {
        // "unconfined" turns filtering off, as Docker's seccomp=unconfined does: the operator's
        // explicit choice, shown with its origin by `confine policy show`.
        if (PolicyFile.BuiltinSeccompProfiles.Contains(profile) || profile == Running.SeccompPrograms.Unconfined)
        {
            return;
        }

        if (!profile.StartsWith('/'))
        {
            throw new PolicyException(
                "seccomp_profile", $"'{profile}' is not a built-in profile (default, strict, permissive, unconfined) or an absolute path");
        }

        if (!File.Exists(profile))
        {
            throw new PolicyException("seccomp_profile", $"'{profile}' does not exist");
        }
    }
}
