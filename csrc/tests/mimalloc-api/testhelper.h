/* test-api.c's test macros, for its run through the plain malloc API (see mimalloc.h here): each test
 * prints "test: NAME... " and then "ok", "FAILED" or "skipped"; a test of mimalloc's own API, or of
 * its C++ allocator (which the C build never runs), is skipped without running its body. */
#ifndef TESTHELPER_PLAIN_H
#define TESTHELPER_PLAIN_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int ok, failed, skipped;

static const char *const mimalloc_only[] = {
    "malloc_aligned11", "malloc-aligned-at1", "malloc-aligned-at2", "heap_destroy", "heap_delete",
    "realpath", "stl_allocator1", "stl_allocator2",
};

static bool test_runs(const char *name)
{
    for (size_t i = 0; i < sizeof mimalloc_only / sizeof *mimalloc_only; i++)
        if (strcmp(name, mimalloc_only[i]) == 0) {
            fprintf(stderr, "test: %s... skipped\n", name);
            skipped++;
            return false;
        }
    fprintf(stderr, "test: %s... ", name);
    errno = 0;  /* after the print: a test may read errno */
    return true;
}

static bool test_result(bool result)
{
    fprintf(stderr, result ? "ok\n" : "FAILED\n");
    result ? ok++ : failed++;
    return true;
}

#define CHECK_BODY(name) \
    if (test_runs(name)) \
        for (bool done = false, result = true; !done; done = test_result(result))
#define CHECK(name, expr) CHECK_BODY(name) { result = (expr); }

static inline int print_test_summary(void)
{
    fprintf(stderr, "succeeded: %d\nfailed: %d\nskipped: %d\n", ok, failed, skipped);
    return failed;
}

#endif
