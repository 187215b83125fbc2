/*
 * json.c - block bytes as JSON text on stdout, for `kappalog read --format
 * json`: a UTF-8 block becomes a JSON string, any other block base64.
 *
 * The one thing a reader would get wrong: the JSON string form must be
 * lossless, so "valid UTF-8" is strict (RFC 3629): overlong encodings,
 * UTF-16 surrogates and code points past U+10FFFF are not UTF-8 and go to
 * base64. A lenient check would let a JSON parser replace them with U+FFFD
 * and hand back different bytes than the log holds.
 */
#include "json.h"

#include <string.h>

#include "util.h"

/* Output is staged in chunks of this size (base64) or written as runs (strings). */
#define JSON_CHUNK_BYTES 4096

char *cli_put_u64(char *out, uint64_t v) {
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    char tmp[CLI_U64_DIGITS];
    size_t n = sizeof tmp;
    while (v >= 100) { /* two digits per division: this runs for every field of every record */
        const char *pair = pairs + 2 * (v % 100);
        v /= 100;
        tmp[--n] = pair[1];
        tmp[--n] = pair[0];
    }
    if (v >= 10) {
        tmp[--n] = pairs[2 * v + 1];
        tmp[--n] = pairs[2 * v];
    } else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(out, tmp + n, sizeof tmp - n);
    return out + (sizeof tmp - n);
}

/* The length of the UTF-8 sequence at p (n bytes left), or 0 if it is not well-formed. */
static size_t utf8_sequence(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong 3-byte forms */
        hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80; /* no overlong 4-byte forms */
        hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

int cli_utf8_valid(const uint8_t *data, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (data[i] < 0x80) { /* the common case: ASCII */
            i++;
            continue;
        }
        size_t len = utf8_sequence(data + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

/* The escape for byte c, or NULL if it goes out as itself. */
static const char *json_escape(uint8_t c, char tmp[8]) {
    static const char hex[] = "0123456789abcdef";
    if (c == '"')
        return "\\\"";
    if (c == '\\')
        return "\\\\";
    if (c >= 0x20)
        return NULL;
    tmp[0] = '\\';
    tmp[1] = 'u';
    tmp[2] = '0';
    tmp[3] = '0';
    tmp[4] = hex[c >> 4];
    tmp[5] = hex[c & 15];
    tmp[6] = '\0';
    return tmp;
}

int cli_json_escape(const uint8_t *data, size_t n) {
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < n; i++) {
        char tmp[8];
        const char *esc = json_escape(data[i], tmp);
        if (!esc)
            continue;
        if (cli_write(data + run, i - run) < 0 || cli_write(esc, strlen(esc)) < 0)
            return -1;
        run = i + 1;
    }
    return cli_write(data + run, n - run);
}

int cli_json_base64(const uint8_t *data, size_t n) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char out[JSON_CHUNK_BYTES];
    size_t len = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n)
            v |= data[i + 2];
        out[len++] = alphabet[(v >> 18) & 63];
        out[len++] = alphabet[(v >> 12) & 63];
        out[len++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[len++] = i + 2 < n ? alphabet[v & 63] : '=';
        if (len + 4 > sizeof out) {
            if (cli_write(out, len) < 0)
                return -1;
            len = 0;
        }
    }
    return cli_write(out, len);
}
