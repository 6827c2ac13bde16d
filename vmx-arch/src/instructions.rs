//! The raw instructions. Each function executes one instruction (two for
//! VMXON/VMXOFF: the instruction, then PUSHFQ to read RFLAGS) and returns
//! its architectural result; the guarded ones return the exception vector
//! instead when the kernel's handler recovered from one.

use core::arch::asm;

use crate::extable::NO_FAULT;

/// Emits `asm!` for one guarded instruction at label `2:` resuming at
/// label `3:`. With `fault-recovery`, the pair goes into `vmx_extable`.
#[cfg(feature = "fault-recovery")]
macro_rules! guarded {
    ($insn:literal, $($rest:tt)*) => {
        asm!(
            concat!("2: ", $insn),
            "3:",
            ".pushsection vmx_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            $($rest)*
        )
    };
}

#[cfg(not(feature = "fault-recovery"))]
macro_rules! guarded {
    ($insn:literal, $($rest:tt)*) => {
        asm!(concat!("2: ", $insn), "3:", $($rest)*)
    };
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
        guarded!("vmxon qword ptr [{ptr}]",
            "pushfq",
            "pop {flags}",
            ptr = in(reg) &raw const region,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
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
        guarded!("vmxoff",
            "pushfq",
            "pop {flags}",
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
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
        guarded!("vmread {value}, {field}",
            "pushfq",
            "pop {flags}",
            field = in(reg) field,
            value = out(reg) value,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    // CF or ZF set: VMfailInvalid or VMfailValid, no value.
    Ok((rflags & 0x41 == 0).then_some(value))
}
