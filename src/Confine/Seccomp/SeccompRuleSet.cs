using System.Collections.Immutable;

namespace Confine.Seccomp;

/// <summary>
/// A profile validated and resolved to x86_64 syscall numbers, with the dangerous list and the helper's
/// calls merged in. It is both what the compiler hands to libseccomp and the reference for what the
/// compiled program must do (<see cref="Decide"/>), against which every program is checked.
/// </summary>
internal sealed class SeccompRuleSet
{
    // Values for the arguments a rule does not test: nothing, then every bit.
    private static readonly ulong[] s_fillers = [0, ulong.MaxValue];

    private readonly Dictionary<int, List<Entry>> _byNumber;

    private SeccompRuleSet(SeccompProfile profile, Dictionary<int, List<Entry>> byNumber)
    {
        Profile = profile;
        _byNumber = byNumber;
    }

    /// <summary>Where a rule came from, which decides its precedence: dangerous, then helper, then profile.</summary>
    internal enum Origin
    {
        Dangerous,
        Helper,
        Profile,
    }

    /// <summary>One rule bound to its syscall number, with the key path that names it in errors.</summary>
    internal sealed record Entry(int Number, SyscallRule Rule, Origin Origin, string Path);

    /// <summary>
    /// Where a profile rule came from, for errors: the rule's own key path, and the path of the key that
    /// names its syscall (a rule read from <c>names[1]</c> is named there).
    /// </summary>
    internal readonly record struct RulePath(string Rule, string Name);

    internal SeccompProfile Profile { get; }

    /// <summary>Syscall numbers that have rules, in ascending order.</summary>
    internal IEnumerable<int> Numbers => _byNumber.Keys.Order();

    internal IReadOnlyList<Entry> EntriesFor(int number) => _byNumber.TryGetValue(number, out List<Entry>? e) ? e : [];

    /// <summary>
    /// Validates <paramref name="profile"/> and resolves it. <paramref name="pathOfRule"/> names rule i in
    /// errors (the JSON loader maps it back to the file's keys); by default it is <c>syscalls[i]</c> and
    /// <c>syscalls[i].name</c>.
    /// </summary>
    /// <exception cref="PolicyException">A name, condition or combination of rules cannot be compiled.</exception>
    internal static SeccompRuleSet Build(SeccompProfile profile, Func<int, RulePath>? pathOfRule = null)
    {
        pathOfRule ??= i => new RulePath($"syscalls[{i}]", $"syscalls[{i}].name");
        if (!profile.DangerousAction.Refuses)
        {
            throw new PolicyException("dangerous_action", "must refuse the call: use errno, kill or record");
        }

        if (!profile.EffectiveForeignArchitectureAction.Refuses)
        {
            throw new PolicyException(
                "foreign_arch_action", "must refuse the call: only x86_64 calls are ever allowed");
        }

        Dictionary<int, List<Entry>> byNumber = [];
        void Add(Entry entry)
        {
            if (!byNumber.TryGetValue(entry.Number, out List<Entry>? list))
            {
                byNumber[entry.Number] = list = [];
            }

            list.Add(entry);
        }

        foreach (DangerousSyscall dangerous in SeccompProfile.DangerousSyscalls)
        {
            int number;
            if (dangerous.Number is int fixedNumber)
            {
                number = fixedNumber;
            }
            else if (SyscallNumbers.Resolve(dangerous.Name, out number) != SyscallNumbers.Kind.Native)
            {
                // Calls of other architectures only: the architecture check refuses all of them.
                continue;
            }

            foreach (SyscallRule rule in dangerous.Rules(dangerous.Action ?? profile.DangerousAction))
            {
                Add(new Entry(number, rule, Origin.Dangerous, $"dangerous '{dangerous.Name}'"));
            }
        }

        HashSet<int> helperNumbers = [];
        foreach (string name in SeccompProfile.HelperSyscalls)
        {
            if (SyscallNumbers.Resolve(name, out int number) != SyscallNumbers.Kind.Native
                || byNumber.ContainsKey(number))
            {
                throw new InvalidOperationException($"helper syscall '{name}' is unknown or on the dangerous list");
            }

            helperNumbers.Add(number);
            Add(new Entry(number, new SyscallRule(name, SeccompAction.Allow), Origin.Helper, $"helper '{name}'"));
        }

        for (int i = 0; i < profile.Syscalls.Length; i++)
        {
            SyscallRule rule = profile.Syscalls[i];
            (string path, string namePath) = pathOfRule(i);
            int number = ResolveRuleName(rule.Name, namePath);
            ValidateConditions(rule, path);

            if (helperNumbers.Contains(number))
            {
                if (rule.Action.Refuses)
                {
                    throw new PolicyException(
                        path,
                        $"'{rule.Name}' must be allowed: Confine's helper calls it after loading the filter");
                }

                continue;
            }

            Add(new Entry(number, rule, Origin.Profile, path));
        }

        foreach (List<Entry> entries in byNumber.Values)
        {
            CheckProfileRulesAgree(entries);
            CheckExpressible(entries, profile.DefaultAction);
        }

        return new SeccompRuleSet(profile, byNumber);
    }

