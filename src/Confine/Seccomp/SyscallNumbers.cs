namespace Confine.Seccomp;

/// <summary>x86_64 syscall names and numbers, from libseccomp's table and a few calls newer than it.</summary>
internal static class SyscallNumbers
{
    /// <summary>
    /// Calls added to Linux after the libseccomp 2.5.4 table was frozen (it stops at futex_requeue, 456).
    /// Numbers from 424 on are shared by every architecture but alpha (asm-generic's unified table), so
    /// these are the x86_64 numbers of arch/x86/entry/syscalls/syscall_64.tbl.
    /// </summary>
    private static readonly Dictionary<string, int> s_newer = new(StringComparer.Ordinal)
    {
        ["statmount"] = 457,
        ["listmount"] = 458,
        ["lsm_get_self_attr"] = 459,
        ["lsm_set_self_attr"] = 460,
        ["lsm_list_modules"] = 461,
        ["mseal"] = 462,
        ["setxattrat"] = 463,
        ["getxattrat"] = 464,
        ["listxattrat"] = 465,
        ["removexattrat"] = 466,
        ["open_tree_attr"] = 467,
        ["file_getattr"] = 468,
        ["file_setattr"] = 469,
    };

    /// <summary>What a name stands for on x86_64.</summary>
    internal enum Kind
    {
        /// <summary>An x86_64 syscall; the number is valid.</summary>
        Native,

        /// <summary>A syscall of other architectures only (<c>socketcall</c>, <c>chown32</c>, <c>vm86</c>).</summary>
        OtherArchitecture,

        /// <summary>A name neither libseccomp nor this table knows.</summary>
        Unknown,
    }

    /// <summary>Looks up <paramref name="name"/>; <paramref name="number"/> is set for a native call.</summary>
    internal static Kind Resolve(string name, out int number)
    {
        int resolved = SeccompInterop.ResolveSyscall(name);
        if (resolved >= 0)
        {
            number = resolved;
            return Kind.Native;
        }

        if (s_newer.TryGetValue(name, out number))
        {
            return Kind.Native;
        }

        // libseccomp numbers a call that this architecture lacks with a pseudo number below -1.
        number = -1;
        return resolved < SeccompInterop.__NR_SCMP_ERROR ? Kind.OtherArchitecture : Kind.Unknown;
    }

    /// <summary>The name of x86_64 call <paramref name="number"/>, or null.</summary>
    internal static string? Name(int number)
    {
        string? name = SeccompInterop.SyscallName(SeccompInterop.SCMP_ARCH_X86_64, number);
        if (name is not null)
        {
            return name;
        }

        foreach ((string newer, int n) in s_newer)
        {
            if (n == number)
            {
                return newer;
            }
        }

        return null;
    }
}
