/*
 * testutil.c - shared helpers of the tests (see testutil.h).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

char *tu_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/kltest-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
        abort();
    if (!mkdtemp(p))
        abort();
    return p;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rmrf(const char *path) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t tu_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t tu_record(uint64_t seed, uint64_t index, size_t max_size, uint8_t *buf) {
    uint64_t st = seed * 0x100000001b3ull ^ index;
    size_t n = max_size ? (size_t)(tu_rand(&st) % (max_size + 1)) : 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = tu_rand(&st);
        memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
    }
    return n;
}

void tu_expect_records(kl_log *log, uint64_t seed, size_t max_size, uint64_t n) {
    assert_int_equal(kl_log_length(log), n);
    uint8_t *want = malloc(max_size + 8), *got = malloc(max_size + 8);
    assert_non_null(want);
    assert_non_null(got);
    for (uint64_t i = 0; i < n; i++) {
        size_t wn = tu_record(seed, i, max_size, want), gn = 0;
        int rc = kl_log_get(log, i, got, max_size + 8, &gn);
        if (rc != 0)
            fail_msg("get(%llu) = %d: %s", (unsigned long long)i, rc, kl_log_last_error(log));
        assert_int_equal(gn, wn);
        assert_memory_equal(got, want, wn);
    }
    free(want);
    free(got);
}

kl_io *tu_io(void) {
    const char *env = getenv("KL_IO");
    kl_io *io = NULL;
    int rc;
    if (env && strcmp(env, "posix") == 0) {
        rc = kl_io_posix_new(&io);
    } else {
        rc = kl_io_uring_new(&io);
        if (rc < 0) {
            fprintf(stderr, "skipped: io_uring is refused here (%s)\n", kl_last_error());
            exit(77);
        }
    }
    assert_int_equal(rc, 0);
    return io;
}

kl_io *tu_fault_io(const kl_fault_plan *plan) {
    kl_io *io = NULL;
    assert_int_equal(kl_io_fault_new(plan, &io), 0);
    return io;
}

void tu_create(const char *dir, const kl_config *cfg) {
    kl_io *io = tu_io();
    int rc = kl_log_create_io(dir, cfg, io);
    if (rc != 0)
        fail_msg("create %s: %s", dir, kl_last_error());
    kl_io_destroy(io);
}

kl_log *tu_open(const char *dir) {
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
    if (rc != 0)
        fail_msg("open %s: %d %s", dir, rc, kl_last_error());
    return log;
}

void tu_append_and_die(const char *dir, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                       size_t batch) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kl_log *log = NULL;
        int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
        if (rc == 0)
            rc = tu_append_range(log, seed, max_size, from, to, batch);
        _exit(rc == 0 ? 0 : 1); /* no close: nothing it would make durable is */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

kl_log *tu_open_ro(const char *dir) {
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, &o, tu_io(), &log);
    if (rc != 0)
        fail_msg("read-only open of %s: %d %s", dir, rc, kl_last_error());
    return log;
}

int tu_append_range(kl_log *log, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                    size_t batch) {
    uint8_t *buf = malloc((max_size + 8) * batch);
    kl_block *blocks = malloc(sizeof *blocks * batch);
    assert_non_null(buf);
    assert_non_null(blocks);
    int rc = 0;
    for (uint64_t i = from; i < to && rc == 0;) {
        size_t n = 0;
        for (; n < batch && i + n < to; n++) {
            uint8_t *p = buf + n * (max_size + 8);
            blocks[n].data = p;
            blocks[n].size = tu_record(seed, i + n, max_size, p);
        }
        uint64_t first = 0;
        rc = kl_log_append(log, blocks, n, &first);
        if (rc == 0)
            assert_int_equal(first, i);
        i += n;
    }
    free(buf);
    free(blocks);
    return rc;
}

void tu_flip(const char *path, uint64_t offset, uint8_t mask) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, (off_t)offset), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

void tu_truncate(const char *path, uint64_t size) {
    assert_int_equal(truncate(path, (off_t)size), 0);
}

uint64_t tu_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return (uint64_t)st.st_size;
}

void tu_config_small_signed(kl_config *cfg, uint8_t seed[KL_SEED_BYTES], uint8_t byte) {
    tu_seed(seed, byte);
    kl_config_default(cfg);
    cfg->segment_bytes = KL_MIN_SEGMENT_BYTES;
    cfg->seed = seed;
}

