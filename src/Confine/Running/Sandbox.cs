using Confine.Running;

namespace Confine;

/// <summary>Runs commands in fresh, isolated sandboxes.</summary>
public static class Sandbox
{
    /// <summary>
    /// Whether a run leaves a sandbox built ahead of time for the next run of the same policy, so
    /// that the next run only has to start its command; the run's cgroup, if it has one, is made
    /// and joined meanwhile.
    /// On by default; a program that runs one sandbox and exits should turn it off. The environment
    /// variable <c>CONFINE_PREPARE_AHEAD=0</c> turns it off too.
    /// </summary>
    public static bool PrepareAhead
    {
        get => SandboxPool.Enabled;
        set
        {
            SandboxPool.Enabled = value;
            if (!value)
            {
                SandboxPool.Clear();
            }
        }
    }

    /// <summary>
    /// Starts building a sandbox for <paramref name="policy"/> before any command is known, for a
    /// run that is about to come (a service at start-up, before its first request), so that even
    /// the first run finds its sandbox built. The next <see cref="RunAsync"/> whose policy builds
    /// the same sandbox (the same namespaces, ids, mounts and host name; limits, seccomp and the
    /// command may differ) takes it and only starts its command, whatever
    /// <see cref="PrepareAhead"/> says. Returns once the helper has started; the sandbox is built in
    /// the background. A bind source that has been replaced since (removed and made again, or
    /// renamed over) makes the run build its own sandbox: a bind shows the directory it was made
    /// from, not whatever its path names later. At most one waits per kind of sandbox, and it is
    /// discarded after 30 s unused. A sandbox that cannot be built (a bind source that is missing,
    /// a host without user namespaces) is not reported here: the run that takes it reports the
    /// failure in its verdict, as it would have without it.
    /// </summary>
    /// <exception cref="PolicyException">The policy is not valid.</exception>
    public static void Prepare(SandboxPolicy policy)
    {
        PolicyValidator.Validate(policy);
        SandboxPool.Prepare(
            Planning.SandboxPlanner.BuildSetup(policy, Planning.HostIdentity.Current, new Planning.PlanExtras()), policy);
    }

    /// <summary>
    /// Runs <paramref name="command"/> (argv; the program is looked up in the policy's PATH inside the
    /// sandbox) under <paramref name="policy"/> and returns how it ended. A problem with the policy or
    /// command throws <see cref="PolicyException"/> before anything is created, except a limit only
    /// the host's cgroups can judge (more CPUs than the cgroup parent has), which is found while the
    /// sandbox is being built and thrown once it is torn down; everything that goes wrong after that,
    /// including a sandbox that cannot be set up, is reported in the verdict.
    /// Cancelling the token kills the whole sandbox and yields a <see cref="VerdictStatus.Cancelled"/>
    /// verdict. When the returned task completes, nothing of the run is left: no process, mount or
    /// cgroup.
    /// </summary>
    public static Task<Verdict> RunAsync(
        SandboxPolicy policy,
        IReadOnlyList<string> command,
        SandboxIO? io = null,
        CancellationToken cancellationToken = default)
    {
        PolicyValidator.Validate(policy);
        PolicyValidator.ValidateCommand(command);
        io ??= SandboxIO.Capture;
        if (io.Stdin is not StdinSource.HostFile file)
        {
            return new SandboxRun(policy, command, io).RunAsync(cancellationToken);
        }

        // Opened now, so that a missing file is bad input, and never through a symbolic link.
        FileStream input;
        try
        {
            input = Native.Posix.OpenHostFile(file.Path, write: false);
        }
        catch (IOException e)
        {
            throw new PolicyException("stdin", e.Message);
        }

        return RunWithInputAsync(new SandboxRun(policy, command, io with { Stdin = StdinSource.FromStream(input) }), input, cancellationToken);

        static async Task<Verdict> RunWithInputAsync(SandboxRun run, FileStream input, CancellationToken cancellationToken)
        {
            await using (input.ConfigureAwait(false))
            {
                return await run.RunAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// As <see cref="RunAsync"/>, but blocks until the verdict, and while it waits the calling thread
    /// serves the sandbox's pipes and reports itself: a program that runs one sandbox at a time (a
    /// command-line tool, a judge's worker) starts no I/O thread and no thread-pool thread for it,
    /// and the verdict is made on the calling thread. When another thread already serves them (an
    /// earlier <see cref="RunAsync"/> left the I/O thread running, or another thread is in this
    /// method), this only waits. A handler in <paramref name="io"/> (output streams, usage and
    /// violation callbacks) then runs on the calling thread as well, and must not block on another
    /// run.
    /// </summary>
    /// <exception cref="PolicyException">The policy or command is not valid.</exception>
    public static Verdict Run(
        SandboxPolicy policy,
        IReadOnlyList<string> command,
        SandboxIO? io = null,
        CancellationToken cancellationToken = default) =>
        IoLoop.Shared.Serve(() => RunAsync(policy, command, io, cancellationToken));

    /// <summary>
    /// As <see cref="RunAsync"/>, but the sandbox is built for this run alone, whatever
    /// <see cref="PrepareAhead"/> says: none prepared ahead is taken and none is left for the next
    /// run. The benchmark times it beside <see cref="RunAsync"/> so that both costs are shown.
    /// </summary>
    internal static Task<Verdict> RunFreshAsync(SandboxPolicy policy, IReadOnlyList<string> command)
    {
        PolicyValidator.Validate(policy);
        PolicyValidator.ValidateCommand(command);
        return new SandboxRun(policy, command, SandboxIO.Capture, usePool: false).RunAsync(CancellationToken.None);
    }
}
