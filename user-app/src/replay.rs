//! Replaying a dump: an [`Observe`] that answers from one processor's
//! captured values, so that [`vmx_core::diagnose`] decides exactly as it did
//! on the machine the dump came from.

use vmx_core::CpuidResult;
use vmx_core::diagnosis::{MsrRead, Observe};

use crate::dump::CpuDump;

/// Answers [`Observe`] from one processor of a dump: a leaf not captured is
/// `None`, an MSR listed as `null` faulted, an MSR not listed was not read.
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a>(pub &'a CpuDump);

impl Observe for Replay<'_> {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        self.0.cpuid.get(&(leaf, subleaf)).copied()
    }

    fn read_msr(&mut self, msr: u32) -> MsrRead {
        match self.0.msrs.get(&msr) {
            Some(Some(value)) => MsrRead::Value(*value),
            Some(None) => MsrRead::Faulted,
            None => MsrRead::Unavailable,
        }
    }

    fn cr0(&mut self) -> Option<u64> {
        self.0.cr0
    }

    fn cr4(&mut self) -> Option<u64> {
        self.0.cr4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmx_core::diagnosis::Recorder;
    use vmx_core::{Verdict, diagnose};

    fn skylake_x() -> CpuDump {
        let mut cpu = CpuDump::new(0);
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        cpu.cpuid
            .insert((0, 0), r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        cpu.cpuid
            .insert((1, 0), r(0x50654, 0, 0x77fa_f3bf, 0xbfeb_fbff));
        cpu.msrs.insert(0x3a, Some(0x5));
        cpu.msrs.insert(0x480, Some(0x00d8_1000_0000_002b));
        // The fixed-bit MSRs exist wherever VMX is reported: a live dump
        // always has them, and the decision needs them.
        for (msr, value) in [
            (0x486, 0x8000_0021),
            (0x487, 0xffff_ffff),
            (0x488, 0x2000),
            (0x489, 0x0037_27ff),
        ] {
            cpu.msrs.insert(msr, Some(value));
        }
        cpu
    }

    #[test]
    fn answers_as_the_dump_says() {
        let mut cpu = skylake_x();
        cpu.msrs.insert(0x48c, None);
        let mut replay = Replay(&cpu);
        assert_eq!(replay.cpuid(1, 0).map(|r| r.eax), Some(0x50654));
        assert_eq!(replay.cpuid(0x8000_0000, 0), None);
        assert_eq!(replay.read_msr(0x3a), MsrRead::Value(5));
        assert_eq!(replay.read_msr(0x48c), MsrRead::Faulted);
        assert_eq!(replay.read_msr(0x481), MsrRead::Unavailable);
        assert_eq!((replay.cr0(), replay.cr4()), (None, None));
    }

    #[test]
    fn a_recorded_replay_is_the_same_dump_and_the_same_diagnosis() {
        let cpu = skylake_x();
        let mut again = CpuDump::new(0);
        let report = diagnose(&mut Recorder::new(Replay(&cpu), |o| again.record(o)));
        assert_eq!(
            report.verdict,
            Verdict::Ready,
            "CR4 unknown counts as clear"
        );
        assert_eq!(diagnose(&mut Replay(&again)), report);
        assert_eq!(again.msrs, cpu.msrs);
    }
}