    /// <summary>
    /// What the profile says about one call, computed directly from the rules: the reference the compiled
    /// program is checked against. Returns the kernel's <c>SECCOMP_RET_*</c> value.
    /// </summary>
    internal uint Decide(int nr, uint arch, ReadOnlySpan<ulong> args)
    {
        // The architecture check comes first, as in the program libseccomp writes: any architecture but
        // x86_64, and any x86_64 number with the x32 bit (but -1, which a tracer uses to skip a call).
        if (arch != SeccompInterop.AUDIT_ARCH_X86_64
            || ((uint)nr >= SeccompInterop.__X32_SYSCALL_BIT && nr != -1))
        {
            return Profile.EffectiveForeignArchitectureAction.KernelValue;
        }

        IReadOnlyList<Entry> entries = EntriesFor(nr);
        foreach (Origin origin in (ReadOnlySpan<Origin>)[Origin.Dangerous, Origin.Helper, Origin.Profile])
        {
            foreach (Entry entry in entries)
            {
                if (entry.Origin == origin && entry.Rule.Matches(args))
                {
                    return entry.Rule.Action.KernelValue;
                }
            }
        }

        return Profile.DefaultAction.KernelValue;
    }

    /// <summary>
    /// The rules to hand to libseccomp for syscall <paramref name="number"/>, chosen so that its merging
    /// of rules cannot reorder them: an unconditional refusal stands alone; next to conditional refusals,
    /// a profile rule is narrowed to be disjoint from them where that is exact (<see cref="RuleNarrowing"/>),
    /// and otherwise an unconditional one becomes a catch-all condition that libseccomp tests after the
    /// refusals. Rules whose action is the default are left out: libseccomp rejects them, and the default
    /// gives the same answer.
    /// </summary>
    internal IEnumerable<(SyscallRule Rule, Entry Source)> RulesToEmit(int number)
    {
        IReadOnlyList<Entry> entries = EntriesFor(number);
        SeccompAction defaultAction = Profile.DefaultAction;
        List<Entry> dangerous = [.. entries.Where(e => e.Origin == Origin.Dangerous)];

        Entry? unconditional = dangerous.FirstOrDefault(e => e.Rule.Conditions.IsEmpty);
        if (unconditional is not null)
        {
            if (unconditional.Rule.Action != defaultAction)
            {
                yield return (unconditional.Rule, unconditional);
            }

            yield break;
        }

        foreach (Entry entry in dangerous.Where(e => e.Rule.Action != defaultAction))
        {
            yield return (entry.Rule, entry);
        }

        List<SyscallRule> refusals = [.. dangerous.Select(e => e.Rule)];
        foreach (Entry entry in entries.Where(e => e.Origin != Origin.Dangerous && e.Rule.Action != defaultAction))
        {
            if (dangerous.Count == 0)
            {
                yield return (entry.Rule, entry);
                continue;
            }

            if (RuleNarrowing.Without(entry.Rule, refusals) is { } narrowed)
            {
                foreach (SyscallRule rule in narrowed)
                {
                    yield return (rule, entry);
                }

                continue;
            }

            if (!entry.Rule.Conditions.IsEmpty)
            {
                yield return (entry.Rule, entry);
                continue;
            }

            // Always true, on the argument the refusals test first.
            ArgumentCondition catchAll =
                new(dangerous[0].Rule.Conditions[0].Index, SeccompComparison.GreaterOrEqual, 0);
            yield return (entry.Rule with { Conditions = [catchAll] }, entry);
        }
    }

    /// <summary>
    /// Calls the compiled program is tried with: for every rule, arguments that satisfy it (with the
    /// arguments it does not test once zero and once all ones), and calls no rule names, of every
    /// architecture.
    /// </summary>
    internal IEnumerable<(Entry? Entry, int Nr, uint Arch, ulong[] Args)> Probes()
    {
        foreach (List<Entry> entries in _byNumber.Values)
        {
            foreach (Entry entry in entries)
            {
                foreach (ulong filler in s_fillers)
                {
                    ulong[] args = [filler, filler, filler, filler, filler, filler];
                    bool satisfiable = true;
                    foreach (ArgumentCondition condition in entry.Rule.Conditions)
                    {
                        ulong? witness = condition.Witness();
                        satisfiable &= witness is not null;
                        args[condition.Index] = witness ?? 0;
                    }

                    if (satisfiable)
                    {
                        yield return (entry, entry.Number, SeccompInterop.AUDIT_ARCH_X86_64, args);
                    }
                }
            }
        }

        ulong[] zero = new ulong[ArgumentCondition.MaxArguments];
        int unnamed = Enumerable.Range(0, 1024).First(n => !_byNumber.ContainsKey(n));
        yield return (null, unnamed, SeccompInterop.AUDIT_ARCH_X86_64, zero);
        yield return (null, 0x3fffffff, SeccompInterop.AUDIT_ARCH_X86_64, zero);
        yield return (null, -1, SeccompInterop.AUDIT_ARCH_X86_64, zero);
        yield return (null, 0, SeccompInterop.AUDIT_ARCH_I386, zero);
        yield return (null, 20, SeccompInterop.AUDIT_ARCH_I386, zero);
        yield return (null, (int)(SeccompInterop.__X32_SYSCALL_BIT | 39), SeccompInterop.AUDIT_ARCH_X86_64, zero);
        yield return (null, (int)(SeccompInterop.__X32_SYSCALL_BIT | 0), SeccompInterop.AUDIT_ARCH_X86_64, zero);
    }

