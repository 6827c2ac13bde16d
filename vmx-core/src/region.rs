//! The VMXON region (SDM, "VMXON Region", and VMXON's operation in the
//! instruction reference).

use crate::error::{Error, Result};
use crate::vmx_basic::VmxBasic;

/// The size of the page vmx-core uses for a VMXON region. IA32_VMX_BASIC
/// reports the size the processor needs, at most 4096.
pub const VMXON_REGION_SIZE: usize = 4096;

/// Checks the region's physical address as VMXON will: "If the operand ...
/// is not 4-KByte aligned or sets any bits beyond the physical-address
/// width" VMXON fails with VMfailInvalid; with IA32_VMX_BASIC bit 48 set the
/// address must also fit in 32 bits.
///
/// # Errors
/// [`Error::RegionMisaligned`], [`Error::RegionBeyondAddressWidth`].
pub fn check_address(
    physical_address: u64,
    physical_address_width: u8,
    basic: VmxBasic,
) -> Result<()> {
    if physical_address & 0xfff != 0 {
        return Err(Error::RegionMisaligned { physical_address });
    }
    let width = if basic.physical_address_32bit() {
        physical_address_width.min(32)
    } else {
        physical_address_width
    };
    if width < 64 && physical_address >> width != 0 {
        return Err(Error::RegionBeyondAddressWidth {
            physical_address,
            width,
        });
    }
    Ok(())
}

/// Prepares a VMXON region: zeroed, then the first 4 bytes set to the VMCS
/// revision identifier with bit 31 clear ("Before executing VMXON, software
/// should write the VMCS revision identifier to the VMXON region").
pub fn prepare(page: &mut [u8; VMXON_REGION_SIZE], basic: VmxBasic) {
    page.fill(0);
    page[..4].copy_from_slice(&(basic.revision_id() & 0x7fff_ffff).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKYLAKE_X: VmxBasic = VmxBasic::from_raw(0x00d8_1000_0000_002b);

    #[test]
    fn prepare_zeroes_and_writes_the_revision_id() {
        let mut page = [0xa5u8; VMXON_REGION_SIZE];
        prepare(&mut page, SKYLAKE_X);
        assert_eq!(&page[..4], &[0x2b, 0, 0, 0]);
        assert!(page[4..].iter().all(|&b| b == 0));
        // Tigerlake's revision id differs: read, never hard-coded.
        prepare(&mut page, VmxBasic::from_raw(0x00d8_1000_0000_0004));
        assert_eq!(&page[..4], &[0x04, 0, 0, 0]);
    }

    #[test]
    fn address_must_be_aligned_and_within_the_width() {
        assert!(check_address(0x1000, 39, SKYLAKE_X).is_ok());
        assert!(check_address(0x7f_ffff_f000, 39, SKYLAKE_X).is_ok());
        assert_eq!(
            check_address(0x1008, 39, SKYLAKE_X),
            Err(Error::RegionMisaligned {
                physical_address: 0x1008
            })
        );
        assert_eq!(
            check_address(0x80_0000_0000, 39, SKYLAKE_X),
            Err(Error::RegionBeyondAddressWidth {
                physical_address: 0x80_0000_0000,
                width: 39
            })
        );
    }

    #[test]
    fn the_32_bit_limit_of_vmx_basic_applies() {
        let limited = VmxBasic::from_raw(SKYLAKE_X.raw() | (1 << 48));
        assert!(check_address(0xffff_f000, 39, limited).is_ok());
        assert_eq!(
            check_address(0x1_0000_0000, 39, limited),
            Err(Error::RegionBeyondAddressWidth {
                physical_address: 0x1_0000_0000,
                width: 32
            })
        );
    }
}
