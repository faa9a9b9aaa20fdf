namespace Confine.Running;

/// <summary>Decodes a wait status as the W* macros of <c>sys/wait.h</c> do.</summary>
internal static class WaitStatus
{
    public static bool Exited(int status) => (status & 0x7f) == 0;

    public static int ExitCode(int status) => (status >> 8) & 0xff;

    public static bool Signaled(int status) => (status & 0x7f) != 0 && (status & 0x7f) != 0x7f;

    public static int TermSignal(int status) => status & 0x7f;

    public static string Describe(int status) => Exited(status)
        ? $"exit code {ExitCode(status)}"
        : $"killed by {Signals.Name(TermSignal(status))}";
}

/// <summary>Linux x86_64 signal names.</summary>
public static class Signals
{
    private static readonly string[] s_names =
    [
        "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
        "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
        "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF",
        "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];

    /// <summary>The signal's name (<c>SIGKILL</c>), or <c>SIGRTMIN+N</c> for real-time signals.</summary>
    public static string Name(int signal) => signal switch
    {
        > 0 when signal < s_names.Length => s_names[signal],
        >= 34 and <= 64 => $"SIGRTMIN+{signal - 34}",
        _ => $"signal {signal}",
    };
}
