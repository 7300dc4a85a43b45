/* The allocation functions a preload shim replaces, once, in the manner of
 * memray's FOR_EACH_HOOKED_FUNCTION.  From this list come:
 *   - the real functions' pointers and their dlsym(RTLD_NEXT) lookup,
 *   - the wrappers of the shims that watch glibc (recorder, explainer, latency),
 *     written once below: each calls the shim's hook_enter and hook_exit,
 *   - the toy's exported names (toyalloc.c built with TOY_PRELOAD: malloc is
 *     an alias of toy_malloc, ...).
 * Each entry is X(trace op, value or none (returns something or not), return
 * type, name, (parameters), (arguments)),
 * in trace.h's op order; the static asserts below tie the two lists together.
 *
 * A shim that wants the wrappers defines AB_HOOKS_WRAP and, before including
 * this file, `static void hook_enter(ab_call *)` and `static void
 * hook_exit(ab_call *)`.  Inside a hook: no stdio, no malloc (use write(2)). */
#ifndef ALLOCBENCH_HOOKS_H
#define ALLOCBENCH_HOOKS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "trace.h"

#define AB_HOOKED_FUNCTIONS(X)                                                                     \
    X(AB_OP_MALLOC, value, void *, malloc, (size_t size), (size))                                 \
    X(AB_OP_FREE, none, void, free, (void *ptr), (ptr))                                            \
    X(AB_OP_CALLOC, value, void *, calloc, (size_t nmemb, size_t size), (nmemb, size))            \
    X(AB_OP_REALLOC, value, void *, realloc, (void *ptr, size_t size), (ptr, size))               \
    X(AB_OP_REALLOCARRAY, value, void *, reallocarray, (void *ptr, size_t nmemb, size_t size), (ptr, nmemb, size)) \
    X(AB_OP_MEMALIGN, value, void *, memalign, (size_t align, size_t size), (align, size))        \
    X(AB_OP_POSIX_MEMALIGN, value, int, posix_memalign, (void **out, size_t align, size_t size), (out, align, size)) \
    X(AB_OP_ALIGNED_ALLOC, value, void *, aligned_alloc, (size_t align, size_t size), (align, size)) \
    X(AB_OP_VALLOC, value, void *, valloc, (size_t size), (size))                                 \
    X(AB_OP_PVALLOC, value, void *, pvalloc, (size_t size), (size))

/* hook i is trace op i + 1, and there is one hook for every trace op */
enum {
#define AB_HOOK_INDEX(op, returns, ret, name, params, args) AB_HOOK_##name,
    AB_HOOKED_FUNCTIONS(AB_HOOK_INDEX)
#undef AB_HOOK_INDEX
    AB_NHOOKED
};
_Static_assert(AB_NHOOKED == AB_OP_THREAD_CREATE - 1,
               "every allocation op of trace.h is a hooked function and back (the thread ops follow them)");
