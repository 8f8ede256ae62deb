/* agent.h - the device side of an update, as a library: one struct
 * nb_agent per device, driven one state-machine step at a time.
 *
 * The agent checks in with the update server, gets an offer, fetches and
 * verifies the signed manifest (nb_install_begin refuses a bad signature,
 * another hardware revision, ... before a single slot byte is written),
 * downloads the payload block by block over a transport (nb_download_*),
 * verifies the whole slot, marks it PENDING and reboots into the
 * bootloader (simulated: nb_device_open + nb_boot on the same flash). When
 * the new image runs as a TRIAL it runs the product's health check, sends
 * the health report with a random nonce, and confirms the image only when
 * the server has acknowledged that report (nonce echoed) in time.
 * Anything else - a failing check, no acknowledgement, a reset during the
 * trial - ends in a revert: the bootloader is run until it rejects the
 * trial and boots the confirmed image again.
 *
 * Everything the agent touches comes in through its config: the boot
 * config (flash, crypto, keystore, identity, layout, buffers), the server
 * API, the transports, the health check, the clock and the random source.
 * There are no globals and the agent never sleeps or blocks on its own
 * (a call into the API, a transport or the health check may block for as
 * long as that port's timeout): nb_agent_step() does one step and says in
 * nb_agent_wake_ms() when the next one is due. So one process can run one
 * agent (cmd/nobrick-agent/main.c) or thousands (the fleet simulator).
 *
 * Memory: struct nb_agent holds the device (struct nb_device) and the
 * install in progress; buffers (work, manifest, receive) are the
 * caller's. The struct is a few KiB (a manifest struct, a journal) and
 * allocates nothing. Do not move or copy it while it runs: the install in
 * progress points at its device.
 */
#ifndef NB_AGENT_H
#define NB_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "nb_boot.h"
#include "nb_download.h"
#include "nb_install.h"
#include "nb_transport.h"

#define NB_AGENT_ROLLOUT_MAX 64  /* rollout ID, NUL included */
#define NB_AGENT_VERSION_MAX 16  /* "255.255.65535" and NUL */
#define NB_AGENT_URL_MAX 512     /* URLs and paths, NUL included */
#define NB_AGENT_NAME_MAX 128    /* MQTT artifact name, NUL included */
#define NB_AGENT_NONCE_MAX 33    /* nonce: 16 hex digits sent, 32 accepted */
#define NB_AGENT_DETAIL_MAX 192  /* one line of detail, NUL included */
#define NB_AGENT_MAX_PREFER 8
#define NB_AGENT_MAX_BOOTS 300   /* resets tried while reverting */

/* Every state of the machine. The comment says what the step does in
 * that state and where it goes. */
enum nb_agent_state {
    NB_AGENT_POWER_ON = 0,   /* run the bootloader once; report a trial
                              * found in progress or a revert -> CHECKIN,
                              * TRIAL_BOOTED, FAILED (then REVERTING) */
    NB_AGENT_IDLE,           /* wait for the next poll -> CHECKIN */
    NB_AGENT_CHECKIN,        /* ask the server -> IDLE (nothing to do),
                              * FETCH_MANIFEST (an offer), CONFIRMED
                              * (offer already running), FAILED */
    NB_AGENT_FETCH_MANIFEST, /* resume the journalled download, or fetch
                              * the manifest and nb_install_begin ->
                              * DOWNLOADING, FAILED (refused: no retry) */
    NB_AGENT_DOWNLOADING,    /* one download attempt -> VERIFYING, itself
                              * (backoff), FAILED (4xx, retries spent) */
    NB_AGENT_VERIFYING,      /* nb_install_finish: read back, verify ->
                              * INSTALLING, FAILED */
    NB_AGENT_INSTALLING,     /* PENDING, then reboot into the bootloader ->
                              * TRIAL_BOOTED, FAILED (not booted) */
    NB_AGENT_TRIAL_BOOTED,   /* report trial -> HEALTH_CHECK */
    NB_AGENT_HEALTH_CHECK,   /* run the health check -> AWAIT_ACK */
    NB_AGENT_AWAIT_ACK,      /* send the health report until acknowledged
                              * or out of time -> CONFIRMED (healthy and
                              * acknowledged: nb_confirm), FAILED */
    NB_AGENT_CONFIRMED,      /* report confirmed -> IDLE */
    NB_AGENT_FAILED,         /* report failed (reason) -> REVERTING when a
                              * trial runs, REVERTED when the bootloader
                              * already fell back, else IDLE */
    NB_AGENT_REVERTING,      /* reset until the trial is rejected and the
                              * confirmed image boots -> REVERTED */
    NB_AGENT_REVERTED,       /* report reverted -> IDLE */
    NB_AGENT_OFF,            /* the flash lost power (simulated flash):
                              * nothing runs until nb_agent_init again */
    NB_AGENT_STATE_COUNT
};

