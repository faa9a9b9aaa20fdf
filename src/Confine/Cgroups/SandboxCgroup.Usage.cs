using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Cgroups;

internal sealed partial class SandboxCgroup
{
    /// <summary>USER_HZ, the unit of v1's <c>cpuacct.stat</c>; user space always sees 100.</summary>
    private const long UserHz = 100;

    private long _sampledMemoryPeak;
    private long _sampledPidsPeak;

    /// <summary>
    /// The accounting files, opened once while the sandbox starts (null for one that is missing),
    /// or null when not kept. The run's last reading comes after its command has ended, while the
    /// caller waits for the verdict: through these it costs a pread per file instead of an open, two
    /// reads and a close, about a tenth of a millisecond for the dozen files.
    /// </summary>
    private Dictionary<string, SafeFileHandle?>? _usageFiles;

    /// <summary>The files a reading opens while <see cref="KeepUsageFilesOpen"/> records them, on its thread only.</summary>
    [ThreadStatic]
    private static Dictionary<string, SafeFileHandle?>? t_recording;

    /// <summary>
    /// Opens the files <see cref="ReadUsage"/> reads and keeps them open until <see cref="Dispose"/>;
    /// the list is whatever a reading made now opens. Thirteen descriptors per sandbox on a v1 host.
    /// A reading on another thread meanwhile (a usage sample) reads by path until the set is complete.
    /// </summary>
    public void KeepUsageFilesOpen()
    {
        var recording = new Dictionary<string, SafeFileHandle?>(StringComparer.Ordinal);
        t_recording = recording;
        try
        {
            ReadUsage();
        }
        finally
        {
            t_recording = null;
        }

        Volatile.Write(ref _usageFiles, recording);
    }

    private void CloseUsageFiles()
    {
        Dictionary<string, SafeFileHandle?>? files = Interlocked.Exchange(ref _usageFiles, null);
        if (files is null)
        {
            return;
        }

        foreach (SafeFileHandle? handle in files.Values)
        {
            handle?.Dispose();
        }
    }

    private string? ReadText(string path)
    {
        if (t_recording is { } recording)
        {
            SafeFileHandle? opened;
            try
            {
                opened = Posix.Open(path, Interop.O_RDONLY);
            }
            catch (ErrnoException)
            {
                opened = null;
            }

            recording[path] = opened;
            return opened is null ? null : Posix.TryReadTextAgain(opened);
        }

        // Once: a sample in flight on the clock's thread may meet Dispose clearing the field.
        Dictionary<string, SafeFileHandle?>? files = Volatile.Read(ref _usageFiles);
        if (files is not null && files.TryGetValue(path, out SafeFileHandle? kept))
        {
            return kept is null ? null : Posix.TryReadTextAgain(kept);
        }

        return CgroupFiles.TryReadText(path);
    }

    private long? ReadInt64(string path) => CgroupFiles.Int64Of(ReadText(path));

    private long? ReadKeyed(string path, string key) => CgroupFiles.KeyedOf(ReadText(path), key);

    /// <summary>
    /// Reads the sandbox's accounting: a dozen small files, cheap enough to sample every 100 ms.
    /// Where the kernel keeps no peak (<c>memory.peak</c> came in Linux 5.19, and <c>pids.peak</c>
    /// is missing from many kernels) the peak is the largest value this method has seen.
    /// </summary>
    public CgroupUsage ReadUsage()
    {
        Member? memory = Of(CgroupController.Memory);
        Member? accounting = Of(CgroupController.CpuAccounting);
        Member? cpu = Of(CgroupController.Cpu);
        Member? pids = Of(CgroupController.Pids);
        Member? io = Of(CgroupController.Io);

        CgroupUsage usage = new()
        {
            Version = memory?.Version ?? accounting?.Version ?? _members.FirstOrDefault()?.Version ?? CgroupVersion.V1,
        };

        usage = ReadCpu(usage, accounting, cpu);
        if (memory is not null)
        {
            usage = ReadMemory(usage, memory);
        }

        if (pids is not null)
        {
            long? current = ReadInt64(pids.File("pids.current"));
            long sampled = RaiseTo(ref _sampledPidsPeak, current ?? 0);
            usage = usage with
            {
                PidsCurrent = current,
                PidsPeak = ReadInt64(pids.File("pids.peak")) ?? sampled,
                PidsLimitHits = ReadKeyed(pids.File("pids.events"), "max"),
            };
        }

        if (io is not null)
        {
            usage = io.Version == CgroupVersion.V2 ? ReadIoV2(usage, io) : ReadIoV1(usage, io);
        }

        return usage;
    }

