/* health.c - the health check command; see health.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "health.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

nb_err nb_health_run(const char *command, const char *version,
                     uint32_t timeout_ms, int *healthy, char *detail,
                     size_t cap)
{
    *healthy = 0;
    uint64_t t0 = mono_ms();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(detail, cap, "health check not started: fork: %s",
                 strerror(errno));
        return NB_ERR_IO;
    }
    if (pid == 0) {
        /* Its own process group, so a timeout kills what it started. */
        setpgid(0, 0);
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 0);
            if (fd > 2)
                close(fd);
        }
        if (version)
            setenv("NOBRICK_VERSION", version, 1);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: whoever runs first wins the race */
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(detail, cap, "health check lost: waitpid: %s",
                     strerror(errno));
            return NB_ERR_IO;
        }
        uint64_t el = mono_ms() - t0;
        if (el >= timeout_ms) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            snprintf(detail, cap, "health check timed out after %.1f s "
                     "(killed)", (double)timeout_ms / 1000.0);
            return NB_OK;
        }
        /* Poll every 10 ms: simple, and the check lasts seconds. */
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    double secs = (double)(mono_ms() - t0) / 1000.0;
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        *healthy = code == 0;
        if (code == 127)
            snprintf(detail, cap, "health check exited 127 in %.1f s "
                     "(command not found?)", secs);
        else
            snprintf(detail, cap, "health check exited %d in %.1f s", code,
                     secs);
    } else if (WIFSIGNALED(status)) {
        snprintf(detail, cap, "health check killed by signal %d after "
                 "%.1f s", WTERMSIG(status), secs);
    } else {
        snprintf(detail, cap, "health check ended oddly (status 0x%x)",
                 (unsigned)status);
    }
    return NB_OK;
}

static nb_err run(void *ctx, const char *version, uint32_t timeout_ms,
                  int *healthy, char *detail, size_t cap)
{
    const struct nb_health_cmd *hc = ctx;
    return nb_health_run(hc->command, version, timeout_ms, healthy, detail,
                         cap);
}

void nb_health_cmd_interface(struct nb_health_cmd *hc,
                             struct nb_agent_health_check *h)
{
    h->ctx = hc;
    h->run = hc->command && hc->command[0] ? run : NULL;
}
