namespace Confine.Native;

internal static partial class Interop
{
    /// <summary>
    /// errno as a type, for code that tells failures apart rather than throwing on the first one
    /// (the cgroup backend: a missing file or a busy directory is an answer there, not an error).
    /// Values and names are Linux's (asm-generic/errno-base.h, errno.h), the same on x86_64 and arm64.
    /// </summary>
    internal enum Error
    {
        None = 0,
        EPERM = 1,
        ENOENT = 2,
        ESRCH = 3,
        EINTR = 4,
        EIO = 5,
        EAGAIN = 11,
        ENOMEM = 12,
        EACCES = 13,
        EBUSY = 16,
        EEXIST = 17,
        ENODEV = 19,
        ENOTDIR = 20,
        EINVAL = 22,
        ENOSPC = 28,
        EROFS = 30,
        ERANGE = 34,
        ENOTEMPTY = 39,
        EOPNOTSUPP = 95,
    }
}
