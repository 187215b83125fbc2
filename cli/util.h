/*
 * util.h - helpers every subcommand uses: the one-line error report and the
 * exit status it implies, strict number and size parsing, buffered stdout
 * with EPIPE handling, time formatting.
 */
#ifndef KL_CLI_UTIL_H
#define KL_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "kappalog.h"

/* Size of the stdout buffer (setvbuf) of the commands that stream data. */
#define CLI_STDOUT_BUFFER_BYTES (1u << 20)

/* Room for an RFC 3339 UTC time with ms ("2026-11-25T12:00:00.123Z"), with margin for any year. */
#define CLI_RFC3339_BYTES 64

/*
 * Print "kappalog: WHAT: WHY" as exactly one line on stderr: a control
 * character in WHY (a newline in a path, say) is printed as '?'.
 */
void cli_error(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Progress on a terminal: show text as the one line of stderr that updates
 * in place. An error report (or cli_status_clear) clears it first, so the
 * error is still one line of its own.
 */
void cli_status_line(const char *text);
void cli_status_clear(void);

/* cli_error, with a hint to --help, and return CLI_EXIT_USAGE. */
int cli_usage_error(const cli_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The exit status for a failed kappalog call: 2 for KL_EINVAL, 3 for KL_ECONFLICT, else 1. */
int cli_exit_status(int rc);

/*
 * Report a failed kappalog call (rc < 0): the reason is the context of the
 * handle (log != NULL) or of this thread (kl_last_error), or kl_strerror(rc)
 * if there is none. Returns the exit status.
 */
int cli_kl_error(const char *what, int rc, kl_log *log);

/* Open the log in dir read-only (so it works beside a writer). 0, or the exit status reported. */
int cli_open_readonly(const char *what, const char *dir, kl_log **out);

/* A decimal number without sign, spaces or trailing junk that fits in 64 bits. 0 or -1. */
int cli_parse_u64(const char *text, uint64_t *out);

/* As cli_parse_u64, with an optional binary suffix K, M, G or T (65536, 64K, 256M, 1G). */
int cli_parse_size(const char *text, uint64_t *out);

/*
 * Parse the value of a flag as a number in [lo, hi] (sizes with suffixes if
 * `size`). Returns 0, or CLI_EXIT_USAGE after reporting what is wrong.
 */
int cli_flag_number(const cli_command *cmd, const char *flag, const char *text, int size,
                    uint64_t lo, uint64_t hi, uint64_t *out);

/* Give stdout a CLI_STDOUT_BUFFER_BYTES buffer. Call before the first write. */
void cli_stdout_init(void);

/* Write n bytes to stdout. 0, or -1 with errno set (EPIPE: the reader is gone). */
int cli_write(const void *data, size_t n);

/* Flush stdout. 0, or -1 with errno set. */
int cli_flush(void);

/*
 * The exit status after a failed write to stdout (errno as the write left
 * it): CLI_EXIT_PIPE without a word if the reader went away, else
 * CLI_EXIT_RUNTIME after reporting the error.
 */
int cli_write_failed(const char *what);

/* Format Unix milliseconds as RFC 3339 UTC with milliseconds into out. */
void cli_rfc3339(uint64_t unix_ms, char out[CLI_RFC3339_BYTES]);

/* A monotonic clock in seconds, for rates. */
double cli_now_s(void);

/* Room for the reason cli_parse_time gives. */
#define CLI_TIME_WHY_BYTES 160

/*
 * A point in time as Unix milliseconds: all digits (Unix ms), or RFC 3339
 * with a zone (2026-12-03T10:00:00Z, 2026-12-03T10:00:00.123+01:00; 't',
 * 'z' and a space for 'T' accepted). Digits of a second past the
 * millisecond round up (the first millisecond at or after the time); a time
 * before 1970 is 0. 0, or -1 with the reason in why.
 */
int cli_parse_time(const char *text, uint64_t *unix_ms, char *why, size_t why_cap);

#endif
