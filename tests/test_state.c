/* test_state.c - the slot state table, nb_state_set_slot, lifecycle,
 * anti-rollback (security version floor) and nb_state_check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nb_state.h"

enum { E = NB_SLOT_EMPTY, RX = NB_SLOT_RECEIVING, V = NB_SLOT_VERIFIED,
       P = NB_SLOT_PENDING, T = NB_SLOT_TRIAL, C = NB_SLOT_CONFIRMED,
       R = NB_SLOT_REJECTED, N = NB_SLOT_STATE_COUNT };

/* The table as state.c documents it, written out independently: every
 * edge listed there, and nothing else. */
static const uint8_t expected[N][N] = {
    /*            E  RX V  P  T  C  R */
    [E]  = {     0, 1, 0, 0, 0, 0, 0},
    [RX] = {     1, 1, 1, 0, 0, 0, 1},
    [V]  = {     0, 1, 0, 1, 0, 1, 1},
    [P]  = {     0, 1, 0, 0, 1, 0, 1},
    [T]  = {     0, 0, 0, 0, 1, 1, 1},
    [C]  = {     0, 1, 0, 0, 0, 0, 1},
    [R]  = {     1, 1, 0, 0, 0, 0, 0},
};

static void transition_table(void **state)
{
    (void)state;
    for (unsigned f = 0; f < N; f++)
        for (unsigned t = 0; t < N; t++)
            if (nb_slot_transition_allowed((uint8_t)f, (uint8_t)t) !=
                expected[f][t])
                fail_msg("%s -> %s: allowed=%d, expected %d",
                         nb_slot_state_name((uint8_t)f),
                         nb_slot_state_name((uint8_t)t),
                         nb_slot_transition_allowed((uint8_t)f, (uint8_t)t),
                         expected[f][t]);
}

static void forbidden_samples(void **state)
{
    (void)state;
    /* The edges that would break the promise. */
    assert_false(nb_slot_transition_allowed(E, T));
    assert_false(nb_slot_transition_allowed(E, P));
    assert_false(nb_slot_transition_allowed(E, C));
    assert_false(nb_slot_transition_allowed(RX, P));
    assert_false(nb_slot_transition_allowed(RX, T));
    assert_false(nb_slot_transition_allowed(RX, C));
    assert_false(nb_slot_transition_allowed(R, T));
    assert_false(nb_slot_transition_allowed(R, C));
    assert_false(nb_slot_transition_allowed(R, P));
    assert_false(nb_slot_transition_allowed(C, P));
    assert_false(nb_slot_transition_allowed(C, T));
    assert_false(nb_slot_transition_allowed(T, RX));
    assert_false(nb_slot_transition_allowed(T, P));
    assert_false(nb_slot_transition_allowed(P, C));
    /* Out of range states are never allowed. */
    assert_false(nb_slot_transition_allowed(N, E));
    assert_false(nb_slot_transition_allowed(E, N));
    assert_false(nb_slot_transition_allowed(255, RX));
    assert_false(nb_slot_transition_allowed(RX, 255));
}

