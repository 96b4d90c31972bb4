/*
 * order: the read-only view of the order service's records for code outside a task
 * (the REST gateway's GET /v1/orders/{id}). Everything that changes an order goes
 * through the "order" queue's operations (activities/order/order.c), never through here.
 */
#ifndef SG_ORDER_H
#define SG_ORDER_H

/*
 * The order order_id as JSON, the same document the order.get operation returns:
 * {order_id, customer_id, email, items: [{sku, qty, price}], total, currency,
 *  shipping_address, status, previous_status, reservation_id, payment_id,
 *  cancel_reason, cancel_requested_by, saga_id, cancel_saga_id, created_ms,
 *  updated_ms, history: [{from, to, reason, saga_id, activity, ts_ms}]}
 * (absent values are null). Opens <data_dir>/order.db read-only for the call and reads
 * one consistent snapshot. Returns NULL when the order does not exist, the database
 * cannot be read, or memory runs out. The caller frees the result with sg_free.
 * Any thread; safe while the order service writes the same file.
 */
char *sg_order_get_json(const char *data_dir, const char *order_id);

#endif
