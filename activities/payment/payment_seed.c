/*
 * payment seed: loads the "payment" section of a seed document (activities/seed/
 * shop.json), {"cards": [{token, customer_id, holder, last4, limit, blocked}]}, by
 * upserting each card: seeding twice is harmless, and the ledger is never touched.
 *
 * It must never accept a half-valid section: every card is checked (unknown keys
 * included, so a typo does not pass silently) inside one transaction, all or nothing.
 */
#include <stdio.h>
#include <string.h>

#include "activities/payment/payment_int.h"

typedef struct {
    const cJSON *cards;
    char *err;
    size_t errlen;
} seed_t;

/* A string member of 1..max bytes, or NULL. */
static const char *seed_str(const cJSON *o, const char *key, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > max) {
        return NULL;
    }
    return v->valuestring;
}

/* The first key of o that is not in known (keys starting with '_' are comments), or
 * NULL: a typo in a seed must not pass silently. */
static const char *seed_unknown_key(const cJSON *o, const char *const *known, size_t n)
{
    for (const cJSON *m = o->child; m != NULL; m = m->next) {
        bool ok = m->string[0] == '_';
        for (size_t i = 0; !ok && i < n; i++) {
            ok = strcmp(m->string, known[i]) == 0;
        }
        if (!ok) {
            return m->string;
        }
    }
    return NULL;
}

static bool seed_amount(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= (double)PAY_AMOUNT_MAX &&
           v->valuedouble == (double)(int64_t)v->valuedouble;
}

/* The first missing or invalid field of a card, or NULL. */
static const char *seed_bad_field(const cJSON *card)
{
    const char *last4 = seed_str(card, "last4", 4);
    const cJSON *blocked = cJSON_GetObjectItemCaseSensitive(card, "blocked");
    if (seed_str(card, "token", PAY_TOKEN_MAX) == NULL) {
        return "token";
    }
    if (seed_str(card, "customer_id", PAY_ID_MAX) == NULL) {
        return "customer_id";
    }
    if (seed_str(card, "holder", PAY_HOLDER_MAX) == NULL) {
        return "holder";
    }
    if (last4 == NULL || strspn(last4, "0123456789") != 4) {
        return "last4";
    }
    if (!seed_amount(cJSON_GetObjectItemCaseSensitive(card, "limit"))) {
        return "limit";
    }
    if (blocked != NULL && !cJSON_IsBool(blocked)) {
        return "blocked";
    }
    return NULL;
}

/* Validates and upserts card i. */
static sg_err_t seed_card(sg_svc_tx_t *tx, const cJSON *card, size_t i, seed_t *sd)
{
    static const char *const known[] = {"token", "customer_id", "holder",
                                        "last4", "limit",       "blocked"};
    if (!cJSON_IsObject(card)) {
        snprintf(sd->err, sd->errlen, "payment seed: cards[%zu] must be an object", i);
        return SG_ERR_INVALID;
    }
    const char *unknown = seed_unknown_key(card, known, SG_ARRAY_LEN(known));
    const char *bad = unknown != NULL ? NULL : seed_bad_field(card);
    if (unknown != NULL || bad != NULL) {
        snprintf(sd->err, sd->errlen, "payment seed: cards[%zu]: %s \"%s\"", i,
                 unknown != NULL ? "unknown key" : "missing or invalid field",
                 unknown != NULL ? unknown : bad);
        return SG_ERR_INVALID;
    }
    sqlite3 *db = sg_svc_db(tx);
    if (!payment__card_upsert(db, seed_str(card, "token", PAY_TOKEN_MAX),
                              seed_str(card, "customer_id", PAY_ID_MAX),
                              seed_str(card, "holder", PAY_HOLDER_MAX), seed_str(card, "last4", 4),
                              (int64_t)cJSON_GetObjectItemCaseSensitive(card, "limit")->valuedouble,
                              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(card, "blocked")))) {
        snprintf(sd->err, sd->errlen, "payment.db: %s", sqlite3_errmsg(db));
        return SG_ERR_IO;
    }
    return SG_OK;
}

static sg_err_t seed_fn(sg_svc_tx_t *tx, void *arg)
{
    seed_t *sd = arg;
    size_t i = 0;
    for (const cJSON *card = sd->cards ? sd->cards->child : NULL; card != NULL;
         card = card->next, i++) {
        sg_err_t rc = seed_card(tx, card, i, sd);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

sg_err_t payment__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen)
{
    static const char *const known[] = {"cards"};
    if (errlen > 0) {
        err[0] = '\0';
    }
    cJSON *root = cJSON_ParseWithOpts(json ? json : "", NULL, true);
    const cJSON *cards = cJSON_GetObjectItemCaseSensitive(root, "cards");
    const char *unknown = cJSON_IsObject(root) ? seed_unknown_key(root, known, 1) : NULL;
    seed_t sd = {.cards = cards, .err = err, .errlen = errlen};
    sg_err_t rc = SG_ERR_INVALID;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "payment seed: the section must be a JSON object");
    } else if (unknown != NULL) {
        snprintf(err, errlen, "payment seed: unknown key \"%s\"", unknown);
    } else if (cards != NULL && !cJSON_IsArray(cards)) {
        snprintf(err, errlen, "payment seed: \"cards\" must be an array");
    } else if ((rc = sg_svc_exec(svc, seed_fn, &sd)) != SG_OK && err[0] == '\0') {
        snprintf(err, errlen, "payment.db: cannot write the seed");
    }
    cJSON_Delete(root);
    return rc;
}
