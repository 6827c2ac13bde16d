//! The raw-request cases. Each returns `Ok(summary)`, or `Err(why)` at
//! the first request that did not get what the driver's contract says
//! (nt-driver/src/ioctl.rs and dispatch.rs, through the Win32 error Wine
//! maps each NTSTATUS to).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use vmx_core::ProcessorStatus;
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryReader, ReplyHeader, Request};
use windows_sys::Win32::Foundation::{
    ERROR_BAD_LENGTH, ERROR_BUSY, ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER,
    ERROR_INVALID_FUNCTION, ERROR_MORE_DATA,
};

use crate::device::{Device, Reply};

/// A case's result: a summary, or why it failed.
pub type CaseResult = Result<String, String>;

fn open() -> Result<Device, String> {
    Device::open().map_err(|e| format!("opening the device failed with Win32 error {e}"))
}

fn request() -> [u8; Request::SIZE] {
    Request::current().to_bytes()
}

/// Whether this processor reports VMX (CPUID.1:ECX bit 5): then a complete
/// ENTER could reach VMXON, which crashes Wine's driver host, so it is
/// never sent.
pub fn host_has_vmx() -> bool {
    // CPUID leaf 1 exists on every x86-64 processor.
    let leaf1 = core::arch::x86_64::__cpuid(1);
    leaf1.ecx & (1 << 5) != 0
}

/// The processor count and QUERY's reply size, from the two-call pattern.
fn query_size(device: &Device) -> Result<(usize, usize), String> {
    let first = device.ioctl(Ioctl::Query.code(), &request(), ReplyHeader::SIZE);
    if first.error != Some(ERROR_MORE_DATA) || first.bytes.len() != ReplyHeader::SIZE {
        return Err(format!(
            "QUERY with a 16-byte buffer: {}, expected ERROR_MORE_DATA and the 16-byte header",
            first.describe()
        ));
    }
    let header = ReplyHeader::decode(&first.bytes).map_err(|e| format!("QUERY header: {e}"))?;
    Ok((header.processors as usize, header.size as usize))
}

/// The reply size of each IOCTL on `processors` processors.
fn reply_size(ioctl: Ioctl, processors: usize, query: usize) -> usize {
    match ioctl {
        Ioctl::Query => query,
        Ioctl::Enter | Ioctl::Leave => Outcome::REPLY_SIZE,
        Ioctl::Status => StatusEntry::reply_size(processors).unwrap_or(usize::MAX),
    }
}

/// STATUS succeeds and says every processor is off: the driver host is
/// alive and nothing was entered.
pub fn alive() -> CaseResult {
    let device = open()?;
    let (processors, _) = query_size(&device)?;
    let size = reply_size(Ioctl::Status, processors, 0);
    let reply = device.ioctl(Ioctl::Status.code(), &request(), size);
    if reply.error.is_some() {
        return Err(format!("STATUS: {}", reply.describe()));
    }
    let (_, statuses) =
        StatusEntry::decode_reply(&reply.bytes).map_err(|e| format!("STATUS reply: {e}"))?;
    let statuses: Vec<_> = statuses.collect();
    if statuses.len() != processors {
        return Err(format!(
            "STATUS: {} processors, QUERY said {processors}",
            statuses.len()
        ));
    }
    if let Some(on) = statuses.iter().position(|s| *s != ProcessorStatus::Off) {
        return Err(format!("STATUS: processor {on} is in VMX operation"));
    }
    Ok(format!(
        "the driver answers STATUS: {processors} processors, all off"
    ))
}

/// Fails unless `reply` is the Win32 error `error` with `bytes` bytes.
fn expect_error(what: &str, reply: &Reply, error: u32, bytes: usize) -> Result<(), String> {
    if reply.error == Some(error) && reply.bytes.len() == bytes {
        return Ok(());
    }
    Err(format!(
        "{what}: {}, expected Win32 error {error} with {bytes} bytes",
        reply.describe()
    ))
}

