/*
 * gateway rate limits: one token bucket per caller ("key:NAME", "jwt:SUBJECT" or
 * "ip:ADDRESS"), in a hash table behind one mutex. A bucket starts full (burst tokens),
 * refills at rate tokens per second, and a request takes one token or is refused with the
 * whole seconds until the next token.
 *
 * It must never grow without bound: past max_entries it first drops the buckets that
 * would be full again (idle callers lose nothing by being forgotten), then the least
 * recently used one. It takes the time as an argument, so tests need no clock.
 */
#include "gateway/gateway_int.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define N_HEADS 1024 /* chains; a power of two */

typedef struct bucket {
    struct bucket *next;
    double tokens;
    uint64_t last_ms; /* when tokens was last brought up to date */
    double rate, burst;
    char key[]; /* NUL-terminated */
} bucket_t;

struct gw_ratelimit {
    pthread_mutex_t mu;
    bucket_t *heads[N_HEADS];
    size_t count, max_entries;
};

gw_ratelimit_t *gw__rl_new(size_t max_entries)
{
    gw_ratelimit_t *rl = sg_calloc(1, sizeof(*rl));
    if (rl == NULL) {
        return NULL;
    }
    pthread_mutex_init(&rl->mu, NULL);
    rl->max_entries = max_entries > 0 ? max_entries : 1;
    return rl;
}

void gw__rl_free(gw_ratelimit_t *rl)
{
    if (rl == NULL) {
        return;
    }
    for (size_t i = 0; i < N_HEADS; i++) {
        for (bucket_t *b = rl->heads[i], *next; b != NULL; b = next) {
            next = b->next;
            sg_free(b);
        }
    }
    pthread_mutex_destroy(&rl->mu);
    sg_free(rl);
}

size_t gw__rl_count(gw_ratelimit_t *rl)
{
    pthread_mutex_lock(&rl->mu);
    size_t n = rl->count;
    pthread_mutex_unlock(&rl->mu);
    return n;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

static void refill(bucket_t *b, uint64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * b->rate;
        b->last_ms = now_ms;
    }
    if (b->tokens > b->burst) {
        b->tokens = b->burst;
    }
}

/* Drops idle buckets; if none was idle, the least recently used one. */
static void evict(gw_ratelimit_t *rl, uint64_t now_ms)
{
    bucket_t **oldest = NULL;
    for (size_t i = 0; i < N_HEADS; i++) {
        for (bucket_t **pb = &rl->heads[i]; *pb != NULL;) {
            bucket_t *b = *pb;
            refill(b, now_ms);
            if (b->tokens >= b->burst) {
                *pb = b->next;
                sg_free(b);
                rl->count--;
                continue;
            }
            if (oldest == NULL || b->last_ms < (*oldest)->last_ms) {
                oldest = pb;
            }
            pb = &b->next;
        }
    }
    if (rl->count >= rl->max_entries && oldest != NULL) {
        bucket_t *b = *oldest;
        *oldest = b->next;
        sg_free(b);
        rl->count--;
    }
}

static bucket_t *find_or_add(gw_ratelimit_t *rl, const char *key, double rate, double burst,
                             uint64_t now_ms)
{
    size_t h = hash(key) & (N_HEADS - 1);
    for (bucket_t *b = rl->heads[h]; b != NULL; b = b->next) {
        if (strcmp(b->key, key) == 0) {
            return b;
        }
    }
    if (rl->count >= rl->max_entries) {
        evict(rl, now_ms);
    }
    size_t len = strlen(key);
    bucket_t *b = sg_malloc(sizeof(*b) + len + 1);
    if (b == NULL) {
        return NULL;
    }
    memcpy(b->key, key, len + 1);
    b->tokens = burst;
    b->last_ms = now_ms;
    b->rate = rate;
    b->burst = burst;
    b->next = rl->heads[h];
    rl->heads[h] = b;
    rl->count++;
    return b;
}

unsigned gw__rl_take(gw_ratelimit_t *rl, const char *key, double rate, double burst,
                     uint64_t now_ms)
{
    if (rl == NULL || !(rate > 0)) {
        return 0;
    }
    if (!(burst >= 1)) {
        burst = 1;
    }
    pthread_mutex_lock(&rl->mu);
    bucket_t *b = find_or_add(rl, key, rate, burst, now_ms);
    unsigned wait = 0;
    if (b != NULL) {
        /* The limits of a caller come from the credentials file, which may be reloaded. */
        b->rate = rate;
        b->burst = burst;
        refill(b, now_ms);
        if (b->tokens >= 1) {
            b->tokens -= 1;
        } else {
            double secs = ceil((1 - b->tokens) / rate);
            wait = secs < 1 ? 1 : secs > 86400 ? 86400 : (unsigned)secs;
        }
    }
    /* Out of memory: let the request through rather than refuse everyone. */
    pthread_mutex_unlock(&rl->mu);
    return wait;
}
