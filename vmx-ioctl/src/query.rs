//! The reply to QUERY: the header, then one record per processor, in
//! processor order. A record is 16 bytes followed by its observations, 32
//! bytes each, in the order the diagnosis asked for them.
//!
//! Record:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | processor index (the record's position) |
//! | 4 | 4 | flags: bit 0, the driver could not run on this processor (no observations) |
//! | 8 | 4 | number of observations |
//! | 12 | 4 | reserved, 0 |
//!
//! Observation (a [`vmx_core::diagnosis::Observation`]):
//!
//! | offset | size | CPUID (tag 1) | MSR value (2) | MSR faulted (3) | CR0 (4) | CR4 (5) |
//! |---|---|---|---|---|---|---|
//! | 0 | 4 | tag | tag | tag | tag | tag |
//! | 4 | 4 | leaf | MSR | MSR | 0 | 0 |
//! | 8 | 4 | subleaf | 0 | 0 | 0 | 0 |
//! | 12 | 4 | 0 | 0 | 0 | 0 | 0 |
//! | 16 | 16 | EAX, EBX, ECX, EDX | value (8), 0 (8) | 0 | value (8), 0 (8) | value (8), 0 (8) |
//!
//! The driver records what [`vmx_core::diagnose`] reads on each processor
//! (through [`vmx_core::diagnosis::Recorder`]); user mode runs the same
//! diagnosis over a [`Replay`] of the record and reaches the same verdict.

use core::mem::{offset_of, size_of};

use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observation, Observe};
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::layout::{ObservationLayout, RecordLayout};
use crate::reply::{DecodeError, ReplyHeader};
use crate::wire::to_u32;

/// The size of a record's fixed part.
pub const RECORD_SIZE: usize = size_of::<RecordLayout>();
/// The size of one observation.
pub const OBSERVATION_SIZE: usize = size_of::<ObservationLayout>();
/// Record flag: the driver could not run on the processor.
pub const FLAG_UNAVAILABLE: u32 = 1;

const TAG_CPUID: u32 = 1;
const TAG_MSR_VALUE: u32 = 2;
const TAG_MSR_FAULTED: u32 = 3;
const TAG_CR0: u32 = 4;
const TAG_CR4: u32 = 5;

fn observation_layout(observation: &Observation) -> ObservationLayout {
    let mut layout = ObservationLayout::new_zeroed();
    match *observation {
        Observation::Cpuid {
            leaf,
            subleaf,
            result,
        } => {
            layout.tag = U32::new(TAG_CPUID);
            layout.key = U32::new(leaf);
            layout.subleaf = U32::new(subleaf);
            layout.value = [result.eax, result.ebx, result.ecx, result.edx].map(U32::new);
        }
        Observation::Msr { msr, read } => {
            layout.key = U32::new(msr);
            match read {
                MsrRead::Value(value) => {
                    layout.tag = U32::new(TAG_MSR_VALUE);
                    layout.set_value_u64(value);
                }
                // A Recorder never reports Unavailable; if one did, the
                // honest record of it is "faulted": no value was read.
                MsrRead::Faulted | MsrRead::Unavailable => layout.tag = U32::new(TAG_MSR_FAULTED),
            }
        }
        Observation::Cr0(value) => {
            layout.tag = U32::new(TAG_CR0);
            layout.set_value_u64(value);
        }
        Observation::Cr4(value) => {
            layout.tag = U32::new(TAG_CR4);
            layout.set_value_u64(value);
        }
    }
    layout
}

fn decode_observation(bytes: &[u8]) -> Option<Observation> {
    let (o, _) = ObservationLayout::read_from_prefix(bytes).ok()?;
    if o.reserved != 0 {
        return None;
    }
    let key = o.key.get();
    // A 64-bit value leaves the last two words zero; a fault has no value.
    let value_only = o.value[2] == 0 && o.value[3] == 0;
    let no_value = value_only && o.value[0] == 0 && o.value[1] == 0;
    let no_key = key == 0 && o.subleaf == 0;
    let observation = match o.tag.get() {
        TAG_CPUID => {
            let [eax, ebx, ecx, edx] = o.value.map(U32::get);
            Observation::Cpuid {
                leaf: key,
                subleaf: o.subleaf.get(),
                result: CpuidResult { eax, ebx, ecx, edx },
            }
        }
        TAG_MSR_VALUE if o.subleaf == 0 && value_only => Observation::Msr {
            msr: key,
            read: MsrRead::Value(o.value_u64()),
        },
        TAG_MSR_FAULTED if o.subleaf == 0 && no_value => Observation::Msr {
            msr: key,
            read: MsrRead::Faulted,
        },
        TAG_CR0 if no_key && value_only => Observation::Cr0(o.value_u64()),
        TAG_CR4 if no_key && value_only => Observation::Cr4(o.value_u64()),
        _ => return None,
    };
    Some(observation)
}

