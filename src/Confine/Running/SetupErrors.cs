using Confine.Native;
using static Confine.Native.HelperProtocol;

namespace Confine.Running;

/// <summary>Turns a failed helper step into one line that says what failed, where, and what to do.</summary>
internal static class SetupErrors
{
    public static SetupError Describe(HelperReport report, SandboxPolicy policy, IReadOnlyList<string> command)
    {
        string step = StepName(report.Step);
        string errnoName = Errno.Name(report.Errno);
        string reason = report.Errno != 0 ? $"{Posix.StrError(report.Errno)} ({errnoName})" : "failed";
        string message = report.Step switch
        {
            STEP_EXEC when report.Errno == Errno.ENOENT =>
                $"command not found in the sandbox: '{command[0]}' (searched PATH={policy.Environment.GetValueOrDefault("PATH", "")}); " +
                "bind the directory that holds it with -v",
            STEP_EXEC when report.Errno is Errno.EACCES or Errno.ENOEXEC =>
                $"cannot execute '{command[0]}' in the sandbox: {reason}",
            STEP_EXEC => $"cannot execute '{command[0]}': {reason}",
            3 or 4 or 5 => $"cannot map the sandbox's ids ({report.Detail}): {reason}; " +
                "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone or " +
                "user.max_user_namespaces, or an AppArmor restriction)",
            2 when report.Errno is Errno.EPERM or Errno.ENOSPC or Errno.EINVAL =>
                $"cannot create the sandbox's namespaces: {reason}; user namespaces may be disabled or exhausted " +
                "(check user.max_user_namespaces and kernel.unprivileged_userns_clone)",
            6 => $"cannot join the sandbox's cgroup {report.Detail}: {reason}",
            25 => $"working directory {policy.WorkingDirectory} is not usable in the sandbox: {reason}",
            _ => $"sandbox setup failed at step '{step}' ({report.Detail}): {reason}",
        };

        return new SetupError
        {
            Step = step,
            Errno = report.Errno,
            ErrnoName = errnoName,
            Detail = report.Detail,
            Message = message,
        };
    }
}
