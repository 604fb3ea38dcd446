/*
 * The --net option parser (src/vmm/net-option.c): every accepted form, the
 * default MAC, and for every mistake one line that names the item at fault.
 * Also the option as shoji-vmm's command line takes it (repeatable, at
 * most VMM_MAX_NETS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>

#include "vmm/net-option.h"
#include "vmm/options.h"

static struct net_option opt;
static char err[512];

static bool parse(const char *text, unsigned index)
{
	err[0] = '\0';
	memset(&opt, 0xa5, sizeof(opt));
	return net_option_parse(text, index, &opt, err, sizeof(err));
}

/* Fails, and the message contains `want`. */
static void expect_error(const char *text, const char *want)
{
	assert_false(parse(text, 0));
	if (!strstr(err, want))
		fail_msg("'%s': error '%s' does not contain '%s'", text, err, want);
	assert_non_null(strstr(err, "--net"));
}

static void test_user(void **state)
{
	(void)state;
	assert_true(parse("user", 0));
	assert_int_equal(opt.kind, NET_USER);
	assert_int_equal(opt.slirp.nfwd, 0);
	const uint8_t mac0[6] = { 0x02, 0x73, 0x68, 0x6f, 0x00, 0x00 };
	assert_memory_equal(opt.mac, mac0, 6);
	assert_true(parse("user", 5));
	assert_int_equal(opt.mac[5], 5);
	assert_int_equal(opt.mac[0] & 3, 2); /* locally administered, unicast */
}

