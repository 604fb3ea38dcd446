/* Implementation of image/diagnose.h. Patterns are apt's and mke2fs's
 * English messages; mmdebstrap runs them with the caller's locale, which
 * is why build.c does not change it: an unknown message still comes out
 * as the tool's last error line. */
#include "image/diagnose.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"

#define MAX_LOG (4u << 20)

/* The line of text containing needle (the last one), copied into buf with
 * runs of blanks collapsed and a leading "E: " or "W: " dropped. */
static const char *line_with(const char *text, const char *needle, char *buf, size_t len)
{
	const char *hit = NULL;
	for (const char *p = text; (p = strstr(p, needle)); p++)
		hit = p;
	if (!hit || len == 0)
		return NULL;
	while (hit > text && hit[-1] != '\n')
		hit--;
	if (!strncmp(hit, "E: ", 3) || !strncmp(hit, "W: ", 3))
		hit += 3;
	size_t n = 0;
	for (; *hit && *hit != '\n' && n + 1 < len; hit++)
		if (!isspace((unsigned char)*hit) || (n && buf[n - 1] != ' '))
			buf[n++] = isspace((unsigned char)*hit) ? ' ' : *hit;
	buf[n] = '\0';
	return buf;
}

/* The word after prefix in text ("Unable to locate package foo"). */
static bool word_after(const char *text, const char *prefix, char *buf, size_t len)
{
	const char *p = strstr(text, prefix);
	if (!p)
		return false;
	p += strlen(prefix);
	size_t n = 0;
	while (*p && !isspace((unsigned char)*p) && *p != '\'' && n + 1 < len)
		buf[n++] = *p++;
	buf[n] = '\0';
	return n > 0;
}

static const char *const unreachable[] = {
	"Temporary failure resolving", "Could not resolve", "Could not connect",
	"Connection refused", "Network is unreachable", "Unable to connect", "Failed to fetch",
	"does not have a Release file", "Connection timed out", NULL };

static const char *const missing_package[] = {
	"Unable to locate package ", "has no installation candidate", "Package '", NULL };

static bool missing(const char *text, const struct recipe *r, char *out, size_t len)
{
	char name[128];
	if (!word_after(text, missing_package[0], name, sizeof(name)) &&
	    !(strstr(text, missing_package[1]) && word_after(text, missing_package[2], name,
							      sizeof(name))))
		return false;
	unsigned line = recipe_package_line(r, name);
	snprintf(out, len, "%s:%u: key '%s': no package '%s' in %s; check the name "
		 "(apt-cache policy %s) or remove it", r->file, line,
		 r->kernel.text && !strcmp(r->kernel.text, name) ? "kernel" : "packages", name,
		 r->suite.text, name);
	return true;
}

void diagnose_line(const char *tool, const char *text, const struct recipe *r, const char *dir,
		   char *out, size_t len)
{
	char l[256];
	if (strstr(text, "No space left on device") || strstr(text, "Disk full")) {
		snprintf(out, len, "no space left on device under %s; free some space there (a "
			 "build needs about twice the image's contents) or build elsewhere", dir);
		return;
	}
	if (!strcmp(tool, "mmdebstrap") && missing(text, r, out, len))
		return;
	for (size_t i = 0; !strcmp(tool, "mmdebstrap") && unreachable[i]; i++)
		if (line_with(text, unreachable[i], l, sizeof(l))) {
			snprintf(out, len, "cannot reach the Debian archive (%s): %s; check the network, "
				 "or set 'mirror =' in %s", r->mirror.text ? r->mirror.text :
				 "deb.debian.org", l, r->file);
			return;
		}
	if (!line_with(text, "E: ", l, sizeof(l)) && !line_with(text, "rror", l, sizeof(l)) &&
	    !line_with(text, ":", l, sizeof(l)))
		snprintf(l, sizeof(l), "no message");
	snprintf(out, len, "%s failed: %s (SHOJI_DEBUG=1 shows its whole output)", tool, l);
}

void diagnose_report(const char *tool, const char *log_path, const struct recipe *r,
		     const char *dir)
{
	char *text = calloc(1, MAX_LOG + 1), out[512];
	FILE *f = fopen(log_path, "re");
	if (f && text) {
		/* The end of a long log holds the error. */
		if (fseek(f, -(long)MAX_LOG, SEEK_END) < 0)
			rewind(f);
		text[fread(text, 1, MAX_LOG, f)] = '\0';
	}
	if (f)
		fclose(f);
	diagnose_line(tool, text ? text : "", r, dir, out, sizeof(out));
	log_error("%s", out);
	free(text);
}

void diagnose_no_space(const char *dir)
{
	char out[512];
	diagnose_line("", "No space left on device", NULL, dir, out, sizeof(out));
	log_error("%s", out);
}
