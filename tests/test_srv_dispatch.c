/* test_srv_dispatch.c - nobrick-server's request handling without a
 * socket: srv_dispatch() on struct srv_req / srv_resp, against the store
 * on SQLite (and PostgreSQL when NB_TEST_DB says so), with a simulated
 * clock.
 *
 *   routing       404, 405, /metrics, /healthz, the management and DDI
 *                 hooks behind the admin token
 *   auth          missing, wrong and foreign tokens; fleet enrolment and
 *                 its repetition; the fleet token is for check-ins only
 *   bad input     malformed JSON, wrong types, NUL bytes, oversize
 *                 bodies, SQL metacharacters: 4xx with {"error",
 *                 "message"} and the database byte for byte unchanged
 *   offers        staged steps with short holds, hw_rev, target tags,
 *                 newer versions only, windows, finished devices, paused
 *                 and aborted rollouts, work in progress first
 *   reports       409 outside the rollout, state flow, health ack with
 *                 the nonce echoed, automatic pause from reports
 *   seen          a check-in that tells nothing new writes nothing until
 *                 last_seen is SRV_SEEN_INTERVAL old
 *
 * Artifacts and offer URLs: tests/test_srv_artifacts.c; the fixture:
 * tests/srvfixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nb_cohort.h"
#include "srvfixture.h"

/* -------------------------------------------------------------- routing */

