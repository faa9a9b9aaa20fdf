using System.Diagnostics;
using Confine;

int runs = args.Length > 0 ? int.Parse(args[0]) : 200;
var policy = SandboxPolicy.Default;
for (int i = 0; i < 20; i++)
{
    await Sandbox.RunAsync(policy, ["/bin/true"]);
}

var times = new List<double>();
var setups = new List<double>();
var walls = new List<double>();
for (int i = 0; i < runs; i++)
{
    long start = Stopwatch.GetTimestamp();
    Verdict v = await Sandbox.RunAsync(policy, ["/bin/true"]);
    times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    setups.Add(v.SetupTimeSeconds * 1000);
    walls.Add(v.WallTimeSeconds * 1000);
    if (v.Status != VerdictStatus.Ok)
    {
        Console.WriteLine(VerdictJson.Serialize(v));
        return 1;
    }
}

if (Environment.GetEnvironmentVariable("BENCH_SHOW_STDERR") is not null)
{
    for (int i = 0; i < 5; i++)
    {
        Verdict v = await Sandbox.RunAsync(policy, ["/bin/true"]);
        Console.WriteLine(v.Stderr.Text);
    }
}

times.Sort();
setups.Sort();
walls.Sort();
Console.WriteLine($"setup median {setups[setups.Count / 2]:F3} ms, wall median {walls[walls.Count / 2]:F3} ms");
Console.WriteLine($"library median {times[times.Count / 2]:F3} ms  p10 {times[times.Count / 10]:F3}  p90 {times[times.Count * 9 / 10]:F3}");
return 0;