void tu_cases_init(tu_cases *c, const char *tag) {
    c->root = tu_tmpdir(tag);
    assert_true(asprintf(&c->pristine, "%s/pristine", c->root) > 0);
    assert_true(asprintf(&c->dir, "%s/case", c->root) > 0);
}

void tu_cases_free(tu_cases *c) {
    tu_rmrf(c->root);
    free(c->root);
    free(c->pristine);
    free(c->dir);
}

int tu_case_setup(void **state) {
    const tu_cases *c = *state;
    tu_copy_dir(c->pristine, c->dir);
    return 0;
}

int tu_case_teardown(void **state) {
    const tu_cases *c = *state;
    tu_rmrf(c->dir);
    return 0;
}

uint8_t *tu_read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    size_t size = (size_t)tu_file_size(path);
    uint8_t *p = malloc(size ? size : 1);
    assert_non_null(p);
    assert_int_equal(pread(fd, p, size, 0), (ssize_t)size);
    close(fd);
    *len = size;
    return p;
}

void tu_write_at(const char *path, uint64_t off, const void *p, size_t n) {
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

void tu_seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext) {
    snprintf(out, cap, "%s/segments/%020llu.%s", dir, (unsigned long long)first, ext);
}

void tu_read_slots(const char *dir, uint8_t hdr[KL_HDR_FILE_BYTES], kl_slot s[2]) {
    char path[4200];
    snprintf(path, sizeof path, "%s/header", dir);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, hdr, KL_HDR_FILE_BYTES, 0), (ssize_t)KL_HDR_FILE_BYTES);
    close(fd);
    for (int i = 0; i < 2; i++)
        assert_int_equal(kl_slot_decode(hdr + i * KL_HDR_SLOT_BYTES, &s[i]), 0);
}

char *tu_new_log(const char *tag, kl_fsync_mode mode) {
    char *root = tu_tmpdir(tag), *dir = NULL;
    assert_true(asprintf(&dir, "%s/log", root) > 0);
    free(root);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = mode;
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    tu_create(dir, &cfg);
    return dir;
}

void tu_rm_log(char *log_path) {
    char *parent = strndup(log_path, (size_t)(strrchr(log_path, '/') - log_path));
    assert_non_null(parent);
    tu_rmrf(parent);
    free(parent);
    free(log_path);
}

void tu_grow_and_check(const char *dir, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                       size_t batch) {
    kl_log *log = tu_open(dir);
    tu_expect_records(log, seed, max_size, from);
    assert_int_equal(tu_append_range(log, seed, max_size, from, to, batch), 0);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(dir);
    tu_expect_records(log, seed, max_size, to);
    assert_int_equal(kl_log_close(log), 0);
}

/* ---- the signed tree ---- */

void tu_tree_init(tu_tree *t) {
    memset(t, 0, sizeof *t);
}

void tu_tree_add(tu_tree *t, const void *data, size_t len) {
    assert_true(t->n < KL_MAX_ROOTS);
    kl_hc_leaf(t->length++, data, len, &t->roots[t->n++]);
    /* two full roots of the same depth side by side become their parent */
    while (t->n >= 2 && kl_ft_sibling(t->roots[t->n - 1].index) == t->roots[t->n - 2].index) {
        kl_node parent;
        kl_hc_parent(&t->roots[t->n - 2], &t->roots[t->n - 1], &parent);
        t->roots[t->n - 2] = parent;
        t->n--;
    }
}

void tu_tree_grow(tu_tree *t, uint64_t seed, size_t max_size, uint64_t to) {
    uint8_t *buf = malloc(max_size + 8);
    assert_non_null(buf);
    while (t->length < to) {
        size_t n = tu_record(seed, t->length, max_size, buf);
        tu_tree_add(t, buf, n);
    }
    free(buf);
}

void tu_tree_hash(const tu_tree *t, uint8_t out[KL_HASH_BYTES]) {
    kl_hc_tree_hash(t->roots, t->n, out);
}

void tu_seed(uint8_t seed[KL_SEED_BYTES], uint8_t byte) {
    memset(seed, byte, KL_SEED_BYTES);
}

void tu_expect_verified(kl_log *log, const char *what) {
    uint64_t bad = 0;
    int rc = kl_log_verify(log, NULL, NULL, &bad);
    if (rc != 0)
        fail_msg("%s: verify = %d, first bad block %llu: %s", what, rc, (unsigned long long)bad,
                 kl_log_last_error(log));
    assert_int_equal(bad, UINT64_MAX);
}

