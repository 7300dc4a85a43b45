/* See remote_heap.h. */
#define _GNU_SOURCE
#include "remote_heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define HEADS 32u    /* what a step reads of a chunk: prev_size, size, fd, bk */
#define BATCH 1024u  /* IOV_MAX: the chunks of that many lists read in one process_vm_readv */
#define READERS 4    /* threads that re-read a prior walk's chunks (each page costs the kernel ~1 us to pin) */

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

/* A share of the prior walk's chunks, re-read by one thread. */
typedef struct reread {
    int pid;
    const ab_free_chunk *prior;
    uint64_t from, to;
    uint64_t (*got)[HEADS / 8];
    unsigned char *ok;  /* 1 where the chunk's header was read */
    uint64_t reads;
} reread;

static void *reread_share(void *arg)
{
    reread *r = arg;
    struct iovec local[BATCH], remote[BATCH];
    for (uint64_t i = r->from; i < r->to; i += BATCH) {
        uint64_t k = r->to - i < BATCH ? r->to - i : BATCH;
        for (uint64_t j = 0; j < k; j++) {
            local[j] = (struct iovec){r->got[i + j], HEADS};
            remote[j] = (struct iovec){(void *)(uintptr_t)r->prior[i + j].addr, HEADS};
        }
        r->reads++;
        ssize_t got = process_vm_readv(r->pid, local, (unsigned long)k, remote, (unsigned long)k, 0);
        for (uint64_t j = 0; got > 0 && j < (uint64_t)got / HEADS; j++)
            r->ok[i + j] = 1;  /* a chunk no longer mapped stops the read there: the rest is walked again */
    }
    return NULL;
}

/* Every chunk of a prior walk (made while the process ran) read again, in READERS threads of
 * batched reads: no read waits on another, so the stop costs the pages, not a round trip per
 * step of the longest list. */
static int reread_prior(int pid, const ab_free_chunk *prior, uint64_t nprior, uint64_t (*got)[HEADS / 8],
                        unsigned char *ok, uint64_t *reads)
{
    reread r[READERS];
    pthread_t t[READERS];
    int started[READERS] = {0};
    uint64_t share = (nprior + READERS - 1) / READERS;
    for (int i = 0; i < READERS; i++) {
        uint64_t from = share * (uint64_t)i < nprior ? share * (uint64_t)i : nprior;
        r[i] = (reread){pid, prior, from, from + share < nprior ? from + share : nprior, got, ok, 0};
        /* small walks (and a failed thread start) are read here, on this thread */
        started[i] = i > 0 && nprior >= 4 * BATCH && pthread_create(&t[i], NULL, reread_share, &r[i]) == 0;
        if (!started[i] && i > 0)
            reread_share(&r[i]);
    }
    reread_share(&r[0]);
    for (int i = 0; i < READERS; i++) {
        if (started[i])
            pthread_join(t[i], NULL);
        *reads += r[i].reads;
    }
    return 0;
}

static uint64_t link_of(const walk *l, uint64_t p, const uint64_t *got)
{
    return l->head ? got[3] : ((p + 16) >> 12) ^ got[2];  /* a fastbin's fd is safe-linked (REVEAL_PTR) */
}

/* Each list followed through the prior walk's chunks as far as they still chain from its head,
 * as just read: that prefix is the list now (every link in it read while the process stood), and
 * the lockstep walk goes on from where it leaves off.  -1 with err: out of memory, a torn list. */
static int follow_prior(int pid, walk *w, int narenas, int nfast, int per, const ab_free_chunk *prior,
                        uint64_t nprior, uint64_t max_chunks, ab_free_chunk **v, uint64_t *n, uint64_t *cap,
                        uint64_t *reads, char *err, size_t errcap)
{
    uint64_t nlists = (uint64_t)narenas * (uint64_t)per;
    uint64_t (*got)[HEADS / 8] = calloc(nprior, HEADS), *start = calloc(nlists + 1, 8), *fill = calloc(nlists, 8),
             *order = calloc(nprior, 8);
    unsigned char *ok = calloc(nprior, 1);
    int rc = -1;
    snprintf(err, errcap, "out of memory");
    if (!got || !start || !fill || !order || !ok)
        goto out;
    reread_prior(pid, prior, nprior, got, ok, reads);
    /* the prior chunks list by list, in their order (a counting sort); one of a list that is
     * not walked here (a bad arena or bin) is left out */
#define LIST_OF(c) ((uint64_t)(c).arena * (uint64_t)per + ((c).bin < (uint32_t)nfast ? (c).bin : (c).bin - 1))
#define WALKED(c) ((c).arena < (uint32_t)narenas && (c).bin < (uint32_t)per + 1 && (c).bin != (uint32_t)nfast)
    for (uint64_t i = 0; i < nprior; i++)
        if (WALKED(prior[i]))
            start[LIST_OF(prior[i]) + 1]++;
    for (uint64_t l = 0; l < nlists; l++)
        start[l + 1] += start[l];
    for (uint64_t i = 0; i < nprior; i++)
        if (WALKED(prior[i])) {
            uint64_t l = LIST_OF(prior[i]);
            order[start[l] + fill[l]++] = i;
        }
#undef LIST_OF
#undef WALKED
    rc = 0;
    for (uint64_t l = 0; l < nlists && rc == 0; l++) {
        walk *lw = &w[l];
        for (uint64_t k = start[l]; k < start[l + 1] && lw->next && lw->next != lw->head && rc == 0; k++) {
            uint64_t i = order[k];
            if (!ok[i] || prior[i].addr != lw->next || *n >= max_chunks)
                break;  /* the list changed here (or is longer than it could be): walked on in lockstep */
            if (push(v, n, cap, lw->next, got[i][1], lw->bin, lw->arena))
                rc = -1;
            lw->next = link_of(lw, lw->next, got[i]);
            if (lw->head && !lw->next) {
                snprintf(err, errcap, "bin %u has a null link (a torn list)", lw->bin);
                rc = -1;
            }
        }
    }
out:
    free(got), free(start), free(fill), free(order), free(ok);
    return rc;
}

/* Every list of every arena walked in lockstep: each step reads the next chunk of every list still
 * going in one process_vm_readv (up to BATCH iovecs), so a snapshot costs a syscall per step of the
 * longest list rather than one per chunk. */
int ab_walk_arenas(int pid, const uint64_t *arenas, int narenas, uint32_t fastbins_off, uint32_t bins_off, int nfast,
                   int nbins, const ab_free_chunk *prior, uint64_t nprior, uint64_t max_chunks, ab_free_chunk **out,
                   uint64_t *count, uint64_t *reads, char *err, size_t errcap)
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
    if (rc == 0 && nprior)
        rc = follow_prior(pid, w, narenas, nfast, per, prior, nprior, max_chunks, &v, &n, &cap, reads, err, errcap);
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
            uint64_t p = l->next, size = got[j][1];
            if (n >= max_chunks || push(&v, &n, &cap, p, size, l->bin, l->arena)) {
                snprintf(err, errcap, "arena %#llx: list %u runs past what the arenas could hold (a loop)",
                         (unsigned long long)arenas[l->arena], l->bin);
                rc = -1;
            }
            l->next = link_of(l, p, got[j]);
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
