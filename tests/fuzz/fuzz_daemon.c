/*
 * libFuzzer target: what an API client or a hand-edited file feeds shojid:
 * VM definitions (src/daemon/vmdef.c), the key-position walker behind their
 * error messages (src/daemon/jsonpos.c), and the API's request handling
 * (src/daemon/api.c), the latter without a socket: api_handle() is called
 * as libmicrohttpd calls it (a first call, the body in pieces, a last
 * call), with libmicrohttpd's four response functions and the supervisor
 * replaced by fakes in this file. The fake supervisor defines VMs through
 * the real vmdef_parse(), as the real one does.
 *
 * Input layout: byte 0 picks the mode (mod 3); the rest is
 *   0  definition: byte 1 bit 0 names the VM the file's name says
 *      ("web"), as for files under the state directory; then the text
 *   1  jsonpos: a key path up to the first newline, then the text
 *   2  request: byte 1 the body's piece size (0: one piece; raised so
 *      that a body comes in at most ~512 pieces), byte 2 how often the
 *      body repeats (to pass the 64 KiB limit), then
 *      "METHOD URL\n" and the body
 * Texts are cut at the first NUL byte, as C strings are; a request body
 * keeps them (the API refuses those). Definitions name files that must
 * exist: every "$D" in the input becomes a directory made at start-up
 * holding the regular files vmlinuz, initrd, disk.raw and disk.qcow2.
 *
 * Checks (abort on failure), besides ASan/UBSan/LSan:
 *   - a refused definition's message is "SOURCE:LINE: ..." with LINE inside
 *     the text; an accepted one, stored as the daemon stores it
 *     (vmdef_to_json, dumped with JSON_INDENT(2)), parses back to the same
 *     JSON;
 *   - jsonpos_key_line() returns 0 or a line of the text;
 *   - every request gets exactly one response, with a status the API
 *     documents, a JSON body, and {"error": "..."} when it is a 4xx.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "base/log.h"
#include "daemon/api-internal.h"
#include "daemon/jsonpos.h"
#include "daemon/supervisor.h"
#include "daemon/vmdef.h"

#define TEXT_MAX (API_BODY_MAX + 1024)

/* ---- helpers ---- */

static int lines_in(const char *text)
{
	int n = 1;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

/* "SOURCE:LINE: ..." with 1 <= LINE <= the lines of text. */
static void check_message(const char *err, const char *source, const char *text)
{
	size_t n = strlen(source);
	if (strncmp(err, source, n) != 0 || err[n] != ':')
		abort();
	char *end;
	long line = strtol(err + n + 1, &end, 10);
	if (end == err + n + 1 || *end != ':' || line < 1 || line > lines_in(text))
		abort();
}

/* ---- mode 0: definitions ---- */

static void check_definition(const char *text, const char *expect_name)
{
	struct vmdef *d = malloc(sizeof(*d)), *back = malloc(sizeof(*back));
	char err[1024];
	if (!d || !back)
		abort();
	if (!vmdef_parse(text, "web.json", expect_name, d, err, sizeof(err))) {
		if (getenv("FUZZ_DAEMON_VERBOSE")) /* for whoever writes seeds */
			fprintf(stderr, "%s\n", err);
		check_message(err, "web.json", text);
	} else {
		if (!vmdef_name_valid(d->name) || (expect_name && strcmp(d->name, expect_name) != 0))
			abort();
		json_t *j = vmdef_to_json(d);
		char *stored = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		if (!j || !stored)
			abort();
		if (!vmdef_parse(stored, "stored", d->name, back, err, sizeof(err)))
			abort(); /* the daemon could not read back what it stored */
		json_t *j2 = vmdef_to_json(back);
		if (!json_equal(j, j2))
			abort(); /* reading it back changed the definition */
		json_decref(j2);
		free(stored);
		json_decref(j);
	}
	free(back);
	free(d);
}

/* ---- mode 1: jsonpos ---- */

static void check_jsonpos(const char *in)
{
	const char *nl = strchr(in, '\n');
	if (!nl)
		return;
	char path[512];
	size_t n = (size_t)(nl - in) < sizeof(path) - 1 ? (size_t)(nl - in) : sizeof(path) - 1;
	memcpy(path, in, n);
	path[n] = '\0';
	const char *text = nl + 1;
	json_t *root = json_loads(text, JSON_DECODE_ANY, NULL);
	if (!root)
		return; /* jsonpos_key_line() is for texts jansson accepted */
	json_decref(root);
	int line = jsonpos_key_line(text, path);
	if (line < 0 || line > lines_in(text))
		abort();
}

/* ---- mode 2: API requests, with libmicrohttpd and the supervisor faked ---- */

struct MHD_Response {
	char *text;
	size_t len;
	bool json;
};

static struct {
	unsigned responses;
	unsigned status;
	char *body;
	bool json;
} reply;

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer,
						     enum MHD_ResponseMemoryMode mode)
{
	if (mode != MHD_RESPMEM_MUST_FREE)
		abort(); /* api.c hands over malloc'd text only */
	struct MHD_Response *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->text = buffer;
	r->len = size;
	return r;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *r, const char *header, const char *content)
{
	if (strcmp(header, "Content-Type") == 0)
		r->json = strcmp(content, "application/json") == 0;
	return MHD_YES;
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r)
{
	(void)c;
	reply.responses++;
	reply.status = status;
	free(reply.body);
	reply.body = strndup(r->text, r->len);
	reply.json = r->json;
	return MHD_YES;
}

