using System.Runtime.InteropServices;
using Confine.Native;

namespace Confine.Seccomp;

/// <summary>
/// The calls the seccomp layer makes into libseccomp and libc, declared in one place. The raw
/// declarations are private; callers use the checked wrappers, which turn a failure into an exception
/// that carries the errno. This file holds libseccomp; <c>SeccompInterop.Kernel.cs</c> the libc calls
/// the notifier needs.
/// </summary>
/// <remarks>
/// libseccomp is the system's <c>libseccomp.so.2</c>; no development package is needed. Its constants
/// are copied from <c>seccomp.h</c> of 2.5.4 and checked against that header by a test that compiles a
/// small C program (<c>SeccompConstantsTests</c>).
/// </remarks>
internal static unsafe partial class SeccompInterop
{
    internal const string LibSeccomp = "libseccomp.so.2";

    // Filter actions (seccomp.h). SCMP_ACT_ERRNO(x) is SCMP_ACT_ERRNO_BASE | (x & 0xffff).
    internal const uint SCMP_ACT_KILL_PROCESS = 0x80000000;
    internal const uint SCMP_ACT_KILL_THREAD = 0x00000000;
    internal const uint SCMP_ACT_TRAP = 0x00030000;
    internal const uint SCMP_ACT_NOTIFY = 0x7fc00000;
    internal const uint SCMP_ACT_ERRNO_BASE = 0x00050000;
    internal const uint SCMP_ACT_LOG = 0x7ffc0000;
    internal const uint SCMP_ACT_ALLOW = 0x7fff0000;

    // enum scmp_filter_attr
    internal const int SCMP_FLTATR_ACT_DEFAULT = 1;
    internal const int SCMP_FLTATR_ACT_BADARCH = 2;
    internal const int SCMP_FLTATR_CTL_NNP = 3;
    internal const int SCMP_FLTATR_CTL_TSYNC = 4;
    internal const int SCMP_FLTATR_CTL_OPTIMIZE = 8;

    // enum scmp_compare
    internal const int SCMP_CMP_NE = 1;
    internal const int SCMP_CMP_LT = 2;
    internal const int SCMP_CMP_LE = 3;
    internal const int SCMP_CMP_EQ = 4;
    internal const int SCMP_CMP_GE = 5;
    internal const int SCMP_CMP_GT = 6;
    internal const int SCMP_CMP_MASKED_EQ = 7;

    // Architecture tokens: AUDIT_ARCH_* values from linux/audit.h, which libseccomp reuses.
    internal const uint SCMP_ARCH_NATIVE = 0;
    internal const uint SCMP_ARCH_X86_64 = 0xC000003E;
    internal const uint SCMP_ARCH_X86 = 0x40000003;
    internal const uint SCMP_ARCH_X32 = 0x4000003E;

    /// <summary>What <c>seccomp_syscall_resolve_name</c> returns for a name it does not know.</summary>
    internal const int __NR_SCMP_ERROR = -1;

    /// <summary>
    /// The filter optimisation level that sorts syscalls into a binary tree (libseccomp 2.5+), so a
    /// lookup costs about log2(n) comparisons instead of n.
    /// </summary>
    internal const uint OptimizeBinaryTree = 2;

    /// <summary>One argument comparison, as <c>struct scmp_arg_cmp</c> (24 bytes on x86_64).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct scmp_arg_cmp
    {
        public uint arg;
        public int op;
        public ulong datum_a;
        public ulong datum_b;
    }

    internal static uint SCMP_ACT_ERRNO(int errno) => SCMP_ACT_ERRNO_BASE | ((uint)errno & 0xffff);

    /// <summary>
    /// The file of the libseccomp this process has loaded, as the dynamic loader opened it; null when
    /// it is not loaded or cannot be told. Asks the loader which object holds <c>seccomp_init</c>.
    /// </summary>
    internal static string? LoadedLibraryPath()
    {
        if (!NativeLibrary.TryLoad(LibSeccomp, out IntPtr library))
        {
            return null;
        }

        try
        {
            DlInfo info;
            return NativeLibrary.TryGetExport(library, "seccomp_init", out IntPtr symbol) && dladdr((void*)symbol, &info) != 0
                ? Marshal.PtrToStringUTF8(info.FileName)
                : null;
        }
        finally
        {
            NativeLibrary.Free(library);
        }
    }

    /// <summary>glibc's <c>Dl_info</c>.</summary>
    private struct DlInfo
    {
        public IntPtr FileName;
        public IntPtr FileBase;
        public IntPtr SymbolName;
        public IntPtr SymbolAddress;
    }

    [LibraryImport("libc")]
    private static partial int dladdr(void* address, DlInfo* info);

    [LibraryImport(LibSeccomp)]
    private static partial IntPtr seccomp_init(uint def_action);

    [LibraryImport(LibSeccomp)]
    internal static partial void seccomp_release(IntPtr ctx);

    [LibraryImport(LibSeccomp)]
    private static partial uint seccomp_arch_native();

    [LibraryImport(LibSeccomp)]
    private static partial int seccomp_arch_add(SeccompFilterHandle ctx, uint arch_token);

    [LibraryImport(LibSeccomp)]
    private static partial int seccomp_arch_remove(SeccompFilterHandle ctx, uint arch_token);

    [LibraryImport(LibSeccomp)]
    private static partial int seccomp_attr_set(SeccompFilterHandle ctx, int attr, uint value);

