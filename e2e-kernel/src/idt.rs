//! The interrupt descriptor table: handlers for the 32 exception vectors,
//! shared by every processor.
//!
//! Each vector's stub pushes a dummy error code where the CPU pushes none,
//! then the vector number, and jumps to a common path that saves every
//! general-purpose register into an [`ExceptionFrame`] and calls
//! [`exception_dispatch`]. A fault at an instruction listed in the
//! fault-recovery table (`vmx_arch::extable`) resumes at the instruction's
//! fixup with R11 = the vector number; any other exception fails the run.
//!
//! No TSS: exceptions at CPL 0 without an IST index stay on the current
//! stack, and interrupts stay disabled throughout.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::boot::GDT_CODE64;

/// The number of architecturally defined exception vectors.
const EXCEPTION_VECTORS: usize = 32;

/// The registers of the interrupted code, as the stubs and the CPU leave them
/// on the stack (lowest address first).
#[derive(Debug)]
#[repr(C)]
pub struct ExceptionFrame {
    /// R15 .. RAX: saved by the common stub.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
    /// R11: the fault-recovery fixup receives the vector number here.
    pub r11: u64,
    /// R10.
    pub r10: u64,
    /// R9.
    pub r9: u64,
    /// R8.
    pub r8: u64,
    /// RBP.
    pub rbp: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
    /// RDX.
    pub rdx: u64,
    /// RCX.
    pub rcx: u64,
    /// RBX.
    pub rbx: u64,
    /// RAX.
    pub rax: u64,
    /// Pushed by the vector's stub.
    pub vector: u64,
    /// Pushed by the CPU, or 0 by the stub for vectors without one.
    pub error_code: u64,
    /// The faulting (or, for traps, next) instruction: IRETQ resumes here.
    pub rip: u64,
    /// CS.
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

global_asm!(
    r#"
    .section .text.exceptions, "ax"
    .code64

    // Vectors for which the CPU pushes an error code: #DF 8, #TS 10, #NP 11,
    // #SS 12, #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
    .macro exception_stub vector
    .balign 16
exception_stub_\vector:
    .if \vector == 8 || (\vector >= 10 && \vector <= 14) || \vector == 17 || \vector == 21 || \vector == 29 || \vector == 30
    .else
    push 0
    .endif
    push \vector
    jmp exception_common
    .endm

    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exception_stub \vector
    .endr

exception_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    // The frame is 22 * 8 bytes above a 16-byte aligned RSP (the CPU aligns
    // it before pushing SS): RSP is 16-byte aligned again here.
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16                 // vector, error code
    iretq

    .section .rodata.exceptions, "a"
    .balign 8
    .global exception_stubs
exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
"#,
    dispatch = sym exception_dispatch,
);

unsafe extern "C" {
    /// The stubs' addresses, one per vector.
    static exception_stubs: [u64; EXCEPTION_VECTORS];
}

/// The IDT: two quadwords per 16-byte gate descriptor. Atomics because the BSP
/// writes it once and every processor reads it (through LIDT).
static IDT: [AtomicU64; 2 * EXCEPTION_VECTORS] =
    [const { AtomicU64::new(0) }; 2 * EXCEPTION_VECTORS];

/// Gate type: present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
const INTERRUPT_GATE: u64 = 0x8E;

/// Fills the IDT. Run once on the BSP, before [`load`] on any processor.
pub fn init() {
    // SAFETY: `exception_stubs` is the initialised, never written table above.
    let stubs = unsafe { &exception_stubs };
    for (vector, &handler) in stubs.iter().enumerate() {
        let low = (handler & 0xFFFF)
            | u64::from(GDT_CODE64) << 16
            | INTERRUPT_GATE << 40
            | ((handler >> 16) & 0xFFFF) << 48;
        let high = handler >> 32;
        IDT[2 * vector].store(low, Ordering::Relaxed);
        IDT[2 * vector + 1].store(high, Ordering::Relaxed);
    }
}

/// Loads the IDT on the calling processor.
pub fn load() {
    /// The LIDT operand.
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (core::mem::size_of_val(&IDT) - 1) as u16,
        base: IDT.as_ptr() as u64,
    };
    // SAFETY: the IDT is a static with a gate for each exception vector
    // pointing at the stubs above (`init` ran on the BSP before any `load`).
    unsafe {
        asm!("lidt [{}]", in(reg) &raw const pointer, options(readonly, nostack, preserves_flags));
    }
}

/// Reads CR2, the linear address of the last page fault.
fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 at CPL 0 has no side effects.
    unsafe {
        asm!("mov {}, cr2", out(reg) value, options(nomem, nostack));
    }
    value
}

/// Called by the common stub with the interrupted state.
extern "C" fn exception_dispatch(frame: &mut ExceptionFrame) {
    // The stubs push vectors 0..32 only.
    let vector = u8::try_from(frame.vector).unwrap_or(u8::MAX);
    if vmx_arch::extable::recover(&mut frame.rip, &mut frame.r11, vector) {
        return;
    }
    crate::exit::fail(format_args!(
        "unexpected exception {} error code {:#x} at RIP {:#x} (CR2 {:#x}, RSP {:#x})",
        frame.vector,
        frame.error_code,
        frame.rip,
        read_cr2(),
        frame.rsp
    ));
}
