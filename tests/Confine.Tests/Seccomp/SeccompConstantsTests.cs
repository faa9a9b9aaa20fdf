using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Confine.Seccomp;
using Xunit.Abstractions;
using static Confine.Seccomp.SeccompInterop;

namespace Confine.Tests.Seccomp;

/// <summary>
/// Every constant and structure layout the C# side copies from a C header, compared with what a C program
/// compiled against that header prints.
/// </summary>
public sealed class SeccompConstantsTests(ITestOutputHelper output)
{
    [NativeFact]
    public void KernelHeaders_SeccompConstantsAndLayouts_MatchCSharp()
    {
        (string Expression, long Value)[] expected =
        [
            ("SECCOMP_SET_MODE_FILTER", SECCOMP_SET_MODE_FILTER),
            ("SECCOMP_GET_NOTIF_SIZES", SECCOMP_GET_NOTIF_SIZES),
            ("SECCOMP_FILTER_FLAG_NEW_LISTENER", SECCOMP_FILTER_FLAG_NEW_LISTENER),
            ("SECCOMP_RET_KILL_PROCESS", SECCOMP_RET_KILL_PROCESS),
            ("SECCOMP_RET_KILL_THREAD", SECCOMP_RET_KILL_THREAD),
            ("SECCOMP_RET_TRAP", SECCOMP_RET_TRAP),
            ("SECCOMP_RET_ERRNO", SECCOMP_RET_ERRNO),
            ("SECCOMP_RET_USER_NOTIF", SECCOMP_RET_USER_NOTIF),
            ("SECCOMP_RET_TRACE", SECCOMP_RET_TRACE),
            ("SECCOMP_RET_LOG", SECCOMP_RET_LOG),
            ("SECCOMP_RET_ALLOW", SECCOMP_RET_ALLOW),
            ("SECCOMP_RET_ACTION_FULL", SECCOMP_RET_ACTION_FULL),
            ("SECCOMP_RET_DATA", SECCOMP_RET_DATA),
            ("SECCOMP_IOCTL_NOTIF_RECV", SECCOMP_IOCTL_NOTIF_RECV),
            ("SECCOMP_IOCTL_NOTIF_SEND", SECCOMP_IOCTL_NOTIF_SEND),
            ("SECCOMP_IOCTL_NOTIF_ID_VALID", SECCOMP_IOCTL_NOTIF_ID_VALID),
            ("AUDIT_ARCH_X86_64", AUDIT_ARCH_X86_64),
            ("AUDIT_ARCH_I386", AUDIT_ARCH_I386),
            ("__X32_SYSCALL_BIT", __X32_SYSCALL_BIT),
            ("SYS_seccomp", SYS_seccomp),
            ("MFD_CLOEXEC", MFD_CLOEXEC),
            ("POLLIN", POLLIN),
            ("POLLERR", POLLERR),
            ("POLLHUP", POLLHUP),
            ("POLLNVAL", POLLNVAL),
            ("MSG_CMSG_CLOEXEC", MSG_CMSG_CLOEXEC),
            ("SOL_SOCKET", SOL_SOCKET),
            ("SCM_RIGHTS", SCM_RIGHTS),
            ("EPERM", EPERM),
            ("ENOENT", ENOENT),
            ("EINTR", EINTR),
            ("EAGAIN", EAGAIN),
            ("ENOSYS", ENOSYS),
            ("EAFNOSUPPORT", SeccompErrno.EAFNOSUPPORT),
            ("sizeof(struct seccomp_data)", Unsafe.SizeOf<seccomp_data>()),
            ("offsetof(struct seccomp_data, nr)", Offset<seccomp_data>("nr")),
            ("offsetof(struct seccomp_data, arch)", Offset<seccomp_data>("arch")),
            ("offsetof(struct seccomp_data, instruction_pointer)", Offset<seccomp_data>("instruction_pointer")),
            ("offsetof(struct seccomp_data, args)", Offset<seccomp_data>("args")),
            ("sizeof(struct seccomp_notif)", Unsafe.SizeOf<seccomp_notif>()),
            ("offsetof(struct seccomp_notif, id)", Offset<seccomp_notif>("id")),
            ("offsetof(struct seccomp_notif, pid)", Offset<seccomp_notif>("pid")),
            ("offsetof(struct seccomp_notif, flags)", Offset<seccomp_notif>("flags")),
            ("offsetof(struct seccomp_notif, data)", Offset<seccomp_notif>("data")),
            ("sizeof(struct seccomp_notif_resp)", Unsafe.SizeOf<seccomp_notif_resp>()),
            ("offsetof(struct seccomp_notif_resp, id)", Offset<seccomp_notif_resp>("id")),
            ("offsetof(struct seccomp_notif_resp, val)", Offset<seccomp_notif_resp>("val")),
            ("offsetof(struct seccomp_notif_resp, error)", Offset<seccomp_notif_resp>("error")),
            ("offsetof(struct seccomp_notif_resp, flags)", Offset<seccomp_notif_resp>("flags")),
            ("sizeof(struct seccomp_notif_sizes)", Unsafe.SizeOf<seccomp_notif_sizes>()),
            ("offsetof(struct seccomp_notif_sizes, seccomp_notif_resp)", Offset<seccomp_notif_sizes>("seccomp_notif_resp")),
            ("offsetof(struct seccomp_notif_sizes, seccomp_data)", Offset<seccomp_notif_sizes>("seccomp_data")),
            ("sizeof(struct sock_filter)", BpfInterpreter.InstructionSize),
            ("BPF_MAXINSNS", BpfInterpreter.MaxInstructions),
            ("sizeof(struct pollfd)", Unsafe.SizeOf<PollFd>()),
            ("sizeof(struct iovec)", Unsafe.SizeOf<IoVec>()),
            ("sizeof(struct msghdr)", Unsafe.SizeOf<MsgHdr>()),
            ("offsetof(struct msghdr, msg_control)", Offset<MsgHdr>("msg_control")),
            ("offsetof(struct msghdr, msg_controllen)", Offset<MsgHdr>("msg_controllen")),
            ("sizeof(struct cmsghdr)", Unsafe.SizeOf<CmsgHdr>()),
            ("CMSG_SPACE(sizeof(int))", 24),
            ("(long)CMSG_DATA((struct cmsghdr *)0)", Unsafe.SizeOf<CmsgHdr>()),
        ];

        string[] headers =
        [
            "linux/seccomp.h", "linux/filter.h", "linux/audit.h", "asm/unistd.h", "sys/syscall.h", "sys/ioctl.h",
            "sys/mman.h", "sys/eventfd.h", "poll.h", "sys/socket.h", "sys/uio.h", "stddef.h", "errno.h",
        ];
        AssertHeadersAgree(headers, ["-D_GNU_SOURCE"], expected);
    }

