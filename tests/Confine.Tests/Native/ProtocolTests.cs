using System.Diagnostics;
using System.Reflection;
using Confine.Native;

namespace Confine.Tests.Native;

/// <summary>
/// The C# mirror of native/plan.h must agree with the header. A C program compiled against the
/// header prints every constant and the layout of struct report; this test compares them.
/// </summary>
public sealed class ProtocolTests
{
    [Fact]
    public void HelperProtocol_MatchesPlanHeader()
    {
        string header = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../native/plan.h"));
        Assert.True(File.Exists(header), $"plan.h not found at {header}");

        string[] names = typeof(HelperProtocol)
            .GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral && f.Name.Contains('_') && f.Name.ToUpperInvariant() == f.Name)
            .Where(f => !f.Name.StartsWith("CLONE_", StringComparison.Ordinal) && !f.Name.StartsWith("MS_", StringComparison.Ordinal))
            .Select(f => f.Name)
            .ToArray();
        Assert.NotEmpty(names);

        string dir = Directory.CreateTempSubdirectory("confine-protocol-").FullName;
        try
        {
            string source = Path.Combine(dir, "check.c");
            var lines = new List<string> { "#include <stdio.h>", "#include <stddef.h>", $"#include \"{header}\"", "int main(void) {" };
            lines.AddRange(names.Select(n => $"  printf(\"{n}=%llu\\n\", (unsigned long long)({n}));"));
            lines.Add("  printf(\"ReportSize=%zu\\n\", sizeof(struct report));");
            lines.Add("  printf(\"detail_offset=%zu\\n\", offsetof(struct report, detail));");
            lines.Add("  return 0; }");
            File.WriteAllLines(source, lines);
            string binary = Path.Combine(dir, "check");
            Run("cc", "-o", binary, source);
            var values = Run(binary).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split('='))
                .ToDictionary(p => p[0], p => ulong.Parse(p[1]));

            foreach (string name in names)
            {
                object value = typeof(HelperProtocol).GetField(name)!.GetValue(null)!;
                Assert.True(Convert.ToUInt64(value) == values[name], $"{name}: C# {value}, plan.h {values[name]}");
            }

            Assert.Equal((ulong)HelperProtocol.ReportSize, values["ReportSize"]);
            Assert.Equal(56UL, values["detail_offset"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string Run(string program, params string[] arguments)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using Process process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} failed: {error}");
        return output;
    }
}
