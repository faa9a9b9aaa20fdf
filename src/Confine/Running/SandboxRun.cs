using System.Diagnostics;
using System.Runtime.InteropServices;
using Confine.Native;
using Confine.Planning;
using Microsoft.Win32.SafeHandles;
using static Confine.Native.HelperProtocol;

namespace Confine.Running;

/// <summary>Why Confine ended a run before the command did.</summary>
internal enum KillReason
{
    None,
    Timeout,
    OutputLimit,
    Cancelled,
    Setup,
}

/// <summary>
/// One run of one command: starts the helper, serves its pipes and reports, enforces the limits
/// that are measured from outside, and turns what happened into a <see cref="Verdict"/>.
/// </summary>
internal sealed class SandboxRun : IReportSink
{
    private SandboxPolicy _policy;
    private readonly List<string> _weakened = [];
    private readonly IReadOnlyList<string> _command;
    private readonly SandboxIO _io;
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _reportsClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PreparedSandbox? _sandbox;
    private bool _prepared;
    private Timer? _timeoutTimer;
    private KillReason _killReason;
    private long _killTimestamp;
    private HelperReport? _exec;
    private HelperReport? _exit;
    private HelperReport? _initGone;
    private HelperReport? _error;

    public SandboxRun(SandboxPolicy policy, IReadOnlyList<string> command, SandboxIO io)
    {
        _policy = policy;
        _command = command;
        _io = io;
    }

    public async Task<Verdict> RunAsync(CancellationToken cancellationToken)
    {
        if (!HelperProcess.IsAvailable(out string problem))
        {
            return SetupFailed("spawn_helper", null, HelperProcess.Path, problem);
        }

        if (Preflight() is Verdict refused)
        {
            return refused;
        }

        var extras = new PlanExtras();
        SandboxPlan plan = SandboxPlanner.Build(_policy, _command, HostIdentity.Current, extras);

        PreparedSandbox sandbox;
        try
        {
            (sandbox, _prepared) = SandboxPool.Take(plan.Setup, poolable: extras.CgroupProcsFiles.Count == 0);
        }
        catch (ErrnoException e)
        {
            return SetupFailed("spawn_helper", e.Errno, HelperProcess.Path, $"cannot start the helper: {e.Message}");
        }

        _sandbox = sandbox;
        var stdout = new OutputCollector(_policy.StdoutLimitBytes, _io.Stdout, () => Kill(KillReason.OutputLimit));
        var stderr = new OutputCollector(_policy.StderrLimitBytes, _io.Stderr, () => Kill(KillReason.OutputLimit));
        sandbox.Attach(this);
        sandbox.SendCommandPlan(plan.Command);
        IoLoop.Shared.Register(sandbox.Stdout, stdout.OnReadable);
        IoLoop.Shared.Register(sandbox.Stderr, stderr.OnReadable);
        Task stdinTask = FeedStdinAsync(sandbox.Stdin);

        using CancellationTokenRegistration cancellation = cancellationToken.Register(() => Kill(KillReason.Cancelled));

        await Task.WhenAll(_reportsClosed.Task, stdout.Closed, stderr.Closed).ConfigureAwait(false);

        // The report socket closes when the outer helper exits, so this wait is at most a moment.
        int helperStatus = sandbox.Reap();
        lock (_gate)
        {
            _timeoutTimer?.Dispose();
            sandbox.Kill();
        }

        await stdinTask.ConfigureAwait(false);
        return BuildVerdict(stdout, stderr, helperStatus);
    }

    /// <summary>
    /// Checks that the host can give what the policy asks for. A missing feature fails the run with
    /// the fix, unless the policy allows degrading; then the feature is dropped and listed.
    /// </summary>
    private Verdict? Preflight()
    {
        if (_policy.Landlock && Landlock.Abi == 0)
        {
            const string Missing = "landlock: this kernel has no Landlock (Linux 5.13 or later, with landlock in the lsm= list)";
            if (!_policy.AllowDegrade)
            {
                return SetupFailed("preflight", null, "landlock", $"{Missing}; allow running without it with --allow-degrade");
            }

            _weakened.Add(Missing);
            _policy = _policy with { Landlock = false };
        }

        return null;
    }

    /// <summary>Ends the whole sandbox: the helper kills the init through its pidfd, which takes every process inside.</summary>
    private void Kill(KillReason reason)
    {
        lock (_gate)
        {
            if (_killReason == KillReason.None)
            {
                _killReason = reason;
                _killTimestamp = Stopwatch.GetTimestamp();
            }

            _sandbox?.Kill();
        }
    }

    void IReportSink.OnReport(HelperReport report) => Handle(report);

    void IReportSink.OnDescriptor(HelperReport report, SafeFileHandle descriptor) => OnDescriptor(report, descriptor);

    void IReportSink.OnReportsClosed() => _reportsClosed.TrySetResult();

    /// <summary>A descriptor the helper passed over the report socket.</summary>
    private void OnDescriptor(HelperReport report, SafeFileHandle descriptor)
    {
        if (report.Type != REPORT_LISTENER)
        {
            descriptor.Dispose();
            throw new InvalidDataException($"helper report type {report.Type} carried a descriptor");
        }

        // The seccomp layer takes the listener; until it exists, a listener is refused by closing
        // it, which makes every notifying call in the sandbox fail with ENOSYS.
        descriptor.Dispose();
    }

