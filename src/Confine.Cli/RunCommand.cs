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
        var command = new Argument<string[]>("command") { Arity = ArgumentArity.OneOrMore, Description = "The command and its arguments" };

        var run = new Command("run", "Run one command in a fresh sandbox");
        foreach (Option option in policyOptions.All)
        {
            run.Options.Add(option);
        }

        run.Options.Add(json);
        run.Options.Add(verdictFile);
        run.Options.Add(stdin);
        run.Arguments.Add(command);

        run.SetAction(async (result, cancellationToken) =>
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
            StdinSource input = result.GetValue(stdin) switch
            {
                null => StdinSource.None,
                "-" => StdinSource.FromStream(Console.OpenStandardInput()),
                string path when File.Exists(path) => StdinSource.FromFile(path),
                string path => throw new PolicyException("stdin", $"'{path}' does not exist"),
            };

            var io = new SandboxIO
            {
                Stdin = input,
                Stdout = asJson ? null : Console.OpenStandardOutput(),
                Stderr = asJson ? null : Console.OpenStandardError(),
            };

            Verdict verdict;
            try
            {
                verdict = await Sandbox.RunAsync(policy, argv, io, cancellationToken);
            }
            catch (PolicyException e)
            {
                return Fail($"confine: {e.Message}");
            }

            if (result.GetValue(verdictFile) is string file)
            {
                await File.WriteAllTextAsync(file, VerdictJson.Serialize(verdict) + "\n", CancellationToken.None);
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
