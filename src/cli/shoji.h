/*
 * shoji, the CLI: a thin client of shojid's API (docs/api.md). Shared
 * between the command table (shoji.c), `vm create` (shoji-create.c) and
 * `vm console` (shoji-console.c).
 */
#ifndef SHOJI_CLI_SHOJI_H
#define SHOJI_CLI_SHOJI_H

#include <stdbool.h>

struct cli {
	const char *socket;
	bool json;
};

/* `shoji vm create NAME ...`: the exit status. */
int cli_vm_create(const struct cli *cli, int argc, char **argv);
/* `shoji vm console NAME`: the exit status. */
int cli_vm_console(const struct cli *cli, const char *name);
/* `shoji exec VM ...` and `shoji cp ...` (shoji-exec.c): the exit status. */
int cli_exec(const struct cli *cli, int argc, char **argv);
int cli_cp(const struct cli *cli, int argc, char **argv);
/* Prints the API's error line for a failed answer; returns 1. */
int cli_api_error(int status, const char *body);

#endif