    [NativeFact]
    public void KernelHeaders_ArgumentConstants_MatchCSharp()
    {
        // AF_MCTP and NETLINK_SMC are newer than some libcs; they are checked where the header has them.
        string[] headers =
        [
            "sys/socket.h", "linux/netlink.h", "sched.h", "sys/ioctl.h", "sys/personality.h", "sys/ptrace.h", "stddef.h",
            "time.h", "linux/bpf.h", "linux/keyctl.h", "linux/reboot.h", "linux/kcmp.h", "linux/userfaultfd.h",
        ];
        (string, long)[] expected = [.. SyscallConstants.Named.Select(pair => (pair.Key, (long)pair.Value))];
        AssertHeadersAgree(headers, ["-D_GNU_SOURCE"], expected, optional: ["AF_MCTP", "NETLINK_SMC", "CLONE_NEWTIME", "CLONE_PIDFD"]);
    }

    [LibseccompHeaderFact]
    public void LibseccompHeader_ConstantsAndArgCmpLayout_MatchCSharp()
    {
        (string, long)[] expected =
        [
            ("SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS),
            ("SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD),
            ("SCMP_ACT_TRAP", SCMP_ACT_TRAP),
            ("SCMP_ACT_NOTIFY", SCMP_ACT_NOTIFY),
            ("SCMP_ACT_ERRNO(0)", SCMP_ACT_ERRNO_BASE),
            ("SCMP_ACT_ERRNO(38)", SCMP_ACT_ERRNO(38)),
            ("SCMP_ACT_ERRNO(4095)", SCMP_ACT_ERRNO(4095)),
            ("SCMP_ACT_LOG", SCMP_ACT_LOG),
            ("SCMP_ACT_ALLOW", SCMP_ACT_ALLOW),
            ("SCMP_FLTATR_ACT_DEFAULT", SCMP_FLTATR_ACT_DEFAULT),
            ("SCMP_FLTATR_ACT_BADARCH", SCMP_FLTATR_ACT_BADARCH),
            ("SCMP_FLTATR_CTL_NNP", SCMP_FLTATR_CTL_NNP),
            ("SCMP_FLTATR_CTL_TSYNC", SCMP_FLTATR_CTL_TSYNC),
            ("SCMP_FLTATR_CTL_OPTIMIZE", SCMP_FLTATR_CTL_OPTIMIZE),
            ("SCMP_CMP_NE", SCMP_CMP_NE),
            ("SCMP_CMP_LT", SCMP_CMP_LT),
            ("SCMP_CMP_LE", SCMP_CMP_LE),
            ("SCMP_CMP_EQ", SCMP_CMP_EQ),
            ("SCMP_CMP_GE", SCMP_CMP_GE),
            ("SCMP_CMP_GT", SCMP_CMP_GT),
            ("SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ),
            ("SCMP_ARCH_NATIVE", SCMP_ARCH_NATIVE),
            ("SCMP_ARCH_X86_64", SCMP_ARCH_X86_64),
            ("SCMP_ARCH_X86", SCMP_ARCH_X86),
            ("SCMP_ARCH_X32", SCMP_ARCH_X32),
            ("__NR_SCMP_ERROR", __NR_SCMP_ERROR),
            ("sizeof(struct scmp_arg_cmp)", Unsafe.SizeOf<scmp_arg_cmp>()),
            ("offsetof(struct scmp_arg_cmp, arg)", Offset<scmp_arg_cmp>("arg")),
            ("offsetof(struct scmp_arg_cmp, op)", Offset<scmp_arg_cmp>("op")),
            ("offsetof(struct scmp_arg_cmp, datum_a)", Offset<scmp_arg_cmp>("datum_a")),
            ("offsetof(struct scmp_arg_cmp, datum_b)", Offset<scmp_arg_cmp>("datum_b")),
            ("sizeof(((struct scmp_arg_cmp *)0)->op)", sizeof(int)),
        ];

        AssertHeadersAgree(["seccomp.h", "stddef.h"], ["-I", LibseccompHeaderFactAttribute.IncludeDirectory!], expected);
    }

    private static long Offset<T>(string field) => Marshal.OffsetOf<T>(field).ToInt64();

    private void AssertHeadersAgree(
        string[] headers, string[] compilerArguments, (string Expression, long Value)[] expected, string[]? optional = null)
    {
        StringBuilder source = new();
        foreach (string header in headers)
        {
            source.Append("#include <").Append(header).Append(">\n");
        }

        source.Append("#include <stdio.h>\nint main(void) {\n");
        foreach ((string expression, _) in expected)
        {
            bool isOptional = optional?.Contains(expression) == true;
            if (isOptional)
            {
                source.Append("#ifdef ").Append(expression).Append('\n');
            }

            source.Append("  printf(\"%lld\\n\", (long long)(").Append(expression).Append("));\n");
            if (isOptional)
            {
                source.Append("#else\n  printf(\"missing\\n\");\n#endif\n");
            }
        }

        source.Append("  return 0;\n}\n");
        string sourcePath = Path.Combine(NativeTools.WorkDirectory, $"{Guid.NewGuid():N}.c");
        string executable = Path.ChangeExtension(sourcePath, null);
        File.WriteAllText(sourcePath, source.ToString());

        var build = NativeTools.Run("/usr/bin/cc", [.. compilerArguments, "-o", executable, sourcePath]);
        Assert.True(build.ExitCode == 0, build.Stderr);
        var run = NativeTools.Run(executable, []);
        Assert.Equal(0, run.ExitCode);

        string[] lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(expected.Length, lines.Length);
        List<string> mismatches = [];
        for (int i = 0; i < expected.Length; i++)
        {
            if (lines[i] == "missing")
            {
                output.WriteLine($"{expected[i].Expression}: not in this system's headers, not checked");
                continue;
            }

            long actual = long.Parse(lines[i], CultureInfo.InvariantCulture);
            if (actual != expected[i].Value)
            {
                mismatches.Add(
                    $"{expected[i].Expression}: C says {actual} (0x{actual:x}), C# says {expected[i].Value} "
                    + $"(0x{expected[i].Value:x})");
            }
        }

        output.WriteLine($"{expected.Length - mismatches.Count} of {expected.Length} values agree");
        Assert.True(mismatches.Count == 0, string.Join('\n', mismatches));
    }
}

/// <summary>
/// A fact that needs libseccomp's <c>seccomp.h</c> (scripts/setup.sh installs libseccomp-dev for it): it is looked
/// for in <c>$CONFINE_LIBSECCOMP_INCLUDE</c>, <c>/usr/include</c> and <c>/tmp/libseccomp-dev/usr/include</c>
/// (where <c>apt-get download libseccomp-dev &amp;&amp; dpkg -x libseccomp-dev_*.deb /tmp/libseccomp-dev</c>
/// unpacks it). Skipped with that advice when it is in none of them.
/// </summary>
public sealed class LibseccompHeaderFactAttribute : FactAttribute
{
    public LibseccompHeaderFactAttribute()
    {
        if (!NativeTools.HasCompiler)
        {
            Skip = "no C compiler (/usr/bin/cc) to build the test programs";
        }
        else if (IncludeDirectory is null)
        {
            Skip = "libseccomp's seccomp.h is not available: apt-get download libseccomp-dev && "
                + "dpkg -x libseccomp-dev_*.deb /tmp/libseccomp-dev (or set CONFINE_LIBSECCOMP_INCLUDE)";
        }
    }

    public static string? IncludeDirectory { get; } =
        new[] { Environment.GetEnvironmentVariable("CONFINE_LIBSECCOMP_INCLUDE"), "/usr/include", "/tmp/libseccomp-dev/usr/include" }
            .FirstOrDefault(d => !string.IsNullOrEmpty(d) && File.Exists(Path.Combine(d, "seccomp.h")));
}
