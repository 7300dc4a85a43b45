/* glibc's free lists in another process, walked in C for allocbench inspect
 * (allocbench/glibc_heap.py): the snapshot is taken while the target is
 * stopped, so its lists are walked at C speed, all of them in lockstep: one
 * process_vm_readv reads the next chunk header of every list still going.
 * A walk made before the stop is checked rather than repeated.
 * Read-only. */
#ifndef ALLOCBENCH_REMOTE_HEAP_H
#define ALLOCBENCH_REMOTE_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ab_free_chunk {
    uint64_t addr;       /* the chunk */
    uint64_t size_word;  /* its size field, flags included (malloc_info sums them so) */
    uint32_t bin;        /* 0..nfast-1: fastbin; nfast + i: regular bin i (1 unsorted, 2.. small, large) */
    uint32_t arena;      /* its arena's index in the arenas given */
} ab_free_chunk;

/* Every free chunk of the arenas at `arenas`: their fastbins (safe-linked, glibc
 * 2.32+) and regular bins 1..nbins-1 walked by bk as mallinfo does.  `prior`
 * (nprior chunks, may be empty) is a walk made earlier, while the process ran:
 * its chunks are read again in parallel batches and each list is taken from it
 * as far as it still chains, so a stopped walk of a settled heap costs its pages
 * rather than a read per step of its longest list.  The result is the same as
 * without it.  On success *out (malloc'd, the caller frees it) holds *count
 * chunks and 0 is returned; -1 with err on a read that fails, or lists that
 * loop or run past max_chunks in all. */
int ab_walk_arenas(int pid, const uint64_t *arenas, int narenas, uint32_t fastbins_off, uint32_t bins_off, int nfast,
                   int nbins, const ab_free_chunk *prior, uint64_t nprior, uint64_t max_chunks, ab_free_chunk **out,
                   uint64_t *count, uint64_t *reads, char *err, size_t errcap);

#endif
