/*
 * example-c: a sealback storage provider written in C (C99 and POSIX.1-2008, nothing else).
 *
 * It is the tutorial of docs/plugins.md and a real provider: the object "a/b/c" is the file
 * <path>/a/b/c. It shows everything ABI v1 (docs/plugin-abi.md) asks of a plugin:
 *
 *   - the two exported functions, returning static data;
 *   - strict options: the JSON object {"path": "/absolute/dir"} and nothing else (options.c);
 *   - atomic, durable puts: write a temporary file, fsync it, rename it over the object, fsync
 *     the directory;
 *   - NOT_FOUND for a missing object and only for one; remove of a missing object succeeds;
 *   - results and messages in malloc'd buffers that free_buf frees;
 *   - no shared mutable state, so every call may run on any thread at any time.
 *
 * Build (or `make`):
 *   cc -std=c99 -pedantic -Wall -Wextra -Werror -O2 -fPIC -shared -fvisibility=hidden \
 *      -I plugins/api/include -o libsealback_example_c.so \
 *      plugins/example-c/provider.c plugins/example-c/options.c
 */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "options.h"
#include "sealback_plugin.h"

#define NAME "example-c"

/* Temporary files are ".sealback~XXXXXX". No object name can contain '~', so a temporary file
 * never collides with an object, and list, which only reports valid names, never shows one. */
#define TEMP_TEMPLATE ".sealback~XXXXXX"

/* Directories and temporary files are private to the user sealbackd runs as. */
#define DIR_MODE 0700

/* An open instance: the root directory, read-only after open, so calls need no locks. */
struct instance {
    char *root;
};

/* ---------------------------------------------------------------------------------------------
 * Errors: a status, and a message in a buffer that free_buf frees.
 */

/* Fills error->message with a printf-formatted message and returns status. */
static int32_t fail(sealback_error_t *error, int32_t status, const char *format, ...) {
    va_list args, again;
    int len;
    char *message;
    if (error == NULL) {
        return status;
    }
    va_start(args, format);
    va_copy(again, args);
    len = vsnprintf(NULL, 0, format, args);
    va_end(args);
    message = len < 0 ? NULL : malloc((size_t)len + 1);
    if (message != NULL) {
        vsnprintf(message, (size_t)len + 1, format, again);
        error->message.ptr = (uint8_t *)message;
        error->message.len = (size_t)len;
        error->message.cap = (size_t)len + 1;
    }
    va_end(again);
    return status;
}

/* The status for a failed system call: what the host can do about it. */
static int32_t status_of(int err) {
    switch (err) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return SEALBACK_STATUS_QUOTA;
    case EINTR:
    case EAGAIN:
    case ETIMEDOUT:
        return SEALBACK_STATUS_TRANSIENT;
    default:
        return SEALBACK_STATUS_PERMANENT;
    }
}

/* Reports a failed system call `op` on `path`, with errno's text. */
static int32_t fail_errno(sealback_error_t *error, int err, const char *op, const char *path) {
    char reason[256];
    if (strerror_r(err, reason, sizeof reason) != 0) {
        snprintf(reason, sizeof reason, "error %d", err);
    }
    return fail(error, status_of(err), "%s %s: %s", op, path, reason);
}

/* ---------------------------------------------------------------------------------------------
 * Names. The host sends only valid names, but a provider that maps names onto paths checks
 * again: this is what guarantees that no name ever leaves the root directory.
 */

static int allowed(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '/';
}

/* 1 to 255 bytes of [A-Za-z0-9._-] segments joined by single '/'; no "." or ".." segment. */
static int valid_name(const uint8_t *name, size_t len) {
    size_t i, start = 0;
    if (len == 0 || len > 255 || name == NULL) {
        return 0;
    }
    for (i = 0; i <= len; i++) {
        if (i < len && !allowed(name[i])) {
            return 0;
        }
        if (i == len || name[i] == '/') {
            size_t segment = i - start;
            if (segment == 0 || (segment == 1 && name[start] == '.') ||
                (segment == 2 && name[start] == '.' && name[start + 1] == '.')) {
                return 0;
            }
            start = i + 1;
        }
    }
    return 1;
}

