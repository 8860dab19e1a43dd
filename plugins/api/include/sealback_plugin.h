/*
 * sealback storage-provider plugin ABI, version 2: version 1 (frozen) and the optional fields
 * version 2 appends (sealback_provider_v2_t, docs/plugin-abi.md section 10).
 *
 * A plugin is a shared library that exports the two functions declared at the end of this file.
 * docs/plugin-abi.md is the full specification; the comments here state every rule a plugin
 * must keep. The Rust definitions are in sealback-plugin-api (src/abi.rs); a test compiles this
 * header and checks that every size and offset matches them.
 *
 * Versions
 *   The host calls sealback_plugin_magic() first and refuses a library whose magic is not
 *   "SBPLUGIN", or whose abi_version is not one it loads: a host of version N loads plugins
 *   of versions 1 to N, so this (v1) host refuses any abi_version but 1, naming the file and
 *   both versions. The layouts of sealback_plugin_magic_t, sealback_buf_t and
 *   sealback_error_t, the status codes below and the signatures of the v1 functions never
 *   change. Later versions only append fields to the end of the provider table, and every
 *   appended field is optional (NULL or 0 means "not provided"), so:
 *   - a plugin built for version N > 1 sets abi_version = N in its magic and its table and
 *     size = sizeof its version-N table; hosts of version N or later load it.
 *   - a host of version N > 1 given a v1 table (abi_version 1, size = the v1 size) treats every
 *     field past size as absent and uses the v1 behaviour; in general it reads a field only if
 *     the field ends at or before size.
 *   - the table's abi_version must equal the magic's; a size below the v1 size is refused.
 *   A later version may add status codes; a host treats a code it does not know as PERMANENT.
 *
 * Inputs (borrowed)
 *   Every input is a (const uint8_t *ptr, size_t len) pair the plugin only borrows for the
 *   duration of the call: it must not write through it, keep it, or read past len. ptr may be
 *   NULL when len is 0. Inputs are NOT NUL-terminated.
 *
 * Outputs (plugin-allocated, freed by free_buf)
 *   data (get), entries (list) and error->message are sealback_buf_t the host passes in zeroed
 *   ({NULL, 0, 0}). The plugin may allocate memory with any allocator, point ptr at it, set len
 *   to the number of bytes it holds, and use cap for its own bookkeeping (the host never reads
 *   it). The host reads len bytes and then calls the table's free_buf on the buffer exactly
 *   once, whatever the status, whenever ptr is not NULL; it never frees a plugin buffer itself.
 *   free_buf must accept NULL and an empty buffer, must leave the buffer {NULL, 0, 0}, and may
 *   be called from any thread, before or after the instance that filled the buffer is closed
 *   (never after the library is unloaded). An empty result may stay {NULL, 0, 0}. On a failing
 *   status the host ignores (but still frees) data and entries.
 *
 * Errors
 *   Every call but close and free_buf returns a status, SEALBACK_STATUS_*. On a status other
 *   than OK the plugin may fill error->message with UTF-8 text that names the object or path
 *   and what is wrong (no trailing newline, no secrets: the host logs and displays it; invalid
 *   UTF-8 is replaced) and, only with SEALBACK_STATUS_TRANSIENT, may set
 *   error->retry_after_ms, the milliseconds the host should wait before it retries (0 = no
 *   advice; the host may wait longer, or give up; it ignores the field with other statuses).
 *   On OK the plugin leaves *error untouched. NOT_FOUND is for get only, when the object does
 *   not exist; the host treats it as PERMANENT from any other call. No C++ exception, Rust
 *   panic, longjmp or signal may cross the boundary, and a plugin never calls exit or abort
 *   on an error: it returns a status.
 *
 * Threads
 *   The two exported functions, open and free_buf may be called from any thread, at any time,
 *   concurrently. put, get, list and remove may be called on one instance from several
 *   threads at once (several instances may also be open at once, even with the same options).
 *   close is called once per instance, from any thread, after every other call on it has
 *   returned and before the library is unloaded. Calls may block (the host calls them on
 *   threads of its own); a plugin that talks to a network bounds each call with its own
 *   timeouts and reports TRANSIENT when one expires.
 *
 * Idempotence
 *   put and remove are idempotent: the host repeats them when it does not know whether an
 *   earlier attempt took effect (a timeout, a TRANSIENT status), and the outcome must be the
 *   same as for one call. get and list have no side effects. open must not create, change or
 *   remove any object (it may create an empty container, such as the root directory). close
 *   changes nothing that put or remove has acknowledged.
 *
 * Object names
 *   1 to 255 bytes: segments of [A-Za-z0-9._-] separated by single '/', no empty segment, no "."
 *   or ".." segment, no leading '/'. A list prefix is empty, or a valid name optionally followed
 *   by one '/'. The host sends only valid names and prefixes, treats names as case-sensitive
 *   bytes, and never stores an object whose name is a whole-segment prefix of another's ("a"
 *   and "a/b"); a provider may refuse such a put with PERMANENT.
 *
 * Semantics
 *   put is atomic (a reader sees the old object, the new one, or none; never a part, even if
 *   the put fails or the machine crashes), replaces an existing object, and is durable once it
 *   returns OK. get returns the whole object, or NOT_FOUND when it does not exist. list returns
 *   every object whose name starts with the prefix (byte-wise, not segment-wise; the plugin
 *   pages internally), each once and in any order, as UTF-8 lines
 *   "<full name>\t<size in bytes, decimal digits>\n"; no match is OK with an empty buffer.
 *   remove of a missing object succeeds; a removal is durable once it returns OK.
 */

