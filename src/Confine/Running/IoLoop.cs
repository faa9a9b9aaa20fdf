using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Running;

/// <summary>
/// One epoll thread that serves the pipes and sockets of every running sandbox. Reading them with
/// blocking calls would pin two or three thread-pool threads per sandbox for its whole life, which
/// starves the pool long before a service reaches a useful number of concurrent runs.
/// </summary>
internal sealed unsafe class IoLoop
{
    private static readonly Lazy<IoLoop> s_shared = new(() => new IoLoop());

    private readonly int _epoll;
    private readonly ConcurrentDictionary<ulong, Registration> _registrations = new();
    private long _nextId;

    private IoLoop()
    {
        _epoll = Posix.Check(Interop.epoll_create1(Interop.EPOLL_CLOEXEC), "epoll_create1");
        var thread = new Thread(Run) { IsBackground = true, Name = "Confine I/O" };
        thread.Start();
    }

    public static IoLoop Shared => s_shared.Value;

    /// <summary>
    /// Watches <paramref name="handle"/> (made non-blocking) and calls <paramref name="onReadable"/> on
    /// the loop's thread whenever it can be read or has hung up. The callback returns false once it
    /// has seen end-of-file; the handle is then removed and disposed. Returns the registration, for
    /// <see cref="Unregister"/>.
    /// </summary>
    public ulong Register(SafeFileHandle handle, Func<SafeFileHandle, bool> onReadable)
    {
        Posix.SetNonBlocking(handle);
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        var registration = new Registration(handle, onReadable);
        _registrations[id] = registration;

        var ev = new Interop.EpollEvent { Events = Interop.EPOLLIN | Interop.EPOLLRDHUP, Data = id };
        int fd = (int)handle.DangerousGetHandle();
        if (Interop.epoll_ctl(_epoll, Interop.EPOLL_CTL_ADD, fd, &ev) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _registrations.TryRemove(id, out _);
            throw new ErrnoException(errno, "epoll_ctl(EPOLL_CTL_ADD)");
        }

        return id;
    }

    /// <summary>
    /// Stops watching a registration, without disposing its handle: the caller still owns it, and
    /// must keep it open until this returns, so that the descriptor removed is still the one that
    /// was added. A callback already under way on the loop's thread may still finish; later events
    /// are dropped.
    /// </summary>
    public void Unregister(ulong id)
    {
        if (_registrations.TryRemove(id, out Registration? registration))
        {
            Interop.epoll_ctl(_epoll, Interop.EPOLL_CTL_DEL, (int)registration.Handle.DangerousGetHandle(), null);
        }
    }

    private void Run()
    {
        const int MaxEvents = 64;
        var events = new Interop.EpollEvent[MaxEvents];
        while (true)
        {
            int count;
            fixed (Interop.EpollEvent* buffer = events)
            {
                count = Interop.epoll_wait(_epoll, buffer, MaxEvents, -1);
            }

            if (count < 0)
            {
                // EINTR is the only error epoll_wait can return on a valid descriptor.
                continue;
            }

            for (int i = 0; i < count; i++)
            {
                ulong id = events[i].Data;
                if (!_registrations.TryGetValue(id, out Registration? registration))
                {
                    continue;
                }

                bool keep;
                try
                {
                    keep = registration.OnReadable(registration.Handle);
                }
                catch (Exception)
                {
                    // A consumer's failure must not take the loop, and every other sandbox, with it;
                    // dropping the descriptor gives that run an end-of-file it can act on.
                    keep = false;
                }

                // Only while it is still registered: after Unregister its owner may have closed the
                // descriptor, and the number may already name another registration's.
                if (!keep && _registrations.TryRemove(id, out _))
                {
                    int fd = (int)registration.Handle.DangerousGetHandle();
                    Interop.epoll_ctl(_epoll, Interop.EPOLL_CTL_DEL, fd, null);
                    registration.Handle.Dispose();
                }
            }
        }
    }

    private sealed record Registration(SafeFileHandle Handle, Func<SafeFileHandle, bool> OnReadable);
}
