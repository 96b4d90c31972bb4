/*
 * events: JSON <-> protobuf for the messages of schemas/events.proto, driven by
 * protobuf-c's descriptors, so adding an event is one message in the .proto and one
 * line in the table below.
 */
#include "activities/common/events.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/events.pb-c.h"

typedef struct {
    const char *type;
    const ProtobufCMessageDescriptor *desc;
} event_kind_t;

static const event_kind_t kinds[] = {
    {"order.created", &sagad__events__order_created__descriptor},
    {"order.updated", &sagad__events__order_updated__descriptor},
    {"order.cancelled", &sagad__events__order_cancelled__descriptor},
    {"order.completed", &sagad__events__order_completed__descriptor},
    {"order.cancel_rejected", &sagad__events__order_cancel_rejected__descriptor},
    {"inventory.reserved", &sagad__events__inventory_reserved__descriptor},
    {"inventory.released", &sagad__events__inventory_released__descriptor},
    {"inventory.updated", &sagad__events__inventory_updated__descriptor},
    {"inventory.low_stock", &sagad__events__inventory_low_stock__descriptor},
    {"payment.processed", &sagad__events__payment_processed__descriptor},
    {"payment.failed", &sagad__events__payment_failed__descriptor},
    {"payment.refunded", &sagad__events__payment_refunded__descriptor},
    {"notification.sent", &sagad__events__notification_sent__descriptor},
    {"notification.failed", &sagad__events__notification_failed__descriptor},
};

static const char *const type_names[] = {
    "order.created",         "order.updated",       "order.cancelled",    "order.completed",
    "order.cancel_rejected", "inventory.reserved",  "inventory.released", "inventory.updated",
    "inventory.low_stock",   "payment.processed",   "payment.failed",     "payment.refunded",
    "notification.sent",     "notification.failed",
};

_Static_assert(SG_ARRAY_LEN(kinds) == SG_ARRAY_LEN(type_names), "one name per event kind");

static const ProtobufCMessageDescriptor *find_desc(const char *type)
{
    for (size_t i = 0; type != NULL && i < SG_ARRAY_LEN(kinds); i++) {
        if (strcmp(kinds[i].type, type) == 0) {
            return kinds[i].desc;
        }
    }
    return NULL;
}

const char *sg_event_message_name(const char *type)
{
    const ProtobufCMessageDescriptor *d = find_desc(type);
    return d ? d->short_name : NULL;
}

const char *const *sg_event_types(size_t *n)
{
    *n = SG_ARRAY_LEN(type_names);
    return type_names;
}

/* ---- JSON -> message. Allocations use malloc: protobuf_c_message_free_unpacked(m, NULL)
 * releases them with protobuf-c's default allocator. ---- */

static sg_err_t fill(const ProtobufCMessageDescriptor *d, const cJSON *obj, ProtobufCMessage *m,
                     const char *path, char *err, size_t errlen);

static sg_err_t set_scalar(const ProtobufCFieldDescriptor *f, const cJSON *v, void *slot,
                           const char *path, char *err, size_t errlen)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s.%s: expected a string", path, f->name);
            return SG_ERR_INVALID;
        }
        char *s = strdup(v->valuestring);
        if (s == NULL) {
            return SG_ERR_NOMEM;
        }
        *(char **)slot = s;
        return SG_OK;
    }
    case PROTOBUF_C_TYPE_INT64:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            fabs(v->valuedouble) > 9007199254740992.0) {
            snprintf(err, errlen, "%s.%s: expected an integer", path, f->name);
            return SG_ERR_INVALID;
        }
        *(int64_t *)slot = (int64_t)v->valuedouble;
        return SG_OK;
    case PROTOBUF_C_TYPE_BOOL:
        if (!cJSON_IsBool(v)) {
            snprintf(err, errlen, "%s.%s: expected true or false", path, f->name);
            return SG_ERR_INVALID;
        }
        *(protobuf_c_boolean *)slot = cJSON_IsTrue(v);
        return SG_OK;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *sub = f->descriptor;
        if (!cJSON_IsObject(v)) {
            snprintf(err, errlen, "%s.%s: expected an object", path, f->name);
            return SG_ERR_INVALID;
        }
        ProtobufCMessage *sm = malloc(sub->sizeof_message);
        if (sm == NULL) {
            return SG_ERR_NOMEM;
        }
        sub->message_init(sm);
        *(ProtobufCMessage **)slot = sm;
        char subpath[128];
        snprintf(subpath, sizeof(subpath), "%s.%s", path, f->name);
        return fill(sub, v, sm, subpath, err, errlen);
    }
    default:
        snprintf(err, errlen, "%s.%s: field type not supported", path, f->name);
        return SG_ERR_INVALID;
    }
}

static size_t slot_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return sizeof(int64_t);
    }
}

