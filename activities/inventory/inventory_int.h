/*
 * inventory internals: the inventory service's tables and the SQL on them, shared by
 * its operations (inventory.c) and its store (inventory_store.c). Never included from
 * outside activities/inventory/.
 *
 * Every function here runs inside a transaction the kit opened (sg_svc_run or
 * sg_svc_exec) on the service's connection, with the service mutex held. Invariants are
 * kept by SQL (CHECK(stock >= 0), UPDATE ... WHERE stock >= qty, one held reservation
 * per order by a partial unique index), never by reading and then writing in C: several
 * worker processes may share the database.
 */
#ifndef SG_INVENTORY_INT_H
#define SG_INVENTORY_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "activities/common/svc.h"

#define INV_MAX_LINES 100
#define INV_SKU_MAX 64
#define INV_ORDER_MAX 64
#define INV_NAME_MAX 200
#define INV_QTY_MAX 1000000
#define INV_ID_LEN 26 /* a ULID */

/* One line of a request: sku points into the task's parsed input. */
typedef struct {
    const char *sku;
    int64_t qty;
} inv_line_t;

/* The lines of a request, one per sku (duplicates summed). */
typedef struct {
    inv_line_t v[INV_MAX_LINES];
    size_t n;
} inv_lines_t;

/* A product of the seed. */
typedef struct {
    const char *sku;
    const char *name;
    int64_t price;
    int64_t stock;
    int64_t threshold;
} inv_product_t;

/* The tables (run by sg_svc_open on every connection). */
extern const char inv__schema[];

/* Lookups answer 1 (found / done), 0 (not there / not done) or -1 (database error). */

/* Takes qty of sku off the shelf if at least qty is there: *after and *threshold are
 * then the product's stock after the change and its low-stock threshold. 0 when the
 * product is unknown or short. */
int inv__take(sqlite3 *db, const char *sku, int64_t qty, int64_t *after, int64_t *threshold);

/* The stock of sku. 0 when the product is unknown. */
int inv__stock(sqlite3 *db, const char *sku, int64_t *stock);

/* Adds qty to the stock of sku (and to what was supplied): *after is the new stock.
 * 0 when the product is unknown. */
int inv__restock(sqlite3 *db, const char *sku, int64_t qty, int64_t *after);

/* The held reservation of order_id (made by the task reserve_key, when not NULL) into
 * id. */
int inv__held_of_order(sqlite3 *db, const char *order_id, const char *reserve_key,
                       char id[INV_ID_LEN + 1]);

/* The order of reservation id into order_id, and whether it is held. */
int inv__reservation_get(sqlite3 *db, const char *id, char order_id[INV_ORDER_MAX + 1], bool *held);

/* Records a held reservation with its lines. False on a database error. */
bool inv__reservation_add(sqlite3 *db, const char *id, const char *order_id,
                          const char *reserve_key, const inv_lines_t *lines);

/* Releases held reservation id: marks it released and puts its lines back on the shelf,
 * appending each {sku, qty} to items. 0 when it was not held. */
int inv__reservation_release(sqlite3 *db, const char *id, cJSON *items);

/* Creates or updates a product, setting its stock: *delta is the change of stock. */
int inv__product_upsert(sqlite3 *db, const inv_product_t *p, int64_t *delta);

/* ---- helpers of the operations (inventory.c), shared with the seed ---- */

/* Whether v is an integer JSON number within [min, max] (into *out). */
bool inv__int_in(const cJSON *v, int64_t min, int64_t max, int64_t *out);

/* Whether v is a string of 1..max_len bytes. */
bool inv__str_in(const cJSON *v, size_t max_len);

/* The business fields of inventory.updated (caller owns them); NULL on OOM. */
cJSON *inv__updated_event(const char *sku, int64_t stock, int64_t delta, const char *reason);

/* ---- the seed (inventory_seed.c) ---- */

/* Loads the inventory section of a seed document (JSON text) into svc's database; on
 * failure writes one line to err and changes nothing. */
sg_err_t inv__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen);

#endif
