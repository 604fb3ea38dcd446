/*
 * One line out of a failed tool's output (mmdebstrap, mke2fs): the
 * package the archive does not have (named with the recipe line it came
 * from), an archive that cannot be reached, a full disk; else the tool's
 * last error line, condensed. diagnose_line() is pure, for the unit tests.
 */
#ifndef SHOJI_IMAGE_DIAGNOSE_H
#define SHOJI_IMAGE_DIAGNOSE_H

#include <stddef.h>

#include "image/recipe.h"

/* The line for tool's output text, into out. dir: where the build ran. */
void diagnose_line(const char *tool, const char *text, const struct recipe *r, const char *dir,
		   char *out, size_t len);
/* Reads the log at path and logs diagnose_line()'s line as an error. */
void diagnose_report(const char *tool, const char *log_path, const struct recipe *r,
		     const char *dir);
/* Logs the one line of a full disk under dir. */
void diagnose_no_space(const char *dir);

#endif
