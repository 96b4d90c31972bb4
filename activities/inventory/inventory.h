/*
 * inventory: the read-only view of the inventory service's reservations for code
 * outside a task (the REST gateway's GET /v1/orders/{id}). Everything that changes stock
 * or reservations goes through the "inventory" queue's operations
 * (activities/inventory/inventory.c), never through here.
 */
#ifndef SG_INVENTORY_H
#define SG_INVENTORY_H

/*
 * The reservation of order_id as JSON: the held one, else the latest released one,
 *   {reservation_id, order_id, status: "held"|"released", created_ms, released_ms,
 *    items: [{sku, qty}]}
 * (released_ms null while held). Opens <data_dir>/inventory.db read-only for the call
 * and reads one consistent snapshot. Returns NULL when the order has no reservation,
 * the database cannot be read, or memory runs out. The caller frees the result with
 * sg_free. Any thread; safe while the inventory service writes the same file.
 */
char *sg_inventory_reservation_json(const char *data_dir, const char *order_id);

#endif
