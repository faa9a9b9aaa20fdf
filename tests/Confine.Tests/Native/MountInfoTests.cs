using Confine.Native;

namespace Confine.Tests.Native;

/// <summary>The mount table parser that the cgroup detection, the planner and <c>confine check</c> share.</summary>
public sealed class MountInfoTests
{
    [Fact]
    public void Parse_ReadsFieldsAroundAnyNumberOfOptionalFields()
    {
        const string Table =
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            + "31 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:9 master:3 - cgroup cgroup rw,memory\n"
            + "40 25 0:30 /sub /sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
            + "41 25 0:31 / /mnt/x rw - tmpfs tmpfs ro,size=10k\n";

        List<MountInfo.Entry> mounts = MountInfo.Parse(Table);

        Assert.Equal(4, mounts.Count);
        Assert.Equal(("/", "/proc", "proc", false), (mounts[0].Root, mounts[0].MountPoint, mounts[0].FsType, mounts[0].ReadOnly));
        Assert.Equal("cgroup", mounts[1].FsType);
        Assert.Equal("rw,memory", mounts[1].SuperOptions);
        Assert.False(mounts[1].ReadOnly);
        Assert.Equal("/sub", mounts[2].Root);
        Assert.True(mounts[2].ReadOnly);
        Assert.True(mounts[3].ReadOnly);
    }

    [Fact]
    public void Parse_SkipsLinesThatAreNotMounts()
    {
        List<MountInfo.Entry> mounts = MountInfo.Parse("garbage\n1 2 3 4 5 6 7\n\n22 27 0:21 / /proc rw - proc proc rw\n1 2 0:1 / /x rw -\n");
        Assert.Equal("/proc", Assert.Single(mounts).MountPoint);
    }

    [Theory]
    [InlineData(@"/plain", "/plain")]
    [InlineData(@"/with\040space", "/with space")]
    [InlineData(@"/tab\011and\012newline", "/tab\tand\nnewline")]
    [InlineData(@"/back\134slash", @"/back\slash")]
    [InlineData(@"/caf\303\251", "/café")]
    [InlineData(@"/not\08escape", @"/not\08escape")]
    [InlineData(@"/short\04", @"/short\04")]
    public void Unescape_TurnsOctalEscapesBackIntoBytes(string field, string expected)
    {
        Assert.Equal(expected, MountInfo.Unescape(field));
    }

    [Fact]
    public void Read_FindsThisProcesssRootAndProc()
    {
        List<MountInfo.Entry> mounts = MountInfo.Read();
        Assert.Contains(mounts, m => m.MountPoint == "/");
        Assert.Contains(mounts, m => m.MountPoint == "/proc" && m.FsType == "proc");
    }
}