#ifndef SEALBACK_PLUGIN_H
#define SEALBACK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SEALBACK_PLUGIN_ABI_VERSION 2u /* a v1 table with this version is fine: v2 fields absent */
#define SEALBACK_PLUGIN_MAGIC "SBPLUGIN" /* the 8 bytes, without the NUL */

#define SEALBACK_STATUS_OK             0 /* success */
#define SEALBACK_STATUS_NOT_FOUND      1 /* get: the object does not exist */
#define SEALBACK_STATUS_TRANSIENT      2 /* a retry may help; retry_after_ms may say when */
#define SEALBACK_STATUS_AUTH           3 /* credentials refused: a person must fix them */
#define SEALBACK_STATUS_QUOTA          4 /* target full or over quota: a person must make room */
#define SEALBACK_STATUS_PERMANENT      5 /* a retry will not help */
#define SEALBACK_STATUS_INVALID_CONFIG 6 /* open: bad options (missing, mistyped or unknown) */

/* Marks the two exported functions visible, even when built with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define SEALBACK_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SEALBACK_PLUGIN_EXPORT
#endif

/* What sealback_plugin_magic() returns. Its layout is the same in every ABI version. */
typedef struct {
    uint8_t magic[8];     /* "SBPLUGIN" */
    uint32_t abi_version; /* SEALBACK_PLUGIN_ABI_VERSION (or a later version's) */
    uint32_t reserved;    /* 0; ignored by the host */
} sealback_plugin_magic_t;

/* A buffer the plugin allocates and its free_buf frees; the host passes it in zeroed. */
typedef struct {
    uint8_t *ptr; /* NULL when empty */
    size_t len;   /* bytes the host may read at ptr */
    size_t cap;   /* the plugin's own bookkeeping (e.g. allocated size); the host ignores it */
} sealback_buf_t;

/* How a call failed, beyond its status; the host passes it in zeroed. */
typedef struct {
    sealback_buf_t message;  /* UTF-8, for people; freed by free_buf like any buffer */
    uint64_t retry_after_ms; /* TRANSIENT only: wait this long before retrying; 0 = no advice */
} sealback_error_t;

