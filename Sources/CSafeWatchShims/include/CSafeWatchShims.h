#ifndef CSAFEWATCHSHIMS_H
#define CSAFEWATCHSHIMS_H

#include <stddef.h>
#include <sys/types.h>

/// The step of `sw_spawn` that failed: before the child existed, or in the child before its
/// program ran.
typedef enum sw_spawn_step {
    SW_SPAWN_PREPARE = 0,          // in the parent: descriptors, stack, clone
    SW_SPAWN_DESCRIPTORS = 1,      // dup2 into 0, 1, 2, 3, …
    SW_SPAWN_SESSION = 2,          // setpgid and TIOCNOTTY (setsid when the terminal cannot be opened)
    SW_SPAWN_DEATH_SIGNAL = 3,     // prctl(PR_SET_PDEATHSIG)
    SW_SPAWN_WORKING_DIRECTORY = 4, // chdir
    SW_SPAWN_EXEC = 5,             // execve
} sw_spawn_step;

/// Spawns `path` in its own process group, without a controlling terminal (still in the caller's
/// session, so in its scheduling autogroup), with every signal reset to its default disposition
/// and an empty signal mask, without exec'ing anything but `path`.
///
/// The child is created with clone(CLONE_VM | CLONE_VFORK) on a small stack of its own and does
/// only async-signal-safe system calls before execve; the parent resumes once it has exec'd or
/// failed, and learns the failure's errno and step through the memory they share.
///
/// - `stdin_fd`, `stdout_fd`, `stderr_fd` become 0, 1 and 2 (-1: /dev/null).
/// - `pass_fds[0..<pass_count]` become 3, 4, … in the child (socket handoff, LISTEN_FDS).
/// - every other descriptor is closed in the child (close_range), whatever its CLOEXEC flag.
/// - `cwd` (may be NULL) is the child's working directory.
/// - `death_signal` > 0: the child gets it when the calling *thread* exits (PR_SET_PDEATHSIG). If
///   the parent died before the prctl took effect, the child exits with 127 instead of running.
/// - `set_listen_pid`: `envp` must hold `LISTEN_PID=` followed by at least 10 placeholder
///   characters; the child writes its own pid there (socket activation needs the server's pid,
///   known only in the child).
///
/// Returns 0 and sets `*pid`, or an errno value with `*failed_step` saying where (the child, if
/// one was created, is already reaped then).
int sw_spawn(pid_t *pid, sw_spawn_step *failed_step, const char *path, char *const argv[], char *const envp[],
             const char *cwd, int stdin_fd, int stdout_fd, int stderr_fd,
             const int *pass_fds, int pass_count, int death_signal, int set_listen_pid);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of our children are reparented to us.
int sw_set_child_subreaper(void);

/// prctl(PR_SET_PDEATHSIG, sig): `sig` is delivered when the thread that spawned us exits.
int sw_set_parent_death_signal(int sig);

/// prctl(PR_SET_NAME, name): the calling thread's name, cut to its first 15 bytes (what
/// pthread_setname_np refuses with ERANGE instead; it also needs _GNU_SOURCE).
int sw_set_thread_name(const char *name);

/// The errno of the calling thread (Swift cannot read the `errno` macro portably). Swift code reads
/// it through `Errno.current`, right after the call that failed.
int sw_errno(void);

/// pipe2(fds, O_CLOEXEC); needs _GNU_SOURCE.
int sw_pipe_cloexec(int fds[2]);

/// statfs(path)'s f_type (the file system's magic number) in *type; 0, or -1 with errno set.
/// Glibc's Swift module does not include <sys/vfs.h>.
int sw_statfs_type(const char *path, long long *type);

/// The pid of the process at the other end of a connected Unix socket (SO_PEERCRED), or -1.
/// struct ucred needs _GNU_SOURCE, which Glibc's Swift module is not built with.
int sw_peer_pid(int fd);

/// pidfd_open(pid, 0): a descriptor that names this very process until it is closed, whoever reaps
/// it and whatever later gets its pid (Linux 5.3). -1 with errno set.
int sw_pidfd_open(pid_t pid);

/// pidfd_send_signal(pidfd, sig): to the process, or with `to_group` to the process group it leads
/// (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9; EINVAL before). 0, or -1 with errno set.
int sw_pidfd_send_signal(int pidfd, int sig, int to_group);

/// Bytes of heap in use (mallinfo2's uordblks + hblkhd: every arena, mmapped blocks included), for
/// tests that check that something leaves no memory behind. Glibc's Swift module lacks mallinfo2.
size_t sw_heap_in_use(void);

#endif
