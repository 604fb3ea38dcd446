/*
 * Unit tests for kernel_parse (src/hv/boot.h) on synthetic images: a
 * bzImage must speak boot protocol 2.12+ with XLF_KERNEL_64 and load high;
 * an ELF64 must be an x86_64 ET_EXEC whose PT_LOAD segments lie in the
 * file and in RAM between 1 MiB and the MMIO hole, with its entry inside
 * one of them. The file is user input: every rejection must say why, and
 * no image, however cut, may make the parser read past its end (ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/util.h"
#include "hv/boot.h"
#include "hv/layout.h"
#include "kernel_images.h"

#define BOOT_ENTRY64_OFFSET 0x200 /* 64-bit entry: startup_64, 0x200 into the protected-mode code */

static bool parse(const uint8_t *img, size_t size, struct kernel_info *ki, char *why, size_t whylen)
{
	memset(ki, 0, sizeof(*ki));
	why[0] = '\0';
	return kernel_parse(img, size, ki, why, whylen);
}

/* Asserts that the image is refused with a reason; `what` names the case. */
static void expect_reject(const uint8_t *img, size_t size, const char *what)
{
	struct kernel_info ki;
	char why[256];
	if (parse(img, size, &ki, why, sizeof(why)))
		fail_msg("%s: accepted", what);
	if (why[0] == '\0')
		fail_msg("%s: refused without a reason", what);
}

static void expect_bz_reject(const struct bz_spec *s, const char *what)
{
	size_t size;
	uint8_t *img = bz_build(s, &size);
	expect_reject(img, size, what);
	free(img);
}

static void test_bz_valid(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	struct kernel_info ki;
	char why[256];
	if (!parse(img, size, &ki, why, sizeof(why)))
		fail_msg("valid bzImage refused: %s", why);

	size_t setup = bz_setup_bytes(&s);
	assert_int_equal(ki.kind, KERNEL_BZIMAGE);
	assert_int_equal(ki.protocol, s.version);
	assert_int_equal(ki.entry, LAYOUT_KERNEL_ADDR + BOOT_ENTRY64_OFFSET);
	assert_int_equal(ki.initrd_addr_max, s.initrd_addr_max);
	assert_int_equal(ki.cmdline_max, s.cmdline_size);
	assert_int_equal(ki.nseg, 1);
	assert_int_equal(ki.seg[0].paddr, LAYOUT_KERNEL_ADDR);
	assert_int_equal(ki.seg[0].offset, setup);
	assert_int_equal(ki.seg[0].filesz, s.payload);
	assert_true(ki.seg[0].memsz >= s.payload);
	/* The kernel decompresses to pref_address and needs init_size there. */
	assert_true(ki.mem_end >= s.pref_address + s.init_size);
	assert_true(ki.mem_end >= LAYOUT_KERNEL_ADDR + s.payload);
	free(img);
}

/* pref_address below 1 MiB (or 0): the kernel runs where it was loaded. */
static void test_bz_low_pref_address(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.pref_address = 0;
	s.init_size = 0x800000;
	s.payload = 0x20000;
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	struct kernel_info ki;
	char why[256];
	assert_true(parse(img, size, &ki, why, sizeof(why)));
	assert_true(ki.mem_end >= LAYOUT_KERNEL_ADDR + s.init_size);
	free(img);

	/* A payload bigger than init_size still has to fit. */
	s = bz_default();
	s.init_size = 0x1000;
	img = bz_build(&s, &size);
	assert_true(parse(img, size, &ki, why, sizeof(why)));
	assert_true(ki.mem_end >= LAYOUT_KERNEL_ADDR + s.payload);
	free(img);
}

