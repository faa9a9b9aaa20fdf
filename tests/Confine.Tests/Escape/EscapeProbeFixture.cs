using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Confine.Tests.Support;

namespace Confine.Tests.Escape;

/// <summary>The escape tests run alone: the host checks count processes and cgroups that a concurrent test would add.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class EscapeCollection : ICollectionFixture<EscapeProbeFixture>
{
    public const string Name = "Escape";
}

/// <summary>One sandbox run of the probe, and the host as it was after it.</summary>
/// <param name="Probes">The probes it ran (a group, or under maximum one recorded probe of it).</param>
/// <param name="HostChanges">What the run changed on the host; empty when nothing.</param>
public sealed record EscapeRun(
    string Group, IReadOnlyList<string> Probes, Verdict Verdict, IReadOnlyDictionary<string, string> Outcomes,
    IReadOnlyList<string> HostChanges, int TcpConnectionsAccepted, int AbstractConnectionsAccepted);

/// <summary>
/// Compiles the escape probe and a setuid binary, sets up host services the probe must not reach (a TCP
/// listener on the host's loopback and an abstract unix socket), a sentinel file outside every bind and
/// host processes under the sandbox's own host ids (kill(-1) targets), then runs the probe under every
/// <see cref="EscapeConfiguration"/>: as root through the library and rootless through the CLI, at each
/// isolation level. The host is read before and after every run.
/// </summary>
public sealed class EscapeProbeFixture : IDisposable
{
    private readonly string _directory;
    private readonly string _sentinelDirectory;
    private readonly TcpListener _tcp;
    private readonly Socket _abstract;
    private readonly List<Process> _survivors = [];
    private readonly string _marker;
    private readonly string[] _hostFiles;

    public EscapeProbeFixture()
    {
        _directory = Directory.CreateTempSubdirectory("confine-probe-").FullName;
        File.SetUnixFileMode(_directory, (UnixFileMode)0x1ed);
        Compile("probe.c", Path.Combine(_directory, "probe"));
        MakeSetuidBinaries();

        _sentinelDirectory = Directory.CreateTempSubdirectory("confine-sentinel-").FullName;
        string sentinel = Path.Combine(_sentinelDirectory, "sentinel");
        File.WriteAllText(sentinel, "the sandbox must not see or change this file\n");

        _tcp = new TcpListener(IPAddress.Loopback, 0);
        _tcp.Start();
        int port = ((IPEndPoint)_tcp.LocalEndpoint).Port;
        // Every process of the probe carries the marker in its command line (the abstract socket's name).
        _marker = $"confine-escape-{Guid.NewGuid():N}";
        _abstract = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _abstract.Bind(new UnixDomainSocketEndPoint("\0" + _marker));
        _abstract.Listen();

        // kill(-1) reaches every process of the caller's uid that it can see. These run as the host
        // ids of the sandbox's root (root runs, rootless runs), so only the PID namespace hides them.
        foreach (uint uid in (uint[])[SandboxPolicy.Default.HostIdBase, ConfineCli.UnprivilegedId])
        {
            _survivors.Add(Process.Start("setpriv", [$"--reuid={uid}", $"--regid={uid}", "--clear-groups", "sleep", "600"])
                ?? throw new InvalidOperationException("setpriv did not start"));
        }

        _hostFiles =
        [
            sentinel, "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/sysrq", "/proc/sys/kernel/hostname",
            "/sys/kernel/uevent_helper", "/sys/power/state",
            .. HostState.HierarchyRootFiles("release_agent"), .. HostState.HierarchyRootFiles("notify_on_release"),
        ];

        string[] command = ["/probe/probe", port.ToString(System.Globalization.CultureInfo.InvariantCulture), _marker, sentinel];
        try
        {
            foreach (EscapeConfiguration configuration in EscapeConfiguration.All)
            {
                Runs[configuration.Name] = RunConfiguration(configuration, command);
            }
        }
        catch
        {
            // xunit disposes only a fixture it could construct: end the host processes here.
            Dispose();
            throw;
        }
    }

    /// <summary>The host processes kill(-1) inside must not reach, and their host uids.</summary>
    public IReadOnlyList<Process> Survivors => _survivors;

    /// <summary>Every run of each configuration, by the configuration's name.</summary>
    public Dictionary<string, List<EscapeRun>> Runs { get; } = [];

    /// <summary>The outcome of each probe under a configuration, and the run that made it.</summary>
    public (string? Outcome, EscapeRun Run) Outcome(string configuration, string probe)
    {
        List<EscapeRun> runs = Runs[configuration];
        EscapeRun run = runs.LastOrDefault(r => r.Probes.Contains(probe)) ?? runs[0];
        return (run.Outcomes.GetValueOrDefault(probe), run);
    }

    public void Dispose()
    {
        foreach (Process survivor in _survivors)
        {
            if (!survivor.HasExited)
            {
                survivor.Kill();
                survivor.WaitForExit();
            }

            survivor.Dispose();
        }

        _tcp.Stop();
        _abstract.Dispose();
        Directory.Delete(_directory, recursive: true);
        Directory.Delete(_sentinelDirectory, recursive: true);
    }

