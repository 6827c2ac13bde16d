//! The NTSTATUS values the driver completes requests with (`ntstatus.h`).
//!
//! `NTSTATUS` is a signed 32-bit value: bits 31:30 are the severity
//! (0 success, 1 informational, 2 warning, 3 error). `NT_SUCCESS` is
//! "not negative". For a `METHOD_BUFFERED` request the I/O manager copies
//! `Information` bytes back to the caller unless the status is an error, so
//! a warning such as [`STATUS_BUFFER_OVERFLOW`] still delivers the reply
//! header, while [`STATUS_BUFFER_TOO_SMALL`] delivers nothing.

/// An NTSTATUS.
pub type NtStatus = i32;

const fn status(value: u32) -> NtStatus {
    i32::from_ne_bytes(value.to_ne_bytes())
}

/// The request succeeded.
pub const STATUS_SUCCESS: NtStatus = 0;
/// Warning: the data was too large for the buffer; what fits was returned
/// (Win32 `ERROR_MORE_DATA`).
pub const STATUS_BUFFER_OVERFLOW: NtStatus = status(0x8000_0005);
/// Warning: the device is busy (Win32 `ERROR_BUSY`).
pub const STATUS_DEVICE_BUSY: NtStatus = status(0x8000_0011);
/// The request failed for an unnamed reason.
pub const STATUS_UNSUCCESSFUL: NtStatus = status(0xC000_0001);
/// The input has the wrong length (Win32 `ERROR_BAD_LENGTH`).
pub const STATUS_INFO_LENGTH_MISMATCH: NtStatus = status(0xC000_0004);
/// A parameter is invalid (Win32 `ERROR_INVALID_PARAMETER`).
pub const STATUS_INVALID_PARAMETER: NtStatus = status(0xC000_000D);
/// The device does not support the request (Win32 `ERROR_INVALID_FUNCTION`).
pub const STATUS_INVALID_DEVICE_REQUEST: NtStatus = status(0xC000_0010);
/// The output buffer cannot hold even the reply header (Win32
/// `ERROR_INSUFFICIENT_BUFFER`).
pub const STATUS_BUFFER_TOO_SMALL: NtStatus = status(0xC000_0023);
/// No object of that name: an open of a name below the device, which has no
/// namespace (Win32 `ERROR_FILE_NOT_FOUND`).
pub const STATUS_OBJECT_NAME_NOT_FOUND: NtStatus = status(0xC000_0034);
/// The request speaks another protocol version (Win32
/// `ERROR_REVISION_MISMATCH`).
pub const STATUS_REVISION_MISMATCH: NtStatus = status(0xC000_0059);
/// Memory could not be allocated (Win32 `ERROR_NO_SYSTEM_RESOURCES`).
pub const STATUS_INSUFFICIENT_RESOURCES: NtStatus = status(0xC000_009A);

/// `NT_SUCCESS`: success or informational.
#[must_use]
pub const fn nt_success(status: NtStatus) -> bool {
    status >= 0
}

/// `NT_ERROR`: severity "error"; the I/O manager copies no output back.
#[must_use]
pub const fn nt_error(status: NtStatus) -> bool {
    (status as u32) >> 30 == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_are_those_of_ntstatus_h() {
        assert_eq!(STATUS_SUCCESS, 0);
        assert_eq!(STATUS_BUFFER_OVERFLOW as u32, 0x8000_0005);
        assert_eq!(STATUS_DEVICE_BUSY as u32, 0x8000_0011);
        assert_eq!(STATUS_UNSUCCESSFUL, -1_073_741_823);
        assert_eq!(STATUS_INFO_LENGTH_MISMATCH as u32, 0xC000_0004);
        assert_eq!(STATUS_INVALID_PARAMETER as u32, 0xC000_000D);
        assert_eq!(STATUS_INVALID_DEVICE_REQUEST, -1_073_741_808);
        assert_eq!(STATUS_BUFFER_TOO_SMALL as u32, 0xC000_0023);
        assert_eq!(STATUS_OBJECT_NAME_NOT_FOUND as u32, 0xC000_0034);
        assert_eq!(STATUS_REVISION_MISMATCH as u32, 0xC000_0059);
        assert_eq!(STATUS_INSUFFICIENT_RESOURCES as u32, 0xC000_009A);
    }

    #[test]
    fn severity_decides_success_and_error() {
        assert!(nt_success(STATUS_SUCCESS));
        assert!(!nt_success(STATUS_BUFFER_OVERFLOW));
        assert!(!nt_error(STATUS_BUFFER_OVERFLOW));
        assert!(!nt_error(STATUS_DEVICE_BUSY));
        assert!(nt_error(STATUS_BUFFER_TOO_SMALL));
        assert!(nt_error(STATUS_INVALID_DEVICE_REQUEST));
    }
}