/* setup_sects == 0 means 4 sectors (boot.rst: "If this field is 0, the real value is 4"). */
static void test_bz_setup_sects_zero(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.setup_sects = 0;
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	struct kernel_info ki;
	char why[256];
	assert_true(parse(img, size, &ki, why, sizeof(why)));
	assert_int_equal(ki.seg[0].offset, 5 * 512);
	assert_int_equal(ki.seg[0].filesz, s.payload);
	free(img);

	s.setup_sects = 30;
	img = bz_build(&s, &size);
	assert_true(parse(img, size, &ki, why, sizeof(why)));
	assert_int_equal(ki.seg[0].offset, 31 * 512);
	free(img);
}

static void test_bz_protocol(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.version = 0x020c; /* 2.12: the first with xloadflags */
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	struct kernel_info ki;
	char why[256];
	assert_true(parse(img, size, &ki, why, sizeof(why)));
	free(img);

	static const uint16_t old[] = { 0x020b, 0x0206, 0x0200, 0x0100, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(old); i++) {
		s.version = old[i];
		expect_bz_reject(&s, "protocol older than 2.12");
	}
}

static void test_bz_not_64bit(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G | XLF_EFI_HANDOVER_32;
	expect_bz_reject(&s, "no XLF_KERNEL_64");
	s.xloadflags = 0;
	expect_bz_reject(&s, "xloadflags 0");
}

static void test_bz_zimage(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.loadflags = 0; /* loads at 0x10000: a zImage */
	expect_bz_reject(&s, "zImage");
}

static void test_bz_no_signature(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	img[0x1fe] = 0xaa; /* boot flag byte-swapped: 0x55AA */
	img[0x1ff] = 0x55;
	expect_reject(img, size, "bad boot flag");
	free(img);

	img = bz_build(&s, &size);
	memcpy(img + 0x202, "HdrT", 4);
	expect_reject(img, size, "no HdrS");
	free(img);

	uint8_t zeros[8192] = { 0 };
	expect_reject(zeros, sizeof(zeros), "all zeros");
}

/* A file cut anywhere before the first payload byte is refused, never over-read. */
static void test_bz_truncated(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	size_t setup = bz_setup_bytes(&s);
	for (size_t len = 0; len <= setup; len++) {
		uint8_t *cut = malloc(len ? len : 1);
		assert_non_null(cut);
		memcpy(cut, img, len);
		struct kernel_info ki;
		char why[256];
		if (parse(cut, len, &ki, why, sizeof(why)))
			fail_msg("bzImage cut to %zu bytes (setup is %zu) accepted", len, setup);
		assert_true(why[0] != '\0');
		free(cut);
	}
	free(img);

	/* The setup sector count points past the end of the file. */
	s.setup_sects = 255;
	s.payload = 0;
	img = bz_build(&s, &size);
	expect_reject(img, 0x1000, "setup_sects past the end");
	free(img);
}

/* A short `why` buffer is truncated, not overrun. */
static void test_why_buffer_small(void **state)
{
	(void)state;
	uint8_t zeros[4096] = { 0 };
	char why[8];
	memset(why, 'x', sizeof(why));
	struct kernel_info ki;
	assert_false(kernel_parse(zeros, sizeof(zeros), &ki, why, 4));
	assert_true(memchr(why, '\0', 4) != NULL);
	assert_int_equal(why[4], 'x');
}

/* --- ELF --- */

static void expect_elf_reject(const struct elf_spec *s, const char *what)
{
	uint8_t *img = elf_build(s);
	expect_reject(img, s->size, what);
	free(img);
}

