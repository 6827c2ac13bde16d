//! The driver's decisions end to end, on the simulated machine: every IRP
//! major function, every IOCTL with wrong, short and exact sizes, ENTER
//! with a failure on each processor, LEAVE, STATUS, QUERY and unload.

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use vmx_core::sim::{Op, SimAllocator, SimMachine, Step};
use vmx_core::{Error, ProcessorStatus, Verdict, diagnose};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryReader, ReplyHeader, Request, WireError};

use crate::dispatch::IRP_MJ_MAXIMUM_FUNCTION;
use crate::fake::{FakeDevice, device_control, processors};
use crate::log::Log;
use crate::ntstatus::*;
use crate::power::{PowerEvent, PowerState};
use crate::{Completion, IrpParams};

#[derive(Default)]
struct Lines(Vec<String>);

impl Log for Lines {
    fn log(&mut self, args: core::fmt::Arguments<'_>) {
        self.0.push(args.to_string());
    }
}

impl Lines {
    fn contains(&self, text: &str) -> bool {
        self.0.iter().any(|line| line.contains(text))
    }
}

fn device(processors: SimMachine) -> FakeDevice {
    device_with(processors, SimAllocator::default())
}

fn device_with(processors: SimMachine, allocator: SimAllocator) -> FakeDevice {
    crate::fake::device(processors, allocator)
}

/// Sends an IOCTL as the I/O manager does for METHOD_BUFFERED (see
/// [`device_control`], which also checks `Information`); returns the
/// completion and the bytes the caller would receive.
fn send(device: &mut FakeDevice, code: u32, input: &[u8], output: usize) -> (Completion, Vec<u8>) {
    device_control(device, code, input, output, &mut Lines::default())
}

/// `count` processors, processor `index` with `step` going wrong.
fn failing_processors(count: usize, index: usize, step: Step) -> SimMachine {
    let mut machine = processors(count);
    step.inject(index, &mut machine, &mut SimAllocator::default());
    machine
}

fn request() -> [u8; 8] {
    Request::current().to_bytes()
}

fn enter(device: &mut FakeDevice) -> Outcome {
    let (completion, reply) = send(device, Ioctl::Enter.code(), &request(), Outcome::REPLY_SIZE);
    assert_eq!(completion.status, STATUS_SUCCESS);
    assert_eq!(completion.information, 64);
    Outcome::decode_reply(&reply).unwrap().1
}

fn leave(device: &mut FakeDevice) -> Outcome {
    let (completion, reply) = send(device, Ioctl::Leave.code(), &request(), Outcome::REPLY_SIZE);
    assert_eq!(completion.status, STATUS_SUCCESS);
    Outcome::decode_reply(&reply).unwrap().1
}

fn statuses(device: &mut FakeDevice) -> Vec<ProcessorStatus> {
    let count = device.control_mut().processor_count();
    let size = StatusEntry::reply_size(count).unwrap();
    let (completion, reply) = send(device, Ioctl::Status.code(), &request(), size);
    assert_eq!(
        completion,
        Completion {
            status: STATUS_SUCCESS,
            information: size
        }
    );
    StatusEntry::decode_reply(&reply).unwrap().1.collect()
}

fn untouched(device: &mut FakeDevice) -> bool {
    let (processors, allocator) = device.control_mut().services();
    processors.runs == 0 && allocator.allocations == 0
}

fn all_pristine(device: &mut FakeDevice) -> bool {
    let (processors, allocator) = device.control_mut().services();
    // A double or foreign free panics in the simulated allocator.
    processors.cpus.iter().all(|cpu| cpu.is_pristine()) && allocator.outstanding.is_empty()
}

#[test]
fn every_major_function_is_completed_with_its_status() {
    for major in 0..=IRP_MJ_MAXIMUM_FUNCTION {
        let mut device = device(processors(2));
        let mut lines = Lines::default();
        let completion = device.dispatch(
            IrpParams {
                major,
                code: 0,
                input_length: 0,
                output_length: 0,
                file_name_length: 0,
                buffer: None,
            },
            &mut lines,
        );
        let expected = match major {
            0x00 | 0x02 | 0x12 => STATUS_SUCCESS,
            _ => STATUS_INVALID_DEVICE_REQUEST,
        };
        assert_eq!(completion, Completion::status(expected), "major {major:#x}");
        assert!(untouched(&mut device), "major {major:#x} changed nothing");
    }
}

