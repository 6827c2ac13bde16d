//! nt-driver's IOCTL path with arbitrary requests: any code, any input
//! bytes, any output length, against a simulated machine (vmx-core's
//! `sim` through nt-driver's `fake`) with any one step failing on any
//! processor. Nothing may panic (in the kernel a panic is a bug check), a
//! refused request must change nothing, `Information` never exceeds the
//! output buffer, and every successful reply must decode with vmx-ioctl.
//! The request may arrive after ENTER, and while the system is about to
//! sleep or after it resumed (nt-driver's power callback decisions).
//! The same bytes also go through every vmx-ioctl decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nt_driver::fake::{device, device_control, processors};
use nt_driver::log::Log;
use nt_driver::ntstatus::{STATUS_BUFFER_OVERFLOW, STATUS_SUCCESS};
use nt_driver::power::PowerEvent;
use vmx_core::ProcessorStatus;
use vmx_core::sim::{SimAllocator, Step};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryReader, ReplyHeader, Request, WireError};

struct Quiet;

impl Log for Quiet {
    fn log(&mut self, _args: core::fmt::Arguments<'_>) {}
}

fn decoders(bytes: &[u8]) {
    let _ = Request::decode(bytes);
    let _ = ReplyHeader::decode(bytes);
    let _ = Outcome::decode_reply(bytes);
    if let Ok((_, statuses)) = StatusEntry::decode_reply(bytes) {
        statuses.for_each(drop);
    }
    if let Ok(reader) = QueryReader::decode(bytes) {
        for record in reader.processors() {
            record.observations().for_each(drop);
            let _ = vmx_core::diagnose(&mut record.replay());
        }
    }
    if let Some(error) = WireError::decode(bytes) {
        let _ = error.to_error();
        let _ = format!("{error}");
    }
}

fuzz_target!(|data: &[u8]| {
    decoders(data);
    let [selector, count, trouble, where_, out_lo, out_hi, rest @ ..] = data else {
        return;
    };
    // Mostly our codes (so the deeper paths are reached), sometimes a raw one.
    let (code, input) = match selector % 8 {
        n @ 0..=3 => (Ioctl::ALL[n as usize].code(), rest),
        4 => (
            Ioctl::ALL[usize::from(*count) % 4].code(),
            &Request::current().to_bytes()[..],
        ),
        _ => match rest {
            [a, b, c, d, input @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]), input),
            _ => return,
        },
    };
    let output = usize::from(u16::from_le_bytes([*out_lo, *out_hi])) % 8192;
    let count = usize::from(count % 6) + 1;
    let (mut machine, mut allocator) = (processors(count), SimAllocator::default());
    // Healthy, or one step (of entering or leaving) failing on one processor.
    let trouble = usize::from(*trouble) % (Step::ALL.len() + 1);
    if let Some(step) = trouble.checked_sub(1).map(|n| Step::ALL[n]) {
        step.inject(usize::from(*where_) % count, &mut machine, &mut allocator);
    }
    let mut device = device(machine, allocator);
    // Enter first on odd selectors, so LEAVE and STATUS see entered state.
    if selector & 0x80 != 0 {
        let enter = Request::current().to_bytes();
        device_control(
            &device,
            Ioctl::Enter.code(),
            &enter,
            Outcome::REPLY_SIZE,
            &mut Quiet,
        );
    }
    // Then, sometimes, the system is about to sleep (and sometimes it has
    // resumed): the request below arrives in that state.
    let resumed = selector & 0x60 == 0x60;
    if selector & 0x40 != 0 {
        device.power(PowerEvent::Suspend, &mut Quiet, &mut || {
            unreachable!("no one holds the lock")
        });
        if resumed {
            device.power(PowerEvent::Resume, &mut Quiet, &mut || {
                unreachable!("no one holds the lock")
            });
        }
    }
    let entered_before = device.control_mut().entered();
    // A processor the driver records as entered is in VMX operation (else
    // its VMXOFF would raise #UD: a bug check). The converse holds too,
    // except after a resume: a processor that could not leave before the
    // transition is forgotten then, its state being unknown (the simulated
    // sleep does not power it off).
    let recorded: Vec<bool> = device
        .control_mut()
        .statuses()
        .map(|status| status != ProcessorStatus::Off)
        .collect();
    let (processors, _) = device.control_mut().services();
    for (index, (cpu, recorded)) in processors.cpus.iter().zip(recorded).enumerate() {
        assert!(
            !recorded || cpu.in_vmx,
            "processor {index} recorded but not in VMX operation"
        );
        assert!(
            resumed || recorded == cpu.in_vmx,
            "processor {index}: record and state differ"
        );
    }
    let snapshot = {
        let (p, a) = device.control_mut().services();
        (p.runs, a.allocations, a.outstanding.clone())
    };

    // device_control asserts that Information stays within the output
    // buffer and is 0 with an error status; the simulated allocator panics
    // at a double or foreign free.
    let (completion, reply) = device_control(&device, code, input, output, &mut Quiet);
    let (processors, allocator) = device.control_mut().services();
    assert!(processors.cpus.iter().all(|cpu| cpu.violations.is_empty()));
    if completion.status != STATUS_SUCCESS {
        // Refused (or too small): nothing changed. Only a QUERY that
        // turned out too large has run (its reads change nothing).
        if completion.status != STATUS_BUFFER_OVERFLOW
            || Ioctl::from_code(code) != Some(Ioctl::Query)
        {
            assert_eq!(processors.runs, snapshot.0);
        }
        assert_eq!(allocator.allocations, snapshot.1);
        assert_eq!(allocator.outstanding, snapshot.2);
        assert_eq!(device.control_mut().entered(), entered_before);
        return;
    }
    let reply = &reply[..];
    let ioctl = Ioctl::from_code(code).expect("only our codes succeed");
    match ioctl {
        Ioctl::Query => {
            QueryReader::decode(reply).expect("a QUERY reply decodes");
            assert_eq!(
                device.control_mut().entered(),
                entered_before,
                "QUERY changes nothing"
            );
        }
        Ioctl::Enter | Ioctl::Leave => {
            let (_, outcome) = Outcome::decode_reply(reply).expect("an outcome decodes");
            assert_eq!(
                outcome.entered_after as usize,
                device.control_mut().entered()
            );
            if let Some((_, error)) = outcome.failure {
                assert!(error.to_error().is_some());
            }
        }
        Ioctl::Status => {
            let (_, statuses) = StatusEntry::decode_reply(reply).expect("a STATUS reply decodes");
            assert_eq!(statuses.len(), count);
        }
    }
});
