// Driver of bench/spawn-latency: times one spawn + exit + reap of /bin/true by each method, the
// methods taking turns (in random order) so that they share the machine's load. Prints "method microseconds" lines.
//
//   spawn-latency ROUNDS OLD_SAFE_WATCH|- SAFE_WATCH|-
//
// Methods: sw_spawn (safe-watch's spawn, linked from Sources/CSafeWatchShims/shims.c), posix_spawn
// (glibc, no parent-death signal, no new session), posix_spawn+setsid (the same in a new session,
// as safe-watch's children are), trampoline (the old path: posix_spawn with a new session of
// OLD_SAFE_WATCH __exec-child, which execs /bin/true after setting the death signal) and
// exec-safe-watch (posix_spawn of `SAFE_WATCH --version` in a new session: what exec'ing the
// 100 MB binary costs at all).
#define _GNU_SOURCE
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

static void with_posix_spawn(const char *what, const char *path, char *const argv[], int new_session) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    if (new_session) posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", 1, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", 1, 0);
    pid_t pid;
    double start = now_us();
    int rc = posix_spawn(&pid, path, &actions, &attr, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "%s: posix_spawn: %s\n", what, strerror(rc));
        exit(1);
    }
    reap(pid, what);
    printf("%s %.1f\n", what, now_us() - start);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
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

    // The methods take turns in a new random order each round: whichever runs right after the
    // 100 MB exec of another pays for the memory it freed, so no method may always come second.
    srand((unsigned)getpid());
    for (int round = 0; round < rounds; round++) {
        int order[5] = {0, 1, 2, 3, 4};
        for (int i = 4; i > 0; i--) {
            int j = rand() % (i + 1), swap = order[i];
            order[i] = order[j];
            order[j] = swap;
        }
        for (int k = 0; k < 5; k++) {
            if (order[k] == 0) {
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
            } else if (order[k] == 1) {
                with_posix_spawn("posix_spawn", "/bin/true", true_argv, 0);
            } else if (order[k] == 2 && old) {
                with_posix_spawn("trampoline", old, trampoline_argv, 1);
            } else if (order[k] == 3 && current) {
                with_posix_spawn("exec-safe-watch", current, version_argv, 1);
            } else if (order[k] == 4) {
                with_posix_spawn("posix_spawn+setsid", "/bin/true", true_argv, 1);
            }
        }
        fflush(stdout);
    }
    return 0;
}
