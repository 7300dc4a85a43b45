/* What the preload shims write, and how, once: the line formats below are
 * printed by the shims (explain.c, latency_shim.c) and read by allocbench
 * (allocbench/shimlog.py turns each format into its parser through _native).
 * A line is a prefix, then one format; %llu and %d are numbers, 0x%llx a hex
 * offset, %s a word (a word at the end of a format may hold spaces: the rest
 * of the line).
 *
 * Records are built in an ab_out buffer and written with one write(2) to a
 * file opened O_APPEND: a record (a threshold rise and its backtrace) from one
 * thread never interleaves with another's.  write(2) alone: no stdio, no
 * malloc inside a hook (hooks.h). */
#ifndef ALLOCBENCH_SHIMLOG_H
#define ALLOCBENCH_SHIMLOG_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The formats, once: X(name, format).  The explainer's lines start with
 * AB_EXPLAIN_PREFIX, the latency shim's with AB_LATENCY_PREFIX (its pid). */
#define AB_EXPLAIN_PREFIX "explain: "
#define AB_LATENCY_PREFIX "latency %d: "
#define AB_SHIMLOG_FORMATS(X)                                                                   \
    X(frame_symbol, "frame %s 0x%llx %s+0x%llx")  /* object, offset; function+offset */         \
    X(frame, "frame %s 0x%llx")                   /* object, offset (no symbol) */              \
    X(explain_start, "start threshold %llu %s")   /* "dynamic", or "fixed" by GLIBC_TUNABLES */ \
    X(explain_rise, "rise t_ns %llu old %llu new %llu trim %llu")                               \
    X(explain_end_of_backtrace, "end of backtrace")                                             \
    X(explain_summary, "summary rises %llu final_threshold %llu moved_blocks %llu moved_bytes %llu") \
    X(latency_clock, "clock %s ps_per_tick %llu overhead_ticks %llu")                           \
    X(latency_program, "program %s")                                                            \
    X(latency_kind, "kind %s count %llu p50 %llu p90 %llu p99 %llu p999 %llu max %llu")         \
    X(latency_bucket, "bucket %s %llu %llu")       /* kind, the bucket's highest ticks, calls */ \
    X(latency_slow, "slow %s ticks %llu size %llu tid %llu")                                   \
    X(latency_end, "end")

enum ab_shimlog_format {
#define AB_SLF_ENUM(name, fmt) AB_SLF_##name,
    AB_SHIMLOG_FORMATS(AB_SLF_ENUM)
#undef AB_SLF_ENUM
    AB_NSHIMLOG_FORMATS
};
static const char *const ab_shimlog_names[AB_NSHIMLOG_FORMATS] = {
#define AB_SLF_NAME(name, fmt) #name,
    AB_SHIMLOG_FORMATS(AB_SLF_NAME)
#undef AB_SLF_NAME
};
static const char *const ab_shimlog_formats[AB_NSHIMLOG_FORMATS] = {
#define AB_SLF_FORMAT(name, fmt) fmt,
    AB_SHIMLOG_FORMATS(AB_SLF_FORMAT)
#undef AB_SLF_FORMAT
};

/* A record under construction; flushed when full (a record longer than the
 * buffer is then written in pieces) and by ab_flush. */
typedef struct ab_out {
    int fd;
    size_t len;
    char buf[8192];
} ab_out;

static inline void ab_flush(ab_out *o)
{
    for (size_t done = 0; done < o->len;) {
        ssize_t r = write(o->fd, o->buf + done, o->len - done);
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    o->len = 0;
}

/* One line: the prefix (a format of its own, e.g. AB_LATENCY_PREFIX with the
 * pid), then the line's format and its values, then a newline. */
__attribute__((format(printf, 3, 4))) static inline void ab_line(ab_out *o, const char *prefix, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof line, "%s", prefix);
    if (n >= 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    line[len++] = '\n';
    if (o->len + len > sizeof o->buf)
        ab_flush(o);
    memcpy(o->buf + o->len, line, len);
    o->len += len;
}

/* A backtrace frame: dladdr reads the loader's tables, no malloc; the offset
 * is what addr2line wants for a PIE or a shared object (ET_DYN), the address
 * itself for a fixed executable. */
static inline void ab_frame(ab_out *o, const char *prefix, void *pc)
{
    Dl_info info;
    struct link_map *map = NULL;
    if (!dladdr1(pc, &info, (void **)&map, RTLD_DL_LINKMAP) || !info.dli_fname) {
        ab_line(o, prefix, ab_shimlog_formats[AB_SLF_frame], "?", (unsigned long long)(uintptr_t)pc);
        return;
    }
    const char *object = info.dli_fname[0] ? info.dli_fname : "?";
    unsigned long long offset = (uintptr_t)pc - (map ? map->l_addr : 0);
    if (info.dli_sname)
        ab_line(o, prefix, ab_shimlog_formats[AB_SLF_frame_symbol], object, offset, info.dli_sname,
                (unsigned long long)((uintptr_t)pc - (uintptr_t)info.dli_saddr));
    else
        ab_line(o, prefix, ab_shimlog_formats[AB_SLF_frame], object, offset);
}

#endif