    private void Handle(HelperReport report)
    {
        lock (_gate)
        {
            switch (report.Type)
            {
                case REPORT_EXEC:
                    _exec = report;
                    if (_policy.Timeout is TimeSpan timeout && _killReason == KillReason.None)
                    {
                        _timeoutTimer = new Timer(_ => Kill(KillReason.Timeout), null, timeout, Timeout.InfiniteTimeSpan);
                    }

                    break;
                case REPORT_EXIT:
                    _exit = report;
                    break;
                case REPORT_INIT_GONE:
                    _initGone = report;
                    break;
                case REPORT_ERROR:
                    // The first failure is the cause; later ones are its consequences.
                    _error ??= report;
                    break;
                case REPORT_INIT_PID:
                case REPORT_READY:
                    break;
                default:
                    throw new InvalidDataException($"unknown helper report type {report.Type}");
            }
        }
    }

    private async Task FeedStdinAsync(SafeFileHandle stdinWrite)
    {
        using SafeFileHandle handle = stdinWrite;
        StdinSource source = _io.Stdin;
        if (source is StdinSource.Bytes { Data.Length: 0 })
        {
            return;
        }

        // A dedicated thread: a stalled reader inside the sandbox must not hold a pool thread.
        await Task.Factory.StartNew(
            () =>
            {
                using var pipe = new FileStream(handle, FileAccess.Write, bufferSize: 0);
                try
                {
                    switch (source)
                    {
                        case StdinSource.Bytes bytes:
                            pipe.Write(bytes.Data.Span);
                            break;
                        case StdinSource.HostFile file:
                            using (FileStream input = File.OpenRead(file.Path))
                            {
                                input.CopyTo(pipe);
                            }

                            break;
                        case StdinSource.StreamSource stream:
                            stream.Stream.CopyTo(pipe);
                            break;
                    }
                }
                catch (IOException)
                {
                    // The command closed its input or ended before reading all of it; that is its choice.
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).ConfigureAwait(false);
    }

    private double SecondsSinceStart(long monotonicNs) => Stopwatch.Frequency == 1_000_000_000
        ? Math.Max(0, (monotonicNs - _startTimestamp) / 1e9)
        : Stopwatch.GetElapsedTime(_startTimestamp).TotalSeconds;

    private Verdict BuildVerdict(OutputCollector stdout, OutputCollector stderr, int helperStatus)
    {
        var verdict = new Verdict
        {
            Status = VerdictStatus.Ok,
            Stdout = stdout.ToCapturedOutput(),
            Stderr = stderr.ToCapturedOutput(),
            Weakened = [.. _weakened],
            PreparedAhead = _prepared,
        };

        if (_exec is HelperReport exec)
        {
            verdict = verdict with { SetupTimeSeconds = SecondsSinceStart(exec.TimeNs) };
            long endNs = _exit?.TimeNs ?? _initGone?.TimeNs ?? exec.TimeNs;
            if (_exit is null && _killTimestamp != 0 && Stopwatch.Frequency == 1_000_000_000)
            {
                endNs = _killTimestamp;
            }

            verdict = verdict with { WallTimeSeconds = Math.Max(0, (endNs - exec.TimeNs) / 1e9) };
        }

        if (_exit is HelperReport exit)
        {
            verdict = verdict with
            {
                CpuUserSeconds = exit.UserMicroseconds / 1e6,
                CpuSystemSeconds = exit.SystemMicroseconds / 1e6,
                MemoryPeakBytes = exit.MaxRssKilobytes * 1024,
            };
        }

        if (_error is HelperReport error)
        {
            return verdict with
            {
                Status = VerdictStatus.SetupFailed,
                Error = SetupErrors.Describe(error, _policy, _command),
            };
        }

        switch (_killReason)
        {
            case KillReason.Timeout:
                return verdict with
                {
                    Status = VerdictStatus.Timeout,
                    Signal = SIGKILL,
                    SignalName = Signals.Name(SIGKILL),
                    Limit = new LimitHit("timeout", $"{_policy.Timeout!.Value.TotalSeconds}s"),
                };
            case KillReason.OutputLimit:
                string stream = stdout.Truncated ? "stdout" : "stderr";
                long limit = stdout.Truncated ? _policy.StdoutLimitBytes : _policy.StderrLimitBytes;
                return verdict with
                {
                    Status = VerdictStatus.OutputLimit,
                    Signal = SIGKILL,
                    SignalName = Signals.Name(SIGKILL),
                    Limit = new LimitHit(stream, $"{limit} bytes"),
                };
            case KillReason.Cancelled:
                return verdict with { Status = VerdictStatus.Cancelled, Signal = SIGKILL, SignalName = Signals.Name(SIGKILL) };
        }

        if (_exit is HelperReport ended)
        {
            int status = ended.Status;
            if (WaitStatus.Exited(status))
            {
                int code = WaitStatus.ExitCode(status);
                return verdict with { Status = code == 0 ? VerdictStatus.Ok : VerdictStatus.ExitNonzero, ExitCode = code };
            }

            int signal = WaitStatus.TermSignal(status);
            return verdict with { Status = VerdictStatus.Signaled, Signal = signal, SignalName = Signals.Name(signal) };
        }

        string how = _initGone is HelperReport gone ? WaitStatus.Describe(gone.Status) : WaitStatus.Describe(helperStatus);
        return verdict with
        {
            Status = VerdictStatus.SetupFailed,
            Error = new SetupError
            {
                Step = "supervise",
                Message = $"the sandbox ended before reporting the command's status ({how})",
            },
        };
    }

    private const int SIGKILL = 9;

    private Verdict SetupFailed(string step, int? errno, string detail, string message) => new()
    {
        Status = VerdictStatus.SetupFailed,
        Error = new SetupError
        {
            Step = step,
            Errno = errno,
            ErrnoName = errno is int e ? Errno.Name(e) : null,
            Detail = detail,
            Message = message,
        },
    };
}
