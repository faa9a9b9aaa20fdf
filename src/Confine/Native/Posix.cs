using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Confine.Native;

/// <summary>Checked wrappers over <see cref="Interop"/>: errors become <see cref="ErrnoException"/>.</summary>
internal static unsafe class Posix
{
    /// <summary>A close-on-exec pipe: (read end, write end).</summary>
    public static (SafeFileHandle Read, SafeFileHandle Write) Pipe()
    {
        int* fds = stackalloc int[2];
        Check(Interop.pipe2(fds, Interop.O_CLOEXEC), "pipe2");
        return (new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true));
    }

    /// <summary>A close-on-exec <c>SOCK_SEQPACKET</c> socket pair.</summary>
    public static (SafeFileHandle First, SafeFileHandle Second) SeqPacketPair()
    {
        int* fds = stackalloc int[2];
        Check(Interop.socketpair(Interop.AF_UNIX, Interop.SOCK_SEQPACKET | Interop.SOCK_CLOEXEC, 0, fds), "socketpair");
        return (new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true));
    }

    /// <summary>An anonymous close-on-exec memory file holding <paramref name="content"/>.</summary>
    public static SafeFileHandle MemoryFile(string name, ReadOnlySpan<byte> content)
    {
        int fd = Interop.memfd_create(name, Interop.MFD_CLOEXEC);
        Check(fd, "memfd_create");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        WriteAll(handle, content, "write to memfd");
        return handle;
    }

    /// <summary>This process's hard limit for an rlimit resource; a sandbox can lower it but never raise it.</summary>
    public static ulong HardRlimit(int resource)
    {
        Interop.RLimit limit;
        Check(Interop.getrlimit(resource, &limit), "getrlimit");
        return limit.Maximum;
    }

    /// <summary>
    /// Opens a host file the caller named, to read (<paramref name="write"/> false) or to create or
    /// truncate and write, never through a symbolic link in its last component: the file may sit in
    /// a directory a sandbox could write, where it could have planted a link to a file Confine may
    /// read or write and the sandbox may not.
    /// </summary>
    public static FileStream OpenHostFile(string path, bool write)
    {
        int flags = Interop.O_NOFOLLOW | (write ? Interop.O_WRONLY | Interop.O_CREAT | Interop.O_TRUNC : Interop.O_RDONLY);
        int fd = Interop.open(path, flags | Interop.O_CLOEXEC, 0x1A4 /* 0644 */);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            const int ELOOP = 40;
            throw new IOException(errno == ELOOP
                ? $"'{path}' is a symbolic link; name the file it points to"
                : $"'{path}': {StrError(errno)}");
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Directory.Exists(path))
        {
            handle.Dispose();
            throw new IOException($"'{path}' is a directory");
        }

        return new FileStream(handle, write ? FileAccess.Write : FileAccess.Read, bufferSize: 0);
    }

    /// <summary>Opens a file close-on-exec.</summary>
    public static SafeFileHandle Open(string path, int flags)
    {
        int fd = Interop.open(path, flags | Interop.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new ErrnoException(Marshal.GetLastPInvokeError(), $"open {path}");
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }

    public static void SetNonBlocking(SafeFileHandle handle)
    {
        int fd = (int)handle.DangerousGetHandle();
        int flags = Interop.fcntl(fd, Interop.F_GETFL, 0);
        Check(flags, "fcntl(F_GETFL)");
        Check(Interop.fcntl(fd, Interop.F_SETFL, flags | Interop.O_NONBLOCK), "fcntl(F_SETFL)");
    }

    public static void WriteAll(SafeFileHandle handle, ReadOnlySpan<byte> content, string what)
    {
        int fd = (int)handle.DangerousGetHandle();
        fixed (byte* start = content)
        {
            int done = 0;
            while (done < content.Length)
            {
                nint n = Interop.write(fd, start + done, (nuint)(content.Length - done));
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Interop.EINTR)
                    {
                        continue;
                    }

                    throw new ErrnoException(errno, what);
                }

                done += (int)n;
            }
        }
    }

    /// <summary>
    /// A descriptor for process <paramref name="pid"/> that becomes readable once it has ended; always
    /// close-on-exec. For a child not yet reaped the pid cannot have been reused, so it names that child.
    /// </summary>
    public static SafeFileHandle PidFd(int pid)
    {
        int fd = (int)Interop.syscall_pidfd_open(Interop.SYS_pidfd_open, pid, 0);
        Check(fd, $"pidfd_open({pid})");
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Reaps a child, retrying on EINTR; returns its wait status.</summary>
    public static int WaitPid(int pid)
    {
        int status;
        while (Interop.waitpid(pid, &status, 0) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Interop.EINTR)
            {
                throw new ErrnoException(errno, $"waitpid({pid})");
            }
        }

        return status;
    }

    /// <summary>The owner of <paramref name="path"/> itself (a symlink is not followed); null if it cannot be read.</summary>
    public static uint? OwnerOf(string path)
    {
        Interop.Statx buffer;
        return Interop.statx(Interop.AT_FDCWD, path, Interop.AT_SYMLINK_NOFOLLOW, Interop.STATX_UID, &buffer) == 0
            ? buffer.Uid
            : null;
    }

    /// <summary>
    /// Which file <paramref name="path"/> names now, through symbolic links as a bind follows them;
    /// null if it cannot be looked up.
    /// </summary>
    public static FileIdentity? IdentityOf(string path)
    {
        Interop.Statx buffer;
        if (Interop.statx(Interop.AT_FDCWD, path, 0, Interop.STATX_INO | Interop.STATX_BTIME, &buffer) != 0)
        {
            return null;
        }

        // A file system that keeps no birth time leaves it out of the mask, and the inode alone decides.
        bool born = (buffer.Mask & Interop.STATX_BTIME) != 0;
        return new FileIdentity(
            buffer.DevMajor,
            buffer.DevMinor,
            buffer.Inode,
            born ? buffer.BirthSeconds : 0,
            born ? buffer.BirthNanoseconds : 0);
    }

    /// <summary>
    /// The whole of a small file as text, or null when it cannot be read. For /proc and /sys files,
    /// whose size stat does not know: read until end of file, with no stream or reader around it.
    /// </summary>
    public static string? TryReadText(string path) => ReadText(path, out _);

    /// <summary>As <see cref="TryReadText"/>, for a file that must be there: its absence is an error.</summary>
    /// <exception cref="IOException">The file cannot be opened or read; the message names the errno.</exception>
    public static string ReadText(string path) =>
        ReadText(path, out int errno) ?? throw new IOException($"cannot read {path}: {StrError(errno)} ({Native.Errno.Name(errno)})");

    private static string? ReadText(string path, out int errno)
    {
        int fd;
        do
        {
            fd = Interop.open(path, Interop.O_RDONLY | Interop.O_CLOEXEC, 0);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (fd < 0 && (Interop.Error)errno == Interop.Error.EINTR);

        if (fd < 0)
        {
            return null;
        }

        try
        {
            return ReadToEnd(fd, fromStart: false, out errno);
        }
        finally
        {
            Interop.close(fd);
        }
    }

    /// <summary>
    /// The whole of a small file, read afresh from its start through a descriptor kept open (pread
    /// at offset 0, which makes a /proc or cgroup file produce its current contents again); null when
    /// it cannot be read.
    /// </summary>
    public static string? TryReadTextAgain(SafeFileHandle handle)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return ReadToEnd((int)handle.DangerousGetHandle(), fromStart: true, out _);
        }
        catch (ObjectDisposedException)
        {
            // Closed by its owner meanwhile (a sample taken as the run ends): nothing to read.
            return null;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Reads <paramref name="fd"/> until end of file: from where it is, or with pread from offset 0.</summary>
    private static string? ReadToEnd(int fd, bool fromStart, out int errno)
    {
        errno = 0;

        // Most such files fit a page; mountinfo on a host with many mounts, or io.stat with many disks, may not.
        byte[] buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            int length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                nint count;
                fixed (byte* free = &buffer[length])
                {
                    nuint room = (nuint)(buffer.Length - length);
                    count = fromStart ? Interop.pread(fd, free, room, length) : Interop.read(fd, free, room);
                }

                if (count < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if ((Interop.Error)errno == Interop.Error.EINTR)
                    {
                        continue;
                    }

                    return null;
                }

                if (count == 0)
                {
                    return System.Text.Encoding.UTF8.GetString(buffer, 0, length);
                }

                length += (int)count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// A text that changes whenever the file <paramref name="path"/> names (through symbolic links)
    /// is replaced or modified: its device, inode, size, and change and modification times; "absent"
    /// when there is no such file.
    /// </summary>
    public static string VersionStamp(string path)
    {
        Interop.Statx b;
        const uint Wanted = Interop.STATX_INO | Interop.STATX_SIZE | Interop.STATX_MTIME | Interop.STATX_CTIME;
        return Interop.statx(Interop.AT_FDCWD, path, 0, Wanted, &b) != 0
            ? "absent"
            : string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{b.DevMajor}:{b.DevMinor}:{b.Inode}:{b.Size}:{b.ChangeSeconds}.{b.ChangeNanoseconds}:{b.ModifySeconds}.{b.ModifyNanoseconds}");
    }

    public static string StrError(int errno) => Marshal.PtrToStringUTF8(Interop.strerror(errno)) ?? $"errno {errno}";

    public static int Check(int result, string what)
    {
        if (result < 0)
        {
            throw new ErrnoException(Marshal.GetLastPInvokeError(), what);
        }

        return result;
    }
}

/// <summary>A failed system call: its errno, kept as a number and a name.</summary>
internal sealed class ErrnoException : Exception
{
    public ErrnoException(int errno, string operation)
        : base($"{operation}: {Posix.StrError(errno)} ({Native.Errno.Name(errno)})")
    {
        Errno = errno;
        Operation = operation;
    }

    public int Errno { get; }

    public string Operation { get; }
}
