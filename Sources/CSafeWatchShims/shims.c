#define _GNU_SOURCE
#include "CSafeWatchShims.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
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

// What the child of sw_spawn reads and, on failure, writes: it shares the parent's memory.
struct sw_spawn_child {
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    const int *sources;  // become 0, 1, …, count - 1; all >= count, so no dup2 overwrites one
    int count;
    int death_signal;
    pid_t parent;
    char *listen_pid_digits;  // NULL, or room for 10 digits and a NUL inside an envp entry
    volatile int error;
    volatile int step;
};

// All-zero: SIG_DFL with no flags and an empty mask, whatever the kernel's struct sigaction layout.
static const unsigned long sw_default_action[8];
// The kernel's signal set: 64 signals, one bit each.
static const unsigned long sw_no_signals = 0;
static const unsigned long sw_all_signals = ~0UL;

static _Noreturn void sw_spawn_child_failed(struct sw_spawn_child *child, sw_spawn_step step) {
    child->error = errno;
    child->step = step;
    _exit(127);
}

// Runs in the child, on its own stack, in the parent's memory: async-signal-safe calls only, and
// raw system calls where libc would refuse (its sigaction will not touch the signals it uses itself).
static int sw_spawn_child_main(void *context) {
    struct sw_spawn_child *child = context;

    // Every signal is still blocked (the parent blocked them all before clone), so no handler of
    // safe-watch's can run here on the shared memory. Ignored signals stay ignored across execve:
    // a server must still die of the SIGTERM that stops it.
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        syscall(SYS_rt_sigaction, sig, sw_default_action, NULL, sizeof sw_no_signals);
    }
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &sw_no_signals, NULL, sizeof sw_no_signals);

    // Its own process group (so it is stopped as a group) without a controlling terminal (so it
    // never reads safe-watch's terminal, nor stops on it), but in safe-watch's session: a new
    // session is a new scheduling group when kernel.sched_autogroup_enabled is on, and under load
    // a task in a fresh group waits milliseconds longer for a CPU on every spawn (bench/spawn-latency).
    // TIOCNOTTY from a process that is not the session leader only detaches that process.
    // When the terminal cannot be opened for another reason than having none, a new session
    // detaches it as before.
    int terminal = open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (terminal < 0 && errno != ENXIO) {
        if (setsid() < 0) sw_spawn_child_failed(child, SW_SPAWN_SESSION);
    } else {
        if (setpgid(0, 0) != 0) sw_spawn_child_failed(child, SW_SPAWN_SESSION);
        if (terminal >= 0) {
            int detached = ioctl(terminal, TIOCNOTTY);
            close(terminal);
            if (detached != 0) sw_spawn_child_failed(child, SW_SPAWN_SESSION);
        }
    }
    if (child->death_signal > 0) {
        if (prctl(PR_SET_PDEATHSIG, child->death_signal, 0, 0, 0) != 0)
            sw_spawn_child_failed(child, SW_SPAWN_DEATH_SIGNAL);
        // The parent may have died before the prctl: then nobody would send the signal.
        if (getppid() != child->parent) _exit(127);
    }

    for (int i = 0; i < child->count; i++) {
        if (dup2(child->sources[i], i) < 0) sw_spawn_child_failed(child, SW_SPAWN_DESCRIPTORS);
    }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)child->count, ~0U, 0) != 0)
#endif
    {
        // Before Linux 5.9: close them one by one, up to the descriptor limit.
        struct rlimit limit;
        long last = (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                     && limit.rlim_cur < (1 << 20)) ? (long)limit.rlim_cur : (1 << 20);
        for (long fd = child->count; fd < last; fd++) close((int)fd);
    }

    if (child->cwd != NULL && chdir(child->cwd) != 0) sw_spawn_child_failed(child, SW_SPAWN_WORKING_DIRECTORY);

    if (child->listen_pid_digits != NULL) {
        char reversed[12];
        int length = 0;
        for (unsigned long value = (unsigned long)getpid(); length == 0 || value > 0; value /= 10)
            reversed[length++] = (char)('0' + value % 10);
        for (int i = 0; i < length; i++) child->listen_pid_digits[i] = reversed[length - 1 - i];
        child->listen_pid_digits[length] = '\0';
    }

    execve(child->path, child->argv, child->envp);
    sw_spawn_child_failed(child, SW_SPAWN_EXEC);
}

