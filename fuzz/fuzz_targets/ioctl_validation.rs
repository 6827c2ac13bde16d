//! nt-driver's IOCTL path with arbitrary requests: any code, any input
//! bytes, any output length, against a simulated machine (nt-driver's
//! `fake`). Nothing may panic (in the kernel a panic is a bug check), a
//! refused request must change nothing, `Information` never exceeds the
//! output buffer, and every successful reply must decode with vmx-ioctl.
//! The same bytes also go through every vmx-ioctl decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nt_driver::dispatch::{IRP_MJ_DEVICE_CONTROL, system_buffer_length};
use nt_driver::fake::{FakeAllocator, FakeProcessors, Trouble};
use nt_driver::log::Log;
use nt_driver::ntstatus::{STATUS_BUFFER_OVERFLOW, STATUS_SUCCESS, nt_error};
use nt_driver::{Control, Device, IrpParams};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Ioctl, Outcome, QueryReader, ReplyHeader, Request, WireError};

struct Quiet;

impl Log for Quiet {
    fn log(&mut self, _args: core::fmt::Arguments<'_>) {}
}

const TROUBLES: [Trouble; 6] = [
    Trouble::None,
    Trouble::NoVmx,
    Trouble::DisabledByFirmware,
    Trouble::InUse,
    Trouble::VmxonFails,
    Trouble::VmxoffFails,
];

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
    let trouble = TROUBLES[usize::from(*trouble) % TROUBLES.len()];
    let processors = FakeProcessors::with_trouble(count, usize::from(*where_) % count, trouble);
    let mut device = Device::new(Control::new(processors, FakeAllocator::default()).unwrap());
    // Enter first on odd selectors, so LEAVE and STATUS see entered state.
    let entered_before = if selector & 0x80 != 0 {
        let mut system = vec![0u8; Outcome::REPLY_SIZE];
        system[..8].copy_from_slice(&Request::current().to_bytes());
        device.dispatch(
            IrpParams {
                major: IRP_MJ_DEVICE_CONTROL,
                code: Ioctl::Enter.code(),
                input_length: 8,
                output_length: Outcome::REPLY_SIZE as u32,
                buffer: Some(&mut system),
            },
            &mut Quiet,
        );
        device.control_mut().entered()
    } else {
        0
    };
    let snapshot = {
        let (p, a) = device.control_mut().services();
        (p.runs, a.allocated, a.live.clone())
    };

    let input_length = u32::try_from(input.len()).unwrap_or(u32::MAX);
    let length = system_buffer_length(IRP_MJ_DEVICE_CONTROL, code, input_length, output as u32);
    let mut system = vec![0u8; length.unwrap_or(0)];
    let n = input.len().min(system.len());
    system[..n].copy_from_slice(&input[..n]);
    let completion = device.dispatch(
        IrpParams {
            major: IRP_MJ_DEVICE_CONTROL,
            code,
            input_length,
            output_length: output as u32,
            buffer: length.map(|_| system.as_mut_slice()),
        },
        &mut Quiet,
    );
    assert!(completion.information <= output);
    if nt_error(completion.status) {
        assert_eq!(completion.information, 0);
    }
    let (processors, allocator) = device.control_mut().services();
    assert_eq!(allocator.bad_frees, 0);
    assert!(processors.cpus.iter().all(|cpu| cpu.violations == 0));
    if completion.status != STATUS_SUCCESS {
        // Refused (or too small): nothing changed. Only a QUERY that
        // turned out too large has run (its reads change nothing).
        if completion.status != STATUS_BUFFER_OVERFLOW
            || Ioctl::from_code(code) != Some(Ioctl::Query)
        {
            assert_eq!(processors.runs, snapshot.0);
        }
        assert_eq!(allocator.allocated, snapshot.1);
        assert_eq!(allocator.live, snapshot.2);
        assert_eq!(device.control_mut().entered(), entered_before);
        return;
    }
    let reply = &system[..completion.information];
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
