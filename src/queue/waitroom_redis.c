/* waitroom_redis.c — Redis waiting room (scale-out mode). Placeholder until the backend lands. */
#include "queue/waitroom.h"

#include <stdio.h>

struct waitroom *waitroom_redis_open(const char *url, const struct waitroom_config *cfg, char *err, size_t errlen)
{
    (void)url;
    (void)cfg;
    snprintf(err, errlen, "the Redis waiting room is not built into this version yet");
    return NULL;
}
