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

        if (policy.SeccompProfile is not ("default" or "strict" or "permissive" or "unconfined")
            && !(policy.SeccompProfile.StartsWith('/') && File.Exists(policy.SeccompProfile)))
        {
            throw new PolicyException(
                "seccomp_profile",
                $"'{policy.SeccompProfile}' is neither a built-in profile (default, strict, permissive, unconfined) nor an existing profile file's absolute path");
        }

        for (int i = 0; i < policy.Rlimits.Length; i++)
        {
            Rlimit limit = policy.Rlimits[i];
            if (limit.Soft > limit.Hard)
            {
                throw new PolicyException($"rlimits[{i}]", $"soft limit {limit.Soft} is above the hard limit {limit.Hard}");
            }
        }
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
}
