using System.Buffers.Binary;
using System.Text;

namespace Confine.Native;

/// <summary>
/// The numbers of <c>native/plan.h</c>, the contract between the planner and the C helper. A test
/// compiles a C program against the header and compares every value here with it.
/// </summary>
internal static class HelperProtocol
{
    public const uint PLAN_MAGIC = 0x50464e43;
    public const uint PLAN_VERSION = 1;

    public const int FD_PLAN = 3;
    public const int FD_REPORT = 4;
    public const int FD_LIFELINE = 5;

    public const byte PLAN_PIPE_START = (byte)'S';

    public const uint PLAN_CLONE_FLAGS = 1;
    public const uint PLAN_UID_MAP = 2;
    public const uint PLAN_GID_MAP = 3;
    public const uint PLAN_SETGROUPS_DENY = 4;
    public const uint PLAN_BASE_DIR = 6;
    public const uint PLAN_ROOTFS = 7;
    public const uint PLAN_MOUNT = 8;
    public const uint PLAN_HOSTNAME = 9;
    public const uint PLAN_LOOPBACK_UP = 10;
    public const uint PLAN_WORKDIR = 11;
    public const uint PLAN_ARG = 12;
    public const uint PLAN_ENV = 13;
    public const uint PLAN_RLIMIT = 14;
    public const uint PLAN_USER = 15;
    public const uint PLAN_NESTED_USERNS = 16;
    public const uint PLAN_SECCOMP = 17;
    public const uint PLAN_LANDLOCK = 18;
    public const uint PLAN_CGROUP_TASKS = 19;

    public const uint MOUNT_OP_BIND = 1;
    public const uint MOUNT_OP_TMPFS = 2;
    public const uint MOUNT_OP_PROC = 3;
    public const uint MOUNT_OP_SYMLINK = 4;
    public const uint MOUNT_OP_MKDIR = 5;
    public const uint MOUNT_OP_MASK = 6;
    public const uint MOUNT_OP_READONLY = 7;

    public const uint MOUNT_FLAG_WRITABLE = 1 << 0;
    public const uint MOUNT_FLAG_DEVICES = 1 << 1;
    public const uint MOUNT_FLAG_OPTIONAL = 1 << 2;
    public const uint MOUNT_FLAG_SUBMOUNTS = 1 << 3;

    public const uint REPORT_ERROR = 1;
    public const uint REPORT_INIT_PID = 2;
    public const uint REPORT_EXEC = 3;
    public const uint REPORT_EXIT = 4;
    public const uint REPORT_INIT_GONE = 5;
    public const uint REPORT_LISTENER = 6;
    public const uint REPORT_READY = 7;

    public const int REPORT_DETAIL_SIZE = 256;
    public const int ReportSize = 4 * 4 + 8 * 5 + REPORT_DETAIL_SIZE;

    // Linux's clone flags and mount flags, as in <linux/sched.h> and <sys/mount.h>.
    public const uint CLONE_NEWNS = 0x00020000;
    public const uint CLONE_NEWCGROUP = 0x02000000;
    public const uint CLONE_NEWUTS = 0x04000000;
    public const uint CLONE_NEWIPC = 0x08000000;
    public const uint CLONE_NEWUSER = 0x10000000;
    public const uint CLONE_NEWPID = 0x20000000;
    public const uint CLONE_NEWNET = 0x40000000;

    public const ulong MS_RDONLY = 1;
    public const ulong MS_NOSUID = 2;
    public const ulong MS_NODEV = 4;
    public const ulong MS_NOEXEC = 8;

    /// <summary>Names of the helper's steps, indexed by the numbers in <c>enum step</c>.</summary>
    public static string StepName(uint step) => step switch
    {
        1 => "read_plan",
        2 => "clone",
        3 => "uid_map",
        4 => "setgroups",
        5 => "gid_map",
        6 => "cgroup_join",
        7 => "wait_parent",
        8 => "mount_private",
        9 => "staging",
        10 => "rootfs",
        11 => "mount",
        12 => "submounts_readonly",
        13 => "pivot_root",
        14 => "root_readonly",
        15 => "hostname",
        16 => "loopback",
        17 => "fork",
        18 => "nested_userns",
        19 => "setsid",
        20 => "rlimit",
        21 => "drop_bounding",
        22 => "setgid",
        23 => "setuid",
        24 => "drop_caps",
        25 => "workdir",
        26 => "no_new_privs",
        27 => "landlock",
        28 => "seccomp",
        29 => "exec",
        30 => "supervise",
        31 => "command_plan",
        _ => $"step {step}",
    };

    public const uint STEP_EXEC = 29;
}

/// <summary>One report of the helper, decoded from <c>struct report</c>.</summary>
internal readonly record struct HelperReport(
    uint Type, uint Step, int Errno, int Status, long TimeNs, long Pid,
    long UserMicroseconds, long SystemMicroseconds, long MaxRssKilobytes, string Detail)
{
    public static HelperReport Parse(ReadOnlySpan<byte> data)
    {
        if (data.Length != HelperProtocol.ReportSize)
        {
            throw new InvalidDataException(
                $"helper report of {data.Length} bytes, expected {HelperProtocol.ReportSize}");
        }

        ReadOnlySpan<byte> detail = data.Slice(56, HelperProtocol.REPORT_DETAIL_SIZE);
        int end = detail.IndexOf((byte)0);
        return new HelperReport(
            BinaryPrimitives.ReadUInt32LittleEndian(data),
            BinaryPrimitives.ReadUInt32LittleEndian(data[4..]),
            BinaryPrimitives.ReadInt32LittleEndian(data[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(data[12..]),
            BinaryPrimitives.ReadInt64LittleEndian(data[16..]),
            BinaryPrimitives.ReadInt64LittleEndian(data[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(data[32..]),
            BinaryPrimitives.ReadInt64LittleEndian(data[40..]),
            BinaryPrimitives.ReadInt64LittleEndian(data[48..]),
            Encoding.UTF8.GetString(end < 0 ? detail : detail[..end]));
    }
}
