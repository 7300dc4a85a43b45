# Extern declarations for latency.h (cimported by allocbench/_native.pyx).

cdef extern from "latency.h" nogil:
    enum: AB_NLATENCY_KINDS
    const char *ab_latency_kind_names[]

cdef extern from "calltime.h" nogil:
    enum: AB_MARK_MIN_NS
