using System.Collections.Immutable;
using Confine.Seccomp;
using Xunit.Abstractions;

namespace Confine.Tests.Seccomp;

public sealed class SeccompCompilerTests(ITestOutputHelper output)
{
    private const uint Allow = 0x7fff0000;
    private const uint UserNotif = 0x7fc00000;
    private const uint KillProcess = 0x80000000;
    private const uint X86_64 = 0xC000003E;
    private const uint I386 = 0x40000003;

    // Calls a typical program makes most, for the cost of a lookup.
    private static readonly string[] s_hotCalls =
        ["read", "write", "futex", "mmap", "openat", "close", "newfstatat", "epoll_wait", "recvfrom", "clock_nanosleep"];

    public static TheoryData<string> BuiltinNames => ["default", "strict", "permissive"];

    public static TheoryData<string> ProfilesToCheck => ["default", "strict", "permissive", "docker-shaped", "narrowed"];

    [Theory]
    [MemberData(nameof(BuiltinNames))]
    public void Compile_BuiltinProfile_SizeAndLookupCostWithAndWithoutBinaryTree(string name)
    {
        SeccompProfile profile = SeccompProfile.Builtin(name)!;

        byte[] tree = SeccompCompiler.Compile(profile);
        byte[] linear = SeccompCompiler.Compile(profile, binaryTree: false);

        (double treeMean, int treeMax) = LookupCost(tree);
        (double linearMean, int linearMax) = LookupCost(linear);
        output.WriteLine(
            $"{name}: binary tree {SeccompCompiler.InstructionCount(tree)} instructions, {treeMean:F1} run per hot call "
            + $"(worst {treeMax}); linear {SeccompCompiler.InstructionCount(linear)} instructions, {linearMean:F1} run "
            + $"(worst {linearMax})");
        Assert.Equal(0, tree.Length % 8);
        Assert.InRange(SeccompCompiler.InstructionCount(tree), 10, 4096);
        Assert.InRange(SeccompCompiler.InstructionCount(linear), 10, 4096);
        if (name != "permissive")
        {
            // The point of the tree: a long allowlist costs a few comparisons, not one per entry.
            Assert.True(treeMax < linearMax, $"tree worst {treeMax}, linear worst {linearMax}");
        }
    }

    [Theory]
    [MemberData(nameof(ProfilesToCheck))]
    public void Compile_Profile_ProgramAgreesWithProfileOnManyCalls(string name)
    {
        SeccompProfile profile = ProfileNamed(name);
        SeccompRuleSet rules = SeccompRuleSet.Build(profile);
        byte[] program = SeccompCompiler.Compile(profile);
        Random random = new(1234);
        int calls = 0;
        List<string> wrong = [];

        foreach ((int nr, uint arch, ulong[] args) in Calls(rules, random))
        {
            calls++;
            uint expected = rules.Decide(nr, arch, args);
            uint actual = BpfInterpreter.Run(program, nr, arch, 0, args);
            if (expected != actual && wrong.Count < 10)
            {
                string shown = string.Join(", ", args.Select(a => $"0x{a:x}"));
                wrong.Add($"nr {nr} arch 0x{arch:x} args [{shown}]: profile 0x{expected:x}, program 0x{actual:x}");
            }
        }

        output.WriteLine($"{name}: {calls} calls compared");
        Assert.True(wrong.Count == 0, string.Join('\n', wrong));
    }

    [Fact]
    public void Compile_DefaultProfile_DangerousAndForeignCallsAreRecordedAndClone3GetsEnosys()
    {
        byte[] program = SeccompCompiler.Compile(SeccompProfile.Default);

        Assert.Equal(UserNotif, Run(program, "keyctl"));
        Assert.Equal(UserNotif, Run(program, "clone", 0x10000000 | 17)); // CLONE_NEWUSER|SIGCHLD
        Assert.Equal(Allow, Run(program, "clone", 0x01200000 | 17)); // what fork passes
        Assert.Equal(0x00050000u | 38, Run(program, "clone3"));
        Assert.Equal(UserNotif, Run(program, "ioctl", 0, 0x1_00005412)); // TIOCSTI under garbage high bits
        Assert.Equal(Allow, Run(program, "ioctl", 0, 0x541B)); // FIONREAD
        Assert.Equal(UserNotif, Run(program, "socket", 17)); // AF_PACKET
        Assert.Equal(UserNotif, Run(program, "socket", 0x1_00000001)); // AF_UNIX with garbage high bits
        Assert.Equal(Allow, Run(program, "socket", 16, 3, 0)); // AF_NETLINK, NETLINK_ROUTE
        Assert.Equal(UserNotif, Run(program, "socket", 16, 3, 12)); // NETLINK_NETFILTER
        Assert.Equal(UserNotif, BpfInterpreter.Run(program, 20, I386, 0, new ulong[6]));
        Assert.Equal(UserNotif, BpfInterpreter.Run(program, 0x40000000 | 39, X86_64, 0, new ulong[6]));
    }

