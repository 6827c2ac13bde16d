//! The driver's device, opened with `CreateFileW` and driven with
//! `DeviceIoControl` (windows-sys), and the thread pinned to one processor
//! ([`affinity`]). The only `unsafe` of the user-mode side.

pub mod affinity;

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
};
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, FILE_ATTRIBUTE_NORMAL, OPEN_EXISTING};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use crate::{ClientError, ERROR_ACCESS_DENIED, Transport, TransportError};

/// Set once the device has opened in this process: a later refusal is the
/// driver's, not the security descriptor's.
static OPENED_BEFORE: AtomicBool = AtomicBool::new(false);

/// Whether this process runs elevated (`TokenElevation` of its token);
/// `None` when the token cannot be read.
#[must_use]
pub fn elevated() -> Option<bool> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: no precondition; a pseudo-handle, nothing to close.
    let process = unsafe { GetCurrentProcess() };
    // SAFETY: this process; `token` receives a handle that is closed below.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut returned = 0u32;
    // SAFETY: an open token with TOKEN_QUERY; the buffer is a
    // TOKEN_ELEVATION of the size passed.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&raw mut elevation).cast::<c_void>(),
            core::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut returned,
        )
    };
    // SAFETY: the handle OpenProcessToken gave, closed once.
    unsafe { CloseHandle(token) };
    (ok != 0).then_some(elevation.TokenIsElevated != 0)
}

/// An open handle to `\\.\MyHypervisorDevice`, closed on drop.
#[derive(Debug)]
pub struct DeviceHandle(HANDLE);

impl DeviceHandle {
    /// Opens the device for reading (QUERY, STATUS) and writing (ENTER,
    /// LEAVE).
    ///
    /// # Errors
    /// [`ClientError::Open`]: `ERROR_FILE_NOT_FOUND` when the driver is not
    /// loaded; `ERROR_ACCESS_DENIED` with the facts that explain it
    /// (whether the device opened earlier in this process, whether this
    /// process is elevated).
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
            let elevated = if win32 == ERROR_ACCESS_DENIED {
                elevated()
            } else {
                None
            };
            return Err(ClientError::Open {
                win32,
                opened_before: OPENED_BEFORE.load(Ordering::Relaxed),
                elevated,
            });
        }
        OPENED_BEFORE.store(true, Ordering::Relaxed);
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
