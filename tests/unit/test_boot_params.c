/*
 * Unit tests for the rest of src/hv/boot.h: boot_plan_make (where the
 * initrd goes, and refusing machines too small for kernel + initrd or a
 * command line too long), boot_params_build (the zero page the kernel reads
 * in RSI: setup header copied from the image, loader fields, e820) and
 * boot_load (everything written to guest memory before the first
 * instruction: kernel, initrd, command line, zero page, GDT, page tables).
 *
 * Placement rules come from the boot protocol: the initrd is page aligned,
 * no byte above initrd_addr_max, in RAM below the MMIO hole, and clear of
 * the memory the kernel needs (mem_end).
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
#include "hv/mem.h"
#include "kernel_images.h"

#define PAGE 4096u

static void parse_or_fail(const struct bz_spec *s, struct kernel_info *ki)
{
	size_t size;
	uint8_t *img = bz_build(s, &size);
	char why[256];
	if (!kernel_parse(img, size, ki, why, sizeof(why)))
		fail_msg("synthetic bzImage refused: %s", why);
	free(img);
}

static void check_initrd_placement(const struct kernel_info *ki, uint64_t mem, uint64_t initrd)
{
	struct boot_plan plan;
	char why[256] = "";
	if (!boot_plan_make(ki, mem, initrd, 100, &plan, why, sizeof(why)))
		fail_msg("%llu MiB RAM, %llu byte initrd refused: %s",
			 (unsigned long long)(mem / MiB), (unsigned long long)initrd, why);
	uint64_t low_end = mem < LAYOUT_MMIO_HOLE_START ? mem : LAYOUT_MMIO_HOLE_START;
	assert_int_equal(plan.mem_size, mem);
	assert_int_equal(plan.initrd_size, initrd);
	assert_int_equal(plan.cmdline_len, 100);
	assert_int_equal(plan.initrd_addr % PAGE, 0);
	assert_true(plan.initrd_addr >= ki->mem_end);
	assert_true(plan.initrd_addr + initrd - 1 <= ki->initrd_addr_max);
	assert_true(plan.initrd_addr + initrd <= low_end);
	/* Clear of everything the layout puts below the kernel. */
	assert_true(plan.initrd_addr >= LAYOUT_HIGH_MEM_START);
}

static void test_plan_initrd(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	check_initrd_placement(&ki, 64 * MiB, 8 * MiB);
	check_initrd_placement(&ki, 64 * MiB, 1);
	check_initrd_placement(&ki, 512 * MiB, 20 * MiB + 123);
	check_initrd_placement(&ki, 3 * GiB, 100 * MiB);
	check_initrd_placement(&ki, 8 * GiB, 100 * MiB);   /* still below the hole */

	s.initrd_addr_max = 0x37ffffff;                    /* older kernels' limit */
	parse_or_fail(&s, &ki);
	check_initrd_placement(&ki, 4 * GiB, 1 * MiB);
	check_initrd_placement(&ki, 2 * GiB, 300 * MiB + 5);

	s.initrd_addr_max = 0xffffffff;
	parse_or_fail(&s, &ki);
	check_initrd_placement(&ki, 8 * GiB, 512 * MiB);
}

/* The largest initrd that fits ends exactly at the top of low RAM. */
static void test_plan_initrd_exact_fit(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	uint64_t floor = align_up(ki.mem_end, PAGE);
	uint64_t mem = 64 * MiB;
	struct boot_plan plan;
	char why[256];
	assert_true(boot_plan_make(&ki, mem, mem - floor, 10, &plan, why, sizeof(why)));
	assert_int_equal(plan.initrd_addr, floor);
	assert_false(boot_plan_make(&ki, mem, mem - floor + 1, 10, &plan, why, sizeof(why)));
	assert_true(why[0] != '\0');
}

static void test_plan_no_initrd(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	struct boot_plan plan;
	char why[256];
	assert_true(boot_plan_make(&ki, 64 * MiB, 0, 0, &plan, why, sizeof(why)));
	assert_int_equal(plan.initrd_size, 0);
	assert_int_equal(plan.cmdline_len, 0);
}

