/*
 * Linux x86 boot protocol, 64-bit entry (see boot.h and the kernel's
 * Documentation/arch/x86/boot.rst). Every field read from the image is
 * checked against the image size before use: the kernel file is user input.
 */
#include "hv/boot.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <string.h>

#include "base/errbuf.h"
#include "base/util.h"
#include "hv/layout.h"

#define SETUP_HDR_OFFSET   0x1f1
#define BOOT_FLAG_OFFSET   0x1fe
#define HDRS_OFFSET        0x202
#define HDR_LEN_OFFSET     0x201
#define HDRS_MAGIC         0x53726448u /* "HdrS" */
#define MIN_PROTOCOL       0x020c      /* xloadflags, 64-bit entry */
#define ENTRY64_OFFSET     0x200
#define PAGE_SIZE          4096u
#define PTE_PRESENT        (1ull << 0)
#define PTE_WRITE          (1ull << 1)
#define PTE_LARGE          (1ull << 7)


static bool bzimage_parse(const uint8_t *img, size_t size, struct kernel_info *ki,
			  char *why, size_t whylen)
{
	if (size < 0x270 || (uint16_t)le_load(img + BOOT_FLAG_OFFSET, 2) != 0xaa55 || (uint32_t)le_load(img + HDRS_OFFSET, 4) != HDRS_MAGIC)
		return errbuf_fail(why, whylen, "not a bzImage or ELF kernel (no boot signature)");

	uint16_t protocol = (uint16_t)le_load(img + 0x206, 2);
	if (protocol < MIN_PROTOCOL)
		return errbuf_fail(why, whylen, "bzImage boot protocol %u.%02u is too old (need 2.12 or later)",
			           protocol >> 8, protocol & 0xff);
	uint16_t xloadflags = (uint16_t)le_load(img + 0x236, 2);
	if (!(xloadflags & XLF_KERNEL_64))
		return errbuf_fail(why, whylen, "bzImage has no 64-bit entry point (not an x86_64 kernel)");
	if (!(img[0x211] & LOADED_HIGH))
		return errbuf_fail(why, whylen, "bzImage is a zImage (loads low); only bzImage is supported");

	unsigned setup_sects = img[0x1f1] ? img[0x1f1] : 4;
	uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (setup_size >= size)
		return errbuf_fail(why, whylen, "bzImage is truncated (setup of %llu bytes, file of %zu)",
			           (unsigned long long)setup_size, size);

	uint64_t payload = size - setup_size;
	uint64_t pref_address = (uint64_t)(uint32_t)le_load(img + 0x258, 4) | (uint64_t)(uint32_t)le_load(img + 0x25c, 4) << 32;
	uint64_t init_size = (uint32_t)le_load(img + 0x260, 4);
	uint64_t run_start = pref_address > LAYOUT_KERNEL_ADDR ? pref_address : LAYOUT_KERNEL_ADDR;

	memset(ki, 0, sizeof(*ki));
	ki->kind = KERNEL_BZIMAGE;
	ki->protocol = protocol;
	ki->entry = LAYOUT_KERNEL_ADDR + ENTRY64_OFFSET;
	ki->mem_end = run_start + (init_size > payload ? init_size : payload);
	if (ki->mem_end < LAYOUT_KERNEL_ADDR + payload)
		ki->mem_end = LAYOUT_KERNEL_ADDR + payload;
	ki->initrd_addr_max = (uint32_t)le_load(img + 0x22c, 4);
	ki->cmdline_max = (uint32_t)le_load(img + 0x238, 4);
	ki->nseg = 1;
	ki->seg[0] = (struct kernel_segment){ LAYOUT_KERNEL_ADDR, setup_size, payload, payload };
	return true;
}

static bool elf_segment_ok(const Elf64_Phdr *ph, size_t size, char *why, size_t whylen)
{
	if (!range_within(ph->p_offset, ph->p_filesz, size))
		return errbuf_fail(why, whylen, "ELF segment at file offset 0x%llx runs past the end of the file",
			           (unsigned long long)ph->p_offset);
	if (ph->p_filesz > ph->p_memsz)
		return errbuf_fail(why, whylen, "ELF segment has more file bytes than memory bytes");
	if (ph->p_paddr < LAYOUT_KERNEL_ADDR || ph->p_memsz > LAYOUT_MMIO_HOLE_START ||
	    ph->p_paddr > LAYOUT_MMIO_HOLE_START - ph->p_memsz)
		return errbuf_fail(why, whylen, "ELF segment at 0x%llx is outside 1 MiB .. 3 GiB",
			           (unsigned long long)ph->p_paddr);
	return true;
}

