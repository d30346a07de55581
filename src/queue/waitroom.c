/* waitroom.c — picks the waiting-room backend from the --queue URL. */
#include "queue/waitroom.h"

#include <stdio.h>
#include <string.h>

struct waitroom *waitroom_open(const char *url, const struct waitroom_config *cfg, struct store *persist, int64_t now,
                               char *err, size_t errlen)
{
    if (strcmp(url, "memory") == 0)
        return waitroom_mem_open(cfg, persist, now, err, errlen); /* takes persist */
    if (persist != NULL)
        persist->ops->close(persist); /* other backends persist themselves */
    if (strncmp(url, "redis://", 8) == 0)
        return waitroom_redis_open(url, cfg, err, errlen);
    snprintf(err, errlen, "--queue must be memory or redis://host:port/db, got \"%s\"", url);
    return NULL;
}
