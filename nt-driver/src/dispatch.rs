//! IRP major functions: which gets which status, and where a request's
//! data is.
//!
//! Every IRP is completed exactly once, by the routine that received it,
//! with the status that routine returns (the tutorial's create routine
//! never completes its IRP, so `CreateFile` hangs; its "unsupported"
//! routine reports success).

use crate::ntstatus::{
    NtStatus, STATUS_INVALID_DEVICE_REQUEST, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
};

/// `IRP_MJ_CREATE`.
pub const IRP_MJ_CREATE: u8 = 0x00;
/// `IRP_MJ_CLOSE`.
pub const IRP_MJ_CLOSE: u8 = 0x02;
/// `IRP_MJ_CLEANUP`: the last handle to a file object was closed.
pub const IRP_MJ_CLEANUP: u8 = 0x12;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: u8 = 0x0e;
/// `IRP_MJ_MAXIMUM_FUNCTION`: the last major function; the driver object's
/// `MajorFunction` table has one more entry than this.
pub const IRP_MJ_MAXIMUM_FUNCTION: u8 = 0x1b;

/// `METHOD_BUFFERED` in the low two bits of an IOCTL code.
const METHOD_MASK: u32 = 3;

/// What the driver does with an IRP of a major function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// CREATE: succeeds for the device itself and changes nothing (the
    /// tutorial enables VMX here); an open of a name below the device
    /// (`\\.\MyHypervisorDevice\x`, a non-empty `FileObject->FileName`)
    /// is refused with `STATUS_OBJECT_NAME_NOT_FOUND`: the device has no
    /// namespace, so no such object exists (the status the object manager
    /// and file systems give a name that does not exist; Win32
    /// `ERROR_FILE_NOT_FOUND`). FILE_DEVICE_SECURE_OPEN already applies the
    /// device's DACL to such opens; refusing them as well is the second of
    /// the two ways "Controlling Device Namespace Access" gives a driver
    /// without a namespace, and keeps one name for one object.
    Open,
    /// Complete with success and no data: CLEANUP (the last handle to a
    /// file object was closed) and CLOSE.
    Succeed,
    /// Validate and run an IOCTL.
    DeviceControl,
    /// Complete with `STATUS_INVALID_DEVICE_REQUEST`: every other major
    /// function (READ, WRITE, ...).
    Refuse,
}

/// The action for a major function code (any `u8`: the table has 28
/// entries, a larger code is refused as well).
#[must_use]
pub const fn action(major: u8) -> Action {
    match major {
        IRP_MJ_CREATE => Action::Open,
        IRP_MJ_CLEANUP | IRP_MJ_CLOSE => Action::Succeed,
        IRP_MJ_DEVICE_CONTROL => Action::DeviceControl,
        _ => Action::Refuse,
    }
}

/// How an IRP is completed: `IoStatus.Status`, `IoStatus.Information`,
/// and the status the dispatch routine returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Completion {
    /// The status.
    pub status: NtStatus,
    /// The number of bytes the reply holds (for `METHOD_BUFFERED`, what the
    /// I/O manager copies back).
    pub information: usize,
}

impl Completion {
    /// A completion with a status and no data.
    #[must_use]
    pub const fn status(status: NtStatus) -> Self {
        Self {
            status,
            information: 0,
        }
    }
}

/// What the glue reads from an IRP and its current stack location.
#[derive(Debug)]
pub struct IrpParams<'a> {
    /// `MajorFunction`.
    pub major: u8,
    /// `Parameters.DeviceIoControl.IoControlCode` (0 for other majors).
    pub code: u32,
    /// `Parameters.DeviceIoControl.InputBufferLength` (0 for other majors).
    pub input_length: u32,
    /// `Parameters.DeviceIoControl.OutputBufferLength` (0 for other majors).
    pub output_length: u32,
    /// For CREATE, `FileObject->FileName.Length` (bytes; 0 for other
    /// majors, or when there is no file object).
    pub file_name_length: u16,
    /// `AssociatedIrp.SystemBuffer` as a slice of
    /// [`system_buffer_length`] bytes, when that is `Some` and the pointer
    /// is not null.
    pub buffer: Option<&'a mut [u8]>,
}

