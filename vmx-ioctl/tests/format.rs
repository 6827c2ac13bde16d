//! The wire format, pinned: every layout encoded for representative values
//! and hashed (FNV-1a, 64 bits). The hash was taken from the byte encoding
//! that predates the zerocopy layout types; any change of a byte in any
//! layout changes it. A deliberate change of the format bumps
//! PROTOCOL_VERSION and this value together.

use vmx_core::diagnosis::{MsrRead, Observation};
use vmx_core::{CpuidResult, Error, ProcessorError, ProcessorStatus};
use vmx_ioctl::status::StatusEntry;
use vmx_ioctl::{Outcome, QueryReader, QueryWriter, ReplyHeader, Request, WireError};

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn every_layout() -> Vec<u8> {
    let mut all = Vec::new();
    all.extend_from_slice(&Request::current().to_bytes());
    let mut header = [0u8; ReplyHeader::SIZE];
    ReplyHeader::new(0x1234, 7).encode(&mut header);
    all.extend_from_slice(&header);
    let failure = Outcome::failed(
        &ProcessorError {
            processor: 3,
            error: Error::InUse { cr4: 0x0035_26f8 },
        },
        1,
        2,
    );
    let success = Outcome {
        changed: 4,
        entered_after: 4,
        failure: None,
    };
    for outcome in [failure, success] {
        let mut reply = [0u8; Outcome::REPLY_SIZE];
        outcome.encode_reply(4, &mut reply);
        all.extend_from_slice(&reply);
    }
    let statuses = [
        ProcessorStatus::Off,
        ProcessorStatus::On {
            region: 0x0001_2345_6000,
            revision_id: 0x2b,
            original_cr0: 0x8005_0033,
            original_cr4: 0x0035_06f8,
        },
    ];
    let mut status = vec![0u8; StatusEntry::reply_size(2).unwrap()];
    StatusEntry::encode_reply(statuses.into_iter(), &mut status).unwrap();
    all.extend_from_slice(&status);
    let observations = [
        Observation::Cpuid {
            leaf: 1,
            subleaf: 0,
            result: CpuidResult {
                eax: 0x0005_0654,
                ebx: 0x0001_0800,
                ecx: 0x7ffa_fbbf,
                edx: 0xbfeb_fbff,
            },
        },
        Observation::Msr {
            msr: 0x3a,
            read: MsrRead::Value(0x5),
        },
        Observation::Msr {
            msr: 0x48b,
            read: MsrRead::Faulted,
        },
        Observation::Cr0(0x8005_0033),
        Observation::Cr4(0x0035_06f8),
    ];
    let mut query = vec![0u8; 512];
    let mut writer = QueryWriter::new(&mut query);
    writer.begin_processor();
    observations.iter().for_each(|o| writer.push(*o));
    writer.begin_processor();
    writer.mark_unavailable();
    let size = writer.finish();
    query.truncate(size);
    assert!(QueryReader::decode(&query).is_ok());
    all.extend_from_slice(&query);
    for error in [
        Error::DisabledByFirmware { msr: 0x1 },
        Error::TooManyProcessors {
            count: 9,
            capacity: 8,
        },
    ] {
        let mut bytes = [0u8; WireError::SIZE];
        WireError::from_error(&error).encode(&mut bytes);
        all.extend_from_slice(&bytes);
    }
    all
}

#[test]
fn every_layout_encodes_to_the_pinned_bytes() {
    let all = every_layout();
    assert_eq!(
        all.len(),
        8 + 16 + 2 * 64 + 80 + (16 + 16 + 5 * 32 + 16) + 2 * 32
    );
    assert_eq!(fnv1a(&all), 0x024c_2277_4067_6d42);
}
