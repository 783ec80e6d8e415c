/* `payguard nfcswitch ...` verbs: thin wrappers over the nfcswitch library. */
#include "cli.h"

const struct pg_cmd pg_cli_nfcswitch[] = {
    {NULL, NULL, NULL, NULL},
};