static sg_err_t fill(const ProtobufCMessageDescriptor *d, const cJSON *obj, ProtobufCMessage *m,
                     const char *path, char *err, size_t errlen)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, obj)
    {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(d, v->string);
        if (f == NULL) {
            snprintf(err, errlen, "%s: no field \"%s\" in message %s", path, v->string,
                     d->short_name);
            return SG_ERR_INVALID;
        }
        if (cJSON_IsNull(v)) {
            continue; /* the default value */
        }
        char *base = (char *)m;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            sg_err_t rc = set_scalar(f, v, base + f->offset, path, err, errlen);
            if (rc != SG_OK) {
                return rc;
            }
            continue;
        }
        if (!cJSON_IsArray(v)) {
            snprintf(err, errlen, "%s.%s: expected an array", path, f->name);
            return SG_ERR_INVALID;
        }
        size_t n = (size_t)cJSON_GetArraySize(v);
        if (n == 0) {
            continue;
        }
        char *arr = calloc(n, slot_size(f));
        if (arr == NULL) {
            return SG_ERR_NOMEM;
        }
        *(void **)(base + f->offset) = arr;
        size_t *count = (size_t *)(base + f->quantifier_offset);
        const cJSON *item;
        cJSON_ArrayForEach(item, v)
        {
            sg_err_t rc = set_scalar(f, item, arr + *count * slot_size(f), path, err, errlen);
            if (rc != SG_OK) {
                /* A message half made is still counted so free_unpacked releases it. */
                if (f->type == PROTOBUF_C_TYPE_MESSAGE && ((void **)arr)[*count] != NULL) {
                    (*count)++;
                }
                return rc;
            }
            (*count)++;
        }
    }
    return SG_OK;
}

sg_err_t sg_event_encode(const char *type, const cJSON *ev, uint8_t **out, size_t *len, char *err,
                         size_t errlen)
{
    const ProtobufCMessageDescriptor *d = find_desc(type);
    if (d == NULL) {
        snprintf(err, errlen, "event type \"%s\" has no message in schemas/events.proto",
                 type ? type : "(null)");
        return SG_ERR_INVALID;
    }
    if (!cJSON_IsObject(ev)) {
        snprintf(err, errlen, "%s: the event is not a JSON object", type);
        return SG_ERR_INVALID;
    }
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m == NULL) {
        return SG_ERR_NOMEM;
    }
    d->message_init(m);
    sg_err_t rc = fill(d, ev, m, type, err, errlen);
    if (rc == SG_OK) {
        *len = protobuf_c_message_get_packed_size(m);
        *out = sg_malloc(*len ? *len : 1);
        if (*out == NULL) {
            rc = SG_ERR_NOMEM;
        } else {
            protobuf_c_message_pack(m, *out);
        }
    }
    if (rc == SG_ERR_NOMEM) {
        snprintf(err, errlen, "out of memory");
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* ---- message -> JSON ---- */

static cJSON *to_json(const ProtobufCMessage *m);

static cJSON *scalar_json(const ProtobufCFieldDescriptor *f, const void *slot)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return cJSON_CreateString(*(char *const *)slot ? *(char *const *)slot : "");
    case PROTOBUF_C_TYPE_INT64:
        return cJSON_CreateNumber((double)*(const int64_t *)slot);
    case PROTOBUF_C_TYPE_BOOL:
        return cJSON_CreateBool(*(const protobuf_c_boolean *)slot);
    case PROTOBUF_C_TYPE_MESSAGE:
        return to_json(*(ProtobufCMessage *const *)slot);
    default:
        return cJSON_CreateNull();
    }
}

static bool is_default(const ProtobufCFieldDescriptor *f, const void *slot)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return *(char *const *)slot == NULL || **(char *const *)slot == '\0';
    case PROTOBUF_C_TYPE_INT64:
        return *(const int64_t *)slot == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)slot;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)slot == NULL;
    default:
        return true;
    }
}

static cJSON *to_json(const ProtobufCMessage *m)
{
    if (m == NULL) {
        return cJSON_CreateNull();
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *obj = cJSON_CreateObject();
    for (unsigned i = 0; obj != NULL && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0) {
                continue;
            }
            const char *arr = *(char *const *)(base + f->offset);
            cJSON *a = cJSON_AddArrayToObject(obj, f->name);
            for (size_t k = 0; a != NULL && k < n; k++) {
                cJSON_AddItemToArray(a, scalar_json(f, arr + k * slot_size(f)));
            }
        } else if (!is_default(f, base + f->offset)) {
            cJSON_AddItemToObject(obj, f->name, scalar_json(f, base + f->offset));
        }
    }
    return obj;
}

cJSON *sg_event_decode(const char *type, const uint8_t *data, size_t len)
{
    const ProtobufCMessageDescriptor *d = find_desc(type);
    if (d == NULL) {
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, data);
    if (m == NULL) {
        return NULL;
    }
    cJSON *j = to_json(m);
    protobuf_c_message_free_unpacked(m, NULL);
    return j;
}
