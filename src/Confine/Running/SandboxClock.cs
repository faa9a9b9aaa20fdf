using System.Diagnostics;

namespace Confine.Running;

/// <summary>
/// One thread that fires the timers of every run: the timeout, the CPU-time poll and the usage
/// samples. On the thread pool they wait behind whatever else holds its threads, and the pool
/// starts with one thread per CPU and adds about one every half second while all are busy: a caller
/// that blocks two of them on a two-CPU host let a half-second CPU-time limit run for a whole
/// second. The callbacks are short (a cgroup file read, a kill); a caller's usage handler runs here
/// too, as a caller's output stream is written on the I/O loop.
/// </summary>
internal sealed class SandboxClock
{
    private static readonly Lazy<SandboxClock> s_shared = new(() => new SandboxClock());

    private readonly object _gate = new();
    private readonly PriorityQueue<Alarm, long> _alarms = new();

    private SandboxClock()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "Confine clock" };
        thread.Start();
    }

    public static SandboxClock Shared => s_shared.Value;

    /// <summary>
    /// Calls <paramref name="callback"/> after <paramref name="dueTime"/>, then every
    /// <paramref name="period"/> if that is positive, until the result is disposed.
    /// </summary>
    public IDisposable Start(Action callback, TimeSpan dueTime, TimeSpan period)
    {
        var alarm = new Alarm(callback, Ticks(period));
        lock (_gate)
        {
            _alarms.Enqueue(alarm, Stopwatch.GetTimestamp() + Ticks(dueTime));
            Monitor.Pulse(_gate);
        }

        return alarm;
    }

    // Far beyond any duration the policy validator lets through, and far from overflowing when added to now.
    private static long Ticks(TimeSpan span) => (long)Math.Min(span.TotalSeconds * Stopwatch.Frequency, long.MaxValue / 4);

    private void Run()
    {
        while (true)
        {
            Alarm? due = null;
            lock (_gate)
            {
                while (due is null)
                {
                    if (!_alarms.TryPeek(out Alarm? next, out long at))
                    {
                        Monitor.Wait(_gate);
                        continue;
                    }

                    long now = Stopwatch.GetTimestamp();
                    if (next.Disposed)
                    {
                        _alarms.Dequeue();
                    }
                    else if (at <= now)
                    {
                        _alarms.Dequeue();
                        due = next;
                        if (next.Period > 0)
                        {
                            // A late alarm is not made up for with a burst: one sample per period.
                            _alarms.Enqueue(next, Math.Max(at + next.Period, now + next.Period / 2));
                        }
                    }
                    else
                    {
                        long milliseconds = (at - now) * 1000 / Stopwatch.Frequency;
                        Monitor.Wait(_gate, (int)Math.Clamp(milliseconds, 1, int.MaxValue));
                    }
                }
            }

            due.Fire();
        }
    }

    private sealed class Alarm(Action callback, long period) : IDisposable
    {
        private volatile bool _disposed;

        public long Period => period;

        public bool Disposed => _disposed;

        public void Fire()
        {
            if (!_disposed)
            {
                callback();
            }
        }

        public void Dispose() => _disposed = true;
    }
}
