using System.Text.Json;
using Confine.Tests.Support;

namespace Confine.Tests.Configuration;

/// <summary>
/// Layering through the real command: a flag beats the file, the file beats the level; <c>policy
/// show</c> says where each value came from; <c>policy validate</c> and <c>run</c> refuse bad files.
/// </summary>
[Trait("Category", "Configuration")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
public sealed class PolicyCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("confine-cli-policy-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static JsonDocument Show(params string[] arguments)
    {
        CliResult result = ConfineCli.Run(["policy", "show", .. arguments]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return JsonDocument.Parse(result.Stdout);
    }

    private static string Value(JsonDocument shown, string path)
    {
        JsonElement element = shown.RootElement.GetProperty("policy");
        foreach (string part in path.Split('.'))
        {
            element = element.GetProperty(part);
        }

        return element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText();
    }

    private static string Origin(JsonDocument shown, string path) =>
        shown.RootElement.GetProperty("origins").GetProperty(path).GetString()!;

    [Fact]
    public void PolicyShow_FlagBeatsFileBeatsLevel()
    {
        string file = Write("layers.yaml", "level: maximum\nhostname: from-file\nresources:\n  memory: 512m\n  pids_limit: 100\n");
        using JsonDocument shown = Show("--config", file, "--memory", "1g", "--hostname", "from-flag");

        Assert.Equal("maximum", Value(shown, "level"));
        Assert.Equal(("1g", "flag:--memory"), (Value(shown, "resources.memory"), Origin(shown, "resources.memory")));
        Assert.Equal(("from-flag", "flag:--hostname"), (Value(shown, "hostname"), Origin(shown, "hostname")));
        Assert.Equal(("100", $"file:{file}:5"), (Value(shown, "resources.pids_limit"), Origin(shown, "resources.pids_limit")));
        Assert.Equal(("10s", "level:maximum"), (Value(shown, "resources.cpu_time"), Origin(shown, "resources.cpu_time")));
        Assert.Equal(("strict", "level:maximum"), (Value(shown, "seccomp_profile"), Origin(shown, "seccomp_profile")));
    }

    [Fact]
    public void PolicyShow_MemoryFlagBelowTheLevelsTmp_ShrinksTmpAndCreditsTheFlag()
    {
        using JsonDocument shown = Show("--memory", "64m");

        JsonElement tmp = shown.RootElement.GetProperty("policy").GetProperty("tmpfs")[0];
        Assert.Equal(("/tmp", "64m"), (tmp.GetProperty("target").GetString(), tmp.GetProperty("size").GetString()));
        Assert.Equal("flag:--memory", Origin(shown, "tmpfs[0]"));
    }

    [Fact]
    public void Run_TmpfsFlagLargerThanMemory_IsStillRefused()
    {
        CliResult result = ConfineCli.Run(["run", "--memory", "64m", "--tmpfs", "/tmp:size=128m", "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("tmpfs[0].size", result.Stderr);
    }

    [Fact]
    public void PolicyShow_LevelFlag_ReplacesTheFilesLevelButKeepsItsKeys()
    {
        string file = Write("level.yaml", "level: maximum\ntimeout: 3s\n");
        using JsonDocument shown = Show("--config", file, "--level", "development");
        Assert.Equal("development", Value(shown, "level"));
        Assert.Equal("host", Value(shown, "network"));
        Assert.Equal(("3s", $"file:{file}:2"), (Value(shown, "timeout"), Origin(shown, "timeout")));
    }

    [Fact]
    public void PolicyShow_WithoutLevel_IsBalanced()
    {
        using JsonDocument shown = Show();
        Assert.Equal("balanced", Value(shown, "level"));
        Assert.Equal("1g", Value(shown, "resources.memory"));
        Assert.All(shown.RootElement.GetProperty("origins").EnumerateObject(), o => Assert.Equal("level:balanced", o.Value.GetString()));
    }

    [Fact]
    public void PolicyShow_Output_IsAPolicyFileThatLoadsToTheSamePolicy()
    {
        using JsonDocument first = Show("--level", "maximum", "--ulimit", "nofile=100:200", "--tmpfs", "/scratch:size=2m",
            "--device-read-bps", "254:0:1mb", "--cpus", "0.5", "-e", "GREETING=hi", "--timeout", "none");
        string saved = Write("saved.json", first.RootElement.GetProperty("policy").GetRawText());
        using JsonDocument second = Show("--config", saved);
        Assert.Equal(first.RootElement.GetProperty("policy").GetRawText(), second.RootElement.GetProperty("policy").GetRawText());
        Assert.Equal("null", Value(second, "timeout"));
        Assert.Equal("100:200", Value(second, "rlimits.nofile"));
    }

    [Fact]
    public void PolicyShow_DockerStyleFlags_SetTheirKeys()
    {
        using JsonDocument shown = Show("--memory", "512m", "--memory-swap", "1g", "--cpus", "1.5", "--cpuset-cpus", "0",
            "--cpu-time", "1m", "--pids-limit", "50", "--cgroup-parent", "bots", "--seccomp", "strict", "--landlock",
            "--allow-degrade", "--device-write-iops", "/dev/vda:100", "--read-only");
        Assert.Equal("512m", Value(shown, "resources.memory"));
        Assert.Equal("1g", Value(shown, "resources.memory_swap"));
        Assert.Equal("1.5", Value(shown, "resources.cpus"));
        Assert.Equal("0", Value(shown, "resources.cpuset_cpus"));
        Assert.Equal("1m", Value(shown, "resources.cpu_time"));
        Assert.Equal("50", Value(shown, "resources.pids_limit"));
        Assert.Equal("bots", Value(shown, "resources.cgroup_parent"));
        Assert.Equal("strict", Value(shown, "seccomp_profile"));
        Assert.Equal(("true", "true"), (Value(shown, "landlock"), Value(shown, "allow_degrade")));
        Assert.Equal("[]", Value(shown, "tmpfs"));
        JsonElement resources = shown.RootElement.GetProperty("policy").GetProperty("resources");
        // The flag adds its device beside the level's limit for writable storage.
        JsonElement[] devices = [.. resources.GetProperty("device_io").EnumerateArray()];
        Assert.Equal(["writable", "/dev/vda"], devices.Select(d => d.GetProperty("device").GetString()));
        Assert.Equal(100, devices[1].GetProperty("write_iops").GetInt32());
    }

    [Fact]
    public void PolicyValidate_GoodFile_SaysValid()
    {
        string file = Write("good.yaml", "level: development\nresources:\n  memory: 2g\n");
        CliResult result = ConfineCli.Run(["policy", "validate", file]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal($"{file}: valid (level development)\n", result.Stdout);
    }

    public static TheoryData<string, string, string> BadFiles => new()
    {
        { "unknown.yaml", "resources:\n  memroy: 1g\n", "unknown.yaml:2:3: resources.memroy: unknown key" },
        { "type.json", "{\n  \"landlock\": \"yes\"\n}", "type.json:2:15: landlock: expected true or false" },
        { "zero.yaml", "resources:\n  pids_limit: 0\n", "zero.yaml:2:3: resources.pids_limit: must be positive" },
        { "tmpfs.yaml", "resources:\n  memory: 64m\ntmpfs:\n  - target: /tmp\n    size: 1g\n", "tmpfs.yaml:4:5: tmpfs[0].size:" },
        { "proc.yaml", "binds:\n  - /etc:/proc/sys/x\n", "proc.yaml:2:5: binds[0].target: '/proc/sys/x' is inside /proc" },
        { "broken.yaml", "hostname: [unclosed\n", "broken.yaml:2:1: not valid YAML" },
        { "broken.json", "{\"hostname\": \"x\" \"network\": \"none\"}", "broken.json:1:18: not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void PolicyValidate_BadFile_Exits2WithTheLocatedKey(string name, string text, string expected)
    {
        string file = Write(name, text);
        CliResult result = ConfineCli.Run(["policy", "validate", file]);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Stdout);
        Assert.StartsWith($"confine: {Path.Combine(_dir, expected)}", result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Run_BadConfig_IsBadInputBeforeAnythingRuns()
    {
        string file = Write("bad.yaml", "resources:\n  memory: 0\n");
        string marker = Path.Combine(_dir, "ran");
        CliResult result = ConfineCli.Run(["run", "--config", file, "-v", $"{_dir}:/out:rw", "--", "touch", "/out/ran"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"{file}:2:3: resources.memory", result.Stderr);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void Run_Config_RefinesTheSandbox()
    {
        string file = Write("run.yaml", "hostname: from-file\nenv:\n  GREETING: hello\n");
        CliResult result = ConfineCli.Run(["run", "--config", file, "--", "/bin/sh", "-c", "hostname; echo $GREETING"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("from-file\nhello\n", result.Stdout);
    }

    [Fact]
    public void Run_WithoutLevel_GetsBalancedsScratchSpace()
    {
        CliResult result = ConfineCli.Run(["run", "--", "/bin/sh", "-c", "grep ' /tmp ' /proc/mounts"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains($"size={256 * 1024}k", result.Stdout);
    }

    [Fact]
    public void Run_ReadOnly_LeavesNothingWritable()
    {
        CliResult result = ConfineCli.Run(
            ["run", "--read-only", "--", "/bin/sh", "-c", "touch /tmp/x 2>&1 || true; grep -c ' /tmp ' /proc/mounts || true"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Read-only file system", result.Stdout);
        Assert.EndsWith("0\n", result.Stdout);
    }

    [Fact]
    public void Run_Ulimit_SetsSoftAndHardLimits()
    {
        CliResult result = ConfineCli.Run(["run", "--ulimit", "nofile=100:200", "--", "/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("100\n200\n", result.Stdout);
    }

    [Theory]
    [InlineData("--landlock", "--no-landlock", "landlock")]
    [InlineData("--ulimit", "nofile=5:1", "rlimits.nofile")]
    [InlineData("--ulimit", "core=1", "rlimits.core")]
    [InlineData("--level", "paranoid", "level")]
    [InlineData("--memory", "0", "resources.memory")]
    [InlineData("--memory-swap", "512m", "resources.memory_swap")]
    [InlineData("--cpus", "many", "resources.cpus")]
    [InlineData("--device-read-bps", "/dev/vda", "resources.device_io.read_bps")]
    public void Run_BadFlag_IsBadInputNamingTheKey(string flag, string value, string key)
    {
        CliResult result = ConfineCli.Run(["run", flag, value, "--", "true"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"{key}:", result.Stderr);
    }
}
