using Confine.Native;

namespace Confine.Cgroups;

internal sealed partial class SandboxCgroup
{
    /// <summary>How long <see cref="KillAll"/> keeps at it before giving up on a task that will not die.</summary>
    private const int KillTimeoutMilliseconds = 1000;

    /// <summary>How long one pass waits for the freezer; a task in D state can hold it in FREEZING.</summary>
    private const int FreezeTimeoutMilliseconds = 250;

    /// <summary>How long a pass waits for the cgroups to empty before trying again.</summary>
    private const int PassTimeoutMilliseconds = 100;

    /// <summary>How long rmdir is retried while the kernel still reports the cgroup busy.</summary>
    private const int RemoveTimeoutMilliseconds = 500;

    /// <summary>
    /// Kills every task in the sandbox's cgroups and waits (about a second at most) until they
    /// are gone. A task that forks in a loop cannot outrun it: v2's <c>cgroup.kill</c> is atomic
    /// against forks, and elsewhere the tasks are frozen before they are listed and signalled.
    /// </summary>
    public void KillAll()
    {
        if (_members.Count == 0)
        {
            return;
        }

        long deadline = Environment.TickCount64 + KillTimeoutMilliseconds;
        while (true)
        {
            KillOnce();
            if (WaitUntilEmpty(Math.Min(deadline, Environment.TickCount64 + PassTimeoutMilliseconds))
                || Environment.TickCount64 >= deadline)
            {
                return;
            }
        }
    }

    /// <summary>Whether no task is left in any of the sandbox's cgroups (or their children).</summary>
    public bool IsEmpty()
    {
        foreach (Member member in _members)
        {
            if (member.Version == CgroupVersion.V2)
            {
                // cgroup.events counts the whole subtree, so one read answers for every child too.
                long? populated = CgroupFiles.TryReadKeyed(member.File("cgroup.events"), "populated");
                if (populated is not null)
                {
                    if (populated != 0)
                    {
                        return false;
                    }

                    continue;
                }
            }

            foreach (string directory in Tree(member.Directory))
            {
                if (CgroupFiles.HasPids(Path.Join(directory, "cgroup.procs")))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>The processes in the sandbox's cgroups now (thread-group ids, as in <c>cgroup.procs</c>).</summary>
    public IReadOnlyList<int> ReadPids()
    {
        var pids = new SortedSet<int>();
        foreach (Member member in _members)
        {
            foreach (string directory in Tree(member.Directory))
            {
                pids.UnionWith(CgroupFiles.ReadPids(Path.Join(directory, "cgroup.procs")));
            }
        }

        return [.. pids];
    }

    private void KillOnce()
    {
        Member? unified = _members.FirstOrDefault(m => m.Version == CgroupVersion.V2);

        // cgroup.kill (Linux 5.14) kills the subtree in the kernel, with forks held off meanwhile.
        if (unified is not null && CgroupFiles.Write(unified.File("cgroup.kill"), "1") == Interop.Error.None)
        {
            return;
        }

        // Frozen tasks can neither fork nor exit, so the list read next stays true and no pid in it
        // can be reused by an unrelated process before the signal lands. A v1 frozen task keeps
        // the SIGKILL pending until it is thawed; a v2 frozen task dies at once.
        Member? freezer = Of(CgroupController.Freezer);
        if (freezer?.Version == CgroupVersion.V1)
        {
            string state = freezer.File("freezer.state");
            if (CgroupFiles.Write(state, "FROZEN") == Interop.Error.None)
            {
                WaitFor(() => CgroupFiles.TryReadText(state)?.Trim() == "FROZEN", FreezeTimeoutMilliseconds);
            }

            SignalAll();
            CgroupFiles.Write(state, "THAWED");
            return;
        }

        if (unified is not null && CgroupFiles.Write(unified.File("cgroup.freeze"), "1") == Interop.Error.None)
        {
            string events = unified.File("cgroup.events");
            WaitFor(() => CgroupFiles.TryReadKeyed(events, "frozen") == 1, FreezeTimeoutMilliseconds);
            SignalAll();
            CgroupFiles.Write(unified.File("cgroup.freeze"), "0");
            return;
        }

        // No freezer: a task listed here may exit and its pid be reused before the signal is
        // sent, which could hit an unrelated process. Only hosts without any freezer take this path.
        SignalAll();
    }

    private void SignalAll()
    {
        foreach (int pid in ReadPids())
        {
            // ESRCH: it died meanwhile, which is the point.
            CgroupSyscalls.Kill(pid);
        }
    }

    private bool WaitUntilEmpty(long deadline)
    {
        while (!IsEmpty())
        {
            if (Environment.TickCount64 >= deadline)
            {
                return false;
            }

            Thread.Sleep(1);
        }

        return true;
    }

    private static bool WaitFor(Func<bool> condition, int timeoutMilliseconds)
    {
        long deadline = Environment.TickCount64 + timeoutMilliseconds;
        while (!condition())
        {
            if (Environment.TickCount64 >= deadline)
            {
                return false;
            }

            Thread.Sleep(1);
        }

        return true;
    }

    /// <summary>A cgroup directory and every cgroup beneath it, parents first.</summary>
    private static IEnumerable<string> Tree(string directory)
    {
        yield return directory;

        string[] children;
        try
        {
            children = Directory.GetDirectories(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            yield break;
        }

        foreach (string child in children)
        {
            foreach (string descendant in Tree(child))
            {
                yield return descendant;
            }
        }
    }

    /// <summary>
    /// Removes a cgroup and any children, children first. EBUSY is retried briefly: the kernel
    /// can report a cgroup busy for a moment after its last task has exited.
    /// </summary>
    /// <returns>Whether the directory is gone (an already missing one counts).</returns>
    private static bool RemoveTree(string directory)
    {
        foreach (string child in Tree(directory).Skip(1).Reverse())
        {
            RemoveOne(child);
        }

        return RemoveOne(directory);

        static bool RemoveOne(string directory)
        {
            long deadline = Environment.TickCount64 + RemoveTimeoutMilliseconds;
            while (true)
            {
                Interop.Error errno = CgroupSyscalls.Rmdir(directory);
                if (errno is Interop.Error.None or Interop.Error.ENOENT)
                {
                    return true;
                }

                if (errno != Interop.Error.EBUSY || Environment.TickCount64 >= deadline)
                {
                    return false;
                }

                Thread.Sleep(2);
            }
        }
    }
}
