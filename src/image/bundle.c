/* Implementation of image/bundle.h. */
#include "image/bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "block/block.h"
#include "image/run.h"

int bundle_mkfs(const char *root, const char *raw, uint64_t size, const char *uuid,
		const char *hash_seed, time_t epoch, int log_fd)
{
	char ext[128], blocks[32], fake[64], sde[64];
	snprintf(ext, sizeof(ext), "hash_seed=%s,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
		 hash_seed);
	snprintf(blocks, sizeof(blocks), "%lluk", (unsigned long long)(size >> 10));
	/* E2FSPROGS_FAKE_TIME: the superblock's and root's times; files keep
	 * the (clamped) times of the tree. */
	snprintf(fake, sizeof(fake), "E2FSPROGS_FAKE_TIME=%lld", (long long)epoch);
	snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%lld", (long long)epoch);
	char *env[] = { fake, sde, NULL };
	char *argv[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "root",
			 "-U", (char *)uuid, "-E", ext, "-d", (char *)root, (char *)raw, blocks, NULL };
	return run_cmd(argv, env, log_fd, NULL);
}

/* Appends "sif <N> ctime @epoch" and the same for atime for every inode dumpe2fs's text shows in
 * use (each group's inodes minus its "Free inodes:" ranges), but the
 * reserved ones other than the root directory. */
static void ctime_script(const char *dump, FILE *out, time_t epoch)
{
	unsigned long ipg = 0, group = 0, next = 1, end = 0;
	const char *p = strstr(dump, "Inodes per group:");
	if (p)
		ipg = strtoul(p + 17, NULL, 10);
	for (p = dump; ipg && (p = strstr(p, "\nGroup ")); p++) {
		if (p[7] < '0' || p[7] > '9')
			continue; /* "Group descriptor size:" */
		group = strtoul(p + 7, NULL, 10);
		next = group * ipg + 1;
		end = next + ipg;
		const char *fl = strstr(p, "  Free inodes: "), *nl = strstr(p + 1, "\nGroup ");
		/* nl: the next group's line ("Group descriptor" comes before all). */
		const char *q = fl && (!nl || fl < nl) ? fl + 15 : NULL;
		for (;;) {
			unsigned long a = end, b = end - 1;
			if (q && *q >= '1' && *q <= '9') {
				char *e;
				a = strtoul(q, &e, 10);
				b = *e == '-' ? strtoul(e + 1, &e, 10) : a;
				q = *e == ',' ? e + 2 : NULL;
			} else {
				q = NULL;
			}
			for (; next < a && next < end; next++)
				if (next == 2 || next >= 11)
					fprintf(out, "sif <%lu> ctime @%lld\nsif <%lu> atime @%lld\n", next,
						(long long)epoch, next, (long long)epoch);
			if (a >= end)
				break;
			next = b + 1;
		}
	}
}

bool bundle_fix_ctimes(const char *raw, const char *script, time_t epoch, int log_fd)
{
	char *dump = NULL;
	char *dargv[] = { "dumpe2fs", (char *)raw, NULL };
	if (run_cmd(dargv, NULL, log_fd, &dump) != 0)
		return log_error("dumpe2fs %s failed", raw), false;
	FILE *f = fopen(script, "we");
	if (f)
		ctime_script(dump, f, epoch);
	free(dump);
	if (!f || fclose(f) != 0)
		return log_error("%s: %m", script), false;
	/* The superblock's write time too. */
	char fake[64];
	snprintf(fake, sizeof(fake), "E2FSPROGS_FAKE_TIME=%lld", (long long)epoch);
	char *env[] = { fake, NULL };
	char *argv[] = { "debugfs", "-w", "-f", (char *)script, (char *)raw, NULL };
	return run_cmd(argv, env, log_fd, NULL) == 0 ||
	       (log_error("debugfs could not set the inode change times in %s", raw), false);
}

