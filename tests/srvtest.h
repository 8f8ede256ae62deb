/* srvtest.h - what the server's store and dispatch tests share
 * (tests/test_store.c, tests/test_srv_dispatch.c): on top of dbtest.h's
 * fixture and dbtest_main() (SQLite, then PostgreSQL when NB_TEST_DB says
 * so), a per-test reset to an empty, migrated schema, and builders for
 * packages and rollouts with policies in rollout.h's JSON form.
 *
 * Header only (static functions), like dbtest.h.
 */
#ifndef NB_SRVTEST_H
#define NB_SRVTEST_H

#include <jansson.h>

#include "dbtest.h"
#include "rollout.h"
#include "server.h"
#include "store.h"

static const char *const srvtest_tables[] = {
    "devices", "device_tags", "packages", "package_files", "rollouts",
    "device_rollouts", "events", "counters", "schema_version"};

/* Drop the server's tables and migrate again: every test starts empty. */
static inline void srvtest_reset_db(struct nb_db *db)
{
    struct nb_db_conn *c = nb_db_acquire(db);
    char sql[128];
    for (size_t i = 0; i < sizeof srvtest_tables / sizeof srvtest_tables[0];
         i++) {
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", srvtest_tables[i]);
        script(c, sql);
    }
    nb_err err = srv_schema_migrate(c, nb_db_backend(db));
    if (err)
        fail_msg("migrate: %s: %s", nb_err_name(err), nb_db_errmsg(c));
    nb_db_release(db, c);
}

/* Canonical JSON of a policy / target given as text. */
static inline void srvtest_policy(const char *text, char *out, size_t cap)
{
    struct nb_ro_policy p;
    char msg[200];
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL;
    if (text && !j)
        fail_msg("bad policy JSON %s", text);
    if (nb_ro_policy_parse(j, &p, msg, sizeof msg))
        fail_msg("policy %s: %s", text ? text : "(null)", msg);
    json_decref(j);
    j = nb_ro_policy_json(&p);
    char *s = json_dumps(j, JSON_COMPACT);
    snprintf(out, cap, "%s", s);
    free(s);
    json_decref(j);
}

static inline void srvtest_target(const char *text, char *out, size_t cap)
{
    struct nb_ro_target t;
    char msg[200];
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL;
    if (text && !j)
        fail_msg("bad target JSON %s", text);
    if (nb_ro_target_parse(j, &t, msg, sizeof msg))
        fail_msg("target %s: %s", text ? text : "(null)", msg);
    json_decref(j);
    j = nb_ro_target_json(&t);
    char *s = json_dumps(j, JSON_COMPACT);
    snprintf(out, cap, "%s", s);
    free(s);
    json_decref(j);
}

/* A package for hw_rev "sim-1" (id, version, security version). */
static inline void srvtest_package(struct nb_db_conn *c, const char *id,
                                   const char *version, int64_t svn,
                                   const char *channel)
{
    struct srv_package p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.version, sizeof p.version, "%s", version);
    p.security_version = svn;
    snprintf(p.channel, sizeof p.channel, "%s", channel);
    snprintf(p.hw_revs[0], sizeof p.hw_revs[0], "sim-1");
    p.n_hw_revs = 1;
    p.size = 1000 + svn;
    p.payload_offset = 512;
    p.payload_size = 488 + svn;
    srv_token_sha256_hex(id, p.sha256); /* unique per package ID */
    snprintf(p.file, sizeof p.file, "%s.nbpkg", id);
    snprintf(p.manifest_file, sizeof p.manifest_file, "%s.nbman", id);
    p.created_at = 1000;
    nb_err err = srv_store_package_insert(c, &p);
    if (err)
        fail_msg("package insert %s: %s: %s", id, nb_err_name(err),
                 nb_db_errmsg(c));
}

/* A running rollout of `package` created at `now`; its ID into id. */
static inline void srvtest_rollout(struct nb_db_conn *c, const char *package,
                                   const char *target, const char *policy,
                                   int64_t now, char id[SRV_ST_ID])
{
    struct srv_rollout *r = calloc(1, sizeof *r);
    assert_non_null(r);
    snprintf(r->package_id, sizeof r->package_id, "%s", package);
    srvtest_target(target, r->target, sizeof r->target);
    srvtest_policy(policy, r->policy, sizeof r->policy);
    r->created_at = now;
    nb_err err = srv_store_rollout_insert(c, r);
    if (err)
        fail_msg("rollout insert: %s: %s", nb_err_name(err), nb_db_errmsg(c));
    snprintf(id, SRV_ST_ID, "%s", r->id);
    free(r);
}

#endif /* NB_SRVTEST_H */
