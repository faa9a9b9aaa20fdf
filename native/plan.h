/* The plan format shared by Confine's C# planner (src/Confine/Planning/PlanWriter.cs) and the helper.
 *
 * A run has two plans. The setup plan, on FD_PLAN at start (a memfd, or a pipe the helper reads to
 * its end), builds the sandbox: namespaces, ids, cgroups, the root filesystem. The command plan says what to run in it: argv, environment, ids,
 * rlimits, seccomp, Landlock. It arrives on the report socket as a memfd (SCM_RIGHTS) with a
 * 4-byte PLAN_MAGIC message, at any time after the start: the init reads it once the sandbox is
 * built and has sent REPORT_READY. Splitting them lets a caller build a sandbox before it knows
 * the command. The same message carries one more descriptor for each PLAN_CGROUP_TASKS record of
 * the command plan, in record order, after the plan's own.
 *
 * A plan is a header followed by records, all little-endian, no padding:
 *
 *   header:  u32 magic (PLAN_MAGIC), u32 version (PLAN_VERSION)
 *   record:  u32 type, u32 length, then `length` bytes of payload
 *
 * Strings in payloads end with a NUL that `length` counts. The C# side decides everything; records
 * come in the order the helper must act on them. A record type this version does not know is an
 * error, never skipped: a plan from a newer Confine must not run half-understood.
 *
 * Reports go the other way, one `struct report` per SOCK_SEQPACKET message on the report socket.
 * The C# mirror of these numbers is src/Confine/Native/HelperProtocol.cs; a test compiles a C
 * program against this header to check that both agree.
 */
#ifndef CONFINE_PLAN_H
#define CONFINE_PLAN_H

#include <stdint.h>

#define PLAN_MAGIC 0x50464e43u /* "CNFP" */
#define PLAN_VERSION 1u

/* Descriptors the helper is started with. */
#define FD_PLAN 3
#define FD_REPORT 4
#define FD_LIFELINE 5

/* A setup plan on a pipe (a helper started before its plan was known) follows this one byte,
 * which Confine writes once its runtime has started. Only then does the init make its network
 * namespace: making one holds sysfs's lock for a while, and the runtime's start looks up cgroup
 * and CPU files under /sys, so doing it earlier would delay that start by as much as it saves. */
#define PLAN_PIPE_START 'S'

enum plan_record_type {
  PLAN_CLONE_FLAGS = 1,    /* u32: CLONE_NEW* flags for the init */
  PLAN_UID_MAP = 2,        /* string: written to the init's uid_map */
  PLAN_GID_MAP = 3,        /* string: written to the init's gid_map */
  PLAN_SETGROUPS_DENY = 4, /* empty: write "deny" to setgroups before gid_map */
  /* 5 is unused: a v2 cgroup is joined by the caller, which writes the init's pid on
   * REPORT_INIT_PID; a v1 cgroup is joined by the init itself (PLAN_CGROUP_TASKS). */
  PLAN_BASE_DIR = 6,       /* string: host directory to mount the staging tmpfs on */
  PLAN_ROOTFS = 7,         /* string: tmpfs options for the sandbox's root */
  PLAN_MOUNT = 8,          /* struct plan_mount, then source, target, data strings */
  PLAN_HOSTNAME = 9,       /* string */
  PLAN_LOOPBACK_UP = 10,   /* empty: bring up lo in the new network namespace */
  PLAN_WORKDIR = 11,       /* string */
  PLAN_ARG = 12,           /* string: one argv entry, in order */
  PLAN_ENV = 13,           /* string: one KEY=VALUE entry */
  PLAN_RLIMIT = 14,        /* struct plan_rlimit */
  PLAN_USER = 15,          /* struct plan_user: the command's ids inside */
  PLAN_NESTED_USERNS = 16, /* empty: map the command's ids in a nested user namespace */
  PLAN_SECCOMP = 17,       /* u32 flags, then the BPF program (struct sock_filter[]) */
  PLAN_LANDLOCK = 18,      /* struct plan_landlock, then rules: u64 access + path string, repeated */
  PLAN_CGROUP_TASKS = 19,  /* string: a v1 `tasks` file the init writes 0 to, joining that cgroup;
                            * named for error reports, its descriptor comes with the command plan */
};