int bundle_qcow2(const char *raw, const char *qcow2, bool compress)
{
	struct block_dev *src = NULL, *dst = NULL;
	struct block_open_opts ro = { .read_only = true }, rw = { 0 };
	int r = block_open(&src, raw, "raw", &ro);
	if (r < 0)
		return r;
	struct block_create_opts co = { .size = block_get_size(src) };
	r = block_create(qcow2, "qcow2", &co);
	if (r == 0)
		r = block_open(&dst, qcow2, "qcow2", &rw);
	if (r == 0)
		r = block_copy(src, dst, compress);
	if (r < 0 && dst)
		log_error("%s: cannot write the qcow2 image: %s", qcow2, strerror(-r));
	block_close(dst);
	block_close(src);
	return r;
}

static bool copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	struct stat st;
	bool ok = in >= 0 && out >= 0 && fstat(in, &st) == 0;
	for (off_t left = ok ? st.st_size : 0; ok && left > 0;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		ok = n > 0;
		left -= n;
	}
	if (out >= 0 && close(out) < 0)
		ok = false;
	if (in >= 0)
		close(in);
	if (!ok)
		log_error("cannot copy %s to %s: %m", from, to);
	return ok;
}

/* The version of the only vmlinuz-* in boot; false after one line when
 * there is none or more than one. */
static bool kernel_version(const char *boot, char *version, size_t len)
{
	DIR *d = opendir(boot);
	if (!d)
		return log_error("%s: %m (did the kernel package install?)", boot), false;
	unsigned found = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strncmp(e->d_name, "vmlinuz-", 8) == 0 && found++ == 0)
			snprintf(version, len, "%s", e->d_name + 8);
	closedir(d);
	if (found != 1)
		log_error("%s: %s kernel (vmlinuz-*); the recipe's 'kernel' must be one kernel "
			  "package and 'packages' must not add another", boot, found ? "more than one" : "no");
	return found == 1;
}

bool bundle_kernel(const char *root, const char *vmlinuz, const char *initrd, char *version,
		   size_t len)
{
	char boot[4096], from[4400];
	snprintf(boot, sizeof(boot), "%s/boot", root);
	if (!kernel_version(boot, version, len))
		return false;
	snprintf(from, sizeof(from), "%s/vmlinuz-%s", boot, version);
	if (!copy_file(from, vmlinuz))
		return false;
	snprintf(from, sizeof(from), "%s/initrd.img-%s", boot, version);
	if (access(from, R_OK) < 0)
		return log_error("%s: no initrd (is initramfs-tools installed?)", from), false;
	return copy_file(from, initrd);
}

static bool digest(const char *label, const void *data, size_t len, int fd,
		   unsigned char md[EVP_MAX_MD_SIZE], uint64_t *bytes)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
	if (ok && data)
		ok = EVP_DigestUpdate(ctx, data, len) == 1;
	static unsigned char buf[1 << 20];
	uint64_t total = 0;
	for (ssize_t n = 1; ok && fd >= 0 && n > 0;) {
		n = read(fd, buf, sizeof(buf));
		ok = n >= 0 && EVP_DigestUpdate(ctx, buf, (size_t)n) == 1;
		total += n > 0 ? (uint64_t)n : 0;
	}
	unsigned mdlen = 0;
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	if (bytes)
		*bytes = total;
	if (!ok)
		log_error("%s: cannot compute sha256: %m", label);
	return ok;
}

bool bundle_sha256(const char *path, char hex[65], uint64_t *bytes)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return log_error("%s: %m", path), false;
	bool ok = digest(path, NULL, 0, fd, md, bytes);
	close(fd);
	for (int i = 0; ok && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return ok;
}

bool bundle_uuid(const char *salt, const char *text, char out[37])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t sl = strlen(salt), tl = strlen(text);
	char *both = malloc(sl + tl + 1);
	if (!both)
		return log_error("out of memory"), false;
	memcpy(both, salt, sl);
	memcpy(both + sl, text, tl + 1);
	bool ok = digest(salt, both, sl + tl, -1, md, NULL);
	free(both);
	if (!ok)
		return false;
	md[6] = (md[6] & 0x0f) | 0x40; /* version 4 layout, variant 1: a valid random-style UUID */
	md[8] = (md[8] & 0x3f) | 0x80;
	char *p = out;
	for (int i = 0; i < 16; i++) {
		p += sprintf(p, "%02x", md[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			*p++ = '-';
	}
	return true;
}
