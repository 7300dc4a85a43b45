/* xmalloc: producers allocate, consumers free.  T/2 producer threads each make 4,000,000 blocks of 16 to
 * 256 bytes and pass them, 64 at a time, through a shared queue to T/2 consumers that free them: every
 * free is remote.  The shape of mimalloc-bench's xmalloc-test (Lever and Boreham's producer/consumer). */
#include <pthread.h>
#include "peers.h"

enum { PER_PRODUCER = 4000000, BATCH = 64, QUEUE = 256 };
typedef struct batch { void *p[BATCH]; } batch;
static batch *queue[QUEUE];
static int head, tail, producing;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;

static void *produce(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < PER_PRODUCER / BATCH; i++) {
        batch *b = malloc(sizeof *b);
        for (int k = 0; k < BATCH; k++) {
            b->p[k] = malloc(rnd_size(&s, 16, 256));
            *(char *)b->p[k] = 1;
        }
        pthread_mutex_lock(&m);
        while ((tail + 1) % QUEUE == head)
            pthread_cond_wait(&not_full, &m);
        queue[tail] = b, tail = (tail + 1) % QUEUE;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_lock(&m);
    producing--;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&m);
    return NULL;
}

static void *consume(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&m);
        while (head == tail && producing)
            pthread_cond_wait(&not_empty, &m);
        if (head == tail) {
            pthread_mutex_unlock(&m);
            return arg;
        }
        batch *b = queue[head];
        head = (head + 1) % QUEUE;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&m);
        for (int k = 0; k < BATCH; k++)
            free(b->p[k]);
        free(b);
    }
}

int main(int argc, char **argv)
{
    int t = threads_arg(argc, argv, 2), half = t > 1 ? t / 2 : 1;
    pthread_t th[512];
    producing = half;
    for (int i = 0; i < half; i++)
        pthread_create(&th[i], NULL, produce, (void *)(uintptr_t)(i + 3));
    for (int i = 0; i < half; i++)
        pthread_create(&th[half + i], NULL, consume, NULL);
    for (int i = 0; i < 2 * half; i++)
        pthread_join(th[i], NULL);
    return 0;
}
