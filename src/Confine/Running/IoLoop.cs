using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Running;

/// <summary>
/// One epoll loop that serves the pipes and sockets of every running sandbox. Reading them with
/// blocking calls would pin two or three thread-pool threads per sandbox for its whole life, which
/// starves the pool long before a service reaches a useful number of concurrent runs.
/// </summary>
/// <remarks>
/// The loop runs on a thread of its own, started when the first descriptor is registered, unless a
/// caller is blocked in <see cref="Serve{T}"/>: that caller's thread then runs the loop, and what
/// the run awaits through <see cref="Resume(Task, bool)"/> resumes there too. A program that runs one
/// sandbox at a time (the confine command) then starts neither the loop's thread nor a thread-pool
/// thread: each thread start costs its starter a wait for the new thread, and each hand-off between
/// threads at the end of a run wakes an idle CPU, together about a twentieth of a short run.
/// </remarks>
internal sealed unsafe class IoLoop
{
    private static readonly Lazy<IoLoop> s_shared = new(() => new IoLoop());

    /// <summary>The context of the loop the current thread serves in <see cref="Serve{T}"/>, or null.</summary>
    [ThreadStatic]
    private static LoopContext? t_serving;

    /// <summary>The loop the current thread runs, served or as its own thread: posting to it from there needs no wake.</summary>
    [ThreadStatic]
    private static IoLoop? t_runningLoop;

    /// <summary>The epoll data of the descriptor that wakes the loop for posted work; registrations count from 1.</summary>
    private const ulong WakeId = 0;

    private readonly int _epoll;
    private readonly SafeFileHandle _wake;
    private readonly ConcurrentDictionary<ulong, Registration> _registrations = new();
    private readonly ConcurrentQueue<(SendOrPostCallback Callback, object? State)> _posted = new();
    private readonly object _gate = new();
    private readonly Interop.EpollEvent[] _events = new Interop.EpollEvent[64];
    private long _nextId;
    private Thread? _thread;
    private bool _served;

    internal IoLoop()
    {
        _epoll = Posix.Check(Interop.epoll_create1(Interop.EPOLL_CLOEXEC), "epoll_create1");
        _wake = new SafeFileHandle(Posix.Check(Interop.eventfd(0, Interop.EFD_CLOEXEC | Interop.EFD_NONBLOCK), "eventfd"), ownsHandle: true);
        var ev = new Interop.EpollEvent { Events = Interop.EPOLLIN, Data = WakeId };
        Posix.Check(Interop.epoll_ctl(_epoll, Interop.EPOLL_CTL_ADD, (int)_wake.DangerousGetHandle(), &ev), "epoll_ctl(EPOLL_CTL_ADD)");
    }

    public static IoLoop Shared => s_shared.Value;

    /// <summary>Whether the current thread runs the loop while it waits, in <see cref="Serve{T}"/>.</summary>
    public static bool IsServingThread => t_serving is not null;

    /// <summary>
    /// Awaits <paramref name="task"/>: on a thread that serves the loop, the continuation runs on it
    /// once the loop gets to it; elsewhere, as <c>ConfigureAwait(false)</c> would.
    /// </summary>
    /// <remarks>
    /// The loop's context is made current only while the continuation is registered, which is when
    /// an await captures it. Left current, it would stop every <c>ConfigureAwait(false)</c>
    /// continuation from running inline on this thread (the runtime inlines only where no custom
    /// context is current) and send each to the thread pool instead.
    /// </remarks>
    public static LoopAwaitable Resume(Task task, bool suppressThrowing = false) => new(task, t_serving, suppressThrowing);

    /// <inheritdoc cref="Resume(Task, bool)"/>
    public static LoopAwaitable<T> Resume<T>(Task<T> task) => new(task, t_serving);

    /// <summary>Whether a thread of the loop's own has been started, for tests of what starts one.</summary>
    internal bool HasThread => Volatile.Read(ref _thread) is not null;

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

