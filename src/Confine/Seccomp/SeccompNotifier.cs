using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.InteropServices;
using Confine.Native;
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
/// Runs on a dedicated thread blocked in <c>poll</c> on the listener and on an eventfd that
/// <see cref="Stop"/> signals. It ends by itself when the listener hangs up, which the kernel does
/// once no process uses the filter any more (after the last one is reaped).
/// </remarks>
internal sealed unsafe class SeccompNotifier : IDisposable
{
    /// <summary>The verdict's name for what was done to a recorded call.</summary>
    internal const string RecordedAction = "errno";

    private readonly SafeHandle _listener;
    private readonly SafeFileHandle _wake;
    private readonly Lock _lock = new();
    private readonly List<Violation> _violations = [];
    private readonly Dictionary<(string Syscall, string? Argument), int> _index = [];
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private Exception? _handlerError;
    private bool _disposed;

    /// <summary>Takes ownership of <paramref name="listener"/>, the fd <c>seccomp()</c> returned.</summary>
    public SeccompNotifier(SafeHandle listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        _listener = listener;
        _wake = CreateEventFd();
    }

    /// <summary>
    /// Raised on the notifier's thread after each recorded call has been answered, with the violation as
    /// aggregated so far (its count includes this call). A handler that throws does not stop the
    /// notifier; the first such exception faults <see cref="Completion"/>.
    /// </summary>
    public event Action<Violation>? Recorded;

    /// <summary>Completes when the notifier has stopped; faulted if the loop or a handler failed.</summary>
    public Task Completion => _completion.Task;

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

    /// <summary>Starts answering on a dedicated thread.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_thread is not null)
        {
            throw new InvalidOperationException("the notifier is already running");
        }

        // The kernel's structures may grow; the buffers are sized by what it says, never below ours.
        seccomp_notif_sizes sizes = GetNotificationSizes();
        _thread = new Thread(() => Run(sizes)) { IsBackground = true, Name = "seccomp notifier" };
        _thread.Start();
    }

    /// <summary>Wakes the thread and waits for it to end. Calls still pending then fail with ENOSYS.</summary>
    public void Stop()
    {
        if (_thread is null)
        {
            return;
        }

        SignalEventFd(_wake);
        _thread.Join();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        Stop();
        _disposed = true;
        _listener.Dispose();
        _wake.Dispose();
    }

    private void Run(seccomp_notif_sizes sizes)
    {
        nuint notificationSize = (nuint)Math.Max(sizes.seccomp_notif, sizeof(seccomp_notif));
        nuint responseSize = (nuint)Math.Max(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp));
        seccomp_notif* notification = (seccomp_notif*)NativeMemory.AllocZeroed(notificationSize);
        seccomp_notif_resp* response = (seccomp_notif_resp*)NativeMemory.AllocZeroed(responseSize);
        bool listenerRef = false, wakeRef = false;
        try
        {
            _listener.DangerousAddRef(ref listenerRef);
            _wake.DangerousAddRef(ref wakeRef);
            Span<PollFd> fds =
            [
                new PollFd { fd = (int)_listener.DangerousGetHandle(), events = POLLIN },
                new PollFd { fd = (int)_wake.DangerousGetHandle(), events = POLLIN },
            ];

            while (true)
            {
                fds[0].revents = fds[1].revents = 0;
                Poll(fds, -1);
                if (fds[1].revents != 0 || (fds[0].revents & (POLLNVAL | POLLERR)) != 0)
                {
                    break;
                }

                if ((fds[0].revents & POLLIN) != 0)
                {
                    // NOTIF_RECV fails with EINVAL unless the buffer is zeroed.
                    NativeMemory.Clear(notification, notificationSize);
                    int errno = Ioctl(_listener, SECCOMP_IOCTL_NOTIF_RECV, notification);
                    if (errno == ENOENT)
                    {
                        continue; // the caller died or was interrupted before the notification was read
                    }

                    if (errno != 0)
                    {
                        throw new ErrnoException(errno, "ioctl(SECCOMP_IOCTL_NOTIF_RECV)");
                    }

                    Answer(notification, response, responseSize);
                }
                else if ((fds[0].revents & POLLHUP) != 0)
                {
                    break; // no process uses the filter any more
                }
            }

            Finish(null);
        }
        catch (Exception e)
        {
            Finish(e);
        }
        finally
        {
            NativeMemory.Free(notification);
            NativeMemory.Free(response);
            if (wakeRef)
            {
                _wake.DangerousRelease();
            }

            if (listenerRef)
            {
                _listener.DangerousRelease();
            }

            // Closing the listener makes the kernel fail any later recorded call with ENOSYS instead of
            // holding it for a supervisor that is gone.
            _listener.Dispose();
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
        if (!isNew)
        {
            // Repeats are counted, not announced: a loop of refused calls must not flood the log,
            // the caller's handler or its hooks.
            return;
        }

        try
        {
            Recorded?.Invoke(violation);
        }
        catch (Exception e)
        {
            _handlerError ??= e;
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
        error ??= _handlerError;
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
