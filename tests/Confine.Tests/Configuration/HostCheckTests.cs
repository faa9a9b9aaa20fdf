using System.Collections.Immutable;
using System.Diagnostics;
using System.Text.Json;
using Confine.Host;
using Confine.Tests.Support;

namespace Confine.Tests.Configuration;

/// <summary>
/// <c>confine check</c> run for real as root and as uid 65534: every fact it reports is compared
/// with what independent tools (uname, the shell, python's ctypes) see as the same user.
/// </summary>
[Trait("Category", "Configuration")]
// Run again on the published command by scripts/test.sh (see ConfineCli).
[Trait("Command", "confine")]
public sealed class HostCheckTests
{
    /// <summary>Runs a shell command as root or as the unprivileged test user and returns its output.</summary>
    private static string Shell(string script, bool unprivileged)
    {
        var info = new ProcessStartInfo(unprivileged ? "setpriv" : "/bin/sh") { RedirectStandardOutput = true, UseShellExecute = false };
        if (unprivileged)
        {
            int id = ConfineCli.UnprivilegedId;
            foreach (string a in (string[])[$"--reuid={id}", $"--regid={id}", "--clear-groups", "--", "/bin/sh"])
            {
                info.ArgumentList.Add(a);
            }
        }

        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        using Process process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return output.Trim();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Check_Json_ReportsTheFactsTheHostShows(bool unprivileged)
    {
        CliResult result = ConfineCli.Run(["check", "--json"], unprivileged);
        Assert.True(result.ExitCode == 0, result.Stderr);
        using JsonDocument report = JsonDocument.Parse(result.Stdout);
        JsonElement root = report.RootElement;

        Assert.Equal(1, root.GetProperty("version").GetInt32());
        Assert.Equal(unprivileged ? ConfineCli.UnprivilegedId : 0, root.GetProperty("confine").GetProperty("uid").GetInt32());
        Assert.Equal(!unprivileged, root.GetProperty("confine").GetProperty("root").GetBoolean());
        Assert.True(root.GetProperty("confine").GetProperty("helper_usable").GetBoolean());

        JsonElement kernel = root.GetProperty("kernel");
        Assert.Equal(Shell("uname -r", unprivileged), kernel.GetProperty("release").GetString());
        Assert.Equal(Shell("uname -m", unprivileged), kernel.GetProperty("machine").GetString());

        // User namespaces work on this machine for both users (the rootless tests rely on it too).
        JsonElement userns = root.GetProperty("user_namespaces");
        Assert.True(userns.GetProperty("usable").GetBoolean(), userns.GetRawText());
        Assert.True(userns.GetProperty("trial").GetProperty("ok").GetBoolean());
        Assert.Equal(long.Parse(File.ReadAllText("/proc/sys/user/max_user_namespaces")), userns.GetProperty("max_user_namespaces").GetInt64());
        Assert.Equal(JsonValueKind.Null, userns.GetProperty("fix").ValueKind);

        AssertCgroups(root.GetProperty("cgroups"), unprivileged);

        JsonElement seccomp = root.GetProperty("seccomp");
        Assert.Equal(Shell("sed -n 's/^Seccomp:\\s*//p' /proc/self/status", unprivileged), seccomp.GetProperty("mode").GetInt32().ToString());
        string actions = File.ReadAllText("/proc/sys/kernel/seccomp/actions_avail").Trim();
        Assert.Equal(actions, string.Join(' ', seccomp.GetProperty("actions").EnumerateArray().Select(a => a.GetString())));
        Assert.Equal(actions.Split(' ').Contains("user_notif"), seccomp.GetProperty("user_notif").GetBoolean());

        // libseccomp's version is the one in the real file name behind the soname link.
        string library = Shell("readlink -f $(ldconfig -p | sed -n 's/.*libseccomp.so.2 .*=> //p' | head -n 1) 2>/dev/null", unprivileged);
        JsonElement libseccomp = root.GetProperty("libseccomp");
        Assert.Equal(library.Length > 0, libseccomp.GetProperty("loaded").GetBoolean());
        if (library.Length > 0)
        {
            Assert.EndsWith($".so.{libseccomp.GetProperty("version").GetString()}", library);
        }

        string abi = Shell("python3 -c 'import ctypes; print(ctypes.CDLL(None).syscall(444, None, 0, 1))'", unprivileged);
        JsonElement landlock = root.GetProperty("landlock").GetProperty("abi");
        Assert.Equal(abi, landlock.ValueKind == JsonValueKind.Null ? "-1" : landlock.GetInt32().ToString());

        JsonElement kvm = root.GetProperty("kvm");
        Assert.Equal(File.Exists("/dev/kvm"), kvm.GetProperty("present").GetBoolean());
        bool kvmUsable = Shell("test -r /dev/kvm -a -w /dev/kvm && echo yes || echo no", unprivileged) == "yes";
        Assert.Equal(kvmUsable, kvm.GetProperty("accessible").GetBoolean());

        foreach (JsonElement backend in root.GetProperty("backends").EnumerateArray())
        {
            string name = backend.GetProperty("name").GetString()!;
            string found = Shell($"PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin command -v {name} || true", unprivileged);
            Assert.Equal(found.Length > 0 ? found : null, backend.GetProperty("path").GetString());
        }

        AssertLevels(root, unprivileged);
    }

    /// <summary>The cgroup layout: version from the filesystem type, usability from whether this user may write there.</summary>
    private static void AssertCgroups(JsonElement cgroups, bool unprivileged)
    {
        string fsType = Shell("stat -fc %T /sys/fs/cgroup", unprivileged);
        string version = cgroups.GetProperty("version").GetString()!;
        Assert.Equal(fsType == "cgroup2fs", version == "v2");
        Assert.Contains(version, (string[])["v1", "hybrid", "v2"]);

        ImmutableArray<JsonElement> controllers = [.. cgroups.GetProperty("controllers").EnumerateArray()];
        Assert.Contains(controllers, c => c.GetProperty("name").GetString() == "memory");
        foreach (JsonElement controller in controllers.Where(c => c.GetProperty("mounted").GetBoolean()))
        {
            string? directory = controller.GetProperty("directory").GetString();
            Assert.NotNull(directory);
            Assert.True(Directory.Exists(directory), directory);
            bool writable = Shell($"test -w '{directory}' && echo yes || echo no", unprivileged) == "yes";
            if (version != "v2")
            {
                // A v1 hierarchy is usable exactly when this user may create a cgroup in Confine's own.
                Assert.Equal(writable, controller.GetProperty("usable").GetBoolean());
            }

            Assert.Equal(controller.GetProperty("usable").GetBoolean(), controller.GetProperty("problem").ValueKind == JsonValueKind.Null);
        }

        // Confine's own memory cgroup is the one /proc/self/cgroup names (Confine runs in the tests' cgroup).
        string ownMemory = File.ReadAllLines("/proc/self/cgroup").Single(l => l.Split(':')[1].Split(',').Contains("memory")).Split(':')[2];
        JsonElement memory = controllers.Single(c => c.GetProperty("name").GetString() == "memory");
        Assert.EndsWith(ownMemory.TrimEnd('/'), memory.GetProperty("directory").GetString());
        Assert.Equal(File.ReadAllLines("/proc/swaps").Length > 1, cgroups.GetProperty("swap_devices").GetBoolean());
    }

    /// <summary>
    /// As root every level runs here. uid 65534 cannot write this machine's cgroup v1 tree, so the
    /// levels that insist on limits are blocked on them and development runs with them weakened.
    /// </summary>
    private static void AssertLevels(JsonElement root, bool unprivileged)
    {
        Dictionary<string, JsonElement> levels = root.GetProperty("levels").EnumerateArray()
            .ToDictionary(l => l.GetProperty("level").GetString()!);
        Assert.Equal(["maximum", "balanced", "development"], levels.Keys);
        bool memoryUsable = root.GetProperty("cgroups").GetProperty("controllers").EnumerateArray()
            .Single(c => c.GetProperty("name").GetString() == "memory").GetProperty("usable").GetBoolean();
        Assert.Equal(!unprivileged, memoryUsable);

        foreach ((string name, JsonElement level) in levels)
        {
            JsonElement[] findings = [.. level.GetProperty("findings").EnumerateArray()];
            string status = level.GetProperty("status").GetString()!;
            if (!unprivileged)
            {
                Assert.True(status == "ready", level.GetRawText());
                Assert.Empty(findings);
                continue;
            }

            JsonElement memoryFinding = Assert.Single(findings, f => f.GetProperty("key").GetString() == "resources.memory");
            Assert.Contains("run Confine as root", memoryFinding.GetProperty("fix").GetString());
            Assert.Equal(name == "development" ? "weakened" : "blocked", status);
            Assert.Equal(name != "development", memoryFinding.GetProperty("blocks").GetBoolean());
        }
    }

    [Fact]
    public void Check_Text_NamesEveryLevelAndItsStatus()
    {
        CliResult result = ConfineCli.Run(["check"], unprivileged: true);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("level maximum     blocked", result.Stdout);
        Assert.Contains("level development runs, weakened", result.Stdout);
        Assert.Contains("fix: cgroup v1 cannot be safely delegated", result.Stdout);
        Assert.Contains($"kernel            {Shell("uname -r", false)}", result.Stdout);
    }

    private static HostReport Host(CgroupFacts cgroups, int? landlockAbi = 7, bool userNotif = true) => new()
    {
        Confine = new ConfineProcessFacts(1000, 1000, false, "/x/confine-helper", true, null),
        Kernel = new KernelFacts("6.8.0", "x86_64", "Ubuntu 24.04", null, false),
        UserNamespaces = new UserNamespaceFacts { Usable = true, Trial = new SandboxTrial(true, null, null, null) },
        Cgroups = cgroups,
        Seccomp = new SeccompFacts(true, 0, ["kill_process", "errno", "user_notif"], userNotif, true),
        Libseccomp = new LibseccompFacts(true, "2.5.5"),
        Landlock = new LandlockFacts(landlockAbi, landlockAbi is null ? "the kernel has no Landlock (ENOSYS)" : null),
        Kvm = new KvmFacts(false, false, null),
    };

    private static CgroupFacts Cgroups(bool usable) => new("v2",
        [.. ((string[])["memory", "pids", "cpu", "cpuset", "io"]).Select(n => new ControllerFacts(
            n, true, "/sys/fs/cgroup/user.slice", usable, usable ? null : "not delegated", usable ? null : "Delegate=yes"))],
        SwapAccounting: true, SwapDevices: true);

    [Fact]
    public void Assess_WithoutControllers_BlocksStrictLevelsAndWeakensDegradingOnes()
    {
        HostReport host = Host(Cgroups(usable: false));
        LevelReadiness balanced = HostCheck.Assess("balanced", IsolationLevels.Policy(IsolationLevel.Balanced), host);
        Assert.Equal(Readiness.Blocked, balanced.Status);
        Assert.Equal(["resources.memory", "resources.pids_limit"], balanced.Findings.Select(f => f.Key));
        Assert.All(balanced.Findings, f => Assert.Equal("Delegate=yes", f.Fix));

        LevelReadiness degraded = HostCheck.Assess(
            "balanced", IsolationLevels.Policy(IsolationLevel.Balanced) with { AllowDegrade = true }, host);
        Assert.Equal(Readiness.Weakened, degraded.Status);
        Assert.All(degraded.Findings, f => Assert.False(f.Blocks));

        // On v2 CPU time is counted in every cgroup; maximum still needs cpu for its bandwidth limit.
        LevelReadiness maximum = HostCheck.Assess("maximum", IsolationLevels.Policy(IsolationLevel.Maximum), host);
        Assert.Contains(maximum.Findings, f => f.Key == "resources.cpus");
    }

    [Fact]
    public void Assess_WithoutLandlockOrNotifications_NamesTheKernelToUse()
    {
        HostReport host = Host(Cgroups(usable: true), landlockAbi: null, userNotif: false);
        LevelReadiness maximum = HostCheck.Assess("maximum", IsolationLevels.Policy(IsolationLevel.Maximum), host);
        HostFinding landlock = Assert.Single(maximum.Findings);
        Assert.Equal(("landlock", true), (landlock.Key, landlock.Blocks));
        Assert.Contains("5.13", landlock.Fix);

        LevelReadiness development = HostCheck.Assess("development", IsolationLevels.Policy(IsolationLevel.Development), host);
        HostFinding record = Assert.Single(development.Findings);
        Assert.Equal(("on_violation", false), (record.Key, record.Blocks));
        Assert.Equal(Readiness.Weakened, development.Status);
    }

    [Fact]
    public void Assess_SwapWithoutAccounting_IsReportedOnlyWhenTheHostHasSwap()
    {
        CgroupFacts noAccounting = Cgroups(usable: true) with { SwapAccounting = false };
        SandboxPolicy balanced = IsolationLevels.Policy(IsolationLevel.Balanced);
        Assert.Contains(HostCheck.Assess("b", balanced, Host(noAccounting)).Findings, f => f.Key == "resources.memory_swap");
        Assert.Empty(HostCheck.Assess("b", balanced, Host(noAccounting with { SwapDevices = false })).Findings);
    }

    public static TheoryData<long?, int?, int?, bool, string> BlockedNamespaces => new()
    {
        { 0, null, null, true, "user.max_user_namespaces=15000" },
        { 1000, 0, null, false, "kernel.unprivileged_userns_clone=1" },
        { 1000, null, 1, false, "kernel.apparmor_restrict_unprivileged_userns=0" },
    };

    [Theory]
    [MemberData(nameof(BlockedNamespaces))]
    public void DiagnoseUserNamespaces_BlockingSysctl_NamesIt(long? max, int? clone, int? apparmor, bool root, string fix)
    {
        var facts = new UserNamespaceFacts
        {
            Usable = false,
            MaxUserNamespaces = max,
            UnprivilegedUsernsClone = clone,
            ApparmorRestrictUnprivilegedUserns = apparmor,
            Trial = new SandboxTrial(false, "clone", "EPERM", "clone failed"),
        };
        (string problem, string found) = HostCheck.DiagnoseUserNamespaces(facts, root, container: null, seccompMode: 0);
        Assert.Contains(fix, found);
        Assert.Contains("clone failed", problem);
    }

    [Fact]
    public void DiagnoseUserNamespaces_InsideFilteredContainer_NamesTheContainersProfile()
    {
        var facts = new UserNamespaceFacts { Usable = false, MaxUserNamespaces = 1000, Trial = new SandboxTrial(false, "clone", "EPERM", "x") };
        Assert.Contains("seccomp=unconfined", HostCheck.DiagnoseUserNamespaces(facts, true, "docker", 2).Fix);
        Assert.Contains("seccompProfile", HostCheck.DiagnoseUserNamespaces(facts, true, "kubernetes", 2).Fix);
    }

    [Fact]
    public void CgroupProbe_ReadsAUnifiedLayoutInsideACgroupNamespace()
    {
        List<CgroupProbe.CgroupMount> mounts = CgroupProbe.ReadMounts(
        [
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot",
            "30 23 0:27 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,cpu,cpuacct",
            "31 23 0:28 / /proc rw - proc proc rw",
        ]);
        Assert.Equal(2, mounts.Count);
        Assert.True(mounts[0].Unified);
        Assert.Equal("/sys/fs/cgroup/my dir", mounts[1].MountPoint);
        Assert.Equal(["cpu", "cpuacct"], mounts[1].Controllers.ToArray());

        Dictionary<string, string> paths = CgroupProbe.ReadOwnPaths(["1:name=systemd:/a", "2:cpuacct,cpu:/b", "0::/user.slice/app.scope"]);
        Assert.Equal("/user.slice/app.scope", paths[""]);
        Assert.Equal("/b", paths["cpu,cpuacct"]);
        Assert.Equal("/sys/fs/cgroup/user.slice/app.scope", CgroupProbe.OwnDirectory(mounts[0], paths[""]));

        // A mount that shows only part of the tree (a container's) hides cgroups outside it.
        var partial = mounts[0] with { Root = "/docker/abc" };
        Assert.Null(CgroupProbe.OwnDirectory(partial, "/user.slice"));
        Assert.Equal("/sys/fs/cgroup/x", CgroupProbe.OwnDirectory(partial, "/docker/abc/x"));
    }
}