static void test_elf_valid(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	s.nph = 3;
	s.ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 0x1800, .p_filesz = 0x20,
				.p_memsz = 0x20 };
	s.ph[2] = elf_load(0x400000, ELF_DATA_OFF + 0x400, 0x100, 0x100);
	uint8_t *img = elf_build(&s);
	struct kernel_info ki;
	char why[256];
	if (!parse(img, s.size, &ki, why, sizeof(why)))
		fail_msg("valid ELF refused: %s", why);
	assert_int_equal(ki.kind, KERNEL_ELF);
	assert_int_equal(ki.entry, s.eh.e_entry);
	assert_int_equal(ki.nseg, 2); /* the note is not loaded */
	assert_int_equal(ki.seg[0].paddr, 0x100000);
	assert_int_equal(ki.seg[0].offset, ELF_DATA_OFF);
	assert_int_equal(ki.seg[0].filesz, 0x200);
	assert_int_equal(ki.seg[0].memsz, 0x3000);
	assert_int_equal(ki.seg[1].paddr, 0x400000);
	assert_int_equal(ki.seg[1].filesz, 0x100);
	assert_true(ki.mem_end >= 0x400100);
	/* The command line must fit its area in the layout. */
	assert_true(ki.cmdline_max >= 255 && ki.cmdline_max <= LAYOUT_CMDLINE_MAX - 1);
	assert_true(ki.initrd_addr_max >= 0x37ffffff);
	free(img);

	/* Entry in the second segment. */
	s.eh.e_entry = 0x4000ff;
	img = elf_build(&s);
	assert_true(parse(img, s.size, &ki, why, sizeof(why)));
	assert_int_equal(ki.entry, 0x4000ff);
	free(img);
}

static void test_elf_header_rejects(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	s.eh.e_ident[EI_CLASS] = ELFCLASS32;
	expect_elf_reject(&s, "ELFCLASS32");

	s = elf_default();
	s.eh.e_ident[EI_DATA] = ELFDATA2MSB;
	expect_elf_reject(&s, "big endian");

	s = elf_default();
	s.eh.e_machine = EM_386;
	expect_elf_reject(&s, "EM_386");
	s.eh.e_machine = EM_AARCH64;
	expect_elf_reject(&s, "EM_AARCH64");

	s = elf_default();
	s.eh.e_type = ET_DYN;
	expect_elf_reject(&s, "ET_DYN");
	s.eh.e_type = ET_REL;
	expect_elf_reject(&s, "ET_REL");

	s = elf_default();
	s.nph = 0;
	expect_elf_reject(&s, "no program headers");

	s = elf_default();
	s.eh.e_phoff = s.size - 8;
	expect_elf_reject(&s, "program headers past the end");
	s.eh.e_phoff = UINT64_MAX - 16;
	expect_elf_reject(&s, "program header offset wraps");

	s = elf_default();
	s.eh.e_phentsize = 32;
	expect_elf_reject(&s, "wrong e_phentsize");

	s = elf_default();
	s.ph[0].p_type = PT_NOTE;
	expect_elf_reject(&s, "no PT_LOAD");
}

static void test_elf_truncated_header(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	uint8_t *img = elf_build(&s);
	for (size_t len = SELFMAG; len < sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr); len++) {
		uint8_t *cut = malloc(len);
		assert_non_null(cut);
		memcpy(cut, img, len);
		struct kernel_info ki;
		char why[256];
		if (parse(cut, len, &ki, why, sizeof(why)))
			fail_msg("ELF cut to %zu bytes accepted", len);
		free(cut);
	}
	free(img);
}

