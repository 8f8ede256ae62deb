/* fleet.h - nobrick-sim fleet: many simulated devices in one process,
 * each running the real bootloader core and the real update agent
 * (cmd/nobrick-agent's nb_agent, its HTTP device-API client and the curl
 * transport) against a real server on 127.0.0.1.
 *
 * Files:
 *   fleet.c        the command: options, set-up, the summary, exit status
 *   fleet_setup.c  making the devices: layout, initial package, golden
 *                  flash per hardware revision, memory or --dir files
 *   fleet_dev.c    one device at run time: its agent's wiring (clock,
 *                  random source, memo, health check), one scheduled
 *                  step and what follows it (power cuts, resets, crashes
 *                  of the simulated firmware)
 *   fleet_fault.c  fault classes and rates, the per-device seeded plan,
 *                  the fault-injecting device API and transport wrappers
 *   fleet_run.c    the worker threads, the progress line, --until
 *   fleet_check.c  the end-of-run invariant check on each device's flash,
 *                  the tables and the JSON report
 *   fleet_image.c  the firmware behaviour tag in a payload, packages for
 *                  several hardware revisions, the make-image command
 *
 * Threads: device i belongs to worker i % J and is only ever touched by
 * that worker's thread (its flash, agent, curl handles, crypto). The main
 * thread reads the few fields each device publishes (struct fleet_pub)
 * with atomic loads. There are no globals but the stop flag of a signal.
 */
#ifndef FLEET_H
#define FLEET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent.h"
#include "api_http.h"
#include "nb_crypto_openssl.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"
#include "nb_transport_curl.h"

#define FLEET_ID_MAX 48
#define FLEET_MAX_HW 8
#define FLEET_MAX_TAGS 8
#define FLEET_TAG_NAME_MAX 65
#define FLEET_BUF 4096u          /* device work buffer (a 4 KiB block) */
#define FLEET_RXBUF 16384u       /* per-worker download receive buffer */
#define FLEET_MAX_DEVICES 100000u
#define FLEET_CLOCK_BASE 1000000000ull /* device clocks start here (ms) */

/* ------------------------------------------------ firmware behaviour */

/* What the simulated firmware in a slot does once the bootloader starts
 * it. It is read from the first bytes of the payload of the image that
 * booted (see fleet_image.c and docs/simulator.md, "Firmware behaviour"). */
enum fleet_beh {
    FLEET_BEH_HEALTHY = 0,   /* runs, health check passes */
    FLEET_BEH_CRASH_ON_BOOT, /* crashes before the agent runs */
    FLEET_BEH_CRASH_ON_HW,   /* crashes so on one hardware revision only */
    FLEET_BEH_HEALTH_FAIL,   /* runs, health check fails */
    FLEET_BEH_NO_SERVER,     /* runs, never reaches the server */
    FLEET_BEH_COUNT
};

#define FLEET_TAG_SIZE 64u
#define FLEET_TAG_MAGIC "NBSIMFW1 "

struct fleet_behaviour {
    uint8_t kind;                   /* enum fleet_beh */
    char hw[NB_HW_REV_MAX + 1];     /* crash-on-hw: the revision */
};

/* Parse "healthy", "crash-on-boot", "crash-on-hw:REV", "health-fail",
 * "no-server". Returns 0, or -1 when unknown or malformed. */
int fleet_behaviour_parse(const char *s, struct fleet_behaviour *b);
/* The behaviour as text ("crash-on-hw:sim-2") into out (>= 48 bytes). */
void fleet_behaviour_str(const struct fleet_behaviour *b, char *out,
                         size_t cap);
/* Read the tag from the first FLEET_TAG_SIZE payload bytes `p`: a payload
 * without the magic is healthy (a plain make-image package). *known = 0
 * when the magic is there but the behaviour is not understood (then
 * healthy). */
void fleet_tag_decode(const uint8_t p[FLEET_TAG_SIZE],
                      struct fleet_behaviour *b, int *known);
/* Does firmware `b` crash on hardware revision `hw`? */
int fleet_behaviour_crashes(const struct fleet_behaviour *b, const char *hw);

/* A TEST package (nb_testpkg's keys and payload stream) whose manifest
 * lists the hardware revisions `hw` (NULL/0: sim-1) and whose payload
 * starts with the behaviour tag when `b` is not NULL (payload_size must
 * then be at least FLEET_TAG_SIZE). Deterministic. */
nb_err fleet_make_package(struct nb_testkeys *k, const struct nb_crypto *c,
                          uint32_t version, uint32_t svn,
                          uint32_t payload_size, uint64_t seed,
                          const struct fleet_behaviour *b,
                          const char *const *hw, unsigned hw_count,
                          struct nb_buf *out);

