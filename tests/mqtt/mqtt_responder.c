/* mqtt_responder.c - runs lib/nb_mqtt_serve.c alone, for the MQTT
 * transport tests: serves the files of a directory to devices' block
 * requests until SIGTERM or SIGINT, then prints its counters as one line
 * of JSON on stdout.
 *
 * usage: mqtt_responder --port N --dir DIR [--host H] [--root R]
 *                       [--window N] [--streams N] [--log 0|1|2]
 *                       [--ready FILE]
 * --ready FILE: written (empty) whenever the subscription is in place
 * (again, after a reconnection), so a script can wait for it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_mqtt_serve.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(void)
{
    fputs("usage: mqtt_responder --port N --dir DIR [--host H] [--root R]\n"
          "       [--window N] [--streams N] [--log 0|1|2] [--ready FILE]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'h'},
        {"port", required_argument, 0, 'p'},
        {"dir", required_argument, 0, 'd'},
        {"root", required_argument, 0, 'r'},
        {"window", required_argument, 0, 'w'},
        {"streams", required_argument, 0, 's'},
        {"log", required_argument, 0, 'l'},
        {"ready", required_argument, 0, 'R'},
        {0, 0, 0, 0}};
    struct nb_mqtt_serve_config cfg;
    const char *ready = NULL;
    int c;
    memset(&cfg, 0, sizeof(cfg));
    cfg.host = "127.0.0.1";
    cfg.log_level = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h': cfg.host = optarg; break;
        case 'p': cfg.port = atoi(optarg); break;
        case 'd': cfg.dir = optarg; break;
        case 'r': cfg.topic_root = optarg; break;
        case 'w': cfg.window = (unsigned)atoi(optarg); break;
        case 's': cfg.max_streams = (unsigned)atoi(optarg); break;
        case 'l': cfg.log_level = atoi(optarg); break;
        case 'R': ready = optarg; break;
        default: usage();
        }
    }
    if (optind != argc || !cfg.port || !cfg.dir)
        usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct nb_mqtt_serve *s = NULL;
    nb_err err = nb_mqtt_serve_new(&s, &cfg);
    if (err && err != NB_ERR_IO) {
        fprintf(stderr, "mqtt_responder: %s\n", nb_err_name(err));
        return 1;
    }
    int announced = 0;
    while (!stop) {
        err = nb_mqtt_serve_step(s, 200);
        if (!nb_mqtt_serve_connected(s))
            announced = 0;
        if (!err && !announced && ready && nb_mqtt_serve_connected(s)) {
            FILE *f = fopen(ready, "w");
            if (!f) {
                fprintf(stderr, "mqtt_responder: %s: %s\n", ready,
                        strerror(errno));
                nb_mqtt_serve_free(s);
                return 1;
            }
            fclose(f);
            announced = 1;
        }
    }
    struct nb_mqtt_serve_stats st;
    nb_mqtt_serve_stats(s, &st);
    printf("{\"requests\":%llu,\"malformed\":%llu,\"refused\":%llu,"
           "\"replaced\":%llu,\"completed\":%llu,\"messages\":%llu,"
           "\"bytes\":%llu,\"connects\":%llu}\n",
           (unsigned long long)st.requests, (unsigned long long)st.malformed,
           (unsigned long long)st.refused, (unsigned long long)st.replaced,
           (unsigned long long)st.completed, (unsigned long long)st.messages,
           (unsigned long long)st.bytes, (unsigned long long)st.connects);
    nb_mqtt_serve_free(s);
    return 0;
}