/// The fixed part of the record at the start of `bytes`, if it is there.
fn record_at(bytes: &[u8]) -> Option<RecordLayout> {
    RecordLayout::read_from_prefix(bytes)
        .ok()
        .map(|(record, _)| record)
}

/// Streams a QUERY reply into an output buffer, counting the size the
/// whole reply needs even past the buffer's end: bytes are written only
/// where they fit, so a too-small buffer is detected after the capture
/// without a second pass and without allocation.
#[derive(Debug)]
pub struct QueryWriter<'a> {
    out: &'a mut [u8],
    size: usize,
    processors: u32,
    record: Option<usize>,
    count: u32,
}

impl<'a> QueryWriter<'a> {
    /// A writer into `out`.
    pub fn new(out: &'a mut [u8]) -> Self {
        Self {
            out,
            size: ReplyHeader::SIZE,
            processors: 0,
            record: None,
            count: 0,
        }
    }

    fn put(&mut self, offset: usize, write: impl FnOnce(&mut [u8]), length: usize) {
        if let Some(end) = offset.checked_add(length) {
            if let Some(out) = self.out.get_mut(offset..end) {
                write(out);
            }
        }
    }

    /// Starts the record of the next processor.
    pub fn begin_processor(&mut self) {
        let start = self.size;
        let record = RecordLayout {
            index: U32::new(self.processors),
            ..RecordLayout::new_zeroed()
        };
        self.put(
            start,
            |out| out.copy_from_slice(record.as_bytes()),
            RECORD_SIZE,
        );
        self.record = Some(start);
        self.count = 0;
        self.processors = self.processors.saturating_add(1);
        self.size = self.size.saturating_add(RECORD_SIZE);
    }

    /// Marks the current record: the driver could not run there.
    pub fn mark_unavailable(&mut self) {
        if let Some(start) = self.record {
            let flags = U32::new(FLAG_UNAVAILABLE);
            let at = start + offset_of!(RecordLayout, flags);
            self.put(at, |out| out.copy_from_slice(flags.as_bytes()), 4);
        }
    }

    /// Appends an observation to the current record (ignored before the
    /// first [`QueryWriter::begin_processor`]).
    pub fn push(&mut self, observation: Observation) {
        let Some(start) = self.record else {
            return;
        };
        let at = self.size;
        let layout = observation_layout(&observation);
        self.put(
            at,
            |out| out.copy_from_slice(layout.as_bytes()),
            OBSERVATION_SIZE,
        );
        self.count = self.count.saturating_add(1);
        let count = U32::new(self.count);
        let at = start + offset_of!(RecordLayout, observations);
        self.put(at, |out| out.copy_from_slice(count.as_bytes()), 4);
        self.size = self.size.saturating_add(OBSERVATION_SIZE);
    }

    /// Writes the header (when the buffer holds one) and returns the size
    /// of the whole reply; the reply is complete when that is at most the
    /// buffer's length.
    pub fn finish(self) -> usize {
        let header = ReplyHeader::new(to_u32(self.size), self.processors);
        header.encode(self.out);
        self.size
    }
}

/// One processor's record in a decoded QUERY reply.
#[derive(Debug, Clone, Copy)]
pub struct ProcessorRecord<'a> {
    /// The processor's index.
    pub index: u32,
    /// Whether the driver ran on it.
    pub available: bool,
    entries: &'a [u8],
}