    [LibraryImport(LibSeccomp, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int seccomp_syscall_resolve_name_arch(uint arch_token, string name);

    [LibraryImport(LibSeccomp)]
    private static partial IntPtr seccomp_syscall_resolve_num_arch(uint arch_token, int num);

    [LibraryImport(LibSeccomp)]
    private static partial int seccomp_rule_add_array(
        SeccompFilterHandle ctx, uint action, int syscall, uint arg_cnt, scmp_arg_cmp* arg_array);

    [LibraryImport(LibSeccomp)]
    private static partial int seccomp_export_bpf(SeccompFilterHandle ctx, SafeHandle fd);

    /// <summary>A new filter context whose default action is <paramref name="defaultAction"/>.</summary>
    internal static SeccompFilterHandle CreateFilter(uint defaultAction)
    {
        IntPtr ctx = seccomp_init(defaultAction);
        if (ctx == IntPtr.Zero)
        {
            // seccomp_init reports nothing but NULL: a bad action or no memory.
            throw new InvalidOperationException($"seccomp_init(0x{defaultAction:x8}) failed");
        }

        return new SeccompFilterHandle(ctx);
    }

    /// <summary>The architecture libseccomp was built for, as an <c>AUDIT_ARCH_*</c> token.</summary>
    internal static uint NativeArchitecture() => seccomp_arch_native();

    /// <summary>Makes x86_64 the filter's only architecture.</summary>
    /// <remarks>
    /// A new context holds the native architecture implicitly; it is replaced by the explicit token so the
    /// program's first check names x86_64 rather than whatever libseccomp calls native. Every other
    /// architecture (i386 through <c>int 0x80</c>, and x32, whose calls carry bit 0x40000000) then takes
    /// the bad-architecture action.
    /// </remarks>
    internal static void SetOnlyArchitectureX86_64(SeccompFilterHandle ctx)
    {
        Check(seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE), "seccomp_arch_remove(native)");
        Check(seccomp_arch_add(ctx, SCMP_ARCH_X86_64), "seccomp_arch_add(x86_64)");
    }

    internal static void SetAttribute(SeccompFilterHandle ctx, int attribute, uint value) =>
        Check(seccomp_attr_set(ctx, attribute, value), $"seccomp_attr_set({attribute}, {value})");

    /// <summary>Sets an attribute the installed libseccomp may not know; returns whether it took.</summary>
    internal static bool TrySetAttribute(SeccompFilterHandle ctx, int attribute, uint value) =>
        seccomp_attr_set(ctx, attribute, value) == 0;

    /// <summary>
    /// The x86_64 number of <paramref name="name"/>; <see cref="__NR_SCMP_ERROR"/> when libseccomp does
    /// not know it, or a negative pseudo number (below -1) for a call that exists only on other
    /// architectures (<c>socketcall</c>, <c>vm86</c>).
    /// </summary>
    internal static int ResolveSyscall(string name) => seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name);

    /// <summary>The name of syscall <paramref name="number"/> on <paramref name="arch"/>, or null if unknown.</summary>
    internal static string? SyscallName(uint arch, int number)
    {
        IntPtr name = seccomp_syscall_resolve_num_arch(arch, number);
        if (name == IntPtr.Zero)
        {
            return null;
        }

        try
        {
            return Marshal.PtrToStringUTF8(name);
        }
        finally
        {
            // libseccomp returns a strdup'ed copy that the caller frees.
            NativeMemory.Free((void*)name);
        }
    }

    internal static void AddRule(
        SeccompFilterHandle ctx, uint action, int syscall, ReadOnlySpan<scmp_arg_cmp> conditions)
    {
        fixed (scmp_arg_cmp* array = conditions)
        {
            int result = seccomp_rule_add_array(
                ctx, action, syscall, (uint)conditions.Length, conditions.IsEmpty ? null : array);
            Check(result, $"seccomp_rule_add_array(syscall {syscall}, {conditions.Length} conditions)");
        }
    }

    /// <summary>The filter as a BPF program: an array of 8-byte <c>struct sock_filter</c>.</summary>
    internal static byte[] ExportBpf(SeccompFilterHandle ctx)
    {
        using Microsoft.Win32.SafeHandles.SafeFileHandle memfd = CreateMemfd("confine-seccomp");
        Check(seccomp_export_bpf(ctx, memfd), "seccomp_export_bpf");

        long length = RandomAccess.GetLength(memfd);
        byte[] program = new byte[length];
        int read = 0;
        while (read < program.Length)
        {
            int n = RandomAccess.Read(memfd, program.AsSpan(read), read);
            if (n == 0)
            {
                throw new InvalidOperationException($"seccomp_export_bpf: memfd ended after {read} of {length} bytes");
            }

            read += n;
        }

        return program;
    }

    /// <summary>libseccomp returns a negative errno; it does not set <c>errno</c>.</summary>
    private static void Check(int result, string call)
    {
        if (result < 0)
        {
            throw new ErrnoException(-result, call);
        }
    }
}

/// <summary>A libseccomp filter context (<c>scmp_filter_ctx</c>), released with <c>seccomp_release</c>.</summary>
internal sealed class SeccompFilterHandle : SafeHandle
{
    internal SeccompFilterHandle(IntPtr ctx)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        SetHandle(ctx);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        SeccompInterop.seccomp_release(handle);
        return true;
    }
}
