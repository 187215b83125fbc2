/*
 * segment.c - segment file names, file headers and directory listing.
 *
 * A segment's name is its first block index, and its file header repeats
 * it: a file renamed or copied to the wrong name is refused, not read as
 * someone else's blocks.
 */
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util.h"

void kl_seg_path(char *out, size_t cap, const char *segdir, uint64_t first, const char *ext) {
    int n = snprintf(out, cap, "%s/%020llu.%s", segdir, (unsigned long long)first, ext);
    KL_ASSERT(n > 0 && (size_t)n < cap);
}

const char *kl_seg_blocks(char *out, size_t cap, uint64_t first, uint64_t end) {
    if (end > first)
        snprintf(out, cap, "blocks %llu..%llu", (unsigned long long)first,
                 (unsigned long long)end - 1);
    else
        snprintf(out, cap, "no blocks yet");
    return out;
}

void kl_seg_header_encode(uint8_t *p, uint64_t first_index, uint64_t created_ms) {
    memset(p, 0, KL_SEG_HEADER_BYTES);
    memcpy(p, KL_SEG_MAGIC, 8);
    kl_store32(p + 8, KL_SEG_VERSION);
    kl_store32(p + 12, KL_SEG_HEADER_BYTES);
    kl_store64(p + 16, first_index);
    kl_store64(p + 24, created_ms);
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

void kl_seg_header_set_fork(uint8_t *p, uint64_t fork) {
    kl_store64(p + 32, fork);
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

uint64_t kl_seg_header_fork(const uint8_t *p) {
    return kl_load64(p + 32);
}

int kl_seg_header_decode(const uint8_t *p, size_t avail, uint64_t expect_first) {
    if (avail < KL_SEG_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "segment file header truncated (%zu bytes)", avail);
    if (memcmp(p, KL_SEG_MAGIC, 8) != 0)
        return kl_errf(KL_ECORRUPT, "not a segment file (bad magic)");
    if (kl_load32(p + 8) != KL_SEG_VERSION)
        return kl_errf(KL_ECORRUPT, "unknown segment version %u", kl_load32(p + 8));
    if (kl_load64(p + 56) != XXH3_64bits(p, 56))
        return kl_errf(KL_ECORRUPT, "segment file header checksum mismatch");
    if (kl_load32(p + 12) != KL_SEG_HEADER_BYTES || kl_load64(p + 16) != expect_first)
        return kl_errf(KL_ECORRUPT, "segment file header names block %llu, expected %llu",
                       (unsigned long long)kl_load64(p + 16), (unsigned long long)expect_first);
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Parse "<20 digits>.log"; 0 if name is one. */
static int parse_name(const char *name, uint64_t *first) {
    if (strlen(name) != KL_SEG_NAME_DIGITS + 4 || strcmp(name + KL_SEG_NAME_DIGITS, ".log") != 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < KL_SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *first = v;
    return 0;
}

int kl_seg_list(const char *segdir, uint64_t **out, size_t *n) {
    DIR *d = opendir(segdir);
    if (!d)
        return kl_errf(kl_err_from_errno(errno), "%s: %s", segdir, strerror(errno));
    size_t cap = 16, cnt = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    if (!v) {
        closedir(d);
        return kl_errf(KL_ENOMEM, "listing %s", segdir);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t first;
        if (parse_name(de->d_name, &first) < 0)
            continue;
        if (cnt == cap) {
            uint64_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return kl_errf(KL_ENOMEM, "listing %s", segdir);
            }
            v = nv;
            cap *= 2;
        }
        v[cnt++] = first;
    }
    closedir(d);
    qsort(v, cnt, sizeof *v, cmp_u64);
    *out = v;
    *n = cnt;
    return 0;
}