static void expect_plan_fail(const struct kernel_info *ki, uint64_t mem, uint64_t initrd,
			     size_t cmdline, const char *what)
{
	struct boot_plan plan;
	char why[256] = "";
	if (boot_plan_make(ki, mem, initrd, cmdline, &plan, why, sizeof(why)))
		fail_msg("%s: accepted (initrd at 0x%llx)", what,
			 (unsigned long long)plan.initrd_addr);
	if (why[0] == '\0')
		fail_msg("%s: refused without a reason", what);
}

static void test_plan_memory_too_small(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.init_size = 48 * MiB; /* runs from 16 MiB: needs 64 MiB */
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	expect_plan_fail(&ki, 32 * MiB, 0, 10, "kernel larger than RAM");
	expect_plan_fail(&ki, 64 * MiB - PAGE, 0, 10, "kernel one page larger than RAM");
	expect_plan_fail(&ki, 128 * MiB, 65 * MiB, 10, "kernel fits, initrd does not");
	expect_plan_fail(&ki, 8 * GiB, 3 * GiB, 10, "initrd larger than low RAM");
	expect_plan_fail(&ki, 8 * GiB, UINT64_MAX, 10, "initrd size near UINT64_MAX");

	s = bz_default();
	s.initrd_addr_max = 0x37ffffff;
	parse_or_fail(&s, &ki);
	/* Fits in RAM, not below initrd_addr_max: 896 MiB - 32 MiB for the kernel. */
	expect_plan_fail(&ki, 2 * GiB, 900 * MiB, 10, "initrd above initrd_addr_max");
}

static void test_plan_cmdline(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	struct boot_plan plan;
	char why[256];
	assert_true(boot_plan_make(&ki, 64 * MiB, 0, s.cmdline_size, &plan, why, sizeof(why)));
	assert_int_equal(plan.cmdline_len, s.cmdline_size);
	expect_plan_fail(&ki, 64 * MiB, 0, s.cmdline_size + 1, "command line one byte too long");
	expect_plan_fail(&ki, 64 * MiB, 0, 1 << 20, "command line of 1 MiB");
}

/*
 * A kernel may declare a huge cmdline_size; the command line must still fit
 * the area layout.h reserves for it (LAYOUT_CMDLINE_MAX with the NUL), or
 * boot_load writes it over whatever follows.
 * Regression test (bug found by this test, fixed): boot_plan_make in src/hv/boot.c
 * checks the length only against the kernel's cmdline_max.
 */
static void test_plan_cmdline_area(void **state)
{
	(void)state;
	struct bz_spec s = bz_default();
	s.cmdline_size = 0xffffffff;
	struct kernel_info ki;
	parse_or_fail(&s, &ki);
	struct boot_plan plan;
	char why[256];
	assert_true(boot_plan_make(&ki, 64 * MiB, 0, LAYOUT_CMDLINE_MAX - 1, &plan, why, sizeof(why)));
	expect_plan_fail(&ki, 64 * MiB, 0, LAYOUT_CMDLINE_MAX, "command line longer than its area");
	expect_plan_fail(&ki, 64 * MiB, 0, 4 * MiB, "command line of 4 MiB");
}

/* --- boot_params_build --- */

struct params_fixture {
	uint8_t *img;
	size_t size;
	struct kernel_info ki;
	struct boot_params *bp;
};

static int params_setup(void **state)
{
	struct params_fixture *f = calloc(1, sizeof(*f));
	struct bz_spec s = bz_default();
	f->img = bz_build(&s, &f->size);
	char why[256];
	if (!kernel_parse(f->img, f->size, &f->ki, why, sizeof(why)))
		return -1;
	f->bp = malloc(sizeof(*f->bp));
	memset(f->bp, 0xa5, sizeof(*f->bp)); /* garbage the builder must overwrite */
	*state = f;
	return 0;
}

