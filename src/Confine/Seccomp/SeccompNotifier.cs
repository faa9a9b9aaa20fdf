using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using Confine.Native;
using Confine.Running;
using Microsoft.Win32.SafeHandles;
using static Confine.Seccomp.SeccompInterop;

namespace Confine.Seccomp;

/// <summary>
/// Answers the seccomp notifications of one sandbox: every call a profile marks <c>record</c> is held by
/// the kernel until this supervisor has noted it, then fails with EPERM. The notifier never lets such a
/// call continue (no <c>SECCOMP_USER_NOTIF_FLAG_CONTINUE</c>), so nothing it does or fails to do can
/// widen the filter: if it stops, the kernel fails the calls with ENOSYS instead.
/// </summary>
/// <remarks>
/// Served by Confine's shared I/O loop, not by a thread of its own: a service with many sandboxes
/// running would otherwise keep a thread per sandbox blocked in <c>poll</c>. On the loop's thread a
/// held call is received, answered and counted, a few system calls; the caller's handlers then get
/// the violation on a short-lived thread, one at a time and in order, so that a slow handler holds
/// up neither the loop (every sandbox's pipes), nor this sandbox's refused calls, nor the thread
/// pool. The notifier ends by itself when the listener hangs up, which the kernel does once no
/// process uses the filter any more (after the last one is reaped).
/// </remarks>
internal sealed unsafe class SeccompNotifier : IDisposable
{
    /// <summary>The verdict's name for what was done to a recorded call.</summary>
    internal const string RecordedAction = "errno";

    private readonly SafeFileHandle _listener;
    private readonly Lock _lock = new();
    private readonly List<Violation> _violations = [];
    private readonly Dictionary<(string Syscall, string? Argument), int> _index = [];
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // The loop's callback and Stop take this in turn, so that Stop never closes the listener under a
    // call being answered, and no callback runs once Stop has returned.
    private readonly Lock _loopGate = new();
    private seccomp_notif* _notification;
    private seccomp_notif_resp* _response;
    private nuint _notificationSize;
    private nuint _responseSize;
    private ulong _registration;
    private bool _started;
    private bool _ended;
    private bool _loopCloses;

    private Task _handlers = Task.CompletedTask;
    private Exception? _handlerError;
    private bool _disposed;

    /// <summary>Takes ownership of <paramref name="listener"/>, the fd <c>seccomp()</c> returned.</summary>
    public SeccompNotifier(SafeFileHandle listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        _listener = listener;
    }

    /// <summary>
    /// Raised on a thread of its own, one call at a time and in order, for each kind of recorded call
    /// when first seen, after the call has been answered, with the violation as aggregated so far. A
    /// handler that throws does not stop the notifier; the first such exception faults
    /// <see cref="Completion"/>.
    /// </summary>
    public event Action<Violation>? Recorded;

    /// <summary>
    /// Raised on the I/O loop's thread as soon as a call of a new kind has been answered, before
    /// <see cref="Recorded"/>: for a decision that must not wait for the handlers, such as ending
    /// the run. It runs beside every sandbox's I/O, so it must return at once and must not throw.
    /// </summary>
    public event Action<Violation>? Answered;

    /// <summary>
    /// Completes when the notifier has stopped and every handler it called has returned; faulted if
    /// answering or a handler failed.
    /// </summary>
    public Task Completion => _completion.Task;

    /// <summary>
    /// Why answering stopped before the listener hung up or <see cref="Stop"/> was called, if it did:
    /// the kernel failed the sandbox's later recorded calls with ENOSYS on its own, unrecorded.
    /// </summary>
    public Exception? AnswerError { get; private set; }

    /// <summary>The calls recorded so far, one per syscall and argument, in the order first seen.</summary>
    public ImmutableArray<Violation> Violations
    {
        get
        {
            lock (_lock)
            {
                return [.. _violations];
            }
        }
    }

    /// <summary>Starts answering, on the shared I/O loop.</summary>
    public void Start()
    {
        lock (_loopGate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_started)
            {
                throw new InvalidOperationException("the notifier is already running");
            }

            // The kernel's structures may grow; the buffers are sized by what it says, never below ours.
            seccomp_notif_sizes sizes = GetNotificationSizes();
            _notificationSize = (nuint)Math.Max(sizes.seccomp_notif, sizeof(seccomp_notif));
            _responseSize = (nuint)Math.Max(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp));
            _notification = (seccomp_notif*)NativeMemory.AllocZeroed(_notificationSize);
            _response = (seccomp_notif_resp*)NativeMemory.AllocZeroed(_responseSize);
            try
            {
                _registration = IoLoop.Shared.Register(_listener, OnReadable);
            }
            catch
            {
                NativeMemory.Free(_notification);
                NativeMemory.Free(_response);
                _notification = null;
                _response = null;
                throw;
            }

