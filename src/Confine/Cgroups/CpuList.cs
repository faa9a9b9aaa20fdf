using System.Globalization;
using System.Text;

namespace Confine.Cgroups;

/// <summary>
/// A set of CPU numbers in the kernel's list format (<c>0-3,8,10-11</c>), as <c>cpuset.cpus</c> and
/// <c>/sys/devices/system/cpu/online</c> write it.
/// </summary>
internal sealed class CpuList
{
    /// <summary>Far above any real CPU count; guards against a typo that would expand to millions of entries.</summary>
    private const int MaxCpu = 1 << 16;

    private readonly SortedSet<int> _cpus;

    private CpuList(SortedSet<int> cpus) => _cpus = cpus;

    /// <summary>The CPU numbers, ascending.</summary>
    public IReadOnlyCollection<int> Cpus => _cpus;

    /// <summary>How many CPUs the list names.</summary>
    public int Count => _cpus.Count;

    /// <summary>Parses <paramref name="text"/>; an empty text is an empty set.</summary>
    public static bool TryParse(string text, out CpuList list)
    {
        var cpus = new SortedSet<int>();
        list = new CpuList(cpus);
        if (text.Trim().Length == 0)
        {
            return true;
        }

        foreach (string item in text.Trim().Split(',', StringSplitOptions.TrimEntries))
        {
            if (item.Length == 0)
            {
                return false;
            }

            string[] range = item.Split('-');
            if (range.Length > 2 || !TryParseCpu(range[0], out int first))
            {
                return false;
            }

            int last = first;
            if (range.Length == 2 && (!TryParseCpu(range[1], out last) || last < first))
            {
                return false;
            }

            for (int cpu = first; cpu <= last; cpu++)
            {
                cpus.Add(cpu);
            }
        }

        return true;
    }

    /// <summary>Parses a list the kernel wrote; a malformed one reads as empty.</summary>
    public static CpuList ParseKernel(string? text) =>
        text is not null && TryParse(text, out CpuList list) ? list : new CpuList([]);

    /// <summary>Whether every CPU of this list is in <paramref name="other"/>.</summary>
    public bool IsSubsetOf(CpuList other) => _cpus.IsSubsetOf(other._cpus);

    /// <summary>The CPUs of this list missing from <paramref name="other"/>.</summary>
    public CpuList Except(CpuList other)
    {
        var rest = new SortedSet<int>(_cpus);
        rest.ExceptWith(other._cpus);
        return new CpuList(rest);
    }

    /// <summary>The list in the kernel's format, ranges collapsed.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        int? start = null;
        int previous = -2;
        foreach (int cpu in _cpus.Append(int.MinValue))
        {
            if (start is not null && cpu != previous + 1)
            {
                text.Append(text.Length > 0 ? "," : "").Append(start.Value.ToString(CultureInfo.InvariantCulture));
                if (previous != start.Value)
                {
                    text.Append('-').Append(previous.ToString(CultureInfo.InvariantCulture));
                }

                start = null;
            }

            start ??= cpu;
            previous = cpu;
        }

        return text.ToString();
    }

    private static bool TryParseCpu(string text, out int cpu) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu < MaxCpu;
}
