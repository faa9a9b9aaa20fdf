using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Confine.Tests.Support;

namespace Confine.Tests.Escape;

/// <summary>
/// Compiles the escape probe, sets up host services it must not reach (a TCP listener on the host's
/// loopback and an abstract unix socket), runs the probe once as root through the library and once
/// as an unprivileged user through the CLI, and records what the host looked like before and after.
/// </summary>
public sealed class EscapeProbeFixture : IDisposable
{
    private readonly string _directory;
    private readonly TcpListener _tcp;
    private readonly Socket _abstract;

    public EscapeProbeFixture()
    {
        _directory = Directory.CreateTempSubdirectory("confine-probe-").FullName;
        File.SetUnixFileMode(_directory, (UnixFileMode)0x1ed);
        string binary = Path.Combine(_directory, "probe");
        using (var compile = Process.Start("cc", ["-O2", "-Wall", "-o", binary, Path.Combine(AppContext.BaseDirectory, "Escape", "probe.c")]))
        {
            compile.WaitForExit();
            if (compile.ExitCode != 0)
            {
                throw new InvalidOperationException("the escape probe did not compile");
            }
        }

        _tcp = new TcpListener(IPAddress.Loopback, 0);
        _tcp.Start();
        int port = ((IPEndPoint)_tcp.LocalEndpoint).Port;
        string abstractName = $"confine-escape-{Guid.NewGuid():N}";
        _abstract = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _abstract.Bind(new UnixDomainSocketEndPoint("\0" + abstractName));
        _abstract.Listen();

        CorePatternBefore = File.ReadAllText("/proc/sys/kernel/core_pattern");
        string[] command = ["/probe/probe", port.ToString(), abstractName];
        var policy = SandboxPolicy.Default with { Binds = [new BindMount(_directory, "/probe")] };

        Verdict root = Sandbox.RunAsync(policy, command).GetAwaiter().GetResult();
        RootVerdict = root;
        RootOutcomes = Parse(root.Stdout.Text);

        CliResult cli = ConfineCli.Run(["run", "--json", "--allow-degrade", "-v", $"{_directory}:/probe", "--", .. command], unprivileged: true);
        RootlessVerdict = VerdictJson.Deserialize(cli.Stdout);
        RootlessOutcomes = Parse(RootlessVerdict.Stdout.Text);

        CorePatternAfter = File.ReadAllText("/proc/sys/kernel/core_pattern");
        TcpConnectionsAccepted = _tcp.Pending() ? 1 : 0;
        AbstractConnectionsAccepted = _abstract.Poll(0, SelectMode.SelectRead) ? 1 : 0;
    }

    public Verdict RootVerdict { get; }

    public Verdict RootlessVerdict { get; }

    public IReadOnlyDictionary<string, string> RootOutcomes { get; }

    public IReadOnlyDictionary<string, string> RootlessOutcomes { get; }

    public string CorePatternBefore { get; }

    public string CorePatternAfter { get; }

    public int TcpConnectionsAccepted { get; }

    public int AbstractConnectionsAccepted { get; }

    public void Dispose()
    {
        _tcp.Stop();
        _abstract.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private static Dictionary<string, string> Parse(string? output)
    {
        var outcomes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in (output ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int space = line.IndexOf(' ');
            if (space > 0)
            {
                outcomes[line[..space]] = line[(space + 1)..];
            }
        }

        return outcomes;
    }
}
