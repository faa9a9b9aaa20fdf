using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;
using static Confine.Native.HelperProtocol;

namespace Confine.Running;

/// <summary>
/// A started helper: a sandbox that is being built, or is built and waits for its command plan.
/// It owns Confine's ends of the sandbox's descriptors and buffers the helper's reports until a
/// run takes it over.
/// </summary>
internal sealed unsafe class PreparedSandbox
{
    private readonly object _gate = new();
    private readonly List<(HelperReport Report, SafeFileHandle? Descriptor)> _pending = [];
    private readonly TaskCompletionSource _settled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IReportSink? _sink;
    private bool _closed;

    private PreparedSandbox(int pid, SafeFileHandle stdin, SafeFileHandle stdout, SafeFileHandle stderr, SafeFileHandle report, SafeFileHandle lifeline)
    {
        HelperPid = pid;
        Stdin = stdin;
        Stdout = stdout;
        Stderr = stderr;
        Report = report;
        Lifeline = lifeline;
    }

    public int HelperPid { get; }

    /// <summary>How many helpers this process has started, for tests of what starts one.</summary>
    internal static long StartedCount => Interlocked.Read(ref s_startedCount);

    private static long s_startedCount;

    public SafeFileHandle Stdin { get; }

    public SafeFileHandle Stdout { get; }

    public SafeFileHandle Stderr { get; }

    private SafeFileHandle Report { get; }

    private SafeFileHandle Lifeline { get; }

    /// <summary>Whether the sandbox has reported that it is built and waits for a command.</summary>
    public bool IsReady { get; private set; }

    /// <summary>Whether setup failed or the helper is gone: such a sandbox is only good for its error.</summary>
    public bool HasFailed { get; private set; }

    /// <summary>Completes once the sandbox is built and waits for its command, or has failed.</summary>
    public Task Settled => _settled.Task;

    /// <summary>
    /// The helper's wait status, once it has ended and been reaped. The I/O loop reaps it when its
    /// pidfd becomes readable, so no thread blocks in waitpid: a pool thread held there (for a
    /// discarded sandbox, until its namespaces are torn down) delays every timer of every run.
    /// </summary>
    public Task<int> Exited => _exited.Task;

    /// <summary>
    /// Starts the helper on <paramref name="setupPlan"/>, or hands the plan to the helper this
    /// process started before its runtime did (<see cref="PrestartedHelper"/>), if there is one.
    /// </summary>
    public static PreparedSandbox Start(byte[] setupPlan)
    {
        if (PrestartedHelper.Take() is { } prestarted && prestarted.TryStart(setupPlan))
        {
            Interlocked.Increment(ref s_startedCount);
            return Watch(
                prestarted.Pid, prestarted.StdinWrite, prestarted.StdoutRead, prestarted.StderrRead,
                prestarted.Report, prestarted.LifelineWrite);
        }

        var (stdinRead, stdinWrite) = Posix.Pipe();
        var (stdoutRead, stdoutWrite) = Posix.Pipe();
        var (stderrRead, stderrWrite) = Posix.Pipe();
        var (reportOurs, reportTheirs) = Posix.SeqPacketPair();
        var (lifelineRead, lifelineWrite) = Posix.Pipe();
        int pid;
        using (SafeFileHandle planFile = Posix.MemoryFile("confine-setup-plan", setupPlan))
        using (stdinRead)
        using (stdoutWrite)
        using (stderrWrite)
        using (reportTheirs)
        using (lifelineRead)
        {
            try
            {
                pid = HelperProcess.Spawn([stdinRead, stdoutWrite, stderrWrite, planFile, reportTheirs, lifelineRead]);
                Interlocked.Increment(ref s_startedCount);
            }
            catch
            {
                foreach (SafeFileHandle handle in (SafeFileHandle[])[stdinWrite, stdoutRead, stderrRead, reportOurs, lifelineWrite])
                {
                    handle.Dispose();
                }

                throw;
            }
        }

        return Watch(pid, stdinWrite, stdoutRead, stderrRead, reportOurs, lifelineWrite);
    }

    /// <summary>Takes over a started helper: its reports and its end go to the I/O loop.</summary>
    private static PreparedSandbox Watch(
        int pid, SafeFileHandle stdinWrite, SafeFileHandle stdoutRead, SafeFileHandle stderrRead,
        SafeFileHandle reportOurs, SafeFileHandle lifelineWrite)
    {
        SafeFileHandle pidfd;
        try
        {
            pidfd = Posix.PidFd(pid);
        }
        catch
        {
            // Closing the lifeline makes the helper kill its init and end, so this wait is short.
            foreach (SafeFileHandle handle in (SafeFileHandle[])[stdinWrite, stdoutRead, stderrRead, reportOurs, lifelineWrite])
            {
                handle.Dispose();
            }

            Posix.WaitPid(pid);
            throw;
        }

        var sandbox = new PreparedSandbox(pid, stdinWrite, stdoutRead, stderrRead, reportOurs, lifelineWrite);
        IoLoop.Shared.Register(reportOurs, sandbox.OnReportReadable);
        IoLoop.Shared.Register(pidfd, sandbox.OnHelperExited);
        return sandbox;
    }

    /// <summary>Routes every report, those already received first, to <paramref name="sink"/>.</summary>
    public void Attach(IReportSink sink)
    {
        lock (_gate)
        {
            _sink = sink;
            foreach ((HelperReport report, SafeFileHandle? descriptor) in _pending)
            {
                Deliver(report, descriptor);
            }

            _pending.Clear();
            if (_closed)
            {
                sink.OnReportsClosed();
            }
        }
    }

