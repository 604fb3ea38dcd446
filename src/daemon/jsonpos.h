/*
 * Where a key sits in a JSON text. jansson reports the line of a syntax
 * error but keeps no positions for a document it parsed, so the definition
 * checks (vmdef.c) find the line of a key they refuse here, by walking the
 * text again. Paths name keys as "disks[1].format".
 */
#ifndef SHOJI_DAEMON_JSONPOS_H
#define SHOJI_DAEMON_JSONPOS_H

/*
 * The 1-based line of the key at `path` in `text` (which jansson already
 * accepted), or 0 when there is no such key. The first match wins.
 */
int jsonpos_key_line(const char *text, const char *path);

#endif
