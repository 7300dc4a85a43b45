# Extern declarations for remote_heap.h (cimported by allocbench/_native.pyx).
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "remote_heap.h" nogil:
    ctypedef struct ab_free_chunk:
        uint64_t addr
        uint64_t size_word
        uint32_t bin
        uint32_t arena
    int ab_walk_arenas(int pid, const uint64_t *arenas, int narenas, uint32_t fastbins_off, uint32_t bins_off,
                       int nfast, int nbins, const ab_free_chunk *prior, uint64_t nprior, uint64_t max_chunks,
                       ab_free_chunk **out, uint64_t *count,
                       uint64_t *reads, char *err, size_t errcap)