static void set_slot(void **state)
{
    (void)state;
    struct nb_state st;
    memset(&st, 0, sizeof(st));
    /* The full happy path, with attempts reset on every move but TRIAL. */
    assert_int_equal(nb_state_set_slot(&st, 1, RX), NB_OK);
    assert_int_equal(nb_state_set_slot(&st, 1, V), NB_OK);
    assert_int_equal(nb_state_set_slot(&st, 1, P), NB_OK);
    assert_int_equal(nb_state_set_slot(&st, 1, T), NB_OK);
    st.slot[1].attempts = 3;
    assert_int_equal(nb_state_set_slot(&st, 1, T), NB_OK);
    assert_int_equal(st.slot[1].attempts, 3); /* counting is the caller's */
    assert_int_equal(nb_state_set_slot(&st, 1, C), NB_OK);
    assert_int_equal(st.slot[1].state, C);
    assert_int_equal(st.slot[1].attempts, 0);
    st.slot[1].attempts = 2;
    assert_int_equal(nb_state_set_slot(&st, 1, R), NB_OK);
    assert_int_equal(st.slot[1].attempts, 0);
    st.slot[1].attempts = 2;
    assert_int_equal(nb_state_set_slot(&st, 1, RX), NB_OK);
    assert_int_equal(st.slot[1].attempts, 0);

    /* Forbidden: state unchanged. */
    memset(&st, 0, sizeof(st));
    assert_int_equal(nb_state_set_slot(&st, 0, T), NB_ERR_STATE);
    assert_int_equal(st.slot[0].state, E);
    st.slot[2].state = R;
    assert_int_equal(nb_state_set_slot(&st, 2, T), NB_ERR_STATE);
    assert_int_equal(st.slot[2].state, R);
    st.slot[0].state = C;
    assert_int_equal(nb_state_set_slot(&st, 0, P), NB_ERR_STATE);
    assert_int_equal(st.slot[0].state, C);
    /* Bad slot index. */
    assert_int_equal(nb_state_set_slot(&st, NB_MAX_SLOTS, RX), NB_ERR_INVAL);
    /* Every edge through set_slot agrees with the table. */
    for (unsigned f = 0; f < N; f++)
        for (unsigned t = 0; t < N; t++) {
            memset(&st, 0, sizeof(st));
            st.slot[0].state = (uint8_t)f;
            st.slot[0].attempts = 2;
            nb_err err = nb_state_set_slot(&st, 0, (uint8_t)t);
            assert_int_equal(err, expected[f][t] ? NB_OK : NB_ERR_STATE);
            assert_int_equal(st.slot[0].state, expected[f][t] ? t : f);
            if (expected[f][t] && t != T)
                assert_int_equal(st.slot[0].attempts, 0);
        }
}

static void lifecycle(void **state)
{
    (void)state;
    struct nb_state st;
    memset(&st, 0, sizeof(st));
    st.lifecycle = NB_LIFECYCLE_DEVELOPMENT;
    assert_int_equal(nb_state_set_lifecycle(&st, NB_LIFECYCLE_DEVELOPMENT),
                     NB_OK);
    assert_int_equal(nb_state_set_lifecycle(&st, NB_LIFECYCLE_PRODUCTION),
                     NB_OK);
    assert_int_equal(st.lifecycle, NB_LIFECYCLE_PRODUCTION);
    assert_int_equal(nb_state_set_lifecycle(&st, NB_LIFECYCLE_DEVELOPMENT),
                     NB_ERR_DENIED);
    assert_int_equal(st.lifecycle, NB_LIFECYCLE_PRODUCTION);
    assert_int_equal(nb_state_set_lifecycle(&st, NB_LIFECYCLE_PRODUCTION),
                     NB_OK);
    assert_int_equal(nb_state_set_lifecycle(&st, 0), NB_ERR_INVAL);
    assert_int_equal(nb_state_set_lifecycle(&st, 3), NB_ERR_INVAL);
    assert_int_equal(st.lifecycle, NB_LIFECYCLE_PRODUCTION);
    assert_string_equal(nb_lifecycle_name(NB_LIFECYCLE_PRODUCTION),
                        "production");
    assert_string_equal(nb_lifecycle_name(NB_LIFECYCLE_DEVELOPMENT),
                        "development");
    assert_string_equal(nb_lifecycle_name(9), "unknown");
}

