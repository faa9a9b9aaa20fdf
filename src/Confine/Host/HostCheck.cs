using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Confine.Host;
using Confine.Native;
using Confine.Running;

namespace Confine;

/// <summary>
/// Probes what this host can give a sandbox (<c>confine check</c>) and says, for each level,
/// whether it can run and what to change when it cannot. Every probe either reads what the kernel
/// reports or tries the thing itself in a way that leaves nothing behind: a real sandbox is started
/// (which creates a user namespace in a child process), and a cgroup is created and removed beneath
/// Confine's own. Works as root and as an ordinary user.
/// </summary>
public static class HostCheck
{
    /// <summary>The other tools looked for; only their presence is reported.</summary>
    private static readonly string[] s_backends = ["runc", "crun", "runsc", "docker", "qemu-system-x86_64", "bwrap"];

    /// <summary>Runs every probe and assesses each level.</summary>
    public static async Task<HostReport> RunAsync(CancellationToken cancellationToken = default)
    {
        ConfineProcessFacts process = ProbeProcess();
        KernelFacts kernel = ProbeKernel();
        SeccompFacts seccomp = ProbeSeccomp();
        SandboxTrial trial = await TrialAsync(process, cancellationToken).ConfigureAwait(false);
        var report = new HostReport
        {
            Confine = process,
            Kernel = kernel,
            UserNamespaces = ProbeUserNamespaces(process, kernel, seccomp, trial),
            Cgroups = CgroupProbe.Probe(process.Root),
            Seccomp = seccomp,
            Libseccomp = ProbeLibseccomp(),
            Landlock = ProbeLandlock(),
            Kvm = ProbeKvm(),
            Backends = [.. s_backends.Select(name => new BackendFacts(name, FindProgram(name)))],
        };

        return report with
        {
            Levels = [.. IsolationLevels.All.Select(l => Assess(IsolationLevels.Name(l), IsolationLevels.Policy(l), report))],
        };
    }

    /// <summary>
    /// Whether <paramref name="policy"/> can run on the host <paramref name="host"/> describes: each
    /// protection it asks for that the host lacks is a finding, which blocks the run unless the
    /// policy allows degrading (<see cref="SandboxPolicy.AllowDegrade"/>, and for cgroup limits also
    /// <see cref="ResourceLimits.AllowUnenforced"/>).
    /// </summary>
    public static LevelReadiness Assess(string name, SandboxPolicy policy, HostReport host)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(host);
        var findings = ImmutableArray.CreateBuilder<HostFinding>();
        bool degrade = policy.AllowDegrade;

        if (!host.Confine.HelperUsable)
        {
            findings.Add(new HostFinding("helper", true, host.Confine.HelperProblem ?? "the helper cannot be started",
                "confine-helper must sit beside Confine.dll and be executable: rebuild or reinstall Confine"));
        }
        else if (!host.UserNamespaces.Usable)
        {
            findings.Add(new HostFinding("namespaces", true, host.UserNamespaces.Problem ?? "no sandbox could be started",
                host.UserNamespaces.Fix ?? "see docs/compatibility.md"));
        }

        AssessResources(policy, host.Cgroups, degrade || policy.Resources.AllowUnenforced, findings);

        if (!host.Seccomp.Filters)
        {
            findings.Add(new HostFinding("seccomp_profile", !degrade, "the kernel has no seccomp filters",
                "use a kernel built with CONFIG_SECCOMP_FILTER=y (every mainstream distribution's is)"));
        }
        else
        {
            if (!host.Libseccomp.Loaded)
            {
                findings.Add(new HostFinding("seccomp_profile", !degrade, "libseccomp.so.2 cannot be loaded; it compiles the seccomp profile",
                    "install libseccomp: apt-get install libseccomp2 (Debian, Ubuntu), dnf install libseccomp (Fedora, RHEL), " +
                    "apk add libseccomp (Alpine)"));
            }

            if (policy.OnViolation == ViolationAction.Record && !host.Seccomp.UserNotif)
            {
                findings.Add(new HostFinding("on_violation", !degrade,
                    "the kernel cannot notify Confine of a refused call (no SECCOMP_RET_USER_NOTIF), so violations cannot be recorded",
                    "use Linux 5.0 or later"));
            }

            if (policy.OnViolation == ViolationAction.Kill && !host.Seccomp.KillProcess)
            {
                findings.Add(new HostFinding("on_violation", !degrade,
                    "the kernel cannot kill a whole process from seccomp (no SECCOMP_RET_KILL_PROCESS)", "use Linux 4.14 or later"));
            }
        }

