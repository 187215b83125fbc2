/*
 * records.h - writing log records to stdout in the formats `read` and
 * `consume` share: lines, len32 and json (one object per line).
 */
#ifndef KL_CLI_RECORDS_H
#define KL_CLI_RECORDS_H

#include "kappalog.h"

/* Write one record to the stdout buffer (util.h): 0, or -1 if the write failed. */
typedef int (*cli_record_fn)(const kl_record *rec);

/* The writer of "lines", "len32" or "json"; NULL for any other name. */
cli_record_fn cli_record_writer(const char *format);

/* The --format text of the usage of commands that print records. */
#define CLI_RECORD_FORMATS_HELP                                                                    \
    "  --format lines  each block, then a newline (default)\n"                                     \
    "  --format len32  each block as a 4-byte little-endian length, then its bytes\n"              \
    "  --format json   one object per line: {\"index\":N,\"timestamp_ms\":T,\"size\":S,\n"         \
    "                  \"data\":\"...\"}, or \"data_base64\" if the block is not UTF-8\n"

#endif