// The child's stack: it only makes system calls, but libc wrappers and a signal frame need room.
#define SW_SPAWN_STACK_SIZE (64 * 1024)
#define SW_SPAWN_MAX_PASSED 64

int sw_spawn(pid_t *pid, sw_spawn_step *failed_step, const char *path, char *const argv[], char *const envp[],
             const char *cwd, int stdin_fd, int stdout_fd, int stderr_fd,
             const int *pass_fds, int pass_count, int death_signal, int set_listen_pid) {
    int sources[3 + SW_SPAWN_MAX_PASSED];
    int prepared = 0;
    int rc = 0;
    struct sw_spawn_child child = {
        .path = path, .argv = argv, .envp = envp, .cwd = cwd, .sources = sources,
        .count = 3 + pass_count, .death_signal = death_signal, .parent = getpid(),
        .listen_pid_digits = NULL, .error = 0, .step = SW_SPAWN_PREPARE,
    };
    *failed_step = SW_SPAWN_PREPARE;
    if (pass_count < 0 || pass_count > SW_SPAWN_MAX_PASSED) return EINVAL;

    if (set_listen_pid) {
        static const char name[] = "LISTEN_PID=";
        for (char *const *entry = envp; *entry != NULL; entry++) {
            if (strncmp(*entry, name, sizeof name - 1) == 0 && strlen(*entry) >= sizeof name - 1 + 10) {
                child.listen_pid_digits = *entry + sizeof name - 1;
                break;
            }
        }
        if (child.listen_pid_digits == NULL) return EINVAL;
    }

    // Every source moves above the target range first, so that dup2(source, i) in the child never
    // overwrites a source still to come — also when safe-watch itself was started with 0, 1 or 2
    // closed and a pipe got one of those numbers.
    for (; prepared < child.count; prepared++) {
        int source = prepared == 0 ? stdin_fd : prepared == 1 ? stdout_fd : prepared == 2 ? stderr_fd
                                                                 : pass_fds[prepared - 3];
        int opened = -1;
        if (source < 0) {
            opened = open("/dev/null", (prepared == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
            if (opened < 0) { rc = errno; break; }
            source = opened;
        }
        sources[prepared] = fcntl(source, F_DUPFD_CLOEXEC, child.count);
        if (sources[prepared] < 0) rc = errno;
        if (opened >= 0) close(opened);
        if (rc != 0) break;
    }

    void *stack = MAP_FAILED;
    if (rc == 0) {
        stack = mmap(NULL, SW_SPAWN_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) rc = errno;
    }
    if (rc == 0) {
        // Blocks every signal, libc's own too, until the child has reset their dispositions.
        unsigned long previous = 0;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &sw_all_signals, &previous, sizeof previous);
        pid_t created = clone(sw_spawn_child_main, (char *)stack + SW_SPAWN_STACK_SIZE,
                              CLONE_VM | CLONE_VFORK | SIGCHLD, &child);
        if (created < 0) rc = errno;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, NULL, sizeof previous);
        if (created > 0 && child.error != 0) {
            // It exited without running the program: reap it here, nobody else knows its pid.
            while (waitpid(created, NULL, 0) < 0 && errno == EINTR) {}
            rc = child.error;
            *failed_step = (sw_spawn_step)child.step;
        } else if (created > 0) {
            *pid = created;
        }
    }

    if (stack != MAP_FAILED) munmap(stack, SW_SPAWN_STACK_SIZE);
    for (int i = 0; i < prepared; i++) close(sources[i]);
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
