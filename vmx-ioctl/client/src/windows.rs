//! The driver's device, opened with `CreateFileW` and driven with
//! `DeviceIoControl` (windows-sys). The only `unsafe` of the user-mode
//! side.

use core::ffi::c_void;
use core::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, FILE_ATTRIBUTE_NORMAL, OPEN_EXISTING};
use windows_sys::Win32::System::IO::DeviceIoControl;

use crate::{ClientError, Transport, TransportError};

/// An open handle to `\\.\MyHypervisorDevice`, closed on drop.
#[derive(Debug)]
pub struct DeviceHandle(HANDLE);

impl DeviceHandle {
    /// Opens the device for reading (QUERY, STATUS) and writing (ENTER,
    /// LEAVE).
    ///
    /// # Errors
    /// [`ClientError::Open`]: `ERROR_FILE_NOT_FOUND` when the driver is not
    /// loaded, `ERROR_ACCESS_DENIED` when not run as Administrator.
    pub fn open() -> Result<Self, ClientError> {
        let path: Vec<u16> = vmx_ioctl::USER_PATH
            .encode_utf16()
            .chain(core::iter::once(0))
            .collect();
        // SAFETY: `path` is NUL-terminated and outlives the call; no
        // security attributes, no template.
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                ptr::null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            // SAFETY: no precondition.
            let win32 = unsafe { GetLastError() };
            return Err(ClientError::Open { win32 });
        }
        Ok(Self(handle))
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        // SAFETY: a handle this value opened and nobody else closes.
        unsafe { CloseHandle(self.0) };
    }
}

impl Transport for DeviceHandle {
    fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, TransportError> {
        let too_long = TransportError {
            win32: crate::ERROR_BAD_LENGTH,
            returned: 0,
        };
        let input_length = u32::try_from(input.len()).map_err(|_| too_long)?;
        let output_length = u32::try_from(output.len()).map_err(|_| too_long)?;
        let mut returned = 0u32;
        // SAFETY: a synchronous call (no OVERLAPPED) on an open handle; the
        // buffers are valid for their lengths for the whole call.
        let ok = unsafe {
            DeviceIoControl(
                self.0,
                code,
                input.as_ptr().cast::<c_void>(),
                input_length,
                output.as_mut_ptr().cast::<c_void>(),
                output_length,
                &mut returned,
                ptr::null_mut(),
            )
        };
        let returned = (returned as usize).min(output.len());
        if ok != 0 {
            return Ok(returned);
        }
        // SAFETY: no precondition.
        let win32 = unsafe { GetLastError() };
        Err(TransportError { win32, returned })
    }
}
