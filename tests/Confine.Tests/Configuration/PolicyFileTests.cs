using System.Text;
using System.Text.Json;
using Confine.Configuration;

namespace Confine.Tests.Configuration;

/// <summary>Policy files: both syntaxes read alike, every key takes effect, every mistake names its key and line.</summary>
[Trait("Category", "Configuration")]
public sealed class PolicyFileTests
{
    private const string Yaml = """
        level: maximum
        hostname: judge-1
        network: host
        user: "1000:1000"
        workdir: /work
        env:
          LANG: C
          EXTRA: "1"
          TERM: null
        binds:
          - /etc:/host-etc
          - source: /usr/share
            target: /share
            writable: false
        tmpfs:
          - /tmp:size=8m
          - target: /work
            size: 4m
            inodes: 100
        system_paths: [/usr, /bin, /lib, /lib64]
        timeout: 1m30s
        limits:
          stdout: 2m
          stderr: 512k
        resources:
          memory: 128m
          memory_swap: 256m
          cpus: 0.5
          cpuset_cpus: "0"
          cpu_time: 5s
          pids_limit: 32
          device_io:
            - device: "254:0"
              read_bps: 1m
              write_iops: 100
          allow_unenforced: true
          cgroup_parent: judges
        rlimits:
          nofile: 64:128
          fsize: 1048576
          stack: unlimited
        seccomp_profile: default
        on_violation: record
        landlock: false
        allow_degrade: true
        """;

    private const string Json = """
        {
          "level": "maximum",
          "hostname": "judge-1",
          "network": "host",
          "user": "1000:1000",
          "workdir": "/work",
          "env": { "LANG": "C", "EXTRA": "1", "TERM": null },
          "binds": ["/etc:/host-etc", { "source": "/usr/share", "target": "/share", "writable": false }],
          "tmpfs": ["/tmp:size=8m", { "target": "/work", "size": "4m", "inodes": 100 }],
          "system_paths": ["/usr", "/bin", "/lib", "/lib64"],
          "timeout": "1m30s",
          "limits": { "stdout": "2m", "stderr": "512k" },
          "resources": {
            "memory": "128m", "memory_swap": "256m", "cpus": 0.5, "cpuset_cpus": "0", "cpu_time": "5s",
            "pids_limit": 32,
            "device_io": [{ "device": "254:0", "read_bps": "1m", "write_iops": 100 }],
            "allow_unenforced": true,
            "cgroup_parent": "judges"
          },
          "rlimits": { "nofile": "64:128", "fsize": 1048576, "stack": "unlimited" },
          "seccomp_profile": "default",
          "on_violation": "record",
          "landlock": false,
          "allow_degrade": true, // comments and trailing commas are allowed
        }
        """;

