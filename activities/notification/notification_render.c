/*
 * notification templates: the static table of messages per event type, their
 * personalisation (customer name, order id, money amounts), and where a customer's
 * messages go (channels and addresses). Pure functions: no database, no state.
 */
#include <stdio.h>
#include <string.h>

#include "activities/notification/notification_int.h"

static const char *const channel_names[NOTIF_N_CHANNELS] = {"email", "sms", "push"};

/* Compiled in on purpose: a template is part of the code that sends it, reviewed and
 * tested with it. The sign-off names the shop. */
static const notif_template_t templates[] = {
    {
        .name = "order_confirmed",
        .subject = "Your order {order_id} is confirmed",
        .body = "Hello {name},\n\n"
                "thank you for your order {order_id}. We have received your payment of "
                "{total} and are preparing your parcel.\n\n"
                "The Saga Shop",
        .short_text = "Saga Shop: order {order_id} confirmed, {total} paid. Thank you, {name}!",
    },
    {
        .name = "order_rejected",
        .subject = "Your order {order_id} could not be placed",
        .body = "Hello {name},\n\n"
                "we are sorry: we could not complete your order {order_id} ({total}). "
                "You have not been charged; any amount taken from your card has been "
                "refunded in full.\n\n"
                "The Saga Shop",
        .short_text = "Saga Shop: sorry {name}, order {order_id} could not be placed. "
                      "You have not been charged.",
    },
    {
        .name = "order_cancelled",
        .subject = "Your order {order_id} is cancelled",
        .body = "Hello {name},\n\n"
                "your order {order_id} has been cancelled. We have refunded {total} to your "
                "card; it may take a few days to appear on your statement.\n\n"
                "The Saga Shop",
        .short_text = "Saga Shop: order {order_id} cancelled, {total} refunded.",
    },
    {
        /* For operators: their contact record is a "customer" like any other. */
        .name = "low_stock",
        .subject = "Low stock: {sku}",
        .body = "Hello {name},\n\n"
                "the stock of {sku} is down to {stock}. Please restock it.\n\n"
                "The Saga Shop",
        .short_text = "Saga Shop: low stock of {sku} ({stock} left).",
    },
};

const char *notification__channel_name(notif_channel_t ch)
{
    return ch < NOTIF_N_CHANNELS ? channel_names[ch] : "?";
}

bool notification__channel_parse(const char *s, notif_channel_t *out)
{
    for (size_t i = 0; s != NULL && i < NOTIF_N_CHANNELS; i++) {
        if (strcmp(s, channel_names[i]) == 0) {
            *out = (notif_channel_t)i;
            return true;
        }
    }
    return false;
}

const notif_template_t *notification__template(const char *name)
{
    for (size_t i = 0; name != NULL && i < SG_ARRAY_LEN(templates); i++) {
        if (strcmp(templates[i].name, name) == 0) {
            return &templates[i];
        }
    }
    return NULL;
}

/* Digits after the decimal point in currency (ISO 4217 minor units): 2 unless listed. */
static int minor_digits(const char *currency)
{
    static const char *const zero[] = {"CLP", "ISK", "JPY", "KRW", "PYG",
                                       "UGX", "VND", "XAF", "XOF"};
    static const char *const three[] = {"BHD", "JOD", "KWD", "OMR", "TND"};
    for (size_t i = 0; i < SG_ARRAY_LEN(zero); i++) {
        if (strcmp(currency, zero[i]) == 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(three); i++) {
        if (strcmp(currency, three[i]) == 0) {
            return 3;
        }
    }
    return 2;
}

void notification__money(int64_t minor, const char *currency, char *out, size_t outlen)
{
    int digits = minor_digits(currency);
    /* The magnitude as unsigned, so INT64_MIN does not overflow. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t unit = digits == 0 ? 1 : digits == 2 ? 100 : 1000;
    const char *sign = minor < 0 ? "-" : "";
    if (digits == 0) {
        snprintf(out, outlen, "%s%llu %s", sign, (unsigned long long)mag, currency);
    } else {
        snprintf(out, outlen, "%s%llu.%0*llu %s", sign, (unsigned long long)(mag / unit), digits,
                 (unsigned long long)(mag % unit), currency);
    }
}

/* Appends the value of placeholder key (len bytes) to b. Returns false and sets
 * *missing when v lacks it; an unknown key is copied as it stands. */
static bool put_var(sg_buf_t *b, const char *key, size_t len, const notif_vars_t *v,
                    const char **missing)
{
#define KEY_IS(lit) (len == sizeof(lit) - 1 && memcmp(key, lit, len) == 0)
    if (KEY_IS("name")) {
        sg_buf_puts(b, v->name != NULL ? v->name : "customer");
    } else if (KEY_IS("order_id") || KEY_IS("sku")) {
        const char *s = KEY_IS("sku") ? v->sku : v->order_id;
        if (s == NULL) {
            *missing = KEY_IS("sku") ? "sku" : "order_id";
            return false;
        }
        sg_buf_puts(b, s);
    } else if (KEY_IS("total")) {
        if (!v->has_total || v->currency == NULL) {
            *missing = v->has_total ? "currency" : "total";
            return false;
        }
        char money[64];
        notification__money(v->total, v->currency, money, sizeof(money));
        sg_buf_puts(b, money);
    } else if (KEY_IS("stock")) {
        if (!v->has_stock) {
            *missing = "stock";
            return false;
        }
        sg_buf_printf(b, "%lld", (long long)v->stock);
    } else {
        sg_buf_append(b, key - 1, len + 2);
    }
    return true;
#undef KEY_IS
}

char *notification__render(const char *text, const notif_vars_t *v, const char **missing)
{
    sg_buf_t b;
    sg_buf_init(&b);
    *missing = NULL;
    const char *p = text;
    while (*p != '\0') {
        const char *open = strchr(p, '{');
        const char *close = open ? strchr(open, '}') : NULL;
        if (close == NULL) {
            sg_buf_puts(&b, p);
            break;
        }
        sg_buf_append(&b, p, (size_t)(open - p));
        if (!put_var(&b, open + 1, (size_t)(close - open - 1), v, missing)) {
            sg_buf_fini(&b);
            return NULL;
        }
        p = close + 1;
    }
    return sg_buf_take(&b);
}

const char *notification__contact_address(const notif_contact_t *c, notif_channel_t ch)
{
    switch (ch) {
    case NOTIF_EMAIL:
        return c->email;
    case NOTIF_SMS:
        return c->phone;
    case NOTIF_PUSH:
        return c->push_token;
    default:
        return "";
    }
}

static void add_target(notif_target_t *t, notif_channel_t ch, const char *recipient)
{
    memset(t, 0, sizeof(*t));
    t->channel = ch;
    snprintf(t->recipient, sizeof(t->recipient), "%s", recipient);
}

size_t notification__targets(const notif_contact_t *c, const char *email,
                             notif_target_t out[NOTIF_N_CHANNELS])
{
    size_t n = 0;
    for (size_t i = 0; c != NULL && i < c->n_channels; i++) {
        const char *to = notification__contact_address(c, c->channels[i]);
        if (*to == '\0' && c->channels[i] == NOTIF_EMAIL && email != NULL) {
            to = email; /* the contact wants e-mail but we only know the order's address */
        }
        if (*to != '\0') {
            add_target(&out[n++], c->channels[i], to);
        }
    }
    if (n == 0 && email != NULL) {
        add_target(&out[n++], NOTIF_EMAIL, email);
    }
    return n;
}
