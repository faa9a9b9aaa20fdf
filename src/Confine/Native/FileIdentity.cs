namespace Confine.Native;

/// <summary>
/// Tells whether a path still names the same file as before. The inode number alone does not: ext4
/// gives a directory that is removed and made again the inode it just freed, at once. The birth time
/// tells the two apart, to the file system's clock tick (a few milliseconds on ext4 and tmpfs).
/// </summary>
internal readonly record struct FileIdentity(
    uint DeviceMajor,
    uint DeviceMinor,
    ulong Inode,
    long BirthSeconds,
    uint BirthNanoseconds);