/* How one update cycle (power-on or check-in to IDLE) ended. */
enum nb_agent_outcome {
    NB_AGENT_NONE = 0,       /* no cycle ended yet */
    NB_AGENT_UP_TO_DATE,     /* no offer, or the offer already runs */
    NB_AGENT_UPDATED,        /* confirmed */
    NB_AGENT_FAILED_OUTCOME, /* failed before a trial (refused, 4xx,
                              * server away, verify) */
    NB_AGENT_REVERTED_OUTCOME, /* trial not confirmed: reverted */
    NB_AGENT_OFFLINE         /* the server could not be reached */
};

/* Transports, in the order a config may prefer them. */
enum nb_agent_transport_kind {
    NB_AGENT_TR_HTTP = 0,  /* artifacts.http with an http:// URL */
    NB_AGENT_TR_HTTPS = 1, /* artifacts.http with an https:// URL */
    NB_AGENT_TR_FTP = 2,   /* artifacts.ftp with an ftp:// URL */
    NB_AGENT_TR_FTPS = 3,  /* artifacts.ftp with an ftps:// URL */
    NB_AGENT_TR_MQTT = 4,  /* artifacts.mqtt.artifact over a broker */
    NB_AGENT_TR_FILE = 5,  /* a local file (artifacts.file, or the
                            * artifact's file name) */
    NB_AGENT_TR_COUNT
};

/* ----------------------------------------------------------- the server */

/* An offer from a check-in answer (docs/device-api.md). Strings are
 * NUL-terminated; an absent one is "". */
struct nb_agent_offer {
    char rollout[NB_AGENT_ROLLOUT_MAX];
    char version[NB_AGENT_VERSION_MAX];
    uint32_t version_packed;
    uint32_t svn;
    uint32_t package_size;
    uint32_t payload_offset;
    uint32_t payload_size;
    char manifest_url[NB_AGENT_URL_MAX];
    char http_url[NB_AGENT_URL_MAX]; /* artifacts.http */
    char ftp_url[NB_AGENT_URL_MAX];  /* artifacts.ftp */
    char mqtt_artifact[NB_AGENT_NAME_MAX]; /* artifacts.mqtt.artifact */
    char file_path[NB_AGENT_URL_MAX]; /* artifacts.file (a local path) */
};

/* What the device says at check-in. */
struct nb_agent_checkin {
    const char *hw_rev;
    char version[NB_AGENT_VERSION_MAX]; /* running image, "0.0.0" in
                                         * recovery */
    uint32_t svn;
    unsigned slot_count;
    struct nb_slot_info slots[NB_MAX_SLOTS];
    /* An update under way (a RECEIVING slot, or an offer in hand). */
    int has_update;
    const char *update_rollout;
    const char *update_state; /* "downloading", ... */
    uint64_t update_bytes;
};

enum nb_agent_action { NB_AGENT_ACTION_NONE = 0, NB_AGENT_ACTION_UPDATE = 1 };

struct nb_agent_checkin_reply {
    uint8_t action;        /* enum nb_agent_action */
    uint32_t poll_seconds; /* 0: not said */
    /* The newest root-signed revocation list ("revocations": {"url",
     * "seq"}); "" / 0 when the answer has none. */
    char revocations_url[NB_AGENT_URL_MAX];
    uint32_t revocations_seq;
    struct nb_agent_offer offer; /* action UPDATE */
};

/* A report: state is "downloading" (bytes, total), "verified",
 * "installing", "trial", "confirmed", "failed" (reason: an NB_ERR_...
 * name, detail: one line), "reverted". */
struct nb_agent_report {
    const char *rollout;
    const char *version;
    const char *state;
    int has_progress;
    uint64_t bytes, total;
    const char *reason; /* NULL unless failed */
    const char *detail; /* NULL or one line */
};

struct nb_agent_health_report {
    const char *rollout;
    const char *version;
    int healthy;
    const char *nonce;
    const char *detail;
};

struct nb_agent_health_ack {
    int ack;                        /* "ack": true */
    char nonce[NB_AGENT_NONCE_MAX]; /* the nonce the server echoed */
};

/* The device API (docs/device-api.md), behind an interface so the agent
 * can talk to a real server (api_http.c: libcurl + jansson), a test
 * double, or the fleet simulator's in-process server. Errors: NB_ERR_IO
 * for no answer, a timeout or a 5xx (the agent retries with backoff);
 * NB_ERR_DENIED (401, 403), NB_ERR_NOENT (404, 410), NB_ERR_STATE (409),
 * NB_ERR_RANGE (416), NB_ERR_NOSPC (413, or an answer over its bound),
 * NB_ERR_INVAL (another 4xx), NB_ERR_MALFORMED (an answer that is not
 * what the API says): the agent never retries those in a loop. */