static bool elf_parse(const uint8_t *img, size_t size, struct kernel_info *ki,
		      char *why, size_t whylen)
{
	Elf64_Ehdr eh;
	if (size < sizeof(eh))
		return errbuf_fail(why, whylen, "ELF file is truncated");
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64)
		return errbuf_fail(why, whylen, "ELF file is not an x86_64 executable");
	if (eh.e_type != ET_EXEC)
		return errbuf_fail(why, whylen, "ELF file is not an executable (ET_EXEC)");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    !range_within(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), size))
		return errbuf_fail(why, whylen, "ELF program headers are missing or outside the file");

	memset(ki, 0, sizeof(*ki));
	ki->kind = KERNEL_ELF;
	ki->initrd_addr_max = 0x7fffffff;
	ki->cmdline_max = LAYOUT_CMDLINE_MAX - 1;
	bool entry_loaded = false;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (ki->nseg == KERNEL_MAX_SEGMENTS)
			return errbuf_fail(why, whylen, "ELF file has more than %d loadable segments", KERNEL_MAX_SEGMENTS);
		if (!elf_segment_ok(&ph, size, why, whylen))
			return false;
		ki->seg[ki->nseg++] = (struct kernel_segment){ ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
		if (ph.p_paddr + ph.p_memsz > ki->mem_end)
			ki->mem_end = ph.p_paddr + ph.p_memsz;
		if (eh.e_entry >= ph.p_paddr && eh.e_entry < ph.p_paddr + ph.p_memsz)
			entry_loaded = true;
	}
	if (ki->nseg == 0)
		return errbuf_fail(why, whylen, "ELF file has no loadable segment");
	if (!entry_loaded)
		return errbuf_fail(why, whylen, "ELF entry point 0x%llx is outside its loaded segments",
			           (unsigned long long)eh.e_entry);
	ki->entry = eh.e_entry;
	return true;
}

bool kernel_parse(const uint8_t *img, size_t size, struct kernel_info *ki,
		  char *why, size_t whylen)
{
	if (size >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0)
		return elf_parse(img, size, ki, why, whylen);
	return bzimage_parse(img, size, ki, why, whylen);
}

bool boot_plan_make(const struct kernel_info *ki, uint64_t mem_size, uint64_t initrd_size,
		    size_t cmdline_len, struct boot_plan *plan, char *why, size_t whylen)
{
	memset(plan, 0, sizeof(*plan));
	plan->mem_size = mem_size;
	/* The kernel's own limit, and the room at LAYOUT_CMDLINE_ADDR, whichever is less. */
	uint64_t cmdline_max = ki->cmdline_max < LAYOUT_CMDLINE_MAX - 1 ? ki->cmdline_max
								       : LAYOUT_CMDLINE_MAX - 1;
	if (cmdline_len > cmdline_max)
		return errbuf_fail(why, whylen, "command line is %zu bytes, at most %llu fit",
			           cmdline_len, (unsigned long long)cmdline_max);
	plan->cmdline_len = cmdline_len;

	uint64_t low_end = mem_size < LAYOUT_MMIO_HOLE_START ? mem_size : LAYOUT_MMIO_HOLE_START;
	/* Leave the kernel room to decompress and set up before it reads e820. */
	uint64_t floor = align_up(ki->mem_end, PAGE_SIZE);
	if (floor > low_end)
		return errbuf_fail(why, whylen, "memory too small: the kernel needs at least %llu MiB",
			           (unsigned long long)((floor + MiB - 1) / MiB));
	if (initrd_size == 0)
		return true;

	uint64_t ceiling = low_end;
	if (ki->initrd_addr_max + 1 < ceiling)
		ceiling = ki->initrd_addr_max + 1;
	if (initrd_size > ceiling || align_down(ceiling - initrd_size, PAGE_SIZE) < floor)
		return errbuf_fail(why, whylen, "memory too small for kernel and initrd: need at least %llu MiB",
			           (unsigned long long)((floor + initrd_size + 2 * MiB - 1) / MiB));
	plan->initrd_addr = align_down(ceiling - initrd_size, PAGE_SIZE);
	plan->initrd_size = initrd_size;
	return true;
}

