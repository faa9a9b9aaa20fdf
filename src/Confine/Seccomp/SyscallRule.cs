using System.Collections.Immutable;

namespace Confine.Seccomp;

/// <summary>How an argument is compared, as libseccomp's <c>SCMP_CMP_*</c>. Every comparison is on 64 bits.</summary>
public enum SeccompComparison
{
    /// <summary><c>arg == value</c></summary>
    Equal,

    /// <summary><c>arg != value</c></summary>
    NotEqual,

    /// <summary><c>arg &lt; value</c>, unsigned.</summary>
    Less,

    /// <summary><c>arg &lt;= value</c>, unsigned.</summary>
    LessOrEqual,

    /// <summary><c>arg &gt; value</c>, unsigned.</summary>
    Greater,

    /// <summary><c>arg &gt;= value</c>, unsigned.</summary>
    GreaterOrEqual,

    /// <summary><c>(arg &amp; mask) == value</c>.</summary>
    MaskedEqual,
}

/// <summary>A test on one argument of a call (0 to 5), compared as an unsigned 64-bit value.</summary>
/// <remarks>
/// The kernel hands the filter all 64 bits of each register, but an argument the kernel declares as
/// <c>int</c> (a socket family, an ioctl request) uses only the low 32: a refusal on such an argument must
/// mask them (<see cref="Masked32"/>), or the same call with garbage in the upper half slips past it.
/// </remarks>
/// <param name="Index">The argument's position, 0 to 5.</param>
/// <param name="Comparison">How it is compared.</param>
/// <param name="Value">What it is compared with.</param>
/// <param name="Mask">The bits kept before comparing; only for <see cref="SeccompComparison.MaskedEqual"/>.</param>
public readonly record struct ArgumentCondition(int Index, SeccompComparison Comparison, ulong Value, ulong Mask = 0)
{
    /// <summary>The most arguments a call has.</summary>
    public const int MaxArguments = 6;

    /// <summary>Argument <paramref name="index"/> equals <paramref name="value"/> in all 64 bits.</summary>
    public static ArgumentCondition Equal(int index, ulong value) => new(index, SeccompComparison.Equal, value);

    /// <summary>Argument <paramref name="index"/> and <paramref name="mask"/> give <paramref name="value"/>.</summary>
    public static ArgumentCondition MaskedEqual(int index, ulong mask, ulong value) =>
        new(index, SeccompComparison.MaskedEqual, value, mask);

    /// <summary>The low 32 bits of argument <paramref name="index"/> are <paramref name="value"/> (for ints).</summary>
    public static ArgumentCondition Masked32(int index, uint value) => MaskedEqual(index, 0xffffffff, value);

    /// <summary>Every bit of <paramref name="flags"/> is set in argument <paramref name="index"/>.</summary>
    public static ArgumentCondition HasFlags(int index, ulong flags) => MaskedEqual(index, flags, flags);

    /// <summary>Whether <paramref name="argument"/> passes the test.</summary>
    public bool Matches(ulong argument) => Comparison switch
    {
        SeccompComparison.Equal => argument == Value,
        SeccompComparison.NotEqual => argument != Value,
        SeccompComparison.Less => argument < Value,
        SeccompComparison.LessOrEqual => argument <= Value,
        SeccompComparison.Greater => argument > Value,
        SeccompComparison.GreaterOrEqual => argument >= Value,
        SeccompComparison.MaskedEqual => (argument & Mask) == Value,
        _ => false,
    };

    /// <summary>An argument value that passes the test, or null when none can.</summary>
    internal ulong? Witness() => Comparison switch
    {
        SeccompComparison.Equal or SeccompComparison.LessOrEqual or SeccompComparison.GreaterOrEqual => Value,
        SeccompComparison.NotEqual => Value + 1,
        SeccompComparison.Less => Value == 0 ? null : Value - 1,
        SeccompComparison.Greater => Value == ulong.MaxValue ? null : Value + 1,
        SeccompComparison.MaskedEqual => (Value & ~Mask) == 0 ? Value : null,
        _ => null,
    };

    /// <summary>The comparison as libseccomp takes it (for masked equality, datum_a is the mask).</summary>
    internal SeccompInterop.scmp_arg_cmp ToLibseccomp() => new()
    {
        arg = (uint)Index,
        op = Comparison switch
        {
            SeccompComparison.Equal => SeccompInterop.SCMP_CMP_EQ,
            SeccompComparison.NotEqual => SeccompInterop.SCMP_CMP_NE,
            SeccompComparison.Less => SeccompInterop.SCMP_CMP_LT,
            SeccompComparison.LessOrEqual => SeccompInterop.SCMP_CMP_LE,
            SeccompComparison.Greater => SeccompInterop.SCMP_CMP_GT,
            SeccompComparison.GreaterOrEqual => SeccompInterop.SCMP_CMP_GE,
            SeccompComparison.MaskedEqual => SeccompInterop.SCMP_CMP_MASKED_EQ,
            _ => throw new InvalidOperationException($"unknown comparison {Comparison}"),
        },
        datum_a = Comparison == SeccompComparison.MaskedEqual ? Mask : Value,
        datum_b = Comparison == SeccompComparison.MaskedEqual ? Value : 0,
    };

    /// <summary>The test in C-like words: <c>a0 &amp; 0x10000000 == 0x10000000</c>.</summary>
    public override string ToString() => Comparison switch
    {
        SeccompComparison.MaskedEqual => $"a{Index} & 0x{Mask:x} == 0x{Value:x}",
        _ => $"a{Index} {OperatorText(Comparison)} 0x{Value:x}",
    };

    internal static string OperatorText(SeccompComparison comparison) => comparison switch
    {
        SeccompComparison.Equal => "==",
        SeccompComparison.NotEqual => "!=",
        SeccompComparison.Less => "<",
        SeccompComparison.LessOrEqual => "<=",
        SeccompComparison.Greater => ">",
        SeccompComparison.GreaterOrEqual => ">=",
        _ => "&==",
    };
}

