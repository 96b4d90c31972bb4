/*
 * sagactl dlq: the dead letters of the Kafka transport (GET /v1/dlq): tasks saga-workers
 * gave up on, and what an operator does with them: requeue (the task goes back on its
 * tasks topic) or discard (marked as dealt with).
 */
#include "cli/sagactl.h"

#include <stdlib.h>
#include <string.h>

#define REASON_MAX 60

int cli__cmd_dlq_list(cli_ctx_t *c)
{
    long after = 0, limit = 0;
    if (!cli__opt_long(c, "--after", 0, 1L << 62, &after) ||
        !cli__opt_long(c, "--limit", 1, 1000, &limit)) {
        return CLI_USAGE;
    }
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_puts(&path, "/v1/dlq");
    cli__query(&path, "queue", cli__opt(c, "--queue"));
    cli__query(&path, "status", cli__opt(c, "--status"));
    cli__query(&path, "after", cli__opt(c, "--after"));
    cli__query(&path, "limit", cli__opt(c, "--limit"));
    cJSON *doc = NULL;
    int rc = path.oom ? CLI_FAILED : cli__call_print(c, "GET", path.data, NULL, NULL, &doc);
    if (rc == CLI_OK && !c->json) {
        cli_table_t t;
        cli__table_init(&t, 8,
                        (const char *[]){"ID", "STATUS", "QUEUE", "RECEIVED", "INSTANCE", "STEP",
                                         "ATTEMPT", "REASON"});
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char id[32], time[40], inst[40], attempt[16], reason[REASON_MAX + 8];
            cli__jcell(e, "id", id, sizeof(id), 0);
            cli__jtime(e, "received_at", false, time);
            cli__jcell(e, "instance_id", inst, sizeof(inst), 0);
            cli__jcell(e, "attempt", attempt, sizeof(attempt), 0);
            cli__jcell(e, "reason", reason, sizeof(reason), REASON_MAX);
            cli__table_row(&t,
                           (const char *[]){id, cli__jstr(e, "status"), cli__jstr(e, "queue"), time,
                                            inst, cli__jstr(e, "step_id"), attempt, reason});
        }
        cli__table_print(&t, stdout);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_after");
        if (cJSON_IsNumber(next)) {
            fprintf(stderr, "more: add --after %.0f\n", next->valuedouble);
        }
    }
    cJSON_Delete(doc);
    sg_buf_fini(&path);
    return rc;
}

/* POST /v1/dlq/ID/VERB and one line about the dead letter after it. */
static int act(cli_ctx_t *c, const char *verb)
{
    const char *id = c->pos[0];
    char *end = NULL;
    long long n = strtoll(id, &end, 10);
    if (id[0] < '0' || id[0] > '9' || *end != '\0' || n < 1) {
        return cli__usage_error(c,
                                "ID must be a dead letter id (a number, see `sagactl dlq "
                                "list`), not \"%s\"",
                                id);
    }
    char path[64];
    snprintf(path, sizeof(path), "/v1/dlq/%lld/%s", n, verb);
    cJSON *doc = NULL;
    int rc = cli__call_print(c, "POST", path, "", NULL, &doc);
    if (rc == CLI_OK && !c->json) {
        char inst[40];
        cli__jcell(doc, "instance_id", inst, sizeof(inst), 0);
        printf("dead letter %lld (queue %s, instance %s, step %s): %s\n", n,
               cli__jstr(doc, "queue"), inst, cli__jstr(doc, "step_id"), cli__jstr(doc, "status"));
    }
    cJSON_Delete(doc);
    return rc;
}

int cli__cmd_dlq_requeue(cli_ctx_t *c)
{
    return act(c, "requeue");
}

int cli__cmd_dlq_discard(cli_ctx_t *c)
{
    return act(c, "discard");
}
