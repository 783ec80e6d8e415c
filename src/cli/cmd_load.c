/* `payguard load ...` verbs: thin wrappers over the load library. */
#include "cli.h"

const struct pg_cmd pg_cli_load[] = {
    {NULL, NULL, NULL, NULL},
};
