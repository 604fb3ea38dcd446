/*
 * A small JSON walker that only tracks positions (see jsonpos.h). It trusts
 * the text's syntax (jansson parsed it first) but still stops at the end of
 * the text and at a nesting depth limit, so it cannot overrun on any input.
 */
#include "daemon/jsonpos.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_PATH 256

struct walker {
	const char *p;
	int line;
	const char *want;
	int found;
};

static void skip_space(struct walker *w)
{
	while (*w->p == ' ' || *w->p == '\t' || *w->p == '\r' || *w->p == '\n') {
		if (*w->p == '\n')
			w->line++;
		w->p++;
	}
}

/* Copies a string's raw content (escapes kept as written) into out. */
static void read_string(struct walker *w, char *out, size_t len)
{
	size_t n = 0;
	w->p++; /* the opening quote */
	while (*w->p && *w->p != '"') {
		if (*w->p == '\\' && w->p[1])
			w->p++;
		if (*w->p == '\n')
			w->line++;
		if (out && n + 1 < len)
			out[n++] = *w->p;
		w->p++;
	}
	if (*w->p == '"')
		w->p++;
	if (out)
		out[n] = '\0';
}

static void walk_value(struct walker *w, char *path, int depth);

static void walk_object(struct walker *w, char *path, int depth)
{
	size_t base = strlen(path);
	w->p++;
	for (;;) {
		skip_space(w);
		if (*w->p != '"')
			break;
		int key_line = w->line;
		char key[128];
		read_string(w, key, sizeof(key));
		snprintf(path + base, MAX_PATH - base, "%s%s", base ? "." : "", key);
		if (!w->found && strcmp(path, w->want) == 0)
			w->found = key_line;
		skip_space(w);
		if (*w->p == ':')
			w->p++;
		walk_value(w, path, depth + 1);
		path[base] = '\0';
		skip_space(w);
		if (*w->p != ',')
			break;
		w->p++;
	}
	if (*w->p == '}')
		w->p++;
}

static void walk_array(struct walker *w, char *path, int depth)
{
	size_t base = strlen(path);
	w->p++;
	for (unsigned i = 0;; i++) {
		skip_space(w);
		if (*w->p == ']' || !*w->p)
			break;
		snprintf(path + base, MAX_PATH - base, "[%u]", i);
		walk_value(w, path, depth + 1);
		path[base] = '\0';
		skip_space(w);
		if (*w->p != ',')
			break;
		w->p++;
	}
	if (*w->p == ']')
		w->p++;
}

static void walk_value(struct walker *w, char *path, int depth)
{
	skip_space(w);
	if (depth > MAX_DEPTH || !*w->p)
		return;
	if (*w->p == '{')
		walk_object(w, path, depth);
	else if (*w->p == '[')
		walk_array(w, path, depth);
	else if (*w->p == '"')
		read_string(w, NULL, 0);
	else
		while (*w->p && !strchr(",}] \t\r\n", *w->p))
			w->p++; /* number, true, false, null */
}

int jsonpos_key_line(const char *text, const char *path)
{
	struct walker w = { .p = text, .line = 1, .want = path };
	char buf[MAX_PATH] = "";
	walk_value(&w, buf, 0);
	return w.found;
}