/* nobrick-sim make-image (with --behaviour and --hw-revs). */
int fleet_image_main(int argc, char **argv);

/* ---------------------------------------------------------------- faults */

enum fleet_fault {
    FLEET_F_POWER = 0,  /* power cut at a flash operation of an update */
    FLEET_F_TORN,       /* share of power cuts that tear the operation */
    FLEET_F_RESET,      /* reset (no flash damage) during the install */
    FLEET_F_TRIAL_RESET, /* reset while the trial waits for its ack */
    FLEET_F_DROP,       /* a request or range whose connection drops */
    FLEET_F_STALL,      /* a request or range that stalls to its timeout */
    FLEET_F_FLIP,       /* a payload range with one bit flipped */
    FLEET_F_BAD_BLOCK,  /* a device with a bad sector in its update slot */
    FLEET_F_COUNT
};

struct fleet_faults {
    double rate[FLEET_F_COUNT];
};

/* Name of a class as used in --faults ("trial-reset"). */
const char *fleet_fault_name(unsigned f);
/* Parse a --faults value: "none", "default" or "heavy", optionally
 * followed by ",CLASS=RATE" overrides (RATE 0 to 1); or only overrides
 * (on top of none). Returns 0, or -1 with a message in err. */
int fleet_faults_parse(const char *s, struct fleet_faults *out, char *err,
                       size_t cap);
/* "power=0.1,torn=0.5,..." into out. */
void fleet_faults_str(const struct fleet_faults *f, char *out, size_t cap);

/* splitmix64: the simulator's seeded random numbers. */
uint64_t fleet_rng(uint64_t *state);
/* Uniform in [0, 1). */
double fleet_rng_unit(uint64_t *state);

/* ---------------------------------------------------------------- options */

enum fleet_until {
    FLEET_UNTIL_NONE = 0,   /* only --duration or a signal ends the run */
    FLEET_UNTIL_SETTLED,    /* every device settled (see fleet_run.c) */
    FLEET_UNTIL_VERSION     /* P % of the devices run version V confirmed */
};

struct fleet_weighted {
    char name[FLEET_TAG_NAME_MAX];
    unsigned weight;
};

struct fleet_opts {
    const char *server;      /* http://127.0.0.1:PORT */
    const char *enrol_token; /* fleet enrolment token */
    const char *admin_token; /* management API (--tags, --check-server) */
    const char *dir;         /* flash files and agent state, or NULL */
    const char *image;       /* initial package, or NULL: built in */
    const char *report;      /* JSON report file */
    const char *log;         /* agent log lines */
    const char *root_pub;    /* PEM: the product's root, not the TEST root */
    const char *vendor;      /* UUID replacing the test vendor */
    const char *class_id;    /* UUID replacing the test class */
    const char *id_prefix;
    uint32_t devices, first_id, threads;
    uint32_t image_size;     /* built-in initial image payload */
    uint32_t slot_size;
    uint8_t layout;          /* NB_LAYOUT_AB, _AB_SWAP, _AB_FACTORY */
    uint8_t lifecycle;
    uint8_t attempts;
    int log_level;
    unsigned hw_count, tag_count;
    struct fleet_weighted hw[FLEET_MAX_HW];
    struct fleet_weighted tags[FLEET_MAX_TAGS];
    uint64_t seed;
    struct fleet_faults faults;
    char faults_spec[160];
    double time_scale;       /* device clocks run this much faster */
    uint32_t poll_ms;        /* an idle device waits at most this (wall) */
    uint32_t ramp_ms;        /* power-ons spread over this (wall) */
    uint32_t settle_ms;      /* --until settled must hold this long */
    uint64_t duration_ms;    /* 0: no limit */
    uint8_t until;
    uint32_t until_version;  /* packed */
    double until_share;      /* 0..1 */
    int check_server;
    long server_pid;         /* 0: none */
    int quiet;
    int init_only;           /* nobrick-sim fleet init */
    int fresh;               /* --fresh: re-create existing device files */
};

/* ---------------------------------------------------------------- device */

/* What a device shows the main thread (atomic loads and stores only). */
struct fleet_pub {
    uint8_t state;       /* enum nb_agent_state */
    uint8_t outcome;     /* of its last cycle */
    uint8_t settled;     /* see fleet_run.c */
    uint8_t enrolled;    /* holds its own device token */
    uint32_t running;    /* version running (0: recovery) */
    uint32_t confirmed;  /* version of the confirmed image */
};

