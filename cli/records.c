/*
 * records.c - the record writers of `read` and `consume` (records.h).
 *
 * Every writer goes through the one stdout buffer of util.c, so a record is
 * only "written out" once cli_flush() has returned: `consume` commits its
 * cursor after that, never before.
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "json.h"
#include "len32.h"
#include "records.h"
#include "util.h"

/* Room for the JSON fields before the data of a record. */
#define JSON_PREFIX_BYTES 128

static int write_lines(const kl_record *rec) {
    if (cli_write(rec->data, rec->size) < 0)
        return -1;
    return cli_write("\n", 1);
}

static int write_len32(const kl_record *rec) {
    uint8_t prefix[LEN32_PREFIX_BYTES];
    uint32_t n = (uint32_t)rec->size; /* a block is at most KL_MAX_BLOCK_BYTES */
    assert(rec->size <= KL_MAX_BLOCK_BYTES);
    prefix[0] = (uint8_t)n;
    prefix[1] = (uint8_t)(n >> 8);
    prefix[2] = (uint8_t)(n >> 16);
    prefix[3] = (uint8_t)(n >> 24);
    if (cli_write(prefix, sizeof prefix) < 0)
        return -1;
    return cli_write(rec->data, rec->size);
}

/* Append the literal string lit (a char array) at p. */
#define PUT_LITERAL(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* {"index":N,"timestamp_ms":T,"size":S,"data":"..."} or "data_base64" if not UTF-8. */
static int write_json(const kl_record *rec) {
    char head[JSON_PREFIX_BYTES];
    const uint8_t *data = rec->data;
    int utf8 = cli_utf8_valid(data, rec->size);
    char *p = PUT_LITERAL(head, "{\"index\":");
    p = cli_put_u64(p, rec->index);
    p = PUT_LITERAL(p, ",\"timestamp_ms\":");
    p = cli_put_u64(p, rec->timestamp_ms);
    p = PUT_LITERAL(p, ",\"size\":");
    p = cli_put_u64(p, rec->size);
    p = utf8 ? PUT_LITERAL(p, ",\"data\":\"") : PUT_LITERAL(p, ",\"data_base64\":\"");
    assert((size_t)(p - head) <= sizeof head);
    if (cli_write(head, (size_t)(p - head)) < 0)
        return -1;
    if ((utf8 ? cli_json_escape(data, rec->size) : cli_json_base64(data, rec->size)) < 0)
        return -1;
    return cli_write("\"}\n", 3);
}

cli_record_fn cli_record_writer(const char *format) {
    if (strcmp(format, "lines") == 0)
        return write_lines;
    if (strcmp(format, "len32") == 0)
        return write_len32;
    if (strcmp(format, "json") == 0)
        return write_json;
    return NULL;
}
