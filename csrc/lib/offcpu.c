/* See offcpu.h. */
#define _GNU_SOURCE
#include "offcpu.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int ab_offcpu_open(ab_offcpu *o)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_DUMMY;  /* counts nothing: the switch records are the point */
    a.sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME;
    a.sample_id_all = 1;             /* each switch record carries its time */
    a.context_switch = 1;
    a.use_clockid = 1;
    a.clockid = CLOCK_MONOTONIC;
    a.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        snprintf(o->error, sizeof o->error, "perf_event_open(context switches): %s", strerror(errno));
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)page * (1 + AB_OFFCPU_PAGES);
    void *ring = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) {
        snprintf(o->error, sizeof o->error, "mmap of the switch records: %s", strerror(errno));
        close(fd);
        return -1;
    }
    o->fd = fd, o->ring = ring, o->bytes = bytes;
    return 0;
}

/* A record's bytes, copied out of the ring (it may wrap around the end). */
static void copy_out(const char *data, uint64_t size, uint64_t at, void *to, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((char *)to)[i] = data[(at + i) % size];
}

int ab_offcpu_close(ab_offcpu *o, ab_offcpu_span **spans, uint32_t *n, size_t *mapped, uint64_t *lost)
{
    *spans = NULL, *n = 0, *mapped = 0, *lost = 0;
    if (o->fd < 0)
        return -1;
    ioctl(o->fd, PERF_EVENT_IOC_DISABLE, 0);
    struct perf_event_mmap_page *meta = o->ring;
    uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    const char *data = (const char *)o->ring + meta->data_offset;
    uint64_t size = meta->data_size;
    /* at most one span per two records; a record is at least 24 bytes */
    size_t room = head / 48 + 1;
    ab_offcpu_span *out = mmap(NULL, room * sizeof *out, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int rc = 0;
    if (out == MAP_FAILED) {
        snprintf(o->error, sizeof o->error, "no memory for the switch records");
        out = NULL, rc = -1;
    }
    uint32_t k = 0;
    int open_out = 0;
    for (uint64_t at = 0; out && at + sizeof(struct perf_event_header) <= head;) {
        struct perf_event_header h;
        copy_out(data, size, at, &h, sizeof h);
        if (h.size < sizeof h)
            break;  /* not a record: stop rather than loop */
        if (h.type == PERF_RECORD_SWITCH && h.size >= sizeof h + 16) {
            uint64_t ids[2];  /* sample_id: pid and tid (u32 each), then time */
            copy_out(data, size, at + sizeof h, ids, sizeof ids);
            uint64_t t = ids[1];
            if (h.misc & PERF_RECORD_MISC_SWITCH_OUT) {
                if (k < room) {
                    out[k] = (ab_offcpu_span){t, t, !!(h.misc & PERF_RECORD_MISC_SWITCH_OUT_PREEMPT)};
                    open_out = 1;
                }
            } else if (open_out) {
                out[k++].in_ns = t;
                open_out = 0;
            }
        } else if (h.type == PERF_RECORD_LOST && h.size >= sizeof h + 16) {
            uint64_t what[2];  /* id, lost */
            copy_out(data, size, at + sizeof h, what, sizeof what);
            *lost += what[1];
        }
        at += h.size;
    }
    if (head + 64 > size)
        *lost += 1;  /* the ring is full (the kernel never overwrites what was not read): later switches dropped */
    munmap(o->ring, o->bytes);
    close(o->fd);
    o->fd = -1;
    if (out && !k)
        munmap(out, room * sizeof *out), out = NULL;
    *spans = out, *n = k, *mapped = out ? room * sizeof *out : 0;
    return rc;
}
