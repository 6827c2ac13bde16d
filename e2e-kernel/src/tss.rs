//! One task-state segment per processor, loaded into TR.
//!
//! The kernel needs no TSS to run (CPL 0 only, no IST), but VM entry does:
//! the host-state area's TR selector cannot be 0 (SDM, "Checks on Host
//! Segment and Descriptor-Table Registers"), and a VM exit loads TR from
//! it. Each processor gets its own descriptor, because LTR marks it busy
//! and a busy descriptor cannot be loaded again.

use core::arch::asm;

use crate::boot::GDT_TSS;
use crate::smp::MAX_PROCESSORS;

/// A 64-bit TSS (SDM, "Task Management in 64-bit Mode"): 104 bytes, all
/// zero here (no stacks to switch to, no I/O permission bitmap: its base
/// lies beyond the limit).
#[repr(C, align(16))]
struct Tss([u8; TSS_SIZE]);

const TSS_SIZE: usize = 104;

/// The TSSs; only their addresses are taken.
static mut TSSS: [Tss; MAX_PROCESSORS] = [const { Tss([0; TSS_SIZE]) }; MAX_PROCESSORS];

unsafe extern "C" {
    /// The GDT in [`boot`](crate::boot).
    static mut boot_gdt: [u64; 4 + 2 * MAX_PROCESSORS];
}

/// The selector of processor `index`'s TSS.
pub fn selector(index: usize) -> u16 {
    GDT_TSS + 16 * index as u16
}

/// Writes processor `index`'s TSS descriptor (available 64-bit TSS, type
/// 9, present, limit 103) and loads TR with it. Called once per processor,
/// on that processor, before anything uses TR.
pub fn load(index: usize) {
    assert!(index < MAX_PROCESSORS, "no TSS for processor {index}");
    let base = (&raw const TSSS).cast::<Tss>().wrapping_add(index).addr() as u64;
    let limit = TSS_SIZE as u64 - 1;
    let low = limit | (base & 0xff_ffff) << 16 | 0x89 << 40 | ((base >> 24) & 0xff) << 56;
    let high = base >> 32;
    let slot = 4 + 2 * index;
    let gdt = (&raw mut boot_gdt).cast::<u64>();
    // SAFETY: `slot` and `slot + 1` are within the GDT (index checked
    // above); each processor writes only its own descriptor, once, before
    // loading it, and nothing else reads that descriptor meanwhile.
    unsafe { gdt.wrapping_add(slot).write_volatile(low) };
    // SAFETY: as above, the descriptor's second half.
    unsafe { gdt.wrapping_add(slot + 1).write_volatile(high) };
    // SAFETY: the descriptor just written is an available 64-bit TSS in
    // the loaded GDT; LTR marks it busy and loads TR, nothing else.
    unsafe { asm!("ltr {0:x}", in(reg) selector(index), options(nostack, preserves_flags)) };
}
