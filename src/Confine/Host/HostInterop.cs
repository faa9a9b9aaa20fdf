using System.Runtime.InteropServices;

namespace Confine.Host;

/// <summary>
/// The few calls the host check makes that .NET has no API for. Each is a question the kernel
/// answers without changing anything: which seccomp mode this process is in, which Landlock ABI
/// the kernel speaks.
/// </summary>
internal static unsafe partial class HostInterop
{
    private const string Libc = "libc";

    internal const int PR_GET_SECCOMP = 21;

    // The generic syscall table gives Landlock the same number on every architecture.
    internal const long SYS_landlock_create_ruleset = 444;
    internal const uint LANDLOCK_CREATE_RULESET_VERSION = 1u << 0;

    internal const int EINVAL = 22;
    internal const int ENOSYS = 38;
    internal const int EOPNOTSUPP = 95;

    [LibraryImport(Libc, SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    // syscall(2) is variadic; with integer arguments only, the x86_64 and arm64 calling conventions
    // pass them exactly as a fixed-argument call does.
    [LibraryImport(Libc, SetLastError = true)]
    private static partial nint syscall(nint number, nint arg1, nint arg2, nint arg3);

    /// <summary>This process's seccomp mode (0 none, 1 strict, 2 filter), or the errno when the kernel has no seccomp.</summary>
    public static (int? Mode, int Errno) SeccompMode()
    {
        int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
        return mode < 0 ? (null, Marshal.GetLastPInvokeError()) : (mode, 0);
    }

    /// <summary>
    /// The highest Landlock ABI the kernel supports, or the errno: ENOSYS when it was built without
    /// Landlock, EOPNOTSUPP when Landlock is built in but not enabled at boot.
    /// </summary>
    public static (int? Abi, int Errno) LandlockAbi()
    {
        nint abi = syscall((nint)SYS_landlock_create_ruleset, 0, 0, (nint)LANDLOCK_CREATE_RULESET_VERSION);
        return abi < 0 ? (null, Marshal.GetLastPInvokeError()) : ((int)abi, 0);
    }

    /// <summary>libseccomp's <c>struct scmp_version</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct scmp_version
    {
        public uint major;
        public uint minor;
        public uint micro;
    }

    /// <summary>
    /// Loads <c>libseccomp.so.2</c> the way the seccomp layer will, and asks for its version
    /// (<c>seccomp_version</c>, libseccomp 2.3 and later). Null when it cannot be loaded.
    /// </summary>
    public static (bool Loaded, string? Version) Libseccomp()
    {
        if (!NativeLibrary.TryLoad("libseccomp.so.2", out nint library))
        {
            return (false, null);
        }

        try
        {
            if (!NativeLibrary.TryGetExport(library, "seccomp_version", out nint export))
            {
                return (true, null);
            }

            var version = ((delegate* unmanaged<scmp_version*>)export)();
            return (true, version is null ? null : $"{version->major}.{version->minor}.{version->micro}");
        }
        finally
        {
            NativeLibrary.Free(library);
        }
    }
}
