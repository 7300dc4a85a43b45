# Extern declarations for glibc's <malloc.h> and the few libc calls next to it.
from libc.stdio cimport FILE

cdef extern from "<malloc.h>" nogil:
    struct mallinfo2:
        size_t arena
        size_t ordblks
        size_t smblks
        size_t hblks
        size_t hblkhd
        size_t usmblks
        size_t fsmblks
        size_t uordblks
        size_t fordblks
        size_t keepcost

    mallinfo2 c_mallinfo2 "mallinfo2" ()
    int c_mallopt "mallopt" (int param, int value)
    int c_malloc_trim "malloc_trim" (size_t pad)
    int c_malloc_info "malloc_info" (int options, FILE *stream)
    size_t c_malloc_usable_size "malloc_usable_size" (void *ptr)

cdef extern from "<gnu/libc-version.h>" nogil:
    const char *gnu_get_libc_version()

cdef extern from "<stdio.h>" nogil:
    FILE *open_memstream(char **ptr, size_t *sizeloc)

cdef extern from "<unistd.h>" nogil:
    void *sbrk(Py_ssize_t increment)

cdef extern from "<dlfcn.h>" nogil:
    void *RTLD_DEFAULT
    enum:
        RTLD_NOW
        RTLD_NOLOAD
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