struct nb_agent_api {
    void *ctx;
    nb_err (*checkin)(void *ctx, const struct nb_agent_checkin *in,
                      struct nb_agent_checkin_reply *out);
    nb_err (*report)(void *ctx, const struct nb_agent_report *r);
    /* Send the health report and wait at most timeout_ms for the answer. */
    nb_err (*health)(void *ctx, const struct nb_agent_health_report *h,
                     uint32_t timeout_ms, struct nb_agent_health_ack *ack);
    /* GET `url` (the offer's manifest_url) into buf, at most cap bytes
     * (more is NB_ERR_NOSPC). NULL: the agent reads the manifest from the
     * package's first bytes over the transport instead. */
    nb_err (*fetch_manifest)(void *ctx, const char *url, uint8_t *buf,
                             uint32_t cap, uint32_t *len);
};

/* ------------------------------------------------------------ the world */

/* Makes a transport for one artifact: `where` is a URL (HTTP(S), FTP(S)),
 * an MQTT artifact name, or a file path, per `kind`. The transport stays
 * valid until release. NB_ERR_UNSUPPORTED when this build has no such
 * transport. */
struct nb_agent_transports {
    void *ctx;
    nb_err (*open)(void *ctx, uint8_t kind, const char *where,
                   struct nb_transport *out);
    void (*release)(void *ctx, struct nb_transport *t);
};

/* The product's health check. *healthy = 1 when the application is fine
 * (a command's exit code 0), 0 otherwise (non-zero exit, killed, over
 * timeout_ms); detail gets one line. NULL run: always healthy ("no health
 * check configured"). A returned error counts as unhealthy. */
struct nb_agent_health_check {
    void *ctx;
    nb_err (*run)(void *ctx, const char *version, uint32_t timeout_ms,
                  int *healthy, char *detail, size_t cap);
};

enum nb_agent_log_level {
    NB_AGENT_LOG_ERROR = 0,
    NB_AGENT_LOG_WARN = 1,
    NB_AGENT_LOG_INFO = 2,
    NB_AGENT_LOG_DEBUG = 3
};

struct nb_agent_platform {
    void *ctx;
    uint64_t (*now_ms)(void *ctx); /* monotonic milliseconds */
    uint32_t (*random)(void *ctx); /* unpredictable: nonces, jitter */
    /* One line without newline; NULL: silent. */
    void (*log)(void *ctx, int level, const char *line);
    int log_level; /* lines above this level are not even formatted */
};

/* What survives a restart of the agent (not of the journal, which
 * survives by itself): the rollout being worked on, so that reports after
 * a reset name it, and the offer that last failed for good, so that it is
 * not tried again and again. */
struct nb_agent_memo {
    char rollout[NB_AGENT_ROLLOUT_MAX];
    char version[NB_AGENT_VERSION_MAX];
    char failed_rollout[NB_AGENT_ROLLOUT_MAX];
    char failed_version[NB_AGENT_VERSION_MAX];
};

/* Optional persistence of the memo (NULL callbacks: RAM only). load
 * returns NB_ERR_NOENT when nothing was saved. */
struct nb_agent_store {
    void *ctx;
    nb_err (*load)(void *ctx, struct nb_agent_memo *m);
    nb_err (*save)(void *ctx, const struct nb_agent_memo *m);
};

/* ---------------------------------------------------------------- config */

/* A zero field means its default (in brackets). */
struct nb_agent_config {
    struct nb_boot_config boot;  /* the device: flash, crypto, keystore,
                                  * identity, layout, work and manifest
                                  * buffers (the caller's) */
    const char *hw_rev;          /* told at check-in [the identity's] */
    struct nb_agent_api api;
    struct nb_agent_transports transports;
    struct nb_agent_health_check health;
    struct nb_agent_platform platform;
    struct nb_agent_store store;
    uint8_t prefer[NB_AGENT_MAX_PREFER]; /* enum nb_agent_transport_kind */
    unsigned prefer_count;       /* [https, http, ftps, ftp, mqtt, file] */
    uint8_t *rxbuf;              /* receive buffer of the download */
    uint32_t rxbuf_size;
    uint32_t retry_base_ms;      /* first backoff [1000] */
    uint32_t retry_max_ms;       /* backoff cap [60000] */
    uint32_t retry_attempts;     /* attempts per phase, first included [5] */
    uint32_t progress_interval_ms; /* between downloading reports [2000] */
    uint32_t health_timeout_ms;  /* the health check's time [30000] */
    uint32_t ack_timeout_ms;     /* from the first health report to the
                                  * acknowledgement [30000] */
    uint32_t poll_ms;            /* check-in interval when the server
                                  * does not say [300000] */
};

/* ----------------------------------------------------------------- state */

