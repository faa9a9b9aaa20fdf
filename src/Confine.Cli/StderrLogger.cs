using Microsoft.Extensions.Logging;

namespace Confine.Cli;

/// <summary>
/// Writes the library's log events (violations and the run's life) to standard error, one line each,
/// with the event's stable id and name so that a log shipper can match on them:
/// <c>confine: warning 1001 ViolationRecorded: Sandbox violation: keyctl ...</c>.
/// </summary>
internal sealed class StderrLogger(LogLevel minimum) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        string level = logLevel switch
        {
            LogLevel.Trace => "trace",
            LogLevel.Debug => "debug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warning",
            LogLevel.Error => "error",
            _ => "critical",
        };
        string line = $"confine: {level} {eventId.Id} {eventId.Name}: {formatter(state, exception)}";
        if (exception is not null)
        {
            line += $" ({exception.GetType().Name}: {exception.Message})";
        }

        Console.Error.WriteLine(line);
    }
}