static int params_teardown(void **state)
{
	struct params_fixture *f = *state;
	free(f->img);
	free(f->bp);
	free(f);
	return 0;
}

static void test_params_header(void **state)
{
	struct params_fixture *f = *state;
	struct boot_plan plan = { .mem_size = 256 * MiB, .initrd_addr = 200 * MiB,
				  .initrd_size = 5 * MiB + 17, .cmdline_len = 42 };
	boot_params_build(f->bp, &f->ki, f->img, f->size, &plan, LAYOUT_ACPI_ADDR, NULL, 0);

	struct setup_header img_hdr;
	memcpy(&img_hdr, f->img + BZ_HDR_OFFSET, sizeof(img_hdr));
	const struct setup_header *h = &f->bp->hdr;
	/* Copied from the image (fields the loader has no business changing). */
	assert_int_equal(h->setup_sects, img_hdr.setup_sects);
	assert_int_equal(h->boot_flag, 0xaa55);
	uint32_t magic = h->header;
	assert_memory_equal(&magic, "HdrS", 4);
	assert_int_equal(h->version, img_hdr.version);
	assert_int_equal(h->syssize, img_hdr.syssize);
	assert_int_equal(h->xloadflags, img_hdr.xloadflags);
	assert_int_equal(h->initrd_addr_max, img_hdr.initrd_addr_max);
	assert_int_equal(h->kernel_alignment, img_hdr.kernel_alignment);
	assert_int_equal(h->relocatable_kernel, img_hdr.relocatable_kernel);
	assert_int_equal(h->pref_address, img_hdr.pref_address);
	assert_int_equal(h->init_size, img_hdr.init_size);
	assert_true(h->loadflags & LOADED_HIGH);
	/* Written by the loader. */
	assert_int_equal(h->type_of_loader, 0xff);
	assert_int_equal(h->cmd_line_ptr, (uint32_t)LAYOUT_CMDLINE_ADDR);
	assert_int_equal(f->bp->ext_cmd_line_ptr, (uint32_t)(LAYOUT_CMDLINE_ADDR >> 32));
	assert_int_equal(h->cmdline_size, plan.cmdline_len);
	assert_int_equal(h->ramdisk_image, plan.initrd_addr);
	assert_int_equal(h->ramdisk_size, plan.initrd_size);
	assert_int_equal(f->bp->ext_ramdisk_image, 0);
	assert_int_equal(f->bp->ext_ramdisk_size, 0);
	assert_int_equal(f->bp->acpi_rsdp_addr, LAYOUT_ACPI_ADDR);
	assert_int_equal(f->bp->e820_entries, 0);
	/* Nothing of the caller's garbage survives. */
	assert_int_equal(f->bp->hdr.setup_data, 0);
	assert_int_equal(f->bp->sentinel, 0);
}

/* 64-bit ramdisk fields: ext_ramdisk_* carry the high halves. */
static void test_params_ramdisk_high(void **state)
{
	struct params_fixture *f = *state;
	struct boot_plan plan = { .mem_size = 16 * GiB, .initrd_addr = UINT64_C(0x123456000),
				  .initrd_size = UINT64_C(0x100001000), .cmdline_len = 1 };
	boot_params_build(f->bp, &f->ki, f->img, f->size, &plan, 0xfedc0, NULL, 0);
	assert_int_equal(f->bp->hdr.ramdisk_image, 0x23456000);
	assert_int_equal(f->bp->ext_ramdisk_image, 0x1);
	assert_int_equal(f->bp->hdr.ramdisk_size, 0x00001000);
	assert_int_equal(f->bp->ext_ramdisk_size, 0x1);
	assert_int_equal(f->bp->acpi_rsdp_addr, 0xfedc0);
}

