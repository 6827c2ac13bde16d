//! A self-test of the fault-recovery path that vmx-arch's guarded
//! instructions rely on (`vmx_arch::extable`): an instruction listed in the
//! `vmx_extable` section that faults resumes at its fixup with R11 = the
//! vector, instead of failing the run.

use core::arch::asm;

use vmx_arch::extable::NO_FAULT;

/// Executes a guarded UD2 and returns the vector the exception handler
/// reported: `Some(6)` (#UD) when the IDT, the handler, the linker script's
/// table bounds and vmx-arch's lookup all work.
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
