using System.Collections.Immutable;

namespace Confine.Seccomp;

/// <summary>
/// A seccomp policy as data: what happens to calls no rule names, the rules, and what happens to the
/// <see cref="DangerousSyscalls"/>, which every profile refuses whatever its rules say. Immutable:
/// derive one with <c>with</c>; <see cref="SeccompCompiler"/> turns it into a BPF program.
/// </summary>
/// <remarks>
/// A call is decided in this order: a matching dangerous entry refuses it; else the rule that matches
/// it applies; else <see cref="DefaultAction"/>. Only x86_64 calls are ever allowed: an i386 call
/// (<c>int 0x80</c>) or an x32 call takes <see cref="ForeignArchitectureAction"/>.
/// </remarks>
public sealed partial record SeccompProfile
{
    /// <summary>A short name for messages and the verdict (<c>default</c>, or a file's name).</summary>
    public string Name { get; init; } = "custom";

    /// <summary>
    /// What happens to a call no rule names. ENOSYS by default: a call the profile does not know is
    /// answered as if the kernel lacked it, so libcs and runtimes take their fallback paths.
    /// </summary>
    public SeccompAction DefaultAction { get; init; } = SeccompAction.Enosys;

    /// <summary>Rules for named calls, usually an allowlist.</summary>
    public ImmutableArray<SyscallRule> Syscalls { get; init; } = [];

    /// <summary>
    /// What happens to a dangerous call that has no fixed action of its own; it must refuse. Recording
    /// by default, so the verdict names every attempt.
    /// </summary>
    public SeccompAction DangerousAction { get; init; } = SeccompAction.Record;

    /// <summary>What happens to an i386 or x32 call (null: <see cref="DangerousAction"/>). It must refuse.</summary>
    public SeccompAction? ForeignArchitectureAction { get; init; }

    /// <summary>The action in force for i386 and x32 calls.</summary>
    public SeccompAction EffectiveForeignArchitectureAction => ForeignArchitectureAction ?? DangerousAction;

    /// <summary>
    /// Whether the program this profile compiles to can return <c>SECCOMP_RET_USER_NOTIF</c>. Then the
    /// helper must load it with <c>SECCOMP_FILTER_FLAG_NEW_LISTENER</c> and hand the listener to the
    /// supervisor, which must answer every notification (<c>SeccompNotifier</c>); without a listener the
    /// kernel fails those calls with ENOSYS.
    /// </summary>
    public bool UsesNotification =>
        DefaultAction.Kind == SeccompActionKind.Record
        || DangerousAction.Kind == SeccompActionKind.Record
        || EffectiveForeignArchitectureAction.Kind == SeccompActionKind.Record
        || DangerousSyscalls.Any(d => d.Action?.Kind == SeccompActionKind.Record)
        || Syscalls.Any(r => r.Action.Kind == SeccompActionKind.Record);

    /// <summary>
    /// Calls that Confine's helper makes after it has loaded the filter and before the command runs:
    /// execve (the command itself), sendmsg (handing over the listener), send/sendto (an exec failure
    /// report) and exit_group (ending after that report). Every compiled program allows them, and a
    /// profile rule that refuses one is an error.
    /// </summary>
    public static ImmutableArray<string> HelperSyscalls { get; } = ["execve", "sendmsg", "sendto", "exit_group"];

    /// <summary>
    /// Checks that every name is an x86_64 syscall, every condition can hold, and the rules of each
    /// syscall agree where they overlap; <see cref="SeccompCompiler.Compile(SeccompProfile)"/> checks the same first.
    /// </summary>
    /// <exception cref="PolicyException">The first problem, with the rule's path (<c>syscalls[3].name</c>).</exception>
    public void Validate() => SeccompRuleSet.Build(this);

    /// <inheritdoc />
    public bool Equals(SeccompProfile? other) =>
        other is not null && Name == other.Name && DefaultAction == other.DefaultAction
        && DangerousAction == other.DangerousAction && ForeignArchitectureAction == other.ForeignArchitectureAction
        && Syscalls.AsSpan().SequenceEqual(other.Syscalls.AsSpan());

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Name, DefaultAction, DangerousAction, Syscalls.Length);
}