/// The two-call pattern by hand: the header alone first, then the whole
/// reply, which decodes.
pub fn two_call() -> CaseResult {
    let device = open()?;
    let (processors, size) = query_size(&device)?;
    let reply = device.ioctl(Ioctl::Query.code(), &request(), size);
    if reply.error.is_some() || reply.bytes.len() != size {
        return Err(format!("QUERY with {size} bytes: {}", reply.describe()));
    }
    let reader = QueryReader::decode(&reply.bytes).map_err(|e| format!("QUERY reply: {e}"))?;
    let records = reader.processors().count();
    if records != processors {
        return Err(format!(
            "QUERY: {records} records for {processors} processors"
        ));
    }
    if let Some(record) = reader.processors().find(|r| !r.available) {
        return Err(format!("QUERY: processor {} unavailable", record.index));
    }
    Ok(format!(
        "16 bytes: ERROR_MORE_DATA naming {size}; {size} bytes: {processors} processor records"
    ))
}

/// Codes that are not the driver's: another function, another device
/// type, another access, and nonsense. Each: ERROR_INVALID_FUNCTION.
pub fn unknown_codes() -> CaseResult {
    use vmx_ioctl::{FILE_DEVICE_UNKNOWN, ctl_code};
    let device = open()?;
    let codes = [
        0,
        ctl_code(FILE_DEVICE_UNKNOWN, 0x7ff, 0, 0),
        ctl_code(FILE_DEVICE_UNKNOWN, 0x804, 0, 0),
        ctl_code(FILE_DEVICE_UNKNOWN, 0xfff, 0, 3),
        ctl_code(FILE_DEVICE_UNKNOWN, 0x800, 0, 0),
        ctl_code(FILE_DEVICE_UNKNOWN, 0x801, 0, 1),
        ctl_code(0x12, 0x800, 0, 1),
        ctl_code(0x7, 0x0, 0, 0),
        // Every bit set but the method's: METHOD_BUFFERED, all else nonsense.
        0xffff_fffc,
    ];
    for code in codes {
        let reply = device.ioctl(code, &request(), 4096);
        expect_error(
            &format!("code {code:#x}"),
            &reply,
            ERROR_INVALID_FUNCTION,
            0,
        )?;
    }
    Ok(format!("{} codes: ERROR_INVALID_FUNCTION", codes.len()))
}

/// The driver's four functions with METHOD_IN_DIRECT, METHOD_OUT_DIRECT
/// and METHOD_NEITHER: not its codes, refused without touching a buffer.
pub fn methods() -> CaseResult {
    let device = open()?;
    for ioctl in Ioctl::ALL {
        for method in 1..=3 {
            let code = ioctl.code() | method;
            let reply = device.ioctl(code, &request(), 4096);
            expect_error(
                &format!("{} with method {method} ({code:#x})", ioctl.name()),
                &reply,
                ERROR_INVALID_FUNCTION,
                0,
            )?;
        }
    }
    Ok("12 codes: ERROR_INVALID_FUNCTION".to_owned())
}

