/* `payguard vse ...` verbs: thin wrappers over the vse library. */
#include "cli.h"

const struct pg_cmd pg_cli_vse[] = {
    {NULL, NULL, NULL, NULL},
};