    /// <summary>A policy in the file format, with every key: equal text means equal policies.</summary>
    internal static string Document(SandboxPolicy policy, IsolationLevel? level = null)
    {
        using var output = new MemoryStream();
        using (var writer = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
        {
            PolicyDocument.Write(writer, policy, level);
        }

        return Encoding.UTF8.GetString(output.ToArray());
    }

    [Fact]
    public void Parse_JsonAndYaml_GiveEqualPolicies()
    {
        PolicyFile yaml = PolicyFile.Parse(Yaml, PolicyFileFormat.Yaml, "p.yaml", "/");
        PolicyFile json = PolicyFile.Parse(Json, PolicyFileFormat.Json, "p.json", "/");
        Assert.Equal(IsolationLevel.Maximum, yaml.Level);
        Assert.Equal(IsolationLevel.Maximum, json.Level);
        Assert.Equal(Document(json.ToPolicy()), Document(yaml.ToPolicy()));
    }

    [Fact]
    public void Parse_EveryKey_TakesEffect()
    {
        SandboxPolicy level = IsolationLevels.Policy(IsolationLevel.Maximum);
        SandboxPolicy policy = PolicyFile.Parse(Yaml, PolicyFileFormat.Yaml, "p.yaml", "/").ToPolicy();

        using JsonDocument before = JsonDocument.Parse(Document(level));
        using JsonDocument after = JsonDocument.Parse(Document(policy));
        // Every key but the level and the parts of list items and rlimits (checked one by one below)
        // must differ from maximum's own value: the sample sets each to something else.
        foreach (string path in PolicyKeys.Paths().Where(p => p != "level" && !p.Contains("[]") && !p.StartsWith("rlimits.")))
        {
            string was = Lookup(before.RootElement, path).GetRawText();
            string now = Lookup(after.RootElement, path).GetRawText();
            Assert.False(was == now, $"{path} did not change: {now}");
        }

        Assert.Equal(new SandboxUser(1000, 1000), policy.User);
        Assert.Equal([new BindMount("/etc", "/host-etc"), new BindMount("/usr/share", "/share")], policy.Binds.ToArray());
        Assert.Equal([new TmpfsMount("/tmp", 8L << 20), new TmpfsMount("/work", 4L << 20, 100)], policy.Tmpfs.ToArray());
        Assert.Equal(TimeSpan.FromSeconds(90), policy.Timeout);
        Assert.Equal(new DeviceIoLimit("254:0") { ReadBps = 1L << 20, WriteIops = 100 }, Assert.Single(policy.Resources.DeviceIo));
        Assert.Contains(new Rlimit(RlimitResource.NoFile, 64, 128), policy.Rlimits);
        Assert.Contains(new Rlimit(RlimitResource.Stack, Rlimit.Infinity, Rlimit.Infinity), policy.Rlimits);
        Assert.Contains(new Rlimit(RlimitResource.FileSize, 1 << 20, 1 << 20), policy.Rlimits);
        Assert.Equal(NetworkMode.Host, policy.Network);
        Assert.Equal(ViolationAction.Record, policy.OnViolation);
        Assert.False(policy.Landlock);
        Assert.Equal("default", policy.SeccompProfile);
    }

    [Fact]
    public void Parse_MapsMergeAndListsReplace()
    {
        SandboxPolicy policy = PolicyFile.Parse("env:\n  FOO: bar\n  TERM: null\ntmpfs: []\n", PolicyFileFormat.Yaml).ToPolicy();
        Assert.Equal("bar", policy.Environment["FOO"]);
        Assert.Equal(SandboxPolicy.DefaultEnvironment["PATH"], policy.Environment["PATH"]);
        Assert.False(policy.Environment.ContainsKey("TERM"));
        Assert.Empty(policy.Tmpfs.ToArray());
        Assert.Equal(IsolationLevels.Policy(IsolationLevel.Balanced).Resources, policy.Resources);
    }

    [Fact]
    public void Parse_NullRemovesAnOptionalLimit()
    {
        SandboxPolicy policy = PolicyFile.Parse("level: maximum\ntimeout: null\nresources:\n  memory: ~\n", PolicyFileFormat.Yaml).ToPolicy();
        Assert.Null(policy.Timeout);
        Assert.Null(policy.Resources.MemoryBytes);
        Assert.Equal(64, policy.Resources.PidsLimit);
    }

    [Fact]
    public void Load_RelativePaths_AreRelativeToTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("confine-policy-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "data"));
            string file = Path.Combine(dir, "policy.yaml");
            File.WriteAllText(file, "binds:\n  - data:/data\nseccomp_profile: ./profile.json\n");
            PolicyFile policyFile = PolicyFile.Load(file);
            SandboxPolicy policy = policyFile.ApplyTo(SandboxPolicy.Default);
            Assert.Equal(Path.Combine(dir, "data"), Assert.Single(policy.Binds).Source);
            Assert.Equal(Path.Combine(dir, "profile.json"), policy.SeccompProfile);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Document_OfEveryLevel_LoadsBackToTheSamePolicy(IsolationLevel level)
    {
        SandboxPolicy policy = IsolationLevels.Policy(level);
        string written = Document(policy, level);
        SandboxPolicy read = PolicyFile.Parse(written, PolicyFileFormat.Json).ToPolicy();
        Assert.Equal(written, Document(read, level));
    }

    public static TheoryData<IsolationLevel> Levels => [.. IsolationLevels.All];

    /// <summary>Bad files: the text, its format, the key the error must name and the line it must point at.</summary>
    public static TheoryData<string, PolicyFileFormat, string, int> BadFiles => new()
    {
        { "hostname: box\nmemroy: 1g\n", PolicyFileFormat.Yaml, "memroy", 2 },
        { "resources:\n  memroy: 1g\n", PolicyFileFormat.Yaml, "resources.memroy", 2 },
        { "{\n  \"limits\": { \"stdin\": 1 }\n}", PolicyFileFormat.Json, "limits.stdin", 2 },
        { "hostname: 12\n", PolicyFileFormat.Yaml, "hostname", 1 },
        { "landlock: yes\n", PolicyFileFormat.Yaml, "landlock", 1 },
        { "{\"network\": 5}", PolicyFileFormat.Json, "network", 1 },
        { "network: bridge\n", PolicyFileFormat.Yaml, "network", 1 },
        { "level: paranoid\n", PolicyFileFormat.Yaml, "level", 1 },
        { "binds: /etc\n", PolicyFileFormat.Yaml, "binds", 1 },
        { "resources:\n  memory: lots\n", PolicyFileFormat.Yaml, "resources.memory", 2 },
        { "resources:\n  memory: 0\n", PolicyFileFormat.Yaml, "resources.memory", 2 },
        { "resources:\n  pids_limit: 0\n", PolicyFileFormat.Yaml, "resources.pids_limit", 2 },
        { "resources:\n  cpus: 0\n", PolicyFileFormat.Yaml, "resources.cpus", 2 },
        { "{\"limits\": {\"stdout\": -5}}", PolicyFileFormat.Json, "limits.stdout", 1 },
        { "timeout: 0s\n", PolicyFileFormat.Yaml, "timeout", 1 },
        { "resources:\n  memory: 64m\ntmpfs:\n  - /tmp:size=128m\n", PolicyFileFormat.Yaml, "tmpfs[0].size", 4 },
        { "level: maximum\nresources:\n  memory: 8m\ntmpfs:\n  - /tmp:size=16m\n", PolicyFileFormat.Yaml, "tmpfs[0].size", 5 },
        { "resources:\n  memory: 1g\n  memory_swap: 512m\n", PolicyFileFormat.Yaml, "resources.memory_swap", 3 },
        { "binds:\n  - /etc:/proc/x\n", PolicyFileFormat.Yaml, "binds[0].target", 2 },
        { "binds:\n  - source: /etc\n    target: /dev/shm/x\n", PolicyFileFormat.Yaml, "binds[0].target", 2 },
        { "binds:\n  - target: /x\n", PolicyFileFormat.Yaml, "binds[0].source", 2 },
        { "rlimits:\n  nofile: 10:5\n", PolicyFileFormat.Yaml, "rlimits.nofile", 2 },
        { "rlimits:\n  core: 100\n", PolicyFileFormat.Yaml, "rlimits.core", 2 },
        { "rlimits:\n  rtprio: 1\n", PolicyFileFormat.Yaml, "rlimits.rtprio", 2 },
        { "env:\n  A=B: x\n", PolicyFileFormat.Yaml, "env.A=B", 2 },
        { "hostname: a\nhostname: b\n", PolicyFileFormat.Yaml, "hostname", 2 },
        { "{\"hostname\": \"a\",\n \"hostname\": \"b\"}", PolicyFileFormat.Json, "hostname", 2 },
        { "seccomp_profile: mine.json\n", PolicyFileFormat.Yaml, "seccomp_profile", 1 },
        { "- a\n- b\n", PolicyFileFormat.Yaml, "(root)", 1 },
        { "hostname: [a\nnetwork: none\n", PolicyFileFormat.Yaml, "", 1 },
        { "key: \"unterminated\n", PolicyFileFormat.Yaml, "", 1 },
        { "{\"hostname\": \"x\"\n \"network\": \"none\"}", PolicyFileFormat.Json, "", 2 },
        { "{\"hostname\": \"x\",", PolicyFileFormat.Json, "", 1 },
        { "", PolicyFileFormat.Json, "", 1 },
    };

    [Fact]
    public void ToPolicy_MemoryBelowTheLevelsTmpfs_ShrinksTheLevelsTmpfsToTheLimit()
    {
        SandboxPolicy policy = PolicyFile.Parse("level: balanced\nresources:\n  memory: 64m\n", PolicyFileFormat.Yaml, "small.yaml").ToPolicy();

        TmpfsMount tmp = Assert.Single(policy.Tmpfs);
        Assert.Equal(("/tmp", 64L << 20), (tmp.Target, tmp.SizeBytes));
    }

    [Fact]
    public void ToPolicy_MemoryAboveTheLevelsTmpfs_LeavesTheTmpfsAlone()
    {
        SandboxPolicy policy = PolicyFile.Parse("level: maximum\nresources:\n  memory: 512m\n", PolicyFileFormat.Yaml, "big.yaml").ToPolicy();

        Assert.Equal(16L << 20, Assert.Single(policy.Tmpfs).SizeBytes);
    }

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Parse_BadFile_NamesTheKeyAndLine(string text, PolicyFileFormat format, string key, int line)
    {
        PolicyException error = Assert.Throws<PolicyException>(() => PolicyFile.Parse(text, format, "bad.policy").ToPolicy());
        Assert.Equal(key, error.Path);
        Assert.Equal("bad.policy", error.File);
        Assert.Equal(line, error.Line);
        Assert.StartsWith($"bad.policy:{line}:", error.Message);
        Assert.False(string.IsNullOrWhiteSpace(error.Reason));
    }

    private static JsonElement Lookup(JsonElement element, string path)
    {
        foreach (string part in path.Split('.'))
        {
            element = element.GetProperty(part);
        }

        return element;
    }
}
