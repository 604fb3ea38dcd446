/*
 * shoji: the command line of the shoji host daemon. Every command is one
 * API request (docs/api.md) and prints the answer for people, or with
 * --json as the daemon sent it; start, stop and restart also follow the
 * event stream until the outcome is known (shoji-wait.c). Errors are one
 * line on stderr and a non-zero exit status: 1 for what the daemon refused
 * or could not do, 2 for bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/shoji-http.h"
#include "cli/shoji.h"
#include "cli/shoji-wait.h"
#include "daemon/vmdef.h"

static const char usage[] =
	"Usage: shoji [--socket PATH] [--json] COMMAND ...\n"
	"\n"
	"Talks to shojid over its API socket (default /run/shoji/shojid.sock, or\n"
	"$SHOJI_SOCKET).\n"
	"\n"
	"Commands:\n"
	"  vm create NAME [--role client|service] (--image OUT | --kernel PATH)\n"
	"            [--initrd PATH]\n"
	"            [--cmdline TEXT] [--cpus N] [--memory SIZE]\n"
	"            [--disk path=P[,format=raw|qcow2][,readonly=on][,direct=on]\n"
	"                    [,serial=S][,aio=auto|threads|io_uring]]...\n"
	"            [--net user[,hostfwd=tcp:ADDR:PORT-:PORT][,mac=M] | --net tap=NAME]...\n"
	"            [--vsock cid=N] [--rng] [--depends-on VM] [--autostart on|off]\n"
	"                          define a VM (role client unless given); --image\n"
	"                          boots a shoji-img build bundle OUT through an\n"
	"                          overlay of its own (kernel, initrd, cmdline from it)\n"
	"  vm ls                   list the VMs and their states\n"
	"  vm show NAME            one VM's definition and state\n"
	"  vm start|stop|restart NAME [--no-wait]\n"
	"                          wait until the VM runs (start, restart) or is\n"
	"                          stopped, and fail with the reason if it does not\n"
	"                          start; --no-wait returns once shojid has the\n"
	"                          request. stop asks the guest's agent to shut\n"
	"                          down, or presses the ACPI power button (also when\n"
	"                          the agent has not finished after half the\n"
	"                          timeout), then kills the VM after shojid's\n"
	"                          --stop-timeout\n"
	"  vm kill NAME            SIGKILL to the VM's VMM\n"
	"  vm pause|resume NAME    stop the VM's vCPUs where they are, and let them\n"
	"                          go on (memory and devices stay; stop resumes it\n"
	"                          to press the button)\n"
	"  vm rm NAME              remove a stopped VM's definition\n"
	"  vm edit NAME            edit the definition in $EDITOR; shojid checks it\n"
	"  vm console NAME         attach to the serial console; Ctrl-] or Ctrl-a d\n"
	"                          detaches (Ctrl-a Ctrl-a sends Ctrl-a)\n"
	"  vm logs NAME [-f]       the console log; -f follows it\n"
	"  exec VM [-t|--tty] [-e|--env NAME=VALUE]... [-w|--workdir DIR] [--]\n"
	"          CMD [ARG]...\n"
	"                          run CMD in the VM through its agent: stdin,\n"
	"                          stdout, stderr and the exit status pass through\n"
	"                          (125: it could not be run); -t gives it a terminal\n"
	"  cp [-m MODE] SRC DST    copy a file into or out of a VM; one side is\n"
	"                          VM:/ABSOLUTE/PATH (ending in / keeps the name)\n"
	"  events [--since N]      lifecycle events as JSON lines, until interrupted;\n"
	"                          --since N first replays those from number N on\n"
	"                          that shojid still keeps (0: all of them)\n"
	"\n"
	"Options:\n"
	"  --socket PATH           shojid's API socket\n"
	"  --json                  print the daemon's JSON answers (for scripts)\n"
	"  -h, --help              print this help and exit\n"
	"  -V, --version           print the version and exit\n";

int cli_api_error(int status, const char *body)
{
	json_t *j = json_loads(body ? body : "", 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	fprintf(stderr, "shoji: %s\n", msg ? msg : "shojid gave an unexpected answer");
	if (!msg)
		fprintf(stderr, "shoji: (HTTP status %d)\n", status);
	json_decref(j);
	return 1;
}

/* One request; on success the parsed answer (or NULL with *code set). */
static json_t *call(const struct cli *cli, const char *method, const char *path, const char *body,
		    int want, int *code)
{
	struct http_response r;
	*code = 1;
	if (!http_call(cli->socket, method, path, body, &r))
		return NULL;
	json_t *j = NULL;
	if (r.status != want)
		cli_api_error(r.status, r.body);
	else if (cli->json)
		fputs(r.body, stdout), *code = 0;
	else if (!(j = json_loads(r.body, 0, NULL)))
		fprintf(stderr, "shoji: shojid's answer is not JSON\n");
	else
		*code = 0;
	free(r.body);
	return j;
}

