/*
 * events: the shop's domain events as protobuf messages (schemas/events.proto).
 *
 * An event lives as a JSON object whose keys are the fields of its message (the
 * envelope event_id, type, time_ms, correlation_id, source, then the business fields).
 * sg_event_encode turns that JSON into the message's bytes through protobuf-c's
 * descriptors, strictly: a key the message does not have, or a value of the wrong type,
 * is an error, so the .proto file and the services cannot drift apart unnoticed.
 */
#ifndef SG_EVENTS_H
#define SG_EVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "orchestrator/base/base.h"

/* The protobuf message name of an event type: "inventory.low_stock" ->
 * "InventoryLowStock" (package sagad.events); NULL when type has no message. */
const char *sg_event_message_name(const char *type);

/* Every event type that has a message (*n of them), for tests and docs. */
const char *const *sg_event_types(size_t *n);

/*
 * Encodes the JSON object ev as the message of type. *out (sg_malloc, free with
 * sg_free) and *len on success. SG_ERR_INVALID (with err saying which field) when type
 * is unknown or ev does not fit the message; SG_ERR_NOMEM.
 */
sg_err_t sg_event_encode(const char *type, const cJSON *ev, uint8_t **out, size_t *len, char *err,
                         size_t errlen);

/* Decodes bytes of type's message back to JSON (for kcat-like tools and tests); NULL on
 * unknown type or malformed bytes. Fields at their default value (0, "") are left out. */
cJSON *sg_event_decode(const char *type, const uint8_t *data, size_t len);

#endif
