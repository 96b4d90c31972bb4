/*
 * order internals shared by order.c (the operations) and order_store.c (the SQL, the
 * state machine, the JSON document of an order). Never included from another folder.
 */
#ifndef SG_ORDER_INT_H
#define SG_ORDER_INT_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "activities/common/svc.h"

/* Limits of what the service accepts. */
#define ID_MAX 64   /* order ids, customer ids (the workflows' input schemas) */
#define REF_MAX 128 /* ids made by other services */
#define EMAIL_MAX 254
#define REASON_MAX 64
#define SKU_MAX 32
#define ITEMS_MAX 1000
#define QTY_MAX 1000000
/* With ITEMS_MAX and QTY_MAX, at most 1e18: sum(qty * price) cannot overflow int64. */
#define PRICE_MAX 1000000000
/* 2^53: the largest integer a JSON number (a double) carries exactly. */
#define TOTAL_MAX 9007199254740992LL
#define ADDRESS_MAX 4096

/* The life of an order:
 *   pending -> approved | rejected          (order_create saga: approve or compensate)
 *   approved -> cancelling                   (order_cancel saga: begin_cancel)
 *   cancelling -> approved | cancelled       (restore = undo begin_cancel, or cancel) */
typedef enum {
    ORDER_PENDING,
    ORDER_APPROVED,
    ORDER_REJECTED,
    ORDER_CANCELLING,
    ORDER_CANCELLED,
    ORDER__NSTATUS
} order_status_t;

/* "pending", ... (the names stored in the database and sent in events). */
const char *order__status_name(order_status_t st);
/* False when s names no status. */
bool order__status_parse(const char *s, order_status_t *out);
/* Whether the state machine allows from -> to. Pure. */
bool order__transition_valid(order_status_t from, order_status_t to);

/* CREATE TABLE IF NOT EXISTS ... for orders, order_lines and order_history. */
extern const char order__schema_sql[];

/* The columns of an order the operations decide on. Strings are owned (sg_malloc). */
typedef struct {
    char *customer_id;
    char *email;
    char *currency;
    char *saga_id;        /* the order_create instance that recorded it */
    char *cancel_saga_id; /* the order_cancel instance that holds it CANCELLING */
    char *reservation_id;
    char *payment_id;
    order_status_t status;
    bool has_previous;
    order_status_t previous_status;
    int64_t total;
    int64_t version; /* bumped by every change: the guard of order__move */
} order_row_t;

/* Loads order_id into row (zeroed first). 1: found, 0: no such order, -1: SQL error or
 * a row this service cannot have written. row must be released with order__row_fini. */
int order__row_load(sqlite3 *db, const char *order_id, order_row_t *row);
void order__row_fini(order_row_t *row);

/*
 * Runs sql with parameters ?1, ?2, ... bound from the variadic arguments as types says:
 * 's' a const char * (NULL binds NULL), 'i' an int64_t. Returns the number of rows
 * changed, or -1 on an SQL error (sqlite3_errmsg(db) says which).
 */
int order__exec(sqlite3 *db, const char *sql, const char *types, ...);

/* One status change: the history row says why and who. */
typedef struct {
    const char *order_id;
    order_status_t from, to;
    int64_t version; /* as loaded: the row must not have changed since */
    const char *reason;
    const char *saga_id;  /* the task's instance, NULL outside sagas */
    const char *activity; /* "order.approve", or "seed" */
} order_move_t;

/*
 * Moves an order from mv->from to mv->to (a transition the state machine allows: asserted)
 * and appends its history row. The UPDATE only matches while the row still has status
 * from and the loaded version, so a decision taken on a stale read cannot be applied.
 * 1: moved, 0: the row changed meanwhile (nothing written), -1: SQL error.
 */
int order__move(sqlite3 *db, const order_move_t *mv);

/* Appends a history row; from may be NULL (the order's creation). False on SQL error. */
bool order__history_add(sqlite3 *db, const char *order_id, const char *from, const char *to,
                        const char *reason, const char *saga_id, const char *activity);

/*
 * The JSON document of an order (see activities/order/order.h) in *out (sg_malloc).
 * Runs inside the caller's transaction, if any. 1: found, 0: no such order, -1: SQL
 * error or out of memory.
 */
int order__record_json(sqlite3 *db, const char *order_id, char **out);

/* ---- reading orders from outside (order_input.c) ---- */

/* The order as create_pending and the seed take it. The strings point into the input. */
typedef struct {
    const char *order_id;
    const char *customer_id;
    const char *email; /* NULL: none */
    const char *currency;
    const cJSON *items; /* checked: 1..ITEMS_MAX objects {sku, qty, price} */
    int64_t total;
    char *shipping; /* JSON text of the address, or NULL (owned: cJSON_free) */
} order_in_t;

/* "order_id": 1..ID_MAX letters, digits, '_', '-'. False: res holds invalid_input. */
bool order__read_order_id(sg_svc_tx_t *tx, const cJSON *in, const char **out,
                          sg_task_result_t *res);

/*
 * Reads and checks an order: invalid_input naming the field, or FATAL
 * "order.invalid_total" when total is not sum(qty * price). o->shipping must be freed
 * with cJSON_free, also after a failure.
 */
bool order__read_order(sg_svc_tx_t *tx, const cJSON *in, order_in_t *o, sg_task_result_t *res);

/* Fields of a checked line of o->items. */
const char *order__line_sku(const cJSON *line);
int64_t order__line_int(const cJSON *line, const char *key);

/* Writes the lines of o (numbered from 1). False on SQL error. */
bool order__insert_lines(sqlite3 *db, const order_in_t *o);

/* The module's seed: see sg_activity_module_t.seed and order_input.c. */
sg_err_t order__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen);

#endif
