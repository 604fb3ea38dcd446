/*
 * `shoji vm create`: command-line options to a definition (JSON), which
 * shojid checks and stores. The options use shoji-vmm's spelling
 * (--disk path=P,readonly=on ...; see shoji-create-opts.h); relative paths
 * are made absolute here, because the daemon's working directory is not
 * the user's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/shoji-create-opts.h"
#include "cli/shoji-http.h"
#include "cli/shoji.h"

static bool bad(const char *fmt, const char *arg)
{
	fprintf(stderr, "shoji: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return false;
}

/* One key=value option (cli/shoji-create-opts.h) into a new object under `key` of def. */
static bool parse_object(bool (*parse)(const char *, json_t *, char *, size_t), const char *arg,
			 json_t *def, const char *key)
{
	json_t *obj = json_object(), *list = json_object_get(def, key);
	if (json_is_array(list))
		json_array_append_new(list, obj);
	else
		json_object_set_new(def, key, obj);
	char err[512];
	if (!parse(arg, obj, err, sizeof(err)))
		return bad("%s", err);
	return true;
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
	case 'k': json_object_set_new(def, "kernel", cli_abs_path(arg)); return true;
	case 'I': json_object_set_new(def, "image", cli_abs_path(arg)); return true;
	case 'i': json_object_set_new(def, "initrd", cli_abs_path(arg)); return true;
	case 'c': json_object_set_new(def, "cmdline", json_string(arg)); return true;
	case 'p': return parse_number("--cpus %s: not a number", arg, def, "cpus");
	case 'm': json_object_set_new(def, "memory", json_string(arg)); return true;
	case 'd': return parse_object(cli_disk_parse, arg, def, "disks");
	case 'n': return parse_object(cli_net_parse, arg, def, "nets");
	case 'v': return parse_object(cli_vsock_parse, arg, def, "vsock");
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
		{ "image", required_argument, NULL, 'I' },
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
