using Microsoft.Extensions.Logging;

namespace Confine.Running;

/// <summary>
/// Confine's log events. The ids are stable: alerting rules may match on them. 1000-1099 are
/// escape attempts, 1100-1199 the run's life.
/// </summary>
internal static partial class SandboxLog
{
    [LoggerMessage(EventId = 1001, EventName = "ViolationRecorded", Level = LogLevel.Warning,
        Message = "Sandbox violation: {Syscall} ({Argument}) by pid {Pid} inside, answered with {Action}")]
    private static partial void ViolationRecordedCore(ILogger logger, string syscall, string? argument, int pid, string action);

    [LoggerMessage(EventId = 1002, EventName = "ViolationHandlerFailed", Level = LogLevel.Error,
        Message = "The caller's violation handler threw; the run goes on")]
    private static partial void ViolationHandlerFailedCore(ILogger logger, Exception exception);

    public static void ViolationRecorded(ILogger? logger, string syscall, string? argument, int pid, string action)
    {
        if (logger is not null)
        {
            ViolationRecordedCore(logger, syscall, argument ?? "no argument named", pid, action);
        }
    }

    public static void ViolationHandlerFailed(ILogger? logger, Exception exception)
    {
        if (logger is not null)
        {
            ViolationHandlerFailedCore(logger, exception);
        }
    }
}
