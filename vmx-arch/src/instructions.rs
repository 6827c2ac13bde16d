//! The raw instructions. Each function executes one instruction (two for
//! the VMX instructions: the instruction, then PUSHFQ to read RFLAGS) and
//! returns its architectural result; the guarded ones return the exception
//! vector instead when the kernel's handler recovered from one.
//!
//! With the `preset-flags` feature (a test build), each VMX instruction runs
//! with CF, PF, AF, ZF, SF and OF set first, as kvm-unit-tests sets CF and
//! ZF, and the RFLAGS read after it must be one a VMX instruction can leave
//! ([`vmx_core::instruction::written_by_vmx_instruction`]): every outcome
//! clears PF, AF, SF and OF and sets at most one of CF and ZF, so reading
//! the preset value instead of the instruction's panics.

use core::arch::asm;

use crate::extable::NO_FAULT;

/// Emits `asm!` for one guarded instruction at label `2:` resuming at
/// label `3:`. With `fault-recovery`, the pair goes into `vmx_extable`.
#[cfg(feature = "fault-recovery")]
macro_rules! guarded {
    ($($pre:literal),* ; $insn:literal, $($rest:tt)*) => {
        asm!(
            $($pre,)*
            concat!("2: ", $insn),
            "3:",
            ".pushsection vmx_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            $($rest)*
        )
    };
    ($insn:literal, $($rest:tt)*) => {
        guarded!(; $insn, $($rest)*)
    };
}

#[cfg(not(feature = "fault-recovery"))]
macro_rules! guarded {
    ($($pre:literal),* ; $insn:literal, $($rest:tt)*) => {
        asm!($($pre,)* concat!("2: ", $insn), "3:", $($rest)*)
    };
    ($insn:literal, $($rest:tt)*) => {
        guarded!(; $insn, $($rest)*)
    };
}

/// A guarded VMX instruction: with `preset-flags`, CF, PF, AF, ZF, SF and
/// OF are set just before it, in the same `asm!` block.
#[cfg(feature = "preset-flags")]
macro_rules! guarded_vmx {
    ($insn:literal, $($rest:tt)*) => {
        guarded!("pushfq", "or qword ptr [rsp], 0x8d5", "popfq"; $insn, $($rest)*)
    };
}

#[cfg(not(feature = "preset-flags"))]
macro_rules! guarded_vmx {
    ($insn:literal, $($rest:tt)*) => {
        guarded!($insn, $($rest)*)
    };
}

/// CF | PF | AF | ZF | SF | OF, the flags `preset-flags` sets: 0x8d5.
#[cfg(feature = "preset-flags")]
const _: () = assert!(vmx_core::instruction::VMX_OUTCOME_FLAGS == 0x8d5);

/// The preset of `preset-flags` followed by NOP where a VMX instruction
/// would be, read back the same way: RFLAGS as every wrapper would see them
/// if the instruction wrote none. A test kernel checks that this is not a
/// VMX outcome, the negative control of the wrappers' check.
#[cfg(feature = "preset-flags")]
#[must_use]
pub fn preset_then_nop() -> u64 {
    let rflags: u64;
    // SAFETY: sets the six arithmetic flags (PUSHFQ/POPFQ on the stack),
    // executes NOP and reads RFLAGS: nothing else changes, at any CPL. The
    // table entry for the NOP is never used (NOP does not fault).
    unsafe {
        guarded_vmx!("nop",
            "pushfq",
            "pop {flags}",
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => _);
    }
    rflags
}

/// With `preset-flags`, panics unless `rflags` is what a VMX instruction
/// leaves: then the wrapper read the preset, not the instruction's flags.
fn check_written(instruction: &str, rflags: u64) {
    if cfg!(feature = "preset-flags") {
        assert!(
            vmx_core::instruction::written_by_vmx_instruction(rflags),
            "{instruction} left RFLAGS {rflags:#x}: not written by the instruction (preset 0x8d5)"
        );
    }
}

fn fault(r11: u64) -> Result<(), u8> {
    if r11 == NO_FAULT {
        Ok(())
    } else {
        Err(r11 as u8)
    }
}

/// RDMSR.
///
/// # Safety
/// CPL 0. Without a recovering exception handler the MSR must exist.
pub unsafe fn rdmsr(msr: u32) -> Result<u64, u8> {
    let (low, high): (u32, u32);
    let r11: u64;
    // SAFETY: the caller runs at CPL 0; RDMSR only reads.
    unsafe {
        guarded!("rdmsr",
            in("ecx") msr, out("eax") low, out("edx") high,
            inout("r11") NO_FAULT => r11,
            options(nostack, preserves_flags));
    }
    fault(r11)?;
    Ok((u64::from(high) << 32) | u64::from(low))
}

