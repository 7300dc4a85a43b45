# Extern declarations for trace.h (cimported by allocbench/_native.pyx).

cdef extern from "trace.h" nogil:
    enum: AB_NOPS
    enum: AB_GLIBC_DEFAULT_BOUNDARY
    enum: AB_OPK_ALLOC, AB_OPK_FREE, AB_OPK_RESIZE, AB_OPK_THREAD
    enum: AB_TRACE_VERSION
    const char *ab_trace_op_names[]
    const int ab_trace_op_kinds[]
