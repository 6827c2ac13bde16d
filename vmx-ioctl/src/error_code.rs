//! vmx-core's [`Error`] on the wire: a stable code plus three detail words,
//! 32 bytes, from which user mode rebuilds the very same [`Error`] (and so
//! prints the same message as on Linux).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | code (table below) |
//! | 4 | 4 | reserved, 0 |
//! | 8 | 8 | detail 0 |
//! | 16 | 8 | detail 1 |
//! | 24 | 8 | detail 2 |
//!
//! | code | error | detail 0 | detail 1 | detail 2 |
//! |---|---|---|---|---|
//! | 0 | none | | | |
//! | 1 | `NotIntel` | signature bytes 0–7 | signature bytes 8–11 | |
//! | 2 | `VmxNotSupported` | 1 if a hypervisor, else 0 | signature bytes 0–7 | signature bytes 8–11 |
//! | 3 | `DisabledByFirmware` | IA32_FEATURE_CONTROL | | |
//! | 4 | `VmxOnlyInsideSmx` | IA32_FEATURE_CONTROL | | |
//! | 5 | `FeatureControlNotLocked` | written | read | |
//! | 6 | `InUse` | CR4 | | |
//! | 7 | `Faulted` | instruction | exception vector | |
//! | 8 | `RegionTooLarge` | size | IA32_VMX_BASIC | |
//! | 9 | `UnsupportedMemoryType` | memory type | IA32_VMX_BASIC | |
//! | 10 | `RegionMisaligned` | physical address | | |
//! | 11 | `RegionBeyondAddressWidth` | physical address | width | |
//! | 12 | `FixedBitsUnsatisfiable` | 0 (CR0) or 4 (CR4) | FIXED0 | FIXED1 |
//! | 13 | `Cr0ChangeRefused` | CR0 | adjusted CR0 | |
//! | 14 | `VmFailInvalid` | instruction | | |
//! | 15 | `VmFailValid` | instruction | VM-instruction error number | |
//! | 16 | `AlreadyEntered` | | | |
//! | 17 | `NotEntered` | | | |
//! | 18 | `OutOfMemory` | | | |
//! | 19 | `ProcessorUnavailable` | | | |
//! | 20 | `TooManyProcessors` | count | capacity | |
//! | 21 | `RegionSizeZero` | IA32_VMX_BASIC | | |
//! | 22 | `RevisionBit31Set` | IA32_VMX_BASIC | | |
//! | 23 | `FixedBitForbidden` | register (0 or 4) << 8 \| bit | value | FIXED1 |
//! | 24 | `NotKnown` | what: 0 leaf 0, 1 leaf 1, 2 MSR, 3 control register | MSR or register (0, 4) | |
//! | 25 | `VmcsMisaligned` | physical address | | |
//! | 26 | `VmcsBeyondAddressWidth` | physical address | width | |
//! | 27 | `VmcsIsVmxonRegion` | physical address | | |
//! | 28 | `ControlNotAllowed` | control (index in `Control::ALL`) | bit | setting (0 or 1) |
//! | 29 | `EntryRulesBroken` | rule (index in `Rule::ALL`) | how many | |
//! | 30 | `VmcsFieldFailed` | field encoding \| write << 32 | outcome: 1 VMfailInvalid, 2 VMfailValid | VM-instruction error number |
//! | 31 | `VmcsFieldFaulted` | field encoding \| write << 32 | exception vector | |
//! | 32 | `EntryFaulted` | 1 for VMRESUME, 0 for VMLAUNCH | exception vector | |
//! | 33 | `AddressWidthTooSmall` | width | | |
//! | 0xFFFF_FFFF | an error this protocol version does not know | | | |
//!
//! An instruction is `kind << 32 | msr` with kind 0 RDMSR, 1 WRMSR,
//! 2 VMXON, 3 VMXOFF, 4 VMCLEAR, 5 VMPTRLD. A 12-byte signature is stored as its bytes, little
//! endian, in the order CPUID's registers spell it.

