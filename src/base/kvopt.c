/*
 * Implementation of base/kvopt.h: split at commas, find the key in the
 * caller's table, refuse what no table entry can take, then hand the value
 * over. The checks run in a fixed order so that the first thing wrong with
 * an item is the one reported.
 */
#include "base/kvopt.h"

#include <stdio.h>
#include <string.h>

#include "base/errbuf.h"

struct kvopt_state {
	const struct kvopt_spec *spec;
	bool seen[KVOPT_MAX_KEYS];
	const struct kvopt_key *prev;    /* key of the item before, for free_text */
};

const struct kvopt_key *kvopt_find(const struct kvopt_spec *spec, const char *name, size_t len)
{
	for (size_t i = 0; i < spec->nkeys; i++)
		if (strlen(spec->keys[i].name) == len && strncmp(spec->keys[i].name, name, len) == 0)
			return &spec->keys[i];
	return NULL;
}

const char *kvopt_key_list(const struct kvopt_spec *spec, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < spec->nkeys && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 spec->keys[i].name);
	return buf;
}

/* An item without '=': the rest of a comma-holding value, or a typo. */
static bool no_equals(struct kvopt_state *s, const char *item, size_t len, char *err,
		      size_t errlen)
{
	const char *opt = s->spec->option;
	if (s->prev && s->prev->free_text)
		return errbuf_fail(err, errlen, "%s %s: '%.*s' follows a comma; a %s may not "
				   "contain commas", opt, s->prev->name, (int)len, item, s->prev->name);
	return errbuf_fail(err, errlen, "%s '%.*s': not key=value; use %s", opt, (int)len, item,
			   s->spec->syntax);
}

/* Finds the key of "key=value" (len bytes at item, '=' at eq) and checks its count. */
static const struct kvopt_key *item_key(struct kvopt_state *s, const char *item, size_t len,
					const char *eq, char *err, size_t errlen)
{
	const char *opt = s->spec->option;
	size_t klen = (size_t)(eq - item);
	const struct kvopt_key *k = kvopt_find(s->spec, item, klen);
	char keys[256];
	if (!k) {
		errbuf_fail(err, errlen, "%s %.*s: unknown key '%.*s'; keys are %s", opt, (int)len,
			    item, (int)klen, item, kvopt_key_list(s->spec, keys, sizeof(keys)));
		return NULL;
	}
	size_t i = (size_t)(k - s->spec->keys);
	if (s->seen[i] && !k->repeat) {
		errbuf_fail(err, errlen, "%s %.*s: key '%s' given twice", opt, (int)len, item, k->name);
		return NULL;
	}
	s->seen[i] = true;
	return k;
}

static bool parse_item(struct kvopt_state *s, const char *item, size_t len, void *ctx, char *err,
		       size_t errlen)
{
	const char *opt = s->spec->option;
	if (len == 0)
		return errbuf_fail(err, errlen, "%s: empty item (a doubled or trailing comma); use %s",
				   opt, s->spec->syntax);
	const char *eq = memchr(item, '=', len);
	if (!eq)
		return no_equals(s, item, len, err, errlen);
	const struct kvopt_key *k = item_key(s, item, len, eq, err, errlen);
	if (!k)
		return false;
	char value[KVOPT_VALUE_MAX + 1];
	size_t vlen = len - (size_t)(eq - item) - 1;
	if (vlen == 0)
		return errbuf_fail(err, errlen, "%s %s=: empty value", opt, k->name);
	if (vlen >= sizeof(value))
		return errbuf_fail(err, errlen, "%s %s=%.40s...: value too long", opt, k->name, eq + 1);
	memcpy(value, eq + 1, vlen);
	value[vlen] = '\0';
	s->prev = k;
	return k->set(ctx, value, err, errlen);
}

bool kvopt_parse(const struct kvopt_spec *spec, const char *text, void *ctx, char *err,
		 size_t errlen)
{
	struct kvopt_state s = { .spec = spec };
	if (spec->nkeys > KVOPT_MAX_KEYS)
		return errbuf_fail(err, errlen, "%s: internal error: more than %d keys", spec->option,
				   KVOPT_MAX_KEYS);
	for (const char *p = text;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (!parse_item(&s, p, len, ctx, err, errlen))
			return false;
		if (!comma)
			break;
		p = comma + 1;
	}
	for (size_t i = 0; i < spec->nkeys; i++)
		if (spec->keys[i].required && !s.seen[i])
			return errbuf_fail(err, errlen, "%s %s: %s= is missing; use %s", spec->option,
					   text, spec->keys[i].name, spec->syntax);
	return true;
}

bool kvopt_on_off(const char *option, const char *key, const char *value, bool *out, char *err,
		  size_t errlen)
{
	if (strcmp(value, "on") == 0)
		*out = true;
	else if (strcmp(value, "off") == 0)
		*out = false;
	else
		return errbuf_fail(err, errlen, "%s %s=%s: use %s=on or %s=off", option, key, value,
				   key, key);
	return true;
}
