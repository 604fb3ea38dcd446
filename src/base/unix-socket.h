/*
 * The listening Unix sockets of shoji-vmm (console, API, vsock) and shojid
 * (API): one way to make them, so that every one is 0600 from the moment
 * its file exists and none steals another process's socket.
 */
#ifndef SHOJI_BASE_UNIX_SOCKET_H
#define SHOJI_BASE_UNIX_SOCKET_H

/*
 * Listens on a stream socket at path (flags: 0 or SOCK_NONBLOCK for the
 * socket; it is always close-on-exec). A socket file left by a process
 * that is gone (a connect is refused) is replaced; a path that is not a
 * socket, or a socket someone still answers on, is refused. Returns the
 * descriptor, or -1 after one error line that starts with `what` (the
 * option or role, e.g. "--api-socket").
 */
int unix_listen(const char *what, const char *path, int backlog, int flags);

#endif
