/*
 * ids and clocks: ULIDs for instance ids, kernel randomness, wall and monotonic time,
 * timed waits.
 */
#include "orchestrator/base/base.h"

#include <pthread.h>
#include <sys/random.h>
#include <time.h>

uint64_t sg_random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
        /* getrandom cannot fail for 8 bytes once the pool is ready; mix the clock in
         * rather than abort if it ever does. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
    }
    return v;
}

uint64_t sg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sg_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t sg_mono_ms(void)
{
    return sg_mono_us() / 1000u;
}

void sg_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Per-thread generator seeded from the kernel: ids are drawn often, syscalls are slow. */
static _Thread_local uint64_t rng_state;

static uint64_t next_random(void)
{
    if (rng_state == 0) {
        rng_state = sg_random64() | 1;
    }
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

void sg_ulid_new(uint64_t now_ms, char out[27])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t hi = next_random(), lo = next_random();
    /* 10 characters of time (50 bits, top 2 zero), 16 of randomness (80 bits). */
    for (int i = 9; i >= 0; i--) {
        out[i] = alphabet[now_ms & 31];
        now_ms >>= 5;
    }
    for (int i = 10; i < 26; i++) {
        uint64_t *src = i < 18 ? &hi : &lo;
        out[i] = alphabet[*src & 31];
        *src >>= 5;
    }
    out[26] = '\0';
}
