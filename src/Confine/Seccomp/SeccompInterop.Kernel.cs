using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Seccomp;

/// <summary>The libc calls and kernel structures of seccomp's user-space notification (x86_64 layouts).</summary>
internal static unsafe partial class SeccompInterop
{
    private const string Libc = "libc";

    internal const long SYS_seccomp = 317;

    internal const uint SECCOMP_SET_MODE_FILTER = 1;
    internal const uint SECCOMP_GET_NOTIF_SIZES = 3;
    internal const uint SECCOMP_FILTER_FLAG_NEW_LISTENER = 1u << 3;

    internal const uint SECCOMP_RET_KILL_PROCESS = 0x80000000;
    internal const uint SECCOMP_RET_KILL_THREAD = 0x00000000;
    internal const uint SECCOMP_RET_TRAP = 0x00030000;
    internal const uint SECCOMP_RET_ERRNO = 0x00050000;
    internal const uint SECCOMP_RET_USER_NOTIF = 0x7fc00000;
    internal const uint SECCOMP_RET_TRACE = 0x7ff00000;
    internal const uint SECCOMP_RET_LOG = 0x7ffc0000;
    internal const uint SECCOMP_RET_ALLOW = 0x7fff0000;
    internal const uint SECCOMP_RET_ACTION_FULL = 0xffff0000;
    internal const uint SECCOMP_RET_DATA = 0x0000ffff;

    internal const uint AUDIT_ARCH_X86_64 = 0xC000003E;
    internal const uint AUDIT_ARCH_I386 = 0x40000003;

    /// <summary>The bit that marks an x32-ABI call in an x86_64 syscall number (asm/unistd.h).</summary>
    internal const uint __X32_SYSCALL_BIT = 0x40000000;

    internal const int MFD_CLOEXEC = 0x1;
    internal const short POLLIN = 0x001;
    internal const short POLLERR = 0x008;
    internal const short POLLHUP = 0x010;
    internal const short POLLNVAL = 0x020;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;
    internal const int SOL_SOCKET = 1;
    internal const int SCM_RIGHTS = 1;

    internal const int EPERM = 1;
    internal const int ENOENT = 2;
    internal const int EINTR = 4;
    internal const int EAGAIN = 11;
    internal const int ENOSYS = 38;

    // asm-generic/ioctl.h: dir in bits 30-31, size in 16-29, type in 8-15, number in 0-7.
    private const uint _IOC_WRITE = 1;
    private const uint _IOC_READ = 2;

    /// <summary><c>_IOWR('!', 0, struct seccomp_notif)</c></summary>
    internal static readonly uint SECCOMP_IOCTL_NOTIF_RECV =
        _IOC(_IOC_READ | _IOC_WRITE, '!', 0, sizeof(seccomp_notif));

    /// <summary><c>_IOWR('!', 1, struct seccomp_notif_resp)</c></summary>
    internal static readonly uint SECCOMP_IOCTL_NOTIF_SEND =
        _IOC(_IOC_READ | _IOC_WRITE, '!', 1, sizeof(seccomp_notif_resp));

    /// <summary><c>_IOW('!', 2, __u64)</c></summary>
    internal static readonly uint SECCOMP_IOCTL_NOTIF_ID_VALID = _IOC(_IOC_WRITE, '!', 2, sizeof(ulong));

    private static uint _IOC(uint dir, char type, uint nr, int size) =>
        (dir << 30) | ((uint)size << 16) | ((uint)type << 8) | nr;

    [StructLayout(LayoutKind.Sequential)]
    internal struct seccomp_data
    {
        public int nr;
        public uint arch;
        public ulong instruction_pointer;
        public fixed ulong args[6];
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct seccomp_notif
    {
        public ulong id;
        public uint pid;
        public uint flags;
        public seccomp_data data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct seccomp_notif_resp
    {
        public ulong id;
        public long val;
        public int error;
        public uint flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct seccomp_notif_sizes
    {
        public ushort seccomp_notif;
        public ushort seccomp_notif_resp;
        public ushort seccomp_data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int fd;
        public short events;
        public short revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        public void* iov_base;
        public nuint iov_len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MsgHdr
    {
        public void* msg_name;
        public uint msg_namelen;
        public IoVec* msg_iov;
        public nuint msg_iovlen;
        public void* msg_control;
        public nuint msg_controllen;
        public int msg_flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct CmsgHdr
    {
        public nuint cmsg_len;
        public int cmsg_level;
        public int cmsg_type;
    }

    [LibraryImport(Libc, EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int memfd_create_raw(string name, int flags);

    // ioctl and syscall are variadic in C; on x86_64 a fixed prototype passes the same registers.
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_raw(SafeHandle fd, nuint request, void* arg);

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_seccomp(long number, uint operation, uint flags, void* args);

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    private static partial int poll_raw(PollFd* fds, nuint nfds, int timeout);

    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint recvmsg_raw(SafeHandle socket, MsgHdr* message, int flags);

    internal static SafeFileHandle CreateMemfd(string name)
    {
        int fd = memfd_create_raw(name, MFD_CLOEXEC);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw Error("memfd_create");
    }

    /// <summary>The kernel's sizes of the notification structures (<c>SECCOMP_GET_NOTIF_SIZES</c>).</summary>
    internal static seccomp_notif_sizes GetNotificationSizes()
    {
        seccomp_notif_sizes sizes;
        if (syscall_seccomp(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
        {
            throw Error("seccomp(SECCOMP_GET_NOTIF_SIZES)");
        }

        return sizes;
    }

    /// <summary>Waits for events on <paramref name="fds"/>, retrying on EINTR; returns how many are ready.</summary>
    internal static int Poll(Span<PollFd> fds, int timeoutMilliseconds)
    {
        fixed (PollFd* p = fds)
        {
            while (true)
            {
                int ready = poll_raw(p, (nuint)fds.Length, timeoutMilliseconds);
                if (ready >= 0)
                {
                    return ready;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR)
                {
                    throw Error("poll", errno);
                }
            }
        }
    }

    /// <summary>Calls <c>ioctl</c>, retrying on EINTR; returns 0 or the errno it failed with.</summary>
    internal static int Ioctl(SafeHandle fd, uint request, void* argument)
    {
        while (ioctl_raw(fd, request, argument) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary>
    /// Receives one message carrying a file descriptor in <c>SCM_RIGHTS</c> from a Unix socket, as the
    /// helper sends the seccomp listener. The descriptor arrives close-on-exec.
    /// </summary>
    internal static SafeFileHandle ReceiveDescriptor(SafeHandle socket)
    {
        byte data;
        IoVec io = new() { iov_base = &data, iov_len = 1 };

        // CMSG_SPACE(sizeof(int)): the header, then the int, padded to 8 bytes.
        const int controlSize = 24;
        byte* control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();

        MsgHdr message = new() { msg_iov = &io, msg_iovlen = 1, msg_control = control, msg_controllen = controlSize };
        nint received;
        while ((received = recvmsg_raw(socket, &message, MSG_CMSG_CLOEXEC)) < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                throw Error("recvmsg", errno);
            }
        }

        CmsgHdr* header = (CmsgHdr*)control;
        if (received == 0 || message.msg_controllen < (nuint)sizeof(CmsgHdr) + sizeof(int)
            || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS)
        {
            throw new InvalidDataException(
                "the message that should carry the seccomp listener has no SCM_RIGHTS descriptor");
        }

        int fd = *(int*)(control + sizeof(CmsgHdr));
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private static ErrnoException Error(string call) => new(Marshal.GetLastPInvokeError(), call);

    private static ErrnoException Error(string call, int errno) => new(errno, call);
}
