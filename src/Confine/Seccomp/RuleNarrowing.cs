using System.Collections.Immutable;

namespace Confine.Seccomp;

/// <summary>
/// Rewrites a profile rule so that it no longer overlaps the conditional refusals of its syscall, when
/// that can be done exactly: libseccomp gives no precedence between overlapping rules, so the refusals can
/// only be relied on when the rules beside them are disjoint from them.
/// </summary>
/// <remarks>
/// Two shapes are handled, both on one argument that every refusal tests. Bit refusals (<c>clone</c>'s
/// namespace flags, <c>a0 &amp; FLAG == FLAG</c>) are removed by widening the rule's mask: allowed calls
/// are those with every refused bit clear. Interval refusals (<c>socket</c>'s families: equalities,
/// ranges and aligned blocks) are subtracted from the rule's own interval set, and what is left is written
/// back as equalities, bounds and aligned blocks; a refusal that also tests a second argument with
/// <c>==</c> or <c>!=</c> keeps its interval allowed under the opposite test. Anything else returns null
/// and is left to libseccomp, and to the compiler's check of the program it writes.
/// </remarks>
internal static class RuleNarrowing
{
    private readonly record struct Interval(ulong Low, ulong High);

    /// <summary>Rules matching what <paramref name="rule"/> does minus <paramref name="refusals"/>, or null.</summary>
    internal static List<SyscallRule>? Without(SyscallRule rule, IReadOnlyList<SyscallRule> refusals)
    {
        if (refusals.Count == 0 || refusals.Any(r => r.Conditions.IsEmpty || r.Conditions.Length > 2))
        {
            return null;
        }

        int index = refusals[0].Conditions[0].Index;
        if (refusals.Any(r => !r.Conditions.Any(c => c.Index == index)))
        {
            return null;
        }

        ArgumentCondition? own = null;
        foreach (ArgumentCondition condition in rule.Conditions.Where(c => c.Index == index))
        {
            own = condition;
        }

        ImmutableArray<ArgumentCondition> rest = [.. rule.Conditions.Where(c => c.Index != index)];

        if (refusals.All(r => r.Conditions.Length == 1 && IsBitTest(r.Conditions[0])))
        {
            ulong bits = refusals.Aggregate(0UL, (all, r) => all | r.Conditions[0].Mask);
            return WithoutBits(rule, own, rest, index, bits);
        }

        return WithoutIntervals(rule, own, rest, index, refusals);
    }

    private static bool IsBitTest(ArgumentCondition c) =>
        c.Comparison == SeccompComparison.MaskedEqual && c.Value == c.Mask && ulong.IsPow2(c.Mask);

    private static List<SyscallRule>? WithoutBits(
        SyscallRule rule, ArgumentCondition? own, ImmutableArray<ArgumentCondition> rest, int index, ulong bits)
    {
        ulong mask = 0, value = 0;
        if (own is { } condition)
        {
            switch (condition.Comparison)
            {
                case SeccompComparison.MaskedEqual:
                    (mask, value) = (condition.Mask, condition.Value);
                    break;
                case SeccompComparison.Equal:
                    // One value: either it carries a refused bit and nothing is left, or it is untouched.
                    return (condition.Value & bits) != 0 ? [] : [rule];
                default:
                    return null;
            }
        }

        if ((value & bits) != 0)
        {
            return []; // every call the rule matches has a refused bit set
        }

        return [rule with { Conditions = [.. rest, ArgumentCondition.MaskedEqual(index, mask | bits, value)] }];
    }

    private static List<SyscallRule>? WithoutIntervals(
        SyscallRule rule,
        ArgumentCondition? own,
        ImmutableArray<ArgumentCondition> rest,
        int index,
        IReadOnlyList<SyscallRule> refusals)
    {
        List<Interval>? allowed = own is { } condition ? Intervals(condition) : [new Interval(0, ulong.MaxValue)];
        if (allowed is null)
        {
            return null;
        }

        // Refusals that also test a second argument leave their interval allowed under the opposite test.
        List<(List<Interval> Where, ArgumentCondition Unless)> partial = [];
        foreach (SyscallRule refusal in refusals)
        {
            List<Interval>? refused = Intervals(refusal.Conditions.First(c => c.Index == index));
            if (refused is null)
            {
                return null;
            }

            if (refusal.Conditions.Length == 1)
            {
                allowed = Subtract(allowed, refused);
                continue;
            }

            ArgumentCondition other = refusal.Conditions.First(c => c.Index != index);
            ArgumentCondition? opposite = other.Comparison switch
            {
                SeccompComparison.Equal => other with { Comparison = SeccompComparison.NotEqual },
                SeccompComparison.NotEqual => other with { Comparison = SeccompComparison.Equal },
                _ => null,
            };
            if (opposite is null || rest.Any(c => c.Index == other.Index))
            {
                return null;
            }

            partial.Add((refused, opposite.Value));
        }

        List<SyscallRule> rules = [];
        List<Interval> plain = allowed;
        foreach ((List<Interval> where, ArgumentCondition unless) in partial)
        {
            plain = Subtract(plain, where);
        }

        foreach (Interval interval in plain)
        {
            rules.AddRange(Blocks(interval, index).Select(c => rule with { Conditions = [.. rest, c] }));
        }

        for (int i = 0; i < partial.Count; i++)
        {
            List<Interval> inside = Intersect(allowed, partial[i].Where);
            for (int j = 0; j < partial.Count; j++)
            {
                if (j != i && Intersect(inside, partial[j].Where).Count > 0)
                {
                    return null; // two partial refusals over the same values: not handled
                }
            }

            foreach (Interval interval in inside)
            {
                ArgumentCondition unless = partial[i].Unless;
                rules.AddRange(Blocks(interval, index).Select(c => rule with { Conditions = [.. rest, c, unless] }));
            }
        }

        return rules;
    }

