using System.Runtime.InteropServices;

namespace Confine.Native;

/// <summary>
/// The libc calls Confine makes, declared in one place. Callers go through the checked wrappers in
/// <see cref="Posix"/>; nothing outside this folder sees a raw declaration.
/// </summary>
internal static unsafe partial class Interop
{
    private const string Libc = "libc";

    internal const int O_RDONLY = 0x0;
    internal const int O_WRONLY = 0x1;
    internal const int O_RDWR = 0x2;
    internal const int O_NONBLOCK = 0x800;
    internal const int O_CLOEXEC = 0x80000;
    internal const int O_CREAT = 0x40;
    internal const int O_TRUNC = 0x200;
    internal const int O_NOFOLLOW = 0x20000;
    internal const int O_DIRECTORY = 0x10000;

    internal const int F_GETFL = 3;
    internal const int F_SETFL = 4;

    internal const int AF_UNIX = 1;
    internal const int SOCK_SEQPACKET = 5;
    internal const int SOCK_NONBLOCK = 0x800;
    internal const int SOCK_CLOEXEC = 0x80000;
    internal const int MSG_DONTWAIT = 0x40;
    internal const int MSG_NOSIGNAL = 0x4000;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;
    internal const int SOL_SOCKET = 1;
    internal const int SCM_RIGHTS = 1;

    internal const uint MFD_CLOEXEC = 0x1;

    internal const int EPOLL_CLOEXEC = 0x80000;
    internal const int EPOLL_CTL_ADD = 1;
    internal const int EPOLL_CTL_DEL = 2;
    internal const uint EPOLLIN = 0x001;
    internal const uint EPOLLERR = 0x008;
    internal const uint EPOLLHUP = 0x010;
    internal const uint EPOLLRDHUP = 0x2000;

    internal const int EFD_CLOEXEC = 0x80000;
    internal const int EFD_NONBLOCK = 0x800;

    internal const int WNOHANG = 1;

    internal const short POSIX_SPAWN_SETSIGMASK = 0x08;
    internal const short POSIX_SPAWN_SETSIGDEF = 0x04;

    internal const int EINTR = 4;
    internal const int ECHILD = 10;
    internal const int EAGAIN = 11;
    internal const int ECONNRESET = 104;

    internal const int SIGKILL = 9;

    internal const long SYS_pidfd_open = 434;

    // glibc's posix_spawn_file_actions_t is 80 bytes and posix_spawnattr_t 336 on x86_64; the
    // buffers leave room so a larger future layout cannot overrun them.
    internal const int PosixSpawnFileActionsSize = 256;
    internal const int PosixSpawnAttrSize = 512;

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    internal struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    internal struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int getrlimit(int resource, RLimit* limit);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int pipe2(int* fds, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int socketpair(int domain, int type, int protocol, int* fds);

    [LibraryImport(Libc, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int memfd_create(string name, uint flags);

    [LibraryImport(Libc, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int open(string path, int flags, int mode);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int close(int fd);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial nint read(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial nint write(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial nint pread(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial nint recvmsg(int fd, MsgHdr* message, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial nint sendmsg(int fd, MsgHdr* message, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int fcntl(int fd, int command, int argument);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int epoll_create1(int flags);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int epoll_ctl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int epoll_wait(int epfd, EpollEvent* events, int maxEvents, int timeout);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int eventfd(uint initial, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int waitpid(int pid, int* status, int options);

    [LibraryImport(Libc, SetLastError = true)]
    internal static partial int kill(int pid, int signal);

    // glibc wraps pidfd_open only from 2.36 on; syscall is variadic in C, and on x86_64 a fixed
    // prototype passes the same registers.
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall_pidfd_open(long number, int pid, uint flags);

    [LibraryImport(Libc)]
    internal static partial uint geteuid();

    [LibraryImport(Libc)]
    internal static partial uint getegid();

    // posix_spawn returns the error number instead of setting errno.
    [LibraryImport(Libc, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int posix_spawn(
        int* pid, string path, void* fileActions, void* attributes, byte** argv, byte** envp);

    [LibraryImport(Libc)]
    internal static partial int posix_spawn_file_actions_init(void* fileActions);

    [LibraryImport(Libc)]
    internal static partial int posix_spawn_file_actions_destroy(void* fileActions);

    [LibraryImport(Libc)]
    internal static partial int posix_spawn_file_actions_adddup2(void* fileActions, int fd, int newFd);

    [LibraryImport(Libc)]
    internal static partial int posix_spawn_file_actions_addclosefrom_np(void* fileActions, int from);

    [LibraryImport(Libc)]
    internal static partial int posix_spawnattr_init(void* attributes);

    [LibraryImport(Libc)]
    internal static partial int posix_spawnattr_destroy(void* attributes);

    [LibraryImport(Libc)]
    internal static partial int posix_spawnattr_setflags(void* attributes, short flags);

    [LibraryImport(Libc)]
    internal static partial int posix_spawnattr_setsigmask(void* attributes, ulong* mask);

    [LibraryImport(Libc)]
    internal static partial int posix_spawnattr_setsigdefault(void* attributes, ulong* mask);

    [LibraryImport(Libc)]
    internal static partial int sigemptyset(ulong* set);

    [LibraryImport(Libc)]
    internal static partial int sigfillset(ulong* set);

    [LibraryImport(Libc)]
    internal static partial nint strerror(int errnum);
}
