/*
 * args.c - parsing a subcommand's words against its declared flags, and
 * printing its usage.
 *
 * Accepted: "--flag VALUE", "--flag=VALUE", switches, flags before, between
 * or after the positional arguments, and "--" to end the flags (so a
 * directory may start with a dash). Everything else that starts with '-' is
 * an unknown flag: a usage error, exit status 2, before anything is opened.
 *
 * The one thing a reader would get wrong: a flag's value is the next word
 * whatever it looks like, so "--from -1" reaches the number parser (which
 * rejects it) instead of being taken for an unknown flag "-1".
 */
#include "cli.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* The index of the flag called name (name_len bytes) in cmd->flags, or -1. */
static int find_flag(const cli_command *cmd, const char *name, size_t name_len) {
    for (int i = 0; cmd->flags && cmd->flags[i].name; i++)
        if (strlen(cmd->flags[i].name) == name_len &&
            memcmp(cmd->flags[i].name, name, name_len) == 0)
            return i;
    return -1;
}

static int is_help(const char *word) {
    return strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0;
}

/* Parse the flag argv[*i]; *i moves past its value if it takes one. */
static int parse_flag(const cli_command *cmd, int argc, char **argv, int *i, cli_args *args) {
    const char *word = argv[*i];
    const char *eq = strchr(word, '=');
    size_t name_len = eq ? (size_t)(eq - word) : strlen(word);
    int f = word[1] == '-' ? find_flag(cmd, word, name_len) : -1;
    if (f < 0)
        return cli_usage_error(cmd, "unknown flag '%.*s'", (int)name_len, word);
    if (!cmd->flags[f].value) {
        if (eq)
            return cli_usage_error(cmd, "%s takes no value", cmd->flags[f].name);
        args->val[f] = "";
        return 0;
    }
    if (eq) {
        args->val[f] = eq + 1;
    } else if (*i + 1 < argc) {
        args->val[f] = argv[++*i];
    } else {
        return cli_usage_error(cmd, "%s needs a value (%s)", cmd->flags[f].name,
                               cmd->flags[f].value);
    }
    return 0;
}

static int add_positional(const cli_command *cmd, const char *word, cli_args *args) {
    if (args->npos >= cmd->max_args)
        return cli_usage_error(cmd, "unexpected argument '%s'", word);
    args->pos[args->npos++] = word;
    return 0;
}

/* The command's declaration fits the parser's bounds (a programming error otherwise). */
static void check_declaration(const cli_command *cmd) {
    int nflags = 0;
    while (cmd->flags && cmd->flags[nflags].name)
        nflags++;
    assert(nflags <= CLI_MAX_FLAGS);
    assert(cmd->min_args >= 0 && cmd->min_args <= cmd->max_args && cmd->max_args <= CLI_MAX_ARGS);
    (void)nflags;
}

int cli_args_parse(const cli_command *cmd, int argc, char **argv, cli_args *args) {
    check_declaration(cmd);
    memset(args, 0, sizeof *args);
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i])) {
            args->help = 1;
            return 0;
        }
    }
    int flags_done = 0;
    for (int i = 0; i < argc; i++) {
        int rc;
        if (!flags_done && strcmp(argv[i], "--") == 0) {
            flags_done = 1;
            continue;
        }
        if (!flags_done && argv[i][0] == '-' && argv[i][1] != '\0')
            rc = parse_flag(cmd, argc, argv, &i, args);
        else
            rc = add_positional(cmd, argv[i], args);
        if (rc != 0)
            return rc;
    }
    if (args->npos < cmd->min_args)
        return cli_usage_error(cmd, "missing %s", cmd->arg_names[args->npos]);
    return 0;
}

void cli_print_usage(const cli_command *cmd) {
    printf("usage: kappalog %s\n", cmd->usage);
}
