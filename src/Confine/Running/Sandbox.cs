using Confine.Running;

namespace Confine;

/// <summary>Runs commands in fresh, isolated sandboxes.</summary>
public static class Sandbox
{
    /// <summary>
    /// Runs <paramref name="command"/> (argv; the program is looked up in the policy's PATH inside the
    /// sandbox) under <paramref name="policy"/> and returns how it ended. A problem with the policy or
    /// command throws <see cref="PolicyException"/> before anything is created; everything that goes
    /// wrong after that, including a sandbox that cannot be set up, is reported in the verdict.
    /// Cancelling the token kills the whole sandbox and yields a <see cref="VerdictStatus.Cancelled"/>
    /// verdict. When the returned task completes, nothing of the run is left: no process, mount or
    /// cgroup.
    /// </summary>
    public static Task<Verdict> RunAsync(
        SandboxPolicy policy,
        IReadOnlyList<string> command,
        SandboxIO? io = null,
        CancellationToken cancellationToken = default)
    {
        PolicyValidator.Validate(policy);
        PolicyValidator.ValidateCommand(command);
        return new SandboxRun(policy, command, io ?? SandboxIO.Capture).RunAsync(cancellationToken);
    }
}
