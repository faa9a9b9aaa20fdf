using System.Collections.Immutable;

namespace Confine.Configuration;

/// <summary>
/// Builds an effective policy in layers (a level, then a policy file, then flags) and remembers
/// which layer set each value, so <c>confine policy show</c> can say where a value came from and a
/// contradiction can be pinned to the line or flag that caused it.
/// </summary>
/// <remarks>
/// Values are tracked by identity rather than position: a bind or tmpfs by its target, a device
/// limit by its device, a variable or rlimit by its name. A later layer that replaces one element
/// of a list therefore does not shift the origins of the others.
/// </remarks>
internal sealed class PolicyBuilder
{
    private readonly Dictionary<string, PolicyOrigin> _origins = new(StringComparer.Ordinal);
    private readonly PolicyOrigin _levelOrigin;

    /// <summary>Starts from <paramref name="policy"/>, whose values all come from <paramref name="level"/> when one is named.</summary>
    public PolicyBuilder(SandboxPolicy policy, IsolationLevel? level)
    {
        Level = level;
        Policy = policy;
        _levelOrigin = level is IsolationLevel named ? PolicyOrigin.FromLevel(named) : new PolicyOrigin(PolicyOriginKind.Level, "caller");
        foreach (PolicyLeaf leaf in PolicyDocument.Leaves(Policy))
        {
            _origins[leaf.Identity] = _levelOrigin;
        }
    }

    public static PolicyBuilder ForLevel(IsolationLevel level) => new(IsolationLevels.Policy(level), level);

    /// <summary>The level the policy started from; null when it started from a caller's policy.</summary>
    public IsolationLevel? Level { get; }

    public SandboxPolicy Policy { get; private set; }

    /// <summary>Changes a single-valued key.</summary>
    public void Set(string key, PolicyOrigin origin, Func<SandboxPolicy, SandboxPolicy> change)
    {
        Policy = change(Policy);
        _origins[key] = origin;
    }

    public void SetResources(string key, PolicyOrigin origin, Func<ResourceLimits, ResourceLimits> change) =>
        Set(key, origin, p => p with { Resources = change(p.Resources) });

    /// <summary>Sets a variable, or removes it when <paramref name="value"/> is null.</summary>
    public void SetEnvironment(string name, string? value, PolicyOrigin origin)
    {
        Policy = Policy with
        {
            Environment = value is null ? Policy.Environment.Remove(name) : Policy.Environment.SetItem(name, value),
        };
        Track($"env.{name}", value is null ? null : origin);
    }

    /// <summary>Sets one rlimit, replacing any of the same resource.</summary>
    public void SetRlimit(Rlimit limit, PolicyOrigin origin)
    {
        int index = IndexOf(Policy.Rlimits, r => r.Resource == limit.Resource);
        Policy = Policy with { Rlimits = index >= 0 ? Policy.Rlimits.SetItem(index, limit) : Policy.Rlimits.Add(limit) };
        Track($"rlimits.{PolicySyntax.RlimitName(limit.Resource)}", origin);
    }

    public void AddBind(BindMount bind, PolicyOrigin origin)
    {
        Policy = Policy with { Binds = Policy.Binds.Add(bind) };
        Track(PolicyDocument.BindIdentity(bind), origin);
    }

    /// <summary>Replaces every bind; each comes with where it was written.</summary>
    public void ReplaceBinds(IReadOnlyList<(BindMount Bind, PolicyOrigin Origin)> binds)
    {
        Forget(PolicyDocument.BindsPrefix);
        Policy = Policy with { Binds = [.. binds.Select(b => b.Bind)] };
        foreach ((BindMount bind, PolicyOrigin origin) in binds)
        {
            Track(PolicyDocument.BindIdentity(bind), origin);
        }
    }

    /// <summary>Adds a tmpfs, replacing one at the same target (as Docker's repeated <c>--tmpfs</c> does).</summary>
    public void PutTmpfs(TmpfsMount tmpfs, PolicyOrigin origin)
    {
        int index = IndexOf(Policy.Tmpfs, t => t.Target == tmpfs.Target);
        Policy = Policy with { Tmpfs = index >= 0 ? Policy.Tmpfs.SetItem(index, tmpfs) : Policy.Tmpfs.Add(tmpfs) };
        Track(PolicyDocument.TmpfsIdentity(tmpfs), origin);
    }

    /// <summary>Replaces every tmpfs; each comes with where it was written.</summary>
    public void ReplaceTmpfs(IReadOnlyList<(TmpfsMount Mount, PolicyOrigin Origin)> mounts)
    {
        Forget(PolicyDocument.TmpfsPrefix);
        Policy = Policy with { Tmpfs = [.. mounts.Select(m => m.Mount)] };
        foreach ((TmpfsMount tmpfs, PolicyOrigin origin) in mounts)
        {
            Track(PolicyDocument.TmpfsIdentity(tmpfs), origin);
        }
    }

    /// <summary>Changes the I/O limit of one device, creating it if the policy has none yet.</summary>
    public void PutDeviceIo(string device, Func<DeviceIoLimit, DeviceIoLimit> change, PolicyOrigin origin)
    {
        ImmutableArray<DeviceIoLimit> limits = Policy.Resources.DeviceIo;
        int index = IndexOf(limits, d => d.Device == device);
        limits = index >= 0 ? limits.SetItem(index, change(limits[index])) : limits.Add(change(new DeviceIoLimit(device)));
        Policy = Policy with { Resources = Policy.Resources with { DeviceIo = limits } };
        Track(PolicyDocument.DeviceIoIdentity(device), origin);
    }

