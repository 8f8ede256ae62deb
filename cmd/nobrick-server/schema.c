/* schema.c - nobrick-server's tables, and the migrations that make them.
 *
 * The schema is a list of migrations, each one SQL script run in one
 * transaction together with the row of schema_version that records it, so
 * a migration is applied completely or not at all, and a server that
 * finds a newer schema than it knows refuses to run. The text is the same
 * on SQLite and PostgreSQL (BIGINT and TEXT columns, ON CONFLICT); the
 * one difference is an auto-increment key, written @AUTOID@ below and
 * replaced per backend.
 *
 * Times are Unix seconds. JSON values (tags, hw_revs, slots, target,
 * policy, event bodies) are TEXT the server writes and reads itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

static const char migration_1[] =
    "CREATE TABLE devices ("
    " id TEXT PRIMARY KEY,"
    " token_sha256 TEXT,"
    " enrol_pending BIGINT NOT NULL DEFAULT 0,"
    " hw_rev TEXT NOT NULL DEFAULT '',"
    " grp TEXT,"
    " tags TEXT NOT NULL DEFAULT '[]',"
    " version TEXT NOT NULL DEFAULT '',"
    " security_version BIGINT NOT NULL DEFAULT 0,"
    " slots TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " last_seen BIGINT NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX devices_token ON devices (token_sha256);"
    "CREATE INDEX devices_grp ON devices (grp);"
    "CREATE TABLE device_tags ("
    " device_id TEXT NOT NULL,"
    " tag TEXT NOT NULL,"
    " PRIMARY KEY (device_id, tag));"
    "CREATE INDEX device_tags_tag ON device_tags (tag, device_id);"
    "CREATE TABLE packages ("
    " id TEXT PRIMARY KEY,"
    " version TEXT NOT NULL,"
    " security_version BIGINT NOT NULL,"
    " channel TEXT NOT NULL,"
    " vendor TEXT NOT NULL DEFAULT '',"
    " class TEXT NOT NULL DEFAULT '',"
    " hw_revs TEXT NOT NULL DEFAULT '[]',"
    " size BIGINT NOT NULL,"
    " payload_offset BIGINT NOT NULL,"
    " payload_size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL UNIQUE,"
    " file TEXT NOT NULL,"
    " manifest_file TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX packages_channel ON packages (channel, security_version);"
    "CREATE TABLE package_files ("
    " package_id TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " file TEXT NOT NULL,"
    " size BIGINT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " sha1 TEXT NOT NULL DEFAULT '',"
    " md5 TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (package_id, name));"
    "CREATE TABLE rollouts ("
    " id TEXT PRIMARY KEY,"
    " seq BIGINT NOT NULL UNIQUE,"
    " package_id TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " pause_reason TEXT,"
    " step BIGINT NOT NULL DEFAULT 0,"
    " step_started_at BIGINT NOT NULL,"
    " target TEXT NOT NULL,"
    " policy TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL);"
    "CREATE INDEX rollouts_state ON rollouts (state, seq);"
    "CREATE TABLE device_rollouts ("
    " device_id TEXT NOT NULL,"
    " rollout_id TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " step BIGINT NOT NULL,"
    " offered_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " bytes BIGINT NOT NULL DEFAULT 0,"
    " total BIGINT NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT '',"
    " health_nonce TEXT NOT NULL DEFAULT '',"
    " healthy BIGINT NOT NULL DEFAULT -1,"
    " PRIMARY KEY (device_id, rollout_id));"
    "CREATE INDEX device_rollouts_rollout ON device_rollouts"
    " (rollout_id, step, state);"
    "CREATE INDEX device_rollouts_state ON device_rollouts"
    " (rollout_id, state);"
    "CREATE TABLE events ("
    " id @AUTOID@,"
    " at BIGINT NOT NULL,"
    " device_id TEXT NOT NULL,"
    " rollout_id TEXT,"
    " kind TEXT NOT NULL,"
    " body TEXT NOT NULL);"
    "CREATE INDEX events_device ON events (device_id, id);"
    "CREATE TABLE counters ("
    " name TEXT PRIMARY KEY,"
    " value BIGINT NOT NULL);";

/* 2: the rollouts a check-in considers, newest first, straight from an
 * index. With rollouts_state, SQLite answered "state IN (...) ORDER BY seq
 * DESC" from three ranges of it sorted in a temporary B-tree at every
 * check-in, and picked it over a partial index too; without it, the
 * management list filtered by state walks the seq index (rollouts are
 * few). (The WHERE must stay word for word that of
 * srv_store_rollout_active, or the index is not used.) */
static const char migration_2[] =
    "DROP INDEX rollouts_state;"
    "CREATE INDEX rollouts_active ON rollouts (seq)"
    " WHERE state IN ('running', 'paused', 'completed');";

static const char *const migrations[] = {migration_1, migration_2};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

static int version_row(void *arg, const struct nb_db_row *row)
{
    *(int64_t *)arg = nb_db_is_null(row, 0) ? 0 : nb_db_int(row, 0);
    return 1;
}

nb_err srv_schema_version(struct nb_db_conn *c, int64_t *version)
{
    *version = 0;
    return nb_db_exec(c, "SELECT MAX(version) FROM schema_version", NULL, 0,
                      version_row, version, NULL);
}

/* The script with @AUTOID@ replaced for the backend; malloc'ed. */
static char *for_backend(const char *sql, int pg)
{
    const char *id = pg ? "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
                        : "INTEGER PRIMARY KEY";
    const char *mark = "@AUTOID@";
    size_t n = strlen(sql) + 64, pos = 0;
    char *out = malloc(n);
    if (!out)
        return NULL;
    while (*sql) {
        if (strncmp(sql, mark, 8) == 0) {
            pos += (size_t)snprintf(out + pos, n - pos, "%s", id);
            sql += 8;
        } else {
            out[pos++] = *sql++;
        }
    }
    out[pos] = '\0';
    return out;
}

nb_err srv_schema_migrate(struct nb_db_conn *c, const char *backend)
{
    int64_t have = 0;
    int pg = strcmp(backend, "postgresql") == 0;
    nb_err err = nb_db_exec_script(
        c, "CREATE TABLE IF NOT EXISTS schema_version ("
           " version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)");
    if (err)
        return err;
    err = srv_schema_version(c, &have);
    if (err)
        return err;
    if (have > (int64_t)N_MIGRATIONS)
        return NB_ERR_STATE; /* a newer server migrated this database */
    for (int64_t v = have + 1; v <= (int64_t)N_MIGRATIONS; v++) {
        char *sql = for_backend(migrations[v - 1], pg);
        struct nb_db_val p[2] = {NB_DB_I(v), NB_DB_I(time(NULL))};
        if (!sql)
            return NB_ERR_NOMEM;
        err = nb_db_begin(c);
        if (!err)
            err = nb_db_exec_script(c, sql);
        if (!err)
            err = nb_db_exec(c, "INSERT INTO schema_version (version, applied_at)"
                             " VALUES (?1, ?2)", p, 2, NULL, NULL, NULL);
        free(sql);
        if (!err)
            err = nb_db_commit(c);
        else
            nb_db_rollback(c);
        if (err)
            return err;
    }
    return NB_OK;
}