static void print_vm_line(json_t *vm)
{
	char pid[16] = "-";
	if (json_object_get(vm, "pid"))
		snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(json_object_get(vm, "pid")));
	const char *last = json_string_value(json_object_get(vm, "last_exit"));
	printf("%-20s %-8s %-9s %-8s %s\n", json_string_value(json_object_get(vm, "name")),
	       json_string_value(json_object_get(vm, "role")), json_string_value(json_object_get(vm, "state")),
	       pid, last ? last : "-");
}

static int cmd_ls(const struct cli *cli)
{
	int code;
	json_t *j = call(cli, "GET", "/v1/vms", NULL, 200, &code);
	if (!j)
		return code;
	printf("%-20s %-8s %-9s %-8s %s\n", "NAME", "ROLE", "STATE", "PID", "LAST-EXIT");
	size_t i;
	json_t *vm;
	json_array_foreach(json_object_get(j, "vms"), i, vm)
		print_vm_line(vm);
	json_array_foreach(json_object_get(j, "invalid"), i, vm)
		fprintf(stderr, "shoji: not loaded: %s\n", json_string_value(json_object_get(vm, "error")));
	json_decref(j);
	return 0;
}

static int cmd_show(const struct cli *cli, const char *name)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	int code;
	json_t *j = call(cli, "GET", path, NULL, 200, &code);
	if (!j)
		return code;
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(text ? text : "");
	free(text);
	json_decref(j);
	return 0;
}

/* The request alone: the answer says the VM's state now (starting, stopping, ...). */
static int cmd_action(const struct cli *cli, const char *action, const char *name)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, action);
	int code;
	json_t *j = call(cli, "POST", path, NULL, 202, &code);
	if (!j)
		return code;
	printf("%s: %s\n", name, json_string_value(json_object_get(j, "state")));
	json_decref(j);
	return 0;
}

static int cmd_rm(const struct cli *cli, const char *name)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	int code;
	json_t *j = call(cli, "DELETE", path, NULL, 200, &code);
	if (j)
		printf("removed %s\n", name);
	json_decref(j);
	return code;
}

static int run_editor(const char *file)
{
	const char *editor = getenv("VISUAL") ? getenv("VISUAL") : getenv("EDITOR") ? getenv("EDITOR") : "vi";
	pid_t pid = fork();
	if (pid == 0) {
		execlp("/bin/sh", "sh", "-c", "exec $0 \"$1\"", editor, file, (char *)NULL);
		_exit(127);
	}
	int status;
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Edits a copy; shojid checks the result and stores it only if it is valid. */
static int cmd_edit(const struct cli *cli, const char *name)
{
	char path[96], tmp[] = "/tmp/shoji-edit-XXXXXX.json";
	snprintf(path, sizeof(path), "/v1/vms/%s/definition", name);
	struct http_response r;
	if (!http_call(cli->socket, "GET", path, NULL, &r))
		return 1;
	if (r.status != 200) {
		int c = cli_api_error(r.status, r.body);
		free(r.body);
		return c;
	}
	int fd = mkstemps(tmp, 5);
	bool ok = fd >= 0 && write(fd, r.body, r.len) == (ssize_t)r.len;
	free(r.body);
	if (fd >= 0)
		close(fd);
	if (!ok || run_editor(tmp) != 0) {
		fprintf(stderr, "shoji: the editor failed; nothing changed (your copy: %s)\n", tmp);
		return 1;
	}
	FILE *f = fopen(tmp, "r");
	char *text = calloc(1, 65537);
	size_t n = f && text ? fread(text, 1, 65536, f) : 0;
	if (f)
		fclose(f);
	text[n] = '\0';
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	ok = http_call(cli->socket, "PUT", path, text, &r);
	free(text);
	if (!ok)
		return 1;
	int code = r.status == 200 ? 0 : cli_api_error(r.status, r.body);
	free(r.body);
	if (code)
		fprintf(stderr, "shoji: nothing changed; your edited copy is %s\n", tmp);
	else
		unlink(tmp), printf("%s: definition updated\n", name);
	return code;
}

static int cmd_logs(const struct cli *cli, const char *name, bool follow)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/vms/%s/logs%s", name, follow ? "?follow=1" : "");
	int status = http_stream(cli->socket, path);
	return status == 200 ? 0 : 1;
}