void MHD_destroy_response(struct MHD_Response *r)
{
	free(r->text);
	free(r);
}

/* The supervisor: a few defined VMs, by name, with their definitions. */
#define FAKE_VMS 4
static struct vmdef vms[FAKE_VMS];
static bool vm_used[FAKE_VMS];

static int find_vm(const char *name)
{
	for (int i = 0; i < FAKE_VMS; i++)
		if (vm_used[i] && strcmp(vms[i].name, name) == 0)
			return i;
	return -1;
}

json_t *sup_list(struct sup *s)
{
	(void)s;
	json_t *a = json_array();
	for (int i = 0; i < FAKE_VMS; i++)
		if (vm_used[i])
			json_array_append_new(a, json_string(vms[i].name));
	return a;
}

json_t *sup_show(struct sup *s, const char *name)
{
	(void)s;
	int i = find_vm(name);
	return i < 0 ? NULL : json_pack("{s:s, s:o}", "state", "stopped", "definition", vmdef_to_json(&vms[i]));
}

char *sup_definition_text(struct sup *s, const char *name, char *err, size_t errlen, enum sup_status *st)
{
	(void)s;
	int i = find_vm(name);
	if (i < 0) {
		snprintf(err, errlen, "no VM named '%s'", name);
		*st = SUP_NOT_FOUND;
		return NULL;
	}
	json_t *j = vmdef_to_json(&vms[i]);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	*st = text ? SUP_OK : SUP_INTERNAL;
	return text;
}

enum sup_status sup_define(struct sup *s, const char *name, const char *text, char *created,
			   char *err, size_t errlen)
{
	(void)s;
	struct vmdef d;
	if (!vmdef_parse(text, "request", name, &d, err, errlen)) {
		check_message(err, "request", text);
		return SUP_BAD_REQUEST;
	}
	int i = find_vm(d.name);
	if (i < 0 && name == NULL)
		for (i = 0; i < FAKE_VMS && vm_used[i]; i++)
			;
	if (i < 0 || i == FAKE_VMS) {
		snprintf(err, errlen, "no room for '%s'", d.name);
		return SUP_CONFLICT;
	}
	vms[i] = d;
	vm_used[i] = true;
	if (created)
		snprintf(created, VMDEF_NAME_MAX + 1, "%s", d.name);
	return SUP_OK;
}

enum sup_status sup_remove(struct sup *s, const char *name, char *err, size_t errlen)
{
	(void)s;
	int i = find_vm(name);
	if (i < 0) {
		snprintf(err, errlen, "no VM named '%s'", name);
		return SUP_NOT_FOUND;
	}
	vm_used[i] = false;
	return SUP_OK;
}

enum sup_status sup_action(struct sup *s, const char *name, const char *action, char *err, size_t errlen)
{
	(void)s, (void)action;
	if (find_vm(name) < 0) {
		snprintf(err, errlen, "no VM named '%s'", name);
		return SUP_NOT_FOUND;
	}
	return SUP_OK;
}

/* The long-lived streams (api-stream.c) are not fuzzed here: each answers one error. */
static enum MHD_Result stream_refused(struct MHD_Connection *c)
{
	return api_send_error(c, MHD_HTTP_NOT_FOUND, "streams are not part of this fuzz target");
}

enum MHD_Result api_stream_events(struct api *api, struct MHD_Connection *c, const char *method)
{
	(void)api, (void)method;
	return stream_refused(c);
}

enum MHD_Result api_stream_logs(struct api *api, struct MHD_Connection *c, const char *method,
				const char *name)
{
	(void)api, (void)method, (void)name;
	return stream_refused(c);
}

enum MHD_Result api_stream_console(struct api *api, struct MHD_Connection *c, const char *method,
				   const char *name)
{
	(void)api, (void)method, (void)name;
	return stream_refused(c);
}

enum MHD_Result api_stream_agent(struct api *api, struct MHD_Connection *c, const char *method,
				 const char *name)
{
	(void)api, (void)method, (void)name;
	return stream_refused(c);
}

static bool documented_status(unsigned st)
{
	static const unsigned ok[] = { 200, 201, 202, 400, 404, 405, 409, 413 };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (st == ok[i])
			return true;
	return false;
}

