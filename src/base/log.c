/*
 * Implementation of base/log.h. A whole line is formatted first and written
 * with one write(2) so that lines from several threads never interleave.
 */
#include "base/log.h"

#include "base/ratelimit.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "shoji";
static _Atomic int log_threshold = LOG_LEVEL_INFO;
static bool log_journal;              /* stderr is the journal's stream */
static _Atomic bool log_timestamps;

/* syslog(3)'s LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, as journald reads them. */
static const int level_priority[] = {
	[LOG_LEVEL_ERROR] = 3,
	[LOG_LEVEL_WARN] = 4,
	[LOG_LEVEL_INFO] = 6,
	[LOG_LEVEL_DEBUG] = 7,
};

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/*
 * systemd sets $JOURNAL_STREAM to "DEVICE:INODE" of the stream it gave
 * the service as stderr. A child whose stderr went elsewhere may still
 * have inherited the variable, so it counts only when it matches stderr
 * (systemd.exec(5) asks for this check).
 */
static bool stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	char end;
	struct stat st;
	if (!v || sscanf(v, "%llu:%llu%c", &dev, &ino, &end) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *program_name, enum log_level level)
{
	log_program = program_name;
	log_journal = stderr_is_journal();
	log_set_level(level);
}

void log_set_timestamps(bool on)
{
	atomic_store(&log_timestamps, on);
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

bool log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t used = 0;
	if (log_journal) {
		used = (size_t)snprintf(line, sizeof(line), "<%d>", level_priority[level]);
	} else if (atomic_load(&log_timestamps)) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		used = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		used += (size_t)snprintf(line + used, sizeof(line) - used, ".%03ldZ ",
					 ts.tv_nsec / 1000000);
	}
	int n = snprintf(line + used, sizeof(line) - used, "%s: %s: ", log_program,
			 level_names[level]);
	if (n < 0)
		return;
	used += (size_t)n < sizeof(line) - used ? (size_t)n : sizeof(line) - used - 1;

	int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
	if (m > 0)
		used += (size_t)m < sizeof(line) - used ? (size_t)m : sizeof(line) - used - 1;

	/* Keep one message on one line even when the text was truncated. */
	if (used >= sizeof(line) - 1)
		used = sizeof(line) - 2;
	line[used++] = '\n';

	ssize_t w = write(STDERR_FILENO, line, used);
	(void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load(&log_threshold))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_limited(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load(&log_threshold))
		return;
	uint64_t held_back;
	if (!ratelimit_pass(rl, &held_back))
		return;
	if (held_back)
		log_msg(level, "(rate limit: %llu lines like the next one were not logged)",
			(unsigned long long)held_back);
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
