/* See remote_heap.h. */
#define _GNU_SOURCE
#include "remote_heap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* a read brings BLOCK bytes: a header and its neighbours, not a whole page (copying 4 KiB per chunk of a
 * sparse list cost five times more); SLOTS of them are cached, direct-mapped: 4 MiB */
#define BLOCK 512u
#define SLOTS 8192u

typedef struct page_cache {
    int pid;
    uint64_t reads;
    uint64_t tag[SLOTS];  /* page address + 1 (0: empty) */
    unsigned char (*data)[BLOCK];
} page_cache;

/* The 8-byte word at addr (never across a block: chunk fields are 8-aligned); -1 on a failed read. */
static int word(page_cache *c, uint64_t addr, uint64_t *out)
{
    uint64_t block = addr & ~(uint64_t)(BLOCK - 1);
    unsigned slot = (unsigned)(block / BLOCK) % SLOTS;
    if (c->tag[slot] != block + 1) {
        struct iovec local = {c->data[slot], BLOCK}, remote = {(void *)(uintptr_t)block, BLOCK};
        c->reads++;
        if (process_vm_readv(c->pid, &local, 1, &remote, 1, 0) != (ssize_t)BLOCK)
            return -1;
        c->tag[slot] = block + 1;
    }
    memcpy(out, c->data[slot] + (addr - block), 8);
    return 0;
}

static int push(ab_free_chunk **v, uint64_t *n, uint64_t *cap, uint64_t addr, uint64_t size_word, uint32_t bin)
{
    if (*n == *cap) {
        uint64_t more = *cap ? 2 * *cap : 4096;
        ab_free_chunk *grown = realloc(*v, more * sizeof **v);
        if (!grown)
            return -1;
        *v = grown, *cap = more;
    }
    (*v)[(*n)++] = (ab_free_chunk){addr, size_word, bin};
    return 0;
}

int ab_walk_arena(int pid, uint64_t arena, uint32_t fastbins_off, uint32_t bins_off, int nfast, int nbins,
                  uint64_t max_chunks, ab_free_chunk **out, uint64_t *count, uint64_t *reads, char *err,
                  size_t errcap)
{
    page_cache *c = calloc(1, sizeof *c);
    ab_free_chunk *v = NULL;
    uint64_t n = 0, cap = 0;
    int rc = 0;
    if (!c || !(c->data = malloc((size_t)SLOTS * BLOCK))) {
        snprintf(err, errcap, "out of memory");
        free(c);
        return -1;
    }
    c->pid = pid;
    for (int i = 0; i < nfast && rc == 0; i++) {
        uint64_t p, w, size;
        if (word(c, arena + fastbins_off + 8u * (uint64_t)i, &p)) {
            snprintf(err, errcap, "cannot read fastbin %d of arena %#llx: %s", i, (unsigned long long)arena,
                     strerror(errno));
            rc = -1;
        }
        while (rc == 0 && p) {
            if (word(c, p + 8, &size) || word(c, p + 16, &w)) {
                snprintf(err, errcap, "cannot read chunk %#llx of fastbin %d", (unsigned long long)p, i);
                rc = -1;
            } else if (n >= max_chunks || push(&v, &n, &cap, p, size, (uint32_t)i)) {
                snprintf(err, errcap, "fastbin %d of arena %#llx runs past what the arena could hold (a loop)", i,
                         (unsigned long long)arena);
                rc = -1;
            } else {
                p = ((p + 16) >> 12) ^ w;  /* REVEAL_PTR: safe-linking */
            }
        }
    }
    for (int i = 1; i < nbins && rc == 0; i++) {
        uint64_t bin = arena + bins_off + 16u * (uint64_t)(i - 1) - 16u, p, size;  /* bin_at: a chunk's fd/bk */
        if (word(c, bin + 24, &p)) {
            snprintf(err, errcap, "cannot read bin %d of arena %#llx", i, (unsigned long long)arena);
            rc = -1;
        }
        while (rc == 0 && p != bin) {
            if (!p || word(c, p + 8, &size)) {
                snprintf(err, errcap, "bin %d of arena %#llx: cannot read chunk %#llx (a torn list)", i,
                         (unsigned long long)arena, (unsigned long long)p);
                rc = -1;
            } else if (n >= max_chunks || push(&v, &n, &cap, p, size, (uint32_t)(nfast + i))) {
                snprintf(err, errcap, "bin %d of arena %#llx does not return to its head (a loop)", i,
                         (unsigned long long)arena);
                rc = -1;
            } else if (word(c, p + 24, &p)) {
                snprintf(err, errcap, "bin %d of arena %#llx: cannot read a link", i, (unsigned long long)arena);
                rc = -1;
            }
        }
    }
    *reads = c->reads;
    free(c->data);
    free(c);
    if (rc) {
        free(v);
        return -1;
    }
    *out = v, *count = n;
    return 0;
}
