/*
 * driver internals: the work queue, the timer heap, the instance table, the
 * definitions registry, shared by driver.c, batch.c, recover.c and registry.c.
 */
#ifndef SG_DRIVER_INT_H
#define SG_DRIVER_INT_H

#include "activities/activity.h"
#include "orchestrator/driver/driver.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/transport/transport.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- work items ---- */

typedef enum {
    ITEM_START,
    ITEM_CANCEL,
    ITEM_RETRY,
    ITEM_RESULT,
    ITEM_EVENTS,
    ITEM_DEAD_LETTER, /* dlq.c: a dead letter to record */
    ITEM_DLQ_ACTION,  /* dlq.c: an operator's requeue or discard */
    ITEM_OUTBOX,      /* outbox.c: the relay fetches or deletes outbox rows */
    ITEM_HEARTBEAT,   /* a running attempt's heartbeat (its lease) */
} item_kind_t;

/* A domain event copied out of a module's outbox, on its way into the event log. */
typedef struct {
    char *event_id, *type, *correlation_id, *source, *json;
    int64_t ts_ms, seq;
} relay_ev_t;

/* A caller blocked until its request is durable. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    sg_err_t rc;
    sg_start_result_t res;
} waiter_t;

typedef struct item {
    struct item *next;
    item_kind_t kind;
    char id[32]; /* CANCEL, RETRY, RESULT, HEARTBEAT */
    /* START */
    const sg_def_t *def;
    char *input;
    char *idem_key;
    sg_start_fn cb;
    void *cb_ctx;
    waiter_t *waiter; /* START, CANCEL, RETRY: blocking callers */
    /* RESULT, HEARTBEAT */
    uint32_t step, attempt;
    bool compensation;
    sg_task_outcome_t outcome;
    char *output, *error_code, *error_message;
    /* HEARTBEAT: who sent it and the handler's progress (each may be NULL) */
    char *worker, *progress;
    /* EVENTS */
    relay_ev_t *events;
    size_t n_events;
    /* DEAD_LETTER, DLQ_ACTION, OUTBOX: the kind's own data, freed with ext_free */
    void *ext;
    void (*ext_free)(void *ext);
} item_t;

void drv__item_free(item_t *it);

/* ---- timers: a binary min-heap on fire time ---- */

typedef struct {
    uint64_t fire_ms;
    char id[32];
    sg_timer_kind_t kind;
    uint32_t step, attempt;
    bool compensation;
} tmr_t;

typedef struct {
    tmr_t *items;
    size_t count, cap;
} heap_t;

bool drv__heap_push(heap_t *h, const tmr_t *t);
bool drv__heap_pop_due(heap_t *h, uint64_t now, tmr_t *out);
uint64_t drv__heap_next(const heap_t *h); /* UINT64_MAX when empty */
/* Keeps only the timers keep() accepts, and restores the heap order. O(n). */
void drv__heap_filter(heap_t *h, bool (*keep)(void *ctx, const tmr_t *t), void *ctx);
void drv__heap_fini(heap_t *h);

/* ---- live instances by id (open addressing, backward-shift deletion) ---- */

typedef struct {
    sg_inst_t **slots;
    size_t cap, count;
} table_t;

sg_inst_t *drv__table_get(const table_t *t, const char *id);
bool drv__table_put(table_t *t, sg_inst_t *inst);
void drv__table_del(table_t *t, const char *id);
void drv__table_fini(table_t *t); /* frees the instances */

/* ---- definitions registry ---- */

typedef struct {
    pthread_rwlock_t lock;
    sg_def_t **defs;
    size_t count, cap;
} registry_t;

void drv__registry_init(registry_t *r);
void drv__registry_fini(registry_t *r);
/* Registers defs stored in the database, then every valid file of dir (recursively);
 * writes new ones to the store. Engine thread (or before it starts). */
void drv__registry_load(registry_t *r, sg_store_t *st, const char *dir);
const sg_def_t *drv__registry_find(registry_t *r, const char *name, int64_t version);

