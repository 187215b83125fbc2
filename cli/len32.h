/*
 * len32.h - the parser of the len32 input format: each record is a 4-byte
 * little-endian length, then that many bytes. The calling convention is
 * stream.h's.
 */
#ifndef KL_CLI_LEN32_H
#define KL_CLI_LEN32_H

#include "stream.h"

/* The length prefix of every record. */
#define LEN32_PREFIX_BYTES 4

/* Start parsing a stream at offset 0; a record longer than max_size is malformed. */
void len32_init(stream_parser *p, uint32_t max_size);

/*
 * Take the next record from window[0..n), the bytes of the stream from
 * p->offset on. STREAM_RECORD (rec->data, size, used = 4 + size),
 * STREAM_MORE (rec->need: the window must hold this many bytes, at most
 * 4 + max_size), or STREAM_BAD (the length exceeds max_size).
 */
stream_status len32_next(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec);

/*
 * The input ended with window[0..n) not taken: STREAM_END if n is 0, else
 * STREAM_BAD (a truncated length prefix or payload). rec is unused; it is
 * there so both stream parsers have one signature.
 */
stream_status len32_end(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec);

#endif