use vmx_core::controls::Control;
use vmx_core::cpuid::{Hypervisor, Signature, Vendor};
use vmx_core::entry_checks::Rule;
use vmx_core::fields::Field;
use vmx_core::fixed_bits::ControlRegister;
use vmx_core::{CpuidResult, Error, Fault, Instruction, Missing, VmInstructionError, VmxOutcome};

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use crate::layout::ErrorLayout;

/// An [`Error`] as the driver sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WireError {
    /// The stable code.
    pub code: u32,
    /// The values the error carries.
    pub detail: [u64; 3],
}

/// The code for "no error".
pub const NONE: u32 = 0;
/// The code for an error this protocol version cannot carry.
pub const UNKNOWN: u32 = u32::MAX;

fn pack_signature(signature: &Signature) -> (u64, u64) {
    let mut low = [0u8; 8];
    low.copy_from_slice(&signature[..8]);
    let mut high = [0u8; 8];
    high[..4].copy_from_slice(&signature[8..]);
    (u64::from_le_bytes(low), u64::from_le_bytes(high))
}

/// The three CPUID register words of a signature, or `None` when the
/// detail words carry more than 12 bytes.
fn unpack_signature(low: u64, high: u64) -> Option<[u32; 3]> {
    if high >> 32 != 0 {
        return None;
    }
    let low = low.to_le_bytes();
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Some([word(&low[..4]), word(&low[4..]), high as u32])
}

fn pack_instruction(instruction: Instruction) -> u64 {
    match instruction {
        Instruction::Rdmsr(msr) => u64::from(msr),
        Instruction::Wrmsr(msr) => 1 << 32 | u64::from(msr),
        Instruction::Vmxon => 2 << 32,
        Instruction::Vmxoff => 3 << 32,
        Instruction::Vmclear => 4 << 32,
        Instruction::Vmptrld => 5 << 32,
    }
}

fn unpack_instruction(raw: u64) -> Option<Instruction> {
    let msr = raw as u32;
    match (raw >> 32, msr) {
        (0, msr) => Some(Instruction::Rdmsr(msr)),
        (1, msr) => Some(Instruction::Wrmsr(msr)),
        (2, 0) => Some(Instruction::Vmxon),
        (3, 0) => Some(Instruction::Vmxoff),
        (4, 0) => Some(Instruction::Vmclear),
        (5, 0) => Some(Instruction::Vmptrld),
        _ => None,
    }
}

/// The position of `item` in `all` (every value is in its `ALL`).
fn index_of<T: PartialEq>(all: &[T], item: T) -> u64 {
    all.iter().position(|x| *x == item).unwrap_or(usize::MAX) as u64
}

fn pack_field(field: Field, write: bool) -> u64 {
    u64::from(field.encoding()) | u64::from(write) << 32
}

