/* test_srv_artifacts.c - nobrick-server's artifact serving and offer URLs
 * without a socket (srv_dispatch on struct srv_req, tests/srvfixture.h):
 *
 *   ranges        srv_parse_ranges: single, several, suffix, open,
 *                 clamped, unsatisfiable, malformed (ignored), too many
 *   artifacts     200, 206 at the offset, multipart/byteranges read back
 *                 byte for byte, 416 with Content-Range, 404, 405,
 *                 traversal names, symlinks, FIFOs, directories,
 *                 artifact_auth with device and admin tokens
 *   offer URLs    artifact_base_url (a CDN), ftp_base_url, MQTT, names
 *                 percent-encoded, the revocation list
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srvfixture.h"

/* ------------------------------------------------------------ artifacts */

static void test_ranges(void **state)
{
    (void)state;
    struct srv_range r[4];
    assert_int_equal(srv_parse_ranges(NULL, 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("items=0-1", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=0-9", 100, r, 4), 1);
    assert_true(r[0].first == 0 && r[0].last == 9);
    assert_int_equal(srv_parse_ranges("bytes=90-", 100, r, 4), 1);
    assert_true(r[0].first == 90 && r[0].last == 99);
    assert_int_equal(srv_parse_ranges("bytes=-10", 100, r, 4), 1);
    assert_true(r[0].first == 90 && r[0].last == 99);
    assert_int_equal(srv_parse_ranges("bytes=-1000", 100, r, 4), 1);
    assert_true(r[0].first == 0);
    assert_int_equal(srv_parse_ranges("bytes=50-5000", 100, r, 4), 1);
    assert_true(r[0].last == 99);
    assert_int_equal(srv_parse_ranges("bytes=0-1, 5-6 ,10-", 100, r, 4), 3);
    assert_true(r[1].first == 5 && r[2].first == 10 && r[2].last == 99);
    assert_int_equal(srv_parse_ranges("bytes=100-", 100, r, 4), -1);
    assert_int_equal(srv_parse_ranges("bytes=-0", 100, r, 4), -1);
    assert_int_equal(srv_parse_ranges("bytes=200-300,0-0", 100, r, 4), 1);
    assert_int_equal(srv_parse_ranges("bytes=5-4", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=a-4", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=-", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=1-2,", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=0-1,2-3,4-5,6-7,8-9", 100, r, 4), 0);
    assert_int_equal(srv_parse_ranges("bytes=99999999999999999999999-", 100, r, 4), -1);
    assert_int_equal(srv_parse_ranges("bytes=0-0", 0, r, 4), -1);
}

static void test_artifacts(void **state)
{
    (void)state;
    char path[400], buf[2048], target[400];
    struct answer a = call_h("GET", "/api/v1/artifacts/v.bin", NULL, NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.r.kind, SRV_BODY_FILE);
    assert_int_equal(a.r.length, 1000);
    answer_free(&a);
    a = call_h("GET", "/api/v1/artifacts/v.bin", NULL, "bytes=26-51", NULL);
    assert_int_equal(a.status, 206);
    assert_int_equal(a.r.offset, 26);
    assert_int_equal(a.r.length, 26);
    assert_string_equal(a.r.hdrs[1].value, "bytes 26-51/1000");
    answer_free(&a);
    a = call_h("HEAD", "/api/v1/artifacts/v.bin", NULL, "bytes=0-0,999-", NULL);
    assert_int_equal(a.status, 206);
    assert_int_equal(a.r.kind, SRV_BODY_MULTI);
    /* The multipart body, read the way MHD reads it. */
    uint64_t len = srv_multipart_length(&a.r), pos = 0;
    assert_true(len < sizeof buf);
    while (pos < len) {
        long n = srv_multipart_read(&a.r, pos, buf + pos, 7);
        assert_true(n > 0);
        pos += (uint64_t)n;
    }
    buf[pos] = '\0';
    assert_int_equal(srv_multipart_read(&a.r, pos, buf, 7), 0);
    snprintf(path, sizeof path, "\r\n--%s\r\nContent-Type: application/"
             "octet-stream\r\nContent-Range: bytes 0-0/1000\r\n\r\na\r\n--%s"
             "\r\nContent-Type: application/octet-stream\r\nContent-Range: "
             "bytes 999-999/1000\r\n\r\nl\r\n--%s--\r\n", a.r.boundary,
             a.r.boundary, a.r.boundary);
    assert_string_equal(buf, path);
    answer_free(&a);
    a = call_h("GET", "/api/v1/artifacts/v.bin", NULL, "bytes=1000-", NULL);
    expect_error(&a, 416, "bad_request");
    a = call_h("GET", "/api/v1/artifacts/none.bin", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    a = call_h("POST", "/api/v1/artifacts/v.bin", NULL, NULL, NULL);
    expect_error(&a, 405, "bad_request");
    static const char *const bad[] = {"..", "../etc/passwd", ".hidden",
                                      "a/b", "a\\b", "x..y", "%2e%2e", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/api/v1/artifacts/%s", bad[i]);
        a = call_h("GET", path, NULL, NULL, NULL);
        if (a.status != 400 && a.status != 404)
            fail_msg("%s: %d", bad[i], a.status);
        answer_free(&a);
    }
    /* A symlink (even to a file inside), a FIFO, a directory: 404. */
    snprintf(target, sizeof target, "%s/v.bin", g_art);
    snprintf(path, sizeof path, "%s/link.bin", g_art);
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
    a = call_h("GET", "/api/v1/artifacts/link.bin", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    snprintf(path, sizeof path, "%s/fifo", g_art);
    unlink(path);
    assert_int_equal(mkfifo(path, 0644), 0);
    a = call_h("GET", "/api/v1/artifacts/fifo", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    snprintf(path, sizeof path, "%s/dir", g_art);
    mkdir(path, 0755);
    a = call_h("GET", "/api/v1/artifacts/dir", NULL, NULL, NULL);
    expect_error(&a, 404, "not_found");
    /* artifact_auth: a device's token, or an admin's. */
    g_cfg.artifact_auth = 1;
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    a = call_h("GET", "/api/v1/artifacts/v.bin", NULL, NULL, NULL);
    expect_error(&a, 401, "unauthorized");
    a = call_h("GET", "/api/v1/artifacts/v.bin", "tok-nope", NULL, NULL);
    expect_error(&a, 401, "unauthorized");
    a = call_h("GET", "/api/v1/artifacts/v.bin", "tok-d-1", NULL, NULL);
    assert_int_equal(a.status, 200);
    answer_free(&a);
    a = call_h("GET", "/api/v1/artifacts/v.bin", ADMIN, NULL, NULL);
    assert_int_equal(a.status, 200);
    answer_free(&a);
}

static void test_revocations_and_urls(void **state)
{
    (void)state;
    char id[SRV_ST_ID];
    snprintf(g_cfg.revocations, sizeof g_cfg.revocations, "rev-3.cose");
    g_cfg.revocations_seq = 3;
    snprintf(g_cfg.ftp_base_url, sizeof g_cfg.ftp_base_url, "ftp://h:2121/");
    snprintf(g_cfg.artifact_base_url, sizeof g_cfg.artifact_base_url,
             "https://cdn.example/fw/");
    g_srv.mqtt_enabled = 1;
    srv_set_public_url(&g_srv, "http://127.0.0.1:8080");
    rollout_add("pkg a+b", "1.1.0", NULL,
                "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}", id);
    dev_add("d-1", "tok-d-1", "sim-1", NULL);
    struct answer a = post("d-1", "checkin", "tok-d-1", checkin_body("1.0.0"));
    assert_string_equal(jstr(&a, "action"), "update");
    json_t *arts = json_object_get(a.j, "artifacts");
    assert_string_equal(json_string_value(json_object_get(arts, "http")),
                        "https://cdn.example/fw/pkg%20a%2Bb.nbpkg");
    assert_string_equal(json_string_value(json_object_get(arts, "ftp")),
                        "ftp://h:2121/pkg%20a%2Bb.nbpkg");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(arts, "mqtt"), "artifact")),
                        "pkg a+b.nbpkg");
    json_t *rev = json_object_get(a.j, "revocations");
    assert_string_equal(json_string_value(json_object_get(rev, "url")),
                        "https://cdn.example/fw/rev-3.cose");
    assert_int_equal(json_integer_value(json_object_get(rev, "seq")), 3);
    answer_free(&a);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, reset, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ranges), T(test_artifacts), T(test_revocations_and_urls),
    };
    return dbtest_main("test_srv_artifacts", tests, sizeof tests / sizeof tests[0]);
}
