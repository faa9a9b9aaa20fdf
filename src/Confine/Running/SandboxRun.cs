using System.Collections.Immutable;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Confine.Cgroups;
using Confine.Native;
using Confine.Planning;
using Confine.Seccomp;
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
    CpuTime,
    Violation,
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
    private readonly bool _usePool;
    private readonly long _startTimestamp = Stopwatch.GetTimestamp();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _reportsClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _initEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private (ulong Id, SafeFileHandle Pidfd)? _initWatch;

    private PreparedSandbox? _sandbox;
    private byte[]? _setupPlan;
    private bool _prepared;
    private SandboxCgroup? _cgroup;
    private readonly List<SafeFileHandle> _cgroupTasks = [];
    private byte[]? _commandPlan;
    private IDisposable? _cpuTimer;
    private IDisposable? _usageTimer;
    private SeccompNotifier? _notifier;
    private string? _notifierError;
    private SeccompPrograms.Compiled? _seccomp;
    private IDisposable? _timeoutTimer;
    private KillReason _killReason;
    private bool _ended;
    private long _killTimestamp;
    private HelperReport? _exec;
    private HelperReport? _exit;
    private HelperReport? _initGone;
    private HelperReport? _error;

    /// <param name="policy">The validated policy.</param>
    /// <param name="command">The validated command.</param>
    /// <param name="io">Where the command's streams come from and go to.</param>
    /// <param name="usePool">
    /// Whether the run may take a sandbox prepared ahead and prepare one for the next run, as far as
    /// <see cref="SandboxPool.Enabled"/> allows; without, it builds its own and leaves nothing behind.
    /// </param>
    public SandboxRun(SandboxPolicy policy, IReadOnlyList<string> command, SandboxIO io, bool usePool = true)
    {
        _policy = policy;
        _command = command;
        _io = io;
        _usePool = usePool;
    }

    public async Task<Verdict> RunAsync(CancellationToken cancellationToken)
    {
        if (!HelperProcess.IsAvailable(out string problem))
        {
            return SetupFailed("spawn_helper", null, HelperProcess.Path, problem);
        }

        // A profile file that cannot be compiled is a bad policy: it throws here, before anything
        // exists. A built-in cannot be bad, and is loaded while the helper builds the sandbox.
        if (!SeccompPrograms.IsBuiltIn(_policy.SeccompProfile))
        {
            _seccomp = SeccompPrograms.For(_policy.SeccompProfile);
        }

        if (Preflight() is Verdict refused)
        {
            return refused;
        }

        if (NeedsCgroup)
        {
            // What can be checked without the host throws here; the rest waits for the cgroup itself.
            SandboxCgroup.ValidateValues(_policy.Resources);
            SandboxCgroup.NormalizeParent(_policy.Resources.CgroupParent);
        }

        try
        {
            return await RunInSandboxAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            StopWatchingInit();
            DisposeCgroupTasks();

            // Kills whatever is left in the cgroup (nothing, normally) and removes it.
            _cgroup?.Dispose();

            // The next run of this policy finds its sandbox built, or being built. Not after a sandbox
            // that could not be built: the next would fail the same way, and only take the pool's
            // place from a policy that works.
            if (_setupPlan is not null && _sandbox?.IsReady == true)
            {
                SandboxPool.Replenish(_setupPlan, _policy);
            }
        }
    }

    private bool NeedsCgroup => _policy.Resources.NeedsCgroup || _io.OnUsage is not null;

    private async Task<Verdict> RunInSandboxAsync(CancellationToken cancellationToken)
    {
        HostIdentity identity = HostIdentity.Current;
        byte[] setupPlan = SandboxPlanner.BuildSetup(_policy, identity, new PlanExtras());

        PreparedSandbox sandbox;
        try
        {
            (sandbox, _prepared) = SandboxPool.Take(setupPlan, _policy, poolable: _usePool);
            _setupPlan = _usePool ? setupPlan : null;
        }
        catch (ErrnoException e)
        {
            return SetupFailed("spawn_helper", e.Errno, HelperProcess.Path, $"cannot start the helper: {e.Message}");
        }

        _sandbox = sandbox;
        _io.OnSandboxStarting?.Invoke();

        if (await PrepareAlongsideAsync(sandbox).ConfigureAwait(false) is Verdict notPrepared)
        {
            return notPrepared;
        }

        SeccompPrograms.Compiled? seccomp = _seccomp;
        var extras = new PlanExtras
        {
            SeccompProgram = seccomp?.Program,
            SeccompFlags = seccomp?.Flags ?? 0,
            CgroupTasksFiles = _cgroup?.TasksFiles ?? [],
        };
        byte[] commandPlan = SandboxPlanner.BuildCommand(_policy, _command, identity, extras);

        var stdout = new OutputCollector(_policy.StdoutLimitBytes, _io.Stdout, () => Kill(KillReason.OutputLimit));
        var stderr = new OutputCollector(_policy.StderrLimitBytes, _io.Stderr, () => Kill(KillReason.OutputLimit));

        // The init joins v1 cgroups itself once it has the command plan, which can go at once; a v2
        // cgroup is joined by writing the init's pid, so the plan then waits for REPORT_INIT_PID.
        lock (_gate)
        {
            _commandPlan = commandPlan;
        }

        sandbox.Attach(this);
        if (_cgroup is null || _cgroup.PidJoinFiles.Count == 0)
        {
            SendCommandPlanOnce();
        }

        // Neither is part of the setup, so both wait until the plan is out and overlap the
        // sandbox's last steps instead of holding the plan back: the accounting files are opened
        // for a cheap reading once the command has ended, and the cgroups of Confines that died
        // are cleaned up (a failure there is about other runs' leftovers, not this run).
        if (_cgroup is not null)
        {
            _cgroup.KeepUsageFilesOpen();
            try
            {
                RemoveStaleCgroups(s_cgroupHost.Value, _policy.Resources.CgroupParent);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }

        // Unless the caller's thread serves the I/O loop (and the run resumes there), the run's end
        // continues on the thread pool: the I/O loop completes what is awaited below. A process whose
        // pool has no thread yet (any first run) would start one only when the command has exited,
        // and every verdict would wait for that; asked for now, it starts while the command runs.
        if (!IoLoop.IsServingThread && ThreadPool.ThreadCount == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static _ => { }, null);
        }

        IoLoop.Shared.Register(sandbox.Stdout, stdout.OnReadable);
        IoLoop.Shared.Register(sandbox.Stderr, stderr.OnReadable);
        Task stdinTask = FeedStdinAsync(sandbox.Stdin);

        using CancellationTokenRegistration cancellation = cancellationToken.Register(() => Kill(KillReason.Cancelled));

        // One by one rather than through Task.WhenAll, whose task would complete on the thread pool
        // even when this run resumes on the thread that serves the I/O loop.
        await IoLoop.Resume(_initEnded.Task);
        await IoLoop.Resume(stdout.Closed);
        await IoLoop.Resume(stderr.Closed);

        // Every process of the sandbox has ended: what it used is final, and its cgroup can go
        // while the outer helper finishes.
        lock (_gate)
        {
            // A report the loop delivers after the pidfd's event (REPORT_EXEC of a very short
            // command) must not start a timer now.
            _ended = true;
            _timeoutTimer?.Dispose();
            _cpuTimer?.Dispose();
            _usageTimer?.Dispose();
        }

        CgroupUsage? usage = _cgroup?.ReadUsage();
        _cgroup?.Dispose();

        // The report socket closes when the outer helper exits, after the init's last reports.
        await IoLoop.Resume(_reportsClosed.Task);
        int helperStatus = await IoLoop.Resume(sandbox.Exited);
        lock (_gate)
        {
            sandbox.Kill();
        }

        await IoLoop.Resume(stdinTask);

        // Every process that could make a recorded call is dead: the notifier has nothing left to answer.
        ImmutableArray<Violation> violations = [];
        if (_notifier is not null)
        {
            // The violations it announced reach the caller's handlers (and hooks) before the verdict.
            _notifier.Stop();
            await IoLoop.Resume(_notifier.Completion, suppressThrowing: true);
            violations = _notifier.Violations;
            if (_notifier.AnswerError is Exception failed)
            {
                // Calls refused after the notifier failed were not recorded: the kernel failed them
                // with ENOSYS on its own.
                _weakened.Add($"violations are recorded only up to a failure of the seccomp notifier: {failed.Message}");
            }

            _notifier.Dispose();
        }

        if (SeccompKill() is Violation killed)
        {
            violations = violations.Add(killed);
            Announce(killed);
        }

        return BuildVerdict(stdout, stderr, helperStatus, usage) with { Violations = violations };
    }

    /// <summary>
    /// Whether the command died of SIGSYS under a profile that kills: the kernel's
    /// <c>SECCOMP_RET_KILL_PROCESS</c> ends a process with SIGSYS.
    /// </summary>
    /// <remarks>
    /// The filter kills without a notification, so which call it was is not known here: the kernel
    /// gives it (<c>si_syscall</c>) only to a SIGSYS handler in the dying process, which a kill does not
    /// run, and to the audit log, which only a privileged reader of the host's kernel log sees, shared
    /// with every other sandbox. A command that sends itself SIGSYS is taken for killed as well, and a
    /// child the filter kills is seen only by its parent (a shell exits 159), not here.
    /// </remarks>
    private bool KilledBySeccomp =>
        _seccomp?.CanKill == true
        && _exit is HelperReport exit
        && WaitStatus.Signaled(exit.Status)
        && WaitStatus.TermSignal(exit.Status) == SIGSYS;

    /// <summary>The violation a seccomp kill of the command stands for; null when there was none.</summary>
    private Violation? SeccompKill() => KilledBySeccomp
        ? new Violation
        {
            Syscall = UnknownSyscall,
            Argument = "killed by seccomp (SIGSYS)",
            Pid = (int)(_exec?.Pid ?? 0),
            Count = 1,
            Action = SeccompKillAction,
        }
        : null;

    /// <summary>The violation's name for a call the filter refused without saying which.</summary>
    internal const string UnknownSyscall = "unknown";

    /// <summary>The verdict's name for what the filter did to a call whose action is <c>kill</c>.</summary>
    internal const string SeccompKillAction = "kill";

    /// <summary>
    /// Does, while the helper builds <paramref name="sandbox"/>, what only the command plan needs:
    /// loads a built-in seccomp profile and makes the run's cgroup, which the init joins once it
    /// has the plan. When that fails, the sandbox is killed and reaped before the failure is
    /// reported or thrown, so nothing of the run is left either way.
    /// </summary>
    private async Task<Verdict?> PrepareAlongsideAsync(PreparedSandbox sandbox)
    {
        Verdict? failed;
        try
        {
            if (SeccompPrograms.IsBuiltIn(_policy.SeccompProfile))
            {
                _seccomp = SeccompPrograms.For(_policy.SeccompProfile);
            }

            failed = NeedsCgroup ? CreateCgroup() : null;
        }
        catch
        {
            sandbox.Discard();
            await IoLoop.Resume(sandbox.Exited);
            throw;
        }

        if (failed is not null)
        {
            sandbox.Discard();
            await IoLoop.Resume(sandbox.Exited);
        }

        return failed;
    }

    /// <summary>
    /// Makes the run's cgroup, after removing any left by a Confine that died without cleaning up.
    /// A limit the host cannot enforce fails the run here, before the command exists.
    /// </summary>
    private Verdict? CreateCgroup()
    {
        ResourceLimits limits = _policy.Resources;
        if (_policy.AllowDegrade && !limits.AllowUnenforced)
        {
            limits = limits with { AllowUnenforced = true };
        }

        try
        {
            limits = WritableStorage.Expand(limits, _policy.Binds);
            CgroupHost host = s_cgroupHost.Value;
            _cgroup = SandboxCgroup.Create(host, limits, $"run{Interlocked.Increment(ref s_runCounter)}");
        }
        catch (CgroupUnavailableException e)
        {
            return SetupFailed("cgroup", null, e.Controller, e.Message);
        }
        catch (IOException e)
        {
            return SetupFailed("cgroup", null, "cgroup", $"cannot create the sandbox's cgroup: {e.Message}");
        }
        catch (UnauthorizedAccessException e)
        {
            return SetupFailed("cgroup", null, "cgroup", $"cannot create the sandbox's cgroup: {e.Message}; run as root or delegate a cgroup subtree to this user");
        }

        if (OpenCgroupTasks() is Verdict cannotJoin)
        {
            DisposeCgroupTasks();
            _cgroup.Dispose();
            _cgroup = null;
            return cannotJoin;
        }

        _weakened.AddRange(_cgroup.Unenforced.Select(u => $"cgroup limit not enforced: {u}"));
        return null;
    }

    private static readonly Lazy<CgroupHost> s_cgroupHost = new(CgroupHost.Detect);
    private static long s_lastStaleScan = long.MinValue;

    /// <summary>Makes the next run with a cgroup scan for stale ones, as the first run of a new process does.</summary>
    internal static void ScanForStaleCgroupsOnNextRun() => Interlocked.Exchange(ref s_lastStaleScan, long.MinValue);

    /// <summary>
    /// Removes cgroups that a Confine killed without cleaning up left behind: on the first run with a
    /// cgroup, then at most once a minute, since a scan reads every hierarchy's directory.
    /// </summary>
    private static void RemoveStaleCgroups(CgroupHost host, string? parent)
    {
        long now = Environment.TickCount64;
        long last = Interlocked.Read(ref s_lastStaleScan);
        if (last != long.MinValue && now - last < 60_000)
        {
            return;
        }

        if (Interlocked.CompareExchange(ref s_lastStaleScan, now, last) == last)
        {
            SandboxCgroup.RemoveStale(host, parent);
        }
    }
    private static long s_runCounter;

    /// <summary>
    /// Opens the v1 <c>tasks</c> files for the init, which joins through them itself: the kernel
    /// checks the opener's credentials, and the init can no longer reach the host's paths by the
    /// time it has its command plan.
    /// </summary>
    private Verdict? OpenCgroupTasks()
    {
        foreach (string tasks in _cgroup!.TasksFiles)
        {
            try
            {
                _cgroupTasks.Add(Posix.Open(tasks, Interop.O_WRONLY));
            }
            catch (ErrnoException e)
            {
                return SetupFailed("cgroup_join", e.Errno, tasks, $"cannot join the sandbox's cgroup: {e.Message}");
            }
        }

        return null;
    }

    private void DisposeCgroupTasks()
    {
        lock (_gate)
        {
            foreach (SafeFileHandle handle in _cgroupTasks)
            {
                handle.Dispose();
            }

            _cgroupTasks.Clear();
        }
    }

    /// <summary>
    /// Puts the init into the run's v2 cgroup by pid; called on the init's pid report, before the
    /// command exists. The v1 hierarchies the init joins itself.
    /// </summary>
    private void JoinCgroup(long initPid)
    {
        if (_cgroup is null || _cgroup.PidJoinFiles.Count == 0)
        {
            return;
        }

        try
        {
            foreach (string procs in _cgroup.PidJoinFiles)
            {
                File.WriteAllText(procs, initPid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _cgroupJoinError = $"cannot move the sandbox into its cgroup: {e.Message}";
            Kill(KillReason.Setup);
            return;
        }

        SendCommandPlanOnce();
    }

    private string? _cgroupJoinError;

    private void SendCommandPlanOnce()
    {
        byte[]? plan;
        lock (_gate)
        {
            plan = _commandPlan;
            _commandPlan = null;
        }

        if (plan is not null)
        {
            lock (_gate)
            {
                _sandbox!.SendCommandPlan(plan, _cgroupTasks);
            }

            DisposeCgroupTasks();
        }
    }

    /// <summary>Polls the cgroup's CPU time against the limit, and samples usage for the caller.</summary>
    private void StartMonitors()
    {
        if (_cgroup is null)
        {
            return;
        }

        if (_policy.Resources.CpuTime is TimeSpan cpuTime)
        {
            // Often enough to stop within a few percent of the limit, never more than 20 times a second.
            TimeSpan period = TimeSpan.FromMilliseconds(Math.Clamp(cpuTime.TotalMilliseconds / 50, 10, 50));
            long limitNs = (long)(cpuTime.TotalMilliseconds * 1e6);
            _cpuTimer = SandboxClock.Shared.Start(
                () =>
                {
                    if (_cgroup.ReadCpuUsageNanoseconds() >= limitNs)
                    {
                        Kill(KillReason.CpuTime);
                    }
                },
                period,
                period);
        }

        if (_io.OnUsage is Action<UsageSample> onUsage)
        {
            TimeSpan interval = _io.UsageInterval > TimeSpan.Zero ? _io.UsageInterval : TimeSpan.FromSeconds(1);
            _usageTimer = SandboxClock.Shared.Start(() => onUsage(UsageSample.From(Stopwatch.GetElapsedTime(_startTimestamp), _cgroup.ReadUsage())), interval, interval);
        }
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

    void IReportSink.OnReportsClosed()
    {
        _reportsClosed.TrySetResult();
        // A sandbox that never had an init (or whose pidfd did not come) has ended by now.
        _initEnded.TrySetResult();
    }

    /// <summary>
    /// Watches the init's pidfd: it becomes readable when the init has ended, and since the kernel
    /// ends a PID namespace's other processes before its init, every process of the sandbox is gone
    /// then. The outer helper has yet to notice and end (and on its way out it tears down the mount
    /// namespace it entered to detach the old root); the report socket closes only when it exits,
    /// so waiting for the pidfd instead lets the run read its usage and remove its cgroup meanwhile.
    /// </summary>
    private void WatchInit(SafeFileHandle pidfd)
    {
        try
        {
            ulong id = IoLoop.Shared.Register(pidfd, _ =>
            {
                _initEnded.TrySetResult();
                return false;
            });
            lock (_gate)
            {
                _initWatch = (id, pidfd);
            }
        }
        catch (ErrnoException)
        {
            // The report socket's end stands in for it.
            pidfd.Dispose();
        }
    }

    /// <summary>
    /// Drops the watch on the init's pidfd if its event was never handled: when the report socket's
    /// end said first that the init had ended, the run can finish with the pidfd's event still
    /// queued, and a registration left behind makes the I/O loop start a thread of its own for it as
    /// the caller stops serving.
    /// </summary>
    private void StopWatchingInit()
    {
        (ulong Id, SafeFileHandle Pidfd)? watch;
        lock (_gate)
        {
            watch = _initWatch;
            _initWatch = null;
        }

        // Closed only when this removed the watch: otherwise the loop, which ended the watch itself,
        // may still be taking the descriptor out of its epoll set, and closing it here could let
        // another registration's descriptor take its number first.
        if (watch is var (id, pidfd) && IoLoop.Shared.Unregister(id))
        {
            pidfd.Dispose();
        }
    }

    /// <summary>A descriptor the helper passed over the report socket.</summary>
    private void OnDescriptor(HelperReport report, SafeFileHandle descriptor)
    {
        if (report.Type == REPORT_INIT_PID)
        {
            Handle(report);
            WatchInit(descriptor);
            return;
        }

        if (report.Type != REPORT_LISTENER)
        {
            descriptor.Dispose();
            throw new InvalidDataException($"helper report type {report.Type} carried a descriptor");
        }

        // Answered from now on: a recorded call waits in the kernel until the notifier replies.
        var notifier = new SeccompNotifier(descriptor);
        notifier.Answered += OnViolationAnswered;
        notifier.Recorded += Announce;
        try
        {
            notifier.Start();
        }
        catch (Exception e)
        {
            // Unanswered, the sandbox's recorded calls would wait for ever; closing the listener makes
            // them fail with ENOSYS, and the run ends as a setup failure that says why.
            notifier.Dispose();
            lock (_gate)
            {
                _notifierError ??= $"cannot answer the sandbox's seccomp notifications: {e.Message}";
            }

            Kill(KillReason.Setup);
            return;
        }

        lock (_gate)
        {
            _notifier = notifier;
        }
    }

    /// <summary>On the I/O loop's thread, the moment the call was refused: a policy that ends the run on a violation ends it now.</summary>
    private void OnViolationAnswered(Violation violation)
    {
        if (_policy.OnViolation == ViolationAction.Kill)
        {
            Kill(KillReason.Violation);
        }
    }

    /// <summary>Logs a violation and hands it to the caller's handler.</summary>
    private void Announce(Violation violation)
    {
        SandboxLog.ViolationRecorded(_io.Logger, violation.Syscall, violation.Argument, violation.Pid, violation.Action);
        try
        {
            _io.OnViolation?.Invoke(violation);
        }
        catch (Exception e)
        {
            // The caller's handler failing must not leave the sandbox running unwatched.
            SandboxLog.ViolationHandlerFailed(_io.Logger, e);
        }
    }

    private void Handle(HelperReport report)
    {
        lock (_gate)
        {
            switch (report.Type)
            {
                case REPORT_EXEC:
                    _exec = report;
                    if (_ended)
                    {
                        break;
                    }

                    if (_policy.Timeout is TimeSpan timeout && _killReason == KillReason.None)
                    {
                        _timeoutTimer = SandboxClock.Shared.Start(() => Kill(KillReason.Timeout), timeout, TimeSpan.Zero);
                    }

                    StartMonitors();
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
                    JoinCgroup(report.Pid);
                    break;
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

    private Verdict BuildVerdict(OutputCollector stdout, OutputCollector stderr, int helperStatus, CgroupUsage? usage)
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

        if (usage is CgroupUsage cgroup)
        {
            // The cgroup saw every process, including those killed with the sandbox that the init
            // never reaped, so its numbers replace the init's.
            verdict = verdict with
            {
                CpuUserSeconds = cgroup.CpuUserNanoseconds is long user ? user / 1e9 : verdict.CpuUserSeconds,
                CpuSystemSeconds = cgroup.CpuSystemNanoseconds is long system ? system / 1e9 : verdict.CpuSystemSeconds,
                MemoryPeakBytes = cgroup.MemoryPeakBytes ?? verdict.MemoryPeakBytes,
                MemoryPeakSource = cgroup.MemoryPeakBytes is null ? verdict.MemoryPeakSource : "cgroup",
                Resources = cgroup.ToResourceUsage(_cgroup!.Unenforced),
            };
        }

        // The helper's own failure comes first: its init exits at once, so joining the cgroup then
        // fails too (ESRCH), and that is only a consequence.
        if (_error is HelperReport error)
        {
            return verdict with
            {
                Status = VerdictStatus.SetupFailed,
                Error = SetupErrors.Describe(error, _policy, _command),
            };
        }

        if (_notifierError is string notifierError)
        {
            return verdict with
            {
                Status = VerdictStatus.SetupFailed,
                Error = new SetupError { Step = "seccomp", Message = notifierError },
            };
        }

        if (_cgroupJoinError is string joinError)
        {
            return verdict with
            {
                Status = VerdictStatus.SetupFailed,
                Error = new SetupError { Step = "cgroup_join", Message = joinError },
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
            case KillReason.Violation:
                return verdict with { Status = VerdictStatus.Violation, Signal = SIGKILL, SignalName = Signals.Name(SIGKILL) };
            case KillReason.CpuTime:
                return verdict with
                {
                    Status = VerdictStatus.CpuTimeLimit,
                    Signal = SIGKILL,
                    SignalName = Signals.Name(SIGKILL),
                    Limit = new LimitHit("cpu_time", $"{_policy.Resources.CpuTime!.Value.TotalSeconds}s"),
                };
        }

        if (usage is { OomKills: > 0 } && _policy.Resources.MemoryBytes is long memory)
        {
            // A process of the sandbox hit the memory limit and the kernel killed it; the command may
            // have died of it or carried on without it, either way the limit is what the run met.
            int? signal = _exit is HelperReport oom && WaitStatus.Signaled(oom.Status) ? WaitStatus.TermSignal(oom.Status) : null;
            int? code = _exit is HelperReport oomExit && WaitStatus.Exited(oomExit.Status) ? WaitStatus.ExitCode(oomExit.Status) : null;
            return verdict with
            {
                Status = VerdictStatus.MemoryLimit,
                Signal = signal ?? (code is null ? SIGKILL : null),
                SignalName = signal is int s ? Signals.Name(s) : code is null ? Signals.Name(SIGKILL) : null,
                ExitCode = code,
                Limit = new LimitHit("memory", $"{memory} bytes"),
            };
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
            VerdictStatus signaled = KilledBySeccomp ? VerdictStatus.Violation : VerdictStatus.Signaled;
            return verdict with { Status = signaled, Signal = signal, SignalName = Signals.Name(signal) };
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
    private const int SIGSYS = 31;

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
