/*
 * check.h - what the test programs of the C core share (native/tests/test_core*.c,
 * built together by tests/native/test_native_sanitizers.py).
 */
#ifndef TOTPD_TESTS_CHECK_H
#define TOTPD_TESTS_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "totpd_core.h"

/* Failed checks so far; main exits non-zero if any. */
extern int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

/* A deterministic xorshift generator: every run checks the same cases. */
uint64_t rng(void);

/* test_core_split.c */
void test_split(int path);
void test_split_prepare_errors(int path);
void test_split_verify_errors(int path);
void test_empty(int path);
void test_empty_tables(int path);

/* test_core_race.c */
void test_differential(int path);
void test_race(void);

#endif /* TOTPD_TESTS_CHECK_H */
