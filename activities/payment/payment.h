/*
 * payment: the read-only view of the payment service's ledger for code outside a task
 * (the REST gateway's GET /v1/orders/{id}). Money only moves through the "payment"
 * queue's operations (activities/payment/payment.c), never through here.
 */
#ifndef SG_PAYMENT_H
#define SG_PAYMENT_H

/*
 * What the ledger holds for order_id, as JSON:
 *   {order_id, status: "charged"|"refunded"|"declined",
 *    charge: {payment_id, amount, currency, customer_id, card_last4, ts_ms} | null,
 *    refund: {refund_id, amount, currency, ts_ms} | null,
 *    declines: [{id, amount, currency, reason, ts_ms}]}
 * status is "refunded" once the charge was refunded, "charged" while it stands, and
 * "declined" when there is no charge but declines. The card token is never included.
 * Opens <data_dir>/payment.db read-only for the call and reads one consistent snapshot.
 * Returns NULL when the ledger has nothing for the order, the database cannot be read,
 * or memory runs out. The caller frees the result with sg_free. Any thread; safe while
 * the payment service writes the same file.
 */
char *sg_payment_order_json(const char *data_dir, const char *order_id);

#endif
