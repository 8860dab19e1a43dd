/*
 * The example provider's options, {"path": "<directory>"}, parsed strictly: a JSON object with
 * exactly that key, whose value is a string. Anything else is refused with a reason, because a
 * misspelt option must be an error, not a setting silently ignored.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

struct cursor {
    const uint8_t *at, *end;
};

static void skip_space(struct cursor *c) {
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r')) {
        c->at++;
    }
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses a JSON string at c into a malloc'd, NUL-terminated *out. Returns NULL on success, or
 * what is wrong. Strings with NUL characters or \u escapes outside the BMP are refused. */
static const char *parse_string(struct cursor *c, char **out) {
    char *text, *w;
    if (c->at >= c->end || *c->at != '"') {
        return "expected a string";
    }
    c->at++;
    /* Escapes only shrink: the text fits in what is left of the input. */
    text = w = malloc((size_t)(c->end - c->at) + 1);
    if (text == NULL) {
        return "out of memory";
    }
    while (c->at < c->end && *c->at != '"') {
        uint8_t ch = *c->at++;
        if (ch < 0x20) {
            free(text);
            return "a control character in a string";
        }
        if (ch != '\\') {
            *w++ = (char)ch;
            continue;
        }
        if (c->at >= c->end) {
            break;
        }
        ch = *c->at++;
        switch (ch) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            long code = 0;
            int i;
            for (i = 0; i < 4; i++) {
                int digit = c->at < c->end ? hex_digit(*c->at++) : -1;
                if (digit < 0) {
                    free(text);
                    return "a \\u escape without four hex digits";
                }
                code = code * 16 + digit;
            }
            if (code == 0 || (code >= 0xd800 && code <= 0xdfff)) {
                free(text);
                return "a \\u0000 or surrogate escape (write the character itself)";
            }
            if (code < 0x80) {
                *w++ = (char)code;
            } else if (code < 0x800) {
                *w++ = (char)(0xc0 | (code >> 6));
                *w++ = (char)(0x80 | (code & 0x3f));
            } else {
                *w++ = (char)(0xe0 | (code >> 12));
                *w++ = (char)(0x80 | ((code >> 6) & 0x3f));
                *w++ = (char)(0x80 | (code & 0x3f));
            }
            break;
        }
        default:
            free(text);
            return "an unknown escape in a string";
        }
    }
    if (c->at >= c->end) {
        free(text);
        return "an unterminated string";
    }
    c->at++; /* the closing quote */
    *w = '\0';
    *out = text;
    return NULL;
}

int options_parse(const uint8_t *json, size_t len, char **path, char *problem, size_t size) {
    struct cursor c;
    const char *wrong = NULL;
    char *key = NULL;
    c.at = json;
    c.end = json + len;
    *path = NULL;
    skip_space(&c);
    if (c.at >= c.end || *c.at != '{') {
        wrong = "the options must be a JSON object";
        goto invalid;
    }
    c.at++;
    skip_space(&c);
    while (c.at < c.end && *c.at != '}') {
        if ((wrong = parse_string(&c, &key)) != NULL) {
            goto invalid;
        }
        skip_space(&c);
        if (c.at >= c.end || *c.at != ':') {
            wrong = "expected ':' after a key";
            goto invalid;
        }
        c.at++;
        skip_space(&c);
        if (strcmp(key, "path") != 0) {
            snprintf(problem, size, "unknown option \"%s\"; the only option is \"path\"", key);
            goto refused;
        }
        if (*path != NULL) {
            wrong = "\"path\" is given twice";
            goto invalid;
        }
        if (c.at >= c.end || *c.at != '"') {
            wrong = "\"path\" must be a string";
            goto invalid;
        }
        if ((wrong = parse_string(&c, path)) != NULL) {
            goto invalid;
        }
        free(key);
        key = NULL;
        skip_space(&c);
        if (c.at < c.end && *c.at == ',') {
            c.at++;
            skip_space(&c);
            if (c.at < c.end && *c.at == '}') {
                wrong = "a ',' before '}'";
                goto invalid;
            }
        } else if (c.at >= c.end || *c.at != '}') {
            wrong = "expected ',' or '}' after a value";
            goto invalid;
        }
    }
    if (c.at >= c.end) {
        wrong = "the object is not closed";
        goto invalid;
    }
    c.at++;
    skip_space(&c);
    if (c.at != c.end) {
        wrong = "text after the object";
        goto invalid;
    }
    if (*path == NULL) {
        wrong = "\"path\" is missing: give the directory that holds the objects";
        goto invalid;
    }
    return 0;

invalid:
    snprintf(problem, size, "%s", wrong);
refused:
    free(key);
    free(*path);
    *path = NULL;
    return -1;
}
