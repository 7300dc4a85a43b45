/* rptest: blocks passed around a ring of threads.  Each of T threads allocates blocks of 16 to 8,192
 * bytes, keeps some, and sends every fourth to the next thread's inbox; it frees what it receives and,
 * now and then, what it kept.  The shape of mimalloc-bench's rptest (rpmalloc's test): cross-thread
 * frees mixed with local ones, sizes up to a few pages. */
#include <stdatomic.h>
#include "peers.h"

enum { ROUNDS = 400000, KEEP = 512 };
typedef struct node { struct node *next; } node;
typedef struct inbox { _Atomic(node *) head; } inbox;
static inbox *boxes;
static int nthreads;
static atomic_int running;

static void send(inbox *b, node *n)
{
    node *old = atomic_load(&b->head);
    do
        n->next = old;
    while (!atomic_compare_exchange_weak(&b->head, &old, n));
}

static void drain(inbox *b)
{
    node *n = atomic_exchange(&b->head, NULL);
    while (n) {
        node *next = n->next;
        free(n);
        n = next;
    }
}

static void *ring(void *arg)
{
    int me = (int)(uintptr_t)arg;
    uint64_t s = 11 + (uint64_t)me;
    void *kept[KEEP] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        node *n = malloc(rnd_size(&s, 16, 8192));
        if (i % 4 == 0) {
            send(&boxes[(me + 1) % nthreads], n);
        } else {
            int k = (int)(rnd(&s) % KEEP);
            free(kept[k]);
            kept[k] = n;
        }
        if (i % 64 == 0)
            drain(&boxes[me]);
    }
    for (int k = 0; k < KEEP; k++)
        free(kept[k]);
    atomic_fetch_sub(&running, 1);
    while (atomic_load(&running))  /* the others may still send: drain until all are done */
        drain(&boxes[me]);
    drain(&boxes[me]);
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = threads_arg(argc, argv, 2);
    boxes = calloc((size_t)nthreads, sizeof *boxes);
    atomic_store(&running, nthreads);
    run_threads(nthreads, ring);
    free(boxes);
    return 0;
}
