/*
 * Implementation of image/tree.h. The files are written whole from the
 * strings below; units are enabled and masked by the image's own systemctl
 * in a chroot (it only makes symlinks there, no manager is involved).
 */
#include "image/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "image/run.h"

#define AGENT_PATH "/usr/local/sbin/shoji-agent"
#define FIRST_BOOT_PATH "/usr/local/lib/shoji/first-boot"

const char tree_fstab[] =
	"# shoji images are one ext4 file system on the whole disk (no partition table).\n"
	"/dev/vda / ext4 defaults,errors=remount-ro 0 1\n";

/* initramfs-tools' own fsck hook finds the root's type by probing the
 * device, which does not exist at build time: this one puts e2fsck in the
 * initrd regardless, so the root is checked before it is mounted. */
const char tree_fsck_hook[] =
	"#!/bin/sh\n"
	"# shoji: e2fsck for the ext4 root on /dev/vda (see docs/images.md).\n"
	"[ \"$1\" = prereqs ] && exit 0\n"
	". /usr/share/initramfs-tools/hook-functions\n"
	"copy_exec /sbin/fsck\ncopy_exec /sbin/logsave\ncopy_exec /sbin/fsck.ext4\n";

static const char modules[] =
	"# The host channel (docs/agent.md): virtio-vsock, before shoji-agent starts.\n"
	"vmw_vsock_virtio_transport\n";

static const char agent_unit[] =
	"[Unit]\n"
	"Description=shoji guest agent (host channel over vsock)\n"
	"After=systemd-modules-load.service local-fs.target\n"
	"# Restarted for as long as the VM runs: the host's only way in.\n"
	"StartLimitIntervalSec=0\n"
	"\n[Service]\n"
	"ExecStart=" AGENT_PATH "\n"
	"Restart=always\n"
	"RestartSec=1\n"
	"\n[Install]\n"
	"WantedBy=multi-user.target\n";

/* Ordered after the target it is wanted by: it runs once the target is
 * reached, which is what the benchmarks wait for on the serial line. */
static const char marker_unit[] =
	"[Unit]\n"
	"Description=shoji: tell the host on ttyS0 that multi-user.target is reached\n"
	"After=multi-user.target\n"
	"\n[Service]\n"
	"Type=oneshot\n"
	"ExecStart=/bin/sh -c 'echo \"" TREE_MARKER "\" > /dev/ttyS0'\n"
	"\n[Install]\n"
	"WantedBy=multi-user.target\n";

/* Disables itself once the script succeeded; a failed script runs again at
 * the next boot. */
static const char first_boot_unit[] =
	"[Unit]\n"
	"Description=shoji: the image's first-boot script (runs once)\n"
	"After=network.target local-fs.target\n"
	"\n[Service]\n"
	"Type=oneshot\n"
	"ExecStart=" FIRST_BOOT_PATH "\n"
	"ExecStartPost=/bin/systemctl disable shoji-first-boot.service\n"
	"\n[Install]\n"
	"WantedBy=multi-user.target\n";

/* Root logs in on the serial console without a password (root's password
 * stays locked, so nothing else lets anyone in): the console is the host's. */
static const char autologin[] =
	"[Service]\n"
	"ExecStart=\n"
	"ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM\n";

/*
 * The serial getty waits for udev to announce ttyS0, by default for 90 s.
 * A heavily loaded host (two guests booting on a software CPU) has taken
 * longer than that, and the console then never got its login prompt. Five
 * minutes, not for ever: multi-user.target is ordered after the getty, so
 * a machine whose ttyS0 never shows up as a device must still finish
 * booting.
 */
static const char serial_device_timeout[] =
	"[Unit]\nJobRunningTimeoutSec=5min\n";

static const char network[] =
	"[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n";

/* Only the DNS servers DHCP names: no built-in fallback servers, no
 * multicast name lookups. */
static const char resolved[] =
	"[Resolve]\nFallbackDNS=\nLLMNR=no\nMulticastDNS=no\n";

static const char apt_periodic[] =
	"// shoji master images change only by being rebuilt: apt never runs by itself.\n"
	"APT::Periodic::Enable \"0\";\n";

static bool mkdir_p(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int r = mkdir(path, 0755);
		*p = '/';
		if (r < 0 && errno != EEXIST)
			return log_error("%s: cannot create directory: %m", path), false;
	}
	return true;
}

static bool write_file(const char *root, const char *rel, const char *text, mode_t mode)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s", root, rel);
	if (!mkdir_p(path))
		return false;
	unlink(path); /* a symlink from a package (resolv.conf) is replaced, never followed */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	size_t len = strlen(text);
	bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
	if (fd >= 0 && (fchmod(fd, mode) < 0 || close(fd) < 0))
		ok = false;
	if (!ok)
		log_error("%s: cannot write: %m", path);
	return ok;
}

static bool copy_in(const char *root, const char *src, const char *dest, int log_fd)
{
	char to[4096];
	snprintf(to, sizeof(to), "%s%s", root, dest);
	if (!mkdir_p(to))
		return false;
	/* cp -R: a directory arrives with its contents; files become root's. */
	char *argv[] = { "cp", "-R", "-P", "--preserve=mode,timestamps", "-T", (char *)src, to, NULL };
	return run_cmd(argv, NULL, log_fd, NULL) == 0 ||
	       (log_error("cannot copy %s to %s in the image (see cp's message above)", src, dest),
		false);
}

