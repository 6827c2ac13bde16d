//! From GRUB to Rust: the multiboot2 header, the 32-bit entry point, the
//! switch to 64-bit long mode, and the state both the BSP and the APs boot
//! with (GDT, identity page tables). The GDT has room for one TSS
//! descriptor per processor, which [`tss`](crate::tss) fills in.
//!
//! GRUB enters `_start` in 32-bit protected mode with paging off, EAX = the
//! multiboot2 magic and EBX = the physical address of the boot information
//! (multiboot2 specification, "I386 machine state"). The entry code maps the
//! first 4 GiB 1:1 with 2 MiB pages (enough for the kernel, the ACPI tables
//! and the local APIC at `0xFEE0_0000`), enables long mode (CR4.PAE, EFER.LME,
//! CR0.PG) and calls [`kmain`](crate::kmain).
//!
//! CR0 is changed in PG only: GRUB leaves CR0.NE clear, and the tests want to
//! see vmx-core bring CR0 within `IA32_VMX_CR0_FIXED0` (which has NE) itself.

use core::arch::global_asm;

/// GDT selector of the 64-bit code segment.
pub const GDT_CODE64: u16 = 0x08;
/// GDT selector of the flat data segment.
pub const GDT_DATA: u16 = 0x10;
/// GDT selector of the 32-bit code segment, for the APs' way up from real mode.
pub const GDT_CODE32: u16 = 0x18;
/// GDT selector of processor 0's TSS; processor `i`'s is
/// `GDT_TSS + 16 * i` (a 64-bit TSS descriptor takes 16 bytes).
pub const GDT_TSS: u16 = 0x20;
/// The GDT's limit: four 8-byte descriptors and one 16-byte TSS descriptor
/// per processor, minus one.
pub const GDT_LIMIT: u16 = 4 * 8 + 16 * crate::smp::MAX_PROCESSORS as u16 - 1;

/// multiboot2 header magic.
const MULTIBOOT2_HEADER_MAGIC: u32 = 0xE852_50D6;
/// EAX at entry from a multiboot2 loader.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

global_asm!(
    r#"
    // multiboot2 header: magic, architecture 0 (i386 protected mode), header
    // length, checksum (the four fields sum to 0 mod 2^32), then the end tag.
    .section .multiboot2, "a"
    .balign 8
multiboot2_header:
    .long {mb2_magic}
    .long 0
    .long multiboot2_header_end - multiboot2_header
    .long 0x100000000 - ({mb2_magic} + 0 + (multiboot2_header_end - multiboot2_header))
    .short 0
    .short 0
    .long 8
multiboot2_header_end:

    .section .text.boot, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov esp, offset boot_stack_top
    // kmain(mb2_info = EBX, magic = EAX) in the System V registers.
    mov edi, ebx
    mov esi, eax

    // Four page directories of 512 entries each: entry i maps i * 2 MiB
    // (present, writable, 2 MiB page). The 64-bit halves stay 0 (.bss).
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 4 * 512
    jb 2b

    // The PDPT's first four entries point at the directories.
    xor ecx, ecx
3:
    mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 3b

    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax

    lgdt [boot_gdt_pointer]
    call enable_long_mode
    push {code64}
    mov eax, offset long_mode_start
    push eax
    retf

    // Enables IA-32e mode with the boot page tables; returns in compatibility
    // mode, the caller jumps to a 64-bit code segment. Shared with the APs.
    // Clobbers EAX, ECX, EDX.
    .global enable_long_mode
enable_long_mode:
    mov eax, cr4
    or eax, 1 << 5              // CR4.PAE
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080         // IA32_EFER
    rdmsr
    or eax, 1 << 8              // EFER.LME
    wrmsr
    mov eax, cr0
    or eax, 0x80000000          // CR0.PG; everything else as it was
    mov cr0, eax
    ret

    .code64
long_mode_start:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    // The upper halves of registers written in 32-bit mode are undefined.
    mov edi, edi
    mov esi, esi
    call {kmain}
4:
    cli
    hlt
    jmp 4b

    // The GDT lives in writable memory: loading a descriptor may set its
    // accessed bit (set here already).
    .section .data.boot, "aw"
    .balign 16
    .global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF    // 0x08: 64-bit code, DPL 0
    .quad 0x00CF93000000FFFF    // 0x10: flat data
    .quad 0x00CF9B000000FFFF    // 0x18: flat 32-bit code
    // 0x20: one TSS descriptor per processor, filled in by `tss::load`.
    .skip 16 * {max_processors}
    .balign 8
    .global boot_gdt_pointer
boot_gdt_pointer:
    .short {gdt_limit}
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096
    .balign 16
boot_stack:
    .skip 64 * 1024
boot_stack_top:
"#,
    mb2_magic = const MULTIBOOT2_HEADER_MAGIC,
    code64 = const GDT_CODE64,
    data = const GDT_DATA,
    gdt_limit = const GDT_LIMIT,
    max_processors = const crate::smp::MAX_PROCESSORS,
    kmain = sym crate::kmain,
);