enum plan_mount_op {
  MOUNT_OP_BIND = 1,     /* source (host) onto target; flags MOUNT_FLAG_* */
  MOUNT_OP_TMPFS = 2,    /* tmpfs at target with `data` options */
  MOUNT_OP_PROC = 3,     /* a new proc at target */
  MOUNT_OP_SYMLINK = 4,  /* symlink at target pointing to `source` */
  MOUNT_OP_MKDIR = 5,    /* directory at target */
  MOUNT_OP_MASK = 6,     /* hide target: /dev/null over a file, an empty tmpfs over a directory */
  MOUNT_OP_READONLY = 7, /* make the already-mounted tree at target read-only */
};

enum plan_mount_flag {
  MOUNT_FLAG_WRITABLE = 1u << 0,  /* leave the bind writable */
  MOUNT_FLAG_DEVICES = 1u << 1,   /* allow device nodes (the /dev binds only) */
  MOUNT_FLAG_OPTIONAL = 1u << 2,  /* skip silently if the source is missing */
  MOUNT_FLAG_SUBMOUNTS = 1u << 3, /* the source has mounts beneath it (read-only binds only) */
};

struct plan_mount {
  uint32_t op;
  uint32_t flags;
  uint64_t mount_flags; /* MS_* for MOUNT_OP_TMPFS */
};

struct plan_landlock {
  uint64_t handled_access_fs;
  uint64_t handled_access_net; /* Landlock ABI 4 and later; 0 otherwise */
  uint64_t scoped;             /* Landlock ABI 6 and later; 0 otherwise */
};

struct plan_rlimit {
  uint32_t resource;
  uint32_t reserved;
  uint64_t soft;
  uint64_t hard;
};

struct plan_user {
  uint32_t uid;
  uint32_t gid;
};

enum report_type {
  REPORT_ERROR = 1,    /* a step failed: step, err, detail */
  REPORT_INIT_PID = 2, /* the init's pid as the host sees it, in pid; its pidfd rides along as SCM_RIGHTS */
  REPORT_EXEC = 3,     /* the command is about to execve: time_ns */
  REPORT_EXIT = 4,     /* the command ended: status, rusage fields, time_ns */
  REPORT_INIT_GONE = 5, /* the init ended without REPORT_EXIT (it was killed): status */
  REPORT_LISTENER = 6,  /* the seccomp notification descriptor rides along as SCM_RIGHTS */
  REPORT_READY = 7      /* the sandbox is built and waits for its command plan */
};

/* Steps, in the order they run. The numbers travel in reports; never renumber. */
enum step {
  STEP_READ_PLAN = 1,
  STEP_CLONE = 2,
  STEP_UID_MAP = 3,
  STEP_SETGROUPS = 4,
  STEP_GID_MAP = 5,
  STEP_CGROUP_JOIN = 6, /* runs after STEP_COMMAND_PLAN: the init joins once it has the plan */
  STEP_WAIT_PARENT = 7,
  STEP_MOUNT_PRIVATE = 8,
  STEP_STAGING = 9,
  STEP_ROOTFS = 10,
  STEP_MOUNT = 11,
  STEP_SUBMOUNTS_READONLY = 12,
  STEP_PIVOT_ROOT = 13,
  STEP_ROOT_READONLY = 14,
  STEP_HOSTNAME = 15,
  STEP_LOOPBACK = 16,
  STEP_FORK = 17,
  STEP_NESTED_USERNS = 18,
  STEP_SETSID = 19,
  STEP_RLIMIT = 20,
  STEP_DROP_BOUNDING = 21,
  STEP_SETGID = 22,
  STEP_SETUID = 23,
  STEP_DROP_CAPS = 24,
  STEP_WORKDIR = 25,
  STEP_NO_NEW_PRIVS = 26,
  STEP_LANDLOCK = 27,
  STEP_SECCOMP = 28,
  STEP_EXEC = 29,
  STEP_SUPERVISE = 30,
  STEP_COMMAND_PLAN = 31,
};

#define REPORT_DETAIL_SIZE 256

struct report {
  uint32_t type;
  uint32_t step;
  int32_t err;
  int32_t status;
  int64_t time_ns; /* CLOCK_MONOTONIC */
  int64_t pid;
  int64_t utime_us;
  int64_t stime_us;
  int64_t maxrss_kb;
  char detail[REPORT_DETAIL_SIZE];
};

#endif
