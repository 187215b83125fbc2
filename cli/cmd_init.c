/*
 * cmd_init.c - `kappalog init DIR`: create an empty log with the settings
 * given as flags (fsync policy, segment size, compression).
 *
 * Every flag is checked before kl_log_create runs, and a bad one is a usage
 * error (exit 2) that creates nothing; the policy and codec texts are parsed
 * by the library (kl_config_parse_*), so the CLI and the API accept exactly
 * the same words.
 *
 * The one thing a reader would get wrong: init never reuses or repairs what
 * is in DIR. An existing log, or any other file there, is a runtime error
 * (exit 1) and DIR is left exactly as it was.
 */
#include <string.h>

#include "cli.h"
#include "util.h"

enum { I_FSYNC, I_SEGMENT_BYTES, I_COMPRESSION, I_SEED, I_COMPAT };

static const cli_flag init_flags[] = {
    [I_FSYNC] = {"--fsync", "always|interval:MS|never"},
    [I_SEGMENT_BYTES] = {"--segment-bytes", "N"},
    [I_COMPRESSION] = {"--compression", "none|zstd[:LEVEL]"},
    [I_SEED] = {"--seed", "HEX32"},
    [I_COMPAT] = {"--compat", NULL},
    {NULL, NULL},
};

/* 64 hex digits into 32 bytes; -1 on anything else. */
static int parse_seed(const char *text, unsigned char out[32]) {
    if (strlen(text) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = text[2 * i + k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* The settings the flags ask for. Returns 0 or an exit status. */
static int init_config(const cli_command *cmd, const cli_args *a, kl_config *cfg,
                       unsigned char seed[32]) {
    kl_config_default(cfg);
    if (a->val[I_SEED]) {
        if (parse_seed(a->val[I_SEED], seed) < 0)
            return cli_usage_error(cmd, "--seed: '%s' is not 64 hex digits (32 bytes)",
                                   a->val[I_SEED]);
        cfg->seed = seed;
    }
    cfg->compat = a->val[I_COMPAT] != NULL;
    if (a->val[I_FSYNC] && kl_config_parse_fsync(cfg, a->val[I_FSYNC]) < 0)
        return cli_usage_error(cmd, "--fsync: %s", kl_last_error());
    if (a->val[I_COMPRESSION] && kl_config_parse_codec(cfg, a->val[I_COMPRESSION]) < 0)
        return cli_usage_error(cmd, "--compression: %s", kl_last_error());
    if (a->val[I_SEGMENT_BYTES] &&
        cli_flag_number(cmd, "--segment-bytes", a->val[I_SEGMENT_BYTES], 1, KL_MIN_SEGMENT_BYTES,
                        KL_MAX_SEGMENT_BYTES, &cfg->segment_bytes) != 0)
        return CLI_EXIT_USAGE;
    return 0;
}

static int run_init(const cli_command *cmd, const cli_args *a) {
    kl_config cfg;
    unsigned char seed[32];
    int rc = init_config(cmd, a, &cfg, seed);
    if (rc != 0)
        return rc;
    rc = kl_log_create(a->pos[0], &cfg);
    memset(seed, 0, sizeof seed);
    return rc < 0 ? cli_kl_error("init", rc, NULL) : CLI_EXIT_OK;
}

const cli_command cli_cmd_init = {
    .name = "init",
    .summary = "create an empty log",
    .usage = "init DIR [--fsync always|interval:MS|never] [--segment-bytes N]\n"
             "              [--compression none|zstd[:LEVEL]] [--seed HEX32] [--compat]\n"
             "\n"
             "Create an empty log in DIR, which must not exist or be an empty directory.\n"
             "The log is a Hypercore core: its Ed25519 secret key is written to DIR/secret\n"
             "(mode 0600); whoever holds that file can append.\n"
             "\n"
             "  --fsync always       an acknowledged append is on stable storage (default)\n"
             "  --fsync interval:MS  synced at least every MS milliseconds (1..3600000)\n"
             "  --fsync never        the operating system decides when\n"
             "  --segment-bytes N    segment file size: 64K..1G, with a K, M or G suffix or\n"
             "                       in bytes (default 256M). A reader maps each segment it\n"
             "                       reads: one that reads more than about 30,000 segments\n"
             "                       (60,000 small ones) needs a higher vm.max_map_count\n"
             "                       (65530 by default)\n"
             "  --compression C      none (default), zstd, or zstd:LEVEL with LEVEL 1..19\n"
             "  --seed HEX32         make the key pair from these 32 bytes (64 hex digits), as\n"
             "                       crypto_sign_seed_keypair; default: a random key pair\n"
             "  --compat             a compat-mode core (key = public key, raw signatures),\n"
             "                       as new Hypercore(dir, { compat: true })\n",
    .flags = init_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_init,
};
