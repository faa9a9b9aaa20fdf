using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Confine.Tests.Support;

/// <summary>
/// Runs this assembly's xunit tests inside the current process, for the cgroup v2 guest, where
/// <c>dotnet test</c> spends most of its time starting MSBuild, vstest.console and a test host
/// under emulation. It drives xunit's own discoverer and executor, so tests behave as they do under
/// <c>dotnet test</c>, but it reads no xunit.runner.json and reports in plain text only.
/// </summary>
internal static class InProcessTestRunner
{
    private const string Usage =
        "usage: dotnet Confine.Tests.dll [--trait NAME=VALUE]... [--no-skips]\n" +
        "  --trait NAME=VALUE  run only tests with this trait (repeat: any of them)\n" +
        "  --no-skips          count a skipped test as a failure";

    /// <summary>Runs the tests of <paramref name="assembly"/> that <paramref name="args"/> select.</summary>
    /// <returns>0 when every selected test passed, 1 when one failed (or none ran), 2 on bad arguments.</returns>
    public static int Run(Assembly assembly, string[] args)
    {
        var traits = new List<(string Name, string Value)>();
        bool noSkips = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--trait" && i + 1 < args.Length && args[i + 1].IndexOf('=') > 0)
            {
                string trait = args[++i];
                int equals = trait.IndexOf('=');
                traits.Add((trait[..equals], trait[(equals + 1)..]));
            }
            else if (args[i] == "--no-skips")
            {
                noSkips = true;
            }
            else
            {
                Console.Error.WriteLine(Usage);
                return 2;
            }
        }

        using var framework = new XunitTestFramework(new NullMessageSink());
        List<ITestCase> testCases = Discover(framework, assembly)
            .Where(testCase => traits.Count == 0 || traits.Any(t => HasTrait(testCase, t.Name, t.Value)))
            .ToList();
        if (testCases.Count == 0)
        {
            Console.WriteLine("no tests matched");
            return 1;
        }

        var reporter = new Reporter();
        using (ITestFrameworkExecutor executor = framework.GetExecutor(assembly.GetName()))
        {
            executor.RunTests(testCases, reporter, new Options());
            reporter.Finished.WaitOne();
        }

        Console.WriteLine(
            $"{reporter.Run} run, {reporter.Failed} failed, {reporter.Skipped} skipped, " +
            $"{reporter.Errors} other errors in {reporter.ExecutionTime:F1} s");
        bool skipsFail = noSkips && reporter.Skipped > 0;
        if (skipsFail)
        {
            Console.WriteLine("--no-skips: a skipped test counts as a failure");
        }

        return reporter.Failed == 0 && reporter.Errors == 0 && !skipsFail ? 0 : 1;
    }

    private static List<ITestCase> Discover(XunitTestFramework framework, Assembly assembly)
    {
        var collector = new DiscoveryCollector();
        using ITestFrameworkDiscoverer discoverer = framework.GetDiscoverer(Reflector.Wrap(assembly));
        discoverer.Find(includeSourceInformation: false, collector, new Options());
        collector.Complete.WaitOne();
        return collector.TestCases;
    }

    private static bool HasTrait(ITestCase testCase, string name, string value) =>
        testCase.Traits.TryGetValue(name, out List<string>? values) && values.Contains(value, StringComparer.Ordinal);

    /// <summary>Discovery and execution options with xunit's defaults: every lookup finds nothing.</summary>
    private sealed class Options : ITestFrameworkDiscoveryOptions, ITestFrameworkExecutionOptions
    {
        private readonly Dictionary<string, object?> _values = [];

        public TValue GetValue<TValue>(string name) =>
            _values.TryGetValue(name, out object? value) && value is TValue typed ? typed : default!;

        public void SetValue<TValue>(string name, TValue value) => _values[name] = value;
    }

    private sealed class DiscoveryCollector : LongLivedMarshalByRefObject, IMessageSink
    {
        public List<ITestCase> TestCases { get; } = [];

        public ManualResetEvent Complete { get; } = new(false);

        public bool OnMessage(IMessageSinkMessage message)
        {
            if (message is ITestCaseDiscoveryMessage discovered)
            {
                TestCases.Add(discovered.TestCase);
            }
            else if (message is IDiscoveryCompleteMessage)
            {
                Complete.Set();
            }

            return true;
        }
    }

    /// <summary>Prints each result as it arrives; xunit calls it from its worker threads.</summary>
    private sealed class Reporter : LongLivedMarshalByRefObject, IMessageSink
    {
        private int _run;
        private int _failed;
        private int _skipped;
        private int _errors;

        public ManualResetEvent Finished { get; } = new(false);

        public int Run => _run;

        public int Failed => _failed;

        public int Skipped => _skipped;

        public int Errors => _errors;

        public decimal ExecutionTime { get; private set; }

        public bool OnMessage(IMessageSinkMessage message)
        {
            switch (message)
            {
                case ITestPassed passed:
                    Interlocked.Increment(ref _run);
                    Console.WriteLine($"PASS {passed.Test.DisplayName} ({passed.ExecutionTime * 1000:F0} ms)");
                    break;
                case ITestSkipped skipped:
                    Interlocked.Increment(ref _skipped);
                    Console.WriteLine($"SKIP {skipped.Test.DisplayName}: {skipped.Reason}");
                    break;
                case ITestFailed failed:
                    Interlocked.Increment(ref _run);
                    Interlocked.Increment(ref _failed);
                    Console.WriteLine($"FAIL {failed.Test.DisplayName}\n{Describe(failed)}{failed.Output}");
                    break;
                case IFailureInformation failure:
                    // Failures outside a test: a fixture's constructor or Dispose, a catastrophic error.
                    Interlocked.Increment(ref _errors);
                    Console.WriteLine($"ERROR {message.GetType().Name}\n{Describe(failure)}");
                    break;
                case ITestAssemblyFinished finished:
                    ExecutionTime = finished.ExecutionTime;
                    Finished.Set();
                    break;
            }

            return true;
        }

        private static string Describe(IFailureInformation failure)
        {
            var text = new System.Text.StringBuilder();
            for (int i = 0; i < failure.Messages.Length; i++)
            {
                text.Append("  ").Append(failure.ExceptionTypes[i]).Append(": ").AppendLine(failure.Messages[i]);
                if (failure.StackTraces[i] is { } stackTrace)
                {
                    text.AppendLine(stackTrace);
                }
            }

            return text.ToString();
        }
    }
}
