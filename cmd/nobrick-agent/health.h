/* health.h - the product's health check as a command: fork/exec, wait
 * with a timeout, kill on timeout (struct nb_agent_health_check).
 *
 * The command runs as `/bin/sh -c COMMAND` in its own process group, with
 * stdin from /dev/null and NOBRICK_VERSION set to the version on trial.
 * Exit code 0 is healthy; any other exit, a signal, or running past the
 * timeout (the whole group is then killed with SIGKILL) is unhealthy.
 */
#ifndef HEALTH_H
#define HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"

struct nb_health_cmd {
    const char *command; /* NULL or "": no check (always healthy) */
};

/* Fill `h` (ctx = hc). */
void nb_health_cmd_interface(struct nb_health_cmd *hc,
                             struct nb_agent_health_check *h);

/* Run `command` once: *healthy, and one line in detail. NB_ERR_IO when
 * the process could not be started. */
nb_err nb_health_run(const char *command, const char *version,
                     uint32_t timeout_ms, int *healthy, char *detail,
                     size_t cap);

#endif
