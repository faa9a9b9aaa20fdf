namespace Confine.Tests.Isolation;

/// <summary>
/// A shell script that looks at the sandbox from inside and prints what it sees as key=value
/// lines. The same probe runs through the library as root and through the CLI as an
/// unprivileged user, so both paths are held to the same facts.
/// </summary>
internal static class IsolationProbe
{
    public const string Script = """
        echo "pid=$$"
        echo "init=$(cat /proc/1/comm)"
        echo "pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
        echo "cmdlines=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ')"
        if touch /probe-root 2>/tmp/err; then echo "root_write=ok"; else echo "root_write=$(cat /tmp/err)"; fi
        if touch /usr/probe 2>/tmp/err; then echo "usr_write=ok"; else echo "usr_write=$(cat /tmp/err)"; fi
        if echo hi > /tmp/probe && [ "$(cat /tmp/probe)" = hi ]; then echo "tmp_write=ok"; fi
        echo "tmp_cap=$(head -c 300M /dev/zero 2>&1 >/tmp/big || true)" 
        rm -f /tmp/big
        echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
        echo "root_entries=$(ls / | tr '\n' ' ')"
        for p in /home /root /work /sys /var /opt /run; do [ -e "$p" ] && echo "visible=$p"; done
        grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
        echo "hostname=$(cat /proc/sys/kernel/hostname)"
        echo "fds_begin"
        ls /proc/$$/fd
        echo "fds_end"
        echo "env=$(env | grep -v '^PWD=' | sort | tr '\n' ' ')"
        echo "uid=$(id -u)"
        echo "gid=$(id -g)"
        echo "sid_is_self=$( [ "$(cut -d' ' -f6 /proc/$$/stat)" = "$$" ] && echo yes || echo no)"
        echo "tty_nr=$(cut -d' ' -f7 /proc/$$/stat)"
        if echo 1 > /proc/sys/kernel/core_pattern 2>/tmp/err; then echo "proc_sys_write=ok"; else echo "proc_sys_write=$(cat /tmp/err)"; fi
        for f in kcore keys kallsyms timer_list; do echo "$f=$( [ -e /proc/$f ] && wc -c < /proc/$f 2>&1 || echo absent)"; done
        echo "dev=$(ls /dev | tr '\n' ' ')"
        echo "core_limit=$(ulimit -c)"
        """;
}