        if (policy.Landlock && host.Landlock.Abi is null)
        {
            string problem = host.Landlock.Problem ?? "Landlock is not available";
            findings.Add(new HostFinding("landlock", !degrade, problem, LandlockFix(host.Landlock)));
        }

        Readiness status = findings.Any(f => f.Blocks) ? Readiness.Blocked
            : findings.Count > 0 ? Readiness.Weakened
            : Readiness.Ready;
        return new LevelReadiness(name, status, findings.ToImmutable());
    }

    private static void AssessResources(
        SandboxPolicy policy, CgroupFacts cgroups, bool allowUnenforced, ImmutableArray<HostFinding>.Builder findings)
    {
        ResourceLimits limits = policy.Resources;
        bool v2 = cgroups.Version == "v2";
        var needs = new List<(string Key, string Controller)>();
        if (limits.MemoryBytes is not null || limits.MemorySwapBytes is not null)
        {
            needs.Add((limits.MemoryBytes is not null ? "resources.memory" : "resources.memory_swap", "memory"));
        }

        if (limits.Cpus is not null)
        {
            needs.Add(("resources.cpus", "cpu"));
        }

        if (limits.CpuTime is not null)
        {
            // v2 counts CPU time in every cgroup (cpu.stat); v1 needs the cpuacct controller.
            needs.Add(("resources.cpu_time", v2 ? "" : "cpuacct"));
        }

        if (limits.CpusetCpus is not null)
        {
            needs.Add(("resources.cpuset_cpus", "cpuset"));
        }

        if (limits.PidsLimit is not null)
        {
            needs.Add(("resources.pids_limit", "pids"));
        }

        // The level's "writable" limit asks for nothing until a writable bind gives it a disk.
        if (limits.DeviceIo.Any(d => d.Device != DeviceIoLimit.Writable || policy.Binds.Any(b => b.Writable)))
        {
            needs.Add(("resources.device_io", v2 ? "io" : "blkio"));
        }

        foreach ((string key, string controller) in needs)
        {
            ControllerFacts? facts = controller.Length == 0
                ? cgroups.Controllers.FirstOrDefault(c => c.Usable) ?? cgroups.Controllers.FirstOrDefault()
                : cgroups.Controllers.FirstOrDefault(c => c.Name == controller);
            if (facts is { Usable: true })
            {
                continue;
            }

            string what = controller.Length == 0 ? "a cgroup" : $"the {controller} controller";
            string problem = facts?.Problem ?? (cgroups.Version == "none" ? "no cgroup filesystem is mounted" : $"{what} is not available");
            string fix = facts?.Fix ?? "mount a cgroup filesystem (systemd does at boot): mount -t cgroup2 none /sys/fs/cgroup";
            findings.Add(new HostFinding(key, !allowUnenforced, $"{key} needs {what}: {problem}", fix));
        }

        bool wantsSwapLimit = limits.MemoryBytes is not null && limits.MemorySwapBytes is not -1;
        if (wantsSwapLimit && cgroups.SwapAccounting == false && cgroups.SwapDevices)
        {
            findings.Add(new HostFinding("resources.memory_swap", !allowUnenforced,
                "swap accounting is off, so the sandbox can use swap beyond its memory limit",
                v2 ? "boot without swapaccount=0 (cgroup v2 accounts swap unless told not to)"
                   : "boot with swapaccount=1 on the kernel command line, or turn swap off (swapoff -a)"));
        }
    }

    private static string LandlockFix(LandlockFacts landlock) => landlock.Problem switch
    {
        string p when p.Contains("EOPNOTSUPP", StringComparison.Ordinal) =>
            "Landlock is built in but not enabled: add landlock to the lsm= boot parameter " +
            "(e.g. lsm=landlock,lockdown,yama,apparmor,bpf) and reboot",
        string p when p.Contains("EPERM", StringComparison.Ordinal) =>
            "the seccomp filter Confine runs under (a container's) refuses landlock_create_ruleset: allow it in the container's profile",
        _ => "use Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK=y, with landlock in the lsm= boot parameter",
    };

    private static ConfineProcessFacts ProbeProcess()
    {
        uint uid = Interop.geteuid();
        bool helperUsable = HelperProcess.IsAvailable(out string problem);
        return new ConfineProcessFacts(uid, Interop.getegid(), uid == 0, HelperProcess.Path, helperUsable, helperUsable ? null : problem);
    }

    private static KernelFacts ProbeKernel()
    {
        string release = ReadLine("/proc/sys/kernel/osrelease") ?? Environment.OSVersion.Version.ToString();
        string machine = ReadLine("/proc/sys/kernel/arch") ?? RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant();
        string? distribution = null;
        foreach (string line in ReadLines("/etc/os-release"))
        {
            if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
            {
                distribution = line["PRETTY_NAME=".Length..].Trim('"');
            }
        }

        bool wsl = release.Contains("microsoft", StringComparison.OrdinalIgnoreCase) || File.Exists("/proc/sys/fs/binfmt_misc/WSLInterop");
        return new KernelFacts(release, machine, distribution, DetectContainer(), wsl);
    }

    /// <summary>Recognises the usual container runtimes by the marks they leave; null when none is seen.</summary>
    private static string? DetectContainer()
    {
        if (Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST") is not null
            || Directory.Exists("/var/run/secrets/kubernetes.io"))
        {
            return "kubernetes";
        }

        if (File.Exists("/.dockerenv"))
        {
            return "docker";
        }

        if (File.Exists("/run/.containerenv"))
        {
            return "podman";
        }

        // systemd-nspawn, LXC and others set $container in PID 1's environment, which systemd copies here.
        // A runtime that leaves none of these marks is reported as no container.
        return ReadLine("/run/systemd/container");
    }

    /// <summary>
    /// Starts one real sandbox with every namespace and nothing that needs more than namespaces:
    /// the most permissive seccomp profile, no cgroup, no Landlock, degrading allowed.
    /// </summary>
    private static async Task<SandboxTrial> TrialAsync(ConfineProcessFacts process, CancellationToken cancellationToken)
    {
        if (!process.HelperUsable)
        {
            return new SandboxTrial(false, "spawn_helper", null, process.HelperProblem);
        }

        SandboxPolicy policy = SandboxPolicy.Default with
        {
            SeccompProfile = "permissive",
            Landlock = false,
            AllowDegrade = true,
            Resources = ResourceLimits.None,
            Timeout = TimeSpan.FromSeconds(10),
        };
        Verdict verdict = await Sandbox.RunAsync(policy, ["true"], cancellationToken: cancellationToken).ConfigureAwait(false);
        return verdict.Status == VerdictStatus.Ok
            ? new SandboxTrial(true, null, null, null)
            : new SandboxTrial(false, verdict.Error?.Step, verdict.Error?.ErrnoName,
                verdict.Error?.Message ?? $"the trial ended as {verdict.Status}");
    }

    private static UserNamespaceFacts ProbeUserNamespaces(
        ConfineProcessFacts process, KernelFacts kernel, SeccompFacts seccomp, SandboxTrial trial)
    {
        var facts = new UserNamespaceFacts
        {
            Usable = trial.Ok,
            MaxUserNamespaces = ReadNumber("/proc/sys/user/max_user_namespaces"),
            UnprivilegedUsernsClone = (int?)ReadNumber("/proc/sys/kernel/unprivileged_userns_clone"),
            ApparmorRestrictUnprivilegedUserns = (int?)ReadNumber("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            Trial = trial,
        };

        if (trial.Ok)
        {
            return facts;
        }

        (string problem, string fix) = DiagnoseUserNamespaces(facts, process.Root, kernel.Container, seccomp.Mode);
        return facts with { Problem = problem, Fix = fix };
    }

    /// <summary>
    /// Names the likely reason a sandbox could not start, from the sysctls that gate user namespaces,
    /// in the order the kernel applies them, and the change that lifts it.
    /// </summary>
    internal static (string Problem, string Fix) DiagnoseUserNamespaces(
        UserNamespaceFacts facts, bool root, string? container, int? seccompMode)
    {
        string failed = facts.Trial.Message ?? $"the trial sandbox failed at {facts.Trial.Step}";
        if (facts.MaxUserNamespaces == 0)
        {
            return ($"user namespaces are switched off (user.max_user_namespaces = 0): {failed}",
                "sysctl -w user.max_user_namespaces=15000, and the same line in /etc/sysctl.d/90-confine.conf to keep it");
        }

        if (!root && facts.UnprivilegedUsernsClone == 0)
        {
            return ($"ordinary users may not create user namespaces (kernel.unprivileged_userns_clone = 0): {failed}",
                "sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d/ to keep it), or run Confine as root");
        }

        if (!root && facts.ApparmorRestrictUnprivilegedUserns == 1)
        {
            return ("AppArmor gives an ordinary user's user namespaces no capabilities " +
                $"(kernel.apparmor_restrict_unprivileged_userns = 1): {failed}",
                "load an AppArmor profile that lets confine-helper create user namespaces (docs/compatibility.md " +
                "shows it), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 to lift the restriction for every program");
        }

        if (container is not null && seccompMode == 2)
        {
            return ($"the container's seccomp filter likely refuses the namespace calls: {failed}",
                container == "kubernetes"
                    ? "run the pod with securityContext.seccompProfile.type: Unconfined (or a profile allowing clone, unshare, " +
                      "mount, pivot_root), procMount: Unmasked and, with AppArmor, appArmorProfile.type: Unconfined"
                    : "start the container with --security-opt seccomp=unconfined --security-opt apparmor=unconfined " +
                      "--security-opt systempaths=unconfined (or profiles that allow clone, unshare, mount and pivot_root)");
        }

        if (container is not null)
        {
            return ($"the container does not let Confine create namespaces: {failed}",
                "let the container create namespaces and mount a fresh /proc (Docker: --security-opt apparmor=unconfined " +
                "--security-opt systempaths=unconfined; Kubernetes: procMount: Unmasked), or run Confine on the host");
        }

        return (failed, "see the step and errno above; docs/compatibility.md lists the usual causes");
    }

    private static SeccompFacts ProbeSeccomp()
    {
        (int? mode, _) = HostInterop.SeccompMode();
        string[] actions = ReadLine("/proc/sys/kernel/seccomp/actions_avail")?.Split(' ', StringSplitOptions.RemoveEmptyEntries) ?? [];
        // actions_avail exists exactly when the kernel has seccomp filters.
        bool filters = mode is not null && File.Exists("/proc/sys/kernel/seccomp/actions_avail");
        return new SeccompFacts(filters, mode, [.. actions], actions.Contains("user_notif"), actions.Contains("kill_process"));
    }

    private static LibseccompFacts ProbeLibseccomp()
    {
        (bool loaded, string? version) = HostInterop.Libseccomp();
        return new LibseccompFacts(loaded, version);
    }

    private static LandlockFacts ProbeLandlock()
    {
        (int? abi, int errno) = HostInterop.LandlockAbi();
        if (abi is not null)
        {
            return new LandlockFacts(abi, null);
        }

        string problem = errno switch
        {
            HostInterop.ENOSYS => "the kernel has no Landlock (ENOSYS)",
            HostInterop.EOPNOTSUPP => "Landlock is built in but disabled at boot (EOPNOTSUPP)",
            _ => $"landlock_create_ruleset failed: {Posix.StrError(errno)} ({Errno.Name(errno)})",
        };
        return new LandlockFacts(null, problem);
    }

    private static KvmFacts ProbeKvm()
    {
        const string Device = "/dev/kvm";
        if (!File.Exists(Device))
        {
            return new KvmFacts(false, false, null);
        }

        try
        {
            using Microsoft.Win32.SafeHandles.SafeFileHandle handle = Posix.Open(Device, Interop.O_RDWR);
            return new KvmFacts(true, true, null);
        }
        catch (ErrnoException e)
        {
            return new KvmFacts(true, false, e.Message);
        }
    }

    /// <summary>Looks a program up in PATH and in the sbin directories an ordinary user's PATH often lacks.</summary>
    internal static string? FindProgram(string name)
    {
        IEnumerable<string> directories = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
            .Where(d => d.StartsWith('/'))
            .Distinct(StringComparer.Ordinal);
        foreach (string directory in directories)
        {
            string candidate = Path.Combine(directory, name);
            const UnixFileMode Executable = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
            if (File.Exists(candidate) && (File.GetUnixFileMode(candidate) & Executable) != 0)
            {
                return candidate;
            }
        }

        return null;
    }

    private static string? ReadLine(string path) => ReadLines(path).FirstOrDefault()?.Trim();

    private static IEnumerable<string> ReadLines(string path)
    {
        try
        {
            return File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    private static long? ReadNumber(string path) => long.TryParse(ReadLine(path), out long value) ? value : null;
}