    /// <summary>
    /// The sandbox's CPU time so far in nanoseconds, user plus system, from one file; the
    /// supervisor polls it to enforce the CPU-time limit. -1 when the sandbox has no CPU accounting.
    /// </summary>
    public long ReadCpuUsageNanoseconds()
    {
        Member? accounting = Of(CgroupController.CpuAccounting);
        long? value = accounting?.Version switch
        {
            CgroupVersion.V1 => ReadInt64(accounting.File("cpuacct.usage")),
            CgroupVersion.V2 => ReadKeyed(accounting.File("cpu.stat"), "usage_usec") * 1000,
            _ => null,
        };
        return value ?? -1;
    }

    /// <summary>The verdict's resource record from a fresh reading, with the limits that were not enforced.</summary>
    public ResourceUsage ReadResourceUsage() => ReadUsage().ToResourceUsage(_unenforced);

    private CgroupUsage ReadCpu(CgroupUsage usage, Member? accounting, Member? cpu)
    {
        if (accounting?.Version == CgroupVersion.V1)
        {
            long? user = ReadInt64(accounting.File("cpuacct.usage_user"));
            long? system = ReadInt64(accounting.File("cpuacct.usage_sys"));
            if (user is null || system is null)
            {
                // Kernels before 4.7 have only cpuacct.stat, in USER_HZ ticks.
                string? stat = ReadText(accounting.File("cpuacct.stat"));
                user = stat is null ? null : CgroupFiles.FindKeyed(stat, "user") * (1_000_000_000 / UserHz);
                system = stat is null ? null : CgroupFiles.FindKeyed(stat, "system") * (1_000_000_000 / UserHz);
            }

            // The total is the scheduler's exact runtime; the user/system split is sampled at timer
            // ticks and drifts from it (by a fifth, seen under a CPU quota), so the split is scaled
            // to the exact total, as v2 does itself in cpu.stat.
            long? total = ReadInt64(accounting.File("cpuacct.usage"));
            if (total is long exact && user is long ticksUser && system is long ticksSystem
                && ticksUser + ticksSystem > 0)
            {
                user = (long)((double)exact * ticksUser / (ticksUser + ticksSystem));
                system = exact - user;
            }

            usage = usage with
            {
                CpuUsageNanoseconds = total,
                CpuUserNanoseconds = user,
                CpuSystemNanoseconds = system,
            };
        }
        else if (accounting?.Version == CgroupVersion.V2)
        {
            string? stat = ReadText(accounting.File("cpu.stat"));
            if (stat is not null)
            {
                usage = usage with
                {
                    CpuUsageNanoseconds = CgroupFiles.FindKeyed(stat, "usage_usec") * 1000,
                    CpuUserNanoseconds = CgroupFiles.FindKeyed(stat, "user_usec") * 1000,
                    CpuSystemNanoseconds = CgroupFiles.FindKeyed(stat, "system_usec") * 1000,
                };
            }
        }

        // Throttling is counted by the cpu controller: v1's cpu.stat in ns, v2's in µs (present
        // only when the cpu controller is enabled for the cgroup).
        if (cpu?.Version == CgroupVersion.V1)
        {
            usage = usage with
            {
                CpuThrottledNanoseconds = ReadKeyed(cpu.File("cpu.stat"), "throttled_time"),
            };
        }
        else if (cpu?.Version == CgroupVersion.V2)
        {
            usage = usage with
            {
                CpuThrottledNanoseconds = ReadKeyed(cpu.File("cpu.stat"), "throttled_usec") * 1000,
            };
        }

        return usage;
    }

