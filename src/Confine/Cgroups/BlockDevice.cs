using System.Globalization;
using Confine.Native;

namespace Confine.Cgroups;

/// <summary>A block device as the I/O controllers name it, <c>MAJOR:MINOR</c>.</summary>
internal readonly record struct BlockDevice(uint Major, uint Minor)
{
    /// <summary>
    /// Resolves a policy's device (a device node path or <c>MAJOR:MINOR</c>) to the whole disk the
    /// I/O controllers can throttle. A partition resolves to its disk, because blk-throttle and
    /// io.max apply per disk and refuse a partition's numbers.
    /// </summary>
    /// <exception cref="PolicyException">The device does not exist or is not a block device.</exception>
    public static BlockDevice Resolve(string device, string policyKey)
    {
        BlockDevice named;
        if (TryParseNumbers(device, out BlockDevice numbers))
        {
            named = numbers;
        }
        else
        {
            Interop.Error error = CgroupSyscalls.StatDevice(device, out bool isBlock, out uint major, out uint minor);
            if (error != Interop.Error.None)
            {
                throw new PolicyException(
                    policyKey, $"cannot stat device '{device}': {CgroupSyscalls.Describe(error)}");
            }

            if (!isBlock)
            {
                throw new PolicyException(
                    policyKey, $"'{device}' is not a block device; name a disk such as /dev/sda or MAJOR:MINOR");
            }

            named = new BlockDevice(major, minor);
        }

        string sysfs = $"/sys/dev/block/{named}";
        if (!Directory.Exists(sysfs))
        {
            throw new PolicyException(policyKey, $"no block device {named} exists on this host");
        }

        return File.Exists(Path.Join(sysfs, "partition")) ? WholeDiskOf(sysfs) ?? named : named;
    }

    /// <summary>Parses <c>MAJOR:MINOR</c>.</summary>
    public static bool TryParseNumbers(string text, out BlockDevice device)
    {
        device = default;
        string[] parts = text.Split(':');
        if (parts.Length != 2
            || !uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint major)
            || !uint.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint minor))
        {
            return false;
        }

        device = new BlockDevice(major, minor);
        return true;
    }

    /// <summary>
    /// A partition's sysfs directory sits inside its disk's, whose <c>dev</c> file holds the disk's
    /// numbers.
    /// </summary>
    private static BlockDevice? WholeDiskOf(string partitionSysfs)
    {
        FileSystemInfo? target = new DirectoryInfo(partitionSysfs).ResolveLinkTarget(returnFinalTarget: true);
        string? disk = Path.GetDirectoryName(target?.FullName ?? partitionSysfs);
        string? numbers = disk is null ? null : CgroupFiles.TryReadText(Path.Join(disk, "dev"))?.Trim();
        return numbers is not null && TryParseNumbers(numbers, out BlockDevice device) ? device : null;
    }

    /// <inheritdoc />
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Major}:{Minor}");
}
