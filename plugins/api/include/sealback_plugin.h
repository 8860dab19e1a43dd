/*
 * sealback storage-provider plugin ABI, version 1.
 *
 * A plugin is a shared library that exports the two functions declared at the end of this file.
 * The Rust definitions are in sealback-plugin-api (src/abi.rs); the two must stay identical.
 *
 * Versioning
 *   The host calls sealback_plugin_magic() before anything else and refuses a library whose
 *   magic is not "SBPLUGIN" or whose abi_version it does not speak. The layout of
 *   sealback_plugin_magic_t never changes. sealback_provider_v1_t is append-only: its first
 *   field is its size as the plugin was built; later ABI versions only add fields at the end,
 *   and the host refuses a table smaller than the v1 size.
 *
 * Memory
 *   Inputs from the host are (const uint8_t *ptr, size_t len) pairs the plugin only borrows for
 *   the call; ptr may be NULL when len is 0. Outputs are sealback_buf_t buffers the host passes
 *   in empty ({NULL, 0, 0}); the plugin allocates and fills them, and the host gives them back to
 *   the table's free_buf, never to its own allocator. free_buf leaves the buffer empty and
 *   accepts an empty buffer.
 *
 * Errors
 *   Every call that can fail returns a status (SEALBACK_STATUS_*). On a non-zero status the
 *   plugin MAY fill the error buffer with a UTF-8 message naming what is wrong. A status outside
 *   0..6 is treated as SEALBACK_STATUS_PERMANENT. No C++ exception or Rust panic may cross the
 *   boundary.
 *
 * Threads
 *   The host may call put, get, list and remove on one instance from several threads at once.
 *   close is called once per instance, after all other calls on it have returned.
 *
 * Object names
 *   1 to 255 bytes: segments of [A-Za-z0-9._-] separated by single '/', no empty segment, no "."
 *   or ".." segment, no leading '/'. A list prefix is empty, or a valid name optionally followed
 *   by one '/'. The host sends only valid names and prefixes.
 *
 * Semantics
 *   put is atomic (a reader sees the old object, the new one, or none; never a part), idempotent
 *   (putting the same name again replaces the object) and durable once it returns OK.
 *   get of a missing object returns SEALBACK_STATUS_NOT_FOUND, and nothing else does.
 *   list returns every object whose name starts with the prefix (the plugin pages internally),
 *   as UTF-8 lines "<name>\t<size in bytes, decimal>\n", in any order.
 *   remove of a missing object succeeds.
 */

#ifndef SEALBACK_PLUGIN_H
#define SEALBACK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SEALBACK_PLUGIN_ABI_VERSION 1u
#define SEALBACK_PLUGIN_MAGIC "SBPLUGIN" /* the 8 bytes, without the NUL */

#define SEALBACK_STATUS_OK             0 /* success */
#define SEALBACK_STATUS_NOT_FOUND      1 /* the object does not exist */
#define SEALBACK_STATUS_TRANSIENT      2 /* a retry may help */
#define SEALBACK_STATUS_AUTH           3 /* credentials refused */
#define SEALBACK_STATUS_QUOTA          4 /* target full or over quota */
#define SEALBACK_STATUS_PERMANENT      5 /* a retry will not help */
#define SEALBACK_STATUS_INVALID_CONFIG 6 /* bad options given to open */

/* What sealback_plugin_magic() returns. Its layout is the same in every ABI version. */
typedef struct {
    uint8_t magic[8];     /* "SBPLUGIN" */
    uint32_t abi_version; /* SEALBACK_PLUGIN_ABI_VERSION */
    uint32_t reserved;    /* 0; ignored by the host */
} sealback_plugin_magic_t;

/* A buffer allocated by the plugin and freed by its free_buf. */
typedef struct {
    uint8_t *ptr; /* NULL when empty */
    size_t len;   /* initialised bytes */
    size_t cap;   /* allocated bytes; only free_buf needs it */
} sealback_buf_t;

/* The provider's function table, ABI v1. Append-only; no pointer may be NULL. */
typedef struct {
    uint32_t size;        /* sizeof(sealback_provider_v1_t) as the plugin was built */
    uint32_t abi_version; /* SEALBACK_PLUGIN_ABI_VERSION */
    const char *name;     /* NUL-terminated, static, non-empty, UTF-8, e.g. "local" */
    const char *version;  /* NUL-terminated, static, non-empty, UTF-8 */

    /* Creates an instance from options (a JSON document) and stores it in *instance. */
    int32_t (*open)(const uint8_t *options_json, size_t len, void **instance,
                    sealback_buf_t *error);
    /* Destroys an instance. */
    void (*close)(void *instance);
    /* Stores data as the object name. */
    int32_t (*put)(void *instance, const uint8_t *name, size_t name_len, const uint8_t *data,
                   size_t data_len, sealback_buf_t *error);
    /* Reads the object name into data. */
    int32_t (*get)(void *instance, const uint8_t *name, size_t name_len, sealback_buf_t *data,
                   sealback_buf_t *error);
    /* Lists the objects whose names start with prefix into entries. */
    int32_t (*list)(void *instance, const uint8_t *prefix, size_t prefix_len,
                    sealback_buf_t *entries, sealback_buf_t *error);
    /* Deletes the object name. */
    int32_t (*remove)(void *instance, const uint8_t *name, size_t name_len,
                      sealback_buf_t *error);
    /* Frees a buffer this plugin filled and empties it. */
    void (*free_buf)(sealback_buf_t *buf);
} sealback_provider_v1_t;

/* The two functions a plugin exports. Both return pointers to static data. */
const sealback_plugin_magic_t *sealback_plugin_magic(void);
const sealback_provider_v1_t *sealback_plugin_provider(void);

#ifdef __cplusplus
}
#endif

#endif /* SEALBACK_PLUGIN_H */
