/*
 * A rate limit for log lines that something outside the process can cause
 * as often as it likes: a guest driver resetting its device in a loop, a
 * guest writing to a port nobody claims. base/log.h asks callers to limit
 * those, and this is the one way to do it.
 *
 * Each limiter is a token bucket: `burst` lines may go at once, and after
 * that one line every interval/burst. A line that finds no token is
 * counted, and the next line let through is preceded by one line saying
 * how many were held back, so the log never hides that it dropped some.
 *
 * Give each log site (or each device's set of sites) its own limiter, so a
 * flood from one does not silence another. A VMM process runs one VM, so a
 * static limiter in a VMM file is a per-VM limit. Lock-free: any thread may
 * use the same limiter.
 */
#ifndef SHOJI_BASE_RATELIMIT_H
#define SHOJI_BASE_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
	uint64_t interval_ns;
	unsigned burst;
	/*
	 * The time at which the bucket would be full again ("theoretical
	 * arrival time"): each line let through moves it interval/burst
	 * later, and a line is let through while it stays within one interval
	 * of now.
	 */
	_Atomic uint64_t full_at_ns;
	_Atomic uint64_t held_back;   /* lines dropped since the last one let through */
};

#define RATELIMIT_INIT(interval_s, burst_) \
	{ .interval_ns = (uint64_t)(interval_s) * 1000000000u, .burst = (burst_) }

/*
 * What every guest-caused log site uses unless it has a reason not to:
 * 5 lines at once, then one every 12 s (5 a minute). A VMM has a few dozen
 * such sites, so a hostile guest can make it write at most a few hundred
 * short lines a minute.
 */
#define RATELIMIT_GUEST RATELIMIT_INIT(60, 5)

void ratelimit_init(struct ratelimit *rl, unsigned interval_s, unsigned burst);

/*
 * Whether a line may be logged at `now_ns` (CLOCK_MONOTONIC; the tests pass
 * their own). When it may, *held_back gets how many lines were dropped
 * since the last one let through, and that count starts again from 0.
 */
bool ratelimit_pass_at(struct ratelimit *rl, uint64_t now_ns, uint64_t *held_back);
/* The same at the current time. */
bool ratelimit_pass(struct ratelimit *rl, uint64_t *held_back);

#endif
