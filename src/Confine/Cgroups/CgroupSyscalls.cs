using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Cgroups;

/// <summary>
/// The system calls the cgroup backend makes, over <see cref="Interop"/>. Unlike
/// <see cref="Posix"/> these return the errno instead of throwing: most cgroup failures are
/// answers (a missing file, a busy directory, a refused value) that the caller turns into the
/// right exception itself. EINTR is retried here.
/// </summary>
internal static unsafe class CgroupSyscalls
{
    private static Interop.Error LastError() => (Interop.Error)Marshal.GetLastPInvokeError();

    /// <summary>Opens <paramref name="path"/> close-on-exec, for reading or for writing.</summary>
    public static Interop.Error Open(string path, bool write, out SafeFileHandle handle)
    {
        int flags = (write ? Interop.O_WRONLY : Interop.O_RDONLY) | Interop.O_CLOEXEC;
        int fd;
        Interop.Error error = Interop.Error.None;
        do
        {
            fd = Interop.open(path, flags, 0);
        }
        while (fd < 0 && (error = LastError()) == Interop.Error.EINTR);

        handle = new SafeFileHandle(fd, ownsHandle: true);
        return fd < 0 ? error : Interop.Error.None;
    }

    /// <summary>
    /// Writes <paramref name="data"/> in one call: cgroup files take one value per write, so a
    /// short write is reported as EIO rather than continued.
    /// </summary>
    public static Interop.Error Write(SafeFileHandle handle, ReadOnlySpan<byte> data)
    {
        int fd = (int)handle.DangerousGetHandle();
        nint n;
        Interop.Error error = Interop.Error.None;
        fixed (byte* p = data)
        {
            do
            {
                n = Interop.write(fd, p, (nuint)data.Length);
            }
            while (n < 0 && (error = LastError()) == Interop.Error.EINTR);
        }

        if (n < 0)
        {
            return error;
        }

        return n == data.Length ? Interop.Error.None : Interop.Error.EIO;
    }

    /// <summary>Creates a directory; EEXIST is returned, not ignored, since a clash means a name was reused.</summary>
    public static Interop.Error Mkdir(string path, uint mode) =>
        Interop.mkdir(path, mode) == 0 ? Interop.Error.None : LastError();

    /// <summary>Removes an empty directory (on cgroupfs, a cgroup without tasks or children).</summary>
    public static Interop.Error Rmdir(string path) => Interop.rmdir(path) == 0 ? Interop.Error.None : LastError();

    /// <summary>
    /// Whether this process may create entries in <paramref name="directory"/>. access(2) checks the
    /// real ids and a read-only mount, which is what a later mkdir will face.
    /// </summary>
    public static bool CanWriteDirectory(string directory) =>
        Interop.access(directory, Interop.W_OK | Interop.X_OK) == 0;

    /// <summary>Whether this process may write <paramref name="file"/> (such as cgroup.subtree_control).</summary>
    public static bool CanWriteFile(string file) => Interop.access(file, Interop.W_OK) == 0;

    /// <summary>Sends SIGKILL to <paramref name="pid"/>.</summary>
    public static Interop.Error Kill(int pid) =>
        Interop.kill(pid, Interop.SIGKILL) == 0 ? Interop.Error.None : LastError();

    /// <summary>
    /// The device numbers of <paramref name="path"/>: for a block device node its own numbers
    /// (<c>st_rdev</c>), otherwise the numbers of the filesystem holding it (<c>st_dev</c>).
    /// </summary>
    public static Interop.Error StatDevice(string path, out bool isBlockDevice, out uint major, out uint minor)
    {
        Interop.Statx buffer = default;
        if (Interop.statx(Interop.AT_FDCWD, path, 0, Interop.STATX_TYPE | Interop.STATX_MODE, &buffer) != 0)
        {
            isBlockDevice = false;
            major = minor = 0;
            return LastError();
        }

        isBlockDevice = (buffer.Mode & Interop.S_IFMT) == Interop.S_IFBLK;
        major = isBlockDevice ? buffer.RdevMajor : buffer.DevMajor;
        minor = isBlockDevice ? buffer.RdevMinor : buffer.DevMinor;
        return Interop.Error.None;
    }

    /// <summary>The error's name and the C library's description (<c>EBUSY: Device or resource busy</c>).</summary>
    public static string Describe(Interop.Error error) => $"{error}: {Posix.StrError((int)error)}";
}