void tu_expect_signed(kl_log *log, const uint8_t *seed, uint64_t fork,
                      const uint8_t tree_hash[KL_HASH_BYTES], const char *what) {
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    kl_core_kind kind = info.compat ? KL_CORE_COMPAT : KL_CORE_DEFAULT;
    if (seed) {
        uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES];
        kl_hc_keypair(seed, pk, sk);
        if (memcmp(pk, info.public_key, KL_PK_BYTES) != 0)
            fail_msg("%s: the log's public key is not the one of its seed", what);
    }
    uint8_t key[KL_HASH_BYTES], dkey[KL_HASH_BYTES];
    kl_hc_core_key(kind, info.public_key, key);
    kl_hc_discovery_key(key, dkey);
    assert_memory_equal(info.key, key, KL_HASH_BYTES);
    assert_memory_equal(info.discovery_key, dkey, KL_HASH_BYTES);
    if (info.fork != fork)
        fail_msg("%s: fork %llu, expected %llu", what, (unsigned long long)info.fork,
                 (unsigned long long)fork);
    if (memcmp(info.tree_hash, tree_hash, KL_HASH_BYTES) != 0)
        fail_msg("%s: the signed tree hash (length %llu) is not the tree of the records", what,
                 (unsigned long long)info.length);
    assert_int_equal(info.signature_len, info.compat ? KL_STORED_SIG_COMPAT : KL_STORED_SIG_V1);
    int rc = kl_hc_verify(kind, info.public_key, key, tree_hash, info.length, info.fork,
                          info.signature, info.signature_len);
    if (rc != 0)
        fail_msg("%s: the signature over length %llu, fork %llu does not verify: %s", what,
                 (unsigned long long)info.length, (unsigned long long)info.fork, kl_last_error());
}

static uint64_t env_factor(const char *name) {
    const char *e = getenv(name);
    unsigned long v = e ? strtoul(e, NULL, 10) : 1;
    return v >= 1 && v <= 100 ? v : 1;
}

uint64_t tu_sweep_stride(void) {
    return env_factor("KL_TEST_SWEEP_STRIDE");
}

uint64_t tu_fault_sweep_stride(void) {
    return tu_sweep_stride() * env_factor("KL_TEST_FAULT_SPARSE");
}

int tu_expect_slots_trusted(const char *dir, const char *what, uint64_t *unsigned_seen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/header", dir);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *buf = calloc(1, KL_HDR_FILE_BYTES);
    assert_non_null(buf);
    ssize_t got = pread(fd, buf, KL_HDR_FILE_BYTES, 0);
    close(fd);
    int decoded = 0;
    for (int i = 0; i < 2; i++) {
        kl_slot s;
        if (got < (ssize_t)((i + 1) * KL_HDR_SLOT_BYTES) ||
            kl_slot_decode(buf + i * KL_HDR_SLOT_BYTES, &s) != 0)
            continue;
        decoded++;
        if (s.sig_len == 0) {
            if (unsigned_seen)
                (*unsigned_seen)++;
        } else if (kl_slot_verify(&s) != 0) {
            fail_msg("%s: header slot %d (seq %llu, length %llu) checks out but its signature "
                     "does not verify: %s",
                     what, i, (unsigned long long)s.seq, (unsigned long long)s.length,
                     kl_last_error());
        }
    }
    free(buf);
    return decoded;
}

static void copy_file(const char *from, const char *to, mode_t mode) {
    int in = open(from, O_RDONLY);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL, mode & 07777);
    assert_true(out >= 0);
    assert_int_equal(fchmod(out, mode & 07777), 0); /* whatever the umask */
    uint8_t buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* "a/b" (or b alone if a is empty), malloc'ed. */
static char *join(const char *a, const char *b) {
    char *p = NULL;
    assert_true(asprintf(&p, "%s%s%s", a, *a ? "/" : "", b) > 0);
    return p;
}

void tu_copy_dir(const char *from, const char *to) {
    struct stat st;
    assert_int_equal(stat(from, &st), 0);
    assert_int_equal(mkdir(to, st.st_mode & 07777), 0);
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *src = join(from, de->d_name), *dst = join(to, de->d_name);
        assert_int_equal(lstat(src, &st), 0);
        if (S_ISDIR(st.st_mode))
            tu_copy_dir(src, dst);
        else if (S_ISREG(st.st_mode))
            copy_file(src, dst, st.st_mode);
        free(src);
        free(dst);
    }
    closedir(d);
}

