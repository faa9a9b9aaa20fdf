namespace Confine.Seccomp;

/// <summary>What a seccomp filter does with a call.</summary>
public enum SeccompActionKind
{
    /// <summary>The call runs (<c>SECCOMP_RET_ALLOW</c>).</summary>
    Allow,

    /// <summary>The call fails with an errno and does nothing (<c>SECCOMP_RET_ERRNO</c>).</summary>
    Errno,

    /// <summary>The whole process is killed with SIGSYS (<c>SECCOMP_RET_KILL_PROCESS</c>).</summary>
    KillProcess,

    /// <summary>
    /// The call is held while Confine's supervisor records it, then fails with EPERM
    /// (<c>SECCOMP_RET_USER_NOTIF</c>). Never continued: the supervisor only ever answers with an error.
    /// </summary>
    Record,
}

/// <summary>A seccomp action: allow, fail with an errno, kill the process, or record and fail with EPERM.</summary>
public readonly record struct SeccompAction
{
    /// <summary>The largest errno an action carries: the kernel caps the data at 4095 (MAX_ERRNO).</summary>
    public const int MaxErrno = 4095;

    private SeccompAction(SeccompActionKind kind, int errorNumber)
    {
        Kind = kind;
        ErrorNumber = errorNumber;
    }

    /// <summary>The call runs.</summary>
    public static SeccompAction Allow { get; } = new(SeccompActionKind.Allow, 0);

    /// <summary>The process is killed with SIGSYS.</summary>
    public static SeccompAction KillProcess { get; } = new(SeccompActionKind.KillProcess, 0);

    /// <summary>The call is recorded as a <see cref="Violation"/> and fails with EPERM.</summary>
    public static SeccompAction Record { get; } = new(SeccompActionKind.Record, SeccompErrno.EPERM);

    /// <summary>The call fails with EPERM, as a call the caller lacks the privilege for.</summary>
    public static SeccompAction Eperm { get; } = Errno(SeccompErrno.EPERM);

    /// <summary>The call fails with ENOSYS, as one this kernel lacks: libcs then take their fallbacks.</summary>
    public static SeccompAction Enosys { get; } = Errno(SeccompErrno.ENOSYS);

    /// <summary>What happens to the call.</summary>
    public SeccompActionKind Kind { get; }

    /// <summary>The errno the call fails with; 0 when <see cref="Kind"/> is allow or kill.</summary>
    public int ErrorNumber { get; }

    /// <summary>Whether the call does not run (every action but allow).</summary>
    public bool Refuses => Kind != SeccompActionKind.Allow;

    /// <summary>The call fails with <paramref name="errno"/> (1 to <see cref="MaxErrno"/>).</summary>
    public static SeccompAction Errno(int errno)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(errno, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(errno, MaxErrno);
        return new SeccompAction(SeccompActionKind.Errno, errno);
    }

    /// <summary>The value the filter returns (<c>SECCOMP_RET_*</c>, with the errno in the data bits).</summary>
    internal uint KernelValue => Kind switch
    {
        SeccompActionKind.Allow => SeccompInterop.SECCOMP_RET_ALLOW,
        SeccompActionKind.Errno => SeccompInterop.SECCOMP_RET_ERRNO | (uint)ErrorNumber,
        SeccompActionKind.KillProcess => SeccompInterop.SECCOMP_RET_KILL_PROCESS,
        SeccompActionKind.Record => SeccompInterop.SECCOMP_RET_USER_NOTIF,
        _ => throw new InvalidOperationException($"unknown seccomp action {Kind}"),
    };

    /// <summary>The same action as libseccomp's <c>SCMP_ACT_*</c> token.</summary>
    internal uint LibseccompValue => Kind switch
    {
        SeccompActionKind.Allow => SeccompInterop.SCMP_ACT_ALLOW,
        SeccompActionKind.Errno => SeccompInterop.SCMP_ACT_ERRNO(ErrorNumber),
        SeccompActionKind.KillProcess => SeccompInterop.SCMP_ACT_KILL_PROCESS,
        SeccompActionKind.Record => SeccompInterop.SCMP_ACT_NOTIFY,
        _ => throw new InvalidOperationException($"unknown seccomp action {Kind}"),
    };

    /// <summary>The action as a profile writes it: <c>allow</c>, <c>kill</c>, <c>record</c>, <c>errno:N</c>.</summary>
    public override string ToString() => Kind switch
    {
        SeccompActionKind.Allow => "allow",
        SeccompActionKind.KillProcess => "kill",
        SeccompActionKind.Record => "record",
        _ => $"errno:{SeccompErrno.Name(ErrorNumber)}",
    };

    /// <summary>Parses the form <see cref="ToString"/> writes; <c>errno</c> alone means EPERM.</summary>
    public static bool TryParse(string text, out SeccompAction action)
    {
        action = default;
        switch (text)
        {
            case "allow":
                action = Allow;
                return true;
            case "kill":
                action = KillProcess;
                return true;
            case "record":
                action = Record;
                return true;
            case "errno":
                action = Eperm;
                return true;
        }

        if (text.StartsWith("errno:", StringComparison.Ordinal)
            && SeccompErrno.TryParse(text["errno:".Length..], out int errno) && errno is >= 1 and <= MaxErrno)
        {
            action = Errno(errno);
            return true;
        }

        return false;
    }
}
