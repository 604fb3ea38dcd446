/*
 * Synthetic kernel images for the boot tests: a minimal bzImage (just the
 * setup header of the Linux x86 boot protocol, Documentation/arch/x86/
 * boot.rst, followed by a patterned payload) and a minimal ELF64
 * executable. Each test starts from a valid image and breaks one thing.
 */
#ifndef SHOJI_TESTS_KERNEL_IMAGES_H
#define SHOJI_TESTS_KERNEL_IMAGES_H

#include <asm/bootparam.h>
#include <elf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BZ_HDR_OFFSET 0x1f1  /* struct setup_header starts here */
#define BZ_JUMP_END   0x202  /* header end = 0x202 + byte at 0x201 */

struct bz_spec {
	uint8_t setup_sects;     /* 0 means 4, as in the protocol */
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t init_size;
	uint64_t pref_address;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	uint32_t kernel_alignment;
	size_t payload;          /* bytes after the setup sectors */
};

/* What a current x86_64 distribution kernel declares, scaled down. */
static inline struct bz_spec bz_default(void)
{
	return (struct bz_spec){
		.setup_sects = 4,
		.version = 0x020f,
		.loadflags = LOADED_HIGH,
		.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
		.init_size = 16u << 20,
		.pref_address = 16u << 20,
		.initrd_addr_max = 0x7fffffff,
		.cmdline_size = 2047,
		.kernel_alignment = 2u << 20,
		.payload = 64u << 10,
	};
}

static inline size_t bz_setup_bytes(const struct bz_spec *s)
{
	return ((size_t)(s->setup_sects ? s->setup_sects : 4) + 1) * 512;
}

static inline uint8_t bz_payload_byte(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

/* A heap buffer of exactly the image's size (so ASan sees over-reads). */
static inline uint8_t *bz_build(const struct bz_spec *s, size_t *size)
{
	size_t setup = bz_setup_bytes(s);
	*size = setup + s->payload;
	uint8_t *img = calloc(1, *size ? *size : 1);
	if (!img)
		abort();
	struct setup_header h;
	memset(&h, 0, sizeof(h));
	h.setup_sects = s->setup_sects;
	h.boot_flag = 0xaa55;
	/* jmp short over the header: its offset byte says where the header ends */
	h.jump = (uint16_t)(0xeb | (BZ_HDR_OFFSET + sizeof(h) - BZ_JUMP_END) << 8);
	memcpy(&h.header, "HdrS", 4);
	h.version = s->version;
	h.loadflags = s->loadflags;
	h.initrd_addr_max = s->initrd_addr_max;
	h.kernel_alignment = s->kernel_alignment;
	h.relocatable_kernel = 1;
	h.xloadflags = s->xloadflags;
	h.cmdline_size = s->cmdline_size;
	h.pref_address = s->pref_address;
	h.init_size = s->init_size;
	h.syssize = (uint32_t)((s->payload + 15) / 16);
	if (*size >= BZ_HDR_OFFSET + sizeof(h))
		memcpy(img + BZ_HDR_OFFSET, &h, sizeof(h));
	for (size_t i = 0; i < s->payload; i++)
		img[setup + i] = bz_payload_byte(i);
	return img;
}

/* --- ELF64 --- */

#define ELF_MAX_PH   20
#define ELF_DATA_OFF 0x1000

struct elf_spec {
	Elf64_Ehdr eh;
	unsigned nph;
	Elf64_Phdr ph[ELF_MAX_PH];
	size_t size;             /* file size */
};

static inline Elf64_Phdr elf_load(uint64_t paddr, uint64_t offset, uint64_t filesz, uint64_t memsz)
{
	return (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = offset,
		.p_vaddr = paddr, .p_paddr = paddr, .p_filesz = filesz,
		.p_memsz = memsz, .p_align = 0x1000,
	};
}

/* One PT_LOAD of 0x200 file bytes and 0x3000 memory bytes at 1 MiB. */
static inline struct elf_spec elf_default(void)
{
	struct elf_spec s;
	memset(&s, 0, sizeof(s));
	memcpy(s.eh.e_ident, ELFMAG, SELFMAG);
	s.eh.e_ident[EI_CLASS] = ELFCLASS64;
	s.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	s.eh.e_ident[EI_VERSION] = EV_CURRENT;
	s.eh.e_type = ET_EXEC;
	s.eh.e_machine = EM_X86_64;
	s.eh.e_version = EV_CURRENT;
	s.eh.e_entry = 0x100010;
	s.eh.e_phoff = sizeof(Elf64_Ehdr);
	s.eh.e_ehsize = sizeof(Elf64_Ehdr);
	s.eh.e_phentsize = sizeof(Elf64_Phdr);
	s.nph = 1;
	s.ph[0] = elf_load(0x100000, ELF_DATA_OFF, 0x200, 0x3000);
	s.size = ELF_DATA_OFF + 0x1000;
	return s;
}

static inline uint8_t *elf_build(const struct elf_spec *s)
{
	uint8_t *img = calloc(1, s->size ? s->size : 1);
	if (!img)
		abort();
	Elf64_Ehdr eh = s->eh;
	eh.e_phnum = (uint16_t)s->nph;
	memcpy(img, &eh, s->size < sizeof(eh) ? s->size : sizeof(eh));
	size_t ph_end = sizeof(eh) + s->nph * sizeof(Elf64_Phdr);
	if (s->size >= ph_end)
		memcpy(img + sizeof(eh), s->ph, s->nph * sizeof(Elf64_Phdr));
	for (size_t i = ELF_DATA_OFF; i < s->size; i++)
		img[i] = (uint8_t)(i * 13 + 1);
	return img;
}

#endif
