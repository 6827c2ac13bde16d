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

/// VMREAD of a VMCS field; returns RFLAGS after it and the value (which
/// means something only when neither CF nor ZF is set).
///
/// # Safety
/// CPL 0, in VMX operation.
pub unsafe fn vmread(field: u64) -> Result<(u64, u64), u8> {
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
    Ok((rflags, value))
}

/// VMWRITE of `value` to a VMCS field; returns RFLAGS after it.
///
/// # Safety
/// CPL 0, in VMX operation; the write must not make the host unsafe
/// (the host-state fields decide where a VM exit lands).
pub unsafe fn vmwrite(field: u64, value: u64) -> Result<u64, u8> {
    let rflags: u64;
    let r11: u64;
    // SAFETY: the caller runs at CPL 0 in VMX operation and vouches for
    // the value; VMWRITE changes only the current VMCS.
    unsafe {
        guarded_vmx!("vmwrite {field}, {value}",
            "pushfq",
            "pop {flags}",
            field = in(reg) field,
            value = in(reg) value,
            flags = out(reg) rflags,
            inout("r11") NO_FAULT => r11);
    }
    fault(r11)?;
    check_written("VMWRITE", rflags);
    Ok(rflags)
}

/// MOV from CR3.
///
/// # Safety
/// CPL 0.
pub unsafe fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: the caller runs at CPL 0; reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// The segment selectors: CS, SS, DS, ES, FS, GS (MOV from each) and TR
/// (STR).
#[must_use]
pub fn read_selectors() -> [u16; 7] {
    let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
    // SAFETY: reading segment registers and STR changes nothing and is
    // allowed at any CPL (UMIP aside, which only a CPL > 0 trips).
    unsafe {
        asm!(
            "mov {cs:x}, cs",
            "mov {ss:x}, ss",
            "mov {ds:x}, ds",
            "mov {es:x}, es",
            "mov {fs:x}, fs",
            "mov {gs:x}, gs",
            "str {tr:x}",
            cs = out(reg) cs, ss = out(reg) ss, ds = out(reg) ds, es = out(reg) es,
            fs = out(reg) fs, gs = out(reg) gs, tr = out(reg) tr,
            options(nomem, nostack, preserves_flags)
        );
    }
    [cs, ss, ds, es, fs, gs, tr]
}

/// SGDT and SIDT: `(base, limit)` of each.
#[must_use]
pub fn read_descriptor_tables() -> [(u64, u16); 2] {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: SGDT stores 10 bytes (limit, then base) into the local
    // buffer, which is that large; nothing else changes.
    unsafe { asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack, preserves_flags)) };
    // SAFETY: as SGDT, for SIDT.
    unsafe { asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack, preserves_flags)) };
    let decode = |bytes: [u8; 10]| {
        let limit = u16::from_le_bytes([bytes[0], bytes[1]]);
        let mut base = [0u8; 8];
        base.copy_from_slice(&bytes[2..]);
        (u64::from_le_bytes(base), limit)
    };
    [decode(gdtr), decode(idtr)]
}

/// The base address of the system segment (a TSS) that `selector`
/// selects in the GDT at `gdt_base`: the 16-byte descriptor's bits 39:16
/// and 63:56, and bits 31:0 of its second quadword (SDM, "Segment
/// Descriptor Tables": "TSS and LDT Descriptors in 64-bit mode").
///
/// # Safety
/// `gdt_base` is the GDTR base of the running processor, mapped, and
/// `selector` (with TI clear) selects a descriptor within its limit.
pub unsafe fn system_segment_base(gdt_base: u64, selector: u16) -> u64 {
    let descriptor = (gdt_base + u64::from(selector & !7)) as *const u64;
    // SAFETY: the caller guarantees the 16 bytes lie within the mapped GDT.
    let low = unsafe { descriptor.read_unaligned() };
    // SAFETY: as above, the second quadword of the same descriptor.
    let high = unsafe { descriptor.wrapping_add(1).read_unaligned() };
    ((low >> 16) & 0xff_ffff) | ((low >> 56) << 24) | ((high & 0xffff_ffff) << 32)
}

/// The outcome of [`enter_guest`]: 0 after a VM exit; RFLAGS after a
/// VMLAUNCH or VMRESUME that failed (never 0: bit 1 of RFLAGS is always
/// set); `ENTER_FAULTED | vector` after one that raised an exception.
pub const ENTER_FAULTED: u64 = 1 << 63;

unsafe extern "sysv64" {
    /// The host's side of a VM entry and exit (in `global_asm!` below):
    /// saves the host's callee-saved registers on its stack, writes the
    /// host-state RSP (that stack) and RIP (`vmx_arch_vm_exit`) fields,
    /// loads the guest's general registers from `registers`, and executes
    /// VMLAUNCH (`resume` = 0) or VMRESUME. A VM exit lands at
    /// `vmx_arch_vm_exit` on that stack, which saves the guest's registers
    /// to `registers`, restores the host's and returns 0.
    fn vmx_arch_enter_guest(registers: *mut vmx_core::GuestRegisters, resume: u64) -> u64;
}

/// Host-state RSP and RIP field encodings (SDM appendix "Field Encoding in
/// VMCS": natural-width host-state fields).
const _: () = assert!(x86::vmx::vmcs::host::RSP == 0x6c14 && x86::vmx::vmcs::host::RIP == 0x6c16);

/// The exception-table entries of VMLAUNCH and VMRESUME in
/// `vmx_arch_enter_guest`, with `fault-recovery`.
#[cfg(feature = "fault-recovery")]
macro_rules! entry_extable {
    () => {
        ".pushsection vmx_extable, \"a\"\n.balign 8\n.quad 2b, 6b\n.quad 5b, 6b\n.popsection"
    };
}

