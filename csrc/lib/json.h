/* A streaming JSON writer for the C programs' one-object output: it places
 * the commas and escapes the strings, so a program states only its keys and
 * values (allocbench/records.py holds the cell's schema, a test the keys).
 * stdio, so never inside a measured window or a preload hook. */
#ifndef ALLOCBENCH_JSON_H
#define ALLOCBENCH_JSON_H

#include <stdint.h>
#include <stdio.h>

#define AB_JSON_DEPTH 16

typedef struct ab_json {
    FILE *f;
    int depth;
    int first[AB_JSON_DEPTH];  /* nothing written yet at this level */
} ab_json;

static inline void ab_json_init(ab_json *j, FILE *f)
{
    j->f = f, j->depth = 0, j->first[0] = 1;
}

static inline void ab_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* the comma and the key (NULL inside an array or at the top) before a value */
static inline void ab_json_key(ab_json *j, const char *key)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = 0;
    if (key) {
        ab_json_string(j->f, key);
        fputc(':', j->f);
    }
}

static inline void ab_json_open(ab_json *j, const char *key, char bracket)
{
    ab_json_key(j, key);
    fputc(bracket, j->f);
    if (j->depth + 1 < AB_JSON_DEPTH)
        j->first[++j->depth] = 1;
}

static inline void ab_json_object(ab_json *j, const char *key) { ab_json_open(j, key, '{'); }
static inline void ab_json_array(ab_json *j, const char *key) { ab_json_open(j, key, '['); }

static inline void ab_json_close(ab_json *j, char bracket)
{
    fputc(bracket, j->f);
    if (j->depth > 0)
        j->depth--;
}

static inline void ab_json_end_object(ab_json *j) { ab_json_close(j, '}'); }
static inline void ab_json_end_array(ab_json *j) { ab_json_close(j, ']'); }

static inline void ab_json_int(ab_json *j, const char *key, long long v)
{
    ab_json_key(j, key);
    fprintf(j->f, "%lld", v);
}

static inline void ab_json_uint(ab_json *j, const char *key, unsigned long long v)
{
    ab_json_key(j, key);
    fprintf(j->f, "%llu", v);
}

static inline void ab_json_double(ab_json *j, const char *key, double v)
{
    ab_json_key(j, key);
    fprintf(j->f, "%.6g", v);
}

static inline void ab_json_null(ab_json *j, const char *key)
{
    ab_json_key(j, key);
    fputs("null", j->f);
}

static inline void ab_json_bool(ab_json *j, const char *key, int v)
{
    ab_json_key(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* a measured count, or null where nothing was measured (negative) */
static inline void ab_json_count(ab_json *j, const char *key, long long v)
{
    if (v < 0)
        ab_json_null(j, key);
    else
        ab_json_int(j, key, v);
}

static inline void ab_json_str(ab_json *j, const char *key, const char *s)
{
    ab_json_key(j, key);
    if (s)
        ab_json_string(j->f, s);
    else
        fputs("null", j->f);
}

#endif
