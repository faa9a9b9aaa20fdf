using System.Diagnostics;
using System.Runtime.InteropServices;
using Confine;
using Confine.Running;

// Times `/bin/true` in a sandbox four ways in one interleaved run, so that load on the machine
// falls on all of them alike: through the library (many runs in one process) with the sandbox
// prepared ahead and with it built for the run, through the published `confine` command, and
// through bubblewrap. Prints medians and ratios.
//
// A sandbox prepared ahead is built while the previous run ends; the benchmark waits for that to
// finish before it times anything else, so no contestant pays for another's work. The library's
// prepared-ahead time is the latency a service sees when its runs leave it time to prepare the
// next; built-for-the-run is what a run costs when they do not.
int runs = 200;
int walkPairs = 150;
bool overheads = true;
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
        case "--no-overheads":
            overheads = false;
            break;
        case "--walk-pairs":
            walkPairs = int.Parse(args[++i]);
            break;
        default:
            Console.Error.WriteLine($"usage: Confine.Bench [--runs N] [--walk-pairs N] [--cli PATH-TO-CONFINE] [--no-overheads]; unknown '{args[i]}'");
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
Sandbox.PrepareAhead = true;
for (int i = 0; i < 20; i++)
{
    await RunLibraryOnce(fresh: false, check: i > 0);
    await RunLibraryOnce(fresh: true);
    if (haveBwrap) Spawner.Time(bwrap);
    if (haveCli) Spawner.Time(confine);
}

var prepared = new List<double>();
var fresh = new List<double>();
var bwrapTimes = new List<double>();
var cliTimes = new List<double>();
for (int i = 0; i < runs; i++)
{
    prepared.Add(await RunLibraryOnce(fresh: false));
    fresh.Add(await RunLibraryOnce(fresh: true));
    if (haveBwrap) bwrapTimes.Add(Spawner.Time(bwrap));
    if (haveCli) cliTimes.Add(Spawner.Time(confine));
}

