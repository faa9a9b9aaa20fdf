using System.Collections.Immutable;
using Confine.Seccomp;

namespace Confine.Tests.Seccomp;

public sealed class SeccompProfileJsonTests
{
    [Theory]
    [InlineData("default")]
    [InlineData("strict")]
    [InlineData("permissive")]
    public void Serialize_BuiltinProfile_ParsesBackEqual(string name)
    {
        SeccompProfile profile = SeccompProfile.Builtin(name)!;

        SeccompProfile parsed = SeccompProfileJson.Parse(SeccompProfileJson.Serialize(profile));

        Assert.Equal(profile, parsed);
        Assert.Equal(SeccompCompiler.Compile(profile), SeccompCompiler.Compile(parsed));
    }

    [Fact]
    public void Serialize_ProfileWithEveryActionAndComparison_ParsesBackEqual()
    {
        SeccompProfile profile = new()
        {
            Name = "everything",
            DefaultAction = SeccompAction.KillProcess,
            DangerousAction = SeccompAction.Errno(13),
            ForeignArchitectureAction = SeccompAction.KillProcess,
            Syscalls =
            [
                new SyscallRule("read", SeccompAction.Allow),
                new SyscallRule("write", SeccompAction.Allow),
                new SyscallRule("openat", SeccompAction.Record),
                new SyscallRule("mmap", SeccompAction.Allow, new ArgumentCondition(2, SeccompComparison.Less, 4)),
                new SyscallRule("mmap", SeccompAction.Errno(1), new ArgumentCondition(2, SeccompComparison.GreaterOrEqual, 4)),
                new SyscallRule("lseek", SeccompAction.Allow, new ArgumentCondition(2, SeccompComparison.LessOrEqual, 2)),
                new SyscallRule("dup3", SeccompAction.Allow, new ArgumentCondition(2, SeccompComparison.NotEqual, 0)),
                new SyscallRule("kill", SeccompAction.Allow, new ArgumentCondition(1, SeccompComparison.Greater, 0)),
                new SyscallRule(
                    "fcntl", SeccompAction.Allow, ArgumentCondition.Equal(1, 1), ArgumentCondition.MaskedEqual(2, 0xff00, 0x100)),
            ],
        };

        string json = SeccompProfileJson.Serialize(profile);
        SeccompProfile parsed = SeccompProfileJson.Parse(json);

        Assert.Equal(profile, parsed);
        Assert.Contains("\"names\"", json); // read and write share one entry
    }

    [Fact]
    public void Parse_SymbolicValuesAndBase_ResolveToNumbersAndReplaceBaseRules()
    {
        const string json = """
            {
              "base": "default",
              "name": "mine",
              "syscalls": [
                { "name": "chmod", "action": "errno:EACCES" },
                { "name": "socket", "args": [ { "arg": 0, "op": "eq", "value": "AF_UNIX" } ] },
                { "names": ["mbind", "get_mempolicy"] },
                { "name": "clone", "args": [ { "arg": 0, "op": "masked_eq", "mask": "CLONE_NEWUSER|CLONE_NEWNET", "value": 0 } ] }
              ]
            }
            """;

        SeccompProfile profile = SeccompProfileJson.Parse(json);

        Assert.Equal("mine", profile.Name);
        Assert.Equal(SeccompAction.Errno(13), Assert.Single(profile.Syscalls, r => r.Name == "chmod").Action);
        SyscallRule socket = Assert.Single(profile.Syscalls, r => r.Name == "socket");
        Assert.Equal(ArgumentCondition.Equal(0, 1), Assert.Single(socket.Conditions));
        SyscallRule clone = Assert.Single(profile.Syscalls, r => r.Name == "clone");
        Assert.Equal(ArgumentCondition.MaskedEqual(0, 0x50000000, 0), Assert.Single(clone.Conditions));
        Assert.Contains(profile.Syscalls, r => r.Name == "mbind" && r.Action == SeccompAction.Allow);
        Assert.Contains(profile.Syscalls, r => r.Name == "read"); // the rest of the base is kept
        SeccompCompiler.Compile(profile);
    }

