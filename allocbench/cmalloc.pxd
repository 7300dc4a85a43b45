# Extern declarations for glibc's <malloc.h> and the few libc calls next to it.
from libc.stdio cimport FILE

cdef extern from "<malloc.h>" nogil:
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