        EnsureServed();
        return id;
    }

    /// <summary>
    /// Stops watching a registration, without disposing its handle: the caller still owns it, and
    /// must keep it open until this returns, so that the descriptor removed is still the one that
    /// was added. A callback already under way on the loop's thread may still finish; later events
    /// are dropped. False when the registration was gone already: its callback had returned false,
    /// and the loop removes and disposes the handle itself (perhaps still doing so), so the caller
    /// must not close it.
    /// </summary>
    public bool Unregister(ulong id)
    {
        if (_registrations.TryRemove(id, out Registration? registration))
        {
            Interop.epoll_ctl(_epoll, Interop.EPOLL_CTL_DEL, (int)registration.Handle.DangerousGetHandle(), null);
            return true;
        }

        return false;
    }

    /// <summary>
    /// Starts <paramref name="start"/> and blocks until its task completes, running the loop on this
    /// thread meanwhile, so that what the task awaits from the loop resumes here. When the loop is
    /// already served (by its own thread, or by another caller waiting here) this only blocks. When
    /// the caller leaves with descriptors still registered, the loop's own thread takes over.
    /// </summary>
    public T Serve<T>(Func<Task<T>> start)
    {
        bool serveHere;
        lock (_gate)
        {
            serveHere = _thread is null && !_served;
            _served |= serveHere;
        }

        if (!serveHere)
        {
            return start().GetAwaiter().GetResult();
        }

        t_serving = new LoopContext(this);
        t_runningLoop = this;
        try
        {
            Task<T> task = start();
            if (!task.IsCompleted)
            {
                // A task that completes on another thread (a caller's stream on the thread pool)
                // must still end the wait.
                task.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(Wake);
            }

            while (!task.IsCompleted)
            {
                RunOnce();
            }

            return task.GetAwaiter().GetResult();
        }
        finally
        {
            t_serving = null;
            t_runningLoop = null;
            lock (_gate)
            {
                _served = false;
                if (!_registrations.IsEmpty || !_posted.IsEmpty)
                {
                    StartThread();
                }
            }
        }
    }

    /// <summary>Runs <paramref name="callback"/> on the loop, after the events at hand.</summary>
    private void Post(SendOrPostCallback callback, object? state)
    {
        _posted.Enqueue((callback, state));
        if (t_runningLoop != this)
        {
            Wake();
            EnsureServed();
        }
    }

    private void Wake()
    {
        ulong one = 1;
        Interop.write((int)_wake.DangerousGetHandle(), (byte*)&one, sizeof(ulong));
    }

    private void EnsureServed()
    {
        if (Volatile.Read(ref _thread) is not null)
        {
            return;
        }

        lock (_gate)
        {
            // A caller that served the loop may have run the posted work, or seen the registration
            // end, and left since: a thread started then would serve nothing.
            if (!_served && (!_registrations.IsEmpty || !_posted.IsEmpty))
            {
                StartThread();
            }
        }
    }

    /// <summary>Starts the loop's own thread, once; the caller holds <see cref="_gate"/>.</summary>
    private void StartThread()
    {
        if (_thread is not null)
        {
            return;
        }

        var thread = new Thread(() =>
        {
            t_runningLoop = this;
            while (true)
            {
                RunOnce();
            }
        })
        {
            IsBackground = true,
            Name = "Confine I/O",
        };
        thread.Start();
        Volatile.Write(ref _thread, thread);
    }

    /// <summary>Waits for events, calls their callbacks, then runs what was posted.</summary>
    private void RunOnce()
    {
        int count;
        fixed (Interop.EpollEvent* buffer = _events)
        {
            count = Interop.epoll_wait(_epoll, buffer, _events.Length, _posted.IsEmpty ? -1 : 0);
        }

        // EINTR is the only error epoll_wait can return on a valid descriptor.
        for (int i = 0; i < count; i++)
        {
            ulong id = _events[i].Data;
            if (id == WakeId)
            {
                ulong value;
                Interop.read((int)_wake.DangerousGetHandle(), (byte*)&value, sizeof(ulong));
                continue;
            }

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

        // Only what is queued now: work that posts more lets the next round's events in first.
        for (int pending = _posted.Count; pending > 0 && _posted.TryDequeue(out var item); pending--)
        {
            item.Callback(item.State);
        }
    }

    private sealed record Registration(SafeFileHandle Handle, Func<SafeFileHandle, bool> OnReadable);

    /// <summary>What an await that resumes on the loop posts its continuation to.</summary>
    internal sealed class LoopContext(IoLoop loop) : SynchronizationContext
    {
        public override void Post(SendOrPostCallback d, object? state) => loop.Post(d, state);

        public override SynchronizationContext CreateCopy() => this;
    }

    /// <summary>
    /// Registers <paramref name="continuation"/> on <paramref name="task"/>: with <paramref name="context"/>
    /// made current for the moment of registration, which is when an await captures it, or, without
    /// one, as <c>ConfigureAwait(false)</c> does.
    /// </summary>
    private static void OnCompleted(Task task, LoopContext? context, Action continuation)
    {
        if (context is null)
        {
            task.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(continuation);
            return;
        }

        SynchronizationContext? previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(context);
        try
        {
            task.ConfigureAwait(true).GetAwaiter().UnsafeOnCompleted(continuation);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    /// <summary>The awaitable of <see cref="Resume(Task, bool)"/>.</summary>
    internal readonly struct LoopAwaitable(Task task, LoopContext? context, bool suppressThrowing) : ICriticalNotifyCompletion
    {
        public LoopAwaitable GetAwaiter() => this;

        public bool IsCompleted => task.IsCompleted;

        public void GetResult()
        {
            if (!suppressThrowing)
            {
                task.GetAwaiter().GetResult();
            }
        }

        public void OnCompleted(Action continuation) => UnsafeOnCompleted(continuation);

        public void UnsafeOnCompleted(Action continuation) => IoLoop.OnCompleted(task, context, continuation);
    }

    /// <summary>The awaitable of <see cref="Resume{T}(Task{T})"/>.</summary>
    internal readonly struct LoopAwaitable<T>(Task<T> task, LoopContext? context) : ICriticalNotifyCompletion
    {
        public LoopAwaitable<T> GetAwaiter() => this;

        public bool IsCompleted => task.IsCompleted;

        public T GetResult() => task.GetAwaiter().GetResult();

        public void OnCompleted(Action continuation) => UnsafeOnCompleted(continuation);

        public void UnsafeOnCompleted(Action continuation) => IoLoop.OnCompleted(task, context, continuation);
    }
}