static void test_routing(void **state)
{
    (void)state;
    struct answer a = call_h("GET", "/nope", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    a = call_h("GET", "/api/v1/devices/d-1/checkin", "x", NULL, NULL);
    expect_error(&a, 405, "bad_request");
    a = call_h("GET", "/api/v1/devices/d-1/checkin/x", NULL, NULL, NULL);
    expect_error(&a, 401, "unauthorized"); /* management: admin only */
    a = call_h("GET", "/api/v1/rollouts", NULL, NULL, NULL);
    expect_error(&a, 401, "unauthorized");
    a = call_h("GET", "/api/v1/packages", "wrong", NULL, NULL);
    expect_error(&a, 401, "unauthorized");
    a = call_h("GET", "/api/v1/devices", "tok-d-1", NULL, NULL);
    expect_error(&a, 401, "unauthorized");
    /* With the admin token, the management handler answers (501 from
     * the stand-in, or the real API's answer): anything but 401. */
    a = call_h("GET", "/api/v1/rollouts", ADMIN, NULL, NULL);
    assert_int_not_equal(a.status, 401);
    assert_true(a.status >= 200);
    answer_free(&a);
    a = call_h("GET", "/DEFAULT/controller/v1x/d", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    a = call_h("GET", "/healthz", NULL, NULL, NULL);
    assert_int_equal(a.status, 200);
    answer_free(&a);
    a = call_h("GET", "/metrics", NULL, NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_non_null(strstr(a.text, "nobrick_checkins_total 0"));
    assert_non_null(strstr(a.text, "nobrick_http_requests_total{code=\"404\"} 2"));
    answer_free(&a);
    assert_true(srv_is_upload("POST", "/api/v1/packages"));
    assert_true(srv_is_upload("PUT", "/api/v1/packages/p-1/files/fw.swu"));
    assert_false(srv_is_upload("PUT", "/api/v1/packages/p-1/files/"));
    assert_false(srv_is_upload("POST", "/api/v1/rollouts"));
}

/* ----------------------------------------------------------------- auth */

static void test_auth(void **state)
{
    (void)state;
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    dev_add("d-2", "tok-d-2", "sim-1", NULL);
    char *before = dump();
    const char *body = checkin_body("1.0.0");
    struct answer a = post("d-1", "checkin", NULL, body);
    expect_error(&a, 401, "unauthorized");
    a = post("d-1", "checkin", "tok-d-2", body);  /* another's token */
    expect_error(&a, 401, "unauthorized");
    a = post("d-1", "checkin", "tok-d-1x", body);
    expect_error(&a, 401, "unauthorized");
    a = post("d-9", "checkin", "tok-d-1", body);  /* unknown device */
    expect_error(&a, 401, "unauthorized");
    a = post("d-1", "checkin", FLEET, body);      /* enrolled already */
    expect_error(&a, 401, "unauthorized");
    a = post("d-1", "checkin", ADMIN, body);
    expect_error(&a, 401, "unauthorized");
    a = post("d'1", "checkin", "tok-d-1", body);
    expect_error(&a, 400, "bad_request");
    a = post("../x", "checkin", "tok-d-1", body); /* not a device route */
    expect_error(&a, 401, "unauthorized");
    char *after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);
    a = post("d-1", "checkin", "tok-d-1", body);
    assert_int_equal(a.status, 200);
    assert_string_equal(jstr(&a, "action"), "none");
    assert_int_equal(json_integer_value(json_object_get(a.j, "poll_seconds")), 300);
    answer_free(&a);
}

static void test_enrolment(void **state)
{
    (void)state;
    const char *body = checkin_body("1.0.0");
    char tok1[80], tok2[80];
    struct answer a = post("new-1", "reports", FLEET,
                           "{\"rollout\": \"r-1\", \"version\": \"1.0.0\", "
                           "\"state\": \"verified\"}");
    expect_error(&a, 401, "unauthorized"); /* fleet token: check-in only */
    a = post("new-1", "checkin", FLEET, body);
    assert_int_equal(a.status, 200);
    snprintf(tok1, sizeof tok1, "%s", jstr(&a, "device_token"));
    assert_int_equal(strlen(tok1), 64);
    answer_free(&a);
    /* The answer was lost: the fleet token enrols again, a new token. */
    a = post("new-1", "checkin", FLEET, body);
    assert_int_equal(a.status, 200);
    snprintf(tok2, sizeof tok2, "%s", jstr(&a, "device_token"));
    assert_string_not_equal(tok1, tok2);
    answer_free(&a);
    a = post("new-1", "checkin", tok1, body); /* replaced */
    expect_error(&a, 401, "unauthorized");
    a = post("new-1", "checkin", tok2, body);
    assert_int_equal(a.status, 200);
    assert_null(json_object_get(a.j, "device_token"));
    answer_free(&a);
    /* Its token used: the fleet token no longer works for it. */
    a = post("new-1", "checkin", FLEET, body);
    expect_error(&a, 401, "unauthorized");
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_device d;
    char h[65];
    assert_int_equal(srv_store_device_get(c, "new-1", &d), NB_OK);
    srv_token_sha256_hex(tok2, h);
    assert_string_equal(d.token_sha256, h);     /* only the hash is kept */
    assert_int_equal(d.enrol_pending, 0);
    assert_string_equal(d.version, "1.0.0");
    nb_db_release(g_srv.db, c);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_input(void **state)
{
    (void)state;
    static const char *const checkins[] = {
        "", "{", "[]", "\"x\"", "{\"hw_rev\": \"sim-1\"}",
        "{\"hw_rev\": 1, \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": -1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 99999999999, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": {}}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 1}",
        "{\"hw_rev\": \"s\\u0000m\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"x'; DROP TABLE devices; --\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0'--\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"hw_rev\": \"sim-2\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": []}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": [1]}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": [], \"update\": 3}",
        "{\"hw_rev\": \"sim-1\", \"version\": \"1.0.0\", \"security_version\": 1, \"slots\": [], \"update\": {\"rollout\": \"r'1\"}}",
    };
    static const char *const reports[] = {
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"state\": \"bogus\"}",
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"state\": \"downloading\"}",
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"state\": \"failed\"}",
        "{\"rollout\": \"r-1'; --\", \"version\": \"1.1.0\", \"state\": \"verified\"}",
        "{\"rollout\": 7, \"version\": \"1.1.0\", \"state\": \"verified\"}",
        "{\"version\": \"1.1.0\", \"state\": \"verified\"}",
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"state\": \"failed\", \"reason\": 5}",
    };
    static const char *const health[] = {
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"healthy\": \"yes\", \"nonce\": \"n\"}",
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"healthy\": true}",
        "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", \"healthy\": true, \"nonce\": \"\"}",
    };
    char id[SRV_ST_ID];
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    rollout_add("pkg-a", "1.1.0", NULL, FAST, id);
    char *before = dump();
    for (size_t i = 0; i < sizeof checkins / sizeof checkins[0]; i++) {
        struct answer a = post("d-1", "checkin", "tok-d-1", checkins[i]);
        if (a.status != 400)
            fail_msg("check-in body %s: %d", checkins[i], a.status);
        expect_error(&a, 400, "bad_request");
    }
    for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++) {
        struct answer a = post("d-1", "reports", "tok-d-1", reports[i]);
        if (a.status != 400)
            fail_msg("report body %s: %d", reports[i], a.status);
        expect_error(&a, 400, "bad_request");
    }
    for (size_t i = 0; i < sizeof health / sizeof health[0]; i++) {
        struct answer a = post("d-1", "health", "tok-d-1", health[i]);
        expect_error(&a, 400, "bad_request");
    }
    /* Oversized: the dispatcher refuses it before any handler. */
    struct srv_req r;
    struct srv_resp resp;
    memset(&r, 0, sizeof r);
    r.method = "POST";
    r.path = "/api/v1/devices/d-1/checkin";
    r.body_too_large = 1;
    srv_resp_init(&resp);
    srv_dispatch(&g_srv, &r, &resp);
    assert_int_equal(resp.status, 413);
    assert_non_null(strstr(resp.body, "\"too_large\""));
    srv_resp_free(&resp);
    /* Reports for a rollout the device is not in: 409, nothing kept. */
    assert_int_equal(report("d-1", id, "verified", NULL), 409);
    assert_int_equal(report("d-1", "r-77", "verified", NULL), 409);
    struct answer a = post("d-1", "health", "tok-d-1",
                           "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", "
                           "\"healthy\": true, \"nonce\": \"abc\"}");
    expect_error(&a, 409, "conflict");
    char *after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* --------------------------------------------------------------- offers */

static void test_offers_staged(void **state)
{
    (void)state;
    char id[SRV_ST_ID], ro[SRV_ST_ID], dev[16], st[16];
    int first = 0, expect = 0;
    rollout_add("pkg-a", "1.1.0", NULL, FAST, id);
    for (int i = 0; i < 40; i++) {
        snprintf(dev, sizeof dev, "dev-%02d", i);
        char tok[32];
        snprintf(tok, sizeof tok, "tok-%s", dev);
        dev_add(dev, tok, "sim-1", NULL);
        expect += nb_cohort_in(id, dev, 500000);
    }
    assert_true(expect > 5 && expect < 35);
    g_now += 10;
    for (int i = 0; i < 40; i++) {
        snprintf(dev, sizeof dev, "dev-%02d", i);
        const char *act = checkin(dev, "1.0.0", ro);
        int reached = nb_cohort_in(id, dev, 500000);
        assert_string_equal(act, reached ? "update" : "none");
        if (reached) {
            assert_string_equal(ro, id);
            first++;
        }
    }
    assert_int_equal(first, expect);
    /* The offer's contents. */
    struct answer a = post("dev-00", "checkin", "tok-dev-00", checkin_body("1.0.0"));
    if (!strcmp(jstr(&a, "action"), "update")) {
        assert_string_equal(jstr(&a, "version"), "1.1.0");
        assert_string_equal(jstr(&a, "manifest_url"),
                            "http://127.0.0.1:8080/api/v1/artifacts/pkg-a.nbman");
        json_t *arts = json_object_get(a.j, "artifacts");
        assert_string_equal(json_string_value(json_object_get(arts, "http")),
                            "http://127.0.0.1:8080/api/v1/artifacts/pkg-a.nbpkg");
        assert_null(json_object_get(arts, "ftp"));
        assert_int_equal(json_integer_value(json_object_get(a.j, "payload_offset")), 512);
        assert_int_equal(json_integer_value(json_object_get(a.j, "poll_seconds")), 60);
    }
    answer_free(&a);
    /* After the 60 s hold: step 2 (100 %) reaches the rest. */
    g_now += 61;
    for (int i = 0; i < 40; i++) {
        snprintf(dev, sizeof dev, "dev-%02d", i);
        assert_string_equal(checkin(dev, "1.0.0", ro), "update");
    }
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct nb_ro_counts k0, k1;
    assert_int_equal(srv_store_rollout_step_counts(c, id, 0, g_now, 3600, &k0), NB_OK);
    assert_int_equal(srv_store_rollout_step_counts(c, id, 1, g_now, 3600, &k1), NB_OK);
    assert_int_equal(k0.attempted, expect);
    assert_int_equal(k1.attempted, 40 - expect);
    assert_int_equal(count_rows(c, "device_rollouts"), 40);
    nb_db_release(g_srv.db, c);
    /* Already on the version (or newer): nothing. A new device is offered
     * nothing older than what it runs. */
    dev_add("dev-new", "tok-dev-new", "sim-1", NULL);
    assert_string_equal(checkin("dev-new", "1.1.0", NULL), "none");
    assert_string_equal(checkin("dev-new", "2.0.0", NULL), "none");
    devro_state("dev-new", id, st);
    assert_string_equal(st, "");
}

static void test_offers_filters(void **state)
{
    (void)state;
    char id[SRV_ST_ID], ro[SRV_ST_ID];
    rollout_add("pkg-a", "1.1.0", "{\"tags\": [\"eu\"]}",
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id);
    dev_add("eu-1", "tok-eu-1", "sim-1", "eu");
    dev_add("us-1", "tok-us-1", "sim-1", "us");
    dev_add("hw-9", "tok-hw-9", "sim-9", "eu");
    assert_string_equal(checkin("us-1", "1.0.0", NULL), "none");
    assert_string_equal(checkin("eu-1", "1.0.0", ro), "update");
    /* hw-9 checks in as sim-1 in checkin_body; its report says sim-9: */
    struct answer a = post("hw-9", "checkin", "tok-hw-9",
                           "{\"hw_rev\": \"sim-9\", \"version\": \"1.0.0\", "
                           "\"security_version\": 1, \"slots\": []}");
    assert_string_equal(jstr(&a, "action"), "none"); /* package lists sim-1 */
    answer_free(&a);
    /* Finished: not offered again. */
    assert_int_equal(report("eu-1", id, "failed", "\"reason\": \"NB_ERR_DIGEST\""), 200);
    assert_string_equal(checkin("eu-1", "1.0.0", NULL), "none");
    /* A window that excludes now: no new offers. */
    char id2[SRV_ST_ID];
    rollout_add("pkg-b", "1.2.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": [{\"days\": "
                "\"mon-sun\", \"from\": \"00:00\", \"to\": \"00:01\"}]}", id2);
    g_now = 1767225600 + 3600; /* 2026-01-01 01:00 UTC */
    assert_string_equal(checkin("us-1", "1.0.0", NULL), "none");
    g_now = 1767225600 + 86400 + 30; /* 00:00:30 the next day */
    assert_string_equal(checkin("us-1", "1.0.0", ro), "update");
    assert_string_equal(ro, id2);
}

static void test_offers_paused_aborted(void **state)
{
    (void)state;
    char id[SRV_ST_ID], ro[SRV_ST_ID], st[16];
    rollout_add("pkg-a", "1.1.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id);
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    dev_add("d-2", "tok-d-2", "sim-1", NULL);
    dev_add("d-3", "tok-d-3", "sim-1", NULL);
    assert_string_equal(checkin("d-1", "1.0.0", ro), "update");
    assert_int_equal(report("d-1", id, "downloading", "\"bytes\": 10, \"total\": 100"), 200);
    assert_string_equal(checkin("d-3", "1.0.0", ro), "update");
    set_state(id, SRV_RO_PAUSED);
    /* No new offers; the device mid-update may continue. */
    assert_string_equal(checkin("d-2", "1.0.0", NULL), "none");
    assert_string_equal(checkin("d-1", "1.0.0", ro), "update");
    assert_string_equal(ro, id);
    assert_int_equal(report("d-1", id, "verified", NULL), 200);
    set_state(id, SRV_RO_ABORTED);
    /* Aborted: final, no new offers; a device mid-update may finish. */
    assert_string_equal(checkin("d-1", "1.0.0", ro), "update");
    assert_string_equal(ro, id);
    assert_string_equal(checkin("d-2", "1.0.0", NULL), "none");
    assert_int_equal(report("d-1", id, "confirmed", NULL), 200);
    assert_string_equal(checkin("d-1", "1.1.0", NULL), "none");
    /* Reports of devices mid-update are still taken. */
    assert_int_equal(report("d-3", id, "reverted", NULL), 200);
    devro_state("d-3", id, st);
    assert_string_equal(st, "reverted");
    /* Work in progress comes before a newer rollout. */
    char id2[SRV_ST_ID], id3[SRV_ST_ID];
    rollout_add("pkg-b", "1.2.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id2);
    assert_string_equal(checkin("d-2", "1.0.0", ro), "update");
    assert_string_equal(ro, id2);
    rollout_add("pkg-c", "1.3.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id3);
    assert_string_equal(checkin("d-2", "1.0.0", ro), "update");
    assert_string_equal(ro, id2);
    /* Running something newer by now: not sent back to 1.2.0. */
    assert_string_equal(checkin("d-2", "9.0.0", NULL), "none");
    assert_int_equal(report("d-2", id2, "confirmed", NULL), 200);
    assert_string_equal(checkin("d-2", "1.2.0", ro), "update");
    assert_string_equal(ro, id3); /* the newest, once the other is done */
}

/* -------------------------------------------------------------- reports */

static void test_report_flow(void **state)
{
    (void)state;
    char id[SRV_ST_ID], st[16];
    rollout_add("pkg-a", "1.1.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id);
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    assert_string_equal(checkin("d-1", "1.0.0", NULL), "update");
    static const char *const flow[] = {"downloading", "verified", "installing",
                                       "trial"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(report("d-1", id, flow[i],
                                i ? NULL : "\"bytes\": 5, \"total\": 9"), 200);
        devro_state("d-1", id, st);
        assert_string_equal(st, flow[i]);
    }
    struct answer a = post("d-1", "health", "tok-d-1",
                           "{\"rollout\": \"r-1\", \"version\": \"1.1.0\", "
                           "\"healthy\": true, \"nonce\": \"5f1c0e9a2b7d4c31\", "
                           "\"detail\": \"it's fine; DROP TABLE x\"}");
    assert_int_equal(a.status, 200);
    assert_true(json_is_true(json_object_get(a.j, "ack")));
    assert_string_equal(jstr(&a, "nonce"), "5f1c0e9a2b7d4c31");
    answer_free(&a);
    assert_int_equal(report("d-1", id, "confirmed", NULL), 200);
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_devro d;
    struct srv_rollout *r = malloc(sizeof *r);
    assert_int_equal(srv_store_devro_get(c, "d-1", id, &d), NB_OK);
    assert_string_equal(d.state, "confirmed");
    assert_int_equal(d.healthy, 1);
    assert_string_equal(d.health_nonce, "5f1c0e9a2b7d4c31");
    assert_string_equal(d.detail, "it's fine; DROP TABLE x");
    assert_int_equal(d.total, 9);
    /* The only device is done, at the last step: completed. */
    assert_int_equal(srv_store_rollout_get(c, id, r), NB_OK);
    assert_string_equal(r->state, "completed");
    assert_int_equal(count_rows(c, "events"), 7); /* offer + 5 + health */
    free(r);
    nb_db_release(g_srv.db, c);
    a = call_h("GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(strstr(a.text, "nobrick_reports_total{state=\"confirmed\"} 1"));
    assert_non_null(strstr(a.text, "nobrick_checkins_total 1"));
    assert_non_null(strstr(a.text, "nobrick_rollout_devices{rollout=\"r-1\","
                                   "state=\"confirmed\"} 1"));
    assert_non_null(strstr(a.text, "nobrick_rollout_percent{rollout=\"r-1\"} 100"));
    answer_free(&a);
}

static void test_auto_pause(void **state)
{
    (void)state;
    char id[SRV_ST_ID], dev[16];
    rollout_add("pkg-a", "1.1.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\", "
                "\"failure_threshold\": \"20%\", \"min_attempted\": 3}", id);
    for (int i = 0; i < 6; i++) {
        char tok[32];
        snprintf(dev, sizeof dev, "d-%d", i);
        snprintf(tok, sizeof tok, "tok-%s", dev);
        dev_add(dev, tok, "sim-1", NULL);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(dev, sizeof dev, "d-%d", i);
        assert_string_equal(checkin(dev, "1.0.0", NULL), "update");
    }
    /* 1 of 5 = 20 %: not over the threshold. */
    assert_int_equal(report("d-0", id, "failed", "\"reason\": \"NB_ERR_IO\""), 200);
    assert_int_equal(report("d-0", id, "reverted", NULL), 200);
    /* 2 of 5 = 40 %: paused by the report itself. */
    assert_int_equal(report("d-1", id, "failed", "\"reason\": \"NB_ERR_IO\""), 200);
    assert_string_equal(checkin("d-5", "1.0.0", NULL), "none");
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_rollout *r = malloc(sizeof *r);
    assert_int_equal(srv_store_rollout_get(c, id, r), NB_OK);
    assert_string_equal(r->state, "paused");
    assert_true(strncmp(r->pause_reason, "auto: ", 6) == 0);
    free(r);
    nb_db_release(g_srv.db, c);
    /* d-2 mid-update continues; reports still accepted. */
    assert_int_equal(report("d-2", id, "downloading", "\"bytes\": 1, \"total\": 2"), 200);
}

/* ----------------------------------------------------------------- seen */

static int64_t last_seen(const char *dev, char version[SRV_ST_VERSION])
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_device d;
    assert_int_equal(srv_store_device_get(c, dev, &d), NB_OK);
    nb_db_release(g_srv.db, c);
    if (version)
        snprintf(version, SRV_ST_VERSION, "%s", d.version);
    return d.last_seen;
}

static void test_checkin_writes_news(void **state)
{
    (void)state;
    char v[SRV_ST_VERSION];
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    assert_string_equal(checkin("d-1", "1.0.0", NULL), "none");
    assert_int_equal(last_seen("d-1", v), g_now);
    assert_string_equal(v, "1.0.0");
    /* Nothing new, last_seen fresh: the database is byte for byte the
     * same (no write, so no commit that waits for the disk). */
    int64_t t0 = g_now;
    char *before = dump();
    g_now += SRV_SEEN_INTERVAL - 1;
    assert_string_equal(checkin("d-1", "1.0.0", NULL), "none");
    char *after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* last_seen is due again after the interval. */
    g_now = t0 + SRV_SEEN_INTERVAL;
    assert_string_equal(checkin("d-1", "1.0.0", NULL), "none");
    assert_int_equal(last_seen("d-1", NULL), g_now);
    /* News is written at once, whatever the age of last_seen. */
    g_now += 1;
    assert_string_equal(checkin("d-1", "1.0.1", NULL), "none");
    assert_int_equal(last_seen("d-1", v), g_now);
    assert_string_equal(v, "1.0.1");
    /* A clock that went back: written, so last_seen is never ahead. */
    g_now -= 10;
    assert_string_equal(checkin("d-1", "1.0.1", NULL), "none");
    assert_int_equal(last_seen("d-1", NULL), g_now);
    /* Every check-in is counted, written or not. */
    struct answer a = call_h("GET", "/metrics", NULL, NULL, NULL);
    assert_non_null(strstr(a.text, "nobrick_checkins_total 5"));
    answer_free(&a);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, reset, teardown)
    const struct CMUnitTest tests[] = {
        T(test_routing), T(test_auth), T(test_enrolment), T(test_bad_input),
        T(test_offers_staged), T(test_offers_filters),
        T(test_offers_paused_aborted), T(test_report_flow),
        T(test_auto_pause), T(test_checkin_writes_news),
    };
    return dbtest_main("test_srv_dispatch", tests, sizeof tests / sizeof tests[0]);
}