    private static int ResolveRuleName(string name, string path) => SyscallNumbers.Resolve(name, out int number) switch
    {
        SyscallNumbers.Kind.Native => number,
        SyscallNumbers.Kind.OtherArchitecture => throw new PolicyException(path, $"'{name}' is not an x86_64 syscall"),
        _ => throw new PolicyException(path, $"unknown syscall '{name}'"),
    };

    private static void ValidateConditions(SyscallRule rule, string path)
    {
        Span<bool> seen = stackalloc bool[ArgumentCondition.MaxArguments];
        for (int j = 0; j < rule.Conditions.Length; j++)
        {
            ArgumentCondition condition = rule.Conditions[j];
            string at = $"{path}.args[{j}]";
            if (condition.Index is < 0 or >= ArgumentCondition.MaxArguments)
            {
                throw new PolicyException($"{at}.arg", $"argument {condition.Index} does not exist: calls have 0 to 5");
            }

            if (seen[condition.Index])
            {
                throw new PolicyException(
                    at,
                    $"argument {condition.Index} is already tested in this rule; libseccomp takes one test per "
                    + "argument, so write a second rule");
            }

            seen[condition.Index] = true;
            if (condition.Comparison != SeccompComparison.MaskedEqual && condition.Mask != 0)
            {
                throw new PolicyException($"{at}.mask", "a mask is only meaningful with masked_eq");
            }

            if (condition.Witness() is null)
            {
                throw new PolicyException(at, $"'{condition}' never holds");
            }
        }
    }

    // Two rules of the profile for one call may only overlap if they agree. An unconditional rule covers
    // everything, and libseccomp would silently drop the conditional ones next to it.
    private static void CheckProfileRulesAgree(List<Entry> entries)
    {
        List<Entry> rules = [.. entries.Where(e => e.Origin == Origin.Profile)];
        for (int j = 0; j < rules.Count; j++)
        {
            for (int i = 0; i < j; i++)
            {
                SyscallRule a = rules[i].Rule;
                SyscallRule b = rules[j].Rule;
                if (a.Action == b.Action)
                {
                    continue;
                }

                if (a.Conditions.IsEmpty || b.Conditions.IsEmpty)
                {
                    throw new PolicyException(
                        rules[j].Path,
                        $"'{b.Name}' already has a rule at {rules[i].Path} with another action, and one of them "
                        + "has no conditions; rules of one syscall must agree where they overlap");
                }

                if (Overlap(a, b))
                {
                    throw new PolicyException(
                        rules[j].Path,
                        $"overlaps the rule at {rules[i].Path} ({a.Action} there, {b.Action} here); make the "
                        + "conditions disjoint");
                }
            }
        }
    }

    // A conditional refusal given the default action cannot be written (libseccomp rejects a rule with
    // the default action), so when the profile also allows the call, the refusal would be lost.
    private static void CheckExpressible(List<Entry> entries, SeccompAction defaultAction)
    {
        Entry? refusal = entries.FirstOrDefault(e =>
            e.Origin == Origin.Dangerous && !e.Rule.Conditions.IsEmpty && e.Rule.Action == defaultAction);
        Entry? other = entries.FirstOrDefault(e => e.Origin != Origin.Dangerous && e.Rule.Action != defaultAction);
        bool refusedOutright = entries.Any(e => e.Origin == Origin.Dangerous && e.Rule.Conditions.IsEmpty);
        if (refusal is not null && other is not null && !refusedOutright)
        {
            throw new PolicyException(
                "dangerous_action",
                $"{defaultAction} is also the default action, which libseccomp cannot give to the conditional "
                + $"refusal of '{refusal.Rule.Name}' next to {other.Path}; choose another errno or record");
        }
    }

    private static bool Overlap(SyscallRule a, SyscallRule b) => Satisfies(a, b) || Satisfies(b, a);

    // Whether a call built to satisfy `from` also satisfies `to`.
    private static bool Satisfies(SyscallRule from, SyscallRule to)
    {
        Span<ulong> args = stackalloc ulong[ArgumentCondition.MaxArguments];
        foreach (ArgumentCondition condition in from.Conditions)
        {
            args[condition.Index] = condition.Witness() ?? 0;
        }

        // Arguments `from` leaves free are set to what `to` wants, so only real conflicts separate them.
        ImmutableArray<ArgumentCondition> fromConditions = from.Conditions;
        foreach (ArgumentCondition condition in to.Conditions)
        {
            if (!fromConditions.Any(c => c.Index == condition.Index))
            {
                args[condition.Index] = condition.Witness() ?? 0;
            }
        }

        return from.Matches(args) && to.Matches(args);
    }
}
