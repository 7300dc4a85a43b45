# Extern declarations for trace.h (cimported by allocbench/_native.pyx).

cdef extern from "trace.h" nogil:
    enum: AB_NOPS
    enum: AB_GLIBC_DEFAULT_BOUNDARY
    enum: AB_OPK_ALLOC, AB_OPK_FREE, AB_OPK_RESIZE, AB_OPK_THREAD
    enum: AB_TRACE_VERSION, AB_TRACE_OWNER_WIDTH
    enum: AB_TRACE_HEADER, AB_TRACE_HEADER_MAX, AB_TRACE_HEAD_NFIELDS
    enum: AB_TRACE_FLAG_OVERFLOW, AB_TRACE_FLAG_CUT_AT_EXIT
    struct ab_trace_head_field:
        const char *name
        unsigned offset, size
    const ab_trace_head_field ab_trace_head_fields[]
    ctypedef struct ab_event:
        unsigned long long t_ns
    const char *ab_trace_op_names[]
    const int ab_trace_op_kinds[]
