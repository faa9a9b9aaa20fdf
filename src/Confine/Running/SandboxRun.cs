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
internal sealed class SandboxRun
{
    private SandboxPolicy _policy;
    private readonly List<string> _weakened = [];
    private readonly IReadOnlyList<string> _command;
    private readonly SandboxIO _io;
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _reportsClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private SafeFileHandle? _lifeline;
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

        byte[] plan = SandboxPlanner.Build(_policy, _command, HostIdentity.Current, new PlanExtras());

        var stdout = new OutputCollector(_policy.StdoutLimitBytes, _io.Stdout, () => Kill(KillReason.OutputLimit));
        var stderr = new OutputCollector(_policy.StderrLimitBytes, _io.Stderr, () => Kill(KillReason.OutputLimit));

        int helperPid;
        Task stdinTask;
        var (stdinRead, stdinWrite) = Posix.Pipe();
        var (stdoutRead, stdoutWrite) = Posix.Pipe();
        var (stderrRead, stderrWrite) = Posix.Pipe();
        var (reportOurs, reportTheirs) = Posix.SeqPacketPair();
        var (lifelineRead, lifelineWrite) = Posix.Pipe();
        _lifeline = lifelineWrite;
        using (SafeFileHandle planFile = Posix.MemoryFile("confine-plan", plan))
        using (stdinRead)
        using (stdoutWrite)
        using (stderrWrite)
        using (reportTheirs)
        using (lifelineRead)
        {
            try
            {
                helperPid = HelperProcess.Spawn([stdinRead, stdoutWrite, stderrWrite, planFile, reportTheirs, lifelineRead]);
            }
            catch (ErrnoException e)
            {
                foreach (SafeFileHandle handle in (SafeFileHandle[])[stdinWrite, stdoutRead, stderrRead, reportOurs, lifelineWrite])
                {
                    handle.Dispose();
                }

                return SetupFailed("spawn_helper", e.Errno, HelperProcess.Path, $"cannot start the helper: {e.Message}");
            }
        }

        IoLoop loop = IoLoop.Shared;
        loop.Register(stdoutRead, stdout.OnReadable);
        loop.Register(stderrRead, stderr.OnReadable);
        loop.Register(reportOurs, OnReport);
        stdinTask = FeedStdinAsync(stdinWrite);

        using CancellationTokenRegistration cancellation = cancellationToken.Register(() => Kill(KillReason.Cancelled));

        await Task.WhenAll(_reportsClosed.Task, stdout.Closed, stderr.Closed).ConfigureAwait(false);

        // The report socket closes when the outer helper exits, so this wait is at most a moment.
        int helperStatus = Posix.WaitPid(helperPid);
        lock (_gate)
        {
            _timeoutTimer?.Dispose();
            _lifeline?.Dispose();
            _lifeline = null;
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

            _lifeline?.Dispose();
            _lifeline = null;
        }
    }

    private unsafe bool OnReport(SafeFileHandle handle)
    {
        Span<byte> buffer = stackalloc byte[ReportSize + 64];
        // Room for one SCM_RIGHTS header with one descriptor: cmsghdr is 16 bytes on x86_64.
        Span<byte> control = stackalloc byte[64];
        int fd = (int)handle.DangerousGetHandle();
        while (true)
        {
            nint n;
            int received = -1;
            fixed (byte* start = buffer)
            fixed (byte* controlStart = control)
            {
                control.Clear();
                var iov = new Interop.IoVec { Base = start, Length = (nuint)buffer.Length };
                var message = new Interop.MsgHdr
                {
                    Iov = &iov,
                    IovLength = 1,
                    Control = controlStart,
                    ControlLength = (nuint)control.Length,
                };
                n = Interop.recvmsg(fd, &message, Interop.MSG_DONTWAIT | Interop.MSG_CMSG_CLOEXEC);
                if (n > 0 && message.ControlLength >= 20)
                {
                    // struct cmsghdr { size_t len; int level; int type; } then the descriptor.
                    int level = *(int*)(controlStart + 8);
                    int type = *(int*)(controlStart + 12);
                    if (level == Interop.SOL_SOCKET && type == Interop.SCM_RIGHTS)
                    {
                        received = *(int*)(controlStart + 16);
                    }
                }
            }

            if (received >= 0)
            {
                OnDescriptor(HelperReport.Parse(buffer[..(int)n]), new SafeFileHandle(received, ownsHandle: true));
                continue;
            }

            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Interop.EINTR)
                {
                    continue;
                }

                if (errno == Interop.EAGAIN)
                {
                    return true;
                }
            }

            if (n <= 0)
            {
                _reportsClosed.TrySetResult();
                return false;
            }

            Handle(HelperReport.Parse(buffer[..(int)n]));
        }
    }

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
