/*
 * payment internals: the gateway's tables and the SQL on them (payment_store.c), used
 * by the operations (payment.c). Never included from outside activities/payment/.
 *
 * The store expresses the money invariants in SQL, not in C, because several worker
 * processes may share payment.db: one charge per order (a partial unique index), one
 * refund per payment (another), a refund never larger than its charge nor for another
 * order (a trigger), a charge only within the card's limit (a conditional INSERT), and
 * an append-only ledger (triggers refuse UPDATE and DELETE).
 */
#ifndef SG_PAYMENT_INT_H
#define SG_PAYMENT_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "activities/common/svc.h"

/* Input limits (bytes): the workflows' schema allows ids of 64 and tokens of 256. */
#define PAY_ID_MAX 64
#define PAY_TOKEN_MAX 256
#define PAY_HOLDER_MAX 200
/* Amounts are cents; 10^15 keeps every sum exact in a JSON double and an int64. */
#define PAY_AMOUNT_MAX 1000000000000000LL

extern const char payment__schema[];

/* A charge of the ledger (= a payment). */
typedef struct {
    char id[PAY_ID_MAX + 1];
    char order_id[PAY_ID_MAX + 1];
    char customer_id[PAY_ID_MAX + 1];
    char card_token[PAY_TOKEN_MAX + 1];
    char currency[4];
    int64_t amount;
} pay_charge_t;

/* A card, with what is outstanding on it (charges - refunds). */
typedef struct {
    char customer_id[PAY_ID_MAX + 1];
    char last4[5];
    int64_t limit;
    bool blocked;
    int64_t outstanding;
} pay_card_t;

/* What a new ledger row holds; unused fields NULL. */
typedef struct {
    const char *id; /* ULID */
    const char *order_id;
    const char *customer_id;
    const char *card_token;
    const char *currency;
    int64_t amount;
    const char *reason; /* declines */
    const char *key;    /* idempotency key of the task that wrote it */
} pay_row_t;

/* Lookups: 1 found (out filled), 0 not found, -1 SQL error (sqlite3_errmsg tells). */
int payment__card_get(sqlite3 *db, const char *token, pay_card_t *out);
int payment__charge_by_order(sqlite3 *db, const char *order_id, pay_charge_t *out);
int payment__charge_by_id(sqlite3 *db, const char *payment_id, pay_charge_t *out);
/* The refund of a payment: its id (a ULID) and amount. */
int payment__refund_of(sqlite3 *db, const char *payment_id, char refund_id[PAY_ID_MAX + 1],
                       int64_t *amount);
/* Whether order_id has any decline. */
int payment__declined(sqlite3 *db, const char *order_id);

/* Inserts a charge only if the order has none, the card exists, is not blocked, belongs
 * to row->customer_id and has room for the amount under its limit. 1: charged, 0: one of
 * those conditions refused it (nothing written), -1: SQL error. */
int payment__charge_insert(sqlite3 *db, const pay_row_t *row);

/* Inserts a refund of the whole charge c, unless the payment has one already. 1:
 * refunded, 0: already refunded (nothing written), -1: SQL error. */
int payment__refund_insert(sqlite3 *db, const pay_charge_t *c, const char *refund_id,
                           const char *key);

/* Records a decline (no money moves). True on success. */
bool payment__decline_insert(sqlite3 *db, const pay_row_t *row);

/* Inserts or replaces the card named token. True on success. */
bool payment__card_upsert(sqlite3 *db, const char *token, const char *customer_id,
                          const char *holder, const char *last4, int64_t limit, bool blocked);

/* Loads the payment section of a seed document (JSON text): see payment_seed.c. One
 * transaction; on failure nothing is written and err says why (SG_ERR_INVALID, SG_ERR_IO). */
sg_err_t payment__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen);

#endif
