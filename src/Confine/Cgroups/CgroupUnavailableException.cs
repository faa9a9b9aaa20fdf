namespace Confine;

/// <summary>
/// A resource limit asked for a cgroup controller that this host does not give Confine: it is not
/// mounted, not enabled for Confine's cgroup, or Confine may not create cgroups there. Setting
/// <see cref="ResourceLimits.AllowUnenforced"/> runs anyway and lists the limit as unenforced.
/// </summary>
public sealed class CgroupUnavailableException : Exception
{
    /// <summary>Creates the error for the limit at <paramref name="limit"/>.</summary>
    /// <param name="limit">The policy key of the limit (<c>resources.memory</c>).</param>
    /// <param name="controller">The controller the limit needs, as the host's kernel names it.</param>
    /// <param name="reason">Why the host cannot give it.</param>
    /// <param name="fix">What would make it available.</param>
    public CgroupUnavailableException(string limit, string controller, string reason, string fix)
        : base($"{limit} needs the {controller} cgroup controller, which this host does not give Confine: "
            + $"{reason}. To fix: {fix}; or run without it with --allow-degrade (resources.allow_unenforced in a policy)")
    {
        Limit = limit;
        Controller = controller;
        Reason = reason;
        Fix = fix;
    }

    /// <summary>The policy key of the limit that cannot be enforced.</summary>
    public string Limit { get; }

    /// <summary>The controller the limit needs (<c>memory</c>, <c>blkio</c>, <c>io</c>, ...).</summary>
    public string Controller { get; }

    /// <summary>Why the host cannot give the controller.</summary>
    public string Reason { get; }

    /// <summary>What would make the controller available.</summary>
    public string Fix { get; }
}
