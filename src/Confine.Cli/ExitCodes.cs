namespace Confine.Cli;

/// <summary>
/// The exit codes of <c>confine</c>, documented in docs/cli.md. The command's own exit code passes
/// through unchanged; these are Confine's, chosen as Docker and GNU timeout chose theirs.
/// </summary>
internal static class ExitCodes
{
    /// <summary>The command line or the policy is wrong; nothing was started.</summary>
    public const int BadInput = 2;

    /// <summary>The wall-clock limit passed (as GNU timeout reports it).</summary>
    public const int Timeout = 124;

    /// <summary>The sandbox could not be set up.</summary>
    public const int SetupFailed = 125;

    /// <summary>The command was found in the sandbox but could not be executed.</summary>
    public const int CannotExecute = 126;

    /// <summary>The command was not found in the sandbox.</summary>
    public const int NotFound = 127;

    /// <summary>Exit code for a verdict, as the CLI reports it.</summary>
    public static int For(Verdict verdict) => verdict.Status switch
    {
        VerdictStatus.Ok or VerdictStatus.ExitNonzero => verdict.ExitCode ?? 0,
        VerdictStatus.Timeout => Timeout,
        VerdictStatus.SetupFailed when verdict.Error is { Step: "exec", ErrnoName: "ENOENT" } => NotFound,
        VerdictStatus.SetupFailed when verdict.Error is { Step: "exec" } => CannotExecute,
        VerdictStatus.SetupFailed => SetupFailed,
        _ => 128 + (verdict.Signal ?? 9),
    };
}
