namespace Confine.Tests.Planning;

/// <summary>Policies that must be refused before anything is created, with the key that is wrong.</summary>
public sealed class PolicyValidationTests
{
    public static TheoryData<string, SandboxPolicy> BadPolicies => new()
    {
        { "hostname", SandboxPolicy.Default with { Hostname = "" } },
        { "hostname", SandboxPolicy.Default with { Hostname = "bad host" } },
        { "workdir", SandboxPolicy.Default with { WorkingDirectory = "relative" } },
        { "binds[0].source", SandboxPolicy.Default with { Binds = [new BindMount("/definitely/missing", "/x")] } },
        { "binds[0].target", SandboxPolicy.Default with { Binds = [new BindMount("/etc", "/")] } },
        { "binds[0].target", SandboxPolicy.Default with { Binds = [new BindMount("/etc", "/proc/sys")] } },
        { "binds[0].target", SandboxPolicy.Default with { Binds = [new BindMount("/etc", "/a/../b")] } },
        { "binds[1].target", SandboxPolicy.Default with { Binds = [new BindMount("/etc", "/x"), new BindMount("/usr", "/x")] } },
        { "tmpfs[0].size", SandboxPolicy.Default with { Tmpfs = [new TmpfsMount("/tmp", 0)] } },
        { "tmpfs[0].target", SandboxPolicy.Default with { Tmpfs = [new TmpfsMount("/dev/x", 10)] } },
        { "timeout", SandboxPolicy.Default with { Timeout = TimeSpan.Zero } },
        { "limits.stdout", SandboxPolicy.Default with { StdoutLimitBytes = -1 } },
        { "rlimits[0]", SandboxPolicy.Default with { Rlimits = [new Rlimit(RlimitResource.NoFile, 10, 5)] } },
        // Above this process's own hard limit: the sandbox could never set it.
        { "rlimits[0]", SandboxPolicy.Default with { Rlimits = [new Rlimit(RlimitResource.NoFile, 64, Confine.Native.Posix.HardRlimit(7) + 1)] } },
        { "env", SandboxPolicy.Default with { Environment = SandboxPolicy.DefaultEnvironment.Add("A=B", "x") } },
        {
            "tmpfs[0].size",
            SandboxPolicy.Default with
            {
                Tmpfs = [new TmpfsMount("/tmp", 1L << 30)],
                Resources = new ResourceLimits { MemoryBytes = 64L << 20 },
            }
        },
    };

    [Theory]
    [MemberData(nameof(BadPolicies))]
    public void Validate_BadPolicy_ThrowsNamingTheKey(string key, SandboxPolicy policy)
    {
        PolicyException error = Assert.Throws<PolicyException>(() => PolicyValidator.Validate(policy));
        Assert.Equal(key, error.Path);
        Assert.False(string.IsNullOrWhiteSpace(error.Reason));
    }

    [Fact]
    public void Validate_DefaultPolicy_Passes()
    {
        PolicyValidator.Validate(SandboxPolicy.Default);
    }

    [Fact]
    public void ValidateCommand_Empty_Throws()
    {
        Assert.Equal("command", Assert.Throws<PolicyException>(() => PolicyValidator.ValidateCommand([])).Path);
        Assert.Equal("command[1]", Assert.Throws<PolicyException>(() => PolicyValidator.ValidateCommand(["a", "b\0"])).Path);
    }

    [Theory]
    [InlineData("64m", 64L << 20)]
    [InlineData("1.5g", 3L << 29)]
    [InlineData("512", 512)]
    [InlineData("2KiB", 2048)]
    public void ParseSize_Suffixes(string text, long expected) => Assert.Equal(expected, Units.ParseSize("k", text));

    [Theory]
    [InlineData("10s", 10_000)]
    [InlineData("500ms", 500)]
    [InlineData("1m30s", 90_000)]
    [InlineData("2.5", 2_500)]
    public void ParseDuration_Suffixes(string text, double milliseconds) =>
        Assert.Equal(milliseconds, Units.ParseDuration("k", text).TotalMilliseconds);

    [Theory]
    [InlineData("ten")]
    [InlineData("5x")]
    [InlineData("")]
    public void ParseDuration_Garbage_Throws(string text) =>
        Assert.Throws<PolicyException>(() => Units.ParseDuration("timeout", text));

    [Fact]
    public void BindMount_Parse_DockerSyntax()
    {
        Assert.Equal(new BindMount("/a", "/b", true), BindMount.Parse("/a:/b:rw"));
        Assert.Equal(new BindMount("/a", "/b", false), BindMount.Parse("/a:/b"));
        Assert.Equal(new BindMount("/a", "/a", false), BindMount.Parse("/a"));
        Assert.Throws<PolicyException>(() => BindMount.Parse("/a:/b:rx"));
    }
}