impl<'a> ProcessorRecord<'a> {
    /// The observations, in the order they were made.
    pub fn observations(&self) -> impl ExactSizeIterator<Item = Observation> + 'a {
        self.entries
            .chunks_exact(OBSERVATION_SIZE)
            .filter_map(decode_observation)
            .collect_exact(self.entries.len() / OBSERVATION_SIZE)
    }

    /// An [`Observe`] that answers from this record.
    #[must_use]
    pub fn replay(&self) -> Replay<'a> {
        Replay {
            entries: self.entries,
        }
    }
}

/// `filter_map` over entries that were all checked to decode keeps the
/// count; this restores `ExactSizeIterator`.
trait CollectExact: Iterator + Sized {
    fn collect_exact(self, len: usize) -> Exact<Self> {
        Exact { inner: self, len }
    }
}

impl<I: Iterator> CollectExact for I {}

struct Exact<I> {
    inner: I,
    len: usize,
}

impl<I: Iterator> Iterator for Exact<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.len = self.len.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator> ExactSizeIterator for Exact<I> {}

/// Answers a diagnosis from a recorded processor: what the driver saw,
/// and nothing else (a question it did not record is "not available").
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a> {
    entries: &'a [u8],
}

impl Replay<'_> {
    fn find<T>(&self, mut answer: impl FnMut(Observation) -> Option<T>) -> Option<T> {
        self.entries
            .chunks_exact(OBSERVATION_SIZE)
            .filter_map(decode_observation)
            .find_map(&mut answer)
    }
}

impl Observe for Replay<'_> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        self.find(|o| match o {
            Observation::Cpuid {
                leaf: l,
                subleaf: s,
                result,
            } if l == leaf && s == subleaf => Some(result),
            _ => None,
        })
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        self.find(|o| match o {
            Observation::Msr { msr: m, read } if m == msr => Some(read),
            _ => None,
        })
        .unwrap_or(MsrRead::Unavailable)
    }

    fn cr0(&mut self) -> Option<u64> {
        self.find(|o| match o {
            Observation::Cr0(value) => Some(value),
            _ => None,
        })
    }

    fn cr4(&mut self) -> Option<u64> {
        self.find(|o| match o {
            Observation::Cr4(value) => Some(value),
            _ => None,
        })
    }
}

/// A decoded, fully checked QUERY reply.
#[derive(Debug, Clone, Copy)]
pub struct QueryReader<'a> {
    header: ReplyHeader,
    records: &'a [u8],
}