/* Relative names of the regular files under dir/rel, appended to *names. */
static void list_files(const char *dir, const char *rel, char ***names, size_t *n, size_t *cap) {
    char *path = *rel ? join(dir, rel) : strdup(dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *sub = join(rel, de->d_name), *full = join(dir, sub);
        struct stat st;
        assert_int_equal(lstat(full, &st), 0);
        free(full);
        if (S_ISDIR(st.st_mode)) {
            list_files(dir, sub, names, n, cap);
            free(sub);
            continue;
        }
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 32;
            *names = realloc(*names, *cap * sizeof **names);
            assert_non_null(*names);
        }
        (*names)[(*n)++] = sub;
    }
    closedir(d);
    free(path);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void tu_dir_digest(const char *dir, uint8_t out[KL_HASH_BYTES]) {
    char **names = NULL;
    size_t n = 0, cap = 0;
    list_files(dir, "", &names, &n, &cap);
    qsort(names, n, sizeof *names, cmp_names);
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, KL_HASH_BYTES);
    for (size_t i = 0; i < n; i++) {
        char *path = join(dir, names[i]);
        crypto_generichash_update(&st, (const uint8_t *)names[i], strlen(names[i]) + 1);
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        free(path);
        uint8_t buf[1 << 16];
        ssize_t got;
        uint64_t size = 0;
        while ((got = read(fd, buf, sizeof buf)) > 0) {
            crypto_generichash_update(&st, buf, (size_t)got);
            size += (uint64_t)got;
        }
        close(fd);
        uint8_t sz[8];
        memcpy(sz, &size, 8); /* the size ends each file: no two layouts hash alike */
        crypto_generichash_update(&st, sz, sizeof sz);
        free(names[i]);
    }
    free(names);
    crypto_generichash_final(&st, out, KL_HASH_BYTES);
}

json_t *tu_vector(const char *name) {
    const char *dir = getenv("KL_TEST_DATA");
    if (!dir || !*dir)
        fail_msg("KL_TEST_DATA is not set (ctest sets it to tests/data)");
    char path[4096];
    snprintf(path, sizeof path, "%s/hypercore/%s", dir, name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s (line %d)", path, e.text, e.line);
    return j;
}

json_t *tu_json_get(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v)
        fail_msg("vector has no field '%s'", key);
    return v;
}

const char *tu_json_str(const json_t *o, const char *key) {
    json_t *v = tu_json_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

uint64_t tu_json_u64(const json_t *o, const char *key) {
    json_t *v = tu_json_get(o, key);
    assert_true(json_is_integer(v) && json_integer_value(v) >= 0);
    return (uint64_t)json_integer_value(v);
}

size_t tu_unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t len = strlen(hex);
    assert_true(len % 2 == 0 && len / 2 <= cap);
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return len / 2;
}

void tu_hex(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * n] = '\0';
}

const char *tu_cli_bin(void) {
    const char *bin = getenv("KL_TEST_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "skipped: KL_TEST_BIN does not name the kappalog binary\n");
        exit(77);
    }
    return bin;
}

void tu_request_from_json(const json_t *j, kl_proof_request *r) {
    memset(r, 0, sizeof *r);
    r->id = tu_json_u64(j, "id");
    r->fork = tu_json_u64(j, "fork");
    const json_t *b = tu_json_get(j, "block"), *h = tu_json_get(j, "hash"),
                 *s = tu_json_get(j, "seek"), *u = tu_json_get(j, "upgrade");
    if (!json_is_null(b)) {
        r->flags |= KL_PROOF_BLOCK;
        r->block.index = tu_json_u64(b, "index");
        r->block.nodes = tu_json_u64(b, "nodes");
    }
    if (!json_is_null(h)) {
        r->flags |= KL_PROOF_HASH;
        r->hash.index = tu_json_u64(h, "index");
        r->hash.nodes = tu_json_u64(h, "nodes");
    }
    if (!json_is_null(s)) {
        r->flags |= KL_PROOF_SEEK;
        r->seek.bytes = tu_json_u64(s, "bytes");
        r->seek.padding = tu_json_u64(s, "padding");
    }
    if (!json_is_null(u)) {
        r->flags |= KL_PROOF_UPGRADE;
        r->upgrade.start = tu_json_u64(u, "start");
        r->upgrade.length = tu_json_u64(u, "length");
    }
    if (json_is_true(tu_json_get(j, "manifest")))
        r->flags |= KL_PROOF_MANIFEST;
    r->priority = tu_json_u64(j, "priority");
    if (r->priority)
        r->flags |= KL_PROOF_PRIORITY;
}

int tu_dial(const char *hostport) {
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}
