/*
 * fuzz_tree.c - libFuzzer target for the tree file reader: the input is the
 * `tree` file of a small log (engine/tree.c, engine/verify.c,
 * engine/log_proof.c read it).
 *
 * A log of a few hundred blocks (sizes 0..300, several batches) is made once
 * in a temporary directory (on /dev/shm where there is one), removed at
 * exit. Each input replaces its tree file, then:
 *   - a read-only open must succeed or refuse with KL_ECORRUPT (a header
 *     that does not check out, whose depth the signed roots do not tell);
 *   - kl_log_verify must pass exactly when the input's header and nodes equal
 *     the real file's (extra bytes past the last node are ignored by a
 *     read-only handle); when it fails it names a block inside the log or
 *     none;
 *   - node reads (kl_log_node) and proofs (kl_log_proof) for indexes taken
 *     from the input must return a node or an error, never read out of
 *     bounds (ASan watches);
 *   - a writable open must either refuse or leave a tree file that is
 *     exactly the committed nodes' length.
 * KL_FUZZ_SEEDS=DIR writes seeds: the real file, cut at a node, with one
 * node flipped, with only its header, with its header zeroed.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/log_internal.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BLOCKS 300u

static char dir[4096];
static char tree_path[4200];
static uint8_t *good;
static size_t good_len;

static void read_file(const char *path, uint8_t **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    KL_ASSERT(f != NULL);
    KL_ASSERT(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    KL_ASSERT(len >= 0);
    rewind(f);
    *out = malloc((size_t)len + 1);
    KL_ASSERT(*out != NULL);
    KL_ASSERT(fread(*out, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    KL_ASSERT(f != NULL);
    KL_ASSERT(n == 0 || fwrite(p, 1, n, f) == n);
    KL_ASSERT(fclose(f) == 0);
}

/* Every input opens the log twice and a writable open syncs: a tmpfs makes that cheap. */
static const char *scratch_root(void) {
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static char base[4096];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The scratch log goes when the fuzzer exits (libFuzzer ends its runs with exit()). */
static void remove_log(void) {
    nftw(base, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_log(void) {
    snprintf(base, sizeof base, "%s/kl-fuzz-tree-XXXXXX", scratch_root());
    KL_ASSERT(mkdtemp(base) != NULL);
    atexit(remove_log);
    snprintf(dir, sizeof dir, "%s/log", base);
    snprintf(tree_path, sizeof tree_path, "%s/tree", dir);
    static const unsigned char seed[32] = {7};
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = KL_FSYNC_NEVER;
    cfg.seed = seed;
    KL_ASSERT(kl_log_create(dir, &cfg) == 0);
    kl_log *log = NULL;
    KL_ASSERT(kl_log_open(dir, NULL, &log) == 0);
    static uint8_t bytes[300];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7 + 3);
    kl_block b[16];
    for (uint32_t i = 0; i < BLOCKS;) {
        size_t n = 1 + i % 16;
        for (size_t k = 0; k < n; k++)
            b[k] = (kl_block){bytes, (i + k) % 301 == 0 ? 0 : (i + k) * 37 % 300};
        KL_ASSERT(kl_log_append(log, b, n, NULL) == 0);
        i += (uint32_t)n;
    }
    KL_ASSERT(kl_log_close(log) == 0);
    read_file(tree_path, &good, &good_len);
}

static void check(const uint8_t *data, size_t size) {
    write_file(tree_path, data, size);
    kl_open_options ro;
    kl_open_options_default(&ro);
    ro.flags = KL_OPEN_READONLY;
    kl_log *log = NULL;
    int rc = kl_log_open(dir, &ro, &log);
    if (rc < 0) {
        KL_ASSERT(rc == KL_ECORRUPT);
        KL_ASSERT(size < KL_TREE_HEADER_BYTES || memcmp(data, good, KL_TREE_HEADER_BYTES) != 0);
        return;
    }
    uint64_t len = kl_log_length(log);
    uint64_t bad = 0;
    rc = kl_log_verify(log, NULL, NULL, &bad);
    int same = size >= good_len && memcmp(data, good, good_len) == 0;
    KL_ASSERT((rc == 0) == same);
    KL_ASSERT(rc == 0 || bad == UINT64_MAX || bad < len);
    for (size_t i = 0; i + 8 <= size && i < 64; i += 8) {
        uint64_t index = kl_load64(data + i) % (4 * len + 4);
        kl_node n;
        int nrc = kl_log_node(log, index, &n);
        KL_ASSERT(nrc == 0 || nrc < 0);
        kl_proof_ask ask = {.block = 1,
                            .block_index = index % (len + 1),
                            .block_nodes = data[i] % 12,
                            .upgrade = data[i] & 1,
                            .upgrade_start = 0,
                            .upgrade_length = len,
                            .manifest = 1};
        unsigned char *msg = NULL;
        size_t mlen = 0;
        if (kl_log_proof(log, &ask, 0, &msg, &mlen) == 0)
            KL_ASSERT(msg != NULL && mlen > 0);
        free(msg);
    }
    kl_log_close(log);
    /* a writable open cuts extra nodes, or refuses a file that is too short */
    rc = kl_log_open(dir, NULL, &log);
    if (rc == 0) {
        struct stat st;
        KL_ASSERT(stat(tree_path, &st) == 0 && (size_t)st.st_size == good_len);
        kl_log_close(log);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check(data, size);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setenv("KL_QUIET", "1", 1);
    make_log();
    const char *seeds = getenv("KL_FUZZ_SEEDS");
    if (seeds && *seeds) {
        write_seed(seeds, "real", good, good_len);
        write_seed(seeds, "cut", good, good_len - 5 * KL_TREE_NODE_BYTES);
        write_seed(seeds, "header-only", good, KL_TREE_HEADER_BYTES);
        uint8_t *flip = malloc(good_len);
        KL_ASSERT(flip != NULL);
        memcpy(flip, good, good_len);
        flip[KL_TREE_HEADER_BYTES + 40 * 17 + 3] ^= 0x10;
        write_seed(seeds, "flipped", flip, good_len);
        memcpy(flip, good, good_len);
        memset(flip, 0, KL_TREE_HEADER_BYTES); /* a torn header: told from the roots */
        write_seed(seeds, "header-zeroed", flip, good_len);
        free(flip);
        exit(0);
    }
    return 0;
}
