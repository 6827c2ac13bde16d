//! The device, opened and driven with raw Win32 calls: any code, any
//! sizes, ReadFile and WriteFile, and the Win32 error of each.

use core::ffi::c_void;
use core::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, OPEN_EXISTING, ReadFile, WriteFile,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

/// An open handle, closed on drop.
#[derive(Debug)]
pub struct Device(HANDLE);

// SAFETY: a kernel handle may be used from any thread.
unsafe impl Send for Device {}
// SAFETY: as above; DeviceIoControl on one handle from several threads is
// allowed (the driver serializes what it must).
unsafe impl Sync for Device {}

/// What a call returned: success or the Win32 error, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `GetLastError()` when the call failed, else `None`.
    pub error: Option<u32>,
    /// The bytes returned (`*lpBytesReturned`).
    pub bytes: Vec<u8>,
}

impl Reply {
    /// `ok` or `error N`, and the byte count.
    pub fn describe(&self) -> String {
        match self.error {
            None => format!("ok, {} bytes", self.bytes.len()),
            Some(e) => format!("Win32 error {e}, {} bytes", self.bytes.len()),
        }
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(core::iter::once(0)).collect()
}

impl Device {
    /// Opens `path` for reading and writing.
    ///
    /// # Errors
    /// The Win32 error of CreateFileW.
    pub fn open_path(path: &str) -> Result<Self, u32> {
        let path = wide(path);
        // SAFETY: a NUL-terminated path that outlives the call; no security
        // attributes, no template.
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
            return Err(unsafe { GetLastError() });
        }
        Ok(Self(handle))
    }

    /// Opens `\\.\MyHypervisorDevice`.
    ///
    /// # Errors
    /// As [`Device::open_path`].
    pub fn open() -> Result<Self, u32> {
        Self::open_path(vmx_ioctl::USER_PATH)
    }

    /// DeviceIoControl with `input` and an output buffer of `output`
    /// bytes.
    pub fn ioctl(&self, code: u32, input: &[u8], output: usize) -> Reply {
        let mut out = vec![0u8; output];
        let mut returned = 0u32;
        // SAFETY: a synchronous call on an open handle; both buffers are
        // valid for their lengths (at most 64 KiB here) for the whole call.
        let ok = unsafe {
            DeviceIoControl(
                self.0,
                code,
                input.as_ptr().cast::<c_void>(),
                input.len() as u32,
                out.as_mut_ptr().cast::<c_void>(),
                output as u32,
                &mut returned,
                ptr::null_mut(),
            )
        };
        // SAFETY: no precondition.
        let error = (ok == 0).then(|| unsafe { GetLastError() });
        out.truncate((returned as usize).min(output));
        Reply { error, bytes: out }
    }

    /// ReadFile of `length` bytes.
    pub fn read(&self, length: usize) -> Reply {
        let mut out = vec![0u8; length];
        let mut returned = 0u32;
        // SAFETY: a synchronous read into a buffer valid for `length` bytes.
        let ok = unsafe {
            ReadFile(
                self.0,
                out.as_mut_ptr(),
                length as u32,
                &mut returned,
                ptr::null_mut(),
            )
        };
        // SAFETY: no precondition.
        let error = (ok == 0).then(|| unsafe { GetLastError() });
        out.truncate((returned as usize).min(length));
        Reply { error, bytes: out }
    }

    /// WriteFile of `data`.
    pub fn write(&self, data: &[u8]) -> Reply {
        let mut written = 0u32;
        // SAFETY: a synchronous write from a buffer valid for its length.
        let ok = unsafe {
            WriteFile(
                self.0,
                data.as_ptr(),
                data.len() as u32,
                &mut written,
                ptr::null_mut(),
            )
        };
        // SAFETY: no precondition.
        let error = (ok == 0).then(|| unsafe { GetLastError() });
        Reply {
            error,
            bytes: vec![0; written as usize],
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: a handle this value opened and nobody else closes.
        unsafe { CloseHandle(self.0) };
    }
}
