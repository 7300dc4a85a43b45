/* What the preload shims write, with write(2) alone (no stdio, no malloc
 * inside a hook): text, numbers, and a backtrace frame as
 * "frame OBJECT 0xOFFSET [FUNCTION+0xOFF]", which allocbench resolves to a
 * file and line after the run (programs.symbolize). */
#ifndef ALLOCBENCH_SHIMLOG_H
#define ALLOCBENCH_SHIMLOG_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static inline void ab_put(int fd, const char *s)
{
    ssize_t r = write(fd, s, strlen(s));
    (void)r;
}

static inline void ab_put_num(int fd, unsigned long long v, int base)
{
    char buf[24];
    int i = sizeof buf;
    buf[--i] = 0;
    do buf[--i] = "0123456789abcdef"[v % (unsigned)base]; while ((v /= (unsigned)base) && i > 2);
    if (base == 16)
        buf[--i] = 'x', buf[--i] = '0';
    ab_put(fd, buf + i);
}

/* dladdr reads the loader's tables, no malloc; the offset is what addr2line
 * wants for a PIE or a shared object (ET_DYN), the address itself for a fixed
 * executable. */
static inline void ab_put_frame(int fd, const char *prefix, void *pc)
{
    Dl_info info;
    struct link_map *map = NULL;
    ab_put(fd, prefix);
    ab_put(fd, "frame ");
    if (!dladdr1(pc, &info, (void **)&map, RTLD_DL_LINKMAP) || !info.dli_fname) {
        ab_put(fd, "? ");
        ab_put_num(fd, (uintptr_t)pc, 16);
        ab_put(fd, "\n");
        return;
    }
    ab_put(fd, info.dli_fname[0] ? info.dli_fname : "?");
    ab_put(fd, " ");
    ab_put_num(fd, (uintptr_t)pc - (map ? map->l_addr : 0), 16);
    if (info.dli_sname) {
        ab_put(fd, " ");
        ab_put(fd, info.dli_sname);
        ab_put(fd, "+");
        ab_put_num(fd, (uintptr_t)pc - (uintptr_t)info.dli_saddr, 16);
    }
    ab_put(fd, "\n");
}

#endif
