using System.CommandLine;
using System.Text.Json;
using Confine.Configuration;

namespace Confine.Cli;

/// <summary><c>confine policy show|validate</c>: the effective policy and where each value came from.</summary>
internal static class PolicyCommand
{
    public static Command Create()
    {
        var policy = new Command("policy", "Show the effective policy, or check a policy file");
        policy.Subcommands.Add(CreateShow());
        policy.Subcommands.Add(CreateValidate());
        return policy;
    }

    private static Command CreateShow()
    {
        var policyOptions = new PolicyOptions();
        var show = new Command(
            "show",
            "Print the effective policy as JSON (level, then --config, then flags) with the origin of every value");
        foreach (Option option in policyOptions.All)
        {
            show.Options.Add(option);
        }

        show.SetAction(result =>
        {
            PolicyBuilder builder = policyOptions.Build(result);
            SandboxPolicy effective = builder.Validate();

            using var output = new MemoryStream();
            using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
            {
                writer.WriteStartObject();
                writer.WritePropertyName("policy");
                PolicyDocument.Write(writer, effective, builder.Level);
                writer.WriteStartObject("origins");
                foreach ((string path, PolicyOrigin origin) in builder.Origins())
                {
                    writer.WriteString(path, origin.ToString());
                }

                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            Console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(output.ToArray()));
            return 0;
        });
        return show;
    }

    private static Command CreateValidate()
    {
        var file = new Argument<string>("file") { Description = "The policy file (JSON or YAML)" };
        var validate = new Command("validate", "Check a policy file: prints 'valid', or the error with its line, and exits 2");
        validate.Arguments.Add(file);
        validate.SetAction(result =>
        {
            string path = result.GetValue(file)!;
            PolicyFile policyFile = PolicyFile.Load(path);
            policyFile.ToPolicy();
            string level = IsolationLevels.Name(policyFile.Level ?? IsolationLevels.Default);
            Console.Out.WriteLine($"{path}: valid (level {level})");
            return 0;
        });
        return validate;
    }
}
