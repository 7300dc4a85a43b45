/* What test-api.c takes from mimalloc's internal mimalloc-types.h (see mimalloc.h here): the largest
 * alignment mimalloc 2.0 serves from its segments, half a 32 MiB segment on 64-bit, which the test's
 * aligned requests go up to and past. */
#ifndef MIMALLOC_PLAIN_TYPES_H
#define MIMALLOC_PLAIN_TYPES_H
#define MI_DEBUG 0
#define MI_ALIGNMENT_MAX ((size_t)16 << 20)
#endif
