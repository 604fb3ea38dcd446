/*
 * shoji-img build: the verb's options; the work is in src/image/build.c.
 * Its messages start with "shoji-img build:", the verb being a program of
 * its own for the minutes it runs.
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/shoji-img.h"
#include "image/build.h"

/* The shoji-agent beside this shoji-img (the build directory, bindir). */
static void default_agent(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(buf, len, "shoji-agent");
		return;
	}
	self[n] = '\0';
	snprintf(buf, len, "%s/shoji-agent", dirname(self));
}

int img_build(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 } };
	char agent[PATH_MAX];
	struct build_opts o = { .agent = NULL, .verbose = getenv("SHOJI_DEBUG") != NULL };
	int c;
	while ((c = getopt_long(argc, argv, "c", longopts, NULL)) != -1) {
		if (c == 'a')
			o.agent = optarg;
		else if (c == 'c')
			o.compress = true;
		else if (c == 'v')
			o.verbose = true;
		else
			return img_usage_error("build"), 1;
	}
	if (optind != argc - 2)
		return img_usage_error("build"), 1;
	if (!o.agent) {
		default_agent(agent, sizeof(agent));
		o.agent = agent;
	}
	o.recipe = argv[optind];
	o.out = argv[optind + 1];
	log_init("shoji-img build", getenv("SHOJI_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	return image_build(&o);
}