static bool is_waitable(const char *sub)
{
	return !strcmp(sub, "start") || !strcmp(sub, "stop") || !strcmp(sub, "restart");
}

static int cmd_vm(const struct cli *cli, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "";
	/* --no-wait, before or after the name; taken out so the rest parses as before. */
	bool wait = true;
	for (int i = 1; is_waitable(sub) && i < argc; i++)
		if (strcmp(argv[i], "--no-wait") == 0) {
			wait = false;
			memmove(argv + i, argv + i + 1, (size_t)(argc - i - 1) * sizeof(*argv));
			argc--, i--;
		}
	if (strcmp(sub, "ls") == 0)
		return cmd_ls(cli);
	if (argc < 2) {
		fprintf(stderr, "shoji: vm %s needs a VM name (see shoji --help)\n", sub);
		return 2;
	}
	const char *name = argv[1];
	/* Checked here by the daemon's rule: a name is a path segment, "x/kill" would be another request. */
	if (!(strcmp(sub, "create") == 0 && name[0] == '-') && !vmdef_name_valid(name)) {
		fprintf(stderr, "shoji: bad VM name '%s': %s\n", name, VMDEF_NAME_RULE);
		return 2;
	}
	if (strcmp(sub, "create") == 0)
		return cli_vm_create(cli, argc, argv);
	bool follow = argc == 3 && strcmp(argv[2], "-f") == 0;
	if (argc > 2 && !(follow && strcmp(sub, "logs") == 0)) {
		fprintf(stderr, "shoji: unexpected argument '%s'\n", argv[2]);
		return 2;
	}
	if (strcmp(sub, "show") == 0)
		return cmd_show(cli, name);
	if (is_waitable(sub) && wait)
		return cli_vm_action_wait(cli, sub, name);
	if (is_waitable(sub) || strcmp(sub, "kill") == 0 || strcmp(sub, "pause") == 0 ||
	    strcmp(sub, "resume") == 0)
		return cmd_action(cli, sub, name);
	if (strcmp(sub, "rm") == 0)
		return cmd_rm(cli, name);
	if (strcmp(sub, "edit") == 0)
		return cmd_edit(cli, name);
	if (strcmp(sub, "console") == 0)
		return cli_vm_console(cli, name);
	if (strcmp(sub, "logs") == 0)
		return cmd_logs(cli, name, follow);
	fprintf(stderr, "shoji: unknown command 'vm %s' (see shoji --help)\n", sub);
	return 2;
}

int main(int argc, char **argv)
{
	struct cli cli = { getenv("SHOJI_SOCKET") ? getenv("SHOJI_SOCKET") : "/run/shoji/shojid.sock", false };
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			cli.json = true;
		} else if (strcmp(argv[i], "--socket") == 0) {
			if (i + 1 == argc) {
				fprintf(stderr, "shoji: option '--socket' needs a value (see shoji --help)\n");
				return 2;
			}
			cli.socket = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
			printf("shoji %s\n", SHOJI_VERSION);
			return 0;
		} else {
			fprintf(stderr, "shoji: unknown option '%s' (see shoji --help)\n", argv[i]);
			return 2;
		}
	}
	if (i < argc && strcmp(argv[i], "vm") == 0)
		return cmd_vm(&cli, argc - i - 1, argv + i + 1);
	if (i < argc && strcmp(argv[i], "exec") == 0)
		return cli_exec(&cli, argc - i - 1, argv + i + 1);
	if (i < argc && strcmp(argv[i], "cp") == 0)
		return cli_cp(&cli, argc - i - 1, argv + i + 1);
	if (i < argc && strcmp(argv[i], "events") == 0) {
		char path[64] = "/v1/events";
		if (i + 3 == argc && strcmp(argv[i + 1], "--since") == 0) {
			const char *n = argv[i + 2];
			if (!n[0] || strspn(n, "0123456789") != strlen(n) || strlen(n) > 19) {
				fprintf(stderr, "shoji: events --since %s: give an event number\n", n);
				return 2;
			}
			snprintf(path, sizeof(path), "/v1/events?since=%s", n);
		} else if (i + 1 != argc) {
			fprintf(stderr, "shoji: events takes only --since N (see shoji --help)\n");
			return 2;
		}
		return http_stream(cli.socket, path) == 200 ? 0 : 1;
	}
	fprintf(stderr, "shoji: %s (see shoji --help)\n", i < argc ? "unknown command" : "no command given");
	return 2;
}
