/*
 * The CLI's HTTP client for shojid's API socket, written by hand: HTTP/1.0
 * requests (so answers come without chunked encoding and end when the
 * daemon closes), and for consoles an HTTP/1.1 upgrade to a raw stream.
 */
#ifndef SHOJI_CLI_HTTP_H
#define SHOJI_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http_response {
	int status;
	char *body;     /* NUL-terminated, malloc'd */
	size_t len;
};

/* Connects to the API socket; -1 with a one-line message on stderr. */
int http_connect(const char *socket_path);
/* A whole request and its whole answer; false (message printed) on I/O failure. */
bool http_call(const char *socket_path, const char *method, const char *path, const char *body,
	       struct http_response *out);
/*
 * Sends a request and copies the answer's body to stdout as it arrives
 * (events, logs -f); returns the HTTP status, or -1.
 */
int http_stream(const char *socket_path, const char *path);
/*
 * A GET whose answer is read a line at a time (the event stream): buf
 * holds what has arrived and not been handed out yet.
 */
struct http_lines {
	int fd;
	size_t len, used;
	char buf[16384];
};

/* Sends the GET and reads the answer's head: true on 200, else false (error printed). */
bool http_lines_open(const char *socket_path, const char *path, struct http_lines *s);
/*
 * The next line, without its newline, NUL-terminated (valid until the next
 * call); NULL at the end of the stream, on a line longer than the buffer,
 * or after timeout_ms (-1: no timeout) without a whole line.
 */
const char *http_lines_next(struct http_lines *s, int timeout_ms);
void http_lines_close(struct http_lines *s);
/* Upgrades to a console stream; the connected fd, or -1 (message printed). */
int http_upgrade(const char *socket_path, const char *path, const char *protocol);

#endif
