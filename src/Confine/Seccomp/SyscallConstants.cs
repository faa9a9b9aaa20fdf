using System.Globalization;
using System.Text;

namespace Confine.Seccomp;

/// <summary>
/// The kernel constants that profiles compare arguments against and that violations are rendered
/// with, under their C names (x86_64 values, from linux/sched.h, linux/socket.h, linux/netlink.h,
/// asm-generic/ioctls.h, linux/personality.h and linux/ptrace.h).
/// </summary>
internal static class SyscallConstants
{
    internal const ulong CLONE_NEWTIME = 0x00000080;
    internal const ulong CLONE_NEWNS = 0x00020000;
    internal const ulong CLONE_NEWCGROUP = 0x02000000;
    internal const ulong CLONE_NEWUTS = 0x04000000;
    internal const ulong CLONE_NEWIPC = 0x08000000;
    internal const ulong CLONE_NEWUSER = 0x10000000;
    internal const ulong CLONE_NEWPID = 0x20000000;
    internal const ulong CLONE_NEWNET = 0x40000000;

    internal const ulong AF_UNSPEC = 0;
    internal const ulong AF_UNIX = 1;
    internal const ulong AF_INET = 2;
    internal const ulong AF_INET6 = 10;
    internal const ulong AF_NETLINK = 16;
    internal const ulong AF_PACKET = 17;
    internal const ulong AF_ALG = 38;
    internal const ulong AF_VSOCK = 40;

    internal const ulong NETLINK_ROUTE = 0;

    internal const ulong TIOCSTI = 0x5412;
    internal const ulong TIOCLINUX = 0x541C;

    internal const ulong PER_LINUX = 0x0000;

    /// <summary><c>personality(0xffffffff)</c> only reads the current persona.</summary>
    internal const ulong PersonalityQuery = 0xffffffff;

    /// <summary>The namespace flags of clone, unshare and setns: each makes (or enters) a namespace.</summary>
    internal static readonly (string Name, ulong Value)[] NamespaceFlags =
    [
        ("CLONE_NEWUSER", CLONE_NEWUSER), ("CLONE_NEWNS", CLONE_NEWNS), ("CLONE_NEWPID", CLONE_NEWPID),
        ("CLONE_NEWNET", CLONE_NEWNET), ("CLONE_NEWIPC", CLONE_NEWIPC), ("CLONE_NEWUTS", CLONE_NEWUTS),
        ("CLONE_NEWCGROUP", CLONE_NEWCGROUP), ("CLONE_NEWTIME", CLONE_NEWTIME),
    ];

    private static readonly (string Name, ulong Value)[] s_otherCloneFlags =
    [
        ("CLONE_VM", 0x100), ("CLONE_FS", 0x200), ("CLONE_FILES", 0x400), ("CLONE_SIGHAND", 0x800),
        ("CLONE_PIDFD", 0x1000), ("CLONE_PTRACE", 0x2000), ("CLONE_VFORK", 0x4000), ("CLONE_PARENT", 0x8000),
        ("CLONE_THREAD", 0x10000), ("CLONE_SYSVSEM", 0x40000), ("CLONE_SETTLS", 0x80000),
        ("CLONE_PARENT_SETTID", 0x100000), ("CLONE_CHILD_CLEARTID", 0x200000), ("CLONE_DETACHED", 0x400000),
        ("CLONE_UNTRACED", 0x800000), ("CLONE_CHILD_SETTID", 0x1000000), ("CLONE_IO", 0x80000000),
    ];

    private static readonly string[] s_families =
    [
        "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_AX25", "AF_IPX", "AF_APPLETALK", "AF_NETROM", "AF_BRIDGE",
        "AF_ATMPVC", "AF_X25", "AF_INET6", "AF_ROSE", "AF_DECnet", "AF_NETBEUI", "AF_SECURITY", "AF_KEY",
        "AF_NETLINK", "AF_PACKET", "AF_ASH", "AF_ECONET", "AF_ATMSVC", "AF_RDS", "AF_SNA", "AF_IRDA", "AF_PPPOX",
        "AF_WANPIPE", "AF_LLC", "AF_IB", "AF_MPLS", "AF_CAN", "AF_TIPC", "AF_BLUETOOTH", "AF_IUCV", "AF_RXRPC",
        "AF_ISDN", "AF_PHONET", "AF_IEEE802154", "AF_CAIF", "AF_ALG", "AF_NFC", "AF_VSOCK", "AF_KCM",
        "AF_QIPCRTR", "AF_SMC", "AF_XDP", "AF_MCTP",
    ];