static void test_elf_segment_rejects(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	s.ph[0].p_offset = s.size - 0x100; /* 0x200 bytes from 0x100 before the end */
	expect_elf_reject(&s, "segment past end of file");

	s = elf_default();
	s.ph[0].p_offset = UINT64_MAX - 0x100;
	expect_elf_reject(&s, "segment offset wraps");

	s = elf_default();
	s.ph[0].p_filesz = s.size; /* offset 0x1000 + whole file */
	s.ph[0].p_memsz = s.size;
	expect_elf_reject(&s, "segment file size past end");

	s = elf_default();
	s.ph[0].p_filesz = 0x4000; /* more than memsz */
	s.size = ELF_DATA_OFF + 0x4000;
	expect_elf_reject(&s, "filesz > memsz");

	s = elf_default();
	s.ph[0] = elf_load(0x8000, ELF_DATA_OFF, 0x200, 0x3000);
	s.eh.e_entry = 0x8010;
	expect_elf_reject(&s, "segment below 1 MiB");

	s = elf_default();
	s.ph[0] = elf_load(0xff000, ELF_DATA_OFF, 0x200, 0x3000); /* starts below, ends above */
	s.eh.e_entry = 0x100010;
	expect_elf_reject(&s, "segment straddling 1 MiB");

	s = elf_default();
	s.ph[0] = elf_load(LAYOUT_MMIO_HOLE_START - 0x1000, ELF_DATA_OFF, 0x200, 0x2000);
	s.eh.e_entry = LAYOUT_MMIO_HOLE_START - 0x1000;
	expect_elf_reject(&s, "segment running into the MMIO hole");

	s = elf_default();
	s.ph[0] = elf_load(LAYOUT_4GIB, ELF_DATA_OFF, 0x200, 0x2000);
	s.eh.e_entry = LAYOUT_4GIB;
	expect_elf_reject(&s, "segment above 4 GiB");

	s = elf_default();
	s.ph[0] = elf_load(UINT64_MAX - 0xfff, ELF_DATA_OFF, 0x200, 0x2000);
	s.eh.e_entry = UINT64_MAX - 0xf00;
	expect_elf_reject(&s, "segment address wraps");
}

static void test_elf_entry_outside(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	s.eh.e_entry = 0x300000;
	expect_elf_reject(&s, "entry after every segment");
	s.eh.e_entry = 0x100000 + 0x3000; /* one past the end of the segment */
	expect_elf_reject(&s, "entry at segment end");
	s.eh.e_entry = 0xfffff;
	expect_elf_reject(&s, "entry just below the segment");
	s.eh.e_entry = 0;
	expect_elf_reject(&s, "entry 0");

	s.eh.e_entry = 0x100000 + 0x2fff; /* last byte: still inside */
	uint8_t *img = elf_build(&s);
	struct kernel_info ki;
	char why[256];
	assert_true(parse(img, s.size, &ki, why, sizeof(why)));
	free(img);
}

static void test_elf_too_many_segments(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	s.nph = KERNEL_MAX_SEGMENTS;
	for (unsigned i = 0; i < s.nph; i++)
		s.ph[i] = elf_load(0x100000 + i * 0x1000, ELF_DATA_OFF, 0x10, 0x1000);
	uint8_t *img = elf_build(&s);
	struct kernel_info ki;
	char why[256];
	assert_true(parse(img, s.size, &ki, why, sizeof(why)));
	assert_int_equal(ki.nseg, KERNEL_MAX_SEGMENTS);
	free(img);

	s.nph = KERNEL_MAX_SEGMENTS + 1;
	s.ph[KERNEL_MAX_SEGMENTS] = elf_load(0x100000 + KERNEL_MAX_SEGMENTS * 0x1000,
					     ELF_DATA_OFF, 0x10, 0x1000);
	expect_elf_reject(&s, "more segments than KERNEL_MAX_SEGMENTS");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bz_valid),
		cmocka_unit_test(test_bz_low_pref_address),
		cmocka_unit_test(test_bz_setup_sects_zero),
		cmocka_unit_test(test_bz_protocol),
		cmocka_unit_test(test_bz_not_64bit),
		cmocka_unit_test(test_bz_zimage),
		cmocka_unit_test(test_bz_no_signature),
		cmocka_unit_test(test_bz_truncated),
		cmocka_unit_test(test_why_buffer_small),
		cmocka_unit_test(test_elf_valid),
		cmocka_unit_test(test_elf_header_rejects),
		cmocka_unit_test(test_elf_truncated_header),
		cmocka_unit_test(test_elf_segment_rejects),
		cmocka_unit_test(test_elf_entry_outside),
		cmocka_unit_test(test_elf_too_many_segments),
	};
	return cmocka_run_group_tests_name("hv/boot: kernel_parse", tests, NULL, NULL);
}