    [Fact]
    public void Compile_ProfileThatRefusesEverything_StillAllowsTheHelpersCalls()
    {
        SeccompProfile profile = new() { DefaultAction = SeccompAction.KillProcess, DangerousAction = SeccompAction.KillProcess };

        byte[] program = SeccompCompiler.Compile(profile);

        Assert.All(SeccompProfile.HelperSyscalls, name => Assert.Equal(Allow, Run(program, name)));
        Assert.Equal(KillProcess, Run(program, "read"));
        Assert.False(profile.UsesNotification);
        Assert.True(SeccompProfile.Default.UsesNotification);
    }

    [Fact]
    public void Compile_RuleOverlappingTheDangerousList_IsNarrowedAndDangerousCallsStayRefused()
    {
        // "Every family but AF_VSOCK" and "clone with no CLONE_NEWUSER" both reach into the dangerous list.
        SeccompProfile profile = ProfileNamed("narrowed");

        byte[] program = SeccompCompiler.Compile(profile);

        Assert.Equal(Allow, Run(program, "socket", 2));
        Assert.Equal(UserNotif, Run(program, "socket", 17));
        Assert.Equal(UserNotif, Run(program, "socket", 40));
        Assert.Equal(Allow, Run(program, "clone", 17));
        Assert.Equal(UserNotif, Run(program, "clone", 0x20000 | 17)); // CLONE_NEWNS: the rule's mask lacked it
        Assert.Equal(0x00050000u | 38, Run(program, "socketpair", 1)); // not in the profile: its default
    }

    [Fact]
    public void Compile_OverlapLibseccompOrdersWrongly_FailsNamingTheRule()
    {
        // Families 16 to 31 include AF_PACKET; a block mask is not an interval the compiler can narrow,
        // and libseccomp tests it before the refusal, so the program would allow AF_PACKET.
        SeccompProfile profile = new()
        {
            Syscalls =
            [
                new SyscallRule("read", SeccompAction.Allow),
                new SyscallRule("socket", SeccompAction.Allow, ArgumentCondition.MaskedEqual(0, 0xf0, 0x10)),
            ],
        };

        PolicyException error = Assert.Throws<PolicyException>(() => SeccompCompiler.Compile(profile));

        Assert.Equal("syscalls[1]", error.Path);
        Assert.Contains("libseccomp cannot express this rule", error.Reason);
        Assert.Contains("should get record but the compiled filter gives allow", error.Reason);
    }

    [Fact]
    public void Compile_RuleRepeatingARefusalWithAnotherAction_FailsNamingTheRule()
    {
        SeccompProfile profile = new()
        {
            Syscalls = [new SyscallRule("ioctl", SeccompAction.Allow, ArgumentCondition.Masked32(1, 0x5412))],
        };

        PolicyException error = Assert.Throws<PolicyException>(() => SeccompCompiler.Compile(profile));

        Assert.Equal("syscalls[0]", error.Path);
        Assert.Contains("libseccomp rejects this rule", error.Reason);
    }

    [Fact]
    public void Compile_DangerousActionEqualToDefaultWithConditionalRefusal_IsRejected()
    {
        SeccompProfile profile = SeccompProfile.Default with { DangerousAction = SeccompAction.Enosys };

        PolicyException error = Assert.Throws<PolicyException>(() => SeccompCompiler.Compile(profile));

        Assert.Equal("dangerous_action", error.Path);
    }

    [Fact]
    public void Validate_RuleForUnknownSyscall_NamesItsIndex()
    {
        SeccompProfile profile = SeccompProfile.Default with
        {
            Syscalls = SeccompProfile.Default.Syscalls.Add(new SyscallRule("frobnicate", SeccompAction.Allow)),
        };

        PolicyException error = Assert.Throws<PolicyException>(profile.Validate);

        Assert.Equal($"syscalls[{SeccompProfile.Default.Syscalls.Length}].name", error.Path);
        Assert.Equal("unknown syscall 'frobnicate'", error.Reason);
    }

    [Fact]
    public void DangerousSyscalls_EveryName_IsAnX86_64CallOrKnownToBeMissing()
    {
        // Only calls that x86_64 lacks may be skipped, and the list must hold what the brief names.
        List<string> unresolved = [];
        foreach (DangerousSyscall dangerous in SeccompProfile.DangerousSyscalls)
        {
            if (dangerous.Number is null && SyscallNumbers.Resolve(dangerous.Name, out _) != SyscallNumbers.Kind.Native)
            {
                unresolved.Add(dangerous.Name);
            }
        }

        Assert.Empty(unresolved);
        string[] names = [.. SeccompProfile.DangerousSyscalls.Select(d => d.Name)];
        Assert.Superset(
            new HashSet<string>
            {
                "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
                "kexec_file_load", "reboot", "swapon", "swapoff", "bpf", "perf_event_open", "userfaultfd",
                "io_uring_setup", "io_uring_enter", "io_uring_register", "mount", "umount2", "pivot_root", "move_mount",
                "open_tree", "fsopen", "fsmount", "fspick", "mount_setattr", "unshare", "setns", "open_by_handle_at",
                "name_to_handle_at", "iopl", "ioperm", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
                "acct", "quotactl", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "ptrace",
                "process_vm_readv", "process_vm_writev", "kcmp", "syslog", "chroot", "clone", "clone3",
            },
            names.ToHashSet());
    }