    private static readonly (string Name, ulong Value)[] s_netlinkProtocols =
    [
        ("NETLINK_ROUTE", 0), ("NETLINK_USERSOCK", 2), ("NETLINK_FIREWALL", 3), ("NETLINK_SOCK_DIAG", 4),
        ("NETLINK_NFLOG", 5), ("NETLINK_XFRM", 6), ("NETLINK_SELINUX", 7), ("NETLINK_ISCSI", 8),
        ("NETLINK_AUDIT", 9), ("NETLINK_FIB_LOOKUP", 10), ("NETLINK_CONNECTOR", 11), ("NETLINK_NETFILTER", 12),
        ("NETLINK_IP6_FW", 13), ("NETLINK_DNRTMSG", 14), ("NETLINK_KOBJECT_UEVENT", 15), ("NETLINK_GENERIC", 16),
        ("NETLINK_SCSITRANSPORT", 18), ("NETLINK_ECRYPTFS", 19), ("NETLINK_RDMA", 20), ("NETLINK_CRYPTO", 21),
        ("NETLINK_SMC", 22),
    ];

    private static readonly (string Name, ulong Value)[] s_ioctls =
    [
        ("TCGETS", 0x5401), ("TCSETS", 0x5402), ("TCSETSW", 0x5403), ("TCSETSF", 0x5404), ("TIOCEXCL", 0x540C),
        ("TIOCNXCL", 0x540D), ("TIOCSCTTY", 0x540E), ("TIOCGPGRP", 0x540F), ("TIOCSPGRP", 0x5410),
        ("TIOCOUTQ", 0x5411), ("TIOCSTI", TIOCSTI), ("TIOCGWINSZ", 0x5413), ("TIOCSWINSZ", 0x5414),
        ("TIOCMGET", 0x5415), ("FIONREAD", 0x541B), ("TIOCLINUX", TIOCLINUX), ("TIOCCONS", 0x541D),
        ("FIONBIO", 0x5421), ("TIOCNOTTY", 0x5422), ("TIOCSETD", 0x5423), ("TIOCGETD", 0x5424),
        ("TIOCGPTN", 0x80045430), ("TIOCSPTLCK", 0x40045431), ("FIONCLEX", 0x5450), ("FIOCLEX", 0x5451),
        ("FIOASYNC", 0x5452),
    ];

    private static readonly (string Name, ulong Value)[] s_personalities =
    [
        ("PER_LINUX", PER_LINUX), ("PER_LINUX32", 0x0008), ("PER_BSD", 0x0006),
        ("ADDR_NO_RANDOMIZE", 0x0040000), ("MMAP_PAGE_ZERO", 0x0100000), ("ADDR_COMPAT_LAYOUT", 0x0200000),
        ("READ_IMPLIES_EXEC", 0x0400000), ("ADDR_LIMIT_32BIT", 0x0800000), ("SHORT_INODE", 0x1000000),
        ("WHOLE_SECONDS", 0x2000000), ("STICKY_TIMEOUTS", 0x4000000), ("ADDR_LIMIT_3GB", 0x8000000),
        ("UNAME26", 0x0020000),
    ];

    private static readonly (string Name, ulong Value)[] s_ptraceRequests =
    [
        ("PTRACE_TRACEME", 0), ("PTRACE_PEEKTEXT", 1), ("PTRACE_PEEKDATA", 2), ("PTRACE_PEEKUSER", 3),
        ("PTRACE_POKETEXT", 4), ("PTRACE_POKEDATA", 5), ("PTRACE_POKEUSER", 6), ("PTRACE_CONT", 7),
        ("PTRACE_KILL", 8), ("PTRACE_SINGLESTEP", 9), ("PTRACE_GETREGS", 12), ("PTRACE_SETREGS", 13),
        ("PTRACE_ATTACH", 16), ("PTRACE_DETACH", 17), ("PTRACE_SYSCALL", 24), ("PTRACE_SETOPTIONS", 0x4200),
        ("PTRACE_SEIZE", 0x4206), ("PTRACE_INTERRUPT", 0x4207), ("PTRACE_LISTEN", 0x4208),
    ];

