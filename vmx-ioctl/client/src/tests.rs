//! The client against the real driver logic (nt-driver over its simulated
//! machine), with the I/O manager's METHOD_BUFFERED copying and
//! NTSTATUS-to-Win32 mapping in between.

use super::*;
use nt_driver::fake::{FakeDevice, device, device_control, processors};
use nt_driver::log::Log;
use nt_driver::ntstatus::*;
use vmx_core::sim::{SimAllocator, SimMachine, Step};
use vmx_core::{Error, Verdict, diagnose};
use vmx_ioctl::WireError;

struct Quiet;

impl Log for Quiet {
    fn log(&mut self, _args: core::fmt::Arguments<'_>) {}
}

struct Simulated(FakeDevice);

/// RtlNtStatusToDosError for the statuses the driver uses.
fn win32(status: NtStatus) -> u32 {
    match status {
        STATUS_BUFFER_OVERFLOW => ERROR_MORE_DATA,
        STATUS_DEVICE_BUSY => ERROR_BUSY,
        STATUS_INVALID_DEVICE_REQUEST => ERROR_INVALID_FUNCTION,
        STATUS_INFO_LENGTH_MISMATCH => ERROR_BAD_LENGTH,
        STATUS_BUFFER_TOO_SMALL => ERROR_INSUFFICIENT_BUFFER,
        STATUS_REVISION_MISMATCH => ERROR_REVISION_MISMATCH,
        STATUS_INVALID_PARAMETER => 87,
        _ => 31,
    }
}

impl Transport for Simulated {
    fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, TransportError> {
        let (completion, reply) = device_control(&self.0, code, input, output.len(), &mut Quiet);
        let returned = reply.len();
        output[..returned].copy_from_slice(&reply);
        if nt_success(completion.status) {
            Ok(returned)
        } else {
            Err(TransportError {
                win32: win32(completion.status),
                returned,
            })
        }
    }
}

fn client(processors: SimMachine) -> Client<Simulated> {
    Client::new(Simulated(device(processors, SimAllocator::default())))
}

#[test]
fn query_finds_its_size_and_diagnoses_every_processor() {
    let mut client = client(processors(3));
    let reply = client.query().unwrap();
    let reader = QueryReader::decode(&reply).unwrap();
    let verdicts: Vec<Verdict> = reader
        .processors()
        .map(|record| diagnose(&mut record.replay()).verdict)
        .collect();
    assert_eq!(verdicts, [Verdict::Ready; 3]);
}

#[test]
fn on_status_off_round_trip() {
    let mut client = client(processors(2));
    let entered = client.enter().unwrap();
    assert_eq!(entered.failure, None);
    assert_eq!(entered.entered_after, 2);
    let statuses = client.status().unwrap();
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, ProcessorStatus::On { .. }))
    );
    assert!(status_text(&statuses).contains("processor 1: in VMX operation"));
    let left = client.leave().unwrap();
    assert_eq!((left.changed, left.entered_after), (2, 0));
    assert!(outcome_text(Ioctl::Leave, &left).starts_with("VMX operation left on 2 processors"));
    assert_eq!(client.status().unwrap(), [ProcessorStatus::Off; 2]);
}

#[test]
fn a_refusal_comes_back_with_the_processor_and_the_reason() {
    let mut machine = processors(4);
    Step::InUse.inject(2, &mut machine, &mut SimAllocator::default());
    let mut client = client(machine);
    let outcome = client.enter().unwrap();
    let (processor, error) = outcome.failure.unwrap();
    assert_eq!(processor, 2);
    assert!(matches!(error.to_error(), Some(Error::InUse { .. })));
    let text = outcome_text(Ioctl::Enter, &outcome);
    assert!(
        text.contains("ENTER failed on processor 2: CR4.VMXE is already set"),
        "{text}"
    );
    assert_eq!(
        client.leave().unwrap().failure,
        Some((0, WireError::from_error(&Error::NotEntered)))
    );
}