#[test]
fn opening_the_device_changes_nothing() {
    let mut device = device(processors(2));
    let completion = device.dispatch(
        IrpParams {
            major: 0,
            code: Ioctl::Enter.code(),
            input_length: 8,
            output_length: 64,
            file_name_length: 0,
            buffer: None,
        },
        &mut Lines::default(),
    );
    assert_eq!(completion, Completion::status(STATUS_SUCCESS));
    assert!(untouched(&mut device));
}

#[test]
fn opening_a_name_below_the_device_is_refused_and_changes_nothing() {
    let mut device = device(processors(2));
    let mut lines = Lines::default();
    let completion = device.dispatch(
        IrpParams {
            major: 0,
            code: 0,
            input_length: 0,
            output_length: 0,
            file_name_length: 10,
            buffer: None,
        },
        &mut lines,
    );
    assert_eq!(completion, Completion::status(STATUS_OBJECT_NAME_NOT_FOUND));
    assert!(lines.contains("refused an open of a name below the device"));
    assert!(untouched(&mut device));
}

#[test]
fn unknown_codes_are_refused_and_touch_nothing() {
    let mut device = device(processors(2));
    let ours = Ioctl::Enter.code();
    for code in [
        0,
        0x0022_2000,
        0x0022_2010,
        ours | 3,
        ours ^ (1 << 14),
        ours ^ (1 << 16),
        u32::MAX,
    ] {
        for output in [0, 16, 64, 4096] {
            let (completion, _) = send(&mut device, code, &request(), output);
            assert_eq!(
                completion,
                Completion::status(STATUS_INVALID_DEVICE_REQUEST)
            );
        }
    }
    assert!(untouched(&mut device));
}

#[test]
fn every_ioctl_with_wrong_short_and_exact_sizes() {
    let count = 3;
    for ioctl in Ioctl::ALL {
        for input_length in 0..=24 {
            let mut input = vec![0u8; input_length];
            let n = input_length.min(8);
            input[..n].copy_from_slice(&request()[..n]);
            for output in 0..=256 {
                let mut device = device(processors(count));
                let (completion, reply) = send(&mut device, ioctl.code(), &input, output);
                let fixed = match ioctl {
                    Ioctl::Query => None,
                    Ioctl::Enter | Ioctl::Leave => Some(64),
                    Ioctl::Status => Some(16 + 32 * count),
                };
                let what = std::format!("{ioctl:?} input {input_length} output {output}");
                if input_length != 8 {
                    assert_eq!(
                        completion,
                        Completion::status(STATUS_INFO_LENGTH_MISMATCH),
                        "{what}"
                    );
                } else if output < 16 {
                    assert_eq!(
                        completion,
                        Completion::status(STATUS_BUFFER_TOO_SMALL),
                        "{what}"
                    );
                } else if fixed.is_some_and(|size| output < size) {
                    assert_eq!(
                        completion,
                        Completion {
                            status: STATUS_BUFFER_OVERFLOW,
                            information: 16
                        },
                        "{what}"
                    );
                    let header = ReplyHeader::decode(&reply).unwrap();
                    assert_eq!(Some(header.size as usize), fixed, "{what}");
                    assert_eq!(header.processors as usize, count);
                } else if ioctl == Ioctl::Query {
                    let (processors, _) = device.control_mut().services();
                    assert_eq!(processors.runs, count, "QUERY visits every processor");
                    assert!(all_pristine(&mut device), "{what}: QUERY changes nothing");
                    continue;
                } else {
                    assert_eq!(completion.status, STATUS_SUCCESS, "{what}");
                    assert_eq!(Some(completion.information), fixed, "{what}");
                    assert_eq!(reply.len(), completion.information);
                    continue;
                }
                assert!(
                    untouched(&mut device),
                    "{what}: a refused request changes nothing"
                );
            }
        }
    }
}