static void test_params_e820(void **state)
{
	struct params_fixture *f = *state;
	struct guest_mem mem;
	guest_mem_plan(&mem, 8 * GiB);
	struct e820_entry_info e[16];
	unsigned n = guest_mem_e820(&mem, e, 16);
	assert_true(n > 0);
	struct boot_plan plan = { .mem_size = 8 * GiB, .cmdline_len = 5 };
	boot_params_build(f->bp, &f->ki, f->img, f->size, &plan, LAYOUT_ACPI_ADDR, e, n);
	assert_int_equal(f->bp->e820_entries, n);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(f->bp->e820_table[i].addr, e[i].addr);
		assert_int_equal(f->bp->e820_table[i].size, e[i].size);
		assert_int_equal(f->bp->e820_table[i].type, e[i].type);
	}
}

/* More entries than the zero page holds: cut at E820_MAX_ENTRIES_ZEROPAGE. */
static void test_params_e820_overflow(void **state)
{
	struct params_fixture *f = *state;
	enum { N = E820_MAX_ENTRIES_ZEROPAGE + 72 };
	static struct e820_entry_info e[N];
	for (unsigned i = 0; i < N; i++)
		e[i] = (struct e820_entry_info){ LAYOUT_4GIB + i * 2 * MiB, MiB, E820_RAM };
	struct boot_plan plan = { .mem_size = GiB };
	boot_params_build(f->bp, &f->ki, f->img, f->size, &plan, 0, e, N);
	assert_int_equal(f->bp->e820_entries, E820_MAX_ENTRIES_ZEROPAGE);
	assert_int_equal(f->bp->e820_table[E820_MAX_ENTRIES_ZEROPAGE - 1].addr,
			 e[E820_MAX_ENTRIES_ZEROPAGE - 1].addr);
}

/* An ELF kernel has no setup header to copy; the loader fields are still set. */
static void test_params_elf(void **state)
{
	(void)state;
	struct elf_spec s = elf_default();
	uint8_t *img = elf_build(&s);
	struct kernel_info ki;
	char why[256];
	assert_true(kernel_parse(img, s.size, &ki, why, sizeof(why)));
	struct boot_params *bp = malloc(sizeof(*bp));
	memset(bp, 0xa5, sizeof(*bp));
	struct e820_entry_info e = { 0, 64 * MiB, E820_RAM };
	struct boot_plan plan = { .mem_size = 64 * MiB, .initrd_addr = 32 * MiB,
				  .initrd_size = MiB, .cmdline_len = 7 };
	boot_params_build(bp, &ki, img, s.size, &plan, LAYOUT_ACPI_ADDR, &e, 1);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, (uint32_t)LAYOUT_CMDLINE_ADDR);
	assert_int_equal(bp->hdr.cmdline_size, 7);
	assert_int_equal(bp->hdr.ramdisk_image, 32 * MiB);
	assert_int_equal(bp->hdr.ramdisk_size, MiB);
	assert_int_equal(bp->acpi_rsdp_addr, LAYOUT_ACPI_ADDR);
	assert_int_equal(bp->e820_entries, 1);
	assert_int_equal(bp->e820_table[0].size, 64 * MiB);
	free(bp);
	free(img);
}

/* --- boot_load --- */