/// The length of the system buffer the I/O manager allocated for the IRP,
/// or `None` when the IRP has none that the driver may touch.
///
/// Only a `METHOD_BUFFERED` DEVICE_CONTROL request has one: a single
/// buffer of `max(input, output)` bytes, input first, reply written over
/// it. For the other methods `SystemBuffer` is not the caller's data (for
/// `METHOD_NEITHER` it is not even a kernel buffer), so the glue must not
/// build a slice from it: an unknown code is refused without touching any
/// buffer.
#[must_use]
pub fn system_buffer_length(
    major: u8,
    code: u32,
    input_length: u32,
    output_length: u32,
) -> Option<usize> {
    if major != IRP_MJ_DEVICE_CONTROL || code & METHOD_MASK != 0 {
        return None;
    }
    let length = input_length.max(output_length) as usize;
    (length != 0).then_some(length)
}

/// The completion of an IRP that is not DEVICE_CONTROL; for CREATE,
/// `file_name_length` is `FileObject->FileName.Length` (see
/// [`Action::Open`]).
#[must_use]
pub const fn complete_other(major: u8, file_name_length: u16) -> Completion {
    match action(major) {
        Action::Open if file_name_length != 0 => Completion::status(STATUS_OBJECT_NAME_NOT_FOUND),
        Action::Open | Action::Succeed => Completion::status(STATUS_SUCCESS),
        Action::DeviceControl | Action::Refuse => Completion::status(STATUS_INVALID_DEVICE_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_major_function_has_its_action() {
        for major in 0..=IRP_MJ_MAXIMUM_FUNCTION {
            let expected = match major {
                0x00 => Action::Open,
                0x02 | 0x12 => Action::Succeed,
                0x0e => Action::DeviceControl,
                _ => Action::Refuse,
            };
            assert_eq!(action(major), expected, "major {major:#x}");
        }
        for major in IRP_MJ_MAXIMUM_FUNCTION + 1..=u8::MAX {
            assert_eq!(action(major), Action::Refuse);
        }
    }

    #[test]
    fn only_create_cleanup_and_close_succeed_without_a_device_control() {
        for major in 0..=u8::MAX {
            let completion = complete_other(major, 0);
            assert_eq!(completion.information, 0);
            let expected = if matches!(major, IRP_MJ_CREATE | IRP_MJ_CLEANUP | IRP_MJ_CLOSE) {
                STATUS_SUCCESS
            } else {
                STATUS_INVALID_DEVICE_REQUEST
            };
            assert_eq!(completion.status, expected, "major {major:#x}");
        }
    }

    #[test]
    fn cleanup_completes_with_success() {
        // CloseHandle sends IRP_MJ_CLEANUP, then IRP_MJ_CLOSE: both succeed.
        assert_eq!(complete_other(0x12, 0), Completion::status(STATUS_SUCCESS));
    }

    #[test]
    fn an_open_of_a_name_inside_the_device_is_refused() {
        // `\\.\MyHypervisorDevice\x`: FileObject->FileName is `\x`, 4 bytes.
        assert_eq!(
            complete_other(IRP_MJ_CREATE, 4),
            Completion::status(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        assert_eq!(
            complete_other(IRP_MJ_CREATE, u16::MAX),
            Completion::status(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        assert_eq!(
            complete_other(IRP_MJ_CREATE, 0),
            Completion::status(STATUS_SUCCESS)
        );
    }

    #[test]
    fn only_buffered_device_control_has_a_system_buffer() {
        let buffered = 0x0022_6000;
        assert_eq!(
            system_buffer_length(IRP_MJ_DEVICE_CONTROL, buffered, 8, 100),
            Some(100)
        );
        assert_eq!(
            system_buffer_length(IRP_MJ_DEVICE_CONTROL, buffered, 8, 0),
            Some(8)
        );
        assert_eq!(
            system_buffer_length(IRP_MJ_DEVICE_CONTROL, buffered, 0, 0),
            None
        );
        for method in 1..=3 {
            assert_eq!(
                system_buffer_length(IRP_MJ_DEVICE_CONTROL, buffered | method, 8, 8),
                None
            );
        }
        for major in (0..=IRP_MJ_MAXIMUM_FUNCTION).filter(|m| *m != IRP_MJ_DEVICE_CONTROL) {
            assert_eq!(system_buffer_length(major, buffered, 8, 8), None);
        }
    }
}