#[test]
fn a_foreign_protocol_version_is_a_revision_mismatch() {
    let mut device = device(processors(2));
    for ioctl in Ioctl::ALL {
        let mut input = request();
        input[0] = 7;
        let (completion, _) = send(&mut device, ioctl.code(), &input, 4096);
        assert_eq!(completion, Completion::status(STATUS_REVISION_MISMATCH));
        input = request();
        input[6] = 1;
        let (completion, _) = send(&mut device, ioctl.code(), &input, 4096);
        assert_eq!(completion, Completion::status(STATUS_INVALID_PARAMETER));
    }
    assert!(untouched(&mut device));
}

#[test]
fn enter_takes_every_processor_into_vmx_operation_and_says_so() {
    let mut device = device(processors(4));
    let mut lines = Lines::default();
    let (completion, reply) =
        device_control(&device, Ioctl::Enter.code(), &request(), 64, &mut lines);
    assert_eq!(
        completion,
        Completion {
            status: STATUS_SUCCESS,
            information: 64
        }
    );
    let (header, outcome) = Outcome::decode_reply(&reply).unwrap();
    assert_eq!(header.processors, 4);
    assert_eq!(
        outcome,
        Outcome {
            changed: 4,
            entered_after: 4,
            failure: None
        }
    );
    assert!(lines.contains("VMX entered on every processor (4 of 4)"));
    let statuses = statuses(&mut device);
    let (processors, allocator) = device.control_mut().services();
    assert_eq!(allocator.outstanding.len(), 4);
    for (cpu, status) in processors.cpus.iter().zip(statuses) {
        let ProcessorStatus::On {
            region,
            revision_id,
            original_cr4,
            ..
        } = status
        else {
            panic!("processor off after ENTER");
        };
        assert!(cpu.in_vmx);
        assert_eq!(cpu.region, Some(region));
        assert!(allocator.outstanding.contains(&region));
        assert_eq!(revision_id, 0x2b);
        assert_eq!(original_cr4, crate::fake::CR4);
    }
}

#[test]
fn enter_with_a_failure_on_each_processor_rolls_every_processor_back() {
    let count = 4;
    let troubles = [
        (Step::VmxBit, 2),
        (Step::FeatureControlDisabled, 3),
        (Step::InUse, 6),
        (Step::VmxonFailInvalid, 14),
    ];
    for failing in 0..count {
        for (trouble, code) in troubles {
            let mut device = device(failing_processors(count, failing, trouble));
            let outcome = enter(&mut device);
            let (processor, error) = outcome.failure.expect("ENTER fails");
            assert_eq!(processor as usize, failing, "{trouble:?}");
            assert_eq!(error.code, code, "{trouble:?}");
            assert!(error.to_error().is_some());
            assert_eq!((outcome.changed, outcome.entered_after), (0, 0));
            assert!(all_pristine(&mut device), "{trouble:?} on {failing}");
            assert!(
                statuses(&mut device)
                    .iter()
                    .all(|s| *s == ProcessorStatus::Off)
            );
        }
        // The platform cannot reach the processor.
        let mut machine = processors(count);
        machine.unreachable = Some(failing);
        let mut device = device(machine);
        let outcome = enter(&mut device);
        assert_eq!(
            outcome.failure,
            Some((
                failing as u32,
                WireError::from_error(&Error::ProcessorUnavailable)
            ))
        );
        assert!(all_pristine(&mut device));
        // No page for this processor's region.
        let allocator = SimAllocator {
            fail_at: Some(failing),
            ..SimAllocator::default()
        };
        let mut device = device_with(processors(count), allocator);
        let outcome = enter(&mut device);
        assert_eq!(
            outcome.failure,
            Some((failing as u32, WireError::from_error(&Error::OutOfMemory)))
        );
        assert!(all_pristine(&mut device));
    }
}