/// WRMSR.
///
/// # Safety
/// CPL 0, and the write must not break the running system.
pub unsafe fn wrmsr(msr: u32, value: u64) -> Result<(), u8> {
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 and vouches for the value.
    unsafe {
        guarded!("wrmsr",
            in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            inout("r11") NO_FAULT => r11,
            options(nostack, preserves_flags));
    }
    fault(r11)
}

/// MOV from CR0. Written in assembly rather than with `x86::controlregs`,
/// whose getters truncate the value to the bits its flags type knows:
/// writing such a value back would clear bits the system set.
///
/// # Safety
/// CPL 0.
pub unsafe fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: the caller runs at CPL 0; reading CR0 has no side effect.
    // Not `preserves_flags`: the SDM lists OF, SF, ZF, AF, PF and CF as
    // undefined after MOV from a control register.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack)) };
    value
}

/// MOV to CR0.
///
/// # Safety
/// CPL 0, and the value must keep the system running (PE, PG, WP as the
/// system has them).
pub unsafe fn write_cr0(value: u64) {
    // SAFETY: the caller runs at CPL 0 and vouches for the value.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack)) };
}

/// MOV from CR4.
///
/// # Safety
/// CPL 0.
pub unsafe fn read_cr4() -> u64 {
    let value: u64;
    // SAFETY: the caller runs at CPL 0; reading CR4 has no side effect.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack)) };
    value
}

/// MOV to CR4.
///
/// # Safety
/// CPL 0, and the value must keep the system running.
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: the caller runs at CPL 0 and vouches for the value.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack)) };
}

/// VMXON; returns RFLAGS after it.
///
/// # Safety
/// CPL 0; `region` is the physical address of a prepared VMXON region that
/// stays allocated until VMXOFF.
pub unsafe fn vmxon(region: u64) -> Result<u64, u8> {
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 and owns the region; the operand is a
    // pointer to a local holding the physical address, as VMXON's m64 wants.
    unsafe {
        guarded_vmx!("vmxon qword ptr [{ptr}]",
            "pushfq",
            "pop {flags}",
            ptr = in(reg) &raw const region,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMXON", rflags);
    Ok(rflags)
}

/// VMXOFF; returns RFLAGS after it.
///
/// # Safety
/// CPL 0; the caller entered VMX operation on this processor and nothing
/// depends on it any more.
pub unsafe fn vmxoff() -> Result<u64, u8> {
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 and is done with VMX operation.
    unsafe {
        guarded_vmx!("vmxoff",
            "pushfq",
            "pop {flags}",
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMXOFF", rflags);
    Ok(rflags)
}

/// VMCLEAR; returns RFLAGS after it.
///
/// # Safety
/// CPL 0; `region` is the physical address of a VMCS region the caller
/// owns (VMCLEAR writes the VMCS's data to it).
pub unsafe fn vmclear(region: u64) -> Result<u64, u8> {
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 and owns the region; the operand is a
    // pointer to a local holding the physical address, as VMCLEAR's m64
    // wants.
    unsafe {
        guarded_vmx!("vmclear qword ptr [{ptr}]",
            "pushfq",
            "pop {flags}",
            ptr = in(reg) &raw const region,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMCLEAR", rflags);
    Ok(rflags)
}

/// VMPTRLD; returns RFLAGS after it.
///
/// # Safety
/// CPL 0; `region` is the physical address of a prepared VMCS region that
/// stays allocated while it is current.
pub unsafe fn vmptrld(region: u64) -> Result<u64, u8> {
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 and owns the region; the operand is a
    // pointer to a local holding the physical address, as VMPTRLD's m64
    // wants.
    unsafe {
        guarded_vmx!("vmptrld qword ptr [{ptr}]",
            "pushfq",
            "pop {flags}",
            ptr = in(reg) &raw const region,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMPTRLD", rflags);
    Ok(rflags)
}

/// VMREAD of a VMCS field; `None` if VMREAD itself failed.
///
/// # Safety
/// CPL 0, in VMX operation.
pub unsafe fn vmread(field: u64) -> Result<Option<u64>, u8> {
    let value: u64;
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 in VMX operation; VMREAD only reads.
    unsafe {
        guarded_vmx!("vmread {value}, {field}",
            "pushfq",
            "pop {flags}",
            field = in(reg) field,
            value = out(reg) value,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMREAD", rflags);
    // CF or ZF set: VMfailInvalid or VMfailValid, no value.
    Ok((rflags & 0x41 == 0).then_some(value))
}