impl<'a> QueryReader<'a> {
    /// Checks a whole QUERY reply: header, sizes, every record and every
    /// observation.
    ///
    /// # Errors
    /// A header error or [`DecodeError::Malformed`] at the first bad field.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header = ReplyHeader::decode_whole(bytes)?;
        let mut at = ReplyHeader::SIZE;
        for index in 0..header.processors {
            let malformed = |field| DecodeError::Malformed { offset: at + field };
            let record = record_at(&bytes[at..]).ok_or(malformed(0))?;
            if record.index != index {
                return Err(malformed(offset_of!(RecordLayout, index)));
            }
            let flags = record.flags.get();
            let count = record.observations.get() as usize;
            if flags & !FLAG_UNAVAILABLE != 0 || (flags != 0 && count != 0) {
                return Err(malformed(offset_of!(RecordLayout, flags)));
            }
            if record.reserved != 0 {
                return Err(malformed(offset_of!(RecordLayout, reserved)));
            }
            let count_at = malformed(offset_of!(RecordLayout, observations));
            at += RECORD_SIZE;
            let length = count
                .checked_mul(OBSERVATION_SIZE)
                .filter(|length| *length <= bytes.len() - at)
                .ok_or(count_at)?;
            for entry in 0..count {
                let offset = at + entry * OBSERVATION_SIZE;
                if decode_observation(&bytes[offset..]).is_none() {
                    return Err(DecodeError::Malformed { offset });
                }
            }
            at += length;
        }
        if at != bytes.len() {
            return Err(DecodeError::Malformed { offset: at });
        }
        Ok(Self {
            header,
            records: &bytes[ReplyHeader::SIZE..],
        })
    }

    /// The header.
    #[must_use]
    pub const fn header(&self) -> ReplyHeader {
        self.header
    }

    /// The records, in processor order.
    pub fn processors(&self) -> impl Iterator<Item = ProcessorRecord<'a>> + 'a {
        let mut rest = self.records;
        core::iter::from_fn(move || {
            let record = record_at(rest)?;
            let count = record.observations.get() as usize;
            let end = RECORD_SIZE + count * OBSERVATION_SIZE;
            let entries = rest.get(RECORD_SIZE..end)?;
            let item = ProcessorRecord {
                index: record.index.get(),
                available: record.flags.get() & FLAG_UNAVAILABLE == 0,
                entries,
            };
            rest = &rest[end..];
            Some(item)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;
    use vmx_core::diagnosis::Recorder;
    use vmx_core::{Verdict, diagnose};

    /// A processor as Bochs' corei7_skylake_x reports it (leaf values and
    /// MSRs from the vmx-core simulation fixtures), answering any question.
    struct Skylake;

    impl Observe for Skylake {
        fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> Option<CpuidResult> {
            let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
            Some(match leaf {
                // "GenuineIntel"
                0 => r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
                1 => r(
                    0x0005_0654,
                    0x0001_0800,
                    0x7ffa_fbbf & !(1 << 31),
                    0xbfeb_fbff,
                ),
                0x8000_0000 => r(0x8000_0008, 0, 0, 0),
                0x8000_0008 => r(0x3027, 0, 0, 0),
                _ => r(0, 0, 0, 0),
            })
        }
        fn read_msr(&mut self, msr: u32) -> MsrRead {
            match msr {
                0x3a => MsrRead::Value(0x5),
                0x480 => MsrRead::Value(0x00d8_1000_0000_002b),
                0x48b => MsrRead::Faulted,
                // Bochs corei7_skylake_x's fixed bits.
                0x486 => MsrRead::Value(0x8000_0021),
                0x487 => MsrRead::Value(0xffff_ffff),
                0x488 => MsrRead::Value(0x2000),
                0x489 => MsrRead::Value(0x0037_27ff),
                m if (0x481..=0x491).contains(&m) => MsrRead::Value(0xffff_ffff_0000_0016),
                _ => MsrRead::Faulted,
            }
        }
        fn cr0(&mut self) -> Option<u64> {
            Some(0x8005_0033)
        }
        fn cr4(&mut self) -> Option<u64> {
            Some(0x0035_06f8)
        }
    }

    fn capture(processors: usize, unavailable: Option<usize>, out: &mut [u8]) -> usize {
        let mut writer = QueryWriter::new(out);
        for index in 0..processors {
            writer.begin_processor();
            if Some(index) == unavailable {
                writer.mark_unavailable();
                continue;
            }
            let mut recorder = Recorder::new(Skylake, |o| writer.push(o));
            diagnose(&mut recorder);
        }
        writer.finish()
    }

    #[test]
    fn a_replay_diagnoses_exactly_as_the_live_run() {
        let size = capture(2, None, &mut []);
        let mut bytes = vec![0u8; size];
        assert_eq!(capture(2, None, &mut bytes), size);
        let reader = QueryReader::decode(&bytes).unwrap();
        assert_eq!(reader.header(), ReplyHeader::new(size as u32, 2));
        let live = diagnose(&mut Skylake);
        assert_eq!(live.verdict, Verdict::Ready);
        let records: Vec<_> = reader.processors().collect();
        assert_eq!(records.len(), 2);
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.index as usize, index);
            assert!(record.available);
            assert_eq!(diagnose(&mut record.replay()), live);
        }
    }

    #[test]
    fn every_observation_kind_round_trips() {
        let observations = [
            Observation::Cpuid {
                leaf: 0x4000_0000,
                subleaf: 7,
                result: CpuidResult {
                    eax: 1,
                    ebx: 2,
                    ecx: 3,
                    edx: 4,
                },
            },
            Observation::Msr {
                msr: 0x480,
                read: MsrRead::Value(u64::MAX),
            },
            Observation::Msr {
                msr: 0x48b,
                read: MsrRead::Faulted,
            },
            Observation::Cr0(0x8000_0031),
            Observation::Cr4(0x2000),
        ];
        let mut bytes = vec![0u8; 16 + 16 + 5 * 32];
        let mut writer = QueryWriter::new(&mut bytes);
        writer.begin_processor();
        for o in observations {
            writer.push(o);
        }
        assert_eq!(writer.finish(), bytes.len());
        let reader = QueryReader::decode(&bytes).unwrap();
        let record = reader.processors().next().unwrap();
        assert_eq!(record.observations().len(), 5);
        assert_eq!(record.observations().collect::<Vec<_>>(), observations);
        let mut replay = record.replay();
        assert_eq!(replay.read_msr(0x48b), MsrRead::Faulted);
        assert_eq!(replay.read_msr(0x3a), MsrRead::Unavailable);
        assert_eq!(replay.cpuid(0x4000_0000, 6), None);
        assert_eq!(replay.cr4(), Some(0x2000));
        // The exact bytes of the CPUID entry.
        assert_eq!(
            &bytes[32..64],
            &[
                1, 0, 0, 0, 0, 0, 0, 0x40, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0,
                0, 4, 0, 0, 0
            ]
        );
    }

    #[test]
    fn a_short_buffer_still_learns_the_size_and_gets_the_header() {
        let size = capture(3, None, &mut []);
        for length in [16, 17, 100, size - 1] {
            let mut bytes = vec![0u8; length];
            assert_eq!(capture(3, None, &mut bytes), size);
            let header = ReplyHeader::decode(&bytes).unwrap();
            assert_eq!(header.size as usize, size);
            assert_eq!(header.processors, 3);
        }
        // Shorter than a header: nothing is written.
        let mut tiny = [0xabu8; 15];
        assert_eq!(capture(3, None, &mut tiny), size);
        assert_eq!(tiny, [0xab; 15]);
    }

    #[test]
    fn an_unreachable_processor_has_an_empty_flagged_record() {
        let size = capture(3, Some(1), &mut []);
        let mut bytes = vec![0u8; size];
        capture(3, Some(1), &mut bytes);
        let reader = QueryReader::decode(&bytes).unwrap();
        let available: Vec<_> = reader.processors().map(|r| r.available).collect();
        assert_eq!(available, [true, false, true]);
        let record = reader.processors().nth(1).unwrap();
        assert_eq!(record.observations().len(), 0);
        assert_eq!(
            diagnose(&mut record.replay()).verdict,
            Verdict::Undetermined
        );
    }

    #[test]
    fn malformed_replies_are_refused() {
        let size = capture(2, None, &mut []);
        let mut good = vec![0u8; size];
        capture(2, None, &mut good);
        let first_record = 16;
        let first_entry = 32;
        let cases: Vec<(usize, u8)> = vec![
            (first_record, 1),        // wrong index
            (first_record + 4, 2),    // unknown flag
            (first_record + 4, 1),    // unavailable with observations
            (first_record + 8, 0xff), // count beyond the end
            (first_record + 12, 1),   // reserved
            (first_entry, 9),         // unknown tag
            (first_entry + 12, 1),    // reserved in an entry
        ];
        for (offset, value) in cases {
            let mut bad = good.clone();
            bad[offset] = value;
            assert!(
                matches!(
                    QueryReader::decode(&bad),
                    Err(DecodeError::Malformed { .. })
                ),
                "offset {offset}"
            );
        }
        // Trailing bytes that the header counts but no record owns.
        let mut long = good.clone();
        long.extend_from_slice(&[0; 32]);
        long[4..8].copy_from_slice(&((size + 32) as u32).to_le_bytes());
        assert!(QueryReader::decode(&long).is_err());
        // A truncated reply.
        assert!(QueryReader::decode(&good[..size - 1]).is_err());
    }

    #[test]
    fn msr_and_cr_entries_with_stray_bytes_are_refused() {
        let mut entry = [0u8; 32];
        entry.copy_from_slice(observation_layout(&Observation::Cr0(1)).as_bytes());
        assert!(decode_observation(&entry).is_some());
        for offset in [4, 8, 24] {
            let mut bad = entry;
            bad[offset] = 1;
            assert!(decode_observation(&bad).is_none(), "offset {offset}");
        }
        let faulted = Observation::Msr {
            msr: 0x3a,
            read: MsrRead::Faulted,
        };
        entry.copy_from_slice(observation_layout(&faulted).as_bytes());
        let mut faulted_with_value = entry;
        faulted_with_value[16] = 1;
        assert!(decode_observation(&faulted_with_value).is_none());
    }
}
