using System.Diagnostics;
using System.Runtime.InteropServices;
using Confine;

// Times `/bin/true` in a sandbox three ways in one interleaved run, so that load on the machine
// falls on all three alike: through the library (many runs in one process), through the published
// `confine` command, and through bubblewrap with equivalent isolation. Prints medians and ratios.
int runs = 200;
string cli = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../artifacts/confine/confine"));
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--runs":
            runs = int.Parse(args[++i]);
            break;
        case "--cli":
            cli = Path.GetFullPath(args[++i]);
            break;
        default:
            Console.Error.WriteLine($"usage: Confine.Bench [--runs N] [--cli PATH-TO-CONFINE]; unknown '{args[i]}'");
            return 2;
    }
}

string[] bwrap =
[
    "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
    "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true",
];
string[] confine = [cli, "run", "--", "/bin/true"];
bool haveBwrap = Spawner.Find("bwrap") is not null;
bool haveCli = File.Exists(cli);

var policy = SandboxPolicy.Default;
for (int i = 0; i < 20; i++)
{
    await RunLibraryOnce();
    if (haveBwrap) Spawner.Time(bwrap);
    if (haveCli) Spawner.Time(confine);
}

var library = new List<double>();
var bwrapTimes = new List<double>();
var cliTimes = new List<double>();
for (int i = 0; i < runs; i++)
{
    library.Add(await RunLibraryOnce());
    if (haveBwrap) bwrapTimes.Add(Spawner.Time(bwrap));
    if (haveCli) cliTimes.Add(Spawner.Time(confine));
}

Console.WriteLine($"runs: {runs} each, interleaved; /bin/true; medians in milliseconds");
Console.WriteLine($"  library (Sandbox.RunAsync)  {Median(library),8:F3}");
if (haveCli) Console.WriteLine($"  confine run (CLI)           {Median(cliTimes),8:F3}   {cli}");
if (haveBwrap) Console.WriteLine($"  bwrap --unshare-all         {Median(bwrapTimes),8:F3}");
if (haveBwrap)
{
    double libraryRatio = Median(library) / Median(bwrapTimes);
    Console.WriteLine($"  library / bwrap = {libraryRatio:F2}  (target <= 0.50: {(libraryRatio <= 0.5 ? "met" : "MISSED")})");
    if (haveCli)
    {
        double cliRatio = Median(cliTimes) / Median(bwrapTimes);
        Console.WriteLine($"  cli / bwrap     = {cliRatio:F2}  (target <= 1.50: {(cliRatio <= 1.5 ? "met" : "MISSED")})");
    }
}
else
{
    Console.WriteLine("  bwrap is not installed: no ratios (apt-get install bubblewrap)");
}

if (!haveCli)
{
    Console.WriteLine($"  the published CLI is missing at {cli}: dotnet publish src/Confine.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/confine");
}

return 0;

async Task<double> RunLibraryOnce()
{
    long start = Stopwatch.GetTimestamp();
    Verdict verdict = await Sandbox.RunAsync(policy, ["/bin/true"]);
    double elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    if (verdict.Status != VerdictStatus.Ok)
    {
        throw new InvalidOperationException(VerdictJson.Serialize(verdict));
    }

    return elapsed;
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted.Count == 0 ? double.NaN : sorted[sorted.Count / 2];
}

/// <summary>Starts a program with posix_spawn and waits for it, as a shell or hyperfine would.</summary>
internal static unsafe partial class Spawner
{
    public static string? Find(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':')
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    public static double Time(string[] argv)
    {
        string path = argv[0].Contains('/') ? argv[0] : Find(argv[0])!;
        nint[] pointers = new nint[argv.Length + 1];
        for (int i = 0; i < argv.Length; i++)
        {
            pointers[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
        }

        nint* envp = stackalloc nint[1];
        envp[0] = 0;
        try
        {
            long start = Stopwatch.GetTimestamp();
            int pid;
            fixed (nint* argvPointer = pointers)
            {
                int error = posix_spawn(&pid, path, null, null, argvPointer, envp);
                if (error != 0)
                {
                    throw new InvalidOperationException($"posix_spawn {path}: errno {error}");
                }
            }

            int status;
            while (waitpid(pid, &status, 0) < 0)
            {
            }

            double elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (status != 0)
            {
                throw new InvalidOperationException($"{string.Join(' ', argv)} failed with wait status {status}");
            }

            return elapsed;
        }
        finally
        {
            foreach (nint p in pointers)
            {
                Marshal.FreeCoTaskMem(p);
            }
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawn(int* pid, string path, void* actions, void* attributes, nint* argv, nint* envp);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, int* status, int options);
}