#define AB_HOOK_ORDER(op, returns, ret, name, params, args) \
    _Static_assert(op == AB_HOOK_##name + 1, #name " is listed in trace.h's op order");
AB_HOOKED_FUNCTIONS(AB_HOOK_ORDER)
#undef AB_HOOK_ORDER

#define AB_EXPORT __attribute__((visibility("default")))

/* One call as a hook sees it. */
typedef struct ab_call {
    int op;          /* enum ab_trace_op */
    void *in;        /* free, realloc, reallocarray: the block passed in */
    uint64_t size;   /* bytes requested (calloc, reallocarray: the product; UINT64_MAX on overflow) */
    uint64_t align;  /* the aligned calls: the alignment */
    void *out;       /* the block returned (NULL: none, or a failed call) */
    uint64_t t0;     /* the shim's own, e.g. a clock reading at entry */
    void *slot;      /* the shim's own, e.g. a trace record reserved at entry */
} ab_call;

#ifdef AB_HOOKS_WRAP

static struct {
#define AB_REAL_POINTER(op, returns, ret, name, params, args) ret (*name) params;
    AB_HOOKED_FUNCTIONS(AB_REAL_POINTER)
#undef AB_REAL_POINTER
} ab_real;

/* dlsym may calloc: while it runs, allocations come from a small static arena */
static char ab_boot[1 << 16];
static size_t ab_boot_used;
static int ab_resolving;

static int ab_in_boot(const void *p) { return (const char *)p >= ab_boot && (const char *)p < ab_boot + sizeof ab_boot; }

static void *ab_boot_alloc(size_t n)
{
    size_t at = (ab_boot_used + 15) & ~(size_t)15;
    if (at + n > sizeof ab_boot)
        return NULL;
    ab_boot_used = at + n;
    return ab_boot + at;  /* static: already zero, so calloc may use it too */
}

static void ab_resolve(void)
{
    ab_resolving = 1;
#define AB_LOOKUP(op, returns, ret, name, params, args) *(void **)&ab_real.name = dlsym(RTLD_NEXT, #name);
    AB_HOOKED_FUNCTIONS(AB_LOOKUP)
#undef AB_LOOKUP
    ab_resolving = 0;
}

static uint64_t ab_product(size_t a, size_t b)
{
    size_t n;
    return __builtin_mul_overflow(a, b, &n) ? UINT64_MAX : n;
}

static void hook_enter(ab_call *c);
static void hook_exit(ab_call *c);

/* A value-returning wrapper: resolve, hook_enter, the real call, hook_exit. */
#define AB_WRAP(op_, ret, name, params, args, in_, size_, align_, out_)   \
    AB_EXPORT ret name params                                               \
    {                                                                       \
        if (!ab_real.name)                                                  \
            ab_resolve();                                                   \
        ab_call c = {.op = op_, .in = in_, .size = size_, .align = align_}; \
        hook_enter(&c);                                                     \
        ret r = ab_real.name args;                                          \
        c.out = out_;                                                       \
        hook_exit(&c);                                                      \
        return r;                                                           \
    }

AB_EXPORT void *malloc(size_t size)
{
    if (!ab_real.malloc) {
        if (ab_resolving)
            return ab_boot_alloc(size);
        ab_resolve();
    }
    ab_call c = {.op = AB_OP_MALLOC, .size = size};
    hook_enter(&c);
    void *r = ab_real.malloc(size);
    c.out = r;
    hook_exit(&c);
    return r;
}

AB_EXPORT void *calloc(size_t nmemb, size_t size)
{
    if (!ab_real.calloc) {
        if (ab_resolving)
            return ab_product(nmemb, size) == UINT64_MAX ? NULL : ab_boot_alloc(nmemb * size);
        ab_resolve();
    }
    ab_call c = {.op = AB_OP_CALLOC, .size = ab_product(nmemb, size)};
    hook_enter(&c);
    void *r = ab_real.calloc(nmemb, size);
    c.out = r;
    hook_exit(&c);
    return r;
}

AB_EXPORT void free(void *ptr)
{
    if (ab_in_boot(ptr))
        return;  /* the bootstrap arena is never given back */
    if (!ab_real.free)
        ab_resolve();
    ab_call c = {.op = AB_OP_FREE, .in = ptr};
    hook_enter(&c);  /* before the real free: ptr's address may be reused the moment it is freed */
    ab_real.free(ptr);
    hook_exit(&c);
}

AB_EXPORT void *realloc(void *ptr, size_t size)
{
    if (!ab_real.realloc)
        ab_resolve();
    if (ab_in_boot(ptr)) {  /* a bootstrap block moves to the real heap: a malloc, to the hooks */
        void *q = malloc(size);
        if (q)
            memcpy(q, ptr, size < sizeof ab_boot - (size_t)((char *)ptr - ab_boot)
                               ? size : sizeof ab_boot - (size_t)((char *)ptr - ab_boot));
        return q;
    }
    ab_call c = {.op = AB_OP_REALLOC, .in = ptr, .size = size};
    hook_enter(&c);
    void *r = ab_real.realloc(ptr, size);
    c.out = r;
    hook_exit(&c);
    return r;
}

AB_WRAP(AB_OP_REALLOCARRAY, void *, reallocarray, (void *ptr, size_t nmemb, size_t size), (ptr, nmemb, size),
        ptr, ab_product(nmemb, size), 0, r)
AB_WRAP(AB_OP_MEMALIGN, void *, memalign, (size_t align, size_t size), (align, size), NULL, size, align, r)
AB_WRAP(AB_OP_POSIX_MEMALIGN, int, posix_memalign, (void **out, size_t align, size_t size), (out, align, size),
        NULL, size, align, r ? NULL : *out)
AB_WRAP(AB_OP_ALIGNED_ALLOC, void *, aligned_alloc, (size_t align, size_t size), (align, size), NULL, size, align, r)
AB_WRAP(AB_OP_VALLOC, void *, valloc, (size_t size), (size), NULL, size, (uint64_t)sysconf(_SC_PAGESIZE), r)
AB_WRAP(AB_OP_PVALLOC, void *, pvalloc, (size_t size), (size), NULL, size, (uint64_t)sysconf(_SC_PAGESIZE), r)
#undef AB_WRAP

#endif /* AB_HOOKS_WRAP */
#endif