static bool systemctl(const char *root, const char *verb, const char *const units[], int log_fd)
{
	char *argv[16] = { "chroot", (char *)root, "systemctl", "--no-reload", "--quiet",
			   (char *)verb };
	size_t n = 6;
	for (size_t i = 0; units[i] && n + 1 < ARRAY_SIZE(argv); i++)
		argv[n++] = (char *)units[i];
	argv[n] = NULL;
	return run_cmd(argv, NULL, log_fd, NULL) == 0 ||
	       (log_error("systemctl %s %s in the image failed", verb, units[0]), false);
}

static bool write_identity(const char *root, const struct recipe *r)
{
	char hostname[80], hosts[256];
	snprintf(hostname, sizeof(hostname), "%s\n", r->hostname.text);
	snprintf(hosts, sizeof(hosts), "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n"
		 "::1\tlocalhost ip6-localhost ip6-loopback\n", r->hostname.text);
	return write_file(root, "/etc/hostname", hostname, 0644) &&
	       write_file(root, "/etc/hosts", hosts, 0644) &&
	       write_file(root, "/etc/fstab", tree_fstab, 0644) &&
	       write_file(root, "/etc/modules-load.d/shoji.conf", modules, 0644);
}

static bool write_units(const char *root, const struct recipe *r)
{
	return write_file(root, "/etc/systemd/system/shoji-agent.service", agent_unit, 0644) &&
	       write_file(root, "/etc/systemd/system/shoji-ready.service", marker_unit, 0644) &&
	       write_file(root, "/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf",
			  autologin, 0644) &&
	       write_file(root, "/etc/systemd/system/dev-ttyS0.device.d/shoji-timeout.conf",
			  serial_device_timeout, 0644) &&
	       write_file(root, "/etc/systemd/network/50-shoji-dhcp.network", network, 0644) &&
	       write_file(root, "/etc/systemd/resolved.conf.d/shoji.conf", resolved, 0644) &&
	       write_file(root, "/etc/apt/apt.conf.d/99shoji-no-periodic", apt_periodic, 0644) &&
	       (!r->first_boot.text ||
		write_file(root, "/etc/systemd/system/shoji-first-boot.service", first_boot_unit,
			   0644));
}

static bool make_executable(const char *root, const char *rel)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s", root, rel);
	return chmod(path, 0755) == 0 || (log_error("%s: cannot chmod: %m", path), false);
}

static bool copy_recipe_files(const char *root, const struct recipe *r, const char *dir,
			      const char *agent, int log_fd)
{
	char src[4096];
	if (!copy_in(root, agent, AGENT_PATH, log_fd) || !make_executable(root, AGENT_PATH))
		return false;
	if (r->first_boot.text) {
		snprintf(src, sizeof(src), "%s/%s", dir, r->first_boot.text);
		if (!copy_in(root, src, FIRST_BOOT_PATH, log_fd) ||
		    !make_executable(root, FIRST_BOOT_PATH))
			return false;
	}
	for (size_t i = 0; i < r->ncopies; i++) {
		snprintf(src, sizeof(src), "%s/%s", dir, r->copies[i].src);
		if (!copy_in(root, src, r->copies[i].dest, log_fd))
			return false;
	}
	return true;
}

/* Masked, not just disabled: nothing in the image reaches the internet by
 * itself (apt's daily download and upgrade, an NTP client). */
static const char *const masked[] = { "apt-daily.timer", "apt-daily-upgrade.timer",
				      "systemd-timesyncd.service", NULL };

bool tree_customise(const char *root, const struct recipe *r, const char *recipe_dir,
		    const char *agent, int log_fd)
{
	const char *enable[] = { "shoji-agent.service", "shoji-ready.service",
				 "serial-getty@ttyS0.service", "systemd-networkd.service",
				 "systemd-resolved.service",
				 r->first_boot.text ? "shoji-first-boot.service" : NULL, NULL };
	return write_identity(root, r) && write_units(root, r) &&
	       copy_recipe_files(root, r, recipe_dir, agent, log_fd) &&
	       systemctl(root, "enable", enable, log_fd) && systemctl(root, "mask", masked, log_fd);
}

static time_t clamp_epoch;

/* mke2fs -d copies each file's atime too: it is set to the (clamped)
 * mtime, since extracting and reading the tree left it at build time. */
static int clamp_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)type;
	(void)ftw;
	time_t t = st->st_mtime < clamp_epoch ? st->st_mtime : clamp_epoch;
	struct timespec ts[2] = { { t, 0 }, { t, 0 } };
	return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -1 : 0;
}

bool tree_clamp_mtimes(const char *root, time_t epoch)
{
	clamp_epoch = epoch;
	/* FTW_MOUNT: never into something still mounted in the tree. */
	if (nftw(root, clamp_one, 64, FTW_PHYS | FTW_MOUNT) != 0)
		return log_error("%s: cannot set the files' times: %m", root), false;
	return true;
}