    private List<EscapeRun> RunConfiguration(EscapeConfiguration configuration, string[] command)
    {
        var runs = new List<EscapeRun>();
        foreach (IGrouping<string, EscapeProbe> group in EscapeProbes.All.GroupBy(p => p.Group))
        {
            if (configuration.KillsOnViolation)
            {
                // A recorded call ends the run: each such probe gets a sandbox of its own, the rest share one.
                string[] rest = [.. group.Where(p => p.Syscall is null).Select(p => p.Name)];
                if (rest.Length > 0)
                {
                    runs.Add(Run(configuration, command, group.Key, rest));
                }

                runs.AddRange(group.Where(p => p.Syscall is not null).Select(p => Run(configuration, command, group.Key, [p.Name])));
            }
            else
            {
                runs.Add(Run(configuration, command, group.Key, [.. group.Select(p => p.Name)]));
            }
        }

        return runs;
    }

    private EscapeRun Run(EscapeConfiguration configuration, string[] command, string group, string[] probes)
    {
        HostState before = HostState.Read(_hostFiles, [_marker], _survivors);
        string[] full = [.. command, "--only", string.Join(',', probes)];
        bool setuid = group == EscapeProbes.Setuid;

        Verdict verdict;
        if (configuration.Rootless)
        {
            List<string> arguments = ["run", "--json", "--allow-degrade", "-v", $"{_directory}:/probe"];
            if (configuration.Level is IsolationLevel level)
            {
                arguments.AddRange(["--level", IsolationLevels.Name(level)]);
            }

            if (setuid)
            {
                arguments.AddRange(["--user", $"{EscapeProbes.SetuidRunUid}:{EscapeProbes.SetuidRunUid}"]);
            }

            CliResult cli = ConfineCli.Run([.. arguments, "--", .. full], unprivileged: true);
            verdict = VerdictJson.Deserialize(cli.Stdout);
        }
        else
        {
            SandboxPolicy policy = configuration.Level is IsolationLevel level ? IsolationLevels.Policy(level) : SandboxPolicy.Default;
            policy = policy with { Binds = [.. policy.Binds, new BindMount(_directory, "/probe")] };
            if (setuid)
            {
                policy = policy with { User = new SandboxUser(EscapeProbes.SetuidRunUid, EscapeProbes.SetuidRunUid) };
            }

            verdict = Sandbox.RunAsync(policy, full).GetAwaiter().GetResult();
        }

        // A killed run may leave its processes for a moment while the kernel tears the namespace down.
        HostState after = HostState.Read(_hostFiles, [_marker], _survivors);
        List<string> changes = HostState.Changes(before, after);
        for (int attempt = 0; attempt < 50 && changes.Count > 0; attempt++)
        {
            Thread.Sleep(20);
            after = HostState.Read(_hostFiles, [_marker], _survivors);
            changes = HostState.Changes(before, after);
        }

        return new EscapeRun(group, probes, verdict, Parse(verdict.Stdout.Text), changes, Accept(_tcp), Accept(_abstract));
    }

    /// <summary>Takes every connection the run left pending, so the next run is counted alone.</summary>
    private static int Accept(TcpListener listener)
    {
        int count = 0;
        while (listener.Pending())
        {
            listener.AcceptSocket().Dispose();
            count++;
        }

        return count;
    }

    private static int Accept(Socket listener)
    {
        int count = 0;
        while (listener.Poll(0, SelectMode.SelectRead))
        {
            listener.Accept().Dispose();
            count++;
        }

        return count;
    }

    /// <summary>
    /// setuid.c copied three times, setuid and owned by the host's root and by the host ids of the
    /// sandbox's root as root (HostIdBase) and rootless (the unprivileged test user); and three times
    /// more with CAP_SYS_ADMIN as a file capability for the same three root ids.
    /// </summary>
    private void MakeSetuidBinaries()
    {
        string binary = Path.Combine(_directory, "setuid");
        Compile("setuid.c", binary);
        foreach (uint owner in (uint[])[0, SandboxPolicy.Default.HostIdBase, ConfineCli.UnprivilegedId])
        {
            string copy = Path.Combine(_directory, $"suid-{owner}");
            File.Copy(binary, copy);
            Run("chown", [$"{owner}:{owner}", copy]);
            File.SetUnixFileMode(copy, (UnixFileMode)0x9ed); // 04755

            // CAP_SYS_ADMIN as a file capability: plain (for the host's root) or namespaced, whose
            // root id is the one the sandbox's root has on the host.
            string capable = Path.Combine(_directory, $"fcap-{owner}");
            File.Copy(binary, capable);
            File.SetUnixFileMode(capable, (UnixFileMode)0x1ed); // 0755
            Run("setcap", owner == 0 ? ["cap_sys_admin+ep", capable] : ["-n", $"{owner}", "cap_sys_admin+ep", capable]);
        }
    }

    private static void Run(string program, string[] arguments)
    {
        using Process process = Process.Start(program, arguments) ?? throw new InvalidOperationException($"{program} did not start");
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} failed");
        }
    }

    private static void Compile(string source, string output)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Escape", source);
        using Process compile = Process.Start("cc", ["-O2", "-Wall", "-o", output, path])
            ?? throw new InvalidOperationException("cc did not start");
        compile.WaitForExit();
        if (compile.ExitCode != 0)
        {
            throw new InvalidOperationException($"{source} did not compile");
        }
    }

    /// <summary>
    /// The probe's outcomes by name. A probe announced ("> NAME") without an outcome was ended with its
    /// sandbox: "killed".
    /// </summary>
    private static Dictionary<string, string> Parse(string? output)
    {
        var outcomes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in (output ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("> ", StringComparison.Ordinal))
            {
                outcomes.TryAdd(line[2..], "killed");
                continue;
            }

            int space = line.IndexOf(' ');
            if (space > 0)
            {
                outcomes[line[..space]] = line[(space + 1)..];
            }
        }

        return outcomes;
    }
}