    [Fact]
    public void Docs_SeccompMarkdown_ExplainsEveryDangerousEntry()
    {
        string docs = File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", "seccomp.md"));

        foreach (string name in SeccompProfile.DangerousSyscalls.Select(d => d.Name).Distinct())
        {
            Assert.Contains($"`{name}`", docs);
        }
    }

    private static uint Run(byte[] program, string name, params ulong[] args)
    {
        Assert.Equal(SyscallNumbers.Kind.Native, SyscallNumbers.Resolve(name, out int nr));
        ulong[] all = new ulong[6];
        args.CopyTo(all, 0);
        return BpfInterpreter.Run(program, nr, X86_64, 0, all);
    }

    private static (double Mean, int Max) LookupCost(byte[] program)
    {
        List<int> costs = [];
        foreach (string name in s_hotCalls)
        {
            SyscallNumbers.Resolve(name, out int nr);
            BpfInterpreter.Run(program, nr, X86_64, 0, new ulong[6], out int executed);
            costs.Add(executed);
        }

        return (costs.Average(), costs.Max());
    }

    // Every syscall number with zero, all-ones and random arguments, every rule's witness and its
    // neighbours, and calls of other architectures.
    private static IEnumerable<(int Nr, uint Arch, ulong[] Args)> Calls(SeccompRuleSet rules, Random random)
    {
        for (int nr = -1; nr < 480; nr++)
        {
            yield return (nr, X86_64, new ulong[6]);
            yield return (nr, X86_64, [.. Enumerable.Repeat(ulong.MaxValue, 6)]);
            for (int i = 0; i < 20; i++)
            {
                yield return (nr, X86_64, [.. Enumerable.Range(0, 6).Select(_ => RandomArgument(random))]);
            }
        }

        foreach (int nr in rules.Numbers)
        {
            foreach (SeccompRuleSet.Entry entry in rules.EntriesFor(nr))
            {
                foreach (ArgumentCondition condition in entry.Rule.Conditions)
                {
                    foreach (ulong near in (ulong[])[condition.Value - 1, condition.Value, condition.Value + 1,
                                 condition.Value | 0xffffffff00000000, condition.Value & 0xffffffff, condition.Mask, ~condition.Mask])
                    {
                        ulong[] args = new ulong[6];
                        foreach (ArgumentCondition other in entry.Rule.Conditions)
                        {
                            args[other.Index] = other.Value;
                        }

                        args[condition.Index] = near;
                        yield return (nr, X86_64, args);
                    }
                }
            }
        }

        foreach (uint arch in (uint[])[I386, 0x4000003E, 0xC00000B7])
        {
            yield return (0, arch, new ulong[6]);
            yield return (59, arch, new ulong[6]);
        }

        for (int i = 0; i < 100; i++)
        {
            yield return ((int)(0x40000000u | (uint)random.Next(0, 600)), X86_64, new ulong[6]);
        }
    }

    private static ulong RandomArgument(Random random) => random.Next(4) switch
    {
        0 => (ulong)random.Next(0, 64),
        1 => 1UL << random.Next(0, 64),
        2 => (ulong)random.NextInt64() ^ ((ulong)random.Next(2) << 63),
        _ => (uint)random.Next(0, 0x10000) + ((ulong)random.Next(2) << 32),
    };

    private static SeccompProfile ProfileNamed(string name) => name switch
    {
        "docker-shaped" => new SeccompProfile
        {
            Name = name,
            DefaultAction = SeccompAction.Eperm,
            Syscalls =
            [
                .. SeccompProfile.Default.Syscalls.Where(r => r.Name is not ("socket" or "personality" or "socketpair")),
                new SyscallRule("socket", SeccompAction.Allow, new ArgumentCondition(0, SeccompComparison.NotEqual, 40)),
                new SyscallRule("socketpair", SeccompAction.Allow),
                new SyscallRule("personality", SeccompAction.Allow, ArgumentCondition.Equal(0, 0)),
                new SyscallRule("personality", SeccompAction.Allow, ArgumentCondition.Equal(0, 8)),
                new SyscallRule("personality", SeccompAction.Allow, ArgumentCondition.Equal(0, 0xffffffff)),
            ],
        },
        "narrowed" => new SeccompProfile
        {
            Name = name,
            Syscalls =
            [
                new SyscallRule("socket", SeccompAction.Allow, new ArgumentCondition(0, SeccompComparison.NotEqual, 40)),
                new SyscallRule("clone", SeccompAction.Allow, ArgumentCondition.MaskedEqual(0, 0x10000000, 0)),
                new SyscallRule("read", SeccompAction.Allow),
            ],
        },
        _ => SeccompProfile.Builtin(name)!,
    };

    internal static string RepositoryRoot()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Confine.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new DirectoryNotFoundException("the repository root (Confine.slnx) is not above the test output");
    }
}
