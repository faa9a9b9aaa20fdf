namespace Confine.Tests.Support;

/// <summary>
/// A fact that needs this process's own cgroup to be on a cgroup v2 hierarchy that offers the
/// given controllers (memory, when none are named). Where it is not, the test is skipped with the
/// reason, since xunit 2 has no way for a running test to skip itself. Such tests carry
/// <c>[Trait("Requirement", "CgroupV2")]</c> so the cgroup v2 guest can select them.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class CgroupV2FactAttribute : FactAttribute
{
    /// <summary>Creates the fact, skipped unless every one of <paramref name="controllers"/> is offered.</summary>
    /// <param name="controllers">Controller names as <c>cgroup.controllers</c> lists them.</param>
    public CgroupV2FactAttribute(params string[] controllers)
    {
        Controllers = controllers.Length == 0 ? ["memory"] : controllers;
        if (CgroupV2Hierarchy.WhyUnavailable(Controllers) is { } reason)
        {
            Skip = reason;
        }
    }

    /// <summary>The controllers the test needs.</summary>
    public IReadOnlyList<string> Controllers { get; }
}