#[test]
fn enter_twice_is_refused_and_changes_nothing() {
    let mut device = device(processors(2));
    enter(&mut device);
    let outcome = enter(&mut device);
    assert_eq!(
        outcome.failure,
        Some((0, WireError::from_error(&Error::AlreadyEntered)))
    );
    assert_eq!((outcome.changed, outcome.entered_after), (0, 2));
    let (_, allocator) = device.control_mut().services();
    assert_eq!(allocator.outstanding.len(), 2);
}

#[test]
fn leave_undoes_enter_and_frees_every_region() {
    let mut device = device(processors(3));
    assert_eq!(
        leave(&mut device).failure,
        Some((0, WireError::from_error(&Error::NotEntered)))
    );
    enter(&mut device);
    let outcome = leave(&mut device);
    assert_eq!(
        outcome,
        Outcome {
            changed: 3,
            entered_after: 0,
            failure: None
        }
    );
    assert!(all_pristine(&mut device));
    // And again: enter and leave are repeatable.
    enter(&mut device);
    leave(&mut device);
    assert!(all_pristine(&mut device));
}

#[test]
fn a_processor_that_cannot_leave_keeps_its_region_and_the_rest_leave() {
    let mut device = device(failing_processors(3, 1, Step::VmxoffFailValid));
    enter(&mut device);
    let outcome = leave(&mut device);
    let (processor, error) = outcome.failure.unwrap();
    assert_eq!(processor, 1);
    assert_eq!(error.code, 15);
    assert_eq!((outcome.changed, outcome.entered_after), (2, 1));
    let mut lines = Lines::default();
    device.unload(&mut lines);
    assert!(lines.contains("processor 1 stays in VMX operation"));
    let (processors, allocator) = device.control_mut().services();
    assert!(processors.cpus[1].in_vmx);
    assert_eq!(
        allocator.outstanding.len(),
        1,
        "the region in use is not freed"
    );
    assert!(!processors.cpus[0].in_vmx && !processors.cpus[2].in_vmx);
}

#[test]
fn unload_leaves_every_processor_and_frees_every_page() {
    let mut device = device(processors(4));
    enter(&mut device);
    let mut lines = Lines::default();
    device.unload(&mut lines);
    assert!(all_pristine(&mut device));
    assert!(lines.contains("VMX left on every processor that had entered (4)"));
    // Unloading without ENTER does nothing at all.
    let mut idle = device_with(processors(4), SimAllocator::default());
    idle.unload(&mut Lines::default());
    assert!(untouched(&mut idle));
}

#[test]
fn query_follows_the_two_call_pattern_and_replays_to_the_same_diagnosis() {
    let mut device = device(processors(2));
    let (completion, reply) = send(&mut device, Ioctl::Query.code(), &request(), 16);
    assert_eq!(
        completion,
        Completion {
            status: STATUS_BUFFER_OVERFLOW,
            information: 16
        }
    );
    let size = ReplyHeader::decode(&reply).unwrap().size as usize;
    let (completion, reply) = send(&mut device, Ioctl::Query.code(), &request(), size);
    assert_eq!(
        completion,
        Completion {
            status: STATUS_SUCCESS,
            information: size
        }
    );
    let reader = QueryReader::decode(&reply).unwrap();
    let (processors, _) = device.control_mut().services();
    let mut live = processors.cpus[0].clone();
    let expected = diagnose(&mut vmx_core::CpuObserver(&mut live));
    assert_eq!(expected.verdict, Verdict::Ready);
    for record in reader.processors() {
        assert_eq!(diagnose(&mut record.replay()), expected);
    }
    // A larger buffer: the same reply, Information still exact.
    let (completion, _) = send(&mut device, Ioctl::Query.code(), &request(), size + 100);
    assert_eq!(completion.information, size);
    assert!(all_pristine(&mut device));
}

#[test]
fn query_after_enter_sees_vmx_in_use_and_still_changes_nothing() {
    let mut device = device(processors(2));
    enter(&mut device);
    let (completion, reply) = send(&mut device, Ioctl::Query.code(), &request(), 1 << 16);
    assert_eq!(completion.status, STATUS_SUCCESS);
    let reader = QueryReader::decode(&reply).unwrap();
    for record in reader.processors() {
        assert_eq!(diagnose(&mut record.replay()).verdict, Verdict::InUse);
    }
    assert_eq!(device.control_mut().entered(), 2);
}

