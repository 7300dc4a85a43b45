/* The KEY=VALUE arguments of allocbench's own C programs (cell, probe). */
#ifndef ALLOCBENCH_OPTS_H
#define ALLOCBENCH_OPTS_H

#include <string.h>

/* The value of KEY=VALUE among argv[1..argc), else def. */
static inline const char *ab_opt_str(int argc, char **argv, const char *key, const char *def)
{
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
    return def;
}

#endif
