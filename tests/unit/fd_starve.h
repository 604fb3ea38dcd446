/*
 * For tests of what a listener does when the process has run out of file
 * descriptors (accept4 failing with EMFILE must neither spin nor drop
 * clients): lowers RLIMIT_NOFILE and takes every descriptor left, gives
 * some back on request, and restores everything at the end. Also the
 * process's CPU time, to show that nothing spun meanwhile.
 */
#ifndef SHOJI_TESTS_FD_STARVE_H
#define SHOJI_TESTS_FD_STARVE_H

#include <errno.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define FD_STARVE_LIMIT 256

struct fd_starve {
	struct rlimit old;
	int fill[FD_STARVE_LIMIT];
	int n;
};

/* Every descriptor below FD_STARVE_LIMIT taken; asserts the next one fails. */
static inline void fd_starve_begin(struct fd_starve *s)
{
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &s->old), 0);
	struct rlimit low = s->old;
	low.rlim_cur = FD_STARVE_LIMIT;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	s->n = 0;
	while (s->n < FD_STARVE_LIMIT && (s->fill[s->n] = dup(0)) >= 0)
		s->n++;
	assert_int_equal(errno, EMFILE);
}

/* Gives back `count` descriptors (fewer if fewer are held). */
static inline void fd_starve_give(struct fd_starve *s, int count)
{
	for (int i = 0; i < count && s->n > 0; i++)
		close(s->fill[--s->n]);
}

static inline void fd_starve_end(struct fd_starve *s)
{
	fd_starve_give(s, s->n);
	setrlimit(RLIMIT_NOFILE, &s->old);
}

static inline double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
