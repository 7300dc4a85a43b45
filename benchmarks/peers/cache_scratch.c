/* cache-scratch: false sharing an allocator can cause.  The main thread allocates one 8-byte object
 * per thread, back to back, and hands them out; each thread frees its object, then 20,000 times
 * allocates an 8-byte object, writes it 5,000 times and frees it.  An allocator that gives threads
 * objects from the same cache line makes their writes fight over it.  The shape of mimalloc-bench's
 * cache-scratch (from Hoard's benchmarks). */
#include <pthread.h>
#include "peers.h"

enum { OBJECTS = 20000, WRITES = 5000 };

static void *scratch(void *arg)
{
    free(arg);  /* the object the main thread made: its cache line neighbours went to the others */
    for (int i = 0; i < OBJECTS; i++) {
        volatile char *o = malloc(8);
        for (int w = 0; w < WRITES; w++)
            o[w & 7] = (char)w;
        free((void *)o);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int t = threads_arg(argc, argv, 2);
    pthread_t th[256];
    void *first[256];
    for (int i = 0; i < t; i++)
        first[i] = malloc(8);
    for (int i = 0; i < t; i++)
        pthread_create(&th[i], NULL, scratch, first[i]);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    return 0;
}
