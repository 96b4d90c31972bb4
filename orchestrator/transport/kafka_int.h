/*
 * kafka transport internals shared by kafka.c (the transport), kafka_dlq.c (its reader
 * of dead letters) and kafka_heartbeat.c (its reader of heartbeats). Never included from
 * outside orchestrator/transport/.
 */
#ifndef SG_KAFKA_INT_H
#define SG_KAFKA_INT_H

#include "orchestrator/transport/kafka.h"

/* The topics the reader follows: every saga.tasks.<queue>.dlq, present and future. */
#define KAFKA_DLQ_REGEX "^saga\\.tasks\\..*\\.dlq$"

typedef struct kafka_dlq kafka_dlq_t;

/*
 * A consumer in group "<group>.dlq" subscribed to KAFKA_DLQ_REGEX, handing each message
 * to fn as an sg_dead_letter_t, offsets never committed automatically. Starts no thread
 * yet. On failure one line in err. ko and what it points to must outlive the reader.
 */
sg_err_t kafka__dlq_new(const sg_kafka_opts_t *ko, const char *group, sg_transport_dlq_fn fn,
                        void *ctx, kafka_dlq_t **out, char *err, size_t errlen);
/* Starts the reading thread (call it with the signals blocked). */
sg_err_t kafka__dlq_start(kafka_dlq_t *q);
/* Subscribes again, so that topics created just now are found without waiting for the
 * next metadata refresh. Any thread. */
void kafka__dlq_resubscribe(kafka_dlq_t *q);
/* The next offsets of what was handed to fn since the last take (NULL when nothing new,
 * or on OOM: then it stays to take). Caller destroys the list. Any thread. */
rd_kafka_topic_partition_list_t *kafka__dlq_take(kafka_dlq_t *q);
/* Commits offsets taken (once results_sync said they are durable); when that fails or
 * sync is false, they are taken again next time. Destroys l. Not from fn. */
void kafka__dlq_commit(kafka_dlq_t *q, rd_kafka_topic_partition_list_t *l, bool sync);
/* Dead letters handed to fn so far. Any thread. */
uint64_t kafka__dlq_count(kafka_dlq_t *q);
/* Stops the thread (fn is not called after it returns), leaves the group and frees q.
 * NULL is a no-op. */
void kafka__dlq_free(kafka_dlq_t *q);

/* ---- heartbeats (kafka_heartbeat.c) ---- */

typedef struct kafka_hb kafka_hb_t;

/*
 * A consumer of every partition of saga.heartbeats, from its end, without group
 * membership or commits, handing each decodable heartbeat to fn. Starts no thread yet. On
 * failure one line in err. ko must outlive the reader.
 */
sg_err_t kafka__hb_new(const sg_kafka_opts_t *ko, const char *group, sg_transport_heartbeat_fn fn,
                       void *ctx, kafka_hb_t **out, char *err, size_t errlen);
/* Starts the reading thread (call it with the signals blocked). */
sg_err_t kafka__hb_start(kafka_hb_t *h);
/* Heartbeats handed to fn, and messages skipped as undecodable, so far. Any thread. */
void kafka__hb_counts(kafka_hb_t *h, uint64_t *received, uint64_t *undecodable);
/* Stops the thread (fn is not called after it returns) and frees h. NULL is a no-op. */
void kafka__hb_free(kafka_hb_t *h);

#endif