    /// <summary>Replaces every device I/O limit; each comes with where it was written.</summary>
    public void ReplaceDeviceIo(IReadOnlyList<(DeviceIoLimit Limit, PolicyOrigin Origin)> limits)
    {
        Forget(PolicyDocument.DeviceIoPrefix);
        Policy = Policy with { Resources = Policy.Resources with { DeviceIo = [.. limits.Select(l => l.Limit)] } };
        foreach ((DeviceIoLimit limit, PolicyOrigin origin) in limits)
        {
            Track(PolicyDocument.DeviceIoIdentity(limit.Device), origin);
        }
    }

    /// <summary>Every value of the effective policy, by its path in the document, with where it came from.</summary>
    public IEnumerable<(string Path, PolicyOrigin Origin)> Origins() =>
        PolicyDocument.Leaves(Policy).Select(leaf => (leaf.Path, _origins.GetValueOrDefault(leaf.Identity, _levelOrigin)));

    /// <summary>Where the value at <paramref name="path"/> (as a validator error names it) came from, if known.</summary>
    public PolicyOrigin? OriginOf(string path)
    {
        PolicyLeaf? best = null;
        foreach (PolicyLeaf leaf in PolicyDocument.Leaves(Policy))
        {
            bool covers = leaf.Matches(path);
            if (covers && (best is null || leaf.Path.Length > best.Value.Path.Length))
            {
                best = leaf;
            }
        }

        return best is PolicyLeaf found ? _origins.GetValueOrDefault(found.Identity, _levelOrigin) : null;
    }

    /// <summary>
    /// Validates the effective policy; an error is pinned to the file line, flag or level that set the
    /// offending value, so the message says what to change.
    /// </summary>
    public SandboxPolicy Validate()
    {
        CapLevelTmpfsToMemory();
        try
        {
            PolicyValidator.Validate(Policy);
        }
        catch (PolicyException e) when (e.File is null && Blame(e.Path) is PolicyOrigin origin)
        {
            throw origin.Kind switch
            {
                PolicyOriginKind.File => new PolicyException(e.Path, e.Reason, origin.Name, origin.Line, origin.Column),
                PolicyOriginKind.Flag => new PolicyException(e.Path, $"{e.Reason} (set by {origin.Name})"),
                _ => new PolicyException(e.Path, $"{e.Reason} (from level {origin.Name})"),
            };
        }

        return Policy;
    }

    /// <summary>
    /// A level's tmpfs sizes are ceilings chosen for the level's memory limit. When a file or a flag
    /// lowers the memory limit below one of them (<c>--memory 64m</c> under <c>balanced</c>, whose
    /// <c>/tmp</c> is 256 MiB), the tmpfs shrinks to the new limit instead of the run being refused:
    /// its pages count against that limit anyway. A size the user wrote is never changed; one larger
    /// than the memory limit stays an error. The shrunk size is credited to the memory limit's origin.
    /// </summary>
    private void CapLevelTmpfsToMemory()
    {
        if (Policy.Resources.MemoryBytes is not long memory
            || _origins.GetValueOrDefault("resources.memory", _levelOrigin).Kind == PolicyOriginKind.Level)
        {
            return;
        }

        PolicyOrigin memoryOrigin = _origins["resources.memory"];
        for (int i = 0; i < Policy.Tmpfs.Length; i++)
        {
            TmpfsMount tmpfs = Policy.Tmpfs[i];
            string identity = PolicyDocument.TmpfsIdentity(tmpfs);
            if (tmpfs.SizeBytes > memory && _origins.GetValueOrDefault(identity, _levelOrigin).Kind == PolicyOriginKind.Level)
            {
                Policy = Policy with { Tmpfs = Policy.Tmpfs.SetItem(i, tmpfs with { SizeBytes = memory }) };
                _origins[identity] = memoryOrigin;
            }
        }
    }

    /// <summary>
    /// The origin to pin an error on. A tmpfs too large for the memory limit is a contradiction of two
    /// keys; when the level gave the tmpfs and the user lowered the memory, the user's line is the one
    /// to point at.
    /// </summary>
    private PolicyOrigin? Blame(string path)
    {
        PolicyOrigin? origin = OriginOf(path);
        if (origin is { Kind: PolicyOriginKind.Level }
            && path.StartsWith(PolicyDocument.TmpfsPrefix, StringComparison.Ordinal)
            && path.EndsWith(".size", StringComparison.Ordinal)
            && OriginOf("resources.memory") is { Kind: not PolicyOriginKind.Level } memory)
        {
            return memory;
        }

        return origin;
    }

    private void Track(string identity, PolicyOrigin? origin)
    {
        if (origin is PolicyOrigin known)
        {
            _origins[identity] = known;
        }
        else
        {
            _origins.Remove(identity);
        }
    }

    private void Forget(string prefix)
    {
        foreach (string identity in _origins.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList())
        {
            _origins.Remove(identity);
        }
    }

    private static int IndexOf<T>(ImmutableArray<T> items, Func<T, bool> match)
    {
        for (int i = 0; i < items.Length; i++)
        {
            if (match(items[i]))
            {
                return i;
            }
        }

        return -1;
    }
}