/// Every input size 0..=64 and every output size 0..=64 and around each
/// reply's size, for every IOCTL: ERROR_BAD_LENGTH,
/// ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA with the header naming the
/// size, or the whole reply (nt-driver/src/ioctl.rs's table).
pub fn sizes() -> CaseResult {
    let device = open()?;
    let (processors, query) = query_size(&device)?;
    let vmx = host_has_vmx();
    let mut calls = 0;
    let mut skipped = 0;
    for ioctl in Ioctl::ALL {
        let needed = reply_size(ioctl, processors, query);
        // A complete ENTER runs vmx-core's enter_all: on a host without VMX
        // it refuses before any privileged instruction; with VMX it would
        // reach VMXON, which Wine cannot run.
        let runs = |input: usize, output: usize| {
            ioctl == Ioctl::Enter && input == Request::SIZE && output >= needed
        };
        let mut check = |input: usize, output: usize| -> Result<(), String> {
            if vmx && runs(input, output) {
                skipped += 1;
                return Ok(());
            }
            let mut bytes = vec![0u8; input];
            let n = input.min(Request::SIZE);
            bytes[..n].copy_from_slice(&request()[..n]);
            let reply = device.ioctl(ioctl.code(), &bytes, output);
            calls += 1;
            let what = format!("{} input {input} output {output}", ioctl.name());
            if input != Request::SIZE {
                return expect_error(&what, &reply, ERROR_BAD_LENGTH, 0);
            }
            if output < ReplyHeader::SIZE {
                return expect_error(&what, &reply, ERROR_INSUFFICIENT_BUFFER, 0);
            }
            if output < needed {
                expect_error(&what, &reply, ERROR_MORE_DATA, ReplyHeader::SIZE)?;
                let header =
                    ReplyHeader::decode(&reply.bytes).map_err(|e| format!("{what}: {e}"))?;
                if header.size as usize != needed || header.processors as usize != processors {
                    return Err(format!(
                        "{what}: the header says {} bytes for {} processors, expected {needed} \
                         for {processors}",
                        header.size, header.processors
                    ));
                }
                return Ok(());
            }
            if reply.error.is_some() || reply.bytes.len() != needed {
                return Err(format!(
                    "{what}: {}, expected {needed} bytes",
                    reply.describe()
                ));
            }
            Ok(())
        };
        for input in 0..=64 {
            check(input, needed)?;
            check(input, 0)?;
        }
        let mut outputs: Vec<usize> = (0..=64).collect();
        outputs.extend([needed - 1, needed, needed + 1, 4096]);
        for output in outputs {
            check(Request::SIZE, output)?;
        }
    }
    let skip = if skipped > 0 {
        format!("; {skipped} complete ENTERs not sent (CPUID reports VMX)")
    } else {
        String::new()
    };
    Ok(format!(
        "{calls} requests, each with its expected result{skip}"
    ))
}

/// ReadFile and WriteFile: IRP_MJ_READ and IRP_MJ_WRITE are refused.
pub fn read_write() -> CaseResult {
    let device = open()?;
    for length in [0, 16] {
        let reply = device.read(length);
        expect_error(
            &format!("ReadFile of {length}"),
            &reply,
            ERROR_INVALID_FUNCTION,
            0,
        )?;
        let reply = device.write(&vec![0x5a; length]);
        expect_error(
            &format!("WriteFile of {length}"),
            &reply,
            ERROR_INVALID_FUNCTION,
            0,
        )?;
    }
    Ok("ReadFile and WriteFile of 0 and 16 bytes: ERROR_INVALID_FUNCTION".to_owned())
}

/// An open of a name below the device is refused: it has no namespace.
pub fn extra_name() -> CaseResult {
    let path = format!("{}\\extra", vmx_ioctl::USER_PATH);
    match Device::open_path(&path) {
        Err(error) if error == ERROR_FILE_NOT_FOUND => Ok(format!("{path}: ERROR_FILE_NOT_FOUND")),
        Err(error) => Err(format!(
            "{path}: Win32 error {error}, expected ERROR_FILE_NOT_FOUND"
        )),
        Ok(_) => Err(format!(
            "{path} opened; the driver must refuse a name below the device \
             (STATUS_OBJECT_NAME_NOT_FOUND)"
        )),
    }
}