            _started = true;
        }
    }

    /// <summary>
    /// Stops answering at once: calls held now or made later fail with ENOSYS. <see cref="Completion"/>
    /// completes once the handlers already called have returned.
    /// </summary>
    public void Stop()
    {
        lock (_loopGate)
        {
            if (!_started || _ended)
            {
                return;
            }

            // Closed only after the loop has let go of it, so that the descriptor it removes is this one.
            IoLoop.Shared.Unregister(_registration);
            _listener.Dispose();
            End(null);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_loopGate)
        {
            if (_disposed)
            {
                return;
            }

            if (_started && !_ended)
            {
                IoLoop.Shared.Unregister(_registration);
                End(null);
            }

            // Once the callback has handed the listener back to the loop, the loop removes it from
            // epoll and closes it; closed here first, its number could be reused by the time the
            // loop removes it, and the loop would remove another sandbox's descriptor.
            _disposed = true;
            if (!_loopCloses)
            {
                _listener.Dispose();
            }
        }
    }

    /// <summary>The loop's callback: the listener has a call to answer, or has hung up.</summary>
    private bool OnReadable(SafeFileHandle listener)
    {
        lock (_loopGate)
        {
            if (_ended)
            {
                return false;
            }

            try
            {
                Span<PollFd> fds = [new PollFd { fd = (int)listener.DangerousGetHandle(), events = POLLIN }];
                Poll(fds, 0);
                if ((fds[0].revents & POLLIN) != 0)
                {
                    // NOTIF_RECV fails with EINVAL unless the buffer is zeroed. It does not block here:
                    // the call that made the listener readable is either still held or, if its caller
                    // was killed meanwhile, reported as ENOENT.
                    NativeMemory.Clear(_notification, _notificationSize);
                    int errno = Ioctl(_listener, SECCOMP_IOCTL_NOTIF_RECV, _notification);
                    if (errno == ENOENT)
                    {
                        return true;
                    }

                    if (errno != 0)
                    {
                        throw new ErrnoException(errno, "ioctl(SECCOMP_IOCTL_NOTIF_RECV)");
                    }

                    Answer(_notification, _response, _responseSize);
                    return true;
                }

                if ((fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) == 0)
                {
                    return true;
                }

                // No process uses the filter any more; the loop closes the listener when this returns.
                _loopCloses = true;
                End(null);
                return false;
            }
            catch (Exception e)
            {
                _loopCloses = true;
                End(e);
                return false;
            }
        }
    }

    /// <summary>
    /// Called with <c>_loopGate</c> held, once, when answering ends (the listener is closed by the
    /// caller or the loop, and the kernel then fails any later recorded call with ENOSYS instead of
    /// holding it for a supervisor that is gone): frees the buffers and completes once the handlers
    /// already called have returned.
    /// </summary>
    private void End(Exception? error)
    {
        _ended = true;
        AnswerError = error;
        NativeMemory.Free(_notification);
        NativeMemory.Free(_response);
        _notification = null;
        _response = null;

        Task handlers;
        lock (_lock)
        {
            handlers = _handlers;
        }

        if (handlers.IsCompleted)
        {
            Finish(error);
        }
        else
        {
            handlers.ContinueWith(_ => Finish(error), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    private void Answer(seccomp_notif* notification, seccomp_notif_resp* response, nuint responseSize)
    {
        ulong id = notification->id;
        seccomp_data data = notification->data;
        ReadOnlySpan<ulong> args = new(data.args, 6);
        (string syscall, string? argument) = Describe(data.nr, data.arch, args);

        // The pid is read before answering, while the caller is still held, and trusted only if the
        // notification is still live afterwards: otherwise the process may be gone and its pid reused.
        int pid = SandboxPid((int)notification->pid);
        if (Ioctl(_listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) != 0)
        {
            pid = 0;
        }

        NativeMemory.Clear(response, responseSize);
        response->id = id;
        response->error = -EPERM;
        response->val = 0;
        response->flags = 0;
        int errno = Ioctl(_listener, SECCOMP_IOCTL_NOTIF_SEND, response);
        if (errno is not 0 and not ENOENT)
        {
            throw new ErrnoException(errno, "ioctl(SECCOMP_IOCTL_NOTIF_SEND)");
        }

        (Violation violation, bool isNew) = Aggregate(syscall, argument, pid);
        // Repeats are counted, not announced: a loop of refused calls must not flood the log, the
        // caller's handler or its hooks.
        if (!isNew)
        {
            return;
        }

        Answered?.Invoke(violation);
        if (Recorded is Action<Violation> recorded)
        {
            // Each on a thread of its own, not a pool thread: the caller's handler may block (on a
            // hook, a lock, a sleep), and a few runs blocked on the pool would starve it, holding up
            // every other run's continuations until the pool grows, about a thread every half second.
            // The thread lives only while the handler runs; a run starts at most 256 of them.
            lock (_lock)
            {
                _handlers = _handlers.ContinueWith(
                    _ => Announce(recorded, violation),
                    CancellationToken.None,
                    TaskContinuationOptions.LongRunning,
                    TaskScheduler.Default);
            }
        }
    }

    private void Announce(Action<Violation> recorded, Violation violation)
    {
        try
        {
            recorded(violation);
        }
        catch (Exception e)
        {
            lock (_lock)
            {
                _handlerError ??= e;
            }
        }
    }

    /// <summary>
    /// The most distinct violations listed; past it, every new kind is counted in one last entry. A
    /// program that varies an argument in a loop (ptrace requests, unshare flags) would otherwise make
    /// the verdict, and Confine's memory, grow without end.
    /// </summary>
    internal const int MaxDistinctViolations = 256;

    internal const string OverflowSyscall = "more";

    private (Violation Violation, bool IsNew) Aggregate(string syscall, string? argument, int pid)
    {
        lock (_lock)
        {
            if (!_index.ContainsKey((syscall, argument)) && _violations.Count >= MaxDistinctViolations - 1)
            {
                (syscall, argument) = (OverflowSyscall, $"more than {MaxDistinctViolations} distinct violations; the rest are counted here");
            }

            if (_index.TryGetValue((syscall, argument), out int at))
            {
                Violation seen = _violations[at];
                _violations[at] = seen with { Count = seen.Count + 1, Pid = seen.Pid != 0 ? seen.Pid : pid };
                return (_violations[at], false);
            }

            Violation first = new()
            {
                Syscall = syscall, Argument = argument, Pid = pid, Count = 1, Action = RecordedAction,
            };
            _index[(syscall, argument)] = _violations.Count;
            _violations.Add(first);
            return (first, true);
        }
    }

    /// <summary>The call's name and its telling argument; calls of other architectures say which.</summary>
    internal static (string Syscall, string? Argument) Describe(int nr, uint arch, ReadOnlySpan<ulong> args)
    {
        if (arch == AUDIT_ARCH_I386)
        {
            return (SyscallName(SCMP_ARCH_X86, nr) ?? $"i386 syscall {nr}", "i386 (int 0x80)");
        }

        if (arch != AUDIT_ARCH_X86_64)
        {
            return ($"syscall {nr}", $"arch 0x{arch:x8}");
        }

        if (((uint)nr & __X32_SYSCALL_BIT) != 0)
        {
            return (SyscallName(SCMP_ARCH_X32, nr) ?? $"x32 syscall {nr & ~(int)__X32_SYSCALL_BIT}", "x32 ABI");
        }

        string name = SyscallNumbers.Name(nr) ?? $"syscall {nr}";
        return (name, SyscallConstants.RenderKeyArgument(name, args));
    }

    /// <summary>
    /// The process's pid in the innermost PID namespace, the one the sandboxed program sees: the last
    /// field of the <c>NSpid</c> line of its status file. 0 if it cannot be read.
    /// </summary>
    internal static int SandboxPid(int hostPid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{hostPid}/status"))
            {
                if (line.StartsWith("NSpid:", StringComparison.Ordinal))
                {
                    string last = line["NSpid:".Length..].Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries)[^1];
                    return int.Parse(last, CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
            // The process has ended; its pid is unknown rather than wrong.
        }
        catch (UnauthorizedAccessException)
        {
        }

        return 0;
    }

    private void Finish(Exception? error)
    {
        lock (_lock)
        {
            error ??= _handlerError;
        }

        if (error is null)
        {
            _completion.TrySetResult();
        }
        else
        {
            _completion.TrySetException(error);
        }
    }
}
