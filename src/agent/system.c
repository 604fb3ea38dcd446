/*
 * The agent's ops about the guest as a whole (docs/agent.md): ping, info,
 * shutdown and set-time. In test mode (--listen-unix, on a developer's or
 * the CI's machine) shutdown and set-time answer as usual but change
 * nothing: a test must never power off or re-time the host.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/log.h"

double agent_uptime(void)
{
	FILE *f = fopen("/proc/uptime", "re");
	double up = -1;
	if (f) {
		if (fscanf(f, "%lf", &up) != 1)
			up = -1;
		fclose(f);
	}
	return up;
}

/* The guest's wall clock goes with every ping: the host sets it again when it drifted. */
void agent_op_ping(struct agent_conn *c, const struct agent_request *r)
{
	(void)r;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	agent_reply_ok(c, json_pack("{s:f, s:f}", "uptime_s", agent_uptime(), "time",
				    (double)now.tv_sec + now.tv_nsec / 1e9));
}

/* ---- info ---- */

/* An os-release value: unquoted, backslash escapes resolved (os-release(5)). */
static void os_value(char *v)
{
	size_t n = strcspn(v, "\n");
	v[n] = '\0';
	char q = v[0];
	if ((q == '"' || q == '\'') && n >= 2 && v[n - 1] == q) {
		v[n - 1] = '\0';
		memmove(v, v + 1, n - 1);
	}
	char *w = v;
	for (char *p = v; *p; p++) {
		if (*p == '\\' && p[1])
			p++;
		*w++ = *p;
	}
	*w = '\0';
}

static json_t *os_release(void)
{
	static const char *const keys[][2] = {
		{ "ID", "id" }, { "VERSION_ID", "version_id" }, { "PRETTY_NAME", "pretty_name" },
	};
	json_t *os = json_object();
	FILE *f = fopen("/etc/os-release", "re");
	if (!f)
		f = fopen("/usr/lib/os-release", "re");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			if (strcmp(line, keys[i][0]) == 0) {
				os_value(eq + 1);
				/* json_string is NULL for bytes that are not UTF-8: left out */
				json_object_set_new(os, keys[i][1], json_string(eq + 1));
			}
		}
	}
	if (f)
		fclose(f);
	return os;
}

static unsigned prefix_len(const struct sockaddr *mask)
{
	const uint8_t *p;
	size_t n;
	if (!mask)
		return 0;
	if (mask->sa_family == AF_INET) {
		p = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
		n = 4;
	} else {
		p = ((const struct sockaddr_in6 *)mask)->sin6_addr.s6_addr;
		n = 16;
	}
	unsigned bits = 0;
	for (size_t i = 0; i < n; i++)
		bits += (unsigned)__builtin_popcount(p[i]);
	return bits;
}

static json_t *addresses(void)
{
	json_t *list = json_array();
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) < 0)
		return list;
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		int fam = i->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		char text[INET6_ADDRSTRLEN];
		const void *a = fam == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
					       : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		if (!inet_ntop(fam, a, text, sizeof(text)))
			continue;
		json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:i}", "ifname", i->ifa_name,
						      "family", fam == AF_INET ? "inet" : "inet6",
						      "address", text, "prefix", (int)prefix_len(i->ifa_netmask)));
	}
	freeifaddrs(ifs);
	return list;
}

void agent_op_info(struct agent_conn *c, const struct agent_request *r)
{
	(void)r;
	struct utsname u;
	char host[256] = "";
	if (uname(&u) < 0)
		strcpy(u.release, "");
	gethostname(host, sizeof(host) - 1);
	agent_reply_ok(c, json_pack("{s:s,s:s,s:i,s:o,s:s,s:s,s:f,s:o}",
				    "agent", "shoji-agent", "version", SHOJI_VERSION,
				    "protocol", AGENT_PROTOCOL, "os", os_release(),
				    "kernel", u.release, "hostname", host,
				    "uptime_s", agent_uptime(), "addresses", addresses()));
}

/* ---- shutdown ---- */

void agent_op_shutdown(struct agent_conn *c, const struct agent_request *r)
{
	/* The reply goes first: once power-off starts, nothing may answer. */
	if (agent_reply_ok(c, NULL))
		c->after = r->reboot ? AFTER_REBOOT : AFTER_POWEROFF;
}

/* `systemctl poweroff|reboot`: true if systemctl ran and said yes. */
static bool ask_systemd(bool reboot)
{
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = { "systemctl", reboot ? "reboot" : "poweroff", NULL };
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void agent_power(enum agent_after what, bool test_mode)
{
	bool again = what == AFTER_REBOOT;
	if (test_mode) {
		log_info("test mode: would %s now", again ? "reboot" : "power off");
		return;
	}
	log_info("%s requested by the host", again ? "reboot" : "power-off");
	if (ask_systemd(again))
		return;
	/* No systemd (a busybox initramfs) or it failed: do it ourselves. */
	sync();
	if (reboot(again ? RB_AUTOBOOT : RB_POWER_OFF) < 0)
		log_error("reboot(2): %m");
}

/* ---- set-time ---- */

void agent_op_set_time(struct agent_conn *c, const struct agent_request *r)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double before = (double)now.tv_sec + now.tv_nsec / 1e9;
	double sec = floor(r->time);
	struct timespec ts = { .tv_sec = (time_t)sec, .tv_nsec = (long)((r->time - sec) * 1e9) };
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	if (c->test_mode)
		log_info("test mode: would set the clock to %.3f", r->time);
	else if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
		agent_reply_error(c, "set-time: %s", strerror(errno));
		return;
	}
	agent_reply_ok(c, json_pack("{s:f}", "adjusted_s", r->time - before));
}