#[cfg(not(feature = "fault-recovery"))]
macro_rules! entry_extable {
    () => {
        ""
    };
}

/// In `vmx_arch_enter_guest`, before each VMX instruction: with
/// `preset-flags`, the preset of [`guarded_vmx`] (CF, PF, AF, ZF, SF and OF
/// set); nothing otherwise. Without the preset, the flags before VMRESUME
/// would be those of `cmp rsi, 0` with RSI = 1, all six clear: the shape
/// of VMsucceed, so reading them instead of VMRESUME's would pass the
/// check; and those before the two VMWRITEs would be the caller's.
#[cfg(feature = "preset-flags")]
macro_rules! preset_flags {
    () => {
        "pushfq\nor qword ptr [rsp], 0x8d5\npopfq"
    };
}

#[cfg(not(feature = "preset-flags"))]
macro_rules! preset_flags {
    () => {
        ""
    };
}

core::arch::global_asm!(
    // In the default section (`.text`): ELF and COFF spell section flags
    // differently, and the Windows driver links this too.
    ".global vmx_arch_enter_guest",
    "vmx_arch_enter_guest:",
    // The callee-saved registers of the System V ABI, then `registers`.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    // HOST_RSP: this stack, with `registers` on top; HOST_RIP: the exit.
    // A VMWRITE that fails here (no current VMCS) returns its RFLAGS as the
    // entry's VMfail: the same outcome VMLAUNCH would have had.
    // With `preset-flags`, each VMX instruction here runs with the six
    // flags preset (PUSHFQ/POPFQ below HOST_RSP, which they leave as it
    // was), as the other wrappers' do.
    "mov rax, 0x6c14",
    preset_flags!(),
    "vmwrite rax, rsp",
    "jbe 4f",
    "mov rax, 0x6c16",
    "lea rdx, [rip + vmx_arch_vm_exit]",
    preset_flags!(),
    "vmwrite rax, rdx",
    "jbe 4f",
    // The guest's registers; RDI, which points at them, last. MOV leaves
    // the flags of the comparison alone.
    "cmp rsi, 0",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jne 1f",
    preset_flags!(),
    "2: vmlaunch",
    "jmp 4f",
    "1:",
    preset_flags!(),
    "5: vmresume",
    // VMLAUNCH or VMRESUME fell through: it failed. Return RFLAGS.
    "4:",
    "pushfq",
    "pop rax",
    "jmp 7f",
    // A guarded VMLAUNCH or VMRESUME faulted: R11 holds the vector.
    "6:",
    "mov rax, r11",
    "bts rax, 63",
    "7:",
    "add rsp, 8",
    "jmp 8f",
    // VM exit: RSP is HOST_RSP, `registers` on top.
    ".global vmx_arch_vm_exit",
    "vmx_arch_vm_exit:",
    "xchg rdi, [rsp]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rsi",
    "mov [rdi + 48], rbp",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 40], rax",
    "xor eax, eax",
    "8:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    // The System V ABI wants DF clear at a return; a VM exit clears RFLAGS
    // (but bit 1) anyway.
    "cld",
    "ret",
    entry_extable!(),
);

/// VMLAUNCH (`resume` false) or VMRESUME of the current VMCS with the
/// guest's general registers: returns `Ok(None)` after a VM exit (the
/// guest's registers saved in `registers`), `Ok(Some(rflags))` when the
/// instruction failed, `Err(vector)` when it faulted.
///
/// After a VM exit (a VM-entry failure included) RFLAGS is 0x2 (SDM,
/// "Loading Host RIP, RSP, and RFLAGS": cleared but bit 1): interrupts
/// are off when this returns, whatever IF was at the call; a caller that
/// had them on turns them on again itself.
///
/// # Safety
/// CPL 0, in VMX operation with a current VMCS whose every other host-state
/// field describes the running kernel (its CR3, segments, descriptor
/// tables), so that the VM exit lands in this kernel; the guest it enters
/// must not harm the host (it shares its memory).
pub unsafe fn enter_guest(
    registers: &mut vmx_core::GuestRegisters,
    resume: bool,
) -> Result<Option<u64>, u8> {
    // SAFETY: the caller's contract; `registers` is a valid, exclusive
    // `repr(C)` GuestRegisters that the assembly reads and writes at the
    // offsets of its fields.
    let result = unsafe { vmx_arch_enter_guest(registers, u64::from(resume)) };
    match result {
        0 => Ok(None),
        faulted if faulted & ENTER_FAULTED != 0 => Err(faulted as u8),
        rflags => {
            // With `preset-flags` the instruction ran with all six flags
            // set: reading them instead of its own fails this check. (The
            // flags of the CMP before it would not: for VMRESUME they are
            // all clear, the shape of VMsucceed.)
            check_written(if resume { "VMRESUME" } else { "VMLAUNCH" }, rflags);
            Ok(Some(rflags))
        }
    }
}

/// The offsets the assembly uses.
const _: () = {
    use core::mem::offset_of;
    use vmx_core::GuestRegisters as R;
    assert!(offset_of!(R, rax) == 0 && offset_of!(R, rbx) == 8 && offset_of!(R, rcx) == 16);
    assert!(offset_of!(R, rdx) == 24 && offset_of!(R, rsi) == 32 && offset_of!(R, rdi) == 40);
    assert!(offset_of!(R, rbp) == 48 && offset_of!(R, r8) == 56 && offset_of!(R, r11) == 80);
    assert!(offset_of!(R, r15) == 112 && core::mem::size_of::<R>() == 120);
};
