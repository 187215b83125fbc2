/*
 * json.h - writing block bytes into JSON on stdout: UTF-8 validation,
 * string escaping and base64.
 */
#ifndef KL_CLI_JSON_H
#define KL_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>

/* The most digits of a uint64_t in decimal. */
#define CLI_U64_DIGITS 20

/* Append v in decimal at out (room for CLI_U64_DIGITS); returns the end. snprintf is slower. */
char *cli_put_u64(char *out, uint64_t v);

/* Is data well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF)? */
int cli_utf8_valid(const uint8_t *data, size_t n);

/*
 * Write the inside of a JSON string holding data (the caller writes the
 * quotes): '"' and '\\' escaped, control characters as \u00XX, everything
 * else as is (data must be valid UTF-8). 0, or -1 with errno set by the
 * failed write.
 */
int cli_json_escape(const uint8_t *data, size_t n);

/* Write data in base64 (RFC 4648, with padding), without quotes. 0 or -1 as above. */
int cli_json_base64(const uint8_t *data, size_t n);

#endif
