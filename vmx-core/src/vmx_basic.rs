//! IA32_VMX_BASIC (MSR 0x480): the VMCS revision identifier and the VMXON
//! region's size and memory type (SDM Appendix A, "Basic VMX Information").

pub use x86::msr::IA32_VMX_BASIC;

use crate::error::{Error, Result};
use crate::region::VMXON_REGION_SIZE;

/// The write-back memory type (SDM, "Memory Types Used for VMCS Access").
pub const MEMORY_TYPE_WRITE_BACK: u8 = 6;

/// A raw IA32_VMX_BASIC value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmxBasic(u64);

impl VmxBasic {
    /// Wraps a value read from the MSR.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value.
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bits 30:0: the VMCS revision identifier, which the first 4 bytes of
    /// the VMXON region must hold ("bit 31 of IA32_VMX_BASIC is always 0").
    #[must_use]
    pub const fn revision_id(self) -> u32 {
        (self.0 & 0x7fff_ffff) as u32
    }

    /// Bits 44:32: the number of bytes to allocate for the VMXON region and
    /// any VMCS region ("this value is at most 4096").
    #[must_use]
    pub const fn region_size(self) -> u32 {
        ((self.0 >> 32) & 0x1fff) as u32
    }

    /// Bit 48: the physical addresses of the VMXON region, the VMCS and the
    /// structures they point to are limited to 32 bits.
    #[must_use]
    pub const fn physical_address_32bit(self) -> bool {
        self.0 & (1 << 48) != 0
    }

    /// Bit 49: the dual-monitor treatment of SMIs and SMM is supported.
    #[must_use]
    pub const fn dual_monitor(self) -> bool {
        self.0 & (1 << 49) != 0
    }

    /// The name of [`memory_type`](Self::memory_type): "uncacheable" (0),
    /// "write-back" (6) or "reserved". SDM Appendix A, "Basic VMX
    /// Information": "The first processors to support VMX operation use the
    /// write-back type. The values used are given in Table A-1" (0 UC, 6 WB,
    /// every other value not used).
    #[must_use]
    pub const fn memory_type_name(self) -> &'static str {
        match self.memory_type() {
            0 => "uncacheable",
            MEMORY_TYPE_WRITE_BACK => "write-back",
            _ => "reserved",
        }
    }

    /// Bits 53:50: the memory type the processor uses to access the VMCS
    /// and related structures (6 = write-back).
    #[must_use]
    pub const fn memory_type(self) -> u8 {
        ((self.0 >> 50) & 0xf) as u8
    }

    /// Bit 54: VM exits from INS and OUTS report instruction information.
    #[must_use]
    pub const fn ins_outs_reporting(self) -> bool {
        self.0 & (1 << 54) != 0
    }

    /// Bit 55: the IA32_VMX_TRUE_*_CTLS MSRs exist.
    #[must_use]
    pub const fn true_controls(self) -> bool {
        self.0 & (1 << 55) != 0
    }

    /// Bit 56: VM entry may deliver hardware exceptions without an error
    /// code.
    #[must_use]
    pub const fn entry_without_error_code(self) -> bool {
        self.0 & (1 << 56) != 0
    }

    /// Refuses what vmx-core cannot use: bit 31 set ("bit 31 of
    /// IA32_VMX_BASIC is always 0", so the revision identifier would be
    /// wrong), a region size of 0 (Appendix A: "a value greater than 0") or
    /// larger than the page it allocates (the SDM promises at most 4096, so a
    /// larger value means a broken CPU model or a hypervisor lying), or a
    /// memory type other than write-back (vmx-core allocates write-back
    /// memory for the region).
    ///
    /// # Errors
    /// [`Error::RevisionBit31Set`], [`Error::RegionSizeZero`],
    /// [`Error::RegionTooLarge`], [`Error::UnsupportedMemoryType`].
    pub fn check_usable(self) -> Result<()> {
        if self.0 & (1 << 31) != 0 {
            return Err(Error::RevisionBit31Set { basic: self.0 });
        }
        if self.region_size() == 0 {
            return Err(Error::RegionSizeZero { basic: self.0 });
        }
        if self.region_size() as usize > VMXON_REGION_SIZE {
            return Err(Error::RegionTooLarge {
                size: self.region_size(),
                basic: self.0,
            });
        }
        if self.memory_type() != MEMORY_TYPE_WRITE_BACK {
            return Err(Error::UnsupportedMemoryType {
                memory_type: self.memory_type(),
                basic: self.0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IA32_VMX_BASIC of Bochs' corei7_skylake_x model.
    const SKYLAKE_X: u64 = 0x00d8_1000_0000_002b;

    #[test]
    fn decodes_bochs_skylake_x() {
        let basic = VmxBasic::from_raw(SKYLAKE_X);
        assert_eq!(basic.revision_id(), 0x2b);
        assert_eq!(basic.region_size(), 4096);
        assert_eq!(basic.memory_type(), MEMORY_TYPE_WRITE_BACK);
        assert!(!basic.physical_address_32bit());
        assert!(!basic.dual_monitor());
        assert!(basic.ins_outs_reporting());
        assert!(basic.true_controls());
        assert!(basic.check_usable().is_ok());
    }

    #[test]
    fn memory_type_names_follow_table_a_1() {
        assert_eq!(
            VmxBasic::from_raw(SKYLAKE_X).memory_type_name(),
            "write-back"
        );
        assert_eq!(
            VmxBasic::from_raw(SKYLAKE_X & !(0xf << 50)).memory_type_name(),
            "uncacheable"
        );
        assert_eq!(
            VmxBasic::from_raw((SKYLAKE_X & !(0xf << 50)) | (5 << 50)).memory_type_name(),
            "reserved"
        );
    }

    #[test]
    fn revision_id_never_includes_bit_31() {
        assert_eq!(VmxBasic::from_raw(0xffff_ffff).revision_id(), 0x7fff_ffff);
    }

    #[test]
    fn refuses_large_regions_and_non_write_back_memory() {
        let too_large = VmxBasic::from_raw((SKYLAKE_X & !(0x1fff << 32)) | (4097 << 32));
        assert_eq!(
            too_large.check_usable(),
            Err(Error::RegionTooLarge {
                size: 4097,
                basic: too_large.raw()
            })
        );
        let empty = VmxBasic::from_raw(SKYLAKE_X & !(0x1fff << 32));
        assert_eq!(
            empty.check_usable(),
            Err(Error::RegionSizeZero { basic: empty.raw() })
        );
        let bit31 = VmxBasic::from_raw(SKYLAKE_X | (1 << 31));
        assert_eq!(
            bit31.check_usable(),
            Err(Error::RevisionBit31Set { basic: bit31.raw() })
        );
        let uncached = VmxBasic::from_raw(SKYLAKE_X & !(0xf << 50));
        assert_eq!(
            uncached.check_usable(),
            Err(Error::UnsupportedMemoryType {
                memory_type: 0,
                basic: uncached.raw()
            })
        );
    }
}