Console.WriteLine($"runs: {runs} each, interleaved; /bin/true; medians in milliseconds");
Console.WriteLine($"  library, sandbox prepared ahead     {Median(prepared),8:F3}   Sandbox.RunAsync, PrepareAhead on (its default)");
Console.WriteLine($"  library, sandbox built for the run  {Median(fresh),8:F3}   nothing prepared ahead");
if (haveCli) Console.WriteLine($"  confine run (CLI)                   {Median(cliTimes),8:F3}   level balanced: cgroup, seccomp; {cli}");
if (haveBwrap) Console.WriteLine($"  bwrap --unshare-all                 {Median(bwrapTimes),8:F3}   no cgroup, no seccomp");
if (haveBwrap)
{
    double preparedRatio = Median(prepared) / Median(bwrapTimes);
    double freshRatio = Median(fresh) / Median(bwrapTimes);
    Console.WriteLine($"  library (prepared ahead) / bwrap   = {preparedRatio:F2}  (target <= 0.50: {(preparedRatio <= 0.5 ? "met" : "MISSED")})");
    Console.WriteLine($"  library (built for the run) / bwrap = {freshRatio:F2}  (target <= 0.50: {(freshRatio <= 0.5 ? "met" : "MISSED")})");
    if (haveCli)
    {
        double cliRatio = Median(cliTimes) / Median(bwrapTimes);
        Console.WriteLine($"  cli / bwrap                         = {cliRatio:F2}  (target <= 1.50: {(cliRatio <= 1.5 ? "met" : "MISSED")})");
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

if (overheads)
{
    await MeasureOverheads(Math.Max(20, runs / 4));
}

return 0;

// The costs of cgroups and of the seccomp filter, each against the same run without it, in one
// interleaved run, plus a CPU-bound and a syscall-heavy workload in a sandbox against unsandboxed.
async Task MeasureOverheads(int count)
{
    var limits = new ResourceLimits { MemoryBytes = 256L << 20, PidsLimit = 64, Cpus = 1.5 };
    SandboxPolicy limited = policy with { Resources = limits };
    SandboxPolicy unfiltered = policy with { SeccompProfile = "unconfined" };
    // Absolute paths: the same binaries inside and outside, whatever the caller's PATH holds.
    string[] cpuBound = ["/usr/bin/python3", "-c", "s = 0\nfor i in range(3_000_000): s += i * i"];
    // The worst case for a filter: 600k calls that do next to nothing in the kernel.
    string[] syscallHeavy = ["/usr/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=300000", "status=none"];
    // A file-system walk: ~10k directory reads and stats, calls that do real work, as a build or a
    // test runner makes them.
    string[] metadataHeavy = ["/usr/bin/du", "-s", "/usr/lib/x86_64-linux-gnu", "/usr/share/locale"];

    var startPlain = new List<double>();
    var startLimited = new List<double>();
    var cpuSandboxed = new List<double>();
    var cpuDirect = new List<double>();
    var syscallFiltered = new List<double>();
    var syscallUnfiltered = new List<double>();
    var syscallDirect = new List<double>();
    for (int i = 0; i < count; i++)
    {
        startPlain.Add(await TimeRun(policy, ["/bin/true"]));
        startLimited.Add(await TimeRun(limited, ["/bin/true"]));
        if (i < 10)
        {
            cpuSandboxed.Add(await TimeRun(limited, cpuBound));
            cpuDirect.Add(Spawner.Time(cpuBound));
            syscallFiltered.Add(await TimeRun(policy, syscallHeavy));
            syscallUnfiltered.Add(await TimeRun(unfiltered, syscallHeavy));
            syscallDirect.Add(Spawner.Time(syscallHeavy));
        }
    }

    // The filter's cost on the walk is a few percent of a 35 ms command whose time varies by more
    // than that from one run to the next on this machine. So: the command's own time (from its
    // execve to its exit, as the verdict gives it; a sandbox's start-up is the same with either
    // profile and only adds noise), in pairs whose order alternates, and the median of the pairs'
    // ratios, which drift in the machine's speed does not move. With 150 pairs it repeats within
    // about a percent; with 50 it wandered between 1% and 8%.
    var walkFiltered = new List<double>();
    var walkUnfiltered = new List<double>();
    var walkPairRatios = new List<double>();
    for (int i = 0; i < walkPairs; i++)
    {
        double filtered;
        double unconfined;
        if (i % 2 == 0)
        {
            filtered = await CommandTime(policy, metadataHeavy);
            unconfined = await CommandTime(unfiltered, metadataHeavy);
        }
        else
        {
            unconfined = await CommandTime(unfiltered, metadataHeavy);
            filtered = await CommandTime(policy, metadataHeavy);
        }

        walkFiltered.Add(filtered);
        walkUnfiltered.Add(unconfined);
        walkPairRatios.Add(filtered / unconfined);
    }

    Console.WriteLine("overheads (medians in milliseconds, ratio = with / without):");
    Report("start-up, cgroup limits vs none", startLimited, startPlain);
    Report("CPU-bound python, sandbox+limits vs unsandboxed", cpuSandboxed, cpuDirect);
    Report("300k syscalls (dd bs=1), default seccomp vs unconfined", syscallFiltered, syscallUnfiltered);
    Report("300k syscalls (dd bs=1), sandbox vs unsandboxed", syscallFiltered, syscallDirect);
    Report($"10k-file walk (du), default seccomp vs unconfined, {walkPairs} pairs", walkFiltered, walkUnfiltered);
    double emptyCallsRatio = Median(syscallFiltered) / Median(syscallUnfiltered);
    double walkRatio = Median(walkPairRatios);
    Console.WriteLine($"  seccomp filter cost, file-system walk  = {100 * (walkRatio - 1):F1}%  (median of the pairs' ratios; target <= 5%: {(walkRatio <= 1.05 ? "met" : "MISSED")})");
    Console.WriteLine($"  seccomp filter cost, near-empty calls  = {100 * (emptyCallsRatio - 1):F1}%  (worst case: see What filtering costs in docs/seccomp.md)");
}

void Report(string what, List<double> with, List<double> without) =>
    Console.WriteLine($"  {what,-58} {Median(with),8:F2} / {Median(without),8:F2} = {Median(with) / Median(without):F2}");

async Task<double> TimeRun(SandboxPolicy runPolicy, string[] command)
{
    long start = Stopwatch.GetTimestamp();
    Verdict verdict = await Sandbox.RunAsync(runPolicy, command);
    double elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    if (verdict.Status != VerdictStatus.Ok)
    {
        throw new InvalidOperationException(VerdictJson.Serialize(verdict));
    }

    await SandboxPool.SettledAsync();
    return elapsed;
}

/// <summary>The command's own time in milliseconds, from its execve to its exit, as the verdict gives it.</summary>
async Task<double> CommandTime(SandboxPolicy runPolicy, string[] command)
{
    Verdict verdict = await Sandbox.RunAsync(runPolicy, command);
    if (verdict.Status != VerdictStatus.Ok)
    {
        throw new InvalidOperationException(VerdictJson.Serialize(verdict));
    }

    await SandboxPool.SettledAsync();
    return verdict.WallTimeSeconds * 1000;
}

async Task<double> RunLibraryOnce(bool fresh, bool check = true)
{
    long start = Stopwatch.GetTimestamp();
    Verdict verdict = fresh
        ? await Sandbox.RunFreshAsync(policy, ["/bin/true"])
        : await Sandbox.RunAsync(policy, ["/bin/true"]);
    double elapsed = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    if (verdict.Status != VerdictStatus.Ok || (check && verdict.PreparedAhead == fresh))
    {
        // A run meant to use a prepared sandbox that did not (or the other way round) measures the wrong thing.
        throw new InvalidOperationException(
            $"expected prepared_ahead {!fresh}: {VerdictJson.Serialize(verdict)}");
    }

    // The sandbox prepared for the next run is built off the clock, before anything else is timed.
    await SandboxPool.SettledAsync();
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
        string path = argv[0].Contains('/') ? argv[0] : Find(argv[0]) ?? throw new FileNotFoundException(argv[0]);
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
