using System.Collections.Immutable;
using Confine.Native;
using Confine.Planning;

namespace Confine.Running;

/// <summary>
/// Sandboxes built ahead of time for policies that were run before. Building the namespaces and
/// the root filesystem is most of a sandbox's start-up; a service that runs the same policy again
/// and again (a bot, a judge) gets it done before the next command arrives. A prepared sandbox has
/// run nothing: it is exactly what a fresh run would build, waiting for its command plan.
/// </summary>
/// <remarks>
/// A run with a cgroup can use one too: the setup plan holds nothing of the cgroup, which the init
/// joins only once the command plan comes (with the v1 descriptors, or after its pid was written
/// into the v2 cgroup). At most one
/// sandbox waits per setup plan, for <see cref="MaxKinds"/> plans (a new one pushes out the one
/// that has waited longest), and each is discarded after <see cref="IdleLifetime"/> unused; all
/// die with the process, like every sandbox.
/// A bind holds the file it was made from, not its path. A prepared sandbox is taken only while each
/// of its bind sources is still the file it was built from: one removed and made again since (a
/// judge that empties its job directory between runs), or renamed over, would show the run the old
/// one, empty once removed, where a sandbox built for the run shows the new one.
/// </remarks>
internal static class SandboxPool
{
    public const int MaxKinds = 4;

    public static readonly TimeSpan IdleLifetime = TimeSpan.FromSeconds(30);

    private static readonly object s_gate = new();
    private static readonly List<Entry> s_idle = [];
    private static Task s_refilling = Task.CompletedTask;

    /// <summary>Whether runs leave a sandbox prepared for the next run of the same policy.</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("CONFINE_PREPARE_AHEAD") != "0";

    /// <summary>
    /// A sandbox for <paramref name="setupPlan"/>, built from <paramref name="policy"/>: a prepared one
    /// if there is one and its bind sources are still the files it was built on, else a new one.
    /// </summary>
    public static (PreparedSandbox Sandbox, bool Prepared) Take(byte[] setupPlan, SandboxPolicy policy, bool poolable)
    {
        Entry? entry = null;
        if (poolable)
        {
            lock (s_gate)
            {
                int index = s_idle.FindIndex(e => e.Plan.AsSpan().SequenceEqual(setupPlan));
                if (index >= 0)
                {
                    entry = s_idle[index];
                    s_idle.RemoveAt(index);
                    entry.Expiry.Dispose();
                }
            }
        }

        // The sources are looked up only when there is a sandbox to compare them with: a run that
        // builds its own (every run of the command line) pays nothing for the pool.
        if (entry is not null && !entry.Sandbox.HasFailed && entry.Sources.SequenceEqual(IdentitiesOf(policy)))
        {
            return (entry.Sandbox, true);
        }

        entry?.Sandbox.Discard();
        return (PreparedSandbox.Start(setupPlan), false);
    }

    /// <summary>
    /// Starts preparing a sandbox for the next run of <paramref name="setupPlan"/>, unless one waits
    /// already. Called when a run has ended, not when it starts: building a sandbox is a burst of
    /// kernel work (namespaces, mounts) that would compete for the CPUs with the run it is meant to
    /// follow, and the run's latency is what its caller waits for.
    /// </summary>
    public static void Replenish(byte[] setupPlan, SandboxPolicy policy)
    {
        if (!Enabled)
        {
            return;
        }

        Task refill = Task.Run(() => Refill(setupPlan, policy, asked: false));
        lock (s_gate)
        {
            // A chain only while refills overlap: a long-running service must not grow one forever.
            s_refilling = s_refilling.IsCompleted ? refill : Task.WhenAll(s_refilling, refill);
        }
    }

    /// <summary>
    /// Starts building a sandbox for <paramref name="setupPlan"/> now, whether or not runs prepare
    /// ahead by themselves (<see cref="Enabled"/>), unless one waits already; returns once its helper
    /// has started.
    /// </summary>
    public static void Prepare(byte[] setupPlan, SandboxPolicy policy) => Refill(setupPlan, policy, asked: true);