    private CgroupUsage ReadMemory(CgroupUsage usage, Member memory)
    {
        bool v2 = memory.Version == CgroupVersion.V2;
        long? current = ReadInt64(memory.File(v2 ? "memory.current" : "memory.usage_in_bytes"));
        long sampled = RaiseTo(ref _sampledMemoryPeak, current ?? 0);
        long? peak = ReadInt64(memory.File(v2 ? "memory.peak" : "memory.max_usage_in_bytes"));
        long? oomKills = ReadKeyed(memory.File(v2 ? "memory.events" : "memory.oom_control"), "oom_kill");
        return usage with
        {
            MemoryCurrentBytes = current,
            MemoryPeakBytes = peak ?? (current is null ? null : sampled),
            MemoryPeakSampled = peak is null && current is not null,
            OomKills = oomKills ?? 0,
        };
    }

    /// <summary>
    /// v1's blk-throttle statistics, lines of <c>MAJ:MIN Read|Write|Sync|Async|Discard|Total N</c>
    /// and a last <c>Total N</c>; the recursive files include any child cgroups.
    /// </summary>
    private CgroupUsage ReadIoV1(CgroupUsage usage, Member io)
    {
        (long? readBytes, long? writeBytes) = SumV1(io, "blkio.throttle.io_service_bytes");
        (long? readOps, long? writeOps) = SumV1(io, "blkio.throttle.io_serviced");
        return usage with
        {
            IoReadBytes = readBytes,
            IoWriteBytes = writeBytes,
            IoReadOps = readOps,
            IoWriteOps = writeOps,
        };

        (long? Read, long? Write) SumV1(Member io, string file)
        {
            string? text = ReadText(io.File(file + "_recursive"))
                ?? ReadText(io.File(file));
            if (text is null)
            {
                return (null, null);
            }

            long read = 0;
            long write = 0;
            Span<Range> fields = stackalloc Range[4];
            foreach (ReadOnlySpan<char> line in text.AsSpan().EnumerateLines())
            {
                if (line.Split(fields, ' ', StringSplitOptions.RemoveEmptyEntries) != 3)
                {
                    continue;
                }

                long value = CgroupFiles.ParseValue(line[fields[2]]) ?? 0;
                ReadOnlySpan<char> operation = line[fields[1]];
                if (operation.SequenceEqual("Read"))
                {
                    read += value;
                }
                else if (operation.SequenceEqual("Write"))
                {
                    write += value;
                }
            }

            return (read, write);
        }
    }

    /// <summary>v2's <c>io.stat</c>, a line per device: <c>MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...</c>.</summary>
    private CgroupUsage ReadIoV2(CgroupUsage usage, Member io)
    {
        string? text = ReadText(io.File("io.stat"));
        if (text is null)
        {
            return usage;
        }

        long readBytes = 0, writeBytes = 0, readOps = 0, writeOps = 0;
        foreach (ReadOnlySpan<char> line in text.AsSpan().EnumerateLines())
        {
            foreach (Range range in line.Split(' '))
            {
                ReadOnlySpan<char> pair = line[range];
                int equals = pair.IndexOf('=');
                if (equals < 0)
                {
                    continue;
                }

                long value = CgroupFiles.ParseValue(pair[(equals + 1)..]) ?? 0;
                switch (pair[..equals])
                {
                    case "rbytes": readBytes += value; break;
                    case "wbytes": writeBytes += value; break;
                    case "rios": readOps += value; break;
                    case "wios": writeOps += value; break;
                }
            }
        }

        return usage with
        {
            IoReadBytes = readBytes,
            IoWriteBytes = writeBytes,
            IoReadOps = readOps,
            IoWriteOps = writeOps,
        };
    }

    /// <summary>Raises <paramref name="peak"/> to <paramref name="value"/> if lower, race-free.</summary>
    private static long RaiseTo(ref long peak, long value)
    {
        long seen = Interlocked.Read(ref peak);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref peak, value, seen);
            if (previous == seen)
            {
                return value;
            }

            seen = previous;
        }

        return seen;
    }
}
