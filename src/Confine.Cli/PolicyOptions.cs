using System.Collections.Immutable;
using System.CommandLine;

namespace Confine.Cli;

/// <summary>
/// The flags that refine a policy, named as Docker names them where Docker has an equivalent.
/// Shared by every command that builds a policy, so they cannot drift apart.
/// </summary>
internal sealed class PolicyOptions
{
    public Option<string[]> Volumes { get; } = new("--volume", "-v")
    {
        Description = "Bind a host path: HOST:SANDBOX[:ro|rw] (read-only unless rw)",
        AllowMultipleArgumentsPerToken = false,
    };

    public Option<string[]> Tmpfs { get; } = new("--tmpfs")
    {
        Description = "Mount a private tmpfs: PATH[:size=SIZE[,nr_inodes=N]]",
    };

    public Option<string?> Workdir { get; } = new("--workdir", "-w") { Description = "Working directory inside the sandbox" };

    public Option<string[]> Env { get; } = new("--env", "-e") { Description = "Set an environment variable: NAME=VALUE, or NAME to pass the caller's" };

    public Option<string?> User { get; } = new("--user", "-u") { Description = "Run as UID[:GID] inside the sandbox (default 0:0, the sandbox's own root)" };

    public Option<string?> Hostname { get; } = new("--hostname") { Description = "Hostname inside the sandbox" };

    public Option<string?> Network { get; } = new("--network") { Description = "none (own loopback only, the default) or host" };

    public Option<string?> Timeout { get; } = new("--timeout") { Description = "Wall-clock limit: 10s, 500ms, 2m" };

    public Option<string?> StdoutLimit { get; } = new("--stdout-limit") { Description = "Most bytes of standard output (default 16m)" };

    public Option<string?> StderrLimit { get; } = new("--stderr-limit") { Description = "Most bytes of standard error (default 16m)" };

    public IEnumerable<Option> All =>
        [Volumes, Tmpfs, Workdir, Env, User, Hostname, Network, Timeout, StdoutLimit, StderrLimit];

    /// <summary>Refines <paramref name="policy"/> with every flag that was given.</summary>
    public SandboxPolicy Apply(ParseResult result, SandboxPolicy policy)
    {
        foreach (string volume in result.GetValue(Volumes) ?? [])
        {
            BindMount bind = BindMount.Parse(volume);
            policy = policy with { Binds = policy.Binds.Add(bind with { Source = Path.GetFullPath(bind.Source) }) };
        }

        foreach (string tmpfs in result.GetValue(Tmpfs) ?? [])
        {
            TmpfsMount mount = ParseTmpfs(tmpfs);
            policy = policy with { Tmpfs = policy.Tmpfs.RemoveAll(t => t.Target == mount.Target).Add(mount) };
        }

        if (result.GetValue(Workdir) is string workdir)
        {
            policy = policy with { WorkingDirectory = workdir };
        }

        ImmutableSortedDictionary<string, string> environment = policy.Environment;
        foreach (string entry in result.GetValue(Env) ?? [])
        {
            int equals = entry.IndexOf('=');
            if (equals < 0)
            {
                string? inherited = Environment.GetEnvironmentVariable(entry);
                if (inherited is not null)
                {
                    environment = environment.SetItem(entry, inherited);
                }

                continue;
            }

            environment = environment.SetItem(entry[..equals], entry[(equals + 1)..]);
        }

        policy = policy with { Environment = environment };

        if (result.GetValue(User) is string user)
        {
            policy = policy with { User = SandboxUser.Parse(user) };
        }

        if (result.GetValue(Hostname) is string hostname)
        {
            policy = policy with { Hostname = hostname };
        }

        if (result.GetValue(Network) is string network)
        {
            policy = policy with
            {
                Network = network switch
                {
                    "none" => NetworkMode.None,
                    "host" => NetworkMode.Host,
                    _ => throw new PolicyException("network", $"'{network}' is not 'none' or 'host'"),
                },
            };
        }

        if (result.GetValue(Timeout) is string timeout)
        {
            policy = policy with { Timeout = Units.ParseDuration("timeout", timeout) };
        }

        if (result.GetValue(StdoutLimit) is string stdoutLimit)
        {
            policy = policy with { StdoutLimitBytes = Units.ParseSize("limits.stdout", stdoutLimit) };
        }

        if (result.GetValue(StderrLimit) is string stderrLimit)
        {
            policy = policy with { StderrLimitBytes = Units.ParseSize("limits.stderr", stderrLimit) };
        }

        return policy;
    }

    /// <summary>Parses Docker's <c>--tmpfs PATH[:size=64m,nr_inodes=N]</c>.</summary>
    internal static TmpfsMount ParseTmpfs(string text)
    {
        int colon = text.IndexOf(':');
        string target = colon < 0 ? text : text[..colon];
        long size = 64L << 20;
        long? inodes = null;
        if (colon >= 0)
        {
            foreach (string option in text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] pair = option.Split('=', 2);
                switch (pair[0])
                {
                    case "size" when pair.Length == 2:
                        size = Units.ParseSize("tmpfs.size", pair[1]);
                        break;
                    case "nr_inodes" when pair.Length == 2 && long.TryParse(pair[1], out long n):
                        inodes = n;
                        break;
                    default:
                        throw new PolicyException("tmpfs", $"'{option}' in '{text}' is not size=SIZE or nr_inodes=N");
                }
            }
        }

        return new TmpfsMount(target, size, inodes);
    }
}
