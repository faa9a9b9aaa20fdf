using System.CommandLine;
using Confine;
using Confine.Cli;

// One run per process: a sandbox prepared for a next run would only be thrown away.
Sandbox.PrepareAhead = false;

var root = new RootCommand("Confine: run untrusted commands in an isolated Linux sandbox and get an exact verdict back");
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(PolicyCommand.Create());
root.Subcommands.Add(CheckCommand.Create());

ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    foreach (var error in parsed.Errors)
    {
        Console.Error.WriteLine($"confine: {error.Message}");
    }

    Console.Error.WriteLine("confine: put '--' before the command when its arguments start with '-'; see 'confine run --help'");
    return ExitCodes.BadInput;
}

try
{
    // The default handler would print a stack trace and exit 1; a policy error is bad input (2).
    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (PolicyException e)
{
    Console.Error.WriteLine($"confine: {e.Message}");
    return ExitCodes.BadInput;
}