static void boot_params_header(struct boot_params *bp, const struct kernel_info *ki,
			       const uint8_t *img, size_t size)
{
	if (ki->kind == KERNEL_BZIMAGE) {
		/* The header ends at 0x202 + the byte at 0x201; never past our struct or the file. */
		size_t end = HDRS_OFFSET + img[HDR_LEN_OFFSET];
		size_t max = SETUP_HDR_OFFSET + sizeof(bp->hdr);
		if (end > max)
			end = max;
		if (end > size)
			end = size;
		memcpy(&bp->hdr, img + SETUP_HDR_OFFSET, end - SETUP_HDR_OFFSET);
	} else {
		bp->hdr.boot_flag = 0xaa55;
		bp->hdr.header = HDRS_MAGIC;
		bp->hdr.kernel_alignment = 0x1000000;
	}
	bp->hdr.vid_mode = 0xffff;
	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= CAN_USE_HEAP | LOADED_HIGH;
	bp->hdr.heap_end_ptr = 0xfe00;
}

void boot_params_build(struct boot_params *bp, const struct kernel_info *ki,
		       const uint8_t *img, size_t size, const struct boot_plan *plan,
		       uint64_t rsdp_addr, const struct e820_entry_info *e820, unsigned n_e820)
{
	memset(bp, 0, sizeof(*bp));
	boot_params_header(bp, ki, img, size);

	bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = 0;
	bp->hdr.cmdline_size = (uint32_t)plan->cmdline_len;
	bp->hdr.ramdisk_image = (uint32_t)plan->initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)plan->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(plan->initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)(plan->initrd_size >> 32);
	bp->acpi_rsdp_addr = rsdp_addr;

	if (n_e820 > E820_MAX_ENTRIES_ZEROPAGE)
		n_e820 = E820_MAX_ENTRIES_ZEROPAGE;
	for (unsigned i = 0; i < n_e820; i++) {
		bp->e820_table[i].addr = e820[i].addr;
		bp->e820_table[i].size = e820[i].size;
		bp->e820_table[i].type = e820[i].type;
	}
	bp->e820_entries = (uint8_t)n_e820;
}

/* Identity map of the first 4 GiB with 2 MiB pages: enough for the boot protocol. */
static bool boot_write_page_tables(const struct guest_mem *mem)
{
	uint64_t *pml4 = guest_mem_ptr(mem, LAYOUT_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = guest_mem_ptr(mem, LAYOUT_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = guest_mem_ptr(mem, LAYOUT_PD_ADDR, 4 * PAGE_SIZE);
	if (!pml4 || !pdpt || !pd)
		return false;
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = LAYOUT_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD_ADDR + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
	return true;
}

/* GDT: null, null, 64-bit code (0x10), data (0x18), TSS (0x20). */
static bool boot_write_gdt(const struct guest_mem *mem)
{
	static const uint64_t gdt[] = {
		0,
		0,
		0x00af9b000000ffffull,
		0x00cf93000000ffffull,
		0x00008b0000000067ull,
	};
	return guest_mem_write(mem, LAYOUT_GDT_ADDR, gdt, sizeof(gdt));
}

static bool boot_write_kernel(const struct guest_mem *mem, const struct kernel_info *ki,
			      const uint8_t *img)
{
	for (unsigned i = 0; i < ki->nseg; i++) {
		const struct kernel_segment *s = &ki->seg[i];
		uint8_t *dst = guest_mem_ptr(mem, s->paddr, s->memsz);
		if (!dst)
			return false;
		memcpy(dst, img + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}
	return true;
}

bool boot_load(const struct guest_mem *mem, const struct kernel_info *ki,
	       const uint8_t *img, size_t size, const uint8_t *initrd,
	       const struct boot_plan *plan, const char *cmdline, uint64_t rsdp_addr)
{
	if (!boot_write_kernel(mem, ki, img))
		return false;
	if (plan->initrd_size &&
	    !guest_mem_write(mem, plan->initrd_addr, initrd, plan->initrd_size))
		return false;
	if (!guest_mem_write(mem, LAYOUT_CMDLINE_ADDR, cmdline, plan->cmdline_len + 1))
		return false;

	struct e820_entry_info e820[E820_MAX_ENTRIES_ZEROPAGE];
	unsigned n = guest_mem_e820(mem, e820, E820_MAX_ENTRIES_ZEROPAGE);
	struct boot_params *bp = guest_mem_ptr(mem, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	if (!bp)
		return false;
	boot_params_build(bp, ki, img, size, plan, rsdp_addr, e820, n);
	return boot_write_page_tables(mem) && boot_write_gdt(mem);
}
