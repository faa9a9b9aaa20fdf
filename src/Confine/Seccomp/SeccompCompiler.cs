using Confine.Native;

namespace Confine.Seccomp;

/// <summary>Turns a <see cref="SeccompProfile"/> into the BPF program the helper loads.</summary>
/// <remarks>
/// libseccomp writes the program. Because it merges rules of one syscall into a decision tree whose
/// order it chooses (and silently drops a longer rule behind a shorter one), every program is run on
/// calls built from each rule and compared with the profile's own answer before it is returned; a rule
/// libseccomp cannot express faithfully is a <see cref="PolicyException"/>, never a weaker filter.
/// </remarks>
public static class SeccompCompiler
{
    /// <summary>
    /// The BPF program for <paramref name="profile"/>: an array of 8-byte <c>struct sock_filter</c>, ready
    /// for <c>seccomp(SECCOMP_SET_MODE_FILTER)</c>. Load it with <c>SECCOMP_FILTER_FLAG_NEW_LISTENER</c>
    /// when <see cref="SeccompProfile.UsesNotification"/> is true.
    /// </summary>
    /// <exception cref="PolicyException">An unknown call, or rules libseccomp cannot express exactly.</exception>
    /// <exception cref="PlatformNotSupportedException">This is not x86_64.</exception>
    public static byte[] Compile(SeccompProfile profile) => Compile(profile, binaryTree: true);

    /// <summary>The number of BPF instructions in a compiled program.</summary>
    public static int InstructionCount(ReadOnlySpan<byte> program) => BpfInterpreter.InstructionCount(program);

    /// <summary>
    /// Compiles with or without libseccomp's binary-tree ordering of syscalls (level 2 of
    /// SCMP_FLTATR_CTL_OPTIMIZE); without it, a call is found by comparing against every number in turn.
    /// </summary>
    internal static byte[] Compile(SeccompProfile profile, bool binaryTree)
    {
        ArgumentNullException.ThrowIfNull(profile);
        if (SeccompInterop.NativeArchitecture() != SeccompInterop.SCMP_ARCH_X86_64)
        {
            throw new PlatformNotSupportedException("Confine's seccomp profiles are written for x86_64 only");
        }

        SeccompRuleSet rules = SeccompRuleSet.Build(profile);
        byte[] program = Generate(rules, binaryTree);
        Verify(rules, program);
        return program;
    }

    private static byte[] Generate(SeccompRuleSet rules, bool binaryTree)
    {
        using SeccompFilterHandle filter = SeccompInterop.CreateFilter(rules.Profile.DefaultAction.LibseccompValue);

        // The helper sets no_new_privs itself, in its fixed order of steps; the flag only matters to
        // seccomp_load, which Confine never calls, and is cleared so the context says what happens.
        SeccompInterop.SetAttribute(filter, SeccompInterop.SCMP_FLTATR_CTL_NNP, 0);
        SeccompAction foreign = rules.Profile.EffectiveForeignArchitectureAction;
        SeccompInterop.SetAttribute(filter, SeccompInterop.SCMP_FLTATR_ACT_BADARCH, foreign.LibseccompValue);
        if (binaryTree)
        {
            // libseccomp before 2.5 lacks the attribute; its programs are then linear, not wrong.
            SeccompInterop.TrySetAttribute(
                filter, SeccompInterop.SCMP_FLTATR_CTL_OPTIMIZE, SeccompInterop.OptimizeBinaryTree);
        }

        SeccompInterop.SetOnlyArchitectureX86_64(filter);

        Span<SeccompInterop.scmp_arg_cmp> conditions =
            stackalloc SeccompInterop.scmp_arg_cmp[ArgumentCondition.MaxArguments];
        foreach (int number in rules.Numbers)
        {
            foreach ((SyscallRule rule, SeccompRuleSet.Entry source) in rules.RulesToEmit(number))
            {
                for (int i = 0; i < rule.Conditions.Length; i++)
                {
                    conditions[i] = rule.Conditions[i].ToLibseccomp();
                }

                try
                {
                    SeccompInterop.AddRule(
                        filter, rule.Action.LibseccompValue, number, conditions[..rule.Conditions.Length]);
                }
                catch (ErrnoException e) when (source.Origin == SeccompRuleSet.Origin.Profile)
                {
                    // libseccomp rejects a rule that repeats another's conditions with another action.
                    throw new PolicyException(
                        source.Path,
                        $"libseccomp rejects this rule next to the other rules of '{rule.Name}' (including the "
                        + $"dangerous list): {e.Message}; make its conditions disjoint from theirs");
                }
            }
        }

        byte[] program = SeccompInterop.ExportBpf(filter);
        if (BpfInterpreter.InstructionCount(program) > BpfInterpreter.MaxInstructions)
        {
            throw new PolicyException(
                "syscalls",
                $"the profile compiles to {BpfInterpreter.InstructionCount(program)} BPF instructions; the kernel "
                + $"takes at most {BpfInterpreter.MaxInstructions}");
        }

        return program;
    }

    private static void Verify(SeccompRuleSet rules, byte[] program)
    {
        foreach ((SeccompRuleSet.Entry? entry, int nr, uint arch, ulong[] args) in rules.Probes())
        {
            uint expected = rules.Decide(nr, arch, args);
            uint actual = BpfInterpreter.Run(program, nr, arch, 0, args);
            if (actual == expected)
            {
                continue;
            }

            string call = $"{entry?.Rule.Name ?? $"syscall {nr}"} (arch 0x{arch:x8}) with arguments "
                + $"[{string.Join(", ", args.Select(a => $"0x{a:x}"))}]";
            string detail = $"{call} should get {Describe(expected)} but the compiled filter gives {Describe(actual)}";

            // A profile rule that matches the same call is what libseccomp merged the wrong way.
            SeccompRuleSet.Entry? culprit = entry is { Origin: SeccompRuleSet.Origin.Profile }
                ? entry
                : rules.EntriesFor(nr).FirstOrDefault(
                    e => e.Origin == SeccompRuleSet.Origin.Profile && e.Rule.Matches(args));
            if (culprit is not null)
            {
                throw new PolicyException(
                    culprit.Path,
                    $"libseccomp cannot express this rule next to the other rules of '{culprit.Rule.Name}' (including "
                    + $"the dangerous list): {detail}; make its conditions disjoint from theirs");
            }

            throw new InvalidOperationException($"the seccomp compiler produced a wrong program: {detail}");
        }
    }

    private static string Describe(uint value) => (value & SeccompInterop.SECCOMP_RET_ACTION_FULL) switch
    {
        SeccompInterop.SECCOMP_RET_ALLOW => "allow",
        SeccompInterop.SECCOMP_RET_ERRNO =>
            $"errno:{SeccompErrno.Name((int)(value & SeccompInterop.SECCOMP_RET_DATA))}",
        SeccompInterop.SECCOMP_RET_KILL_PROCESS => "kill",
        SeccompInterop.SECCOMP_RET_USER_NOTIF => "record",
        _ => $"0x{value:x8}",
    };
}
