//! DISPATCH_LEVEL around the work on one processor.
//!
//! On x64 the IRQL is CR8 (the task-priority register): wdm.h's
//! `KeRaiseIrql(a, b)` is `*(b) = KfRaiseIrql(a)` and, for AMD64,
//! `KfRaiseIrql` and `KeLowerIrql` are FORCEINLINE functions that read and
//! write CR8 (`__readcr8`/`__writecr8`), so there is no exported function
//! for bindgen to bind. These are their Rust forms. At DISPATCH_LEVEL the
//! thread cannot be preempted or rescheduled, so CR4's read-modify-write
//! and VMXON (or VMXOFF and CR4's restore) run without anything else on
//! this processor in between.

use core::arch::asm;

/// `DISPATCH_LEVEL` (wdm.h).
const DISPATCH_LEVEL: u64 = 2;

/// The IRQL raised to DISPATCH_LEVEL; the previous IRQL comes back on drop
/// (`KeLowerIrql`).
#[derive(Debug)]
pub struct AtDispatchLevel {
    previous: u64,
}

impl AtDispatchLevel {
    /// `KeRaiseIrql(DISPATCH_LEVEL, &previous)`.
    ///
    /// # Safety
    /// Kernel mode at or below DISPATCH_LEVEL (raising must not lower the
    /// IRQL); until the value is dropped, the caller touches no pageable
    /// memory and waits on nothing.
    pub unsafe fn raise() -> Self {
        let previous: u64;
        // SAFETY: CPL 0 (the caller's contract); reading CR8 has no side
        // effect.
        unsafe { asm!("mov {}, cr8", out(reg) previous, options(nomem, nostack, preserves_flags)) };
        debug_assert!(
            previous <= DISPATCH_LEVEL,
            "KeRaiseIrql may not lower the IRQL"
        );
        // SAFETY: CPL 0; DISPATCH_LEVEL is at or above the current IRQL, as
        // KeRaiseIrql requires. Not `nomem`: memory accesses must not move
        // across the change of IRQL.
        unsafe { asm!("mov cr8, {}", in(reg) DISPATCH_LEVEL, options(nostack, preserves_flags)) };
        Self { previous }
    }
}

impl Drop for AtDispatchLevel {
    fn drop(&mut self) {
        // SAFETY: `KeLowerIrql(previous)`: back to the IRQL `raise` found,
        // which is at or below the current one.
        unsafe { asm!("mov cr8, {}", in(reg) self.previous, options(nostack, preserves_flags)) };
    }
}
