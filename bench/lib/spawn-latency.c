// Driver of bench/spawn-latency: times one spawn + exit + reap of /bin/true by each method, the
// methods taking turns so that they share the machine's load. Prints "method microseconds" lines.
//
//   spawn-latency ROUNDS OLD_SAFE_WATCH|- SAFE_WATCH|-
//
// Methods: sw_spawn (safe-watch's spawn, linked from Sources/CSafeWatchShims/shims.c), posix_spawn
// (glibc, no parent-death signal), trampoline (the old path: posix_spawn of OLD_SAFE_WATCH
// __exec-child, which execs /bin/true after setting the death signal) and exec-safe-watch
// (posix_spawn of `SAFE_WATCH --version`: what exec'ing the 100 MB binary costs at all).
#include "CSafeWatchShims.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void reap(pid_t pid, const char *what) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && strcmp(what, "exec-safe-watch") != 0)) {
        fprintf(stderr, "%s: child ended with status %d\n", what, status);
        exit(1);
    }
}

static void with_posix_spawn(const char *what, const char *path, char *const argv[]) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", 1, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", 1, 0);
    pid_t pid;
    double start = now_us();
    int rc = posix_spawn(&pid, path, &actions, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "%s: posix_spawn: %s\n", what, strerror(rc));
        exit(1);
    }
    reap(pid, what);
    printf("%s %.1f\n", what, now_us() - start);
    posix_spawn_file_actions_destroy(&actions);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: spawn-latency ROUNDS OLD_SAFE_WATCH|- SAFE_WATCH|-\n");
        return 64;
    }
    int rounds = atoi(argv[1]);
    const char *old = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    const char *current = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
    char parent[16];
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    char *true_argv[] = {"true", NULL};
    char *trampoline_argv[] = {(char *)old, "__exec-child", parent, "15", "--", "/bin/true", NULL};
    char *version_argv[] = {(char *)current, "--version", NULL};

    for (int round = 0; round < rounds; round++) {
        pid_t pid;
        sw_spawn_step step;
        double start = now_us();
        int rc = sw_spawn(&pid, &step, "/bin/true", true_argv, environ, NULL, -1, -1, -1, NULL, 0, SIGTERM, 0);
        if (rc != 0) {
            fprintf(stderr, "sw_spawn: %s (step %d)\n", strerror(rc), (int)step);
            return 1;
        }
        reap(pid, "sw_spawn");
        printf("sw_spawn %.1f\n", now_us() - start);

        with_posix_spawn("posix_spawn", "/bin/true", true_argv);
        if (old) with_posix_spawn("trampoline", old, trampoline_argv);
        if (current) with_posix_spawn("exec-safe-watch", current, version_argv);
        fflush(stdout);
    }
    return 0;
}