/* ---- the driver ---- */

/* Work decided during a batch and carried out after its commit. The step id and the
 * activity point into the definition (never freed while the driver runs). */
typedef struct {
    sg_task_t task;
    char instance_id[32];
    char *input; /* taken from the engine's command */
    char *idem_key;
} dispatch_t;

typedef struct {
    item_t *it;
    sg_err_t rc;
    sg_start_result_t res;
} reply_t;

struct sg_driver {
    sg_driver_opts_t opts;
    sg_store_t *store;
    const sg_transport_vt_t *tvt;
    sg_transport_t *transport;
    sg_jqrt_t *jq;
    registry_t registry;
    table_t live;
    heap_t timers;
    uint64_t rng;

    pthread_t thread;
    pthread_t relay_thread; /* relay.c; joined before the engine thread */
    bool relay_running;
    pthread_cond_t relay_cv; /* the relay waits here between rounds (with mu) */
    pthread_mutex_t mu;      /* guards the queue and the flags below */
    pthread_cond_t cv;       /* the engine thread waits here for work */
    pthread_cond_t idle_cv;
    item_t *head, *tail;
    size_t queued;
    bool stopping, reload_requested, running;

    /* per batch (engine thread only) */
    sg_effects_t fx;
    dispatch_t *dispatches;
    size_t n_dispatch, cap_dispatch;
    tmr_t *new_timers;
    size_t n_new_timers, cap_new_timers;
    reply_t *replies;
    size_t n_replies, cap_replies;
    char (*finished)[32];
    size_t n_finished, cap_finished;

    /* stats */
    _Atomic uint64_t started, completed, compensated, failed, compensation_failed;
    _Atomic uint64_t batches, items, dispatched, duplicates, batch_us_total, active;
    _Atomic uint64_t events_relayed;
    atomic_bool last_batch_failed; /* for sg_driver_ready */
    bool hb_write_failing;         /* batch.c: warn once per run of failed heartbeat writes */
    struct drv_metrics *metrics;   /* instrument.c; NULL when it could not be allocated */
    struct drv_outbox *outbox;     /* outbox.c; NULL when the transport cannot publish */
};

/* driver.c: sg_driver_start with the transport tvt instead of the one opts->transport
 * names (tests drive the driver through a transport of their own). */
sg_err_t drv__start(const sg_driver_opts_t *opts, const sg_transport_vt_t *tvt, sg_driver_t **out,
                    char *err, size_t errlen);

/* batch.c: one transaction's worth of work (engine thread). */
void drv__run_batch(sg_driver_t *d, item_t *items, uint64_t now);
/* Persists what the engine decided for inst; false when the store failed. */
bool drv__persist(sg_driver_t *d, sg_inst_t *inst, const char *idem_key, bool created,
                  uint64_t now);

/* relay.c: a thread that moves the domain events of the modules served in this process
 * (their outboxes) into the event log, through the engine thread's batches. */
sg_err_t drv__relay_start(sg_driver_t *d);
void drv__relay_stop(sg_driver_t *d); /* after stopping was set; joins the thread */
/* Imports the events of an ITEM_EVENTS item (engine thread, inside the batch). */
sg_err_t drv__relay_import(sg_driver_t *d, const item_t *it);
/* Enqueues it without waiting (driver.c): SG_ERR_STATE while stopping (it is not
 * taken then). */
sg_err_t drv__enqueue(sg_driver_t *d, item_t *it);
/* Enqueues it and waits until the engine thread answered it (driver.c). */
sg_err_t drv__wait_for(sg_driver_t *d, item_t *it, waiter_t *w);

/* dlq.c: dead letters from the transport (kafka), recorded in the store's dlq table
 * through the engine thread, and the operators' requeue / discard. */
