/* The log rate limiter (see ratelimit.h), as a lock-free GCRA bucket. */
#include "base/ratelimit.h"

#include "base/util.h"

void ratelimit_init(struct ratelimit *rl, unsigned interval_s, unsigned burst)
{
	rl->interval_ns = (uint64_t)interval_s * 1000000000u;
	rl->burst = burst;
	atomic_init(&rl->full_at_ns, 0);
	atomic_init(&rl->held_back, 0);
}

bool ratelimit_pass_at(struct ratelimit *rl, uint64_t now_ns, uint64_t *held_back)
{
	*held_back = 0;
	if (rl->burst == 0)
		return false;
	uint64_t cost = rl->interval_ns / rl->burst;
	uint64_t full_at = atomic_load(&rl->full_at_ns);
	uint64_t next;
	do {
		/* An idle bucket refills only to `burst`: the past is not credit. */
		uint64_t from = full_at > now_ns ? full_at : now_ns;
		next = from + cost;
		if (next - now_ns > rl->interval_ns) {
			atomic_fetch_add(&rl->held_back, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&rl->full_at_ns, &full_at, next));
	*held_back = atomic_exchange(&rl->held_back, 0);
	return true;
}

bool ratelimit_pass(struct ratelimit *rl, uint64_t *held_back)
{
	return ratelimit_pass_at(rl, monotonic_ns(), held_back);
}
