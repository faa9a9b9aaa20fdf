using System.Diagnostics;
using System.Text;

namespace Confine.Tests.Support;

/// <summary>Shortcuts for running real sandboxes in tests and for checking the host afterwards.</summary>
internal static class SandboxTesting
{
    public static Task<Verdict> RunShellAsync(string script, SandboxPolicy? policy = null, SandboxIO? io = null) =>
        Sandbox.RunAsync(policy ?? SandboxPolicy.Default, ["/bin/sh", "-c", script], io);

    /// <summary>A token unlikely to appear in any other process's command line.</summary>
    public static string NewMarker() => $"{Random.Shared.Next(100, 999)}.{Random.Shared.Next(100000, 999999)}";

    /// <summary>
    /// Host pids whose command line contains <paramref name="marker"/>, optionally only those running
    /// <paramref name="program"/> (so the shell or CLI that was handed the marker is not counted).
    /// </summary>
    public static List<int> HostProcessesWith(string marker, string? program = null)
    {
        var found = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
            {
                continue;
            }

            try
            {
                string cmdline = Encoding.UTF8.GetString(File.ReadAllBytes(Path.Combine(dir, "cmdline"))).Replace('\0', ' ');
                if (cmdline.Contains(marker, StringComparison.Ordinal)
                    && (program is null || cmdline.StartsWith(program + " ", StringComparison.Ordinal)))
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return found;
    }

    /// <summary>Waits until no host process carries the marker; false if some still do after the timeout.</summary>
    public static bool WaitUntilGone(string marker, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (HostProcessesWith(marker).Count == 0)
            {
                return true;
            }

            Thread.Sleep(20);
        }

        return HostProcessesWith(marker).Count == 0;
    }

    /// <summary>Parses the <c>key=value</c> lines a probe script prints.</summary>
    public static Dictionary<string, string> ParseFacts(string? text)
    {
        var facts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in (text ?? "").Split('\n'))
        {
            int equals = line.IndexOf('=');
            if (equals > 0)
            {
                facts[line[..equals]] = line[(equals + 1)..];
            }
        }

        return facts;
    }

    /// <summary>The lines a probe printed between <c>NAME_begin</c> and <c>NAME_end</c>.</summary>
    public static string[] Section(string? text, string name)
    {
        string[] lines = (text ?? "").Split('\n');
        int begin = Array.IndexOf(lines, $"{name}_begin");
        int end = Array.IndexOf(lines, $"{name}_end");
        return begin >= 0 && end > begin ? lines[(begin + 1)..end] : throw new InvalidDataException($"no {name} section");
    }

    /// <summary>The host's mount table of this process, to check that a run changed nothing in it.</summary>
    public static string[] HostMounts() => File.ReadAllLines("/proc/self/mountinfo")
        .Select(l => string.Join(' ', l.Split(' ').Skip(4).Take(1)))
        .Order(StringComparer.Ordinal)
        .ToArray();
}
