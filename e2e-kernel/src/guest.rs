//! The guest the `vm-exits` scenario runs: 64-bit ring-0 code in the
//! kernel's own address space (vmx-core's minimal guest state), one stack
//! per processor.
//!
//! It executes CPUID leaf 0 (an unconditional VM exit) and VMCALL (another)
//! R12 times, adding each EBX that CPUID returned to R13, then HLT, which
//! the VMCS makes a VM exit too ("HLT exiting"): the signal that it is
//! done. The host emulates CPUID with its own and moves RIP past each
//! instruction; at the HLT, R13 proves that the host's answers reached the
//! guest's registers and that the guest's registers survived every exit.

use core::arch::global_asm;

use crate::smp::MAX_PROCESSORS;

/// The size of each guest's stack.
const GUEST_STACK_SIZE: usize = 4096;

/// One guest stack.
#[repr(C, align(16))]
struct Stack([u8; GUEST_STACK_SIZE]);

/// The guests' stacks; only their addresses are taken.
static mut GUEST_STACKS: [Stack; MAX_PROCESSORS] =
    [const { Stack([0; GUEST_STACK_SIZE]) }; MAX_PROCESSORS];

global_asm!(
    r#"
    .section .text.e2e_guest, "ax"
    .global e2e_guest_entry
e2e_guest_entry:
2:
    xor eax, eax
    xor ecx, ecx
    cpuid
    add r13, rbx
    vmcall
    dec r12
    jnz 2b
3:
    hlt
    // Never resumed after HLT; spin on HLT should a host do it (not back
    // to the loop, whose R12, now 0, would count down from 2^64).
    jmp 3b
"#
);

unsafe extern "C" {
    /// The guest's first instruction.
    fn e2e_guest_entry();
}

/// The guest's entry point (its RIP at VMLAUNCH).
pub fn entry() -> u64 {
    e2e_guest_entry as *const () as usize as u64
}

/// The top of processor `index`'s guest stack (its RSP at VMLAUNCH).
pub fn stack_top(index: usize) -> u64 {
    assert!(
        index < MAX_PROCESSORS,
        "no guest stack for processor {index}"
    );
    (&raw const GUEST_STACKS)
        .cast::<Stack>()
        .wrapping_add(index + 1)
        .addr() as u64
}