static void check_reply(void)
{
	if (reply.responses != 1 || !documented_status(reply.status) || !reply.json)
		abort();
	json_t *j = json_loads(reply.body, 0, NULL);
	if (!j)
		abort(); /* every answer is JSON */
	if (reply.status >= 400 && !json_is_string(json_object_get(j, "error")))
		abort();
	json_decref(j);
}

static void run_request(const uint8_t *in, size_t len)
{
	if (len < 2)
		return;
	size_t piece = in[0], repeat = (size_t)in[1] + 1;
	in += 2, len -= 2;
	const uint8_t *nl = memchr(in, '\n', len);
	const uint8_t *sp = memchr(in, ' ', len);
	if (!nl || !sp || sp > nl)
		return;
	char method[32], url[512];
	size_t mlen = (size_t)(sp - in), ulen = (size_t)(nl - sp - 1);
	if (mlen >= sizeof(method) || ulen >= sizeof(url))
		return;
	memcpy(method, in, mlen);
	method[mlen] = '\0';
	memcpy(url, sp + 1, ulen);
	url[ulen] = '\0';
	const uint8_t *body = nl + 1;
	size_t blen = len - (size_t)(body - in);

	/*
	 * api.c grows the body by each piece's size; ASan's realloc copies
	 * every time and keeps the old block in quarantine, so 64 KiB in
	 * 1-byte pieces takes 10 s and gigabytes here (7 ms in a plain
	 * build). At most about 512 pieces per body, then.
	 */
	size_t min_piece = blen * repeat / 512 + 1;
	if (piece && piece < min_piece)
		piece = min_piece;
	struct api api = { 0 };
	struct MHD_Connection *c = (struct MHD_Connection *)&api; /* never dereferenced by the fakes */
	void *con_cls = NULL;
	size_t zero = 0;
	reply.responses = 0;
	if (api_handle(&api, c, url, method, "HTTP/1.1", NULL, &zero, &con_cls) != MHD_YES || !con_cls)
		abort(); /* the first call only sets up the request */
	for (size_t r = 0; r < repeat && blen; r++) {
		for (size_t at = 0; at < blen;) {
			size_t n = piece && piece < blen - at ? piece : blen - at;
			size_t left = n;
			if (api_handle(&api, c, url, method, "HTTP/1.1", (const char *)body + at, &left,
				       &con_cls) != MHD_YES || left != 0 || reply.responses)
				abort(); /* body pieces are taken whole, and answered at the end */
			at += n;
		}
	}
	api_handle(&api, c, url, method, "HTTP/1.1", NULL, &zero, &con_cls);
	api_request_done(&api, c, &con_cls, MHD_REQUEST_TERMINATED_COMPLETED_OK);
	if (con_cls)
		abort();
	check_reply();
}

/* ---- the input ---- */

static const char *const files[] = { "vmlinuz", "initrd", "disk.raw", "disk.qcow2" };
static char dir[160];

static void remove_files(void)
{
	char path[192];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void make_files(void)
{
	const char *tmp = getenv("TMPDIR"); /* run.sh's, removed after a crash too */
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if ((size_t)snprintf(dir, sizeof(dir), "%s/shoji-fuzz-daemon-XXXXXX", tmp) >= sizeof(dir) ||
	    !mkdtemp(dir))
		abort();
	char path[192];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			abort();
		close(fd);
	}
	atexit(remove_files);
}

/* The input with every "$D" replaced by dir; returns its new length. */
static size_t expand(uint8_t *out, const uint8_t *in, size_t len)
{
	size_t dlen = strlen(dir), n = 0;
	for (size_t i = 0; i < len && n + dlen < TEXT_MAX; i++) {
		if (in[i] == '$' && i + 1 < len && in[i + 1] == 'D') {
			memcpy(out + n, dir, dlen);
			n += dlen;
			i++;
		} else {
			out[n++] = in[i];
		}
	}
	out[n] = 0;
	return n;
}

/* Each request finds one VM, "web", defined, so that its routes find it. */
static void define_web(void)
{
	char web[384], err[256];
	snprintf(web, sizeof(web), "{\"name\": \"web\", \"role\": \"client\", \"kernel\": \"%s/vmlinuz\"}",
		 dir);
	memset(vm_used, 0, sizeof(vm_used));
	if (sup_define(NULL, NULL, web, NULL, err, sizeof(err)) != SUP_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *in;
	if (!in) {
		log_init("fuzz-daemon", LOG_LEVEL_ERROR);
		log_set_level((enum log_level)-1);
		make_files();
		in = malloc(TEXT_MAX + 1);
		if (!in)
			abort();
	}
	if (size < 2)
		return 0;
	size_t len = expand(in, data, size);
	const char *text = (const char *)in; /* as C callers see it: up to the first NUL */
	switch (data[0] % 3) {
	case 0:
		check_definition(text + 2, data[1] & 1 ? "web" : NULL);
		break;
	case 1:
		check_jsonpos(text + 1);
		break;
	default:
		define_web();
		run_request(in + 1, len - 1);
		free(reply.body);
		reply.body = NULL;
		break;
	}
	return 0;
}
