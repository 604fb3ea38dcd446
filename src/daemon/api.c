/*
 * The API's routes and handlers (see api.h and docs/api.md). A request's
 * body is collected up to API_BODY_MAX (larger: 413); every path segment
 * and body is checked before it reaches the supervisor; any malformed
 * request gets a JSON error and a 4xx status, never more.
 */
#include "daemon/api.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/log.h"
#include "daemon/api-internal.h"
#include "daemon/vmdef.h"

struct request {
	char *body;
	size_t len;
	bool too_big;
};

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, char *text,
				 const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Takes the reference to j. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		return MHD_NO;
	size_t n = strlen(text);
	char *nl = realloc(text, n + 2);
	if (!nl) {
		free(text);
		return MHD_NO;
	}
	nl[n] = '\n';
	nl[n + 1] = '\0';
	return send_text(c, status, nl, "application/json");
}

enum MHD_Result api_send_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return send_json(c, status, json_pack("{s:s}", "error", msg));
}

unsigned api_http_status(enum sup_status st)
{
	switch (st) {
	case SUP_OK: return MHD_HTTP_OK;
	case SUP_BAD_REQUEST: return MHD_HTTP_BAD_REQUEST;
	case SUP_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
	case SUP_CONFLICT: return MHD_HTTP_CONFLICT;
	case SUP_BUSY: return MHD_HTTP_SERVICE_UNAVAILABLE;
	default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* ---- routes ---- */

struct route_args {
	struct api *api;
	struct MHD_Connection *c;
	const char *method;
	const char *name;     /* NULL for collection routes */
	const char *sub;      /* "start", "logs", ...; NULL for the VM itself */
	struct request *req;
};

static bool is(const char *a, const char *b)
{
	return a && strcmp(a, b) == 0;
}

static enum MHD_Result route_vms(struct route_args *a)
{
	struct sup *sup = api_sup(a->api);
	char err[1024];
	if (is(a->method, "GET"))
		return send_json(a->c, MHD_HTTP_OK, sup_list(sup));
	if (!is(a->method, "POST"))
		return api_send_error(a->c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET or POST on /v1/vms");
	char name[VMDEF_NAME_MAX + 1];
	enum sup_status st = sup_define(sup, NULL, a->req->body ? a->req->body : "", name, err, sizeof(err));
	if (st != SUP_OK)
		return api_send_error(a->c, api_http_status(st), err);
	return send_json(a->c, MHD_HTTP_CREATED, sup_show(sup, name));
}

static enum MHD_Result route_vm(struct route_args *a)
{
	struct sup *sup = api_sup(a->api);
	char err[1024];
	enum sup_status st;
	if (is(a->method, "GET")) {
		json_t *o = sup_show(sup, a->name);
		if (!o) {
			snprintf(err, sizeof(err), "no VM named '%s'", a->name);
			return api_send_error(a->c, MHD_HTTP_NOT_FOUND, err);
		}
		return send_json(a->c, MHD_HTTP_OK, o);
	}
	if (is(a->method, "PUT")) {
		st = sup_define(sup, a->name, a->req->body ? a->req->body : "", NULL, err, sizeof(err));
		if (st != SUP_OK)
			return api_send_error(a->c, api_http_status(st), err);
		return send_json(a->c, MHD_HTTP_OK, sup_show(sup, a->name));
	}
	if (is(a->method, "DELETE")) {
		st = sup_remove(sup, a->name, err, sizeof(err));
		if (st != SUP_OK)
			return api_send_error(a->c, api_http_status(st), err);
		return send_json(a->c, MHD_HTTP_OK, json_pack("{s:s}", "removed", a->name));
	}
	return api_send_error(a->c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET, PUT or DELETE on /v1/vms/NAME");
}

static enum MHD_Result route_definition(struct route_args *a)
{
	char err[1024];
	enum sup_status st;
	if (!is(a->method, "GET"))
		return api_send_error(a->c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET (and PUT /v1/vms/NAME to change it)");
	char *text = sup_definition_text(api_sup(a->api), a->name, err, sizeof(err), &st);
	if (!text)
		return api_send_error(a->c, api_http_status(st), err);
	return send_text(a->c, MHD_HTTP_OK, text, "application/json");
}

static enum MHD_Result route_action(struct route_args *a)
{
	char err[1024];
	if (!is(a->method, "POST"))
		return api_send_error(a->c, MHD_HTTP_METHOD_NOT_ALLOWED, "actions are POST requests");
	enum sup_status st = sup_action(api_sup(a->api), a->name, a->sub, err, sizeof(err));
	if (st != SUP_OK)
		return api_send_error(a->c, api_http_status(st), err);
	return send_json(a->c, MHD_HTTP_ACCEPTED, sup_show(api_sup(a->api), a->name));
}

static enum MHD_Result route_sub(struct route_args *a)
{
	if (is(a->sub, "definition"))
		return route_definition(a);
	if (is(a->sub, "logs"))
		return api_stream_logs(a->api, a->c, a->method, a->name);
	if (is(a->sub, "console"))
		return api_stream_console(a->api, a->c, a->method, a->name);
	if (is(a->sub, "agent"))
		return api_stream_agent(a->api, a->c, a->method, a->name);
	if (is(a->sub, "start") || is(a->sub, "stop") || is(a->sub, "kill") || is(a->sub, "restart") ||
	    is(a->sub, "pause") || is(a->sub, "resume"))
		return route_action(a);
	return api_send_error(a->c, MHD_HTTP_NOT_FOUND, "unknown path (see docs/api.md)");
}

/* Splits "/v1/vms/NAME/SUB" into its parts; false for anything else. */
static bool split_path(const char *url, char *name, size_t nlen, char *sub, size_t slen)
{
	name[0] = sub[0] = '\0';
	if (strncmp(url, "/v1/vms", 7) != 0)
		return false;
	const char *p = url + 7;
	if (*p == '\0')
		return true;
	if (*p++ != '/')
		return false;
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n >= nlen)
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	if (!slash)
		return true;
	p = slash + 1;
	if (strlen(p) == 0 || strlen(p) >= slen || strchr(p, '/'))
		return false;
	memcpy(sub, p, strlen(p) + 1);
	return true;
}

static enum MHD_Result dispatch(struct api *api, struct MHD_Connection *c, const char *url,
				const char *method, struct request *req)
{
	if (req->too_big)
		return api_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than 64 KiB");
	if (is(url, "/v1/events"))
		return api_stream_events(api, c, method);
	if (is(url, "/v1/version")) {
		if (!is(method, "GET"))
			return api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
		return send_json(c, MHD_HTTP_OK, json_pack("{s:s, s:s}", "daemon", "shojid", "version", SHOJI_VERSION));
	}
	char name[VMDEF_NAME_MAX + 2], sub[16];
	if (!split_path(url, name, sizeof(name), sub, sizeof(sub)))
		return api_send_error(c, MHD_HTTP_NOT_FOUND, "unknown path (see docs/api.md)");
	if (name[0] && !vmdef_name_valid(name))
		return api_send_error(c, MHD_HTTP_BAD_REQUEST,
				  "bad VM name: " VMDEF_NAME_RULE);
	struct route_args a = { api, c, method, name[0] ? name : NULL, sub[0] ? sub : NULL, req };
	if (!a.name)
		return route_vms(&a);
	return a.sub ? route_sub(&a) : route_vm(&a);
}

enum MHD_Result api_handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			   const char *version, const char *data, size_t *data_size, void **con_cls)
{
	(void)version;
	struct request *req = *con_cls;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		return MHD_YES;
	}
	if (*data_size > 0) {
		if (!req->too_big && req->len + *data_size <= API_BODY_MAX) {
			char *b = realloc(req->body, req->len + *data_size + 1);
			if (!b)
				return MHD_NO;
			memcpy(b + req->len, data, *data_size);
			req->len += *data_size;
			b[req->len] = '\0';
			req->body = b;
		} else {
			req->too_big = true;
		}
		*data_size = 0;
		return MHD_YES;
	}
	if (req->body && strlen(req->body) != req->len)
		return api_send_error(c, MHD_HTTP_BAD_REQUEST, "request body holds a NUL byte");
	return dispatch(cls, c, url, method, req);
}

void api_request_done(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct request *req = *con_cls;
	if (req) {
		free(req->body);
		free(req);
	}
	*con_cls = NULL;
}
