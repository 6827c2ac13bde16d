//! The driver as a service: SERVICE_KERNEL_DRIVER created, started,
//! stopped (DriverUnload) and deleted through the service control manager.

use core::ptr;
use std::thread;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, ControlService, CreateServiceW, DeleteService, OpenSCManagerW,
    OpenServiceW, QueryServiceStatus, SC_HANDLE, SC_MANAGER_ALL_ACCESS, SERVICE_ALL_ACCESS,
    SERVICE_CONTROL_STOP, SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL, SERVICE_KERNEL_DRIVER,
    SERVICE_RUNNING, SERVICE_STATUS, SERVICE_STOPPED, StartServiceW,
};

/// How long a start or stop may take before it counts as hung.
const SETTLE: Duration = Duration::from_secs(10);

/// A service-manager handle, closed on drop.
struct Handle(SC_HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle this value opened.
        unsafe { CloseServiceHandle(self.0) };
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(core::iter::once(0)).collect()
}

fn last_error(what: &str) -> String {
    // SAFETY: no precondition.
    let error = unsafe { GetLastError() };
    format!("{what} failed with Win32 error {error}")
}

fn manager() -> Result<Handle, String> {
    // SAFETY: the local machine's active database.
    let handle = unsafe { OpenSCManagerW(ptr::null(), ptr::null(), SC_MANAGER_ALL_ACCESS) };
    if handle.is_null() {
        return Err(last_error("OpenSCManagerW"));
    }
    Ok(Handle(handle))
}

fn open(name: &str) -> Result<(Handle, Handle), String> {
    let manager = manager()?;
    let name = wide(name);
    // SAFETY: an open manager handle and a NUL-terminated name.
    let service = unsafe { OpenServiceW(manager.0, name.as_ptr(), SERVICE_ALL_ACCESS) };
    if service.is_null() {
        return Err(last_error("OpenServiceW"));
    }
    Ok((manager, Handle(service)))
}

/// The service's current state (`SERVICE_RUNNING`, ...).
fn state(service: &Handle) -> Result<u32, String> {
    let mut status: SERVICE_STATUS = SERVICE_STATUS {
        dwServiceType: 0,
        dwCurrentState: 0,
        dwControlsAccepted: 0,
        dwWin32ExitCode: 0,
        dwServiceSpecificExitCode: 0,
        dwCheckPoint: 0,
        dwWaitHint: 0,
    };
    // SAFETY: an open service handle and a status to fill.
    if unsafe { QueryServiceStatus(service.0, &mut status) } == 0 {
        return Err(last_error("QueryServiceStatus"));
    }
    Ok(status.dwCurrentState)
}

fn wait_for(service: &Handle, wanted: u32) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let now = state(service)?;
        if now == wanted {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            return Err(format!(
                "the service stayed in state {now} (wanted {wanted}) for {SETTLE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Creates the service: a kernel driver, started on demand, at `path`.
pub fn install(name: &str, path: &str) -> Result<(), String> {
    let manager = manager()?;
    let (name, path) = (wide(name), wide(path));
    // SAFETY: an open manager handle and NUL-terminated strings; no
    // dependencies, account or password (drivers have none).
    let service = unsafe {
        CreateServiceW(
            manager.0,
            name.as_ptr(),
            name.as_ptr(),
            SERVICE_ALL_ACCESS,
            SERVICE_KERNEL_DRIVER,
            SERVICE_DEMAND_START,
            SERVICE_ERROR_NORMAL,
            path.as_ptr(),
            ptr::null(),
            ptr::null_mut(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
        )
    };
    if service.is_null() {
        return Err(last_error("CreateServiceW"));
    }
    drop(Handle(service));
    Ok(())
}

/// Starts the driver (DriverEntry) and waits until it runs.
pub fn start(name: &str) -> Result<(), String> {
    let (_manager, service) = open(name)?;
    // SAFETY: an open service handle; no arguments.
    if unsafe { StartServiceW(service.0, 0, ptr::null()) } == 0 {
        return Err(last_error("StartServiceW"));
    }
    wait_for(&service, SERVICE_RUNNING)
}

/// Asks the driver to stop (DriverUnload), without waiting.
pub fn request_stop(name: &str) -> Result<(), String> {
    let (_manager, service) = open(name)?;
    let mut status = SERVICE_STATUS {
        dwServiceType: 0,
        dwCurrentState: 0,
        dwControlsAccepted: 0,
        dwWin32ExitCode: 0,
        dwServiceSpecificExitCode: 0,
        dwCheckPoint: 0,
        dwWaitHint: 0,
    };
    // SAFETY: an open service handle and a status to fill.
    if unsafe { ControlService(service.0, SERVICE_CONTROL_STOP, &mut status) } == 0 {
        return Err(last_error("ControlService(STOP)"));
    }
    Ok(())
}

/// Waits until the driver has stopped.
pub fn wait_stopped(name: &str) -> Result<(), String> {
    let (_manager, service) = open(name)?;
    wait_for(&service, SERVICE_STOPPED)
}

/// Stops the driver (DriverUnload) and waits until it has.
pub fn stop(name: &str) -> Result<(), String> {
    request_stop(name)?;
    wait_stopped(name)
}

/// Whether the service is running.
pub fn running(name: &str) -> Result<bool, String> {
    let (_manager, service) = open(name)?;
    Ok(state(&service)? == SERVICE_RUNNING)
}

/// Deletes the service.
pub fn delete(name: &str) -> Result<(), String> {
    let (_manager, service) = open(name)?;
    // SAFETY: an open service handle.
    if unsafe { DeleteService(service.0) } == 0 {
        return Err(last_error("DeleteService"));
    }
    Ok(())
}
