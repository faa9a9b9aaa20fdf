using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Confine.Running;
using Microsoft.Win32.SafeHandles;

namespace Confine.Cli;

/// <summary>
/// Takes the helper that native/confine-prestart.c started, before the runtime, for a
/// <c>confine run</c>, and hands it to the library for the run's sandbox. Only the NativeAOT
/// command links that code; the JIT-compiled one spawns its helper the usual way.
/// </summary>
internal static unsafe partial class PrestartHandOver
{
    // PATH_MAX.
    private const int PathCapacity = 4096;

    /// <summary>Mirrors struct prestarted_helper in native/confine-prestart.c.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct StartedHelper
    {
        public int Pid;
        public int StdinWrite;
        public int StdoutRead;
        public int StderrRead;
        public int PlanWrite;
        public int Report;
        public int LifelineWrite;
        public fixed byte Path[PathCapacity];
    }

    [LibraryImport("confine-prestart")]
    private static partial int confine_take_prestarted_helper(StartedHelper* helper);

    /// <summary>Adopts the prestarted helper, if this is the NativeAOT command and one was started.</summary>
    public static void Adopt()
    {
        if (RuntimeFeature.IsDynamicCodeSupported)
        {
            return;
        }

        StartedHelper started;
        if (confine_take_prestarted_helper(&started) == 0)
        {
            return;
        }

        string path = Marshal.PtrToStringUTF8((nint)started.Path) ?? "";
        PrestartedHelper.Adopt(new PrestartedHelper(
            started.Pid,
            path,
            Own(started.StdinWrite),
            Own(started.StdoutRead),
            Own(started.StderrRead),
            Own(started.PlanWrite),
            Own(started.Report),
            Own(started.LifelineWrite)));
    }

    private static SafeFileHandle Own(int fd) => new(fd, ownsHandle: true);
}
