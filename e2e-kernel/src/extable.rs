//! The fault-recovery table: which faulting instructions resume elsewhere.
//!
//! A guarded instruction emits a 16-byte entry `(.quad faulting instruction,
//! .quad fixup)` into the ELF section `vmx_extable`; the linker script keeps
//! the section and brackets it with `__start_vmx_extable` and
//! `__stop_vmx_extable`. When the instruction faults, the exception handler
//! resumes at the fixup with R11 = the vector number.

use core::arch::asm;

/// One entry of the table.
#[derive(Debug)]
#[repr(C)]
struct Entry {
    instruction: u64,
    fixup: u64,
}

unsafe extern "C" {
    static __start_vmx_extable: Entry;
    static __stop_vmx_extable: Entry;
}

/// The fixup address for a fault at `rip`, if `rip` is a guarded instruction.
pub fn fixup(rip: u64) -> Option<u64> {
    let start = &raw const __start_vmx_extable;
    let end = &raw const __stop_vmx_extable;
    let len = (end as usize - start as usize) / size_of::<Entry>();
    // SAFETY: the linker script places the two symbols around the section,
    // which holds only 16-byte entries and is never written.
    let entries = unsafe { core::slice::from_raw_parts(start, len) };
    entries
        .iter()
        .find(|entry| entry.instruction == rip)
        .map(|entry| entry.fixup)
}

/// R11 after a guarded instruction that did not fault.
const NO_FAULT: u64 = u64::MAX;

/// Proves the recovery path: executes a guarded UD2 and returns the vector
/// the handler reported (6, #UD, when everything works).
pub fn self_test() -> Option<u64> {
    let vector: u64;
    // SAFETY: UD2 raises #UD; the table entry makes the handler resume at
    // label 3 with R11 = 6. Nothing else is touched.
    unsafe {
        asm!(
            "2: ud2",
            "3:",
            ".pushsection vmx_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            inout("r11") NO_FAULT => vector,
            options(nostack),
        );
    }
    (vector != NO_FAULT).then_some(vector)
}
