using System.CommandLine;
using Confine;
using Confine.Cli;
using Confine.Running;

// One run per process: a sandbox prepared for a next run would only be thrown away.
Sandbox.PrepareAhead = false;

const string Description = "Confine: run untrusted commands in an isolated Linux sandbox and get an exact verdict back";

// `confine run` finds its helper already started (see PrestartHandOver); any other outcome than
// the run using it ends it here.
try
{
    PrestartHandOver.Adopt();

    // RootCommand differs from a plain command only by its help and version options and its directives,
    // and building those options looks up their descriptions in System.CommandLine's resources: about
    // half a millisecond of a short run (a resource manager, reflection over the assembly). A command line
    // that cannot be asking for any of them is parsed the same way by a plain root, so only the others
    // pay. The parser also reads a token that merely starts like one of them as that option ("-hr" is
    // -h bundled with more, "--help=x" carries a value), hence the prefixes; '@' because a response file
    // could hold any of them.
    bool mayNeedRoot = MayNeedRootCommand(args);
    Command root = mayNeedRoot ? new RootCommand(Description) : new Command("confine", Description);

    // Only the subcommand the command line names is built: `run` and `policy show` make some forty
    // options each. Help lists them all, and an unknown subcommand is answered with the list, so those
    // command lines get every one.
    string? named = !mayNeedRoot && args.Length > 0 && args[0] is "run" or "policy" or "check" ? args[0] : null;
    if (named is null or "run")
    {
        root.Subcommands.Add(RunCommand.Create());
    }

    if (named is null or "policy")
    {
        root.Subcommands.Add(PolicyCommand.Create());
    }

    if (named is null or "check")
    {
        root.Subcommands.Add(CheckCommand.Create());
    }

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
        // Invoked synchronously: `run` serves its sandbox's I/O on this thread (Sandbox.Run).
        return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }
    catch (PolicyException e)
    {
        Console.Error.WriteLine($"confine: {e.Message}");
        return ExitCodes.BadInput;
    }
}
finally
{
    PrestartedHelper.DiscardUnused();
}

static bool MayNeedRootCommand(string[] args)
{
    foreach (string arg in args)
    {
        foreach (string prefix in (ReadOnlySpan<string>)["-h", "-?", "/h", "/?", "--help", "--version", "[", "@"])
        {
            if (arg.StartsWith(prefix, StringComparison.Ordinal))
            {
                return true;
            }
        }
    }

    return false;
}
