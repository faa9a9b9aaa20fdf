using System.CommandLine;
using System.Text;

namespace Confine.Cli;

/// <summary><c>confine check [--json]</c>: what this host can give a sandbox, and for each level whether it can run.</summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Print the report as JSON (docs/compatibility.md describes it)" };
        var check = new Command(
            "check", "Probe this host: namespaces, cgroups, seccomp, Landlock; say which levels can run and how to fix what is missing");
        check.Options.Add(json);
        check.SetAction(async (result, cancellationToken) =>
        {
            HostReport report = await HostCheck.RunAsync(cancellationToken);
            Console.Out.Write(result.GetValue(json) ? HostReportJson.Serialize(report) + "\n" : Render(report));
            return 0;
        });
        return check;
    }

    /// <summary>The report for a person: one line per fact, then each level with its findings and fixes.</summary>
    internal static string Render(HostReport report)
    {
        var text = new StringBuilder();
        ConfineProcessFacts process = report.Confine;
        KernelFacts kernel = report.Kernel;
        string helper = process.HelperUsable ? process.Helper : $"NOT usable: {process.HelperProblem}";
        Line(text, "confine", $"uid {process.Uid}{(process.Root ? " (root)" : "")}, helper {helper}");
        Line(text, "kernel", $"{kernel.Release} {kernel.Machine}" + (kernel.Distribution is null ? "" : $", {kernel.Distribution}")
            + (kernel.Container is null ? "" : $", inside {kernel.Container}") + (kernel.Wsl ? ", WSL" : ""));

        UserNamespaceFacts userns = report.UserNamespaces;
        string sysctls = string.Join(", ", new[]
        {
            userns.MaxUserNamespaces is long max ? $"user.max_user_namespaces={max}" : null,
            userns.UnprivilegedUsernsClone is int clone ? $"kernel.unprivileged_userns_clone={clone}" : null,
            userns.ApparmorRestrictUnprivilegedUserns is int apparmor ? $"kernel.apparmor_restrict_unprivileged_userns={apparmor}" : null,
        }.Where(s => s is not null));
        string usable = userns.Usable ? "usable (a trial sandbox ran)" : $"NOT usable: {userns.Problem}";
        Line(text, "namespaces", usable + (sysctls.Length > 0 ? $"; {sysctls}" : ""));
        if (userns.Fix is string usernsFix)
        {
            Line(text, "", $"fix: {usernsFix}");
        }

        CgroupFacts cgroups = report.Cgroups;
        Line(text, "cgroups", cgroups.Version + (cgroups.SwapAccounting is bool swap ? $", swap accounting {(swap ? "on" : "off")}" : "")
            + (cgroups.SwapDevices ? "" : ", no swap devices"));
        foreach (ControllerFacts controller in cgroups.Controllers)
        {
            Line(text, $"  {controller.Name}", controller.Usable ? $"usable in {controller.Directory}" : $"not usable: {controller.Problem}");
        }

        foreach (string fix in cgroups.Controllers.Select(c => c.Fix).OfType<string>().Distinct(StringComparer.Ordinal))
        {
            Line(text, "", $"fix: {fix}");
        }

        SeccompFacts seccomp = report.Seccomp;
        Line(text, "seccomp", (seccomp.Filters ? $"filters: {string.Join(' ', seccomp.Actions)}" : "no seccomp filters")
            + (seccomp.Mode is > 0 ? $"; Confine itself runs under seccomp mode {seccomp.Mode}" : ""));
        Line(text, "libseccomp", report.Libseccomp.Loaded ? $"libseccomp.so.2 {report.Libseccomp.Version}" : "libseccomp.so.2 not found");
        Line(text, "landlock", report.Landlock.Abi is int abi ? $"ABI {abi}" : $"not available: {report.Landlock.Problem}");
        Line(text, "kvm", !report.Kvm.Present ? "no /dev/kvm"
            : report.Kvm.Accessible ? "/dev/kvm opens (whether a guest boots is not tried)"
            : $"/dev/kvm present but {report.Kvm.Problem}");
        Line(text, "backends", string.Join(", ", report.Backends.Select(b => b.Path is null ? $"{b.Name} -" : $"{b.Name} {b.Path}")));

        text.Append('\n');
        foreach (LevelReadiness level in report.Levels)
        {
            string status = level.Status switch
            {
                Readiness.Ready => "ready",
                Readiness.Weakened => "runs, weakened",
                _ => "blocked",
            };
            Line(text, $"level {level.Level}", status);
            foreach (HostFinding finding in level.Findings)
            {
                Line(text, "", $"{(finding.Blocks ? "blocks" : "weakened")}: {finding.Problem}");
            }

            foreach (string fix in level.Findings.Select(f => f.Fix).Distinct(StringComparer.Ordinal))
            {
                Line(text, "", $"fix: {fix}");
            }
        }

        // Degrading helps only where what blocks is a protection the run can go without, not the sandbox itself.
        if (report.Levels.Any(l => l.Status == Readiness.Blocked && l.Findings.All(f => !f.Blocks || f.Key is not ("helper" or "namespaces"))))
        {
            text.Append("\n--allow-degrade runs a blocked level anyway with what this host can give; the verdict lists what was weakened.\n");
        }

        return text.ToString();
    }

    private static void Line(StringBuilder text, string label, string value) => text.Append($"{label,-18}{value}\n");
}
