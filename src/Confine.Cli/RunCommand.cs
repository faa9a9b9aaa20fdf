using System.Runtime.InteropServices;
using System.CommandLine;

namespace Confine.Cli;

/// <summary><c>confine run [options] [--] COMMAND [ARGS...]</c></summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var policyOptions = new PolicyOptions();
        var json = new Option<bool>("--json") { Description = "Print the verdict as JSON on stdout, with the command's output inside it" };
        var verdictFile = new Option<string?>("--verdict") { Description = "Write the verdict as JSON to this file" };
        var stdin = new Option<string?>("--stdin") { Description = "Standard input: a file, or - for Confine's own (default: none)" };
        var stats = new Option<bool>("--stats")
        {
            Description = "Print the sandbox's usage (CPU, memory, pids, I/O) on stderr while it runs; JSON lines with --json",
        };
        var statsInterval = new Option<string?>("--stats-interval") { Description = "How often --stats prints: 1s (the default), 500ms, 1m" };
        var onViolation = new Option<string?>("--on-violation")
        {
            Description = "Shell command run outside the sandbox for every violation, with the violation as JSON on stdin",
        };
        var command = new Argument<string[]>("command")
        {
            Arity = ArgumentArity.OneOrMore,
            Description = "The command and its arguments",
            CustomParser = StringLists.FromTokens,
        };

        var run = new Command("run", "Run one command in a fresh sandbox");
        foreach (Option option in policyOptions.All)
        {
            run.Options.Add(option);
        }

        run.Options.Add(json);
        run.Options.Add(verdictFile);
        run.Options.Add(stdin);
        run.Options.Add(stats);
        run.Options.Add(statsInterval);
        run.Options.Add(onViolation);
        run.Arguments.Add(command);

        // Synchronous on purpose: Sandbox.Run serves the sandbox's I/O on this thread while it waits,
        // so a run starts no I/O or thread-pool thread (see IoLoop).
        run.SetAction(result =>
        {
            SandboxPolicy policy;
            try
            {
                policy = policyOptions.Build(result).Validate();
            }
            catch (PolicyException e)
            {
                return Fail($"confine: invalid policy: {e.Message}");
            }

            string[] argv = result.GetValue(command) ?? [];
            if (argv.Length > 0 && argv[0].StartsWith('-') && !CameAfterSeparator(result, argv[0]))
            {
                return Fail($"confine: unknown option '{argv[0]}' (put '--' before a command whose name starts with '-')");
            }

            bool asJson = result.GetValue(json);

            // Both files are opened before the sandbox exists, so a bad path is bad input that costs
            // nothing, and never through a symbolic link a sandbox could have planted beside them.
            using FileStream? inputFile = OpenHostFile(result.GetValue(stdin) is string p && p != "-" ? p : null, "stdin", write: false);
            using FileStream? verdictOutput = OpenHostFile(result.GetValue(verdictFile), "verdict", write: true);
            StdinSource input = result.GetValue(stdin) switch
            {
                null => StdinSource.None,
                "-" => StdinSource.FromStream(Console.OpenStandardInput()),
                _ => StdinSource.FromStream(inputFile!),
            };

            TimeSpan interval = result.GetValue(statsInterval) is string every
                ? Units.ParseDuration("stats-interval", every)
                : TimeSpan.FromSeconds(1);
            if (interval <= TimeSpan.Zero)
            {
                return Fail("confine: stats-interval: must be longer than zero");
            }

            // An interruption (^C, a service manager's SIGTERM, a closed terminal) kills the sandbox and
            // still ends in a verdict, status "cancelled", instead of Confine dying mid-run. The
            // handlers are registered once the sandbox is being built (see OnSandboxStarting).
            using var interrupted = new CancellationTokenSource();
            var signals = new List<PosixSignalRegistration>();
            void Cancel(PosixSignalContext context)
            {
                context.Cancel = true;
                interrupted.Cancel();
            }

            void RegisterSignals()
            {
                foreach (PosixSignal signal in (ReadOnlySpan<PosixSignal>)[PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP, PosixSignal.SIGQUIT])
                {
                    signals.Add(PosixSignalRegistration.Create(signal, Cancel));
                }
            }

            ViolationHook? hook = result.GetValue(onViolation) is string hookCommand ? new ViolationHook(hookCommand) : null;
            var io = new SandboxIO
            {
                OnSandboxStarting = RegisterSignals,
                Stdin = input,
                Stdout = asJson ? null : Console.OpenStandardOutput(),
                Stderr = asJson ? null : Console.OpenStandardError(),
                OnUsage = result.GetValue(stats) ? sample => PrintUsage(sample, asJson) : null,
                UsageInterval = interval,
                OnViolation = hook is null ? null : hook.Enqueue,
                Logger = new StderrLogger(Microsoft.Extensions.Logging.LogLevel.Warning),
            };

            Verdict verdict;
            try
            {
                verdict = Sandbox.Run(policy, argv, io, interrupted.Token);
            }
            catch (PolicyException e)
            {
                return Fail($"confine: {e.Message}");
            }
            finally
            {
                foreach (PosixSignalRegistration registration in signals)
                {
                    registration.Dispose();
                }

                if (hook is not null)
                {
                    hook.DrainAsync().GetAwaiter().GetResult();
                }
            }

            if (verdictOutput is not null)
            {
                byte[] record = System.Text.Encoding.UTF8.GetBytes(VerdictJson.Serialize(verdict) + "\n");
                verdictOutput.Write(record);
            }

            if (asJson)
            {
                Console.Out.WriteLine(VerdictJson.Serialize(verdict));
            }
            else if (verdict.Error is SetupError error)
            {
                Console.Error.WriteLine($"confine: {error.Message}");
            }
            else if (verdict.Limit is LimitHit limit)
            {
                Console.Error.WriteLine($"confine: stopped: {limit.Name} limit of {limit.Value} reached");
            }

            return ExitCodes.For(verdict);
        });
        return run;
    }

    private static FileStream? OpenHostFile(string? path, string option, bool write)
    {
        if (path is null)
        {
            return null;
        }

        try
        {
            return Native.Posix.OpenHostFile(path, write);
        }
        catch (IOException e)
        {
            throw new PolicyException(option, e.Message);
        }
    }

    private static void PrintUsage(UsageSample sample, bool asJson)
    {
        if (asJson)
        {
            Console.Error.WriteLine(VerdictJson.Serialize(sample));
            return;
        }

        string memory = sample.MemoryBytes is long current
            ? $"memory {Units.FormatSize(current)} (peak {(sample.MemoryPeakBytes is long peak ? Units.FormatSize(peak) : "unknown")})"
            : "memory unknown";
        string io = sample.IoReadBytes is long read && sample.IoWriteBytes is long written
            ? $"read {Units.FormatSize(read)}, written {Units.FormatSize(written)}"
            : "I/O unknown";
        Console.Error.WriteLine(
            $"confine: usage at {sample.ElapsedSeconds:0.0} s: cpu {sample.CpuSeconds:0.00} s, {memory}, {sample.Pids?.ToString() ?? "?"} pids, {io}");
    }

    /// <summary>
    /// The parser takes an unknown option for the start of the command; only a command name that
    /// follows '--' may start with '-'.
    /// </summary>
    private static bool CameAfterSeparator(ParseResult result, string first)
    {
        int separator = IndexOf(result.Tokens, "--");
        int command = IndexOf(result.Tokens, first);
        return separator >= 0 && separator < command;
    }

    private static int IndexOf(IReadOnlyList<System.CommandLine.Parsing.Token> tokens, string value)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Value == value)
            {
                return i;
            }
        }

        return -1;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return ExitCodes.BadInput;
    }
}
