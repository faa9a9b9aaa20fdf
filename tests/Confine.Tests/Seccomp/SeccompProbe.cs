using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

/// <summary>What one probe call returned.</summary>
internal readonly record struct ProbeResult(long Result, int Errno);

/// <summary>What a run under a filter produced.</summary>
internal sealed record ProbeRun(
    int ExitCode,
    string Stdout,
    string Stderr,
    ImmutableArray<Violation> Violations,
    IReadOnlyDictionary<string, ProbeResult> Results,
    bool NotifierStoppedByItself,
    Exception? NotifierError = null);

/// <summary>
/// One run of <c>seccomp-probe</c>: it loads a compiled program into a fresh process, then runs probe
/// calls or a command under it. With a listener, the filter's notifications are answered by a real
/// <see cref="SeccompNotifier"/> in this process.
/// </summary>
internal sealed class SeccompProbe : IDisposable
{
    private readonly Process _process;
    private readonly Task<string> _stdout;
    private readonly Task<string> _stderr;
    private readonly string? _programPath;
    private readonly string _socketPath;

    private SeccompProbe(byte[]? program, bool listener, IEnumerable<string> arguments, string[] wrapper, Action<Violation>? recorded)
    {
        _programPath = program is null ? null : NativeTools.WriteTemporary(program, ".bpf");
        _socketPath = Path.Combine(NativeTools.WorkDirectory, $"{Guid.NewGuid():N}.sock");
        using Socket? server = listener ? Listen(_socketPath) : null;

        ProcessStartInfo start = new(wrapper.Length > 0 ? wrapper[0] : NativeTools.Probe)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in wrapper.Skip(1).Concat(wrapper.Length > 0 ? [NativeTools.Probe] : []))
        {
            start.ArgumentList.Add(argument);
        }

        if (listener)
        {
            start.ArgumentList.Add("--listener");
            start.ArgumentList.Add(_socketPath);
        }

        start.ArgumentList.Add(_programPath ?? "none");
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException("cannot start seccomp-probe");
        _stdout = _process.StandardOutput.ReadToEndAsync();
        _stderr = _process.StandardError.ReadToEndAsync();
        if (server is not null)
        {
            Notifier = AcceptListener(server);
            if (Notifier is not null)
            {
                Notifier.Recorded += recorded;
                Notifier.Start();
            }
        }
    }

    /// <summary>The notifier answering this run's filter, once the probe has sent its listener.</summary>
    public SeccompNotifier? Notifier { get; }

    /// <summary>The probe's standard input (the <c>pause</c> probe waits for a line on it).</summary>
    public StreamWriter Input => _process.StandardInput;

    /// <summary>Runs the named probes under <paramref name="program"/>, or with no filter when it is null.</summary>
    public static ProbeRun Probe(byte[]? program, bool listener, string[] probes, Action<Violation>? recorded = null)
    {
        using SeccompProbe probe = new(program, listener, ["probe", .. probes], [], recorded);
        return probe.WaitForExit();
    }

    /// <summary>Executes <paramref name="command"/> under <paramref name="program"/>.</summary>
    public static ProbeRun Exec(byte[] program, bool listener, params string[] command)
    {
        using SeccompProbe probe = new(program, listener, ["exec", .. command], [], null);
        return probe.WaitForExit();
    }

    /// <summary>Starts the probes without waiting; <paramref name="wrapper"/> runs the probe through another program.</summary>
    public static SeccompProbe Start(byte[] program, bool listener, string[] probes, params string[] wrapper) =>
        new(program, listener, ["probe", .. probes], wrapper, null);

    /// <summary>Waits for the probe to end, then for the notifier to stop on its own (at most 10 s).</summary>
    public ProbeRun WaitForExit()
    {
        if (!_process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException("seccomp-probe did not finish in 60 s");
        }

        _process.WaitForExit();
        bool stoppedByItself = Notifier is not null
            && Task.WhenAny(Notifier.Completion, Task.Delay(TimeSpan.FromSeconds(10))).Result == Notifier.Completion;
        Notifier?.Stop();

        return new ProbeRun(
            _process.ExitCode,
            _stdout.Result,
            _stderr.Result,
            Notifier?.Violations ?? [],
            ParseResults(_stdout.Result),
            stoppedByItself,
            Notifier?.Completion.Exception?.InnerException);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        Notifier?.Dispose();
        _process.Dispose();
        if (_programPath is not null)
        {
            File.Delete(_programPath);
        }

        File.Delete(_socketPath);
    }

    private static Socket Listen(string path)
    {
        Socket server = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        server.Listen(1);
        return server;
    }

    // Null when the probe ended before connecting (it failed to load the filter).
    private SeccompNotifier? AcceptListener(Socket server)
    {
        Task<Socket> accept = server.AcceptAsync();
        Task exited = _process.WaitForExitAsync();
        if (Task.WaitAny([accept, exited], TimeSpan.FromSeconds(30)) < 0)
        {
            throw new TimeoutException("seccomp-probe never connected to the listener socket");
        }

        // A probe that ends quickly may have connected and sent its listener before it exited: the
        // connection is then still queued, and the descriptor with it.
        if (!accept.Wait(TimeSpan.FromSeconds(accept.IsCompleted ? 0 : 2)))
        {
            return null;
        }

        using Socket connection = accept.Result;
        return new SeccompNotifier(SeccompInterop.ReceiveDescriptor(connection.SafeHandle));
    }

    private static Dictionary<string, ProbeResult> ParseResults(string stdout)
    {
        Dictionary<string, ProbeResult> results = [];
        foreach (string line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split(' ');
            if (fields.Length == 3
                && long.TryParse(fields[1], CultureInfo.InvariantCulture, out long result)
                && int.TryParse(fields[2], CultureInfo.InvariantCulture, out int errno))
            {
                results[fields[0]] = new ProbeResult(result, errno);
            }
        }

        return results;
    }
}
