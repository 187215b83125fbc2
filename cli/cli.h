/*
 * cli.h - what every subcommand of `kappalog` shares: the command table
 * entry, the parsed arguments and the exit statuses.
 *
 * Adding a subcommand is one new cli/cmd_<name>.c defining a cli_command,
 * one extern line below and one entry in the table of main.c. Flags are
 * declared as data (a cli_flag array) and parsed by args.c before the
 * command runs, so every command rejects unknown flags and missing or extra
 * arguments the same way, with exit status 2.
 */
#ifndef KL_CLI_H
#define KL_CLI_H

#include <stddef.h>

/* Exit statuses (DESIGN.md "Command line"; scripts rely on them). */
#define CLI_EXIT_OK       0
#define CLI_EXIT_RUNTIME  1   /* missing log, corrupt data, I/O, bad input stream */
#define CLI_EXIT_USAGE    2   /* unknown command or flag, bad number, wrong arguments */
#define CLI_EXIT_CONFLICT 3   /* an expected length did not match (KL_ECONFLICT) */
#define CLI_EXIT_PIPE     141 /* stdout's reader went away: 128 + SIGPIPE, as a shell reports it */

/* Bounds of the argument parser: more than any command needs. */
#define CLI_MAX_FLAGS 12
#define CLI_MAX_ARGS  16

/* One flag of a command: "--batch" with value name "N", or a switch (value NULL). */
typedef struct cli_flag {
    const char *name;
    const char *value;
} cli_flag;

/* The parsed command line of one subcommand. */
typedef struct cli_args {
    const char *pos[CLI_MAX_ARGS]; /* positional arguments, in order */
    int npos;
    /* Per flag, in the order of cli_command.flags: its value, "" for a switch that is
     * present, NULL if absent. A repeated flag keeps its last value. */
    const char *val[CLI_MAX_FLAGS];
    int help; /* --help or -h was given: print the usage, run nothing */
} cli_args;

typedef struct cli_command cli_command;

struct cli_command {
    const char *name;
    const char *summary;   /* one line for `kappalog --help` */
    const char *usage;     /* the full text for `kappalog help NAME` (after "usage: kappalog ") */
    const cli_flag *flags; /* ends with {NULL, NULL} */
    const char *arg_names[CLI_MAX_ARGS]; /* names of the positional arguments ("DIR", ...) */
    int min_args, max_args;
    int (*run)(const cli_command *cmd, const cli_args *args); /* returns an exit status */
};

/*
 * Parse argv (the words after the command name) against cmd. Returns 0, or
 * CLI_EXIT_USAGE after printing the one-line error. With --help anywhere it
 * returns 0 with args->help set and checks nothing else.
 */
int cli_args_parse(const cli_command *cmd, int argc, char **argv, cli_args *args);

/* Print the usage of cmd to stdout. */
void cli_print_usage(const cli_command *cmd);

extern const cli_command cli_cmd_init;
extern const cli_command cli_cmd_append;
extern const cli_command cli_cmd_get;
extern const cli_command cli_cmd_read;
extern const cli_command cli_cmd_info;
extern const cli_command cli_cmd_verify;
extern const cli_command cli_cmd_truncate;
extern const cli_command cli_cmd_proof;
extern const cli_command cli_cmd_consume;
extern const cli_command cli_cmd_cursors;
extern const cli_command cli_cmd_cursor;
extern const cli_command cli_cmd_view;
extern const cli_command cli_cmd_clone;
extern const cli_command cli_cmd_serve;

#endif
