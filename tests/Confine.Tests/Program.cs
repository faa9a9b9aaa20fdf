using Confine.Tests.Support;

namespace Confine.Tests;

/// <summary>
/// The test assembly's entry point, which the test SDK would otherwise generate empty:
/// <c>dotnet Confine.Tests.dll --trait Requirement=CgroupV2</c> runs tests in this process (see
/// <see cref="InProcessTestRunner"/>). <c>dotnet test</c> never calls it.
/// </summary>
internal static class Program
{
    private static int Main(string[] args) => InProcessTestRunner.Run(typeof(Program).Assembly, args);
}
