using System.Runtime.ExceptionServices;
using Confine.Native;
using Confine.Running;
using Microsoft.Win32.SafeHandles;

namespace Confine.Tests.Running;

/// <summary>
/// Which thread serves an I/O loop: its own, started only when nobody else does, or a caller blocked
/// in <see cref="IoLoop.Serve{T}"/>, on which what the caller awaits through
/// <see cref="IoLoop.Resume(Task, bool)"/> then resumes too.
/// </summary>
/// <remarks>
/// Every test makes a private loop: the shared one serves the other tests' sandboxes, and whether
/// it has its thread already depends on which of them ran first. A loop cannot stop its thread, so
/// a test that starts one leaves it idle in epoll_wait. Each <c>Serve</c> runs on a thread of its
/// own, so that a loop that never returns fails its test instead of hanging the whole run.
/// </remarks>
[Trait("Category", "Run")]
public sealed class IoLoopTests
{
    private const string LoopThreadName = "Confine I/O";

    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Register_NobodyServes_StartsTheLoopsOwnThread()
    {
        var loop = new IoLoop();
        Assert.False(loop.HasThread);

        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (write)
        {
            var fired = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
            loop.Register(read, _ =>
            {
                fired.TrySetResult(Thread.CurrentThread.Name);
                return false;
            });
            Assert.True(loop.HasThread);

            Posix.WriteAll(write, [1], "write to the test pipe");
            Assert.Equal(LoopThreadName, await fired.Task.WaitAsync(s_timeout));
        }
    }

    [Fact]
    public void Serve_AwaitThroughResume_ResumesOnTheServingThreadAndStartsNoThread()
    {
        var loop = new IoLoop();
        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (write)
        {
            var readable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            int callbackThread = 0;
            bool servingBefore = false;
            bool servingAfter = false;
            bool threadWhileServed = true;
            SynchronizationContext? contextBefore = null;
            SynchronizationContext? contextAfter = null;

            Served<int> served = ServeOnNewThread(loop, async () =>
            {
                servingBefore = IoLoop.IsServingThread;
                contextBefore = SynchronizationContext.Current;
                loop.Register(read, _ =>
                {
                    callbackThread = Environment.CurrentManagedThreadId;
                    readable.TrySetResult();
                    return false;
                });
                threadWhileServed = loop.HasThread;
                WriteFromAnotherThread(write);

                await IoLoop.Resume(readable.Task);
                servingAfter = IoLoop.IsServingThread;
                contextAfter = SynchronizationContext.Current;
                return Environment.CurrentManagedThreadId;
            });

            Assert.True(servingBefore);
            Assert.False(threadWhileServed, "a registration while a caller serves started the loop's thread");
            Assert.Equal(served.CallerThread, callbackThread);
            Assert.Equal(served.CallerThread, served.Result);
            Assert.True(servingAfter);

            // The loop's context is current only while an await captures it: left current, it would
            // send every ConfigureAwait(false) continuation on this thread to the thread pool.
            Assert.Null(contextBefore);
            Assert.Null(contextAfter);

            // The callback's false removed the only registration: nothing is left for a thread to serve.
            Assert.False(loop.HasThread);
        }
    }

    [Fact]
    public void Serve_ContinuationPostedFromAnotherThread_WakesTheLoopAndRunsOnTheServingThread()
    {
        var loop = new IoLoop();
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Nothing is registered: the serving thread sleeps in epoll_wait until the post wakes it.
        Served<int> served = ServeOnNewThread(loop, async () =>
        {
            RunOnAnotherThread(released.SetResult);
            await IoLoop.Resume(released.Task);
            return Environment.CurrentManagedThreadId;
        });

        Assert.Equal(served.CallerThread, served.Result);
        Assert.False(loop.HasThread, "a post while a caller serves started the loop's thread");
    }

    [Fact]
    public void Serve_TaskCompletedOnAnotherThread_Returns()
    {
        var loop = new IoLoop();
        var result = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);

        // No await resumes on the loop: only the task's own completion can end the serving thread's wait.
        Served<int> served = ServeOnNewThread(loop, () =>
        {
            RunOnAnotherThread(() => result.SetResult(42));
            return result.Task;
        });

