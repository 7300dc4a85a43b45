/* libtoyalloc.so: the toy replaces malloc for a whole program via LD_PRELOAD.
 * Every function of hooks.h's list forwards to its toy_ twin (the ones glibc's
 * manual lists for replacing malloc, plus the obsolete valloc and pvalloc, so
 * nothing reaches glibc's allocator by a side door), and malloc_usable_size. */
#define _GNU_SOURCE
#include "hooks.h"
#include "toyalloc.h"

#define AB_TOY_value(name, args) return toy_##name args;
#define AB_TOY_none(name, args) toy_##name args;
#define AB_TOY_FORWARD(op, returns, ret, name, params, args) AB_EXPORT ret name params { AB_TOY_##returns(name, args) }
AB_HOOKED_FUNCTIONS(AB_TOY_FORWARD)

AB_EXPORT size_t malloc_usable_size(void *p) { return toy_usable_size(p); }
