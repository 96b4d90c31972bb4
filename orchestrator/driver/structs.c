/*
 * driver data structures: the timer heap, the table of live instances, growable
 * arrays and work items. Engine thread only, except drv__item_free.
 */
#include "orchestrator/driver/driver_int.h"

#include <string.h>

void drv__item_free(item_t *it)
{
    if (it == NULL) {
        return;
    }
    sg_free(it->input);
    sg_free(it->idem_key);
    sg_free(it->output);
    sg_free(it->error_code);
    sg_free(it->error_message);
    sg_free(it->worker);
    sg_free(it->progress);
    for (size_t i = 0; i < it->n_events; i++) {
        relay_ev_t *e = &it->events[i];
        sg_free(e->event_id);
        sg_free(e->type);
        sg_free(e->correlation_id);
        sg_free(e->source);
        sg_free(e->json);
    }
    sg_free(it->events);
    if (it->ext_free != NULL) {
        it->ext_free(it->ext);
    }
    sg_free(it);
}

/* ---- heap ---- */

static void sift_down(heap_t *h, size_t i);

static void heap_swap(tmr_t *a, tmr_t *b)
{
    tmr_t t = *a;
    *a = *b;
    *b = t;
}

bool drv__heap_push(heap_t *h, const tmr_t *t)
{
    if (!sg_grow((void **)&h->items, &h->cap, h->count, sizeof(*h->items))) {
        return false;
    }
    size_t i = h->count++;
    h->items[i] = *t;
    while (i > 0 && h->items[(i - 1) / 2].fire_ms > h->items[i].fire_ms) {
        heap_swap(&h->items[(i - 1) / 2], &h->items[i]);
        i = (i - 1) / 2;
    }
    return true;
}

bool drv__heap_pop_due(heap_t *h, uint64_t now, tmr_t *out)
{
    if (h->count == 0 || h->items[0].fire_ms > now) {
        return false;
    }
    *out = h->items[0];
    h->items[0] = h->items[--h->count];
    sift_down(h, 0);
    return true;
}

static void sift_down(heap_t *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->count && h->items[l].fire_ms < h->items[m].fire_ms) {
            m = l;
        }
        if (r < h->count && h->items[r].fire_ms < h->items[m].fire_ms) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(&h->items[i], &h->items[m]);
        i = m;
    }
}

void drv__heap_filter(heap_t *h, bool (*keep)(void *ctx, const tmr_t *t), void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < h->count; i++) {
        if (keep(ctx, &h->items[i])) {
            h->items[n++] = h->items[i];
        }
    }
    h->count = n;
    for (size_t i = n / 2; i > 0; i--) {
        sift_down(h, i - 1);
    }
}

uint64_t drv__heap_next(const heap_t *h)
{
    return h->count ? h->items[0].fire_ms : UINT64_MAX;
}

void drv__heap_fini(heap_t *h)
{
    sg_free(h->items);
    memset(h, 0, sizeof(*h));
}

/* ---- table ---- */

static size_t hash_id(const char *id)
{
    uint64_t x = 1469598103934665603ull;
    for (; *id; id++) {
        x = (x ^ (unsigned char)*id) * 1099511628211ull;
    }
    return (size_t)x;
}

sg_inst_t *drv__table_get(const table_t *t, const char *id)
{
    if (t->cap == 0) {
        return NULL;
    }
    for (size_t i = hash_id(id) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        sg_inst_t *in = t->slots[i];
        if (in == NULL) {
            return NULL;
        }
        if (strcmp(in->id, id) == 0) {
            return in;
        }
    }
}

static void table_insert(sg_inst_t **slots, size_t cap, sg_inst_t *inst)
{
    size_t i = hash_id(inst->id) & (cap - 1);
    while (slots[i] != NULL) {
        i = (i + 1) & (cap - 1);
    }
    slots[i] = inst;
}

bool drv__table_put(table_t *t, sg_inst_t *inst)
{
    if ((t->count + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        sg_inst_t **slots = sg_calloc(cap, sizeof(*slots));
        if (slots == NULL) {
            return false;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (t->slots[i] != NULL) {
                table_insert(slots, cap, t->slots[i]);
            }
        }
        sg_free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    table_insert(t->slots, t->cap, inst);
    t->count++;
    return true;
}

void drv__table_del(table_t *t, const char *id)
{
    if (t->cap == 0) {
        return;
    }
    size_t mask = t->cap - 1;
    size_t i = hash_id(id) & mask;
    while (t->slots[i] != NULL && strcmp(t->slots[i]->id, id) != 0) {
        i = (i + 1) & mask;
    }
    if (t->slots[i] == NULL) {
        return;
    }
    t->slots[i] = NULL;
    t->count--;
    /* Backward-shift: move later entries of the run into the gap when it is on their path. */
    for (size_t j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = hash_id(t->slots[j]->id) & mask;
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

void drv__table_fini(table_t *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        sg_inst_free(t->slots[i]);
    }
    sg_free(t->slots);
    memset(t, 0, sizeof(*t));
}