/* Transport thread; returns once the row is durable (or sagad stops), trying again on OOM. */
void drv__on_dead_letter(void *ctx, const sg_dead_letter_t *dl);
/* Applies an ITEM_DEAD_LETTER or ITEM_DLQ_ACTION (engine thread, inside the batch);
 * *answer is what its caller gets. Non-SG_OK only when the batch must roll back. */
sg_err_t drv__dlq_apply(sg_driver_t *d, item_t *it, uint64_t now, sg_err_t *answer);
/* A batch holding this dead letter failed: its writer (drv__on_dead_letter, which
 * returns only once the row is durable) tries again (engine thread). */
void drv__dlq_again(sg_driver_t *d, item_t *it);

/* outbox.c: sagad's own outbox (workflow events, requeued dead letters), published by a
 * relay thread through the transport's publish(); rows are deleted after delivery. */
void drv__outbox_init(sg_driver_t *d); /* before the transport starts; off without publish */
sg_err_t drv__outbox_start(sg_driver_t *d);
void drv__outbox_stop(sg_driver_t *d); /* after stopping was set; joins the thread */
void drv__outbox_fini(sg_driver_t *d); /* after the transport stopped */
void drv__on_published(void *ctx, void *opaque, sg_err_t rc); /* transport thread */
/* Engine thread, inside the batch. A workflow event as the message of its type on the
 * topic of that name (false only when the store failed; an event that does not fit its
 * message stays in the log only, with one warning per type). */
bool drv__outbox_event(sg_driver_t *d, const char *instance_id, const char *event_id,
                       const char *type, const char *data, uint64_t now);
/* Any message (false when the store failed). */
bool drv__outbox_put(sg_driver_t *d, const char *topic, const char *key, const void *value,
                     size_t len, uint64_t now);
/* Applies an ITEM_OUTBOX (engine thread, inside the batch). */
sg_err_t drv__outbox_apply(sg_driver_t *d, item_t *it);
/* After a commit: wakes the relay when the batch wrote to the outbox. */
void drv__outbox_committed(sg_driver_t *d);
/* Outbox messages delivered and deleted so far (metrics). Any thread. */
uint64_t drv__outbox_published(sg_driver_t *d);

/* recover.c: resume unfinished instances (engine thread, before the loop): load them,
 * arm their timers, and dispatch their in-flight attempts again (same idempotency key). */
sg_err_t drv__recover(sg_driver_t *d, uint64_t now);
/* Forgets every live instance and timer and recovers again from the database. */
void drv__reload_all(sg_driver_t *d);
/* Loads a finished (FAILED, COMPENSATION_FAILED) instance for an operator retry. */
sg_err_t drv__revive(sg_driver_t *d, const char *id, sg_inst_t **out);

/* instrument.c: the driver's metrics (see sg_driver_metrics). Engine thread, except init
 * and fini (sg_driver_start/stop). Every call is a no-op when metrics are off. */
void drv__metrics_init(sg_driver_t *d); /* before recovery */
void drv__metrics_fini(sg_driver_t *d);
/* After a batch committed, before acting on it: its starts, finishes and dispatches. */
void drv__metrics_committed(sg_driver_t *d);
/* An attempt dispatched again by recovery. */
void drv__metrics_redispatch(sg_driver_t *d, const sg_inst_t *inst, uint32_t step, uint32_t attempt,
                             bool compensation);
/* An attempt ended by a result (applied, not a duplicate) or by its timeout. */
void drv__metrics_result(sg_driver_t *d, const item_t *it);
void drv__metrics_timeout(sg_driver_t *d, const tmr_t *t, const char *code);
/* A heartbeat applied (it moved its attempt's timeout) or stale (ignored). */
void drv__metrics_heartbeat(sg_driver_t *d, bool applied);
/* A heartbeat not queued because the engine thread was behind. Any thread. */
void drv__metrics_heartbeat_dropped(sg_driver_t *d);
/* A committed batch of items work items that took us microseconds. */
void drv__metrics_batch(sg_driver_t *d, size_t items, uint64_t us);

#endif
