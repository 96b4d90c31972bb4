/*
 * saga-worker: hosts activity modules for Kafka queues (issue 6). Being written.
 */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "saga-worker: not built yet\n");
    return 2;
}
