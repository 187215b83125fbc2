/*
 * lines.h - the parser of the lines input format: each line without its
 * '\n' is one record; an empty line is an empty record; a last line
 * without '\n' is a record too. The calling convention is stream.h's.
 */
#ifndef KL_CLI_LINES_H
#define KL_CLI_LINES_H

#include "stream.h"

/* Start parsing a stream at offset 0; a line longer than max_size bytes is malformed. */
void lines_init(stream_parser *p, uint32_t max_size);

/* STREAM_RECORD (used = size + 1), STREAM_MORE, or STREAM_BAD (a line is too long). */
stream_status lines_next(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec);

/* The input ended with window[0..n) not taken: STREAM_END if n is 0, else its last record. */
stream_status lines_end(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec);

#endif
