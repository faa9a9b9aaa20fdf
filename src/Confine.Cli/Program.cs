using System.CommandLine;
using Confine;
using Confine.Cli;

// One run per process: a sandbox prepared for a next run would only be thrown away.
Sandbox.PrepareAhead = false;

var root = new RootCommand("Confine: run untrusted commands in an isolated Linux sandbox and get an exact verdict back");
root.Subcommands.Add(RunCommand.Create());

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
    return await parsed.InvokeAsync();
}
catch (PolicyException e)
{
    Console.Error.WriteLine($"confine: {e.Message}");
    return ExitCodes.BadInput;
}
