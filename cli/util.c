/*
 * util.c - error reports, strict number parsing, stdout and time helpers of
 * the command-line tool.
 *
 * The rule this file keeps: an error is exactly one line on stderr,
 * "kappalog: WHAT: WHY". Scripts and the tests count on it, so WHY is
 * printed with control characters replaced, and nothing else in the tool
 * writes to stderr on a failure path.
 *
 * The one thing a reader would get wrong: "strict" numbers mean strtoull is
 * not used. It accepts leading spaces, a sign ("-1" wraps to 2^64-1) and
 * trailing junk when endptr is not checked; we take digits only, check
 * overflow before it happens and reject the empty string.
 */
#define _POSIX_C_SOURCE 200809L

#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The longest message we print; longer ones are cut, still on one line. */
#define CLI_ERROR_BYTES 1024

/* Is a cli_status_line showing on stderr (a line without its newline)? */
static int status_shown;

/* "\r" back to the start of the line, then ANSI "erase to the end of the line". */
#define CLEAR_LINE "\r\033[K"

void cli_status_line(const char *text) {
    fprintf(stderr, CLEAR_LINE "%s", text);
    status_shown = 1;
}

void cli_status_clear(void) {
    if (status_shown)
        fputs(CLEAR_LINE, stderr);
    status_shown = 0;
}

/* Print one line, replacing control characters so it stays one line. */
static void print_line(const char *what, const char *why) {
    char clean[CLI_ERROR_BYTES];
    size_t n = 0;
    for (; why[n] && n + 1 < sizeof clean; n++)
        clean[n] = (unsigned char)why[n] < 0x20 || why[n] == 0x7f ? '?' : why[n];
    clean[n] = '\0';
    fflush(stdout); /* what was printed before the failure comes first */
    cli_status_clear();
    fprintf(stderr, "kappalog: %s: %s\n", what, clean);
}

