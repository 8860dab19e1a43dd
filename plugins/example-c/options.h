/*
 * The example provider's options: {"path": "<directory>"}, and nothing else.
 */

#ifndef EXAMPLE_C_OPTIONS_H
#define EXAMPLE_C_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

/* Parses len bytes of JSON (not NUL-terminated). On success returns 0 and stores the path, a
 * malloc'd NUL-terminated string, in *path. Otherwise returns -1 and writes what is wrong
 * (naming the option) into problem, at most size bytes with the NUL. */
int options_parse(const uint8_t *json, size_t len, char **path, char *problem, size_t size);

#endif /* EXAMPLE_C_OPTIONS_H */