fn open_error(win32: u32, opened_before: bool, elevated: Option<bool>) -> ClientError {
    ClientError::Open {
        win32,
        opened_before,
        elevated,
    }
}

#[test]
fn errors_say_what_to_do() {
    let not_loaded = open_error(ERROR_FILE_NOT_FOUND, false, None);
    assert!(not_loaded.driver_not_loaded());
    assert!(not_loaded.to_string().starts_with("driver not loaded"));
    let denied = open_error(ERROR_ACCESS_DENIED, false, Some(false));
    assert!(denied.to_string().contains("run as Administrator"));
    let busy = ClientError::Ioctl {
        ioctl: Ioctl::Enter,
        win32: ERROR_BUSY,
    };
    assert!(busy.to_string().contains("busy"));
}

/// A transport whose driver host dies after `answers` requests: from then
/// on every request fails as Wine reports it, with ERROR_ACCESS_DENIED.
struct Dying {
    device: Simulated,
    answers: usize,
}

impl Transport for Dying {
    fn ioctl(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, TransportError> {
        if self.answers == 0 {
            return Err(TransportError {
                win32: ERROR_ACCESS_DENIED,
                returned: 0,
            });
        }
        self.answers -= 1;
        self.device.ioctl(code, input, output)
    }
}

#[test]
fn access_denied_on_an_open_handle_names_a_stopped_driver_not_administrator_rights() {
    let device = Simulated(device(processors(2), SimAllocator::default()));
    // The first QUERY call (the header) is answered, the second is not.
    let mut client = Client::new(Dying { device, answers: 1 });
    let error = client.query().unwrap_err();
    assert_eq!(
        error,
        ClientError::Ioctl {
            ioctl: Ioctl::Query,
            win32: ERROR_ACCESS_DENIED
        }
    );
    let text = error.to_string();
    assert!(!text.contains("run as Administrator"), "{text}");
    assert!(text.contains("stopped responding"), "{text}");
    assert!(text.contains("sc.exe"), "{text}");
}

#[test]
fn access_denied_at_open_is_explained_by_the_facts() {
    // Not elevated: the device's SDDL admits SYSTEM and Administrators only.
    let text = open_error(ERROR_ACCESS_DENIED, false, Some(false)).to_string();
    assert!(text.contains("run as Administrator"), "{text}");
    // Elevated and still refused: not a question of rights.
    let text = open_error(ERROR_ACCESS_DENIED, false, Some(true)).to_string();
    assert!(!text.contains("run as Administrator"), "{text}");
    assert!(
        text.contains("although this process runs elevated"),
        "{text}"
    );
    // It opened earlier in this process: the driver stopped, nothing else
    // changed.
    for elevated in [None, Some(false), Some(true)] {
        let text = open_error(ERROR_ACCESS_DENIED, true, elevated).to_string();
        assert!(text.contains("stopped responding"), "{text}");
        assert!(!text.contains("run as Administrator"), "{text}");
    }
    // Elevation unknown: say so.
    let text = open_error(ERROR_ACCESS_DENIED, false, None).to_string();
    assert!(text.contains("run as Administrator"), "{text}");
    assert!(text.contains("could not tell"), "{text}");
}

#[test]
fn the_cause_of_access_denied_follows_from_the_facts() {
    use AccessDenied::*;
    // (handle opened, opened before in this process, elevated) -> cause
    let table = [
        ((true, true, None), DriverStopped),
        ((true, false, Some(true)), DriverStopped),
        ((false, true, Some(false)), DriverStopped),
        ((false, false, Some(false)), NotElevated),
        ((false, false, None), ElevationUnknown),
        ((false, false, Some(true)), ElevatedButRefused),
    ];
    for ((handle_opened, opened_before, elevated), cause) in table {
        assert_eq!(
            AccessDenied::cause(handle_opened, opened_before, elevated),
            cause,
            "{handle_opened} {opened_before} {elevated:?}"
        );
    }
}