fn unpack_field(raw: u64) -> Option<(Field, bool)> {
    let write = match raw >> 32 {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some((Field::from_encoding(raw as u32), write))
}

fn pack_register(register: ControlRegister) -> u64 {
    match register {
        ControlRegister::Cr0 => 0,
        ControlRegister::Cr4 => 4,
    }
}

fn unpack_register(raw: u64) -> Option<ControlRegister> {
    match raw {
        0 => Some(ControlRegister::Cr0),
        4 => Some(ControlRegister::Cr4),
        _ => None,
    }
}

fn unpack_u32(raw: u64) -> Option<u32> {
    u32::try_from(raw).ok()
}

fn unpack_u8(raw: u64) -> Option<u8> {
    u8::try_from(raw).ok()
}

impl WireError {
    /// The size on the wire.
    pub const SIZE: usize = core::mem::size_of::<ErrorLayout>();

    /// No error.
    pub const NONE: Self = Self {
        code: NONE,
        detail: [0; 3],
    };

    /// The wire form of `error`.
    #[must_use]
    pub fn from_error(error: &Error) -> Self {
        let (code, detail) = match *error {
            Error::NotIntel { vendor } => {
                let (a, b) = pack_signature(&vendor.signature());
                (1, [a, b, 0])
            }
            Error::VmxNotSupported { hypervisor } => match hypervisor {
                None => (2, [0; 3]),
                Some(hypervisor) => {
                    let (a, b) = pack_signature(&hypervisor.signature());
                    (2, [1, a, b])
                }
            },
            Error::DisabledByFirmware { msr } => (3, [msr, 0, 0]),
            Error::VmxOnlyInsideSmx { msr } => (4, [msr, 0, 0]),
            Error::FeatureControlNotLocked { written, read } => (5, [written, read, 0]),
            Error::InUse { cr4 } => (6, [cr4, 0, 0]),
            Error::Faulted { instruction, fault } => (
                7,
                [pack_instruction(instruction), u64::from(fault.vector()), 0],
            ),
            Error::RegionTooLarge { size, basic } => (8, [u64::from(size), basic, 0]),
            Error::UnsupportedMemoryType { memory_type, basic } => {
                (9, [u64::from(memory_type), basic, 0])
            }
            Error::RegionMisaligned { physical_address } => (10, [physical_address, 0, 0]),
            Error::RegionBeyondAddressWidth {
                physical_address,
                width,
            } => (11, [physical_address, u64::from(width), 0]),
            Error::FixedBitsUnsatisfiable {
                register,
                fixed0,
                fixed1,
            } => (12, [pack_register(register), fixed0, fixed1]),
            Error::Cr0ChangeRefused { cr0, adjusted } => (13, [cr0, adjusted, 0]),
            Error::VmFailInvalid { instruction } => (14, [pack_instruction(instruction), 0, 0]),
            Error::VmFailValid { instruction, error } => (
                15,
                [pack_instruction(instruction), u64::from(error.number()), 0],
            ),
            Error::AlreadyEntered => (16, [0; 3]),
            Error::NotEntered => (17, [0; 3]),
            Error::OutOfMemory => (18, [0; 3]),
            Error::ProcessorUnavailable => (19, [0; 3]),
            Error::TooManyProcessors { count, capacity } => {
                (20, [count as u64, capacity as u64, 0])
            }
            Error::RegionSizeZero { basic } => (21, [basic, 0, 0]),
            Error::RevisionBit31Set { basic } => (22, [basic, 0, 0]),
            Error::FixedBitForbidden {
                register,
                bit,
                value,
                fixed1,
            } => (
                23,
                [pack_register(register) << 8 | u64::from(bit), value, fixed1],
            ),
            Error::VmcsMisaligned { physical_address } => (25, [physical_address, 0, 0]),
            Error::AddressWidthTooSmall { width } => (33, [u64::from(width), 0, 0]),
            Error::VmcsBeyondAddressWidth {
                physical_address,
                width,
            } => (26, [physical_address, u64::from(width), 0]),
            Error::VmcsIsVmxonRegion { physical_address } => (27, [physical_address, 0, 0]),
            Error::ControlNotAllowed {
                control,
                bit,
                setting,
            } => (
                28,
                [
                    index_of(&Control::ALL, control),
                    u64::from(bit),
                    u64::from(setting),
                ],
            ),
            Error::EntryRulesBroken { rule, failing } => {
                (29, [index_of(Rule::ALL, rule), failing as u64, 0])
            }
            Error::VmcsFieldFailed {
                field,
                write,
                outcome,
            } => {
                let (kind, number) = match outcome {
                    VmxOutcome::FailInvalid => (1, 0),
                    VmxOutcome::FailValid(error) => (2, u64::from(error.number())),
                    // Not a failure: no such error is made.
                    VmxOutcome::Succeed => (0, 0),
                };
                (30, [pack_field(field, write), kind, number])
            }
            Error::VmcsFieldFaulted {
                field,
                write,
                fault,
            } => (31, [pack_field(field, write), u64::from(fault.vector()), 0]),
            Error::EntryFaulted { resume, fault } => {
                (32, [u64::from(resume), u64::from(fault.vector()), 0])
            }
            Error::NotKnown { missing } => {
                let (what, which) = match missing {
                    Missing::Leaf0 => (0, 0),
                    Missing::Leaf1 => (1, 0),
                    Missing::Msr(msr) => (2, u64::from(msr)),
                    Missing::ControlRegister(register) => (3, pack_register(register)),
                };
                (24, [what, which, 0])
            }
            // vmx-core's error is non_exhaustive: a variant added there
            // reaches user mode as "unknown" until this table learns it
            // (the test `every_error_round_trips_through_the_wire` lists
            // every variant, so a forgotten one shows there).
            _ => (UNKNOWN, [0; 3]),
        };
        Self { code, detail }
    }

    /// The [`Error`] this stands for; `None` for [`NONE`], [`UNKNOWN`], a
    /// code this version does not define, or details that no [`Error`]
    /// has.
    #[must_use]
    pub fn to_error(&self) -> Option<Error> {
        let [a, b, c] = self.detail;
        let unused = |words: &[u64]| words.iter().all(|w| *w == 0);
        let error = match self.code {
            1 if unused(&[c]) => {
                let [w0, w1, w2] = unpack_signature(a, b)?;
                Error::NotIntel {
                    vendor: Vendor::from_leaf0(CpuidResult {
                        eax: 0,
                        ebx: w0,
                        edx: w1,
                        ecx: w2,
                    }),
                }
            }
            2 => match a {
                0 if unused(&[b, c]) => Error::VmxNotSupported { hypervisor: None },
                1 => {
                    let [w0, w1, w2] = unpack_signature(b, c)?;
                    Error::VmxNotSupported {
                        hypervisor: Some(Hypervisor::from_leaf(CpuidResult {
                            eax: 0,
                            ebx: w0,
                            ecx: w1,
                            edx: w2,
                        })),
                    }
                }
                _ => return None,
            },
            3 if unused(&[b, c]) => Error::DisabledByFirmware { msr: a },
            4 if unused(&[b, c]) => Error::VmxOnlyInsideSmx { msr: a },
            5 if unused(&[c]) => Error::FeatureControlNotLocked {
                written: a,
                read: b,
            },
            6 if unused(&[b, c]) => Error::InUse { cr4: a },
            7 if unused(&[c]) => Error::Faulted {
                instruction: unpack_instruction(a)?,
                fault: Fault::from_vector(unpack_u8(b)?),
            },
            8 if unused(&[c]) => Error::RegionTooLarge {
                size: unpack_u32(a)?,
                basic: b,
            },
            9 if unused(&[c]) => Error::UnsupportedMemoryType {
                memory_type: unpack_u8(a)?,
                basic: b,
            },
            10 if unused(&[b, c]) => Error::RegionMisaligned {
                physical_address: a,
            },
            11 if unused(&[c]) => Error::RegionBeyondAddressWidth {
                physical_address: a,
                width: unpack_u8(b)?,
            },
            12 => Error::FixedBitsUnsatisfiable {
                register: unpack_register(a)?,
                fixed0: b,
                fixed1: c,
            },
            13 if unused(&[c]) => Error::Cr0ChangeRefused {
                cr0: a,
                adjusted: b,
            },
            14 if unused(&[b, c]) => Error::VmFailInvalid {
                instruction: unpack_instruction(a)?,
            },
            15 if unused(&[c]) => Error::VmFailValid {
                instruction: unpack_instruction(a)?,
                error: VmInstructionError::from_number(unpack_u32(b)?),
            },
            16 if unused(&[a, b, c]) => Error::AlreadyEntered,
            17 if unused(&[a, b, c]) => Error::NotEntered,
            18 if unused(&[a, b, c]) => Error::OutOfMemory,
            19 if unused(&[a, b, c]) => Error::ProcessorUnavailable,
            20 if unused(&[c]) => Error::TooManyProcessors {
                count: usize::try_from(a).ok()?,
                capacity: usize::try_from(b).ok()?,
            },
            21 if unused(&[b, c]) => Error::RegionSizeZero { basic: a },
            22 if unused(&[b, c]) => Error::RevisionBit31Set { basic: a },
            23 if a >> 16 == 0 => Error::FixedBitForbidden {
                register: unpack_register(a >> 8)?,
                bit: unpack_u8(a & 0xff).filter(|bit| *bit < 64)?,
                value: b,
                fixed1: c,
            },
            33 if unused(&[b, c]) => Error::AddressWidthTooSmall {
                width: unpack_u8(a)?,
            },
            25 if unused(&[b, c]) => Error::VmcsMisaligned {
                physical_address: a,
            },
            26 if unused(&[c]) => Error::VmcsBeyondAddressWidth {
                physical_address: a,
                width: unpack_u8(b)?,
            },
            27 if unused(&[b, c]) => Error::VmcsIsVmxonRegion {
                physical_address: a,
            },
            28 => Error::ControlNotAllowed {
                control: *Control::ALL.get(usize::try_from(a).ok()?)?,
                bit: unpack_u8(b).filter(|bit| *bit < 32)?,
                setting: match c {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            },
            29 if unused(&[c]) => Error::EntryRulesBroken {
                rule: *Rule::ALL.get(usize::try_from(a).ok()?)?,
                failing: usize::try_from(b).ok().filter(|n| *n > 0)?,
            },
            30 => {
                let (field, write) = unpack_field(a)?;
                let outcome = match (b, c) {
                    (1, 0) => VmxOutcome::FailInvalid,
                    (2, number) => {
                        VmxOutcome::FailValid(VmInstructionError::from_number(unpack_u32(number)?))
                    }
                    _ => return None,
                };
                Error::VmcsFieldFailed {
                    field,
                    write,
                    outcome,
                }
            }
            31 if unused(&[c]) => {
                let (field, write) = unpack_field(a)?;
                Error::VmcsFieldFaulted {
                    field,
                    write,
                    fault: Fault::from_vector(unpack_u8(b)?),
                }
            }
            32 if unused(&[c]) => Error::EntryFaulted {
                resume: match a {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
                fault: Fault::from_vector(unpack_u8(b)?),
            },
            24 if unused(&[c]) => Error::NotKnown {
                missing: match (a, b) {
                    (0, 0) => Missing::Leaf0,
                    (1, 0) => Missing::Leaf1,
                    (2, msr) => Missing::Msr(unpack_u32(msr)?),
                    (3, register) => Missing::ControlRegister(unpack_register(register)?),
                    _ => return None,
                },
            },
            _ => return None,
        };
        Some(error)
    }

    /// Writes the 32 bytes into `bytes[..SIZE]`; nothing when shorter.
    pub fn encode(&self, bytes: &mut [u8]) {
        // A shorter `bytes` is left untouched, as documented.
        let _ = self.layout().write_to_prefix(bytes);
    }

    /// The error as its wire layout.
    #[must_use]
    pub fn layout(&self) -> ErrorLayout {
        ErrorLayout {
            code: U32::new(self.code),
            reserved: U32::ZERO,
            detail: self.detail.map(U64::new),
        }
    }

    /// The error from its wire layout; `None` when the reserved field is
    /// not zero (the code is not checked, as in [`WireError::decode`]).
    #[must_use]
    pub fn from_layout(layout: &ErrorLayout) -> Option<Self> {
        if layout.reserved != 0 {
            return None;
        }
        Some(Self {
            code: layout.code.get(),
            detail: layout.detail.map(U64::get),
        })
    }

    /// Reads the 32 bytes at the start of `bytes`; `None` when shorter or
    /// the reserved field is not zero. The code is not checked: an unknown
    /// one decodes, and [`WireError::to_error`] says `None`.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (layout, _) = ErrorLayout::read_from_prefix(bytes).ok()?;
        Self::from_layout(&layout)
    }
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.code, self.to_error()) {
            (NONE, _) => f.write_str("no error"),
            (_, Some(error)) => write!(f, "{error}"),
            (code, None) => write!(
                f,
                "driver error code {code:#x} (details {:#x}, {:#x}, {:#x}), unknown to this \
                 program: build the driver and the program from the same source",
                self.detail[0], self.detail[1], self.detail[2]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant, with values that use every detail word.
    fn every_error() -> [Error; 45] {
        [
            Error::NotIntel {
                vendor: Vendor::Amd,
            },
            Error::NotIntel {
                vendor: Vendor::Other(*b"CentaurHauls"),
            },
            Error::VmxNotSupported { hypervisor: None },
            Error::VmxNotSupported {
                hypervisor: Some(Hypervisor::HyperV),
            },
            Error::VmxNotSupported {
                hypervisor: Some(Hypervisor::Kvm),
            },
            Error::VmxNotSupported {
                hypervisor: Some(Hypervisor::Other(*b"Apple VZ\0\0\0\x01")),
            },
            Error::DisabledByFirmware { msr: 0x1 },
            Error::VmxOnlyInsideSmx { msr: 0x3 },
            Error::FeatureControlNotLocked {
                written: 0x5,
                read: 0x0,
            },
            Error::InUse { cr4: 0x2020 },
            Error::Faulted {
                instruction: Instruction::Rdmsr(0x48b),
                fault: Fault::GeneralProtection,
            },
            Error::Faulted {
                instruction: Instruction::Wrmsr(0x3a),
                fault: Fault::Other(14),
            },
            Error::Faulted {
                instruction: Instruction::Vmxon,
                fault: Fault::InvalidOpcode,
            },
            Error::RegionTooLarge {
                size: 8192,
                basic: 0x00da_2000_0000_0001,
            },
            Error::UnsupportedMemoryType {
                memory_type: 0,
                basic: 0x0000_1000_0000_0001,
            },
            Error::RegionMisaligned {
                physical_address: 0x1234,
            },
            Error::RegionBeyondAddressWidth {
                physical_address: 1 << 40,
                width: 36,
            },
            Error::FixedBitsUnsatisfiable {
                register: ControlRegister::Cr0,
                fixed0: 0x21,
                fixed1: 0x1,
            },
            Error::FixedBitsUnsatisfiable {
                register: ControlRegister::Cr4,
                fixed0: 0x2000,
                fixed1: 0,
            },
            Error::Cr0ChangeRefused {
                cr0: 0x10,
                adjusted: 0x8000_0031,
            },
            Error::VmFailInvalid {
                instruction: Instruction::Vmxon,
            },
            Error::VmFailValid {
                instruction: Instruction::Vmxoff,
                error: VmInstructionError::from_number(23),
            },
            Error::AlreadyEntered,
            Error::NotEntered,
            Error::OutOfMemory,
            Error::ProcessorUnavailable,
            Error::TooManyProcessors {
                count: 300,
                capacity: 256,
            },
            Error::RegionSizeZero {
                basic: 0x00d8_0000_0000_002b,
            },
            Error::RevisionBit31Set {
                basic: 0x00d8_1000_8000_002b,
            },
            Error::FixedBitForbidden {
                register: ControlRegister::Cr4,
                bit: 22,
                value: 0x40_0020,
                fixed1: 0x0037_27ff,
            },
            Error::FixedBitForbidden {
                register: ControlRegister::Cr0,
                bit: 63,
                value: 1 << 63,
                fixed1: 0xffff_ffff,
            },
            Error::NotKnown {
                missing: Missing::Leaf0,
            },
            Error::NotKnown {
                missing: Missing::Msr(0x489),
            },
            Error::NotKnown {
                missing: Missing::ControlRegister(ControlRegister::Cr4),
            },
            Error::VmFailValid {
                instruction: Instruction::Vmclear,
                error: VmInstructionError::from_number(3),
            },
            Error::VmcsMisaligned {
                physical_address: 0x10_1008,
            },
            Error::VmcsBeyondAddressWidth {
                physical_address: 1 << 40,
                width: 39,
            },
            Error::VmcsIsVmxonRegion {
                physical_address: 0x10_1000,
            },
            Error::ControlNotAllowed {
                control: Control::VmEntry,
                bit: 9,
                setting: true,
            },
            Error::EntryRulesBroken {
                rule: Rule::ALL[Rule::ALL.len() - 1],
                failing: 3,
            },
            Error::VmcsFieldFailed {
                field: Field::from_encoding(0x681e),
                write: true,
                outcome: VmxOutcome::FailValid(VmInstructionError::from_number(12)),
            },
            Error::VmcsFieldFailed {
                field: Field::from_encoding(0x4400),
                write: false,
                outcome: VmxOutcome::FailInvalid,
            },
            Error::VmcsFieldFaulted {
                field: Field::from_encoding(0x6c16),
                write: true,
                fault: Fault::GeneralProtection,
            },
            Error::EntryFaulted {
                resume: true,
                fault: Fault::InvalidOpcode,
            },
            Error::AddressWidthTooSmall { width: 12 },
        ]
    }

    #[test]
    fn every_error_round_trips_through_the_wire() {
        for error in every_error() {
            let wire = WireError::from_error(&error);
            assert_ne!(wire.code, NONE);
            assert_ne!(wire.code, UNKNOWN);
            let mut bytes = [0xeeu8; WireError::SIZE];
            wire.encode(&mut bytes);
            let decoded = WireError::decode(&bytes).unwrap();
            assert_eq!(decoded, wire);
            assert_eq!(decoded.to_error(), Some(error), "{error:?}");
            assert_eq!(std::format!("{decoded}"), std::format!("{error}"));
        }
    }

    #[test]
    fn the_codes_are_stable() {
        let codes: std::vec::Vec<u32> = every_error()
            .iter()
            .map(|e| WireError::from_error(e).code)
            .collect();
        assert_eq!(
            codes,
            [
                1, 1, 2, 2, 2, 2, 3, 4, 5, 6, 7, 7, 7, 8, 9, 10, 11, 12, 12, 13, 14, 15, 16, 17,
                18, 19, 20, 21, 22, 23, 23, 24, 24, 24, 15, 25, 26, 27, 28, 29, 30, 30, 31, 32, 33
            ]
        );
    }

    #[test]
    fn the_layout_is_code_reserved_then_three_little_endian_words() {
        let wire = WireError::from_error(&Error::FeatureControlNotLocked {
            written: 0x5,
            read: 0x0102,
        });
        let mut bytes = [0u8; WireError::SIZE];
        wire.encode(&mut bytes);
        assert_eq!(&bytes[..8], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &[5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..], &[0; 8]);
    }

    #[test]
    fn unknown_codes_and_impossible_details_rebuild_no_error() {
        let cases = [
            WireError::NONE,
            WireError {
                code: UNKNOWN,
                detail: [0; 3],
            },
            WireError {
                code: 34,
                detail: [0; 3],
            },
            // Unused detail word set.
            WireError {
                code: 16,
                detail: [1, 0, 0],
            },
            // A signature longer than 12 bytes.
            WireError {
                code: 1,
                detail: [0, 1 << 32, 0],
            },
            // An instruction kind that does not exist, VMXON with an MSR.
            WireError {
                code: 14,
                detail: [6 << 32, 0, 0],
            },
            WireError {
                code: 14,
                detail: [2 << 32 | 1, 0, 0],
            },
            // A vector beyond 255, a width beyond 255, a register 3.
            WireError {
                code: 7,
                detail: [0, 256, 0],
            },
            WireError {
                code: 11,
                detail: [0, 256, 0],
            },
            WireError {
                code: 12,
                detail: [3, 0, 0],
            },
        ];
        for wire in cases {
            assert_eq!(wire.to_error(), None, "{wire:?}");
            let text = std::format!("{wire}");
            assert!(!text.is_empty());
        }
        assert!(std::format!("{}", cases[2]).contains("0x22"));
    }

    #[test]
    fn a_short_buffer_or_a_reserved_bit_does_not_decode() {
        let mut bytes = [0u8; WireError::SIZE];
        WireError::from_error(&Error::OutOfMemory).encode(&mut bytes);
        assert!(WireError::decode(&bytes[..31]).is_none());
        bytes[5] = 1;
        assert!(WireError::decode(&bytes).is_none());
    }
}
