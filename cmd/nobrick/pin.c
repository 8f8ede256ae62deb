/* pin.c - where the token PINs come from: --pin (or --so-pin), else the
 * environment (NOBRICK_PIN, NOBRICK_SO_PIN), else a prompt on the
 * terminal with echo off. Every copy is wiped once used: the option's
 * argv string and the environment variable as soon as they are copied
 * here, the caller's buffer after C_Login. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "nobrick.h"

void wipe_str(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
}

static int take(char *src, const char *what, char pin[PIN_MAX])
{
    size_t n = strlen(src);
    if (n == 0)
        return fail("%s is empty", what);
    if (n >= PIN_MAX) {
        wipe_str(src);
        return fail("%s is longer than %d bytes", what, PIN_MAX - 1);
    }
    memcpy(pin, src, n + 1);
    wipe_str(src);
    return 0;
}

/* The terminal state to restore if a signal arrives during the prompt. */
static struct termios saved_tio;
static volatile sig_atomic_t echo_off;

static void restore_and_die(int sig)
{
    if (echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read one line from the terminal on stdin, echo off. */
static int prompt(const char *text, char out[PIN_MAX])
{
    struct termios tio;
    struct sigaction sa, old_int, old_term;
    if (tcgetattr(STDIN_FILENO, &saved_tio) != 0)
        return fail("cannot read the terminal settings: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = restore_and_die;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    tio = saved_tio;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    tio.c_lflag |= ICANON;
    echo_off = 1;
    int rc = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) != 0) {
        echo_off = 0;
        rc = fail("cannot turn the terminal echo off: %s", strerror(errno));
        goto out;
    }
    fputs(text, stderr);
    fflush(stderr);
    size_t n = 0;
    int too_long = 0;
    for (;;) {
        char ch;
        ssize_t r = read(STDIN_FILENO, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || ch == '\n')
            break;
        if (n + 1 < PIN_MAX)
            out[n++] = ch;
        else
            too_long = 1;
        ch = 0;
    }
    out[n] = '\0';
    fputc('\n', stderr);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
    echo_off = 0;
    if (n > 0 && out[n - 1] == '\r')
        out[--n] = '\0';
    if (too_long) {
        explicit_bzero(out, PIN_MAX);
        rc = fail("the PIN is longer than %d bytes", PIN_MAX - 1);
    } else if (n == 0) {
        rc = fail("no PIN entered");
    }
out:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

static int get_pin(char *arg, const char *opt, const char *env,
                   const char *what, const char *ask, int confirm,
                   char pin[PIN_MAX])
{
    char name[64];
    snprintf(name, sizeof(name), "the %s (%s)", what, opt);
    if (arg)
        return take(arg, name, pin);
    char *e = getenv(env);
    if (e) {
        snprintf(name, sizeof(name), "the %s (%s)", what, env);
        int rc = take(e, name, pin);
        unsetenv(env);
        return rc;
    }
    if (!isatty(STDIN_FILENO))
        return fail("no %s: pass %s, set %s, or run on a terminal", what,
                    opt, env);
    char text[128];
    snprintf(text, sizeof(text), "%s: ", ask);
    if (prompt(text, pin))
        return EXIT_FAIL;
    if (!confirm)
        return 0;
    char again[PIN_MAX];
    snprintf(text, sizeof(text), "%s (again): ", ask);
    int rc = prompt(text, again);
    if (!rc && strcmp(pin, again) != 0)
        rc = fail("the two %ss differ", what);
    explicit_bzero(again, sizeof(again));
    if (rc)
        explicit_bzero(pin, PIN_MAX);
    return rc;
}

int get_user_pin(struct ctx *g, int confirm, char pin[PIN_MAX])
{
    char ask[96];
    snprintf(ask, sizeof(ask), "%s of token '%s'",
             confirm ? "New user PIN" : "PIN",
             g->token ? g->token : NB_P11_DEFAULT_TOKEN);
    int rc = get_pin(g->pin_arg, "--pin", "NOBRICK_PIN", "PIN", ask, confirm,
                     pin);
    g->pin_arg = NULL; /* wiped: never used twice */
    return rc;
}

int get_so_pin(char *so_arg, int confirm, char pin[PIN_MAX])
{
    return get_pin(so_arg, "--so-pin", "NOBRICK_SO_PIN", "SO PIN",
                   "Security officer (SO) PIN of the new token", confirm, pin);
}
