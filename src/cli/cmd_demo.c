/* `payguard demo ...` verbs: thin wrappers over the demo library. */
#include "cli.h"

const struct pg_cmd pg_cli_demo[] = {
    {NULL, NULL, NULL, NULL},
};
