using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using static Confine.Native.HelperProtocol;

namespace Confine.Planning;

/// <summary>Serialises plan records in the layout <c>native/plan.h</c> describes.</summary>
internal sealed class PlanWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    public PlanWriter()
    {
        WriteUInt32(PLAN_MAGIC);
        WriteUInt32(PLAN_VERSION);
    }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.WrittenSpan;

    public void Empty(uint type) => Header(type, 0);

    public void UInt32(uint type, uint value)
    {
        Header(type, 4);
        WriteUInt32(value);
    }

    public void String(uint type, string value)
    {
        Header(type, (uint)StringLength(value));
        WriteString(value);
    }

    public void Mount(uint op, uint flags, ulong mountFlags, string source, string target, string data)
    {
        Header(type: PLAN_MOUNT, length: (uint)(16 + StringLength(source) + StringLength(target) + StringLength(data)));
        WriteUInt32(op);
        WriteUInt32(flags);
        WriteUInt64(mountFlags);
        WriteString(source);
        WriteString(target);
        WriteString(data);
    }

    public void Rlimit(uint resource, ulong soft, ulong hard)
    {
        Header(PLAN_RLIMIT, 24);
        WriteUInt32(resource);
        WriteUInt32(0);
        WriteUInt64(soft);
        WriteUInt64(hard);
    }

    public void User(uint uid, uint gid)
    {
        Header(PLAN_USER, 8);
        WriteUInt32(uid);
        WriteUInt32(gid);
    }

    public void Landlock(ulong handledFileSystem, ulong handledNetwork, ulong scoped, IReadOnlyList<(ulong Access, string Path)> rules)
    {
        int length = 24 + rules.Sum(r => 8 + StringLength(r.Path));
        Header(PLAN_LANDLOCK, (uint)length);
        WriteUInt64(handledFileSystem);
        WriteUInt64(handledNetwork);
        WriteUInt64(scoped);
        foreach ((ulong access, string path) in rules)
        {
            WriteUInt64(access);
            WriteString(path);
        }
    }

    public void Bytes(uint type, uint prefix, ReadOnlySpan<byte> bytes)
    {
        Header(type, (uint)(4 + bytes.Length));
        WriteUInt32(prefix);
        bytes.CopyTo(_buffer.GetSpan(bytes.Length));
        _buffer.Advance(bytes.Length);
    }

    private static int StringLength(string value)
    {
        if (value.Contains('\0'))
        {
            // Policy validation rejects these earlier; reaching here is a bug in Confine.
            throw new ArgumentException("a plan string cannot hold a NUL character", nameof(value));
        }

        return Encoding.UTF8.GetByteCount(value) + 1;
    }

    private void Header(uint type, uint length)
    {
        WriteUInt32(type);
        WriteUInt32(length);
    }

    private void WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    private void WriteUInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    private void WriteString(string value)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        Span<byte> span = _buffer.GetSpan(length + 1);
        Encoding.UTF8.GetBytes(value, span);
        span[length] = 0;
        _buffer.Advance(length + 1);
    }
}