/* The provider's function table, ABI v1. Append-only; no v1 pointer may be NULL. */
typedef struct {
    uint32_t size;        /* sizeof the table as the plugin was built: sizeof(*this) for v1 */
    uint32_t abi_version; /* the same as the magic's abi_version */
    const char *name;     /* NUL-terminated, static, non-empty, UTF-8, e.g. "local" */
    const char *version;  /* NUL-terminated, static, non-empty, UTF-8 */

    /* Creates an instance from options (a JSON object; len bytes, not NUL-terminated) and on OK
     * stores a non-NULL opaque pointer in *instance, which the host passes to every other call.
     * Missing, mistyped or unknown options are INVALID_CONFIG; unreachable storage may be
     * TRANSIENT, refused credentials AUTH. */
    int32_t (*open)(const uint8_t *options_json, size_t len, void **instance,
                    sealback_error_t *error);
    /* Destroys an instance: called once, after every other call on it has returned. */
    void (*close)(void *instance);
    /* Stores data_len bytes as the object name: atomic, replaces, durable on OK. */
    int32_t (*put)(void *instance, const uint8_t *name, size_t name_len, const uint8_t *data,
                   size_t data_len, sealback_error_t *error);
    /* Reads the whole object name into *data; NOT_FOUND if it does not exist. */
    int32_t (*get)(void *instance, const uint8_t *name, size_t name_len, sealback_buf_t *data,
                   sealback_error_t *error);
    /* Writes every object whose name starts with prefix into *entries, one
     * "<name>\t<size>\n" line each. */
    int32_t (*list)(void *instance, const uint8_t *prefix, size_t prefix_len,
                    sealback_buf_t *entries, sealback_error_t *error);
    /* Deletes the object name; OK if it does not exist. */
    int32_t (*remove)(void *instance, const uint8_t *name, size_t name_len,
                      sealback_error_t *error);
    /* Frees a buffer this plugin filled (data, entries or an error message) and sets it to
     * {NULL, 0, 0}; does nothing for NULL or an empty buffer. */
    void (*free_buf)(sealback_buf_t *buf);
} sealback_provider_v1_t;

/* ---- ABI v2 (appended; every field optional: NULL means "not provided") ---- */

#define SEALBACK_LOG_ERROR 1u
#define SEALBACK_LOG_WARN  2u
#define SEALBACK_LOG_INFO  3u
#define SEALBACK_LOG_DEBUG 4u

/* What the host offers an instance, passed to open_v2; valid from that call until close
 * returns. A plugin reads a field only if it ends at or before size. */
typedef struct {
    uint32_t size;     /* sizeof(sealback_host_v2_t) as the host was built */
    uint32_t reserved; /* 0 */
    void *ctx;         /* passed back to log */
    /* The daemon's log: UTF-8 text (len bytes, no NUL), never a secret; any thread, any time
     * until close returns, concurrently. NULL = no log. level: SEALBACK_LOG_*. */
    void (*log)(void *ctx, uint32_t level, const uint8_t *message, size_t len);
} sealback_host_v2_t;

/* What the host lends one authorize call; valid until it returns. */
typedef struct {
    uint32_t size;     /* sizeof(sealback_auth_io_t) as the host was built */
    uint32_t reserved; /* 0 */
    void *ctx;         /* passed back to prompt and cancelled */
    /* Shows UTF-8 text (a URL and a code to enter) to the person authorizing; may be called
     * several times. NULL = nobody to show it to. */
    void (*prompt)(void *ctx, const uint8_t *text, size_t len);
    /* Non-zero once the host wants the call to stop (the person gave up, the daemon stops):
     * the plugin polls it while it waits and then returns TRANSIENT. NULL = never. */
    int32_t (*cancelled)(void *ctx);
} sealback_auth_io_t;

/* The provider's function table, ABI v2: the v1 table (size = sizeof(sealback_provider_v2_t),
 * abi_version = 2), then optional functions. */
typedef struct {
    sealback_provider_v1_t v1;
    /* open, with the host's services; when present the host calls it instead of open. */
    int32_t (*open_v2)(const uint8_t *options_json, size_t len, const sealback_host_v2_t *host,
                       void **instance, sealback_error_t *error);
    /* The interactive authorization step (`sealbackctl target auth NAME`): signs the instance's
     * storage account in (showing what to do through io->prompt), stores the credentials
     * where the options say, and returns OK once later calls can use them. May run for
     * minutes; returns TRANSIENT when io->cancelled says so. It may run concurrently with put, get,
     * list and remove on the same instance. */
    int32_t (*authorize)(void *instance, const sealback_auth_io_t *io, sealback_error_t *error);
} sealback_provider_v2_t;

/* The two functions a plugin exports. Both return pointers to static data, the same on every
 * call, and have no other effect. */
SEALBACK_PLUGIN_EXPORT const sealback_plugin_magic_t *sealback_plugin_magic(void);
SEALBACK_PLUGIN_EXPORT const sealback_provider_v1_t *sealback_plugin_provider(void);

#ifdef __cplusplus
}
#endif

#endif /* SEALBACK_PLUGIN_H */
