#define _GNU_SOURCE
#include "CSafeWatchShims.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

int sw_errno(void) { return errno; }

int sw_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int sw_statfs_type(const char *path, long long *type) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    *type = (long long)info.f_type;
    return 0;
}

int sw_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int sw_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int sw_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

int sw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const char *cwd, int stdin_fd, int stdout_fd, int stderr_fd,
             const int *pass_fds, int pass_count) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int high[64];
    int rc;

    if (pass_count < 0 || pass_count > 64) return EINVAL;

    // Move the passed descriptors above the target range first, so that dup2(src, 3 + i) can
    // never overwrite a source that is itself in 3 ..< 3 + pass_count.
    for (int i = 0; i < pass_count; i++) {
        high[i] = fcntl(pass_fds[i], F_DUPFD_CLOEXEC, 3 + pass_count);
        if (high[i] < 0) {
            rc = errno;
            for (int j = 0; j < i; j++) close(high[j]);
            return rc;
        }
    }

    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);

    if (stdin_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    else posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    else posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < pass_count; i++) posix_spawn_file_actions_adddup2(&actions, high[i], 3 + i);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3 + pass_count);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);

    // Dispatch signal sources need SIG_IGN in the parent; a child must not inherit that, or it
    // would ignore the SIGTERM we stop it with.
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);

    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    for (int i = 0; i < pass_count; i++) close(high[i]);
    return rc;
}

int sw_peer_pid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return credentials.pid;
}

// Glibc 2.36's <sys/pidfd.h> has the calls but not the flag, which Linux 6.9 added.
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif

int sw_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int sw_pidfd_send_signal(int pidfd, int sig, int to_group) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, to_group ? PIDFD_SIGNAL_PROCESS_GROUP : 0U);
}

size_t sw_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}