static void test_load(void **state)
{
	(void)state;
	struct guest_mem mem;
	if (!guest_mem_alloc(&mem, 64 * MiB)) {
		skip();
		return;
	}
	struct bz_spec s = bz_default();
	size_t size;
	uint8_t *img = bz_build(&s, &size);
	struct kernel_info ki;
	char why[256];
	assert_true(kernel_parse(img, size, &ki, why, sizeof(why)));
	static const char cmdline[] = "console=ttyS0 panic=-1";
	uint8_t initrd[3 * PAGE + 5];
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	struct boot_plan plan;
	assert_true(boot_plan_make(&ki, 64 * MiB, sizeof(initrd), strlen(cmdline), &plan, why,
				   sizeof(why)));
	assert_true(boot_load(&mem, &ki, img, size, initrd, &plan, cmdline, LAYOUT_ACPI_ADDR));

	/* Kernel payload at 1 MiB, initrd where planned, command line with its NUL. */
	const uint8_t *k = guest_mem_ptr(&mem, LAYOUT_KERNEL_ADDR, s.payload);
	assert_non_null(k);
	assert_memory_equal(k, img + bz_setup_bytes(&s), s.payload);
	assert_memory_equal(guest_mem_ptr(&mem, plan.initrd_addr, sizeof(initrd)), initrd,
			    sizeof(initrd));
	assert_memory_equal(guest_mem_ptr(&mem, LAYOUT_CMDLINE_ADDR, sizeof(cmdline)), cmdline,
			    sizeof(cmdline));

	/* The zero page carries this memory's e820 map. */
	const struct boot_params *bp = guest_mem_ptr(&mem, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	struct e820_entry_info e[E820_MAX_ENTRIES_ZEROPAGE];
	unsigned n = guest_mem_e820(&mem, e, E820_MAX_ENTRIES_ZEROPAGE);
	assert_int_equal(bp->e820_entries, n);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(bp->e820_table[i].addr, e[i].addr);
	assert_int_equal(bp->hdr.ramdisk_image, plan.initrd_addr);
	assert_int_equal(bp->acpi_rsdp_addr, LAYOUT_ACPI_ADDR);

	/* Identity map of 0-4 GiB: PML4[0] -> PDPT, PDPT[i] -> PD i, 2 MiB pages. */
	const uint64_t *pml4 = guest_mem_ptr(&mem, LAYOUT_PML4_ADDR, PAGE);
	const uint64_t *pdpt = guest_mem_ptr(&mem, LAYOUT_PDPT_ADDR, PAGE);
	const uint64_t *pd = guest_mem_ptr(&mem, LAYOUT_PD_ADDR, 4 * PAGE);
	const uint64_t addr_mask = UINT64_C(0x000ffffffffff000);
	assert_true(pml4[0] & 1);
	assert_int_equal(pml4[0] & addr_mask, LAYOUT_PDPT_ADDR);
	for (unsigned i = 0; i < 4; i++) {
		assert_true(pdpt[i] & 1);
		assert_int_equal(pdpt[i] & addr_mask, LAYOUT_PD_ADDR + i * PAGE);
	}
	for (uint64_t i = 0; i < 4 * 512; i += 97) {
		assert_int_equal(pd[i] & 0x83, 0x83); /* present, writable, 2 MiB page */
		assert_int_equal(pd[i] & addr_mask, i << 21);
	}
	/* GDT: selector 0x10 is a present 64-bit code segment, 0x18 writable data. */
	const uint64_t *gdt = guest_mem_ptr(&mem, LAYOUT_GDT_ADDR, 4 * 8);
	uint64_t cs = gdt[LAYOUT_BOOT_CS / 8], ds = gdt[LAYOUT_BOOT_DS / 8];
	assert_true(cs & (UINT64_C(1) << 47));      /* P */
	assert_true(cs & (UINT64_C(1) << 43));      /* code */
	assert_true(cs & (UINT64_C(1) << 53));      /* L: 64-bit */
	assert_true(ds & (UINT64_C(1) << 47));
	assert_false(ds & (UINT64_C(1) << 43));     /* data */
	assert_true(ds & (UINT64_C(1) << 41));      /* writable */
	free(img);
	guest_mem_free(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_initrd),
		cmocka_unit_test(test_plan_initrd_exact_fit),
		cmocka_unit_test(test_plan_no_initrd),
		cmocka_unit_test(test_plan_memory_too_small),
		cmocka_unit_test(test_plan_cmdline),
		cmocka_unit_test(test_plan_cmdline_area),
		cmocka_unit_test_setup_teardown(test_params_header, params_setup, params_teardown),
		cmocka_unit_test_setup_teardown(test_params_ramdisk_high, params_setup, params_teardown),
		cmocka_unit_test_setup_teardown(test_params_e820, params_setup, params_teardown),
		cmocka_unit_test_setup_teardown(test_params_e820_overflow, params_setup, params_teardown),
		cmocka_unit_test(test_params_elf),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests_name("hv/boot: plan, zero page, load", tests, NULL, NULL);
}
