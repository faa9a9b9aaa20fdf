using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

public sealed class SeccompActionTests
{
    [Theory]
    [InlineData("allow", "allow", 0x7fff0000u)]
    [InlineData("kill", "kill", 0x80000000u)]
    [InlineData("record", "record", 0x7fc00000u)]
    [InlineData("errno", "errno:EPERM", 0x00050001u)]
    [InlineData("errno:ENOSYS", "errno:ENOSYS", 0x00050026u)]
    [InlineData("errno:97", "errno:EAFNOSUPPORT", 0x00050061u)]
    [InlineData("errno:ENOTSUP", "errno:EOPNOTSUPP", 0x0005005fu)]
    [InlineData("errno:4095", "errno:4095", 0x00050fffu)]
    public void TryParse_WrittenForm_GivesActionThatWritesItsCanonicalForm(string text, string written, uint kernel)
    {
        Assert.True(SeccompAction.TryParse(text, out SeccompAction action));

        Assert.Equal(written, action.ToString());
        Assert.Equal(kernel, action.KernelValue);
        Assert.True(SeccompAction.TryParse(written, out SeccompAction again));
        Assert.Equal(action, again);
    }

    [Theory]
    [InlineData("Allow")]
    [InlineData("errno:0")]
    [InlineData("errno:4096")]
    [InlineData("errno:EWHAT")]
    [InlineData("trap")]
    [InlineData("")]
    public void TryParse_SomethingElse_Fails(string text)
    {
        Assert.False(SeccompAction.TryParse(text, out _));
    }

    [Fact]
    public void Errno_OutOfRange_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SeccompAction.Errno(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SeccompAction.Errno(4096));
    }

    [Theory]
    [InlineData("clone", new ulong[] { 0x50020011 }, "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWNET")]
    [InlineData("unshare", new ulong[] { 0x10000200 }, "CLONE_NEWUSER|CLONE_FS")]
    [InlineData("setns", new ulong[] { 3, 0 }, "any namespace")]
    [InlineData("socket", new ulong[] { 17, 3, 0 }, "AF_PACKET")]
    [InlineData("socket", new ulong[] { 0x1_00000028, 1, 0 }, "AF_VSOCK")]
    [InlineData("socket", new ulong[] { 16, 3, 12 }, "AF_NETLINK/NETLINK_NETFILTER")]
    [InlineData("ioctl", new ulong[] { 0, 0x1_00005412 }, "TIOCSTI")]
    [InlineData("ioctl", new ulong[] { 0, 0xdead }, "0xdead")]
    [InlineData("ptrace", new ulong[] { 16 }, "PTRACE_ATTACH")]
    [InlineData("keyctl", new ulong[] { 1 }, "KEYCTL_JOIN_SESSION_KEYRING")]
    [InlineData("keyctl", new ulong[] { 0x1_00000000 }, "KEYCTL_GET_KEYRING_ID")]
    [InlineData("keyctl", new ulong[] { 999 }, "0x3e7")]
    [InlineData("bpf", new ulong[] { 5, 0, 0 }, "BPF_PROG_LOAD")]
    [InlineData("bpf", new ulong[] { 0 }, "BPF_MAP_CREATE")]
    [InlineData("reboot", new ulong[] { 0xfee1dead, 0x28121969, 0x01234567 }, "LINUX_REBOOT_CMD_RESTART")]
    [InlineData("syslog", new ulong[] { 3 }, "SYSLOG_ACTION_READ_ALL")]
    [InlineData("kcmp", new ulong[] { 1, 1, 2 }, "KCMP_FILES")]
    [InlineData("clock_settime", new ulong[] { 0, 0 }, "CLOCK_REALTIME")]
    [InlineData("clock_adjtime", new ulong[] { 11, 0 }, "CLOCK_TAI")]
    [InlineData("clock_adjtime", new ulong[] { 10, 0 }, "0xa")]
    [InlineData("userfaultfd", new ulong[] { 0x80801 }, "UFFD_USER_MODE_ONLY|O_NONBLOCK|O_CLOEXEC")]
    [InlineData("iopl", new ulong[] { 3 }, "level 3")]
    [InlineData("ioperm", new ulong[] { 0x80, 1, 1 }, "ports 0x80+1 on")]
    [InlineData("process_vm_readv", new ulong[] { 1 }, "pid 1")]
    [InlineData("init_module", new ulong[] { 0, 0, 0 }, null)]
    public void Describe_RecordedCall_RendersItsTellingArgument(string name, ulong[] args, string? argument)
    {
        Assert.Equal(SyscallNumbers.Kind.Native, SyscallNumbers.Resolve(name, out int nr));
        ulong[] all = new ulong[6];
        args.CopyTo(all, 0);

        (string syscall, string? rendered) = SeccompNotifier.Describe(nr, SeccompInterop.AUDIT_ARCH_X86_64, all);

        Assert.Equal(name, syscall);
        Assert.Equal(argument, rendered);
    }

    [Fact]
    public void Describe_ForeignCalls_NameTheirArchitecture()
    {
        ulong[] none = new ulong[6];

        Assert.Equal(("ptrace", "i386 (int 0x80)"), SeccompNotifier.Describe(26, SeccompInterop.AUDIT_ARCH_I386, none));
        Assert.Equal(("getpid", "x32 ABI"), SeccompNotifier.Describe(0x40000027, SeccompInterop.AUDIT_ARCH_X86_64, none));
    }
}