/* The end-of-run check of one device's flash (fleet_check.c). */
struct fleet_final {
    int checked;
    int boots;              /* the bootloader boots a verified image */
    int keeps_confirmed;    /* and resets reach a verified CONFIRMED one */
    int bricked;
    char why[160];          /* when bricked */
    uint8_t boot_slot, boot_state;
    uint32_t boot_version;
    uint8_t confirmed_slot;
    uint32_t confirmed_version;
    struct nb_state state;  /* the journal as the run left it */
    uint64_t violations;    /* strict-NOR violations (bugs) */
    uint64_t flash_ops;     /* program + erase operations in this run */
    char server_version[NB_AGENT_VERSION_MAX]; /* --check-server */
    int server_checked, server_match;
};

struct fleet;
struct fleet_worker;

struct fleet_dev {
    struct fleet *f;
    struct fleet_worker *w;
    uint32_t index, number;
    char id[FLEET_ID_MAX];
    uint8_t hw;                   /* index into f->o.hw */
    uint8_t tag;                  /* index into f->o.tags (if any) */
    uint64_t rng_fault, rng_agent;
    /* the hardware */
    struct nb_simflash *sim;
    struct nb_flash flash;
    uint8_t buf[FLEET_BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
    uint64_t ops_at_on;           /* stats.ops at the last power-on */
    uint64_t ops_at_start;
    uint32_t bad_addr;            /* bad sector (bad_flags != 0) */
    uint8_t bad_flags;
    /* the agent and what survives its restarts */
    struct nb_agent agent;
    struct nb_agent_config acfg;
    struct nb_agent_memo memo;
    int have_memo;
    char token[NB_API_HTTP_TOKEN_MAX];
    int tagged;                   /* --tags applied at the server */
    /* the device API client (open only while the device is busy) */
    struct nb_api_http *api;
    struct nb_agent_api api_if;
    /* the download transport of the current attempt */
    struct nb_curl curl;
    struct nb_transport inner;
    int tr_inited;
    uint64_t range_pos, range_len;  /* of the open range */
    uint64_t drop_at, stall_at, flip_at; /* UINT64_MAX: none */
    uint64_t dl_bytes;            /* payload bytes of this update attempt */
    uint64_t reset_at_bytes;      /* planned reset mid-download, or max */
    /* the clock: device time = scaled wall time + skew (see fleet_dev.c) */
    int64_t skew_ms;
    uint64_t last_now;            /* the latest time the device saw */
    uint64_t wall_wake;           /* next step due (wall ms since t0) */
    uint32_t heap_pos;
    /* the firmware that runs */
    struct fleet_behaviour beh;
    uint32_t boots_seen;
    uint8_t reset_state;          /* reset before stepping this state */
    uint8_t reset_now;            /* reset after this step */
    uint8_t cut_armed, cut_torn;
    uint8_t cuts_left;
    uint8_t unknown_beh;
    uint32_t start_confirmed;     /* confirmed version when the run began */
    /* counters of this run */
    uint32_t faults[FLEET_F_COUNT];
    uint32_t crashes, power_cycles, updates, reverts, failures, offline;
    uint32_t attempts, checkins, requests;
    struct fleet_pub pub;
    struct fleet_final fin;
};

/* ---------------------------------------------------------------- worker */

struct fleet_worker {
    struct fleet *f;
    unsigned idx;
    pthread_t th;
    int started;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    uint8_t rxbuf[FLEET_RXBUF];
    uint8_t scratch[NB_MANIFEST_MAX]; /* manifest of a booted image */
    struct fleet_dev **heap;
    uint32_t n, cap;
    struct nb_simflash *check;    /* scratch flash for the final check */
    uint8_t cbuf[FLEET_BUF], cmbuf[NB_MANIFEST_MAX];
    /* counters (atomic adds; the main thread sums them) */
    uint64_t steps, fired[FLEET_F_COUNT], crashes, requests, checkins,
        artifact_opens;
    uint64_t lag_ms;              /* largest step lateness lately (main
                                   * thread takes it with an exchange) */
    uint64_t lag_max, lag_sum;    /* this worker's, read after the run */
};

/* ---------------------------------------------------------------- fleet */

struct fleet {
    struct fleet_opts o;
    struct nb_openssl_crypto oc;  /* main thread's */
    struct nb_crypto crypto;
    struct nb_testkeys keys;      /* the TEST root: the devices' keystore */
    /* --root-pub: the product's root; keys.keystore then answers it
     * instead of the TEST root. */
    uint8_t root_pub[NB_PUBKEY_LEN];
    uint8_t root_kid[NB_KEY_ID_LEN];
    int keys_ok;
    struct nb_identity ids[FLEET_MAX_HW];
    struct nb_simflash_geometry geo;
    struct nb_layout layout;
    struct fleet_dev **devs;
    uint32_t n;
    struct fleet_worker *workers;
    uint64_t t0;                  /* wall ms (CLOCK_MONOTONIC) at start */
    uint32_t initial_version;
    FILE *log;
    pthread_mutex_t log_lock;
    volatile int *stop;           /* set by a signal or the main thread */
    uint64_t stopped_at;
    int until_met;
    /* server measurements (--server-pid) */
    double srv_cpu0, srv_cpu1;
    long srv_rss_kb, srv_hwm_kb;
};

/* Wall milliseconds (monotonic). */
uint64_t fleet_wall_ms(void);
/* Milliseconds since the fleet started. */
uint64_t fleet_elapsed(const struct fleet *f);

/* fleet_setup.c */
/* Plan the flash, build the initial package and a golden flash per
 * hardware revision (the real install: stage, boot, confirm), then make
 * every device (memory, or a file in --dir, reused when it exists).
 * Returns 0, or -1 after a message. */
int fleet_devices_create(struct fleet *f);
void fleet_devices_free(struct fleet *f);

/* fleet_dev.c */
/* DIR/ID.EXT of a device (--dir). */
void fleet_dev_path(const struct fleet_dev *d, char *out, size_t cap,
                    const char *ext);
/* Wire the device's agent to worker `w` and power it on (at `wall`). */
void fleet_dev_start(struct fleet_dev *d, struct fleet_worker *w,
                     uint64_t wall);
/* One due step and what follows it; sets d->wall_wake. */
void fleet_dev_step(struct fleet_dev *d);
/* Release the device's curl handles (end of the run). */
void fleet_dev_stop(struct fleet_dev *d);
/* Device clock, for the agent and the fault wrappers. */
uint64_t fleet_dev_now(struct fleet_dev *d);
/* Persist token and memo (--dir). */
void fleet_dev_save(struct fleet_dev *d);
/* Read the behaviour of the image at flash address `addr`. */
void fleet_dev_read_behaviour(const struct nb_flash *fl, uint32_t addr,
                              uint8_t *scratch, const struct nb_crypto *c,
                              struct fleet_behaviour *b, int *known);
/* Log a line for a device (level filtered). */
void fleet_log(struct fleet *f, const char *id, int level, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

/* fleet_fault.c */
/* Faults of a new update attempt (an offer the agent starts on). */
void fleet_fault_plan_attempt(struct fleet_dev *d);
/* After a power cut: maybe a second cut at the next power-on's boot. */
void fleet_fault_after_cut(struct fleet_dev *d);
/* Choose the device's bad sector (at creation) and apply it. */
void fleet_fault_bad_block(struct fleet_dev *d);
/* The fault-injecting device API (ctx = the device) and transports. */
void fleet_fault_api(struct fleet_dev *d, struct nb_agent_api *api);
void fleet_fault_transports(struct fleet_dev *d,
                            struct nb_agent_transports *t);
/* Close the device's API connection (between busy periods). */
void fleet_api_close(struct fleet_dev *d);
/* Count a fault that fired. */
void fleet_fault_count(struct fleet_dev *d, unsigned f);

/* fleet_run.c */
/* Run the workers until --until, --duration or a signal; then each
 * worker checks its devices (fleet_check_device). Returns 0 or -1. */
int fleet_run(struct fleet *f);
/* Free what fleet_run set up (after fleet_devices_free is fine). */
void fleet_workers_free(struct fleet *f);

/* fleet_check.c */
/* The end-of-run check of one device's flash, in its worker. */
void fleet_check_device(struct fleet_worker *w, struct fleet_dev *d);
/* --check-server: what the server last heard from each device. */
void fleet_check_server(struct fleet *f);
/* Tables and the summary line on stdout; the JSON report. Returns the
 * number of bricked devices; *invariant_failures gets the rest. */
uint32_t fleet_summary(struct fleet *f, uint32_t *invariant_failures);
int fleet_report_write(struct fleet *f, const char *path);
/* Sample the server process (/proc/PID). */
void fleet_server_sample(struct fleet *f, int end);
/* Management API: PUT the device's tags. 0 on success. */
int fleet_server_put_tags(struct fleet *f, struct fleet_dev *d);

/* The version as "M.m.p" (out: NB_AGENT_VERSION_MAX). */
void fleet_version_str(uint32_t packed, char *out);

/* fleet.c */
int fleet_main(int argc, char **argv);

/* fleet_trust.c: --root-pub replaces the TEST root in keys.keystore;
 * --vendor / --class replace the test identity's. 0 or -1 after a
 * message. */
int fleet_trust_root(struct fleet *f);
int fleet_trust_identity(const struct fleet_opts *o, struct nb_identity *id);

#endif