static void test_hostfwd(void **state)
{
	(void)state;
	assert_true(parse("user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-10.0.2.15:53,"
			  "hostfwd=:0.0.0.0:2222-:22", 0));
	assert_int_equal(opt.slirp.nfwd, 3);
	struct net_hostfwd *f = opt.slirp.fwd;
	assert_false(f[0].udp);
	assert_int_equal(f[0].host_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(f[0].host_port, 8080);
	assert_int_equal(f[0].guest_port, 80);
	assert_true(f[1].udp);
	assert_int_equal(f[1].host_addr.s_addr, htonl(INADDR_LOOPBACK)); /* default: loopback */
	assert_int_equal(f[1].host_port, 5353);
	assert_int_equal(f[1].guest_port, 53);
	assert_false(f[2].udp);
	assert_int_equal(f[2].host_addr.s_addr, 0);
	assert_true(parse("user,hostfwd=tcp::1-:65535", 0));
	assert_int_equal(opt.slirp.fwd[0].host_port, 1);
	assert_int_equal(opt.slirp.fwd[0].guest_port, 65535);
}

/* The host's loopback is out of reach unless host-loopback=on says so. */
static void test_host_loopback(void **state)
{
	(void)state;
	assert_true(parse("user", 0));
	assert_false(opt.slirp.host_loopback);
	assert_true(parse("user,host-loopback=on,hostfwd=tcp::2222-:22", 0));
	assert_true(opt.slirp.host_loopback);
	assert_int_equal(opt.slirp.nfwd, 1);
	assert_true(parse("user,host-loopback=off", 0));
	assert_false(opt.slirp.host_loopback);
	expect_error("user,host-loopback=yes", "host-loopback=yes: use on or off");
	expect_error("user,host-loopback=on,host-loopback=on", "given twice");
	expect_error("tap=tap0,host-loopback=on", "only --net user");
	expect_error("user,host-loopback=", "empty value");
	assert_null(strchr(err, '\n'));
}

static void test_tap_and_mac(void **state)
{
	(void)state;
	assert_true(parse("tap=tap0,mac=52:54:00:AB:cd:0f", 0));
	assert_int_equal(opt.kind, NET_TAP);
	assert_string_equal(opt.tap, "tap0");
	const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f };
	assert_memory_equal(opt.mac, mac, 6);
	assert_true(parse("tap=abcdefghijklmno", 0)); /* 15 bytes: the longest name */
	assert_true(parse("user,mac=02:00:00:00:00:01,hostfwd=tcp::80-:80", 0));
	assert_int_equal(opt.mac[5], 1);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("", "first item names the back end");
	expect_error("slirp", "first item names the back end");
	expect_error("tap=", "first item names the back end");
	expect_error("tap=abcdefghijklmnop", "at most 15 bytes");
	expect_error("user,", "empty item");
	expect_error("user,,mac=02:00:00:00:00:01", "empty item");
	expect_error("user,mac", "not key=value");
	expect_error("user,color=red", "unknown key 'color'");
	expect_error("user,mac=", "empty value");
	expect_error("user,mac=02:00:00:00:00", "six hex bytes");
	expect_error("user,mac=02:00:00:00:00:01:02", "six hex bytes");
	expect_error("user,mac=02-00-00-00-00-01", "six hex bytes");
	expect_error("user,mac=0g:00:00:00:00:01", "six hex bytes");
	expect_error("user,mac=01:00:00:00:00:01", "multicast");
	expect_error("user,mac=00:00:00:00:00:00", "zero address");
	expect_error("user,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02", "given twice");
	expect_error("tap=tap0,hostfwd=tcp::80-:80", "need --net user");
	expect_error("user,hostfwd=tcp:80-:80", "use hostfwd=");
	expect_error("user,hostfwd=tcp::80:80", "use hostfwd=");
	expect_error("user,hostfwd=tcp::80-:80:1", "use hostfwd=");
	expect_error("user,hostfwd=sctp::80-:80", "protocol 'sctp'");
	expect_error("user,hostfwd=tcp:localhost:80-:80", "not an IPv4 address");
	expect_error("user,hostfwd=tcp::80-10.0.2.16:80", "only the guest's");
	expect_error("user,hostfwd=tcp::0-:80", "from 1 to 65535");
	expect_error("user,hostfwd=tcp::65536-:80", "from 1 to 65535");
	expect_error("user,hostfwd=tcp::80-:", "from 1 to 65535");
	expect_error("user,hostfwd=tcp::-1-:80", "from 1 to 65535");
	expect_error("user,hostfwd=tcp::8x-:80", "from 1 to 65535");
	expect_error("user,hostfwd=tcp::80-:80,hostfwd=tcp::80-:81", "forwarded twice");
	/* The same port for tcp and udp is fine. */
	assert_true(parse("user,hostfwd=tcp::80-:80,hostfwd=udp::80-:80", 0));
	char many[1024] = "user";
	for (int i = 0; i <= NET_SLIRP_MAX_FWD; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), ",hostfwd=tcp::%d-:80", 1000 + i);
	expect_error(many, "more than 16 hostfwd");
}

static void test_command_line(void **state)
{
	(void)state;
	struct vmm_options o;
	char *ok[] = { "shoji-vmm", "--kernel", "/proc/self/exe", "--net", "user",
		       "--net", "tap=t1,mac=02:00:00:00:00:09", NULL };
	assert_true(options_parse(7, ok, &o, err, sizeof(err)));
	assert_int_equal(o.nnets, 2);
	assert_int_equal(o.nets[0].kind, NET_USER);
	assert_int_equal(o.nets[0].mac[5], 0);
	assert_int_equal(o.nets[1].kind, NET_TAP);
	assert_int_equal(o.nets[1].mac[5], 9);

	char *argv[2 + 2 * (VMM_MAX_NETS + 1) + 2];
	int argc = 0;
	argv[argc++] = "shoji-vmm";
	argv[argc++] = "--kernel";
	argv[argc++] = "/proc/self/exe";
	for (int i = 0; i <= VMM_MAX_NETS; i++) {
		argv[argc++] = "--net";
		argv[argc++] = "user";
	}
	argv[argc] = NULL;
	assert_false(options_parse(argc, argv, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "--net given more than 8 times"));
	char *bad[] = { "shoji-vmm", "--kernel", "/proc/self/exe", "--net", "wifi", NULL };
	assert_false(options_parse(5, bad, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "--net wifi"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_hostfwd),
		cmocka_unit_test(test_host_loopback),
		cmocka_unit_test(test_tap_and_mac),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_command_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