    private static readonly (string Name, ulong Value)[] s_socketTypes =
    [
        ("SOCK_STREAM", 1), ("SOCK_DGRAM", 2), ("SOCK_RAW", 3), ("SOCK_RDM", 4), ("SOCK_SEQPACKET", 5),
        ("SOCK_NONBLOCK", 0x800), ("SOCK_CLOEXEC", 0x80000),
    ];

    private static readonly Dictionary<string, ulong> s_byName = BuildNameTable();

    /// <summary>Every constant a profile can name, with its value (checked against the C headers by a test).</summary>
    internal static IReadOnlyDictionary<string, ulong> Named => s_byName;

    /// <summary>
    /// Parses an argument value as a profile writes it: a decimal or <c>0x</c> hex number, or C names
    /// joined by <c>|</c> (<c>CLONE_NEWUSER|CLONE_NEWNS</c>).
    /// </summary>
    internal static bool TryParseValue(string text, out ulong value, out string? unknownName)
    {
        value = 0;
        unknownName = null;
        foreach (string part in text.Split('|', StringSplitOptions.TrimEntries))
        {
            if (TryParseNumber(part, out ulong number) || s_byName.TryGetValue(part, out number))
            {
                value |= number;
                continue;
            }

            unknownName = part;
            return false;
        }

        return text.Length > 0;
    }

    private static bool TryParseNumber(string text, out ulong value)
    {
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return ulong.TryParse(
                text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        }

        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>The name of an address family, or its number.</summary>
    internal static string FamilyName(ulong family) =>
        family < (ulong)s_families.Length ? s_families[family] : $"AF_{family}";

    /// <summary>
    /// The argument that made a call worth recording, in words: namespace flags of clone and unshare,
    /// the family of socket, the request of ioctl and ptrace. Null for calls whose arguments say nothing
    /// more than their name.
    /// </summary>
    internal static string? RenderKeyArgument(string syscall, ReadOnlySpan<ulong> args) => syscall switch
    {
        "clone" => RenderFlags(args[0], NamespaceFlags, onlyNamed: true),
        "unshare" => RenderFlags(args[0], [.. NamespaceFlags, .. s_otherCloneFlags], onlyNamed: false),
        "setns" => args[1] == 0 ? "any namespace" : RenderFlags(args[1], NamespaceFlags, onlyNamed: false),
        "socket" => (uint)args[0] == AF_NETLINK
            ? $"AF_NETLINK/{Lookup(s_netlinkProtocols, (uint)args[2]) ?? Hex((uint)args[2])}"
            : FamilyName((uint)args[0]),
        "socketpair" => FamilyName((uint)args[0]),
        "ioctl" => Lookup(s_ioctls, (uint)args[1]) ?? Hex((uint)args[1]),
        "personality" => Lookup(s_personalities, (uint)args[0]) ?? Hex((uint)args[0]),
        "ptrace" => Lookup(s_ptraceRequests, args[0]) ?? Hex(args[0]),
        _ => null,
    };

    private static string RenderFlags(ulong value, ReadOnlySpan<(string Name, ulong Value)> names, bool onlyNamed)
    {
        StringBuilder text = new();
        ulong rest = value;
        foreach ((string name, ulong flag) in names)
        {
            if ((value & flag) == flag && flag != 0)
            {
                text.Append(text.Length > 0 ? "|" : "").Append(name);
                rest &= ~flag;
            }
        }

        if (rest != 0 && !onlyNamed)
        {
            text.Append(text.Length > 0 ? "|" : "").Append(Hex(rest));
        }

        return text.Length > 0 ? text.ToString() : Hex(value);
    }

    private static string? Lookup(ReadOnlySpan<(string Name, ulong Value)> table, ulong value)
    {
        foreach ((string name, ulong v) in table)
        {
            if (v == value)
            {
                return name;
            }
        }

        return null;
    }

    private static string Hex(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static Dictionary<string, ulong> BuildNameTable()
    {
        Dictionary<string, ulong> table = new(StringComparer.Ordinal);
        for (int family = 0; family < s_families.Length; family++)
        {
            table[s_families[family]] = (ulong)family;
        }

        foreach ((string Name, ulong Value)[] group in new[]
                 {
                     NamespaceFlags, s_otherCloneFlags, s_netlinkProtocols, s_ioctls, s_personalities,
                     s_ptraceRequests, s_socketTypes,
                 })
        {
            foreach ((string name, ulong value) in group)
            {
                table[name] = value;
            }
        }

        return table;
    }
}
