using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Running;

/// <summary>
/// A helper started before its setup plan was known, waiting for the plan on a pipe: the confine
/// command starts one before the .NET runtime does (native/confine-prestart.c), so that the
/// helper's own start overlaps the runtime's. It holds the same descriptors
/// <see cref="PreparedSandbox.Start"/> would have made for a helper it spawned.
/// </summary>
internal sealed class PrestartedHelper
{
    private static PrestartedHelper? s_adopted;

    public PrestartedHelper(
        int pid, string path, SafeFileHandle stdinWrite, SafeFileHandle stdoutRead, SafeFileHandle stderrRead,
        SafeFileHandle planWrite, SafeFileHandle report, SafeFileHandle lifelineWrite)
    {
        Pid = pid;
        Path = path;
        StdinWrite = stdinWrite;
        StdoutRead = stdoutRead;
        StderrRead = stderrRead;
        PlanWrite = planWrite;
        Report = report;
        LifelineWrite = lifelineWrite;
    }

    public int Pid { get; }

    /// <summary>The helper binary it runs, as the process that started it found it.</summary>
    public string Path { get; }

    public SafeFileHandle StdinWrite { get; }

    public SafeFileHandle StdoutRead { get; }

    public SafeFileHandle StderrRead { get; }

    public SafeFileHandle Report { get; }

    public SafeFileHandle LifelineWrite { get; }

    private SafeFileHandle PlanWrite { get; }

    /// <summary>
    /// Keeps <paramref name="helper"/> for the next sandbox this process starts, and tells it that the
    /// runtime has started: the helper makes the sandbox's network namespace only then, because
    /// doing it earlier holds a kernel lock the runtime's start needs (see PLAN_PIPE_START in plan.h).
    /// </summary>
    public static void Adopt(PrestartedHelper helper)
    {
        try
        {
            Posix.WriteAll(helper.PlanWrite, [HelperProtocol.PLAN_PIPE_START], "starting the prestarted helper");
        }
        catch (ErrnoException)
        {
            // Gone already: the run spawns its helper as usual.
            helper.Discard();
            return;
        }

        Interlocked.Exchange(ref s_adopted, helper)?.Discard();
    }

    /// <summary>The adopted helper, once; null when there is none or it was taken.</summary>
    public static PrestartedHelper? Take() => Interlocked.Exchange(ref s_adopted, null);

    /// <summary>Ends the adopted helper if no sandbox took it, and waits for it: nothing is left behind.</summary>
    public static void DiscardUnused() => Take()?.Discard();

    /// <summary>
    /// Gives the helper its setup plan. False when it is not the helper this process would spawn
    /// (<see cref="HelperProcess.Path"/>) or it is gone: it has then been discarded and reaped.
    /// </summary>
    public bool TryStart(ReadOnlySpan<byte> setupPlan)
    {
        if (!string.Equals(Path, HelperProcess.Path, StringComparison.Ordinal))
        {
            Discard();
            return false;
        }

        try
        {
            // The helper reads the pipe to its end, so a plan larger than the pipe only makes this
            // write wait for it.
            Posix.WriteAll(PlanWrite, setupPlan, "writing the setup plan to the prestarted helper");
        }
        catch (ErrnoException)
        {
            Discard();
            return false;
        }

        PlanWrite.Dispose();
        return true;
    }

    /// <summary>
    /// Ends the helper and reaps it. It is waiting for its plan: at the end of the plan's pipe it ends
    /// the init it may have started, which has built nothing yet, and exits.
    /// </summary>
    private void Discard()
    {
        foreach (SafeFileHandle handle in (SafeFileHandle[])[PlanWrite, LifelineWrite, Report, StdinWrite, StdoutRead, StderrRead])
        {
            handle.Dispose();
        }

        try
        {
            Posix.WaitPid(Pid);
        }
        catch (ErrnoException e) when (e.Errno == Interop.ECHILD)
        {
            // Reaped by the kernel already: this process was started with SIGCHLD ignored, which
            // native/confine-prestart.c undoes, but a host of the library might do it again.
        }
    }
}
