//! The exception table of guarded instructions (the pattern of Linux's
//! `_ASM_EXTABLE`): each guarded instruction's address is paired with the
//! address to resume at if it faults.
//!
//! The contract with the kernel that owns the IDT:
//! - a guarded instruction runs with R11 = [`NO_FAULT`];
//! - when it raises an exception, the handler calls [`recover`] with the
//!   saved RIP and R11 of the interrupted context; if it returns `true`,
//!   the handler resumes (IRETQ) with the updated values: RIP at the
//!   instruction's fixup, R11 = the vector;
//! - the wrapper then reads R11 and reports the fault.
//!
//! The entries live in the ELF section `vmx_extable` as pairs of 64-bit
//! addresses; the kernel's linker script must keep the section and define
//! `__start_vmx_extable` and `__stop_vmx_extable` around it.

/// R11's value while no fault happened.
pub const NO_FAULT: u64 = u64::MAX;

/// One entry: a guarded instruction and where to resume if it faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Entry {
    /// The guarded instruction's address.
    pub instruction: u64,
    /// The address to resume at.
    pub fixup: u64,
}

/// Recovers from an exception at `rip` if it was raised by a guarded
/// instruction: sets `rip` to the fixup and `r11` to `vector`, and returns
/// `true`. Returns `false` (and changes nothing) for any other address.
pub fn recover(rip: &mut u64, r11: &mut u64, vector: u8) -> bool {
    match fixup(*rip) {
        Some(fixup) => {
            *rip = fixup;
            *r11 = u64::from(vector);
            true
        }
        None => false,
    }
}

/// The fixup address for a guarded instruction at `rip`.
#[must_use]
pub fn fixup(rip: u64) -> Option<u64> {
    entries()
        .iter()
        .find(|e| e.instruction == rip)
        .map(|e| e.fixup)
}

#[cfg(feature = "fault-recovery")]
fn entries() -> &'static [Entry] {
    unsafe extern "C" {
        static __start_vmx_extable: Entry;
        static __stop_vmx_extable: Entry;
    }
    let start = &raw const __start_vmx_extable;
    let end = &raw const __stop_vmx_extable;
    let len = (end as usize - start as usize) / core::mem::size_of::<Entry>();
    // SAFETY: the linker script defines both symbols around the
    // `vmx_extable` section, which holds only `Entry` pairs emitted by this
    // crate's guarded instructions (16 bytes each, 8-aligned), and is never
    // written at run time.
    unsafe { core::slice::from_raw_parts(start, len) }
}

#[cfg(not(feature = "fault-recovery"))]
fn entries() -> &'static [Entry] {
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_is_not_guarded_is_left_alone() {
        let (mut rip, mut r11) = (0x1234, NO_FAULT);
        assert!(!recover(&mut rip, &mut r11, 13));
        assert_eq!((rip, r11), (0x1234, NO_FAULT));
    }
}
