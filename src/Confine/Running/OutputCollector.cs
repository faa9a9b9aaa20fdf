using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Running;

/// <summary>
/// Drains one output pipe of the command on the I/O loop: keeps or forwards bytes up to a limit,
/// then reports the overflow and discards the rest until end-of-file.
/// </summary>
internal sealed unsafe class OutputCollector
{
    /// <summary>What one read(2) may take: a pipe holds 64 KiB by default.</summary>
    private const int ReadSize = 64 * 1024;

    private readonly long _limit;
    private readonly Stream? _forward;
    private readonly ArrayBufferWriter<byte>? _captured;
    private readonly Action _onLimit;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _bytes;
    private bool _truncated;

    public OutputCollector(long limit, Stream? forward, Action onLimit)
    {
        _limit = limit;
        _forward = forward;
        _captured = forward is null ? new ArrayBufferWriter<byte>() : null;
        _onLimit = onLimit;
    }

    /// <summary>Completes at end-of-file, when every writer in the sandbox is gone.</summary>
    public Task Closed => _closed.Task;

    public bool Truncated => _truncated;

    /// <summary>The I/O loop's callback; false at end-of-file.</summary>
    /// <remarks>
    /// The buffer is on the stack and left uninitialised: a heap buffer would be zeroed page by page
    /// when first made, while stack pages are touched only as far as read(2) fills them, and most
    /// reads are short (or, for a command that prints nothing, empty).
    /// </remarks>
    [SkipLocalsInit]
    public bool OnReadable(SafeFileHandle handle)
    {
        byte* buffer = stackalloc byte[ReadSize];
        int fd = (int)handle.DangerousGetHandle();
        while (true)
        {
            nint n = Interop.read(fd, buffer, ReadSize);
            if (n > 0)
            {
                Accept(new ReadOnlySpan<byte>(buffer, (int)n));
                continue;
            }

            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Interop.EINTR)
                {
                    continue;
                }

                if (errno == Interop.EAGAIN)
                {
                    return true;
                }
            }

            Flush();
            _closed.TrySetResult();
            return false;
        }
    }

    private void Accept(ReadOnlySpan<byte> data)
    {
        long room = Math.Max(0, _limit - _bytes);
        ReadOnlySpan<byte> kept = data.Length <= room ? data : data[..(int)room];
        _bytes += kept.Length;
        if (kept.Length > 0)
        {
            if (_captured is not null)
            {
                _captured.Write(kept);
            }
            else
            {
                try
                {
                    _forward!.Write(kept);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // The caller's stream is gone (a closed terminal, a broken pipe, a descriptor
                    // closed before the start, which .NET reports as access denied); the run goes
                    // on and its output is counted but no longer delivered.
                }
            }
        }

        if (kept.Length < data.Length && !_truncated)
        {
            _truncated = true;
            _onLimit();
        }
    }

    private void Flush()
    {
        try
        {
            _forward?.Flush();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // See Accept: a vanished destination does not change the verdict.
        }
    }

    public CapturedOutput ToCapturedOutput() => new()
    {
        Text = _captured is null ? null : Encoding.UTF8.GetString(_captured.WrittenSpan),
        Bytes = _bytes,
        Truncated = _truncated,
    };
}
