//! TEST ONLY: the Win32 side of `cargo xtask wine`, run under Wine.
//!
//! ```text
//! wine-client install NAME PATH | start NAME | stop NAME | delete NAME
//! wine-client cycle NAME COUNT          start, use, stop COUNT times
//! wine-client unload-with-handle NAME   stop while a handle is open, then close it
//! wine-client case CASE                 a raw-request case (see `cases`)
//! wine-client round-trip COUNT          QUERY COUNT times, the median time
//! wine-client power suspend|resume      the test image's power notification
//! ```
//!
//! It prints what it saw, then one last line, `ok: ...` or `fail: ...`,
//! and exits 0 or 1 to match (64: a usage error).

mod cases;
mod device;
mod service;

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use device::Device;
use vmx_ioctl::{Ioctl, Request};
use windows_sys::Win32::Foundation::ERROR_FILE_NOT_FOUND;

const USAGE: &str = "usage: wine-client install NAME PATH | start NAME | stop NAME | delete NAME \
                     | cycle NAME COUNT | unload-with-handle NAME | case CASE | round-trip COUNT \
                     | power suspend|resume";

/// A raw-request case: its name and what runs it.
type Case = (&'static str, fn() -> cases::CaseResult);

/// The raw-request cases, by name.
const CASES: &[Case] = &[
    ("alive", cases::alive),
    ("two-call", cases::two_call),
    ("unknown-codes", cases::unknown_codes),
    ("methods", cases::methods),
    ("sizes", cases::sizes),
    ("read-write", cases::read_write),
    ("extra-name", cases::extra_name),
    ("handles", cases::handles),
    ("threads", cases::threads),
];

/// Fails unless the device is gone (the driver unloaded).
fn device_gone() -> Result<(), String> {
    match Device::open() {
        Err(e) if e == ERROR_FILE_NOT_FOUND => Ok(()),
        Err(e) => Err(format!(
            "after the stop, opening the device gave Win32 error {e}"
        )),
        Ok(_) => Err("after the stop the device still opens".to_owned()),
    }
}

/// Start, STATUS, stop, and the device gone: `count` times.
fn cycle(name: &str, count: usize) -> cases::CaseResult {
    for round in 1..=count {
        service::start(name).map_err(|e| format!("load {round}: {e}"))?;
        cases::alive().map_err(|e| format!("load {round}: {e}"))?;
        service::stop(name).map_err(|e| format!("unload {round}: {e}"))?;
        device_gone().map_err(|e| format!("unload {round}: {e}"))?;
    }
    Ok(format!(
        "{count} loads and unloads, each answered STATUS and left no device"
    ))
}

/// Asks the driver to stop while a handle is open, uses the handle, then
/// closes it: the driver must end stopped, its device gone, whichever way
/// the kernel orders the unload (Windows defers DriverUnload until the
/// last handle closes; Wine unloads at once and fails the handle).
fn unload_with_handle(name: &str) -> cases::CaseResult {
    let device = Device::open().map_err(|e| format!("open: Win32 error {e}"))?;
    service::request_stop(name)?;
    thread::sleep(Duration::from_millis(300));
    let running = service::running(name)?;
    let request = Request::current().to_bytes();
    let reply = device.ioctl(Ioctl::Status.code(), &request, 4096);
    println!(
        "stop requested with a handle open: service {}; STATUS on the handle: {}",
        if running {
            "still running"
        } else {
            "not running"
        },
        reply.describe()
    );
    drop(device);
    service::wait_stopped(name)?;
    device_gone()?;
    Ok(format!(
        "stopped with a handle open ({}), then closed: stopped, device gone",
        match reply.error {
            None => "the handle still answered",
            Some(_) => "the handle failed",
        }
    ))
}

fn run(args: &[String]) -> Option<cases::CaseResult> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = |r: Result<(), String>| r.map(|()| "done".to_owned());
    Some(match args.as_slice() {
        ["install", name, path] => done(service::install(name, path)),
        ["start", name] => done(service::start(name)),
        ["stop", name] => done(service::stop(name)),
        ["delete", name] => done(service::delete(name)),
        ["cycle", name, count] => cycle(name, count.parse().ok()?),
        ["unload-with-handle", name] => unload_with_handle(name),
        ["round-trip", count] => cases::round_trip(count.parse().ok()?),
        ["power", "suspend"] => cases::power(0),
        ["power", "resume"] => cases::power(1),
        ["case", case] => CASES.iter().find(|(n, _)| n == case)?.1(),
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Some(Ok(summary)) => {
            println!("ok: {summary}");
            ExitCode::SUCCESS
        }
        Some(Err(reason)) => {
            println!("fail: {reason}");
            ExitCode::from(1)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
    }
}
