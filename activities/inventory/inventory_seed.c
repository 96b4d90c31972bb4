/*
 * inventory seed: loads the inventory section of a seed document (activities/seed/
 * shop.json), {"products": [{sku, name, price, stock, low_stock_threshold}]}. Each
 * product is created or updated and its stock SET to the seed's value, in one
 * transaction, with inventory.updated (reason "seed") for every product whose stock
 * changed. Loading the same seed twice changes nothing the second time. It must never
 * touch reservations: units held by orders stay held.
 */
#include <stdio.h>

#include "activities/common/svc.h"
#include "activities/inventory/inventory_int.h"

#define INV_AMOUNT_MAX 1000000000000LL /* a bound on seeded prices and stock */

static bool seed_bad(char *err, size_t errlen, int i, const char *field, const char *what)
{
    snprintf(err, errlen, "inventory seed: products[%d]%s %s", i, field, what);
    return false;
}

/* Reads products[i] of the seed. */
static bool read_product(const cJSON *p, int i, inv_product_t *prod, char *err, size_t errlen)
{
    if (!cJSON_IsObject(p)) {
        return seed_bad(err, errlen, i, "", "must be an object");
    }
    const cJSON *sku = cJSON_GetObjectItemCaseSensitive(p, "sku");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
    const cJSON *thr = cJSON_GetObjectItemCaseSensitive(p, "low_stock_threshold");
    prod->threshold = 0;
    if (!inv__str_in(sku, INV_SKU_MAX)) {
        return seed_bad(err, errlen, i, ".sku", "must be a string of 1 to 64 bytes");
    }
    if (!inv__str_in(name, INV_NAME_MAX)) {
        return seed_bad(err, errlen, i, ".name", "must be a string of 1 to 200 bytes");
    }
    if (!inv__int_in(cJSON_GetObjectItemCaseSensitive(p, "price"), 0, INV_AMOUNT_MAX,
                     &prod->price)) {
        return seed_bad(err, errlen, i, ".price", "must be a whole number of cents >= 0");
    }
    if (!inv__int_in(cJSON_GetObjectItemCaseSensitive(p, "stock"), 0, INV_AMOUNT_MAX,
                     &prod->stock)) {
        return seed_bad(err, errlen, i, ".stock", "must be an integer >= 0");
    }
    if (thr != NULL && !inv__int_in(thr, 0, INV_AMOUNT_MAX, &prod->threshold)) {
        return seed_bad(err, errlen, i, ".low_stock_threshold", "must be an integer >= 0");
    }
    prod->sku = sku->valuestring;
    prod->name = name->valuestring;
    return true;
}

typedef struct {
    const cJSON *products;
    char *err;
    size_t errlen;
} seed_t;

/* Upserts every product in one transaction: a bad entry leaves the database as it was. */
static sg_err_t seed_fn(sg_svc_tx_t *tx, void *arg)
{
    seed_t *sd = arg;
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, sd->products)
    {
        inv_product_t prod;
        int64_t delta = 0;
        if (!read_product(p, i, &prod, sd->err, sd->errlen)) {
            return SG_ERR_INVALID;
        }
        if (inv__product_upsert(sg_svc_db(tx), &prod, &delta) < 0) {
            snprintf(sd->err, sd->errlen, "inventory seed: products[%d]: %s", i,
                     sqlite3_errmsg(sg_svc_db(tx)));
            return SG_ERR_IO;
        }
        sg_err_t rc = delta == 0
                          ? SG_OK
                          : sg_svc_emit_in(tx, "inventory.updated", NULL,
                                           inv__updated_event(prod.sku, prod.stock, delta, "seed"));
        if (rc != SG_OK) {
            snprintf(sd->err, sd->errlen, "inventory seed: emitting inventory.updated: %s",
                     sg_strerror(rc));
            return rc;
        }
        i++;
    }
    return SG_OK;
}

sg_err_t inv__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    cJSON *doc = cJSON_Parse(json != NULL ? json : "");
    const cJSON *products = cJSON_GetObjectItemCaseSensitive(doc, "products");
    sg_err_t rc = SG_OK;
    if (!cJSON_IsObject(doc) || (products != NULL && !cJSON_IsArray(products))) {
        snprintf(err, errlen, "inventory seed: expected {\"products\": [...]}");
        rc = SG_ERR_INVALID;
    } else if (products != NULL) {
        seed_t sd = {.products = products, .err = err, .errlen = errlen};
        rc = sg_svc_exec(svc, seed_fn, &sd);
        if (rc != SG_OK && err[0] == '\0') {
            snprintf(err, errlen, "inventory seed: %s", sg_strerror(rc));
        }
    }
    cJSON_Delete(doc);
    return rc;
}