/// <summary>
/// What a filter does with one syscall: its action, applied when every condition holds (or always, with
/// none). Several rules for one syscall are alternatives; those that can hold at once must share an action.
/// </summary>
/// <param name="Name">The syscall's x86_64 name (<c>openat</c>).</param>
/// <param name="Action">What happens when the rule applies.</param>
public sealed record SyscallRule(string Name, SeccompAction Action)
{
    /// <summary>A rule that applies when all of <paramref name="conditions"/> hold.</summary>
    public SyscallRule(string name, SeccompAction action, params ReadOnlySpan<ArgumentCondition> conditions)
        : this(name, action)
    {
        Conditions = [.. conditions];
    }

    /// <summary>Tests that must all pass for the rule to apply; empty means always.</summary>
    public ImmutableArray<ArgumentCondition> Conditions { get; init; } = [];

    /// <summary>Whether <paramref name="args"/> pass every condition.</summary>
    internal bool Matches(ReadOnlySpan<ulong> args)
    {
        foreach (ArgumentCondition condition in Conditions)
        {
            if (!condition.Matches(args[condition.Index]))
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc />
    public bool Equals(SyscallRule? other) =>
        other is not null && Name == other.Name && Action == other.Action
        && Conditions.AsSpan().SequenceEqual(other.Conditions.AsSpan());

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Name, Action, Conditions.Length);

    /// <inheritdoc />
    public override string ToString() =>
        Conditions.IsEmpty ? $"{Name}: {Action}" : $"{Name} [{string.Join(", ", Conditions)}]: {Action}";
}

/// <summary>
/// A call that every profile refuses, whatever it allows: a way out of the sandbox or into a large
/// part of the kernel that sandboxed programs have no business reaching.
/// </summary>
/// <param name="Name">The syscall's x86_64 name.</param>
/// <param name="Reason">Why it is refused, in one line (it is what <c>docs/seccomp.md</c> says).</param>
public sealed record DangerousSyscall(string Name, string Reason)
{
    /// <summary>
    /// When the call is refused: any one of these sets of conditions, each holding in full. Empty means
    /// always.
    /// </summary>
    public ImmutableArray<ImmutableArray<ArgumentCondition>> When { get; init; } = [];

    /// <summary>A fixed action that replaces the profile's dangerous action (clone3 always gets ENOSYS).</summary>
    public SeccompAction? Action { get; init; }

    /// <summary>
    /// The x86_64 number, for a call newer than the libseccomp this was built against knows by name.
    /// </summary>
    public int? Number { get; init; }

    /// <summary>The argument sets as rules with <paramref name="action"/>, one per alternative.</summary>
    internal IEnumerable<SyscallRule> Rules(SeccompAction action)
    {
        if (When.IsEmpty)
        {
            yield return new SyscallRule(Name, action);
            yield break;
        }

        foreach (ImmutableArray<ArgumentCondition> conditions in When)
        {
            yield return new SyscallRule(Name, action) { Conditions = conditions };
        }
    }

    /// <inheritdoc />
    public bool Equals(DangerousSyscall? other) =>
        other is not null && Name == other.Name && Reason == other.Reason && Action == other.Action
        && Number == other.Number && When.Length == other.When.Length
        && When.Zip(other.When).All(pair => pair.First.AsSpan().SequenceEqual(pair.Second.AsSpan()));

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Name, Reason, When.Length);
}