/* Empty, or a valid name optionally followed by one '/'. */
static int valid_prefix(const uint8_t *prefix, size_t len) {
    if (len == 0) {
        return 1;
    }
    if (prefix[len - 1] == '/') {
        len--;
    }
    return valid_name(prefix, len);
}

/* "<root>/<name>", NUL-terminated and malloc'd; NULL when out of memory. */
static char *object_path(const struct instance *self, const uint8_t *name, size_t len) {
    size_t root_len = strlen(self->root);
    char *path = malloc(root_len + 1 + len + 1);
    if (path != NULL) {
        memcpy(path, self->root, root_len);
        path[root_len] = '/';
        memcpy(path + root_len + 1, name, len);
        path[root_len + 1 + len] = '\0';
    }
    return path;
}

/* ---------------------------------------------------------------------------------------------
 * Files and directories.
 */

/* Flushes a directory's entries, so that a rename, unlink or mkdir in it survives a crash. */
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY);
    int err;
    if (fd < 0) {
        return -1;
    }
    if (fsync(fd) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return close(fd);
}

/* Creates the directories of path from byte `from` on ("mkdir -p"), syncing each one's parent
 * so that the new entry is durable. With sync_parents = 0 (open), existing directories are
 * not synced. Returns 0, or -1 with errno set and path cut at the failing directory. */
static int make_dirs(char *path, size_t from, int sync_parents) {
    size_t i, len = strlen(path);
    for (i = from; i <= len; i++) {
        struct stat st;
        int created;
        if (i < len && path[i] != '/') {
            continue;
        }
        if (i == 0) {
            continue; /* the leading '/' of an absolute path */
        }
        path[i] = '\0';
        created = mkdir(path, DIR_MODE) == 0;
        if (!created && (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
            if (errno == EEXIST) {
                errno = ENOTDIR;
            }
            return -1;
        }
        /* Sync the parent even if another thread created this directory: it may not have
         * synced it yet. Syncing a directory that has nothing new is cheap. */
        if (created || sync_parents) {
            char *slash = strrchr(path, '/');
            if (slash != NULL && slash != path) {
                *slash = '\0';
                if (sync_dir(path) != 0) {
                    return -1;
                }
                *slash = '/';
            }
        }
        if (i < len) {
            path[i] = '/';
        }
    }
    return 0;
}

/* Writes all of data to fd. */
static int write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The table's functions.
 */

static int32_t provider_open(const uint8_t *options, size_t len, void **instance,
                             sealback_error_t *error) {
    struct instance *self;
    struct stat st;
    char *root, problem[300];
    int32_t status;
    if (instance == NULL || (options == NULL && len > 0)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "open: the host passed a NULL pointer");
    }
    if (options_parse(options, len, &root, problem, sizeof problem) != 0) {
        return fail(error, SEALBACK_STATUS_INVALID_CONFIG,
                    "invalid options for the " NAME " provider: %s", problem);
    }
    if (root[0] != '/') {
        status = fail(error, SEALBACK_STATUS_INVALID_CONFIG,
                      "invalid options for the " NAME " provider: path \"%s\" is not absolute; "
                      "give the full path of the backup directory", root);
        free(root);
        return status;
    }
    if (make_dirs(root, 1, 0) != 0) {
        status = fail_errno(error, errno, "create directory", root);
        free(root);
        return status;
    }
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        status = fail(error, SEALBACK_STATUS_INVALID_CONFIG,
                      "invalid options for the " NAME " provider: path %s is not a directory",
                      root);
        free(root);
        return status;
    }
    self = malloc(sizeof *self);
    if (self == NULL) {
        free(root);
        return fail(error, SEALBACK_STATUS_TRANSIENT, "open: out of memory");
    }
    self->root = root;
    *instance = self;
    return SEALBACK_STATUS_OK;
}

