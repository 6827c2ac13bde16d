//! The device's names as the kernel wants them: NUL-terminated UTF-16 in
//! static arrays, with the byte lengths a `UNICODE_STRING` carries.

use vmx_ioctl::{DEVICE_NAME, DOS_DEVICE_NAME};

/// An ASCII string as NUL-terminated UTF-16, at compile time. `N` must be
/// the length plus one; anything else, or a non-ASCII byte, fails the
/// build.
#[must_use]
pub const fn ascii_utf16<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() + 1 == N, "N must be the length plus the NUL");
    let mut wide = [0u16; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii() && bytes[i] != 0, "ASCII only");
        wide[i] = bytes[i] as u16;
        i += 1;
    }
    wide
}

/// `UNICODE_STRING.Length` and `.MaximumLength` for a NUL-terminated
/// array: bytes without the NUL, and with it.
#[must_use]
pub const fn unicode_lengths(wide: &[u16]) -> (u16, u16) {
    let units = wide.len();
    assert!(units >= 1 && units * 2 <= u16::MAX as usize && wide[units - 1] == 0);
    (((units - 1) * 2) as u16, (units * 2) as u16)
}

/// `\Device\MyHypervisorDevice`.
pub static DEVICE_NAME_UTF16: [u16; DEVICE_NAME.len() + 1] = ascii_utf16(DEVICE_NAME);
/// `\DosDevices\MyHypervisorDevice`.
pub static DOS_DEVICE_NAME_UTF16: [u16; DOS_DEVICE_NAME.len() + 1] = ascii_utf16(DOS_DEVICE_NAME);

/// The executive callback object the power manager notifies of system
/// power transitions (see [`crate::power`]).
pub const POWER_STATE_CALLBACK: &str = r"\Callback\PowerState";
/// [`POWER_STATE_CALLBACK`] in UTF-16.
pub static POWER_STATE_CALLBACK_UTF16: [u16; POWER_STATE_CALLBACK.len() + 1] =
    ascii_utf16(POWER_STATE_CALLBACK);

/// The device's security descriptor: protected DACL (`P`), GENERIC_ALL
/// for LocalSystem (`SY`) and the Administrators group (`BA`), nobody
/// else. The value of wdmsec.h's `SDDL_DEVOBJ_SYS_ALL_ADM_ALL`.
pub const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";
/// [`DEVICE_SDDL`] in UTF-16.
pub static DEVICE_SDDL_UTF16: [u16; DEVICE_SDDL.len() + 1] = ascii_utf16(DEVICE_SDDL);

/// The device class GUID `IoCreateDeviceSecure` keys registry overrides
/// of the security descriptor on (`{6f1d4b2c-7e3a-4c59-a8d1-3b5e9f0c2d74}`),
/// as (Data1, Data2, Data3, Data4).
pub const DEVICE_CLASS_GUID: (u32, u16, u16, [u8; 8]) = (
    0x6f1d_4b2c,
    0x7e3a,
    0x4c59,
    [0xa8, 0xd1, 0x3b, 0x5e, 0x9f, 0x0c, 0x2d, 0x74],
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn text(wide: &[u16]) -> String {
        String::from_utf16(&wide[..wide.len() - 1]).unwrap()
    }

    #[test]
    fn the_names_are_the_protocols_names_nul_terminated() {
        assert_eq!(text(&DEVICE_NAME_UTF16), r"\Device\MyHypervisorDevice");
        assert_eq!(
            text(&DOS_DEVICE_NAME_UTF16),
            r"\DosDevices\MyHypervisorDevice"
        );
        assert_eq!(text(&DEVICE_SDDL_UTF16), "D:P(A;;GA;;;SY)(A;;GA;;;BA)");
        assert_eq!(text(&POWER_STATE_CALLBACK_UTF16), r"\Callback\PowerState");
        for wide in [
            &POWER_STATE_CALLBACK_UTF16[..],
            &DEVICE_NAME_UTF16,
            &DOS_DEVICE_NAME_UTF16,
            &DEVICE_SDDL_UTF16,
        ] {
            assert_eq!(wide.last(), Some(&0));
            assert_eq!(wide.iter().filter(|u| **u == 0).count(), 1);
        }
    }

    #[test]
    fn lengths_count_bytes_and_exclude_the_nul_from_length() {
        assert_eq!(unicode_lengths(&DEVICE_NAME_UTF16), (52, 54));
        assert_eq!(unicode_lengths(&[0]), (0, 2));
    }
}
