/*
 * read-file and write-file (docs/agent.md). A copy in is written to a
 * temporary file beside its path and renamed into place only once all
 * `size` bytes arrived and are on disk, so a failed or interrupted copy
 * never leaves a half-written file under the name. A copy out whose file
 * changes size on the way ends without the empty DATA, which the host
 * reads as a failed copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/errbuf.h"
#include "base/log.h"

/* ---- read-file ---- */

/* Reads up to n bytes, retrying EINTR: the count, 0 at EOF, -1 on error. */
static ssize_t read_some(int fd, uint8_t *buf, size_t n)
{
	ssize_t r;
	do
		r = read(fd, buf, n);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Streams `size` bytes of fd as DATA frames; false if the file changed size. */
static bool send_contents(struct agent_conn *c, int fd, uint64_t size)
{
	uint64_t sent = 0;
	for (;;) {
		/* one byte past the size asks whether the file grew */
		size_t want = size - sent < AGENT_FRAME_MAX ? (size_t)(size - sent) : AGENT_FRAME_MAX;
		ssize_t n = read_some(fd, c->buf, want ? want : 1);
		if (n < 0) {
			log_warn("connection %u: read-file: %m", c->id);
			return false;
		}
		if (want == 0 || n == 0)
			return want == 0 && n == 0;
		int r = agent_frame_send(c->fd, AGENT_DATA, c->buf, (size_t)n, AGENT_IO_MS);
		if (r < 0) {
			log_warn("connection %u: read-file: host gone: %s", c->id, strerror(-r));
			return false;
		}
		sent += (uint64_t)n;
	}
}

void agent_op_read_file(struct agent_conn *c, const struct agent_request *r)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer */
	int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		agent_reply_error(c, "%s: %s", r->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		agent_reply_error(c, "%s: not a regular file", r->path);
		close(fd);
		return;
	}
	bool ok = agent_reply_ok(c, json_pack("{s:I,s:i}", "size", (json_int_t)st.st_size,
					      "mode", (int)(st.st_mode & 07777)));
	if (ok && send_contents(c, fd, (uint64_t)st.st_size))
		agent_frame_send(c->fd, AGENT_DATA, "", 0, AGENT_IO_MS);
	else if (ok)
		log_warn("connection %u: %s changed size while read; copy ended", c->id, r->path);
	close(fd);
}

/* ---- write-file ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The temporary name beside path: DIR/.NAME.shoji-XXXXXX; false if path has no NAME. */
static bool temp_name(const char *path, char *tmp, size_t len)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash + 1;
	if (*name == '\0')
		return false;
	int n = snprintf(tmp, len, "%.*s.%s.shoji-XXXXXX", (int)(name - path), path, name);
	return n > 0 && (size_t)n < len;
}

/*
 * Receives exactly `size` bytes of DATA and the empty end into fd: true, or
 * false with the reason in err (empty when the host left: nobody to tell).
 */
static bool receive_contents(struct agent_conn *c, const struct agent_request *r, int fd,
			     char *err, size_t errlen)
{
	unsigned long long got = 0, size = r->size;
	for (;;) {
		unsigned type;
		size_t len;
		int e = agent_frame_recv(c->fd, &type, c->buf, &len, AGENT_IO_MS);
		if (e == -ENODATA || e == -ECONNRESET || e == -EPIPE) {
			log_warn("connection %u: write-file %s: host left after %llu of %llu bytes", c->id,
				 r->path, got, size);
			return errbuf_fail(err, errlen, "%s", "");
		}
		if (e < 0)
			return errbuf_fail(err, errlen, "write-file: %s", e == -EPROTO ? "malformed frame" : strerror(-e));
		if (type != AGENT_DATA)
			return errbuf_fail(err, errlen, "write-file: expected DATA, not %s", agent_frame_type_name(type));
		if (len == 0 && got != size)
			return errbuf_fail(err, errlen, "%s: ended after %llu of %llu bytes", r->path, got, size);
		if (len == 0)
			return true;
		if (len > size - got)
			return errbuf_fail(err, errlen, "%s: more than the %llu bytes announced", r->path, size);
		if ((e = write_all(fd, c->buf, len)) < 0)
			return errbuf_fail(err, errlen, "%s: %s", r->path, strerror(-e));
		got += len;
	}
}

/* fsync, close (always) and rename into place; the directory synced so the name lasts. */
static bool commit(const char *tmp, const char *path, int fd, char *err, size_t errlen)
{
	if (fsync(fd) < 0) {
		int e = errno;
		close(fd);
		return errbuf_fail(err, errlen, "%s: %s", path, strerror(e));
	}
	if (close(fd) < 0 || rename(tmp, path) < 0)
		return errbuf_fail(err, errlen, "%s: %s", path, strerror(errno));
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path + 1), path);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return true;
}

/*
 * Temporary file, contents, commit. On failure the temporary file is
 * removed before the error reply goes, so a host that reads the reply
 * finds nothing left behind.
 */
static bool write_file(struct agent_conn *c, const struct agent_request *r, char *tmp)
{
	char err[512] = "";
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return agent_reply_error(c, "%s: %s", r->path, strerror(errno));
	/* fchmod, not what the umask leaves: exactly the mode asked for. The
	 * file is root's because the agent is (it runs as root). */
	bool ok = fchmod(fd, r->mode) == 0 || errbuf_fail(err, sizeof(err), "%s: %s", r->path, strerror(errno));
	if (ok && !agent_reply_ok(c, NULL)) {
		close(fd);
		unlink(tmp);
		return false;
	}
	ok = ok && receive_contents(c, r, fd, err, sizeof(err));
	if (ok)
		ok = commit(tmp, r->path, fd, err, sizeof(err));
	else
		close(fd);
	if (ok)
		return true;
	unlink(tmp);
	if (err[0])
		agent_reply_error(c, "%s", err);
	return false;
}

void agent_op_write_file(struct agent_conn *c, const struct agent_request *r)
{
	char tmp[PATH_MAX];
	if (!temp_name(r->path, tmp, sizeof(tmp))) {
		agent_reply_error(c, "%s: names a directory, not a file", r->path);
		return;
	}
	if (write_file(c, r, tmp))
		agent_reply_ok(c, json_pack("{s:I}", "size", (json_int_t)r->size));
}
