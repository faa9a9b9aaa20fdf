using System.Runtime.InteropServices;
using Confine.Native;
using Microsoft.Win32.SafeHandles;

namespace Confine.Running;

/// <summary>
/// Starts the C helper with exactly the descriptors it expects and nothing else. posix_spawn (a
/// vfork underneath) keeps the cost flat however large the calling process is; a fork of a
/// 500 MiB service costs tens of milliseconds in page-table copies alone.
/// </summary>
internal static unsafe class HelperProcess
{
    private static readonly Lazy<string> s_path = new(FindHelper);

    public static string Path => s_path.Value;

    /// <summary>
    /// Spawns the helper; <paramref name="descriptors"/> become its fds 0, 1, 2, ... in order and every
    /// other descriptor is closed in the child.
    /// </summary>
    public static int Spawn(IReadOnlyList<SafeFileHandle> descriptors)
    {
        string path = Path;
        void* actions = NativeMemory.AllocZeroed(Interop.PosixSpawnFileActionsSize);
        void* attributes = NativeMemory.AllocZeroed(Interop.PosixSpawnAttrSize);
        byte* name = (byte*)Marshal.StringToCoTaskMemUTF8("confine-helper");
        var added = new List<SafeFileHandle>();
        try
        {
            CheckSpawn(Interop.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
            CheckSpawn(Interop.posix_spawnattr_init(attributes), "posix_spawnattr_init");

            for (int target = 0; target < descriptors.Count; target++)
            {
                bool refAdded = false;
                descriptors[target].DangerousAddRef(ref refAdded);
                added.Add(descriptors[target]);
                int fd = (int)descriptors[target].DangerousGetHandle();
                // A descriptor that is already in place would keep its close-on-exec flag through dup2
                // to itself; the helper clears the flags it needs, but keep the spawn exact anyway.
                CheckSpawn(Interop.posix_spawn_file_actions_adddup2(actions, fd, target), "adddup2");
            }

            CheckSpawn(Interop.posix_spawn_file_actions_addclosefrom_np(actions, descriptors.Count), "addclosefrom_np");

            // The runtime blocks and ignores signals for its own use (SIGPIPE is ignored); the
            // sandbox must start from the defaults.
            ulong mask;
            ulong all;
            Interop.sigemptyset(&mask);
            Interop.sigfillset(&all);
            CheckSpawn(Interop.posix_spawnattr_setsigmask(attributes, &mask), "setsigmask");
            CheckSpawn(Interop.posix_spawnattr_setsigdefault(attributes, &all), "setsigdefault");
            CheckSpawn(
                Interop.posix_spawnattr_setflags(
                    attributes, Interop.POSIX_SPAWN_SETSIGMASK | Interop.POSIX_SPAWN_SETSIGDEF),
                "setflags");

            byte** argv = stackalloc byte*[2];
            argv[0] = name;
            argv[1] = null;
            byte** envp = stackalloc byte*[1];
            envp[0] = null;

            int pid;
            int error = Interop.posix_spawn(&pid, path, actions, attributes, argv, envp);
            if (error != 0)
            {
                throw new ErrnoException(error, $"posix_spawn {path}");
            }

            return pid;
        }
        finally
        {
            foreach (SafeFileHandle handle in added)
            {
                handle.DangerousRelease();
            }

            Interop.posix_spawn_file_actions_destroy(actions);
            Interop.posix_spawnattr_destroy(attributes);
            NativeMemory.Free(actions);
            NativeMemory.Free(attributes);
            Marshal.FreeCoTaskMem((nint)name);
        }
    }

    private static void CheckSpawn(int error, string what)
    {
        if (error != 0)
        {
            throw new ErrnoException(error, what);
        }
    }

    private static string FindHelper()
    {
        string? overridePath = Environment.GetEnvironmentVariable("CONFINE_HELPER");
        if (!string.IsNullOrEmpty(overridePath))
        {
            return overridePath;
        }

        string beside = System.IO.Path.Combine(AppContext.BaseDirectory, "confine-helper");
        return beside;
    }

    /// <summary>Whether the helper binary is present and executable; the message says what to do when not.</summary>
    public static bool IsAvailable(out string problem)
    {
        string path = Path;
        if (!File.Exists(path))
        {
            problem = $"the helper binary {path} is missing: rebuild Confine (dotnet build) or set CONFINE_HELPER";
            return false;
        }

        if ((File.GetUnixFileMode(path) & UnixFileMode.UserExecute) == 0)
        {
            problem = $"the helper binary {path} is not executable";
            return false;
        }

        problem = "";
        return true;
    }

}
