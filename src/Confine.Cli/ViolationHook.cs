using System.Diagnostics;
using System.Threading.Channels;

namespace Confine.Cli;

/// <summary>
/// <c>--on-violation CMD</c>: runs CMD with <c>/bin/sh -c</c>, outside the sandbox and as Confine's own
/// user, once per recorded violation, with the violation as one line of JSON on its standard input.
/// </summary>
/// <remarks>
/// Violations arrive from the library one at a time, and the next waits until this handler returns;
/// so they are queued here and the hooks run one at a time on a task of their own. A slow or hanging
/// hook delays only other hooks, and each is given <see cref="HookTimeout"/> before it is killed.
/// </remarks>
internal sealed class ViolationHook
{
    private static readonly TimeSpan HookTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The most hooks one run starts. Violations are announced once per kind, but a program can make
    /// up to 256 kinds; a hook per kind past this would only keep Confine busy after the run.
    /// </summary>
    internal const int MaxHooksPerRun = 32;

    private int _queued;

    private readonly string _command;
    private readonly Channel<Violation> _pending = Channel.CreateUnbounded<Violation>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _runner;

    public ViolationHook(string command)
    {
        _command = command;
        _runner = Task.Run(RunAllAsync);
    }

    /// <summary>Queues one violation; the run's next violation waits for it, so it never blocks.</summary>
    public void Enqueue(Violation violation)
    {
        int queued = Interlocked.Increment(ref _queued);
        if (queued <= MaxHooksPerRun)
        {
            _pending.Writer.TryWrite(violation);
        }
        else if (queued == MaxHooksPerRun + 1)
        {
            Console.Error.WriteLine($"confine: --on-violation: more than {MaxHooksPerRun} kinds of violation; the verdict lists the rest");
        }
    }

    /// <summary>Waits for every queued hook to finish, after the run has ended.</summary>
    public Task DrainAsync()
    {
        _pending.Writer.TryComplete();
        return _runner;
    }

    private async Task RunAllAsync()
    {
        await foreach (Violation violation in _pending.Reader.ReadAllAsync())
        {
            try
            {
                await RunOneAsync(VerdictJson.Serialize(violation));
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or IOException or InvalidOperationException)
            {
                Console.Error.WriteLine($"confine: --on-violation: could not run '{_command}': {e.Message}");
            }
        }
    }

    private async Task RunOneAsync(string json)
    {
        var start = new ProcessStartInfo("/bin/sh")
        {
            ArgumentList = { "-c", _command },
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        using Process hook = Process.Start(start)!;
        try
        {
            // A hook that does not read its input must not block us; the pipe holds a line easily.
            await hook.StandardInput.WriteLineAsync(json);
            hook.StandardInput.Close();
        }
        catch (IOException)
        {
            // The hook exited without reading; that is its own business.
        }

        using var deadline = new CancellationTokenSource(HookTimeout);
        try
        {
            await hook.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            hook.Kill(entireProcessTree: true);
            Console.Error.WriteLine($"confine: --on-violation: '{_command}' ran longer than {HookTimeout.TotalSeconds:0} s and was killed");
            return;
        }

        if (hook.ExitCode != 0)
        {
            Console.Error.WriteLine($"confine: --on-violation: '{_command}' exited with {hook.ExitCode}");
        }
    }
}
