/* `payguard seos ...` verbs: thin wrappers over the seos library. */
#include "cli.h"

const struct pg_cmd pg_cli_seos[] = {
    {NULL, NULL, NULL, NULL},
};
