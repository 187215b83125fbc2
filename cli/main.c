/*
 * main.c - the `kappalog` command: finds the subcommand, parses its flags
 * (args.c) and runs it; --help, help CMD and --version.
 *
 * The table below is the list of subcommands: adding one is a new
 * cli/cmd_<name>.c, its extern in cli.h and a line here.
 *
 * The one thing a reader would get wrong: SIGPIPE is ignored for the whole
 * process, so a closed stdout shows up as EPIPE from a write, which the
 * commands turn into a quiet exit 141; with the default action the process
 * would die in the middle of a write, before it could close the log.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const cli_command *const commands[] = {
    &cli_cmd_init,   &cli_cmd_append,   &cli_cmd_get,   &cli_cmd_read,    &cli_cmd_info,
    &cli_cmd_verify, &cli_cmd_truncate, &cli_cmd_proof, &cli_cmd_consume, &cli_cmd_cursors,
    &cli_cmd_cursor, &cli_cmd_view,     &cli_cmd_clone, &cli_cmd_serve,
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int print_main_usage(void) {
    printf("usage: kappalog COMMAND [ARGS]\n"
           "       kappalog help COMMAND | COMMAND --help | --help | --version\n"
           "\n"
           "kappalog %s: an append-only log storage engine.\n"
           "\n"
           "commands:\n",
           kl_version());
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %-8s %s\n", commands[i]->name, commands[i]->summary);
    printf("\n"
           "Exit status: 0 done, 1 failed (missing log, bad data or input, I/O), 2 usage\n"
           "error or a request that cannot be met as asked (a length past the end, a\n"
           "host that does not resolve, a key another replica holds), 3 expected length\n"
           "conflict, 141 stdout closed by its reader.\n");
    return cli_flush() < 0 ? cli_write_failed("help") : CLI_EXIT_OK;
}

static int help(int argc, char **argv) {
    if (argc < 3)
        return print_main_usage();
    if (argc > 3) {
        cli_error("help", "unexpected argument '%s' (see 'kappalog --help')", argv[3]);
        return CLI_EXIT_USAGE;
    }
    const cli_command *cmd = find_command(argv[2]);
    if (!cmd) {
        cli_error("help", "unknown command '%s' (see 'kappalog --help')", argv[2]);
        return CLI_EXIT_USAGE;
    }
    cli_print_usage(cmd);
    return cli_flush() < 0 ? cli_write_failed("help") : CLI_EXIT_OK;
}

static int run_command(const cli_command *cmd, int argc, char **argv) {
    cli_args args;
    int rc = cli_args_parse(cmd, argc, argv, &args);
    if (rc != 0)
        return rc;
    if (args.help) {
        cli_print_usage(cmd);
        return cli_flush() < 0 ? cli_write_failed(cmd->name) : CLI_EXIT_OK;
    }
    return cmd->run(cmd, &args);
}

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if (argc < 2) {
        cli_error("usage", "missing command (see 'kappalog --help')");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return argc == 2 ? print_main_usage() : help(argc, argv);
    if (strcmp(name, "help") == 0)
        return help(argc, argv);
    if (strcmp(name, "--version") == 0) {
        printf("kappalog %s\n", kl_version());
        return cli_flush() < 0 ? cli_write_failed("version") : CLI_EXIT_OK;
    }
    const cli_command *cmd = find_command(name);
    if (cmd)
        return run_command(cmd, argc - 2, argv + 2);
    cli_error(name, "unknown %s (see 'kappalog --help')", name[0] == '-' ? "flag" : "command");
    return CLI_EXIT_USAGE;
}