#[test]
fn query_marks_a_processor_it_cannot_reach() {
    let mut machine = processors(3);
    machine.unreachable = Some(2);
    let mut device = device(machine);
    let (_, reply) = send(&mut device, Ioctl::Query.code(), &request(), 1 << 16);
    let reader = QueryReader::decode(&reply).unwrap();
    let available: Vec<bool> = reader.processors().map(|r| r.available).collect();
    assert_eq!(available, [true, true, false]);
}

#[test]
fn a_request_while_another_runs_is_turned_away_at_once() {
    let mut device = device(processors(2));
    let held = device.control.try_lock();
    assert!(held.is_some());
    let (completion, _) = device_control(
        &device,
        Ioctl::Enter.code(),
        &request(),
        64,
        &mut Lines::default(),
    );
    assert_eq!(completion, Completion::status(STATUS_DEVICE_BUSY));
    drop(held);
    assert!(untouched(&mut device));
}

#[test]
fn refusals_are_logged_with_their_status() {
    let device = device(processors(1));
    let mut lines = Lines::default();
    device_control(&device, 0x1234, &request(), 64, &mut lines);
    assert!(lines.contains("IOCTL 0x1234 (input 8, output 64) completed with status 0xc0000010"));
}

fn power(device: &FakeDevice, event: PowerEvent) -> Lines {
    let mut lines = Lines::default();
    device.power(event, &mut lines, &mut || panic!("nothing holds the lock"));
    lines
}

fn in_vmx(device: &mut FakeDevice) -> Vec<bool> {
    let (processors, _) = device.control_mut().services();
    processors.cpus.iter().map(|cpu| cpu.in_vmx).collect()
}

#[test]
fn sleep_leaves_vmx_operation_everywhere_and_resume_enters_it_again() {
    let mut device = device(processors(3));
    enter(&mut device);
    let lines = power(&device, PowerEvent::Suspend);
    assert!(
        all_pristine(&mut device),
        "out of VMX, CR4 as before, pages freed"
    );
    assert_eq!(
        device.control_mut().power_state(),
        PowerState::Suspended { reenter: true }
    );
    assert!(lines.contains("leaving VMX operation before the system sleeps"));
    assert!(
        statuses(&mut device)
            .iter()
            .all(|s| *s == ProcessorStatus::Off)
    );
    let lines = power(&device, PowerEvent::Resume);
    assert_eq!(in_vmx(&mut device), [true, true, true]);
    assert_eq!(device.control_mut().entered(), 3);
    assert_eq!(device.control_mut().power_state(), PowerState::Running);
    assert!(lines.contains("VMX entered on every processor (3 of 3)"));
    // And out again on request, as after any ENTER.
    assert_eq!(leave(&mut device).failure, None);
    assert!(all_pristine(&mut device));
}

#[test]
fn sleep_and_resume_without_enter_change_nothing() {
    let mut device = device(processors(2));
    power(&device, PowerEvent::Suspend);
    assert_eq!(
        device.control_mut().power_state(),
        PowerState::Suspended { reenter: false }
    );
    power(&device, PowerEvent::Resume);
    assert_eq!(device.control_mut().power_state(), PowerState::Running);
    assert!(untouched(&mut device));
    // A resume without a suspend (the driver loaded in between), and a
    // second suspend, change nothing either.
    power(&device, PowerEvent::Resume);
    assert!(untouched(&mut device));
    enter(&mut device);
    power(&device, PowerEvent::Suspend);
    power(&device, PowerEvent::Suspend);
    assert_eq!(
        device.control_mut().power_state(),
        PowerState::Suspended { reenter: true }
    );
    power(&device, PowerEvent::Resume);
    assert_eq!(device.control_mut().entered(), 2);
}