static void svn_floor(void **state)
{
    (void)state;
    struct nb_state st;
    int down = 7;
    memset(&st, 0, sizeof(st));
    st.floor = 10;
    st.lifecycle = NB_LIFECYCLE_DEVELOPMENT;
    assert_int_equal(nb_state_check_svn(&st, 10, &down), NB_OK);
    assert_int_equal(down, 0);
    assert_int_equal(nb_state_check_svn(&st, 11, &down), NB_OK);
    assert_int_equal(down, 0);
    assert_int_equal(nb_state_check_svn(&st, 0xFFFFFFFFu, &down), NB_OK);
    assert_int_equal(down, 0);
    assert_int_equal(nb_state_check_svn(&st, 9, &down), NB_OK);
    assert_int_equal(down, 1);
    assert_int_equal(nb_state_check_svn(&st, 0, &down), NB_OK);
    assert_int_equal(down, 1);
    st.lifecycle = NB_LIFECYCLE_PRODUCTION;
    down = 7;
    assert_int_equal(nb_state_check_svn(&st, 10, &down), NB_OK);
    assert_int_equal(down, 0);
    assert_int_equal(nb_state_check_svn(&st, 9, &down), NB_ERR_ROLLBACK);
    assert_int_equal(down, 0);
    assert_int_equal(nb_state_check_svn(&st, 0, &down), NB_ERR_ROLLBACK);
    /* A corrupt lifecycle value is treated as production, not as
     * "downgrades allowed". */
    st.lifecycle = 0;
    assert_int_equal(nb_state_check_svn(&st, 9, &down), NB_ERR_ROLLBACK);
}

static struct nb_state good_state(void)
{
    struct nb_state st;
    memset(&st, 0, sizeof(st));
    st.layout = NB_LAYOUT_AB;
    st.lifecycle = NB_LIFECYCLE_DEVELOPMENT;
    st.attempt_limit = 3;
    return st;
}

static void state_check(void **state)
{
    (void)state;
    struct nb_state st = good_state();
    assert_int_equal(nb_state_check(&st, 2), NB_OK);
    st.slot[0].state = C, st.slot[1].state = R, st.active = 1;
    assert_int_equal(nb_state_check(&st, 2), NB_OK);
    st.op = NB_OP_REVERT;
    assert_int_equal(nb_state_check(&st, 2), NB_OK);

    st = good_state(), st.layout = 0;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.layout = NB_LAYOUT_SINGLE + 1;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.lifecycle = 0;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.lifecycle = 3;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.active = 2;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.attempt_limit = 0;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.op = NB_OP_REVERT + 1;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.slot[1].state = N;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    st = good_state(), st.slot[0].state = 200;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    /* A slot the layout does not have must be EMPTY. */
    st = good_state(), st.slot[2].state = C;
    assert_int_equal(nb_state_check(&st, 2), NB_ERR_CORRUPT);
    assert_int_equal(nb_state_check(&st, 3), NB_OK);
    st = good_state(), st.layout = NB_LAYOUT_SINGLE, st.slot[1].state = RX;
    assert_int_equal(nb_state_check(&st, 1), NB_ERR_CORRUPT);
}

static void names(void **state)
{
    (void)state;
    static const char *const want[N] = {"EMPTY", "RECEIVING", "VERIFIED",
                                        "PENDING", "TRIAL", "CONFIRMED",
                                        "REJECTED"};
    for (unsigned i = 0; i < N; i++)
        assert_string_equal(nb_slot_state_name((uint8_t)i), want[i]);
    assert_string_equal(nb_slot_state_name(N), "UNKNOWN");
    assert_string_equal(nb_layout_name(NB_LAYOUT_AB), "ab");
    assert_string_equal(nb_layout_name(NB_LAYOUT_AB_SWAP), "ab-swap");
    assert_string_equal(nb_layout_name(NB_LAYOUT_AB_FACTORY), "ab-factory");
    assert_string_equal(nb_layout_name(NB_LAYOUT_SINGLE), "single");
    assert_string_equal(nb_layout_name(0), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transition_table),
        cmocka_unit_test(forbidden_samples),
        cmocka_unit_test(set_slot),
        cmocka_unit_test(lifecycle),
        cmocka_unit_test(svn_floor),
        cmocka_unit_test(state_check),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
