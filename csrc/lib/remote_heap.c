/* See remote_heap.h. */
#define _GNU_SOURCE
#include "remote_heap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define HEADS 32u    /* what a step reads of a chunk: prev_size, size, fd, bk */
#define BATCH 1024u  /* IOV_MAX: the chunks of that many lists read in one process_vm_readv */

/* One free list being walked: a fastbin (by fd, safe-linked) or a regular bin (by bk, back to its head). */
typedef struct walk {
    uint64_t next;  /* the chunk to read next; 0 (a fastbin's end) or the bin's head: done */
    uint64_t head;  /* a regular bin's head (bin_at): the walk ends back there; 0 for a fastbin */
    uint32_t bin, arena;
} walk;

static int push(ab_free_chunk **v, uint64_t *n, uint64_t *cap, uint64_t addr, uint64_t size_word, uint32_t bin,
                uint32_t arena)
{
    if (*n == *cap) {
        uint64_t more = *cap ? 2 * *cap : 4096;
        ab_free_chunk *grown = realloc(*v, more * sizeof **v);
        if (!grown)
            return -1;
        *v = grown, *cap = more;
    }
    (*v)[(*n)++] = (ab_free_chunk){addr, size_word, bin, arena};
    return 0;
}

static int read_words(int pid, uint64_t addr, void *out, size_t n, uint64_t *reads)
{
    struct iovec local = {out, n}, remote = {(void *)(uintptr_t)addr, n};
    (*reads)++;
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)n ? 0 : -1;
}

/* Every list of every arena walked in lockstep: each step reads the next chunk of every list still
 * going in one process_vm_readv (up to BATCH iovecs), so a snapshot costs a syscall per step of the
 * longest list rather than one per chunk. */
int ab_walk_arenas(int pid, const uint64_t *arenas, int narenas, uint32_t fastbins_off, uint32_t bins_off, int nfast,
                   int nbins, uint64_t max_chunks, ab_free_chunk **out, uint64_t *count, uint64_t *reads, char *err,
                   size_t errcap)
{
    int per = nfast + nbins - 1, nlists = per * narenas;
    walk *w = calloc((size_t)nlists, sizeof *w);
    uint64_t *heads = calloc((size_t)(nfast + 2 * nbins), 8);
    struct iovec *local = calloc(BATCH, sizeof *local), *remote = calloc(BATCH, sizeof *remote);
    uint64_t (*got)[HEADS / 8] = calloc(BATCH, HEADS);
    int *which = calloc(BATCH, sizeof *which);
    ab_free_chunk *v = NULL;
    uint64_t n = 0, cap = 0;
    int rc = 0;
    *reads = 0;
    if (!w || !heads || !local || !remote || !got || !which) {
        snprintf(err, errcap, "out of memory");
        rc = -1;
    }
    for (int a = 0; rc == 0 && a < narenas; a++) {
        uint64_t arena = arenas[a];
        /* the list heads: fastbinsY[] and the bins' fd/bk pairs, two reads */
        if (read_words(pid, arena + fastbins_off, heads, 8u * (size_t)nfast, reads) ||
            read_words(pid, arena + bins_off, heads + nfast, 16u * (size_t)(nbins - 1), reads)) {
            snprintf(err, errcap, "cannot read the bins of arena %#llx: %s", (unsigned long long)arena,
                     strerror(errno));
            rc = -1;
            break;
        }
        walk *aw = w + (size_t)a * (size_t)per;
        for (int i = 0; i < nfast; i++)
            aw[i] = (walk){heads[i], 0, (uint32_t)i, (uint32_t)a};
        for (int i = 1; i < nbins; i++) {
            uint64_t bin = arena + bins_off + 16u * (uint64_t)(i - 1) - 16u;  /* bin_at: seen as a chunk */
            aw[nfast + i - 1] = (walk){heads[nfast + 2 * (i - 1) + 1], bin, (uint32_t)(nfast + i),
                                       (uint32_t)a};  /* last(b) = b->bk */
        }
    }
    for (int start = 0; rc == 0;) {
        int k = 0;
        for (int j = 0; j < nlists && k < (int)BATCH; j++) {
            int l = (start + j) % nlists;  /* round robin: a full batch never starves a list */
            if (w[l].next && w[l].next != w[l].head) {
                local[k] = (struct iovec){got[k], HEADS};
                remote[k] = (struct iovec){(void *)(uintptr_t)w[l].next, HEADS};
                which[k++] = l;
            }
        }
        if (!k)
            break;
        start = (which[k - 1] + 1) % nlists;
        (*reads)++;
        if (process_vm_readv(pid, local, (unsigned long)k, remote, (unsigned long)k, 0) != (ssize_t)(k * HEADS)) {
            snprintf(err, errcap, "a chunk of the free lists cannot be read (a torn list)");
            rc = -1;
            break;
        }
        for (int j = 0; j < k && rc == 0; j++) {
            walk *l = &w[which[j]];
            uint64_t p = l->next, size = got[j][1], fd = got[j][2], bk = got[j][3];
            if (n >= max_chunks || push(&v, &n, &cap, p, size, l->bin, l->arena)) {
                snprintf(err, errcap, "arena %#llx: list %u runs past what the arenas could hold (a loop)",
                         (unsigned long long)arenas[l->arena], l->bin);
                rc = -1;
            }
            l->next = l->head ? bk : ((p + 16) >> 12) ^ fd;  /* a fastbin's fd is safe-linked (REVEAL_PTR) */
            if (l->head && !l->next) {
                snprintf(err, errcap, "arena %#llx: bin %u has a null link (a torn list)",
                         (unsigned long long)arenas[l->arena], l->bin);
                rc = -1;
            }
        }
    }
    free(w), free(heads), free(local), free(remote), free(got), free(which);
    if (rc) {
        free(v);
        return -1;
    }
    *out = v, *count = n;
    return 0;
}