static void provider_close(void *instance) {
    struct instance *self = instance;
    if (self != NULL) {
        free(self->root);
        free(self);
    }
}

static int32_t provider_put(void *instance, const uint8_t *name, size_t name_len,
                            const uint8_t *data, size_t data_len, sealback_error_t *error) {
    const struct instance *self = instance;
    char *path, *temp, *slash;
    int fd, err;
    int32_t status = SEALBACK_STATUS_OK;
    if (self == NULL || (data == NULL && data_len > 0)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "put: the host passed a NULL pointer");
    }
    if (!valid_name(name, name_len)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "put: invalid object name");
    }
    path = object_path(self, name, name_len);
    temp = path == NULL ? NULL : malloc(strlen(path) + sizeof TEMP_TEMPLATE);
    if (temp == NULL) {
        free(path);
        return fail(error, SEALBACK_STATUS_TRANSIENT, "put: out of memory");
    }
    /* The directories between the root and the object. */
    slash = strrchr(path, '/');
    *slash = '\0';
    if (make_dirs(path, strlen(self->root) + 1, 1) != 0) {
        status = errno == ENOTDIR
                     ? fail(error, SEALBACK_STATUS_PERMANENT,
                            "cannot store the object: %s is a file, not a directory", path)
                     : fail_errno(error, errno, "create directory", path);
        goto done;
    }
    sprintf(temp, "%s/" TEMP_TEMPLATE, path);
    *slash = '/';

    /* Write the temporary file and flush it to disk... */
    fd = mkstemp(temp);
    if (fd < 0) {
        status = fail_errno(error, errno, "create", temp);
        goto done;
    }
    if (write_all(fd, data, data_len) != 0 || fsync(fd) != 0) {
        err = errno;
        close(fd);
        unlink(temp);
        status = fail_errno(error, err, "write", temp);
        goto done;
    }
    if (close(fd) != 0) {
        err = errno;
        unlink(temp);
        status = fail_errno(error, err, "write", temp);
        goto done;
    }
    /* ...then put it in place in one step: a reader sees the old file or the new one... */
    if (rename(temp, path) != 0) {
        err = errno;
        unlink(temp);
        status = fail_errno(error, err, "rename to", path);
        goto done;
    }
    /* ...and make the rename durable before saying OK. */
    *slash = '\0';
    if (sync_dir(path) != 0) {
        status = fail_errno(error, errno, "sync directory", path);
    }
done:
    free(temp);
    free(path);
    return status;
}