/// 64 handles open at once, each answered.
pub fn handles() -> CaseResult {
    let devices = (0..64)
        .map(|i| open().map_err(|e| format!("handle {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (processors, _) = query_size(&devices[0])?;
    let size = reply_size(Ioctl::Status, processors, 0);
    for (i, device) in devices.iter().enumerate() {
        let reply = device.ioctl(Ioctl::Status.code(), &request(), size);
        if reply.error.is_some() || reply.bytes.len() != size {
            return Err(format!("STATUS on handle {i}: {}", reply.describe()));
        }
    }
    drop(devices);
    alive().map(|_| "64 handles open at once, STATUS answered on each, all closed".to_owned())
}

/// 8 threads, each on its own handle, issue QUERY and STATUS at the same
/// time: every answer is a whole reply or ERROR_BUSY (the device runs one
/// request at a time and turns the others away).
pub fn threads() -> CaseResult {
    const THREADS: usize = 8;
    const ROUNDS: usize = 50;
    let (processors, query) = query_size(&open()?)?;
    let status = reply_size(Ioctl::Status, processors, 0);
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(usize, usize), String> {
                let device = open()?;
                barrier.wait();
                let (mut answered, mut busy) = (0, 0);
                for round in 0..ROUNDS {
                    let (ioctl, size) = if (t + round) % 2 == 0 {
                        (Ioctl::Query, query)
                    } else {
                        (Ioctl::Status, status)
                    };
                    let reply = device.ioctl(ioctl.code(), &request(), size);
                    match reply.error {
                        None if reply.bytes.len() == size => answered += 1,
                        Some(ERROR_BUSY) => busy += 1,
                        _ => {
                            return Err(format!(
                                "thread {t} {} round {round}: {}",
                                ioctl.name(),
                                reply.describe()
                            ));
                        }
                    }
                }
                Ok((answered, busy))
            })
        })
        .collect();
    let (mut answered, mut busy) = (0, 0);
    for worker in workers {
        let (a, b) = worker
            .join()
            .map_err(|_| "a thread panicked".to_owned())??;
        answered += a;
        busy += b;
    }
    if answered == 0 {
        return Err("no request was answered".to_owned());
    }
    alive()?;
    Ok(format!(
        "{THREADS} threads x {ROUNDS} requests: {answered} answered, {busy} ERROR_BUSY"
    ))
}

/// QUERY of every processor, `count` times: the round trip's median and
/// spread, in microseconds.
pub fn round_trip(count: usize) -> CaseResult {
    let device = open()?;
    let (processors, size) = query_size(&device)?;
    let mut micros = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let reply = device.ioctl(Ioctl::Query.code(), &request(), size);
        micros.push(start.elapsed().as_secs_f64() * 1e6);
        if reply.error.is_some() || reply.bytes.len() != size {
            return Err(format!(
                "QUERY: {}, expected the whole {size}-byte reply",
                reply.describe()
            ));
        }
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    Ok(format!(
        "QUERY of {processors} processors ({size} bytes), {count} round trips: median {:.0} us, \
         p10 {:.0} us, p90 {:.0} us, min {:.0} us",
        at(0.5),
        at(0.1),
        at(0.9),
        micros[0]
    ))
}

/// The test image's power test request (wine-driver/substitutes'
/// `POWER_TEST_CODE`): `CTL_CODE(FILE_DEVICE_UNKNOWN, 0xF57,
/// METHOD_BUFFERED, FILE_ANY_ACCESS)`, not one of nt-driver's codes.
const POWER_TEST_CODE: u32 = vmx_ioctl::ctl_code(vmx_ioctl::FILE_DEVICE_UNKNOWN, 0xF57, 0, 0);

/// Asks the test image to notify `\Callback\PowerState` of
/// PO_CB_SYSTEM_STATE_LOCK with `argument` (0: about to leave S0, 1: back
/// in S0). The driver itself refuses the code as unknown; the substitute
/// delivers the notification before that completion returns.
pub fn power(argument: u8) -> CaseResult {
    let device = open()?;
    let reply = device.ioctl(POWER_TEST_CODE, &[argument], 0);
    expect_error("the power test request", &reply, ERROR_INVALID_FUNCTION, 0)?;
    Ok(format!("PO_CB_SYSTEM_STATE_LOCK, {argument} delivered"))
}