/* Counters since nb_agent_init (a daemon's include every update). */
struct nb_agent_stats {
    uint64_t bytes;          /* payload bytes from the transport */
    uint32_t payload;        /* payload size (signed manifest) */
    uint64_t manifest_bytes; /* manifest bytes fetched */
    uint32_t opens;          /* ranges requested (download) */
    uint32_t reopens;        /* ranges beyond the first (drops, re-fetches) */
    uint32_t bad_blocks;     /* blocks that failed their check on arrival */
    uint32_t attempts;       /* download attempts (nb_download_payload) */
    uint32_t retries;        /* backoff waits, all phases */
    uint32_t resumed;        /* downloads resumed from the journal */
    uint32_t resume_offset;  /* payload offset the last resume started at */
    uint32_t checkins;
    uint32_t reports;        /* reports sent (health reports included) */
    uint32_t reports_failed;
    uint32_t boots;          /* bootloader runs (simulated resets) */
    uint64_t download_ms;    /* first attempt to the last block */
    uint64_t verify_ms;      /* nb_install_finish */
    uint64_t update_ms;      /* offer to confirmed, failed or reverted */
};

struct nb_agent {
    struct nb_agent_config cfg;
    struct nb_device dev;          /* the device handle */
    struct nb_install in;          /* the install in progress */
    uint8_t state;                 /* enum nb_agent_state */
    uint8_t outcome;               /* of the last cycle (enum outcome) */
    uint32_t cycles;               /* update cycles ended */
    uint64_t wake_ms;              /* next step due at (platform clock) */
    unsigned attempt;              /* attempts of the current phase */
    struct nb_agent_offer offer;   /* the offer worked on */
    int have_offer;
    uint8_t kind;                  /* transport chosen for the offer */
    char where[NB_AGENT_URL_MAX];  /* its URL, name or file path */
    struct nb_transport tr;        /* open during a download attempt */
    struct nb_boot_result boot;    /* the last bootloader run */
    uint32_t running_version;      /* image running (0 in recovery) */
    uint32_t running_svn;
    int trial;                     /* the offered image runs as TRIAL */
    int fell_back;                 /* the bootloader already fell back */
    int permanent;                 /* the failure is for good (memo) */
    nb_err reason;                 /* why FAILED */
    char detail[NB_AGENT_DETAIL_MAX];
    int healthy;
    char health_detail[NB_AGENT_DETAIL_MAX];
    char nonce[NB_AGENT_NONCE_MAX];
    uint64_t ack_deadline_ms;
    uint64_t last_progress_ms;
    uint64_t started_ms;           /* the offer arrived */
    uint64_t dl_started_ms;
    struct nb_agent_memo memo;
    struct nb_agent_stats stats;
    char hw_rev[NB_HW_REV_MAX + 1]; /* told at check-in */
};

/* Check the config, apply defaults and start in POWER_ON (the first step
 * runs the bootloader). NB_ERR_INVAL names nothing: the config is the
 * caller's code, see the comments above for what is required (boot,
 * api.checkin/report/health, transports.open/release, platform.now_ms and
 * random, rxbuf). */
nb_err nb_agent_init(struct nb_agent *a, const struct nb_agent_config *cfg);

/* One step of the machine (see enum nb_agent_state). Returns NB_OK; or
 * NB_ERR_POWER when the simulated flash lost power (state OFF: the caller
 * powers it on and starts over with nb_agent_init, as after a reset). A
 * step taken before nb_agent_wake_ms() is due does nothing. */
nb_err nb_agent_step(struct nb_agent *a);

/* Platform time at which the next step is due. */
uint64_t nb_agent_wake_ms(const struct nb_agent *a);

/* Release what a step left open (a transport). Safe to call twice. */
void nb_agent_free(struct nb_agent *a);

/* Names: "CHECKIN", the report word of a state ("downloading"), the
 * outcome ("updated"), a transport ("https"); never NULL. */
const char *nb_agent_state_name(uint8_t state);
const char *nb_agent_outcome_name(uint8_t outcome);
const char *nb_agent_transport_name(uint8_t kind);
/* Transport kind from its name; -1 when unknown. */
int nb_agent_transport_kind(const char *name);

/* "M.m.p" of a packed version (out: NB_AGENT_VERSION_MAX bytes); parse
 * one strictly (returns 0 when malformed). */
void nb_agent_version_str(uint32_t packed, char *out);
int nb_agent_version_parse(const char *s, uint32_t *packed);

/* The backoff before attempt `attempt` + 1 (attempt >= 1 failed so far):
 * min(max, base * 2^(attempt-1)), then jittered to [d/2, d] with `rnd`.
 * Exposed for tests. */
uint32_t nb_agent_backoff_ms(uint32_t base, uint32_t max, unsigned attempt,
                             uint32_t rnd);

#endif
