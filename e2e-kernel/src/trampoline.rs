//! The application processors' way from reset to Rust.
//!
//! A startup IPI starts an AP in 16-bit real mode at `vector * 4 KiB` with
//! CS = `vector * 256`, IP = 0. The BSP copies the code between
//! `ap_trampoline_start` and `ap_trampoline_end` to [`AP_TRAMPOLINE_ADDR`];
//! it loads the kernel's GDT and enters 32-bit protected mode, jumps into the
//! kernel image, enables long mode with the BSP's page tables and calls
//! [`ap_main`](crate::smp::ap_main) on the stack the BSP left in
//! [`AP_BOOT_STACK`].
//!
//! CR0 after INIT is `0x6000_0010` (CD, NW, ET: SDM "Initialization of the
//! processor", table "IA-32 and Intel 64 Processor States Following Power-up,
//! Reset, or INIT"). The trampoline turns caching on (clears CD and NW) like
//! the firmware did on the BSP, and sets PE and PG; it leaves NE clear as it
//! found it, the same state GRUB leaves the BSP in.

use core::arch::global_asm;
use core::sync::atomic::AtomicU64;

use crate::boot::{GDT_CODE32, GDT_CODE64, GDT_DATA, GDT_LIMIT};

/// Where the trampoline runs: a free page of conventional memory below 1 MiB.
pub const AP_TRAMPOLINE_ADDR: usize = 0x8000;
/// The startup IPI vector that starts an AP at [`AP_TRAMPOLINE_ADDR`].
pub const AP_STARTUP_VECTOR: u8 = (AP_TRAMPOLINE_ADDR >> 12) as u8;

/// The top of the stack for the AP being started; the BSP sets it before the
/// startup IPIs and waits for that AP to come online before it changes it.
pub static AP_BOOT_STACK: AtomicU64 = AtomicU64::new(0);

global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    // lgdt [disp16] with 32-bit operand size (a 32-bit GDT base), spelled out
    // because the assembler takes no label difference in a memory operand.
    // DS = 0: the displacement is the pointer's absolute address in the copy.
    .byte 0x66, 0x0F, 0x01, 0x16
    .short {tramp} + (ap_trampoline_gdt_pointer - ap_trampoline_start)
    mov eax, cr0
    and eax, ~0x60000000        // CR0.CD, CR0.NW: caching on
    or eax, 1                   // CR0.PE
    mov cr0, eax
    // 32-bit far jump out of the copy, into the kernel image.
    .byte 0x66, 0xEA
    .long ap_entry32
    .short {code32}

    .balign 8
ap_trampoline_gdt_pointer:
    .short {gdt_limit}
    .long boot_gdt
    .global ap_trampoline_end
ap_trampoline_end:

    .section .text.boot, "ax"
    .code32
ap_entry32:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, dword ptr [{stack}]
    call enable_long_mode
    push {code64}
    mov eax, offset ap_entry64
    push eax
    retf

    .code64
ap_entry64:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, qword ptr [rip + {stack}]
    call {ap_main}
    ud2
"#,
    tramp = const AP_TRAMPOLINE_ADDR,
    code32 = const GDT_CODE32,
    code64 = const GDT_CODE64,
    data = const GDT_DATA,
    gdt_limit = const GDT_LIMIT,
    stack = sym AP_BOOT_STACK,
    ap_main = sym crate::smp::ap_main,
);

unsafe extern "C" {
    /// First byte of the real-mode trampoline in the kernel image.
    static ap_trampoline_start: u8;
    /// One past its last byte.
    static ap_trampoline_end: u8;
}

/// The trampoline's bytes in the kernel image, to be copied to
/// [`AP_TRAMPOLINE_ADDR`].
pub fn code() -> &'static [u8] {
    let start = &raw const ap_trampoline_start;
    let end = &raw const ap_trampoline_end;
    let len = end as usize - start as usize;
    // SAFETY: both symbols delimit the `.text.ap_trampoline` bytes above, which
    // are part of the loaded, never written kernel image.
    unsafe { core::slice::from_raw_parts(start, len) }
}
