/* `payguard pos ...` verbs: thin wrappers over the pos library. */
#include "cli.h"

const struct pg_cmd pg_cli_pos[] = {
    {NULL, NULL, NULL, NULL},
};
