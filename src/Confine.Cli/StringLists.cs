using System.CommandLine;
using System.CommandLine.Parsing;

namespace Confine.Cli;

/// <summary>
/// Lists of strings taken from the command line as they were given. System.CommandLine's own
/// conversion to <c>string[]</c>, and its empty default, go through reflection, which under
/// NativeAOT is a measurable part of a short run's start-up.
/// </summary>
internal static class StringLists
{
    /// <summary>The argument's tokens, in order and unchanged.</summary>
    public static string[] FromTokens(ArgumentResult result)
    {
        var values = new string[result.Tokens.Count];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = result.Tokens[i].Value;
        }

        return values;
    }

    /// <summary>Makes <paramref name="option"/> take its values, and its empty default, without reflection.</summary>
    public static void TakeAsGiven(Option<string[]> option)
    {
        option.CustomParser = FromTokens;
        option.DefaultValueFactory = static _ => [];
    }
}
