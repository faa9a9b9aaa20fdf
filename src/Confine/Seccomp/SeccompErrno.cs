using System.Globalization;

namespace Confine.Seccomp;

/// <summary>Linux errno numbers (x86_64) and their names, for errno actions in profiles.</summary>
internal static class SeccompErrno
{
    internal const int EPERM = 1;
    internal const int ENOSYS = 38;
    internal const int EAFNOSUPPORT = 97;

    // Index i holds the name of errno i; gaps (41, 58) are numbers Linux leaves unused.
    private static readonly string[] s_names =
    [
        "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
        "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL",
        "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM",
        "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "", "ENOMSG", "EIDRM",
        "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR",
        "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET",
        "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG",
        "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC",
        "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE",
        "ENOPROTOOPT", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT",
        "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET",
        "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN",
        "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO",
        "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED",
        "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
    ];

    /// <summary>The symbolic name of <paramref name="errno"/>, or its number when it has none.</summary>
    internal static string Name(int errno) =>
        errno > 0 && errno < s_names.Length && s_names[errno].Length > 0
            ? s_names[errno]
            : errno.ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses a name (<c>ENOSYS</c>) or a decimal number.</summary>
    internal static bool TryParse(string text, out int errno)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out errno))
        {
            return true;
        }

        errno = Array.IndexOf(s_names, text);
        if (errno > 0)
        {
            return true;
        }

        // glibc's aliases for numbers that already have a name above.
        errno = text switch
        {
            "EWOULDBLOCK" => 11,
            "EDEADLOCK" => 35,
            "ENOTSUP" => 95,
            _ => 0,
        };
        return errno > 0;
    }
}