    /// <summary>
    /// Sends the command plan, with the descriptors of the plan's <c>PLAN_CGROUP_TASKS</c> records
    /// in the same order; the init runs it as soon as the sandbox is built.
    /// </summary>
    public void SendCommandPlan(byte[] commandPlan, IReadOnlyList<SafeFileHandle> cgroupTasks)
    {
        using SafeFileHandle planFile = Posix.MemoryFile("confine-command-plan", commandPlan);
        int count = 1 + cgroupTasks.Count;
        // cmsghdr is 16 bytes on x86_64; CMSG_SPACE rounds the descriptors up to 8 bytes.
        int controlLength = 16 + ((count * sizeof(int) + 7) & ~7);
        byte* control = stackalloc byte[controlLength];
        new Span<byte>(control, controlLength).Clear();
        *(nuint*)control = (nuint)(16 + count * sizeof(int)); // cmsg_len = CMSG_LEN(count * sizeof(int))
        *(int*)(control + 8) = Interop.SOL_SOCKET;
        *(int*)(control + 12) = Interop.SCM_RIGHTS;
        *(int*)(control + 16) = (int)planFile.DangerousGetHandle();
        for (int i = 0; i < cgroupTasks.Count; i++)
        {
            *(int*)(control + 20 + i * sizeof(int)) = (int)cgroupTasks[i].DangerousGetHandle();
        }

        uint magic = PLAN_MAGIC;
        var iov = new Interop.IoVec { Base = &magic, Length = sizeof(uint) };
        var message = new Interop.MsgHdr
        {
            Iov = &iov,
            IovLength = 1,
            Control = control,
            ControlLength = (nuint)controlLength,
        };
        // A helper that already failed has closed its end; its error report tells the caller why,
        // so a failed send needs no report of its own.
        Interop.sendmsg((int)Report.DangerousGetHandle(), &message, Interop.MSG_NOSIGNAL);
    }

    /// <summary>Kills the sandbox: the helper kills the init through its pidfd.</summary>
    public void Kill() => Lifeline.Dispose();

    /// <summary>Gives up a sandbox nobody will use: kill it and close everything; the I/O loop reaps it.</summary>
    public void Discard()
    {
        Kill();
        Stdin.Dispose();
        Stdout.Dispose();
        Stderr.Dispose();
        lock (_gate)
        {
            // Reports nobody will take: the init's pidfd among them.
            foreach ((_, SafeFileHandle? descriptor) in _pending)
            {
                descriptor?.Dispose();
            }

            _pending.Clear();
        }
    }

    /// <summary>The I/O loop's callback on the helper's pidfd, which is readable once the helper is a zombie.</summary>
    private bool OnHelperExited(SafeFileHandle pidfd)
    {
        int status;
        int reaped = Interop.waitpid(HelperPid, &status, Interop.WNOHANG);
        if (reaped < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Interop.EINTR)
            {
                return true;
            }

            _exited.TrySetException(new ErrnoException(errno, $"waitpid({HelperPid})"));
            return false;
        }

        if (reaped == 0)
        {
            return true;
        }

        _exited.TrySetResult(status);
        return false;
    }

    private bool OnReportReadable(SafeFileHandle handle)
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
                if (n > 0 && message.ControlLength >= 20
                    && *(int*)(controlStart + 8) == Interop.SOL_SOCKET && *(int*)(controlStart + 12) == Interop.SCM_RIGHTS)
                {
                    received = *(int*)(controlStart + 16);
                }
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

                // The helper's end was closed while a message to it lay unread there: the command
                // plan of a sandbox whose setup failed before the init read it. The kernel then
                // marks this end ECONNRESET (unix_release_sock), and a receive returns that pending
                // error once, before the messages still queued here (__skb_try_recv_datagram). Those
                // are the error and INIT_GONE reports that say why the sandbox ended; they, and then
                // end-of-file, follow. Taking the error for end-of-file loses them whenever this loop
                // reads later than the helper exits, which a busy host makes common.
                if (errno == Interop.ECONNRESET)
                {
                    continue;
                }
            }

            if (n <= 0)
            {
                lock (_gate)
                {
                    _closed = true;
                    HasFailed = true;
                    _sink?.OnReportsClosed();
                }

                _settled.TrySetResult();
                return false;
            }

            HelperReport report = HelperReport.Parse(buffer[..(int)n]);
            SafeFileHandle? descriptor = received >= 0 ? new SafeFileHandle(received, ownsHandle: true) : null;
            lock (_gate)
            {
                if (report.Type == REPORT_READY)
                {
                    IsReady = true;
                    _settled.TrySetResult();
                }
                else if (report.Type == REPORT_ERROR)
                {
                    HasFailed = true;
                    _settled.TrySetResult();
                }

                if (_sink is null)
                {
                    _pending.Add((report, descriptor));
                }
                else
                {
                    Deliver(report, descriptor);
                }
            }
        }
    }

    private void Deliver(HelperReport report, SafeFileHandle? descriptor)
    {
        if (descriptor is null)
        {
            _sink!.OnReport(report);
        }
        else
        {
            _sink!.OnDescriptor(report, descriptor);
        }
    }
}

/// <summary>Receives a prepared sandbox's reports once a run has taken it.</summary>
internal interface IReportSink
{
    void OnReport(HelperReport report);

    void OnDescriptor(HelperReport report, SafeFileHandle descriptor);

    void OnReportsClosed();
}
