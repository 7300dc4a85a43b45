/* Tagged blocks for the toy's C stress tests: each live block holds a tag of its own, written by
 * fill() and checked by tag_intact() before the block is freed, moved or left, so a block
 * written through a stale pointer, or handed out twice, is caught. */
#ifndef TAGGED_H
#define TAGGED_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct block { unsigned char *p; size_t size; unsigned char tag; } block;

static inline uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

/* The tag at every byte of a small block; at each 4 KiB and the last byte of a larger one. */
static inline void fill(const block *b)
{
    if (b->size <= 4096) { memset(b->p, b->tag, b->size); return; }
    for (size_t off = 0; off < b->size; off += 4096) b->p[off] = b->tag;
    b->p[b->size - 1] = b->tag;
}

/* 1 when what fill() wrote within the first `upto` bytes is still there. */
static inline int tag_intact(const block *b, size_t upto)
{
    size_t n = upto < b->size ? upto : b->size;
    size_t step = b->size <= 4096 ? 1 : 4096;
    for (size_t off = 0; off < n; off += step)
        if (b->p[off] != b->tag) return 0;
    return !(n == b->size && n > 0 && b->p[n - 1] != b->tag);
}

#endif