void cli_error(const char *what, const char *fmt, ...) {
    char why[CLI_ERROR_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    print_line(what, why);
}

int cli_usage_error(const cli_command *cmd, const char *fmt, ...) {
    char why[CLI_ERROR_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof why)
        snprintf(why + n, sizeof why - (size_t)n, " (see 'kappalog %s --help')", cmd->name);
    print_line(cmd->name, why);
    return CLI_EXIT_USAGE;
}

int cli_exit_status(int rc) {
    if (rc == KL_EINVAL)
        return CLI_EXIT_USAGE;
    if (rc == KL_ECONFLICT)
        return CLI_EXIT_CONFLICT;
    return CLI_EXIT_RUNTIME;
}

int cli_kl_error(const char *what, int rc, kl_log *log) {
    const char *why = log ? kl_log_last_error(log) : kl_last_error();
    print_line(what, why && *why ? why : kl_strerror(rc));
    return cli_exit_status(rc);
}

int cli_open_readonly(const char *what, const char *dir, kl_log **out) {
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.flags |= KL_OPEN_READONLY;
    int rc = kl_log_open(dir, &opts, out);
    return rc < 0 ? cli_kl_error(what, rc, NULL) : 0;
}

/* Digits [text, end) into *out; -1 if there are none, or one that is not a digit, or overflow. */
static int parse_digits(const char *text, const char *end, uint64_t *out) {
    if (text == end)
        return -1;
    uint64_t v = 0;
    for (const char *p = text; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int cli_parse_u64(const char *text, uint64_t *out) {
    if (!text)
        return -1;
    return parse_digits(text, text + strlen(text), out);
}

int cli_parse_size(const char *text, uint64_t *out) {
    if (!text || !*text)
        return -1;
    size_t n = strlen(text);
    unsigned shift = 0;
    switch (text[n - 1]) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        break;
    }
    uint64_t v;
    if (parse_digits(text, text + n - (shift ? 1 : 0), &v) < 0 || v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

int cli_flag_number(const cli_command *cmd, const char *flag, const char *text, int size,
                    uint64_t lo, uint64_t hi, uint64_t *out) {
    uint64_t v;
    int rc = size ? cli_parse_size(text, &v) : cli_parse_u64(text, &v);
    if (rc < 0)
        return cli_usage_error(cmd, "%s '%s' is not a %s", flag, text,
                               size ? "size (N, or N with K, M, G or T)" : "non-negative number");
    if (v < lo || v > hi)
        return cli_usage_error(cmd, "%s %s is outside %llu..%llu", flag, text,
                               (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

void cli_stdout_init(void) {
    /* Our own buffer: given NULL, glibc ignores the size and uses st_blksize (4 KiB on a
       pipe), which would cost a write(2) per 4 KiB. Static: it must outlive every flush. */
    static char buf[CLI_STDOUT_BUFFER_BYTES];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
}

int cli_write(const void *data, size_t n) {
    if (n == 0)
        return 0;
    errno = 0;
    if (fwrite(data, 1, n, stdout) != n) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}

int cli_flush(void) {
    errno = 0;
    if (fflush(stdout) != 0) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}

int cli_write_failed(const char *what) {
    int err = errno;
    if (err == EPIPE)
        return CLI_EXIT_PIPE;
    cli_error(what, "writing to stdout: %s", strerror(err));
    return CLI_EXIT_RUNTIME;
}

void cli_rfc3339(uint64_t unix_ms, char out[CLI_RFC3339_BYTES]) {
    time_t secs = (time_t)(unix_ms / 1000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, CLI_RFC3339_BYTES, "(bad time %llu)", (unsigned long long)unix_ms);
        return;
    }
    snprintf(out, CLI_RFC3339_BYTES, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(unix_ms % 1000u));
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(unsigned y, unsigned m) {
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* n digits at p as a number, or -1 if one is not a digit. */
static int fixed_digits(const char *p, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* ".123456" at *p: the milliseconds, rounded up past them; *p moves past the digits. */
static int parse_fraction(const char **p, int *ms) {
    const char *q = *p + 1;
    int n = 0, rest = 0;
    *ms = 0;
    for (; *q >= '0' && *q <= '9'; q++, n++) {
        if (n < 3)
            *ms = *ms * 10 + (*q - '0');
        else
            rest |= *q != '0';
    }
    if (n == 0)
        return -1;
    for (int k = n; k < 3; k++)
        *ms *= 10;
    *ms += rest;
    *p = q;
    return 0;
}

/* "Z" or "+HH:MM" / "-HH:MM" at p, the rest of the text: the offset east of UTC in minutes. */
static int parse_zone(const char *p, int *east_min, char *why, size_t cap) {
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        *east_min = 0;
        return 0;
    }
    /* each read stops at the first character that is wrong, so never past the end */
    int hh = *p == '+' || *p == '-' ? fixed_digits(p + 1, 2) : -1;
    int mm = hh >= 0 && p[3] == ':' ? fixed_digits(p + 4, 2) : -1;
    if (mm < 0 || p[6] != '\0') {
        snprintf(why, cap, "after the seconds, expected a zone: Z, +HH:MM or -HH:MM");
        return -1;
    }
    if (hh > 23 || mm > 59) {
        snprintf(why, cap, "the zone offset %.6s is out of range", p);
        return -1;
    }
    *east_min = (*p == '-' ? -1 : 1) * (hh * 60 + mm);
    return 0;
}

#define RFC3339_HINT                                                                               \
    "expected RFC 3339 (2026-12-03T10:00:00Z, 2026-12-03T10:00:00.123+01:00) or Unix "             \
    "milliseconds (digits only)"

/* The field of f (year, month, day, hour, minute, second) out of range, or NULL. */
static const char *civil_range_error(const int f[6]) {
    if (f[1] < 1 || f[1] > 12)
        return "month";
    if (f[2] < 1 || (unsigned)f[2] > days_in_month((unsigned)f[0], (unsigned)f[1]))
        return "day";
    if (f[3] > 23)
        return "hour";
    if (f[4] > 59)
        return "minute";
    return f[5] > 60 ? "second" : NULL; /* 60: a leap second */
}

/* "YYYY-MM-DDTHH:MM:SS" at t (at least 19 characters): the fields, checked. */
static int parse_civil(const char *t, int f[6], char *why, size_t cap) {
    static const int at[6] = {0, 5, 8, 11, 14, 17}, width[6] = {4, 2, 2, 2, 2, 2};
    static const char sep[5] = {'-', '-', 'T', ':', ':'};
    for (int i = 0; i < 6; i++) {
        f[i] = fixed_digits(t + at[i], width[i]);
        char c = t[at[i] + width[i]];
        int sep_ok = i == 5 || c == sep[i] || (i == 2 && (c == 't' || c == ' '));
        if (f[i] < 0 || !sep_ok) {
            snprintf(why, cap, "%s", RFC3339_HINT);
            return -1;
        }
    }
    const char *bad = civil_range_error(f);
    if (bad) {
        snprintf(why, cap, "the %s is out of range", bad);
        return -1;
    }
    return 0;
}

int cli_parse_time(const char *text, uint64_t *unix_ms, char *why, size_t why_cap) {
    size_t n = text ? strlen(text) : 0;
    if (n == 0) {
        snprintf(why, why_cap, "it is empty");
        return -1;
    }
    if (strspn(text, "0123456789") == n) {
        if (cli_parse_u64(text, unix_ms) == 0)
            return 0;
        snprintf(why, why_cap, "Unix milliseconds past 2^64");
        return -1;
    }
    int f[6], ms = 0, east = 0;
    if (n < 19) {
        snprintf(why, why_cap, "%s", RFC3339_HINT);
        return -1;
    }
    if (parse_civil(text, f, why, why_cap) < 0)
        return -1;
    const char *p = text + 19;
    if (*p == '.' && parse_fraction(&p, &ms) < 0) {
        snprintf(why, why_cap, "no digits after the decimal point");
        return -1;
    }
    if (parse_zone(p, &east, why, why_cap) < 0)
        return -1;
    int64_t days = days_from_civil(f[0], (unsigned)f[1], (unsigned)f[2]);
    int64_t secs = days * 86400 + f[3] * 3600 + f[4] * 60 + f[5] - (int64_t)east * 60;
    int64_t total = secs * 1000 + ms;
    *unix_ms = total < 0 ? 0 : (uint64_t)total;
    return 0;
}