#[test]
fn enter_and_leave_wait_for_the_resume_while_query_and_status_answer() {
    let mut device = device(processors(2));
    enter(&mut device);
    power(&device, PowerEvent::Suspend);
    for ioctl in [Ioctl::Enter, Ioctl::Leave] {
        let mut lines = Lines::default();
        let (completion, _) = device_control(&device, ioctl.code(), &request(), 64, &mut lines);
        assert_eq!(completion, Completion::status(STATUS_DEVICE_BUSY));
        assert!(lines.contains("the system is changing its power state"));
    }
    assert!(
        all_pristine(&mut device),
        "nothing entered during the transition"
    );
    let (completion, _) = send(&mut device, Ioctl::Query.code(), &request(), 1 << 16);
    assert_eq!(completion.status, STATUS_SUCCESS);
    assert_eq!(statuses(&mut device), [ProcessorStatus::Off; 2]);
    power(&device, PowerEvent::Resume);
    assert_eq!(device.control_mut().entered(), 2);
}

#[test]
fn resume_that_cannot_enter_again_leaves_every_processor_off_and_says_so() {
    let mut device = device(processors(3));
    enter(&mut device);
    power(&device, PowerEvent::Suspend);
    // After the sleep, processor 2's VMXON fails.
    device.control_mut().services_mut().0.cpus[2].fail = Some(Step::VmxonFailInvalid);
    let lines = power(&device, PowerEvent::Resume);
    assert!(lines.contains("entering VMX operation again after the resume failed"));
    assert!(lines.contains("send ENTER to try again"));
    assert_eq!(device.control_mut().entered(), 0);
    assert_eq!(device.control_mut().power_state(), PowerState::Running);
    assert!(all_pristine(&mut device));
}

#[test]
fn a_processor_that_cannot_leave_before_sleep_is_never_sent_vmxoff_after_it() {
    let mut device = device(failing_processors(3, 1, Step::VmxoffFailValid));
    enter(&mut device);
    let lines = power(&device, PowerEvent::Suspend);
    assert!(lines.contains("processor 1 stays in VMX operation through the transition"));
    assert_eq!(in_vmx(&mut device), [false, true, false]);
    // The sleep powers processor 1 off: it comes back outside VMX
    // operation, with CR4 as Windows saved it (VMXE set). A VMXOFF there
    // would raise #UD: a bug check.
    device.control_mut().services_mut().0.cpus[1].in_vmx = false;
    let vmxoffs = device.control_mut().services().0.cpus[1].count(Op::Vmxoff);
    let lines = power(&device, PowerEvent::Resume);
    assert!(lines.contains("processor 1: its VMX state after the transition is unknown"));
    let (processors, allocator) = device.control_mut().services();
    assert_eq!(
        processors.cpus[1].count(Op::Vmxoff),
        vmxoffs,
        "no VMXOFF after resume"
    );
    assert_eq!(allocator.outstanding.len(), 1, "its region is not freed");
    // Entering again finds CR4.VMXE set on processor 1 and rolls back.
    assert!(lines.contains("entering VMX operation again after the resume failed"));
    assert_eq!(device.control_mut().entered(), 0);
    assert_eq!(
        leave(&mut device).failure,
        Some((0, WireError::from_error(&Error::NotEntered)))
    );
    let mut lines = Lines::default();
    device.unload(&mut lines);
    let (processors, _) = device.control_mut().services();
    assert_eq!(
        processors.cpus[1].count(Op::Vmxoff),
        vmxoffs,
        "nor at unload"
    );
}

#[test]
fn the_power_callback_waits_for_a_running_request() {
    let mut device = device(processors(2));
    enter(&mut device);
    let held = core::cell::RefCell::new(device.control.try_lock());
    let mut waits = 0;
    let mut lines = Lines::default();
    device.power(PowerEvent::Suspend, &mut lines, &mut || {
        waits += 1;
        // The request finishes while the callback waits.
        held.borrow_mut().take();
    });
    assert_eq!(waits, 1);
    assert!(held.borrow().is_none());
    drop(held);
    assert!(all_pristine(&mut device));
}
