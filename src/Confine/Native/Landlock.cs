using System.Runtime.InteropServices;

namespace Confine.Native;

/// <summary>What the kernel's Landlock offers, probed once per process.</summary>
internal static partial class Landlock
{
    private const long SYS_landlock_create_ruleset = 444;
    private const uint LANDLOCK_CREATE_RULESET_VERSION = 1;

    public const ulong LANDLOCK_ACCESS_FS_EXECUTE = 1UL << 0;
    public const ulong LANDLOCK_ACCESS_FS_WRITE_FILE = 1UL << 1;
    public const ulong LANDLOCK_ACCESS_FS_READ_FILE = 1UL << 2;
    public const ulong LANDLOCK_ACCESS_FS_READ_DIR = 1UL << 3;
    public const ulong LANDLOCK_ACCESS_FS_REMOVE_DIR = 1UL << 4;
    public const ulong LANDLOCK_ACCESS_FS_REMOVE_FILE = 1UL << 5;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_CHAR = 1UL << 6;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_DIR = 1UL << 7;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_REG = 1UL << 8;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_SOCK = 1UL << 9;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_FIFO = 1UL << 10;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1UL << 11;
    public const ulong LANDLOCK_ACCESS_FS_MAKE_SYM = 1UL << 12;
    public const ulong LANDLOCK_ACCESS_FS_REFER = 1UL << 13;
    public const ulong LANDLOCK_ACCESS_FS_TRUNCATE = 1UL << 14;
    public const ulong LANDLOCK_ACCESS_FS_IOCTL_DEV = 1UL << 15;

    public const ulong LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1UL << 0;
    public const ulong LANDLOCK_SCOPE_SIGNAL = 1UL << 1;

    private static readonly Lazy<int> s_abi = new(ProbeAbi);

    /// <summary>The highest Landlock ABI the kernel supports; 0 when Landlock is absent or disabled.</summary>
    public static int Abi => s_abi.Value;

    /// <summary>Every filesystem right the running kernel can restrict.</summary>
    public static ulong HandledFileSystemAccess(int abi)
    {
        if (abi < 1)
        {
            return 0;
        }

        ulong rights = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1;
        if (abi >= 2)
        {
            rights |= LANDLOCK_ACCESS_FS_REFER;
        }

        if (abi >= 3)
        {
            rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
        }

        if (abi >= 5)
        {
            rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
        }

        return rights;
    }

    /// <summary>The IPC scopes the running kernel can restrict (ABI 6 and later).</summary>
    public static ulong Scopes(int abi) =>
        abi >= 6 ? LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL : 0;

    private static int ProbeAbi()
    {
        long version = syscall(SYS_landlock_create_ruleset, 0, 0, LANDLOCK_CREATE_RULESET_VERSION);
        return version > 0 ? (int)version : 0;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, nint attributes, nint size, uint flags);
}
