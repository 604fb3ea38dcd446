/*
 * `shoji vm create`: command-line options to a definition (JSON), which
 * shojid checks and stores. The options use shoji-vmm's spelling
 * (--disk path=P,readonly=on ...); relative paths are made absolute here,
 * because the daemon's working directory is not the user's.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/shoji-http.h"
#include "cli/shoji.h"

static bool bad(const char *fmt, const char *arg)
{
	fprintf(stderr, "shoji: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return false;
}

static json_t *abs_path(const char *p)
{
	char buf[PATH_MAX];
	return json_string(realpath(p, buf) ? buf : p); /* a missing file: the daemon names it */
}

/* "path=P[,format=raw|qcow2][,readonly=on|off]" */
static bool parse_disk(const char *spec, json_t *disks)
{
	json_t *d = json_object();
	char *copy = strdup(spec), *save = NULL;
	bool ok = copy != NULL;
	for (char *kv = copy ? strtok_r(copy, ",", &save) : NULL; ok && kv; kv = strtok_r(NULL, ",", &save)) {
		if (strncmp(kv, "path=", 5) == 0)
			json_object_set_new(d, "path", abs_path(kv + 5));
		else if (strncmp(kv, "format=", 7) == 0)
			json_object_set_new(d, "format", json_string(kv + 7));
		else if (strcmp(kv, "readonly=on") == 0 || strcmp(kv, "readonly=off") == 0)
			json_object_set_new(d, "readonly", json_boolean(strcmp(kv, "readonly=on") == 0));
		else
			ok = bad("--disk: unknown part '%s' (use path=P,format=raw|qcow2,readonly=on)", kv);
	}
	free(copy);
	json_array_append_new(disks, d);
	return ok;
}

/* "user[,hostfwd=tcp:A:P-:G]...[,mac=M]" or "tap=NAME[,mac=M]" */
static bool parse_net(const char *spec, json_t *nets)
{
	json_t *n = json_object(), *fw = json_array();
	char *copy = strdup(spec), *save = NULL;
	bool ok = copy != NULL;
	for (char *kv = copy ? strtok_r(copy, ",", &save) : NULL; ok && kv; kv = strtok_r(NULL, ",", &save)) {
		if (strcmp(kv, "user") == 0)
			json_object_set_new(n, "type", json_string("user"));
		else if (strncmp(kv, "tap=", 4) == 0)
			json_object_set_new(n, "type", json_string("tap")), json_object_set_new(n, "tap", json_string(kv + 4));
		else if (strncmp(kv, "hostfwd=", 8) == 0)
			json_array_append_new(fw, json_string(kv + 8));
		else if (strncmp(kv, "mac=", 4) == 0)
			json_object_set_new(n, "mac", json_string(kv + 4));
		else
			ok = bad("--net: unknown part '%s' (use user[,hostfwd=...][,mac=M] or tap=NAME)", kv);
	}
	free(copy);
	if (json_array_size(fw))
		json_object_set(n, "hostfwd", fw);
	json_decref(fw);
	json_array_append_new(nets, n);
	return ok;
}

static bool parse_number(const char *opt, const char *arg, json_t *def, const char *key)
{
	char *end;
	long long v = strtoll(arg, &end, 10);
	if (!arg[0] || *end)
		return bad(opt, arg);
	json_object_set_new(def, key, json_integer(v));
	return true;
}

static bool create_option(int c, const char *arg, json_t *def)
{
	switch (c) {
	case 'r': json_object_set_new(def, "role", json_string(arg)); return true;
	case 'k': json_object_set_new(def, "kernel", abs_path(arg)); return true;
	case 'i': json_object_set_new(def, "initrd", abs_path(arg)); return true;
	case 'c': json_object_set_new(def, "cmdline", json_string(arg)); return true;
	case 'p': return parse_number("--cpus %s: not a number", arg, def, "cpus");
	case 'm': json_object_set_new(def, "memory", json_string(arg)); return true;
	case 'd': return parse_disk(arg, json_object_get(def, "disks"));
	case 'n': return parse_net(arg, json_object_get(def, "nets"));
	case 'v':
		if (strncmp(arg, "cid=", 4) != 0)
			return bad("--vsock %s: use cid=N", arg);
		json_object_set_new(def, "vsock", json_object());
		return parse_number("--vsock %s: cid= needs a number", arg + 4, json_object_get(def, "vsock"), "cid");
	case 'R': json_object_set_new(def, "rng", json_true()); return true;
	case 'D': json_object_set_new(def, "depends_on", json_string(arg)); return true;
	case 'a':
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
			return bad("--autostart %s: use on or off", arg);
		json_object_set_new(def, "autostart", json_boolean(strcmp(arg, "on") == 0));
		return true;
	default:
		return false;
	}
}

int cli_vm_create(const struct cli *cli, int argc, char **argv)
{
	static const struct option longs[] = {
		{ "role", required_argument, NULL, 'r' }, { "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' }, { "cmdline", required_argument, NULL, 'c' },
		{ "cpus", required_argument, NULL, 'p' }, { "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'd' }, { "net", required_argument, NULL, 'n' },
		{ "vsock", required_argument, NULL, 'v' }, { "rng", no_argument, NULL, 'R' },
		{ "depends-on", required_argument, NULL, 'D' }, { "autostart", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "shoji: vm create needs a NAME first (see shoji --help)\n");
		return 2;
	}
	json_t *def = json_pack("{s:s, s:[], s:[]}", "name", argv[1], "disks", "nets");
	optind = 2;
	opterr = 0;
	int c;
	bool ok = true;
	while (ok && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		if (c == '?' || c == ':')
			ok = bad("vm create: unknown option or missing value in '%s' (see shoji --help)", argv[optind - 1]);
		else
			ok = create_option(c, optarg, def);
	}
	if (ok && optind < argc)
		ok = bad("vm create: unexpected argument '%s'", argv[optind]);
	if (ok && !json_object_get(def, "role"))
		json_object_set_new(def, "role", json_string("client"));
	char *body = ok ? json_dumps(def, JSON_COMPACT) : NULL;
	json_decref(def);
	if (!body)
		return 2;
	struct http_response r;
	bool sent = http_call(cli->socket, "POST", "/v1/vms", body, &r);
	free(body);
	if (!sent)
		return 1;
	int code = r.status == 201 ? 0 : cli_api_error(r.status, r.body);
	if (code == 0)
		fputs(cli->json ? r.body : "", stdout);
	if (code == 0 && !cli->json)
		printf("created %s\n", argv[1]);
	free(r.body);
	return code;
}