    [Fact]
    public void Parse_ExampleInDocs_ParsesAndCompiles()
    {
        string docs = File.ReadAllText(Path.Combine(SeccompCompilerTests.RepositoryRoot(), "docs", "seccomp.md"));
        int start = docs.IndexOf("```json\n", StringComparison.Ordinal) + "```json\n".Length;
        string json = docs[start..docs.IndexOf("```", start, StringComparison.Ordinal)];

        SeccompProfile profile = SeccompProfileJson.Parse(json);

        Assert.Equal("builds", profile.Name);
        Assert.Equal(SeccompAction.KillProcess, profile.EffectiveForeignArchitectureAction);
        Assert.Contains(profile.Syscalls, r => r.Name == "ioctl" && r.Action == SeccompAction.Errno(25));
        Assert.True(SeccompCompiler.InstructionCount(SeccompCompiler.Compile(profile)) > 0);
    }

    [Theory]
    [InlineData("""{ "syscalls": [ { "name": "read" }, { "name": "write" }, { "name": "close" }, { "name": "foo" } ] }""",
        "syscalls[3].name", "unknown syscall 'foo'")]
    [InlineData("""{ "syscalls": [ { "names": ["read", "chown32"] } ] }""", "syscalls[0].names[1]", "'chown32' is not an x86_64 syscall")]
    [InlineData("""{ "syscalls": [ { "name": "read", "action": "maybe" } ] }""", "syscalls[0].action", "unknown action 'maybe'")]
    [InlineData("""{ "syscalls": [ { "name": "read", "nmae": 1 } ] }""", "syscalls[0].nmae", "unknown key")]
    [InlineData("""{ "sycalls": [] }""", "sycalls", "unknown key")]
    [InlineData("""{ "syscalls": [ { } ] }""", "syscalls[0]", "needs 'name' or a non-empty 'names'")]
    [InlineData("""{ "syscalls": [ { "name": "read", "names": ["write"] } ] }""", "syscalls[0]", "has both 'name' and 'names'")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 0, "op": "eq", "value": "AF_NOPE" } ] } ] }""",
        "syscalls[0].args[0].value", "unknown constant 'AF_NOPE'")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 0, "op": "near", "value": 1 } ] } ] }""",
        "syscalls[0].args[0].op", "unknown comparison 'near'")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 6, "op": "eq", "value": 1 } ] } ] }""",
        "syscalls[0].args[0].arg", "argument 6 does not exist")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 0, "op": "masked_eq", "value": 1 } ] } ] }""",
        "syscalls[0].args[0].mask", "is required with masked_eq")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 0, "op": "masked_eq", "mask": 1, "value": 2 } ] } ] }""",
        "syscalls[0].args[0]", "never holds")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": 0, "op": "eq", "value": 1 }, { "arg": 0, "op": "eq", "value": 2 } ] } ] }""",
        "syscalls[0].args[1]", "argument 0 is already tested")]
    [InlineData("""{ "syscalls": [ { "name": "read", "args": [ { "arg": "zero", "op": "eq", "value": 1 } ] } ] }""",
        "syscalls[0].args[0].arg", "malformed or of the wrong type")]
    [InlineData("""{ "syscalls": [ { "name": "ioctl" }, { "name": "ioctl", "action": "errno" } ] }""",
        "syscalls[1]", "already has a rule at syscalls[0] with another action")]
    [InlineData("""{ "syscalls": [ { "name": "kill", "args": [ { "arg": 1, "op": "gt", "value": 0 } ] }, { "name": "kill", "action": "kill", "args": [ { "arg": 1, "op": "eq", "value": 9 } ] } ] }""",
        "syscalls[1]", "overlaps the rule at syscalls[0]")]
    [InlineData("""{ "syscalls": [ { "name": "execve", "action": "errno" } ] }""", "syscalls[0]", "'execve' must be allowed")]
    [InlineData("""{ "dangerous_action": "allow" }""", "dangerous_action", "must refuse")]
    [InlineData("""{ "base": "lax" }""", "base", "unknown built-in profile 'lax'")]
    [InlineData("""{ "version": 2 }""", "version", "version 2 is not known")]
    [InlineData("""{ "syscalls": [ { "name": "read" }, ] """, "profile", "malformed")]
    public void Parse_MalformedProfile_NamesTheKeyPath(string json, string path, string reason)
    {
        PolicyException error = Assert.Throws<PolicyException>(() => SeccompProfileJson.Parse(json));

        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Reason);
        Assert.StartsWith($"{path}: ", error.Message);
    }

    [Fact]
    public void ParseDocker_ProfileInDockerShape_KeepsWhatAppliesAndSaysWhatItDropped()
    {
        // A profile written in the shape of Docker's default: an allowlist, a clone rule that masks the
        // namespace flags, socket without AF_VSOCK, rules that need capabilities or other architectures.
        const string json = """
            {
              "defaultAction": "SCMP_ACT_ERRNO",
              "defaultErrnoRet": 1,
              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
              "syscalls": [
                { "names": ["read", "write", "exit_group", "execve", "chown32", "no_such_call"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": { "minKernel": "4.8" } },
                { "names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [ { "index": 0, "value": 40, "op": "SCMP_CMP_NE" } ] },
                { "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [ { "index": 0, "value": 0, "op": "SCMP_CMP_EQ" } ] },
                { "names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [ { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" } ] },
                { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
                { "names": ["mount", "unshare"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
                { "names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["arm", "arm64"] } },
                { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64", "x32"] }, "comment": "x86 only" }
              ],
              "archMap": []
            }
            """;

        SeccompProfile profile = SeccompProfileJson.ParseDocker(json, out ImmutableArray<string> notes);

        Assert.Equal(SeccompAction.Eperm, profile.DefaultAction);
        string[] names = [.. profile.Syscalls.Select(r => r.Name).Distinct()];
        Assert.Equal(["read", "write", "exit_group", "execve", "ptrace", "socket", "personality", "clone", "clone3", "arch_prctl"], names);
        Assert.Equal(SeccompAction.Enosys, Assert.Single(profile.Syscalls, r => r.Name == "clone3").Action);
        Assert.Equal(
            ArgumentCondition.MaskedEqual(0, 2114060288, 0),
            Assert.Single(Assert.Single(profile.Syscalls, r => r.Name == "clone").Conditions));
        Assert.Contains(notes, n => n.StartsWith("syscalls[0].names[4]: 'chown32'", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.StartsWith("syscalls[0].names[5]: 'no_such_call'", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.StartsWith("syscalls[6]: needs CAP_SYS_ADMIN", StringComparison.Ordinal));
        Assert.Contains(notes, n => n.StartsWith("architectures:", StringComparison.Ordinal));

        byte[] program = SeccompCompiler.Compile(profile);
        Assert.True(SeccompCompiler.InstructionCount(program) > 0);
    }

    [Theory]
    [InlineData("""{ "syscalls": [] }""", "defaultAction", "is required")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_MAYBE" }""", "defaultAction", "unknown action")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ { "names": ["read"] } ] }""", "syscalls[0].action", "is required")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ { "names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [ { "index": 0, "value": 1, "op": "SCMP_CMP_ABOUT" } ] } ] }""",
        "syscalls[0].args[0].op", "unknown comparison")]
    public void ParseDocker_MalformedProfile_NamesTheKeyPath(string json, string path, string reason)
    {
        PolicyException error = Assert.Throws<PolicyException>(() => SeccompProfileJson.ParseDocker(json, out _));

        Assert.Equal(path, error.Path);
        Assert.Contains(reason, error.Reason);
    }
}
