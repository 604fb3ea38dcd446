/*
 * The daemon's agent client (src/daemon/agent-link.c) against a hostile or
 * wedged "agent": a thread plays the VM's vsock socket (the CONNECT
 * handshake, then whatever the case says). Every call must end within its
 * deadline with one line saying what was wrong, never read more than a
 * frame, never crash.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/agent-proto.h"
#include "base/util.h"
#include "daemon/agent-link.h"

enum play { PLAY_OK, PLAY_HUGE, PLAY_WRONG_TYPE, PLAY_NOT_JSON, PLAY_SILENT, PLAY_NO_LISTENER,
	    PLAY_ERROR_REPLY, PLAY_CLOSE };

struct fake {
	char path[108];
	int listen_fd;
	enum play play;
	pthread_t thread;
};

static void send_raw(int fd, const void *p, size_t n)
{
	ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
	(void)w;
}

static void reply_json(int fd, unsigned type, const char *text)
{
	uint8_t hdr[AGENT_FRAME_HEADER];
	agent_frame_header(hdr, type, strlen(text));
	send_raw(fd, hdr, sizeof(hdr));
	send_raw(fd, text, strlen(text));
}

static void *fake_vm(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->listen_fd, NULL, NULL);
	if (c < 0)
		return NULL;
	char line[64] = "";
	for (size_t n = 0; n + 1 < sizeof(line) && read(c, line + n, 1) == 1 && line[n] != '\n'; n++)
		;
	if (f->play == PLAY_NO_LISTENER) {
		send_raw(c, "ERR connection refused\n", 23);
		close(c);
		return NULL;
	}
	send_raw(c, "OK 1027\n", 8);
	static uint8_t buf[AGENT_FRAME_MAX];
	unsigned type;
	size_t len;
	agent_frame_recv(c, &type, buf, &len, 1000); /* the whole request, before any answer */
	static const uint8_t huge[] = { AGENT_REPLY, 0xff, 0xff, 0xff };
	switch (f->play) {
	case PLAY_OK: reply_json(c, AGENT_REPLY, "{\"ok\":true,\"uptime_s\":1.5}"); break;
	case PLAY_HUGE: send_raw(c, huge, sizeof(huge)); break;
	case PLAY_WRONG_TYPE: reply_json(c, AGENT_STDOUT, "{\"ok\":true}"); break;
	case PLAY_NOT_JSON: reply_json(c, AGENT_REPLY, "{\"ok\":tru"); break;
	case PLAY_ERROR_REPLY: reply_json(c, AGENT_REPLY, "{\"error\":\"no such op\"}"); break;
	case PLAY_SILENT: sleep(2); break;
	default: break;
	}
	close(c);
	return NULL;
}

static struct fake *fake_start(enum play play)
{
	struct fake *f = calloc(1, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/shoji-agent-link-%d-%d.sock", getpid(), (int)play);
	unlink(f->path);
	f->play = play;
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, f->path, strlen(f->path) + 1);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_vm, f), 0);
	return f;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	unlink(f->path);
	free(f);
}

/* One ping through the fake; the reply (NULL on failure) and the error line. */
static json_t *ping(enum play play, char *err, size_t errlen, long *took_ms)
{
	struct fake *f = fake_start(play);
	json_t *req = json_pack("{s:s}", "op", "ping");
	long t0 = monotonic_ms();
	err[0] = '\0';
	json_t *reply = agent_link_call(f->path, req, 500, err, errlen);
	*took_ms = monotonic_ms() - t0;
	json_decref(req);
	fake_stop(f);
	return reply;
}

static void expect_failure(enum play play, const char *words)
{
	char err[256];
	long ms;
	json_t *reply = ping(play, err, sizeof(err), &ms);
	assert_null(reply);
	assert_non_null(strstr(err, words));
	assert_null(strchr(err, '\n'));
	assert_true(ms < 1500);
}

static void test_a_good_reply(void **state)
{
	(void)state;
	char err[256];
	long ms;
	json_t *reply = ping(PLAY_OK, err, sizeof(err), &ms);
	if (!reply)
		fail_msg("%s", err);
	assert_true(json_is_true(json_object_get(reply, "ok")));
	json_decref(reply);
}

static void test_a_frame_too_long_is_refused_unread(void **state)
{
	(void)state;
	expect_failure(PLAY_HUGE, "agent:");
}

static void test_a_frame_of_the_wrong_type(void **state)
{
	(void)state;
	expect_failure(PLAY_WRONG_TYPE, "where a REPLY belongs");
}

static void test_a_reply_that_is_not_json(void **state)
{
	(void)state;
	expect_failure(PLAY_NOT_JSON, "bad reply");
}

static void test_the_agents_error_is_passed_on(void **state)
{
	(void)state;
	expect_failure(PLAY_ERROR_REPLY, "no such op");
}

static void test_a_silent_agent_fails_at_the_deadline(void **state)
{
	(void)state;
	expect_failure(PLAY_SILENT, "deadline");
}

static void test_no_agent_listening(void **state)
{
	(void)state;
	expect_failure(PLAY_NO_LISTENER, "no agent answers");
}

static void test_closed_without_a_reply(void **state)
{
	(void)state;
	expect_failure(PLAY_CLOSE, "without a reply");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_good_reply),
		cmocka_unit_test(test_a_frame_too_long_is_refused_unread),
		cmocka_unit_test(test_a_frame_of_the_wrong_type),
		cmocka_unit_test(test_a_reply_that_is_not_json),
		cmocka_unit_test(test_the_agents_error_is_passed_on),
		cmocka_unit_test(test_a_silent_agent_fails_at_the_deadline),
		cmocka_unit_test(test_no_agent_listening),
		cmocka_unit_test(test_closed_without_a_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
