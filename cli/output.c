/*
 * sagactl output: what humans read. Aligned tables, "key: value" blocks, times in the
 * local zone instead of RFC 3339, durations, and long values cut short (`-o json` has
 * them whole).
 *
 * It must never print a partial row: a table that ran out of memory says so instead.
 */
#include "cli/sagactl.h"

#include <string.h>
#include <time.h>

void cli__table_init(cli_table_t *t, size_t ncols, const char *const *header)
{
    SG_ASSERT(ncols > 0 && ncols <= CLI_TABLE_MAX_COLS);
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    cli__table_row(t, header);
}

void cli__table_row(cli_table_t *t, const char *const *cells)
{
    if (t->oom) {
        return;
    }
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **grown = sg_realloc(t->cells, cap * t->ncols * sizeof(*grown));
        if (grown == NULL) {
            t->oom = true;
            return;
        }
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = sg_strdup(cells[c] != NULL && cells[c][0] ? cells[c] : "-");
        t->oom |= row[c] == NULL;
    }
    t->nrows++;
}

void cli__table_print(cli_table_t *t, FILE *to)
{
    size_t w[CLI_TABLE_MAX_COLS] = {0};
    size_t n = t->nrows * t->ncols;
    for (size_t i = 0; !t->oom && i < n; i++) {
        size_t len = strlen(t->cells[i]);
        w[i % t->ncols] = len > w[i % t->ncols] ? len : w[i % t->ncols];
    }
    for (size_t r = 0; !t->oom && r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols) {
                fprintf(to, "%-*s  ", (int)w[c], s);
            } else {
                fprintf(to, "%s\n", s);
            }
        }
    }
    if (t->oom) {
        fprintf(stderr, "sagactl: out of memory: the table is not shown (try -o json)\n");
    }
    for (size_t i = 0; i < n; i++) {
        sg_free(t->cells[i]);
    }
    sg_free(t->cells);
    memset(t, 0, sizeof(*t));
}

const char *cli__jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static void cut(char *buf, size_t max)
{
    if (max > 3 && strlen(buf) > max) {
        /* back off to the start of a UTF-8 sequence so no character is split */
        size_t end = max - 3;
        while (end > 0 && ((unsigned char)buf[end] & 0xC0) == 0x80) {
            end--;
        }
        memcpy(buf + end, "...", 4);
    }
}

static void value_text(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "%s", v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.17g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    } else if (v == NULL || cJSON_IsNull(v)) {
        snprintf(buf, n, "-");
    } else {
        char *t = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%s", t != NULL ? t : "?");
        cJSON_free(t);
    }
    /* one line per cell: a newline would break the columns */
    for (char *p = buf; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            *p = ' ';
        }
    }
}

void cli__jcell(const cJSON *o, const char *key, char *buf, size_t n, size_t max)
{
    value_text(cJSON_GetObjectItemCaseSensitive(o, key), buf, n);
    cut(buf, max);
}

/* "2026-11-26T04:51:07.123Z" (or with +hh:mm) -> ms since the epoch; -1 if it is not. */
static long long parse_rfc3339(const char *s)
{
    struct tm tm = {0};
    int ms = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6) {
        return -1;
    }
    const char *p = s + used;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
            }
        }
        for (; digits < 3; digits++) {
            ms *= 10;
        }
    }
    long off = 0;
    if ((*p == '+' || *p == '-') && strlen(p) == 6) {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600L + ((p[4] - '0') * 10 + (p[5] - '0')) * 60L;
        off = *p == '-' ? -off : off;
    } else if (strcmp(p, "Z") != 0) {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : ((long long)t - off) * 1000 + ms;
}

long long cli__jtime_ms(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? parse_rfc3339(v->valuestring) : -1;
}

void cli__ms_time(long long t, bool with_ms, char out[40])
{
    time_t secs = (time_t)(t / 1000);
    struct tm tm;
    if (t <= 0 || localtime_r(&secs, &tm) == NULL ||
        strftime(out, 40, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(out, 40, "-");
        return;
    }
    if (with_ms) {
        size_t len = strlen(out);
        snprintf(out + len, 40 - len, ".%03d", (int)(t % 1000));
    }
}

void cli__jtime(const cJSON *o, const char *key, bool ms, char out[40])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    long long t = cJSON_IsString(v) ? parse_rfc3339(v->valuestring) : -1;
    if (t < 0) {
        value_text(v, out, 40);
        return;
    }
    cli__ms_time(t, ms, out);
}

void cli__duration(long long ms, char *out, size_t n)
{
    if (ms < 0) {
        snprintf(out, n, "-");
    } else if (ms < 1000) {
        snprintf(out, n, "%lldms", ms);
    } else if (ms < 60000) {
        snprintf(out, n, "%.1fs", (double)ms / 1000.0);
    } else if (ms < 3600000) {
        snprintf(out, n, "%lldm%llds", ms / 60000, ms / 1000 % 60);
    } else {
        snprintf(out, n, "%lldh%lldm", ms / 3600000, ms / 60000 % 60);
    }
}

void cli__kv(const char *const *keys, const char *const *values, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        w = strlen(keys[i]) > w ? strlen(keys[i]) : w;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%s:%*s %s\n", keys[i], (int)(w - strlen(keys[i])), "",
               values[i] != NULL && values[i][0] ? values[i] : "-");
    }
}