static int32_t provider_get(void *instance, const uint8_t *name, size_t name_len,
                            sealback_buf_t *data, sealback_error_t *error) {
    const struct instance *self = instance;
    struct stat st;
    uint8_t *bytes = NULL;
    size_t len = 0, cap;
    char *path;
    int fd, err;
    if (self == NULL || data == NULL) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "get: the host passed a NULL pointer");
    }
    if (!valid_name(name, name_len)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "get: invalid object name");
    }
    if ((path = object_path(self, name, name_len)) == NULL) {
        return fail(error, SEALBACK_STATUS_TRANSIENT, "get: out of memory");
    }
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        err = errno;
        /* Absent, or a path through a file: either way there is no such object. */
        int32_t status = err == ENOENT || err == ENOTDIR
                             ? fail(error, SEALBACK_STATUS_NOT_FOUND, "read %s: no such object",
                                    path)
                             : fail_errno(error, err, "read", path);
        free(path);
        return status;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        /* A directory is not an object either. */
        int32_t status = fail(error, SEALBACK_STATUS_NOT_FOUND, "read %s: no such object", path);
        close(fd);
        free(path);
        return status;
    }
    /* Read to the end; the size from fstat is only the first guess. */
    cap = (size_t)st.st_size + 1;
    for (;;) {
        ssize_t n;
        if (bytes == NULL || len == cap) {
            uint8_t *grown = realloc(bytes, bytes == NULL ? cap : cap * 2);
            if (grown == NULL) {
                free(bytes);
                close(fd);
                free(path);
                return fail(error, SEALBACK_STATUS_TRANSIENT, "get: out of memory");
            }
            cap = bytes == NULL ? cap : cap * 2;
            bytes = grown;
        }
        n = read(fd, bytes + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int32_t status = fail_errno(error, errno, "read", path);
            free(bytes);
            close(fd);
            free(path);
            return status;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    free(path);
    data->ptr = bytes;
    data->len = len;
    data->cap = cap;
    return SEALBACK_STATUS_OK;
}

/* The list output: a growing buffer of "<name>\t<size>\n" lines. */
struct lines {
    uint8_t *ptr;
    size_t len, cap;
};

static int append_line(struct lines *out, const char *name, unsigned long long size) {
    char line[300];
    int n = snprintf(line, sizeof line, "%s\t%llu\n", name, size);
    if (n < 0 || (size_t)n >= sizeof line) {
        return -1;
    }
    if (out->len + (size_t)n > out->cap) {
        size_t cap = out->cap * 2 + (size_t)n + 4096;
        uint8_t *grown = realloc(out->ptr, cap);
        if (grown == NULL) {
            return -1;
        }
        out->ptr = grown;
        out->cap = cap;
    }
    memcpy(out->ptr + out->len, line, (size_t)n);
    out->len += (size_t)n;
    return 0;
}

static int starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Walks dir, whose objects are named relative + <entry>, adding those that start with prefix.
 * Symbolic links are not followed; entries that vanish meanwhile are skipped. */
static int32_t walk(const char *dir, const char *relative, const char *prefix, struct lines *out,
                    sealback_error_t *error) {
    DIR *stream = opendir(dir);
    struct dirent *entry;
    int32_t status = SEALBACK_STATUS_OK;
    if (stream == NULL) {
        return errno == ENOENT || errno == ENOTDIR ? SEALBACK_STATUS_OK
                                                   : fail_errno(error, errno, "list", dir);
    }
    while (status == SEALBACK_STATUS_OK && (errno = 0, entry = readdir(stream)) != NULL) {
        char name[258], *path;
        struct stat st;
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        /* A name longer than 255 bytes is no object, and nothing below it is either. */
        if (snprintf(name, sizeof name, "%s%s", relative, entry->d_name) > 255) {
            continue;
        }
        path = malloc(strlen(dir) + 1 + strlen(entry->d_name) + 1);
        if (path == NULL) {
            status = fail(error, SEALBACK_STATUS_TRANSIENT, "list: out of memory");
            break;
        }
        sprintf(path, "%s/%s", dir, entry->d_name);
        if (lstat(path, &st) != 0) {
            if (errno != ENOENT) {
                status = fail_errno(error, errno, "inspect", path);
            }
        } else if (S_ISDIR(st.st_mode)) {
            strcat(name, "/");
            if (starts_with(name, prefix) || starts_with(prefix, name)) {
                status = walk(path, name, prefix, out, error);
            }
        } else if (S_ISREG(st.st_mode) && starts_with(name, prefix) &&
                   valid_name((const uint8_t *)name, strlen(name))) {
            if (append_line(out, name, (unsigned long long)st.st_size) != 0) {
                status = fail(error, SEALBACK_STATUS_TRANSIENT, "list: out of memory");
            }
        }
        free(path);
    }
    if (status == SEALBACK_STATUS_OK && errno != 0) {
        status = fail_errno(error, errno, "list", dir);
    }
    closedir(stream);
    return status;
}

static int32_t provider_list(void *instance, const uint8_t *prefix, size_t prefix_len,
                             sealback_buf_t *entries, sealback_error_t *error) {
    const struct instance *self = instance;
    struct lines out = {NULL, 0, 0};
    char text[257], *start, *dir, *slash;
    int32_t status;
    if (self == NULL || entries == NULL || (prefix == NULL && prefix_len > 0)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "list: the host passed a NULL pointer");
    }
    if (prefix_len > 256 || !valid_prefix(prefix, prefix_len)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "list: invalid prefix");
    }
    if (prefix_len > 0) {
        memcpy(text, prefix, prefix_len);
    }
    text[prefix_len] = '\0';
    /* Start at the directory the prefix names: "a/b/" for "a/b/c". */
    start = malloc(prefix_len + 1);
    dir = malloc(strlen(self->root) + 1 + prefix_len + 1);
    if (start == NULL || dir == NULL) {
        free(start);
        free(dir);
        return fail(error, SEALBACK_STATUS_TRANSIENT, "list: out of memory");
    }
    strcpy(start, text);
    slash = strrchr(start, '/');
    if (slash != NULL) {
        slash[1] = '\0';
        sprintf(dir, "%s/%s", self->root, start);
        dir[strlen(dir) - 1] = '\0';
    } else {
        start[0] = '\0';
        strcpy(dir, self->root);
    }
    status = walk(dir, start, text, &out, error);
    free(start);
    free(dir);
    if (status != SEALBACK_STATUS_OK) {
        free(out.ptr);
        return status;
    }
    entries->ptr = out.ptr;
    entries->len = out.len;
    entries->cap = out.cap;
    return SEALBACK_STATUS_OK;
}

