/*
 * The guest-physical address map of a shoji x86_64 machine. Everything the
 * VMM places in guest memory before the first instruction runs has its
 * address here, so that boot, ACPI and device code agree on one picture:
 *
 *   0x0000_0500  GDT used for the 64-bit entry
 *   0x0000_7000  boot_params ("zero page")
 *   0x0000_9000  page tables: PML4, PDPT, 4 page directories (0-4 GiB, 2 MiB pages)
 *   0x0002_0000  kernel command line
 *   0x0009_fc00  EBDA (reserved, left empty)
 *   0x000e_0000  ACPI tables, RSDP first (inside the legacy BIOS scan area)
 *   0x0010_0000  protected-mode kernel (bzImage) / ELF segments
 *   ...          initrd, placed at the top of low RAM
 *   0xc000_0000  MMIO hole up to 4 GiB: PCI BARs (0xc000_0000-0xdfff_ffff),
 *                PCI ECAM (0xe000_0000, 1 MiB, bus 0), IOAPIC, local APIC
 *   4 GiB ...    RAM above the hole
 */
#ifndef SHOJI_HV_LAYOUT_H
#define SHOJI_HV_LAYOUT_H

#include <stdint.h>

#define LAYOUT_GDT_ADDR        UINT64_C(0x500)
#define LAYOUT_ZERO_PAGE_ADDR  UINT64_C(0x7000)
#define LAYOUT_PML4_ADDR       UINT64_C(0x9000)
#define LAYOUT_PDPT_ADDR       UINT64_C(0xa000)
#define LAYOUT_PD_ADDR         UINT64_C(0xb000)  /* four pages */
#define LAYOUT_CMDLINE_ADDR    UINT64_C(0x20000)
#define LAYOUT_CMDLINE_MAX     UINT64_C(0x10000)
#define LAYOUT_EBDA_ADDR       UINT64_C(0x9fc00)
#define LAYOUT_LOW_RAM_END     UINT64_C(0xa0000)
#define LAYOUT_ACPI_ADDR       UINT64_C(0xe0000)
#define LAYOUT_ACPI_MAX        UINT64_C(0x20000)
#define LAYOUT_HIGH_MEM_START  UINT64_C(0x100000)
#define LAYOUT_KERNEL_ADDR     UINT64_C(0x100000)
#define LAYOUT_MMIO_HOLE_START UINT64_C(0xc0000000)
#define LAYOUT_4GIB            UINT64_C(0x100000000)

#define LAYOUT_PCI_MMIO_START  UINT64_C(0xc0000000)
#define LAYOUT_PCI_MMIO_SIZE   UINT64_C(0x20000000)
#define LAYOUT_PCI_ECAM_ADDR   UINT64_C(0xe0000000)
#define LAYOUT_PCI_ECAM_SIZE   UINT64_C(0x100000)   /* bus 0 only */

#define LAYOUT_IOAPIC_ADDR     UINT64_C(0xfec00000)
#define LAYOUT_LAPIC_ADDR      UINT64_C(0xfee00000)
/* KVM needs these on Intel (ignored on AMD); they sit in the hole. */
#define LAYOUT_KVM_TSS_ADDR    UINT64_C(0xfffbd000)
#define LAYOUT_KVM_IDMAP_ADDR  UINT64_C(0xfffbc000)

/* GDT selectors the Linux 64-bit boot protocol expects. */
#define LAYOUT_BOOT_CS 0x10
#define LAYOUT_BOOT_DS 0x18

/* Fixed legacy I/O ports and IRQs of the machine. */
#define PORT_COM1        0x3f8
#define IRQ_COM1         4
#define PORT_RTC         0x70
#define PORT_I8042_DATA  0x60
#define PORT_I8042_CMD   0x64
#define PORT_PM1A_EVT    0x600   /* 4 bytes: status, enable */
#define PORT_PM1A_CNT    0x604   /* 2 bytes */
#define PORT_PCI_CONFIG  0xcf8   /* 0xcf8 address, 0xcfc-0xcff data */
#define PORT_RESET       0xcf9   /* also the FADT reset register */
#define RESET_VALUE      0x06
#define IRQ_SCI          9

/*
 * PCI INTx, for drivers that leave MSI-X off: slot s's INTA is wired to
 * IOAPIC pin 16 + s % 8 (level-triggered, active low, as the DSDT's _PRT
 * tells the OS). Pins 16-23 belong to no ISA device, so only PCI shares them.
 */
#define LAYOUT_PCI_SLOTS          32
#define LAYOUT_PCI_INTX_GSI_BASE  16
#define LAYOUT_PCI_INTX_GSI_COUNT 8
#define LAYOUT_PCI_INTX_GSI(slot) (LAYOUT_PCI_INTX_GSI_BASE + (slot) % LAYOUT_PCI_INTX_GSI_COUNT)
#define ACPI_SLP_TYP_S5  5

#endif