        Assert.Equal(42, served.Result);
        Assert.False(loop.HasThread);
    }

    [Fact]
    public async Task Serve_ReturnsWithARegistrationLeft_TheLoopsOwnThreadTakesItOver()
    {
        var loop = new IoLoop();
        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (write)
        {
            var fired = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
            bool threadWhileServed = true;

            ServeOnNewThread(loop, () =>
            {
                loop.Register(read, _ =>
                {
                    fired.TrySetResult(Thread.CurrentThread.Name);
                    return false;
                });
                threadWhileServed = loop.HasThread;
                return Task.FromResult(0);
            });

            Assert.False(threadWhileServed);
            Assert.True(loop.HasThread, "the caller left a registration and no thread to serve it");
            Assert.False(fired.Task.IsCompleted);

            Posix.WriteAll(write, [1], "write to the test pipe");
            Assert.Equal(LoopThreadName, await fired.Task.WaitAsync(s_timeout));
        }
    }

    [Fact]
    public async Task Serve_ReturnsWithWorkPostedButNotRun_TheLoopsOwnThreadRunsIt()
    {
        var loop = new IoLoop();
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<string?> resumed = Task.FromResult<string?>(null);

        // Released on the serving thread, the awaiting method's continuation is queued to the loop;
        // the task Serve waits for is complete already, so the loop never runs before Serve returns.
        ServeOnNewThread(loop, () =>
        {
            resumed = NameOfTheThreadItResumesOn(released.Task);
            released.SetResult();
            return Task.FromResult(0);
        });

        Assert.True(loop.HasThread, "the caller left posted work and no thread to run it");
        Assert.Equal(LoopThreadName, await resumed.WaitAsync(s_timeout));

        static async Task<string?> NameOfTheThreadItResumesOn(Task task)
        {
            await IoLoop.Resume(task);
            return Thread.CurrentThread.Name;
        }
    }

    [Fact]
    public void Serve_StartThrows_ThrowsAndTheNextServeServesAgain()
    {
        var loop = new IoLoop();

        var error = Assert.Throws<InvalidOperationException>(
            () => ServeOnNewThread<int>(loop, () => throw new InvalidOperationException("start failed")));
        Assert.Equal("start failed", error.Message);
        Assert.False(loop.HasThread);

        // Were the loop still marked as served, this Serve would only block, and with no thread of
        // the loop's own the pipe's callback would never run.
        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (write)
        {
            var readable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            bool serving = false;
            Served<int> served = ServeOnNewThread(loop, async () =>
            {
                serving = IoLoop.IsServingThread;
                loop.Register(read, _ =>
                {
                    readable.TrySetResult();
                    return false;
                });
                WriteFromAnotherThread(write);

                await IoLoop.Resume(readable.Task);
                return Environment.CurrentManagedThreadId;
            });

            Assert.True(serving);
            Assert.Equal(served.CallerThread, served.Result);
            Assert.False(loop.HasThread);
        }
    }

    [Fact]
    public void Serve_TaskFaultsAfterResumingOnTheLoop_ThrowsItsException()
    {
        var loop = new IoLoop();
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int faultedOn = 0;

        ServingThread<int> serving = ServingThread<int>.Start(loop, async () =>
        {
            RunOnAnotherThread(released.SetResult);
            await IoLoop.Resume(released.Task);
            faultedOn = Environment.CurrentManagedThreadId;
            throw new InvalidOperationException("run failed");
        });

        var error = Assert.Throws<InvalidOperationException>(() => serving.Join());
        Assert.Equal("run failed", error.Message);
        Assert.Equal(serving.CallerThread, faultedOn);
        Assert.False(loop.HasThread);
    }

    [Fact]
    public async Task Resume_FaultedTask_ThrowsUnlessToldToSuppressIt()
    {
        Task faulted = Task.FromException(new InvalidOperationException("faulted"));

        await Assert.ThrowsAsync<InvalidOperationException>(async () => await IoLoop.Resume(faulted));
        await IoLoop.Resume(faulted, suppressThrowing: true);
        await Assert.ThrowsAsync<InvalidOperationException>(
            async () => await IoLoop.Resume(Task.FromException<int>(new InvalidOperationException("faulted"))));
    }

    [Fact]
    public void Serve_LoopHasItsOwnThread_OnlyBlocks()
    {
        var loop = new IoLoop();
        (SafeFileHandle idleRead, SafeFileHandle idleWrite) = Posix.Pipe();
        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (idleWrite)
        using (write)
        {
            // Never written: it only starts the loop's thread. Closing the write end at the end hangs
            // it up, and the callback's false then removes it.
            loop.Register(idleRead, _ => false);
            Assert.True(loop.HasThread);

            var readable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            string? callbackThread = null;
            bool serving = true;
            Served<int> served = ServeOnNewThread(loop, async () =>
            {
                serving = IoLoop.IsServingThread;
                loop.Register(read, _ =>
                {
                    callbackThread = Thread.CurrentThread.Name;
                    readable.TrySetResult();
                    return false;
                });
                WriteFromAnotherThread(write);

                await IoLoop.Resume(readable.Task);
                return Environment.CurrentManagedThreadId;
            });

            Assert.False(serving, "the caller served a loop that has its own thread");
            Assert.Equal(LoopThreadName, callbackThread);
            Assert.NotEqual(served.CallerThread, served.Result);
        }
    }

    [Fact]
    public async Task Serve_AnotherCallerServes_OnlyBlocksWhileTheOtherServesItsDescriptors()
    {
        var loop = new IoLoop();
        var firstServing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ServingThread<int> first = ServingThread<int>.Start(loop, async () =>
        {
            firstServing.SetResult();
            await IoLoop.Resume(releaseFirst.Task);
            return 0;
        });

        (SafeFileHandle read, SafeFileHandle write) = Posix.Pipe();
        using (write)
        {
            await firstServing.Task.WaitAsync(s_timeout);

            var readable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            int callbackThread = 0;
            bool serving = true;
            Served<int> second = ServeOnNewThread(loop, async () =>
            {
                serving = IoLoop.IsServingThread;
                loop.Register(read, _ =>
                {
                    callbackThread = Environment.CurrentManagedThreadId;
                    readable.TrySetResult();
                    return false;
                });
                WriteFromAnotherThread(write);

                await IoLoop.Resume(readable.Task);
                return Environment.CurrentManagedThreadId;
            });

            releaseFirst.SetResult();
            first.Join();

            Assert.False(serving, "a second caller served a loop that another caller serves");
            Assert.Equal(first.CallerThread, callbackThread);
            Assert.NotEqual(second.CallerThread, second.Result);
            Assert.False(loop.HasThread);
        }
    }

    /// <summary>Writes a byte to <paramref name="write"/> from another thread, once the caller waits.</summary>
    private static void WriteFromAnotherThread(SafeFileHandle write) =>
        RunOnAnotherThread(() => Posix.WriteAll(write, [1], "write to the test pipe"));

    /// <summary>
    /// Runs <paramref name="action"/> on a new thread after a moment, so that it happens while the
    /// serving thread sleeps in epoll_wait; not on the thread pool, whose threads some tests count.
    /// </summary>
    private static void RunOnAnotherThread(Action action)
    {
        var thread = new Thread(() =>
        {
            Thread.Sleep(50);
            action();
        })
        {
            IsBackground = true,
            Name = "IoLoopTests writer",
        };
        thread.Start();
    }

    private static Served<T> ServeOnNewThread<T>(IoLoop loop, Func<Task<T>> start) =>
        ServingThread<T>.Start(loop, start).Join();

    /// <summary>What <c>Serve</c> returned, and the thread that called it.</summary>
    private sealed record Served<T>(T Result, int CallerThread);

    /// <summary>
    /// A thread that calls <see cref="IoLoop.Serve{T}"/>. Joining it checks that Serve, returning or
    /// throwing, left the thread as it found it: no longer serving, and with no synchronization context.
    /// </summary>
    private sealed class ServingThread<T>
    {
        private readonly Thread _thread;
        private readonly TaskCompletionSource<int> _callerThread = new();
        private T? _result;
        private ExceptionDispatchInfo? _failure;
        private bool _servingAfter = true;
        private SynchronizationContext? _contextAfter;

        private ServingThread(IoLoop loop, Func<Task<T>> start)
        {
            _thread = new Thread(() =>
            {
                _callerThread.SetResult(Environment.CurrentManagedThreadId);
                try
                {
                    _result = loop.Serve(start);
                }
                catch (Exception e)
                {
                    _failure = ExceptionDispatchInfo.Capture(e);
                }

                _servingAfter = IoLoop.IsServingThread;
                _contextAfter = SynchronizationContext.Current;
            })
            {
                IsBackground = true,
                Name = "IoLoopTests caller",
            };
        }

        /// <summary>The managed id of the thread that calls Serve.</summary>
        public int CallerThread => _callerThread.Task.Result;

        public static ServingThread<T> Start(IoLoop loop, Func<Task<T>> start)
        {
            var serving = new ServingThread<T>(loop, start);
            serving._thread.Start();
            return serving;
        }

        public Served<T> Join()
        {
            Assert.True(_thread.Join(s_timeout), "Serve did not return");
            Assert.False(_servingAfter, "the thread still counts as serving after Serve");
            Assert.Null(_contextAfter);
            _failure?.Throw();
            return new Served<T>(_result!, CallerThread);
        }
    }
}
