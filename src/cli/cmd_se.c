/* `payguard se ...` verbs: thin wrappers over the se library. */
#include "cli.h"

const struct pg_cmd pg_cli_se[] = {
    {NULL, NULL, NULL, NULL},
};
