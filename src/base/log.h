/*
 * Logging for every shoji program: one line per message on stderr, prefixed
 * with the program name and level. When stderr is the systemd journal
 * ($JOURNAL_STREAM names stderr's device and inode), each line starts with
 * its syslog priority instead ("<3>" error, "<4>" warn, "<6>" info, "<7>"
 * debug), so that `journalctl -p err` finds errors; the journal keeps the
 * time. Elsewhere a daemon may ask for a timestamp in front of each line. Messages about guest misbehaviour go at
 * debug or warn level and are rate-limited by their callers with
 * log_limited() (a guest must not be able to flood the host's log).
 */
#ifndef SHOJI_BASE_LOG_H
#define SHOJI_BASE_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Also looks at $JOURNAL_STREAM, once: call it before any thread logs. */
void log_init(const char *program_name, enum log_level level);
void log_set_level(enum log_level level);

/*
 * Whether lines start with the time (UTC, "2026-01-31T12:00:00.123Z ")
 * while stderr is not the journal. Off by default: a command's message to
 * its user needs none.
 */
void log_set_timestamps(bool on);
bool log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct ratelimit;

/*
 * log_msg() through a rate limit (base/ratelimit.h), for a line a guest (or
 * anything outside the process) can cause at will. Once lines were dropped,
 * the next one let through comes after one line saying how many. A line
 * below the log level uses up nothing.
 */
void log_limited(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