    // The values a condition accepts as sorted, disjoint intervals; null for masks that are not intervals.
    private static List<Interval>? Intervals(ArgumentCondition c)
    {
        const ulong Max = ulong.MaxValue;
        switch (c.Comparison)
        {
            case SeccompComparison.Equal:
                return [new Interval(c.Value, c.Value)];
            case SeccompComparison.NotEqual:
                List<Interval> both = [];
                if (c.Value > 0)
                {
                    both.Add(new Interval(0, c.Value - 1));
                }

                if (c.Value < Max)
                {
                    both.Add(new Interval(c.Value + 1, Max));
                }

                return both;
            case SeccompComparison.Less:
                return c.Value == 0 ? [] : [new Interval(0, c.Value - 1)];
            case SeccompComparison.LessOrEqual:
                return [new Interval(0, c.Value)];
            case SeccompComparison.Greater:
                return c.Value == Max ? [] : [new Interval(c.Value + 1, Max)];
            case SeccompComparison.GreaterOrEqual:
                return [new Interval(c.Value, Max)];
            case SeccompComparison.MaskedEqual:
                // An aligned block: the mask keeps every bit above some position and the value is aligned.
                ulong low = ~c.Mask;
                return (low & (low + 1)) == 0 && (c.Value & low) == 0 ? [new Interval(c.Value, c.Value | low)] : null;
            default:
                return null;
        }
    }

    private static List<Interval> Subtract(List<Interval> from, List<Interval> remove)
    {
        List<Interval> result = [.. from];
        foreach (Interval cut in remove)
        {
            List<Interval> next = [];
            foreach (Interval piece in result)
            {
                if (cut.High < piece.Low || cut.Low > piece.High)
                {
                    next.Add(piece);
                    continue;
                }

                if (cut.Low > piece.Low)
                {
                    next.Add(new Interval(piece.Low, cut.Low - 1));
                }

                if (cut.High < piece.High)
                {
                    next.Add(new Interval(cut.High + 1, piece.High));
                }
            }

            result = next;
        }

        return result;
    }

    private static List<Interval> Intersect(List<Interval> a, List<Interval> b)
    {
        List<Interval> result = [];
        foreach (Interval x in a)
        {
            foreach (Interval y in b)
            {
                ulong low = Math.Max(x.Low, y.Low), high = Math.Min(x.High, y.High);
                if (low <= high)
                {
                    result.Add(new Interval(low, high));
                }
            }
        }

        return result;
    }

    // One interval as single conditions: an equality or a bound when it takes one, else aligned blocks.
    private static IEnumerable<ArgumentCondition> Blocks(Interval interval, int index)
    {
        if (interval.Low == interval.High)
        {
            yield return ArgumentCondition.Equal(index, interval.Low);
            yield break;
        }

        if (interval.High == ulong.MaxValue)
        {
            yield return new ArgumentCondition(index, SeccompComparison.GreaterOrEqual, interval.Low);
            yield break;
        }

        if (interval.Low == 0)
        {
            yield return new ArgumentCondition(index, SeccompComparison.LessOrEqual, interval.High);
            yield break;
        }

        ulong from = interval.Low;
        while (true)
        {
            ulong size = from & (~from + 1); // the largest block aligned at `from`
            while (size > 1 && from + (size - 1) > interval.High)
            {
                size >>= 1;
            }

            yield return size == 1
                ? ArgumentCondition.Equal(index, from)
                : ArgumentCondition.MaskedEqual(index, ~(size - 1), from);
            if (from + (size - 1) >= interval.High)
            {
                yield break;
            }

            from += size;
        }
    }
}
