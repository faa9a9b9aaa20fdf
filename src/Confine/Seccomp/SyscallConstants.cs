using System.Globalization;
using System.Text;

namespace Confine.Seccomp;

/// <summary>
/// The kernel constants that profiles compare arguments against and that violations are rendered
/// with, under their C names (x86_64 values, from linux/sched.h, linux/socket.h, linux/netlink.h,
/// asm-generic/ioctls.h, linux/personality.h, linux/ptrace.h, linux/bpf.h, linux/keyctl.h,
/// linux/reboot.h, linux/kcmp.h and linux/time.h).
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

    /// <summary><c>bpf</c>'s commands (<c>enum bpf_cmd</c>), in order from 0.</summary>
    private static readonly string[] s_bpfCommands =
    [
        "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM", "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_PROG_ATTACH", "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN",
        "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID", "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY", "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID",
        "BPF_TASK_FD_QUERY", "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID",
        "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH", "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE", "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID", "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS",
        "BPF_ITER_CREATE", "BPF_LINK_DETACH", "BPF_PROG_BIND_MAP",
    ];

    /// <summary><c>keyctl</c>'s operations, in order from 0.</summary>
    private static readonly string[] s_keyctlOperations =
    [
        "KEYCTL_GET_KEYRING_ID", "KEYCTL_JOIN_SESSION_KEYRING", "KEYCTL_UPDATE", "KEYCTL_REVOKE", "KEYCTL_CHOWN",
        "KEYCTL_SETPERM", "KEYCTL_DESCRIBE", "KEYCTL_CLEAR", "KEYCTL_LINK", "KEYCTL_UNLINK", "KEYCTL_SEARCH",
        "KEYCTL_READ", "KEYCTL_INSTANTIATE", "KEYCTL_NEGATE", "KEYCTL_SET_REQKEY_KEYRING", "KEYCTL_SET_TIMEOUT",
        "KEYCTL_ASSUME_AUTHORITY", "KEYCTL_GET_SECURITY", "KEYCTL_SESSION_TO_PARENT", "KEYCTL_REJECT",
        "KEYCTL_INSTANTIATE_IOV", "KEYCTL_INVALIDATE", "KEYCTL_GET_PERSISTENT", "KEYCTL_DH_COMPUTE",
        "KEYCTL_PKEY_QUERY", "KEYCTL_PKEY_ENCRYPT", "KEYCTL_PKEY_DECRYPT", "KEYCTL_PKEY_SIGN", "KEYCTL_PKEY_VERIFY",
        "KEYCTL_RESTRICT_KEYRING", "KEYCTL_MOVE", "KEYCTL_CAPABILITIES", "KEYCTL_WATCH_KEY",
    ];

    /// <summary><c>reboot</c>'s commands (its third argument; the first two are magic numbers).</summary>
    private static readonly (string Name, ulong Value)[] s_rebootCommands =
    [
        ("LINUX_REBOOT_CMD_RESTART", 0x01234567), ("LINUX_REBOOT_CMD_HALT", 0xCDEF0123),
        ("LINUX_REBOOT_CMD_CAD_ON", 0x89ABCDEF), ("LINUX_REBOOT_CMD_CAD_OFF", 0), ("LINUX_REBOOT_CMD_POWER_OFF", 0x4321FEDC),
        ("LINUX_REBOOT_CMD_RESTART2", 0xA1B2C3D4), ("LINUX_REBOOT_CMD_SW_SUSPEND", 0xD000FCE2),
        ("LINUX_REBOOT_CMD_KEXEC", 0x45584543),
    ];

    /// <summary><c>kcmp</c>'s comparison types, in order from 0.</summary>
    private static readonly string[] s_kcmpTypes =
        ["KCMP_FILE", "KCMP_VM", "KCMP_FILES", "KCMP_FS", "KCMP_SIGHAND", "KCMP_IO", "KCMP_SYSVSEM", "KCMP_EPOLL_TFD"];

    /// <summary>The clocks of <c>clock_settime</c> and <c>clock_adjtime</c>, in order from 0 (10 is unused).</summary>
    private static readonly string[] s_clocks =
    [
        "CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_PROCESS_CPUTIME_ID", "CLOCK_THREAD_CPUTIME_ID", "CLOCK_MONOTONIC_RAW",
        "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME", "CLOCK_REALTIME_ALARM",
        "CLOCK_BOOTTIME_ALARM", "", "CLOCK_TAI",
    ];

    /// <summary>
    /// <c>syslog</c>'s actions (<c>SYSLOG_ACTION_*</c>, from the kernel's include/linux/syslog.h and
    /// syslog(2)). No exported header defines them, so they only render violations and cannot be
    /// named in a profile.
    /// </summary>
    private static readonly string[] s_syslogActions =
    [
        "SYSLOG_ACTION_CLOSE", "SYSLOG_ACTION_OPEN", "SYSLOG_ACTION_READ", "SYSLOG_ACTION_READ_ALL",
        "SYSLOG_ACTION_READ_CLEAR", "SYSLOG_ACTION_CLEAR", "SYSLOG_ACTION_CONSOLE_OFF", "SYSLOG_ACTION_CONSOLE_ON",
        "SYSLOG_ACTION_CONSOLE_LEVEL", "SYSLOG_ACTION_SIZE_UNREAD", "SYSLOG_ACTION_SIZE_BUFFER",
    ];

    /// <summary><c>userfaultfd</c>'s flags: O_CLOEXEC, O_NONBLOCK and UFFD_USER_MODE_ONLY.</summary>
    private static readonly (string Name, ulong Value)[] s_userfaultfdFlags =
        [("UFFD_USER_MODE_ONLY", 1), ("O_NONBLOCK", 0x800), ("O_CLOEXEC", 0x80000)];

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
    /// the family of socket, the request of ioctl and ptrace, the command of bpf, keyctl, reboot and
    /// syslog, the clock that clock_settime would set. An integer the tables do not name is given in hex.
    /// Null for calls whose telling arguments are pointers (a path, a structure), which the notifier
    /// does not read.
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
        "bpf" => Indexed(s_bpfCommands, (uint)args[0]),
        "keyctl" => Indexed(s_keyctlOperations, (uint)args[0]),
        "reboot" => Lookup(s_rebootCommands, (uint)args[2]) ?? Hex((uint)args[2]),
        "kcmp" => Indexed(s_kcmpTypes, (uint)args[2]),
        "clock_settime" or "clock_adjtime" => Indexed(s_clocks, (uint)args[0]),
        "syslog" => Indexed(s_syslogActions, (uint)args[0]),
        "userfaultfd" => (uint)args[0] == 0 ? "0" : RenderFlags((uint)args[0], s_userfaultfdFlags, onlyNamed: false),
        "iopl" => $"level {(uint)args[0]}",
        "ioperm" => $"ports 0x{args[0]:x}+{args[1]} {((uint)args[2] != 0 ? "on" : "off")}",
        "process_vm_readv" or "process_vm_writev" => $"pid {(int)args[0]}",
        _ => null,
    };

    /// <summary>The name at <paramref name="value"/> in a table of an enum that counts from 0, or the number in hex.</summary>
    private static string Indexed(string[] names, ulong value) =>
        value < (ulong)names.Length && names[value].Length > 0 ? names[value] : Hex(value);

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
                     s_ptraceRequests, s_socketTypes, s_rebootCommands, [s_userfaultfdFlags[0]],
                 })
        {
            foreach ((string name, ulong value) in group)
            {
                table[name] = value;
            }
        }

        foreach (string[] enumeration in new[] { s_bpfCommands, s_keyctlOperations, s_kcmpTypes, s_clocks })
        {
            for (int value = 0; value < enumeration.Length; value++)
            {
                if (enumeration[value].Length > 0)
                {
                    table[enumeration[value]] = (ulong)value;
                }
            }
        }

        return table;
    }
}