static int32_t provider_remove(void *instance, const uint8_t *name, size_t name_len,
                               sealback_error_t *error) {
    const struct instance *self = instance;
    struct stat st;
    char *path, *slash;
    int32_t status = SEALBACK_STATUS_OK;
    if (self == NULL) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "remove: the host passed a NULL pointer");
    }
    if (!valid_name(name, name_len)) {
        return fail(error, SEALBACK_STATUS_PERMANENT, "remove: invalid object name");
    }
    if ((path = object_path(self, name, name_len)) == NULL) {
        return fail(error, SEALBACK_STATUS_TRANSIENT, "remove: out of memory");
    }
    if (unlink(path) != 0) {
        int err = errno;
        /* Missing (perhaps removed by an earlier attempt), or a directory, which is no
         * object: either way there is nothing to remove. */
        int missing = err == ENOENT || err == ENOTDIR ||
                      ((err == EISDIR || err == EPERM) && lstat(path, &st) == 0 &&
                       S_ISDIR(st.st_mode));
        if (!missing) {
            status = fail_errno(error, err, "remove", path);
            free(path);
            return status;
        }
    }
    /* Make the removal durable; sync even if the object was already gone, since an earlier
     * attempt may have failed after its unlink, before its sync. */
    slash = strrchr(path, '/');
    *slash = '\0';
    if (sync_dir(path) != 0 && errno != ENOENT && errno != ENOTDIR) {
        status = fail_errno(error, errno, "sync directory", path);
    }
    free(path);
    return status;
}

static void provider_free_buf(sealback_buf_t *buf) {
    if (buf != NULL) {
        free(buf->ptr);
        buf->ptr = NULL;
        buf->len = 0;
        buf->cap = 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The two exported functions: static data, checked by the host before anything else.
 */

static const sealback_plugin_magic_t magic = {
    {'S', 'B', 'P', 'L', 'U', 'G', 'I', 'N'}, SEALBACK_PLUGIN_ABI_VERSION, 0};

static const sealback_provider_v1_t provider = {
    sizeof(sealback_provider_v1_t),
    SEALBACK_PLUGIN_ABI_VERSION,
    NAME,
    "1.0.0",
    provider_open,
    provider_close,
    provider_put,
    provider_get,
    provider_list,
    provider_remove,
    provider_free_buf,
};

SEALBACK_PLUGIN_EXPORT const sealback_plugin_magic_t *sealback_plugin_magic(void) {
    return &magic;
}

SEALBACK_PLUGIN_EXPORT const sealback_provider_v1_t *sealback_plugin_provider(void) {
    return &provider;
}
