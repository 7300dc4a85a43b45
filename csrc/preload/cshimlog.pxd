# Extern declarations for shimlog.h (cimported by allocbench/_native.pyx): the shims' line formats.

cdef extern from "shimlog.h" nogil:
    enum: AB_NSHIMLOG_FORMATS
    const char *AB_EXPLAIN_PREFIX
    const char *AB_LATENCY_PREFIX
    const char *ab_shimlog_names[]
    const char *ab_shimlog_formats[]
