/* `payguard image ...` verbs: thin wrappers over the image library. */
#include "cli.h"

const struct pg_cmd pg_cli_image[] = {
    {NULL, NULL, NULL, NULL},
};
