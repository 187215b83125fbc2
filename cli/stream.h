/*
 * stream.h - the shape shared by the input stream parsers of `kappalog
 * append` (len32.c, lines.c): incremental, zero-copy record framing.
 *
 * The caller owns the bytes. It holds a window of the input stream that
 * starts at the first byte not yet taken (stream offset p->offset) and asks
 * the parser for the next record in it. A record points into the window, so
 * nothing is copied; the caller slides the window by rec.used and may add
 * bytes at its end at any time. Bytes already returned as records must stay
 * where they are for as long as the caller uses those records.
 *
 * The one thing a reader would get wrong: STREAM_MORE is not an error and
 * consumes nothing; the same call with a longer window (rec.need bytes or
 * more) continues where it left off. Only STREAM_BAD is final.
 */
#ifndef KL_CLI_STREAM_H
#define KL_CLI_STREAM_H

#include <stddef.h>
#include <stdint.h>

typedef enum stream_status {
    STREAM_BAD = -1,   /* malformed input: see why and bad_offset; the parser stays failed */
    STREAM_MORE = 0,   /* the window ends inside the next record; need says how far */
    STREAM_RECORD = 1, /* a record was taken */
    STREAM_END = 2     /* the input ended cleanly between records */
} stream_status;

typedef struct stream_record {
    const uint8_t *data; /* STREAM_RECORD: the record's bytes, inside the window */
    size_t size;
    size_t used; /* STREAM_RECORD: window bytes the record took (framing included) */
    size_t need; /* STREAM_MORE: window bytes needed to go on (> the window's size) */
} stream_record;

/* Room for a description of malformed input. */
#define STREAM_WHY_BYTES 128

typedef struct stream_parser {
    uint64_t offset;            /* stream offset of the first byte not yet taken */
    uint64_t records;           /* records taken */
    uint32_t max_size;          /* largest record accepted */
    size_t scanned;             /* lines: window bytes already searched for '\n' in vain */
    int failed;                 /* a STREAM_BAD was returned */
    uint64_t bad_offset;        /* after STREAM_BAD: stream offset where the bad record starts */
    char why[STREAM_WHY_BYTES]; /* after STREAM_BAD: what is wrong with it */
} stream_parser;

#endif