    private static void Refill(byte[] setupPlan, SandboxPolicy policy, bool asked)
    {
        // Looked up before the helper opens them: a source replaced in between is then no longer
        // what was recorded, and no run takes the sandbox.
        ImmutableArray<FileIdentity?> sources = IdentitiesOf(policy);
        lock (s_gate)
        {
            // One that waits already would be kept and the new one thrown away: do not build it.
            if (!(Enabled || asked) || IndexOfCurrent(setupPlan, sources) >= 0)
            {
                return;
            }
        }

        PreparedSandbox sandbox;
        try
        {
            sandbox = PreparedSandbox.Start(setupPlan);
        }
        catch (Exception)
        {
            // A sandbox that cannot even start is reported by the next run that tries it itself.
            return;
        }

        lock (s_gate)
        {
            // Checked again: the pool may have been turned off, or filled for this plan, meanwhile.
            if (!(Enabled || asked) || IndexOfCurrent(setupPlan, sources) >= 0)
            {
                sandbox.Discard();
                return;
            }

            // One for this plan built on sources that have been replaced since: no run would take it.
            int stale = s_idle.FindIndex(e => e.Plan.AsSpan().SequenceEqual(setupPlan));
            if (stale >= 0)
            {
                RemoveAndDiscard(stale);
            }

            // The policies run (or asked for) last are the likeliest to run next: the sandbox that
            // has waited longest makes room.
            if (s_idle.Count >= MaxKinds)
            {
                RemoveAndDiscard(0);
            }

            Entry? entry = null;
            var expiry = new Timer(_ => Expire(entry!), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            entry = new Entry(setupPlan, sources, sandbox, expiry);
            s_idle.Add(entry);
            expiry.Change(IdleLifetime, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The waiting sandbox for <paramref name="setupPlan"/> built on <paramref name="sources"/>, or -1. Called under <c>s_gate</c>.</summary>
    private static int IndexOfCurrent(byte[] setupPlan, ImmutableArray<FileIdentity?> sources) =>
        s_idle.FindIndex(e => e.Plan.AsSpan().SequenceEqual(setupPlan) && e.Sources.SequenceEqual(sources));

    /// <summary>Takes a waiting sandbox out of the pool and ends it. Called under <c>s_gate</c>.</summary>
    private static void RemoveAndDiscard(int index)
    {
        Entry entry = s_idle[index];
        s_idle.RemoveAt(index);
        entry.Expiry.Dispose();
        entry.Sandbox.Discard();
    }

    private static void Expire(Entry entry)
    {
        lock (s_gate)
        {
            if (!s_idle.Remove(entry))
            {
                return;
            }
        }

        entry.Expiry.Dispose();
        entry.Sandbox.Discard();
    }

    /// <summary>
    /// Completes once every sandbox being prepared is built (or has failed). A benchmark waits for it
    /// so that the work done ahead for one run is not counted against whatever it times next.
    /// </summary>
    internal static async Task SettledAsync()
    {
        Task refilling;
        lock (s_gate)
        {
            refilling = s_refilling;
        }

        await refilling.ConfigureAwait(false);
        List<Entry> entries;
        lock (s_gate)
        {
            entries = [.. s_idle];
        }

        await Task.WhenAll(entries.Select(e => e.Sandbox.Settled)).ConfigureAwait(false);
    }

    /// <summary>How many sandboxes wait to be taken.</summary>
    internal static int WaitingCount
    {
        get
        {
            lock (s_gate)
            {
                return s_idle.Count;
            }
        }
    }

    /// <summary>Discards every prepared sandbox.</summary>
    public static void Clear()
    {
        List<Entry> entries;
        lock (s_gate)
        {
            entries = [.. s_idle];
            s_idle.Clear();
        }

        foreach (Entry entry in entries)
        {
            entry.Expiry.Dispose();
            entry.Sandbox.Discard();
        }
    }

    /// <summary>Which files the policy's bind sources name now, in the order the setup plan binds them.</summary>
    private static ImmutableArray<FileIdentity?> IdentitiesOf(SandboxPolicy policy) =>
        [.. SandboxPlanner.BindSources(policy).Select(Posix.IdentityOf)];

    private sealed record Entry(
        byte[] Plan, ImmutableArray<FileIdentity?> Sources, PreparedSandbox Sandbox, Timer Expiry);
}
