//! Device names and IOCTL codes (`CTL_CODE` from the WDK's `devioctl.h`).

/// `FILE_DEVICE_UNKNOWN`: the device type of a driver without a standard
/// one.
pub const FILE_DEVICE_UNKNOWN: u32 = 0x22;
/// `METHOD_BUFFERED`: the I/O manager copies the input into one system
/// buffer and the output back out of it.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS`: any open handle may send the IOCTL.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_DATA` (`FILE_READ_ACCESS`): the handle must have read access.
pub const FILE_READ_DATA: u32 = 1;
/// `FILE_WRITE_DATA` (`FILE_WRITE_ACCESS`): the handle must have write
/// access.
pub const FILE_WRITE_DATA: u32 = 2;

/// The kernel name of the device.
pub const DEVICE_NAME: &str = r"\Device\MyHypervisorDevice";
/// The symbolic link the driver creates for user mode.
pub const DOS_DEVICE_NAME: &str = r"\DosDevices\MyHypervisorDevice";
/// The path user mode opens (`CreateFileW`).
pub const USER_PATH: &str = r"\\.\MyHypervisorDevice";

/// `CTL_CODE(DeviceType, Function, Method, Access)`:
/// `DeviceType << 16 | Access << 14 | Function << 2 | Method`.
///
/// The WDK defines it as a macro, and wdk-sys does not provide it.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The first function code free for vendors: 0x000–0x7FF are Microsoft's.
pub const FIRST_PRIVATE_FUNCTION: u32 = 0x800;

/// The driver's IOCTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ioctl {
    /// The raw CPUID, MSR and CR values a diagnosis reads, on every
    /// processor. Changes nothing.
    Query,
    /// Enter VMX operation on every processor, with rollback.
    Enter,
    /// Leave VMX operation on every processor that entered.
    Leave,
    /// The VMX state of every processor. Changes nothing.
    Status,
}

impl Ioctl {
    /// Every IOCTL, in function-code order.
    pub const ALL: [Self; 4] = [Self::Query, Self::Enter, Self::Leave, Self::Status];

    /// The function code (bits 13:2 of the IOCTL code).
    #[must_use]
    pub const fn function(self) -> u32 {
        match self {
            Self::Query => FIRST_PRIVATE_FUNCTION,
            Self::Enter => FIRST_PRIVATE_FUNCTION + 1,
            Self::Leave => FIRST_PRIVATE_FUNCTION + 2,
            Self::Status => FIRST_PRIVATE_FUNCTION + 3,
        }
    }

    /// The required access: write for the IOCTLs that change processor
    /// state, read for the others. The I/O manager checks it against the
    /// handle's granted access before the driver sees the request.
    #[must_use]
    pub const fn access(self) -> u32 {
        match self {
            Self::Query | Self::Status => FILE_READ_DATA,
            Self::Enter | Self::Leave => FILE_WRITE_DATA,
        }
    }

    /// The IOCTL code, as `DeviceIoControl` and the driver see it.
    #[must_use]
    pub const fn code(self) -> u32 {
        ctl_code(
            FILE_DEVICE_UNKNOWN,
            self.function(),
            METHOD_BUFFERED,
            self.access(),
        )
    }

    /// The IOCTL with this exact code, if any.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|ioctl| ioctl.code() == code)
    }

    /// A short name for logs: `QUERY`, `ENTER`, `LEAVE`, `STATUS`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Query => "QUERY",
            Self::Enter => "ENTER",
            Self::Leave => "LEAVE",
            Self::Status => "STATUS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_code_matches_known_values_from_the_wdk() {
        // CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)
        assert_eq!(ctl_code(0x22, 0x800, 0, 0), 0x0022_2000);
        // IOCTL_DISK_GET_DRIVE_GEOMETRY = CTL_CODE(IOCTL_DISK_BASE=7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS)
        assert_eq!(ctl_code(0x7, 0x0, 0, 0), 0x0007_0000);
        // IOCTL_STORAGE_QUERY_PROPERTY = CTL_CODE(0x2d, 0x500, METHOD_BUFFERED, FILE_ANY_ACCESS)
        assert_eq!(ctl_code(0x2d, 0x500, 0, 0), 0x002d_1400);
        // FSCTL_GET_REPARSE_POINT = CTL_CODE(FILE_DEVICE_FILE_SYSTEM=9, 42, METHOD_BUFFERED, FILE_ANY_ACCESS)
        assert_eq!(ctl_code(0x9, 42, 0, 0), 0x0009_00a8);
        // IOCTL_DISK_SET_DRIVE_LAYOUT = CTL_CODE(7, 0x004, METHOD_BUFFERED, FILE_READ_ACCESS | FILE_WRITE_ACCESS)
        assert_eq!(ctl_code(0x7, 0x4, 0, 3), 0x0007_c010);
        // METHOD_NEITHER = 3 lands in the low bits.
        assert_eq!(ctl_code(0x22, 0x800, 3, 0), 0x0022_2003);
    }

    #[test]
    fn the_four_codes_are_distinct_private_buffered_and_round_trip() {
        assert_eq!(Ioctl::Query.code(), 0x0022_6000);
        assert_eq!(Ioctl::Enter.code(), 0x0022_a004);
        assert_eq!(Ioctl::Leave.code(), 0x0022_a008);
        assert_eq!(Ioctl::Status.code(), 0x0022_600c);
        for ioctl in Ioctl::ALL {
            let code = ioctl.code();
            assert_eq!(code & 3, METHOD_BUFFERED);
            assert_eq!(code >> 16, FILE_DEVICE_UNKNOWN);
            assert!((code >> 2) & 0xfff >= FIRST_PRIVATE_FUNCTION);
            assert_eq!(Ioctl::from_code(code), Some(ioctl));
        }
    }

    #[test]
    fn a_code_that_differs_in_any_field_is_not_ours() {
        for ioctl in Ioctl::ALL {
            let code = ioctl.code();
            for bit in 0..32 {
                assert_eq!(
                    Ioctl::from_code(code ^ (1 << bit)).filter(|i| *i == ioctl),
                    None
                );
            }
        }
        assert_eq!(Ioctl::from_code(0), None);
        assert_eq!(Ioctl::from_code(u32::MAX), None);
    }
}
