//! Tests of entering and leaving VMX operation: the order of the
//! privileged steps (mockall), and rollback under a failure injected at
//! every step on every processor (a simulated machine that follows the
//! SDM's rules).

mod diagnosis;

use mockall::Sequence;
use mockall::predicate::eq;
use std::format;
use std::vec::Vec;

use crate::cpu::{CpuidResult, Fault, MockCpu};
use crate::error::{Error, Instruction};
use crate::instruction::{VmInstructionError, VmxOutcome};
use crate::operation::{Processor, ProcessorStatus};
use crate::processors::{enter_all, leave_all};
use crate::sim::{self, GRUB_CR0, GRUB_CR4, Op, SimAllocator, SimCpu, SimMachine, SimPage, Step};

fn page(physical_address: u64) -> SimPage {
    SimPage::new(physical_address)
}

fn slots(n: usize) -> Vec<Processor<SimPage>> {
    (0..n).map(|_| Processor::new()).collect()
}

/// Expects the CPUID reads of an Intel processor with VMX, in order, with
/// `extra_ecx` added to leaf 1's ECX.
fn expect_cpuid(cpu: &mut MockCpu, seq: &mut Sequence, extra_ecx: u32) {
    let answers = [
        (
            0,
            CpuidResult {
                eax: 0x16,
                ebx: 0x756e_6547,
                ecx: 0x6c65_746e,
                edx: 0x4965_6e69,
            },
        ),
        (
            1,
            CpuidResult {
                eax: 0x50654,
                ebx: 0,
                ecx: 0x77fa_f3bf | extra_ecx,
                edx: 0xbfeb_fbff,
            },
        ),
        (
            0x8000_0000,
            CpuidResult {
                eax: 0x8000_0008,
                ..Default::default()
            },
        ),
        (
            0x8000_0008,
            CpuidResult {
                eax: 0x3027,
                ..Default::default()
            },
        ),
    ];
    for (leaf, answer) in answers {
        cpu.expect_cpuid()
            .with(eq(leaf), eq(0))
            .times(1)
            .in_sequence(seq)
            .return_const(answer);
    }
}

/// Expects the CPUID and MSR reads of entering on Bochs' corei7_skylake_x
/// with IA32_FEATURE_CONTROL locked and enabled, in order.
fn expect_skylake_msrs(cpu: &mut MockCpu, seq: &mut Sequence) {
    expect_cpuid(cpu, seq, 0);
    for (msr, value) in [
        (0x3a, 0x5),
        (0x480, sim::BASIC),
        (0x486, 0x8000_0021),
        (0x487, 0xffff_ffff),
        (0x488, 0x2000),
        (0x489, 0x0037_27ff),
    ] {
        expect_read(cpu, seq, msr, value);
    }
}

fn expect_read(cpu: &mut MockCpu, seq: &mut Sequence, msr: u32, value: u64) {
    cpu.expect_read_msr()
        .with(eq(msr))
        .times(1)
        .in_sequence(seq)
        .returning(move |_| Ok(value));
}

#[test]
fn entering_checks_everything_before_changing_anything_then_vmxon() {
    let mut cpu = MockCpu::new();
    let mut seq = Sequence::new();
    expect_skylake_msrs(&mut cpu, &mut seq);
    cpu.expect_read_cr0()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(GRUB_CR0);
    cpu.expect_read_cr4()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(GRUB_CR4);
    cpu.expect_write_cr4()
        .with(eq(0x2020))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_write_cr0()
        .with(eq(0xe000_0031))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_vmxon()
        .with(eq(0x20_0000))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(VmxOutcome::Succeed));
    cpu.expect_write_msr().never();

    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x20_0000)).unwrap();
    assert_eq!(
        processor.status(),
        ProcessorStatus::On {
            region: 0x20_0000,
            revision_id: 0x2b,
            original_cr0: GRUB_CR0,
            original_cr4: GRUB_CR4
        }
    );

    // Leaving: VMXOFF, then CR4 and CR0 back.
    cpu.checkpoint();
    let mut seq = Sequence::new();
    cpu.expect_vmxoff()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|| Ok(VmxOutcome::Succeed));
    cpu.expect_read_cr4()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0x2020u64);
    cpu.expect_write_cr4()
        .with(eq(GRUB_CR4))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_read_cr0()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0xe000_0031u64);
    cpu.expect_write_cr0()
        .with(eq(GRUB_CR0))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    let region = processor.leave(&mut cpu).unwrap();
    assert_eq!(region.physical_address, 0x20_0000);
    assert_eq!(
        &region.bytes[..8],
        &[0x2b, 0, 0, 0, 0, 0, 0, 0],
        "revision id, rest zeroed"
    );
    assert!(region.bytes[4..].iter().all(|&b| b == 0));
    assert_eq!(processor.status(), ProcessorStatus::Off);
}

/// Entering an unlocked IA32_FEATURE_CONTROL on a processor whose CPUID
/// reports SMX (`smx_ecx`) or not, with CR4.SMXE set either way: the lock
/// value sets bit 1 exactly when CPUID says SMX is supported.
fn lock_with(smx_ecx: u32, expected: u64) {
    let mut cpu = MockCpu::new();
    let mut seq = Sequence::new();
    expect_cpuid(&mut cpu, &mut seq, smx_ecx);
    // Unlocked, with SGX and LMCE bits that must survive.
    expect_read(&mut cpu, &mut seq, 0x3a, 0x14_0000);
    expect_read(&mut cpu, &mut seq, 0x480, sim::BASIC);
    for (msr, value) in [
        (0x486, 0x8000_0021),
        (0x487, 0xffff_ffff),
        (0x488, 0x2000),
        (0x489, 0x0037_67ff),
    ] {
        expect_read(&mut cpu, &mut seq, msr, value);
    }
    cpu.expect_read_cr0()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0x8000_0031u64);
    cpu.expect_read_cr4()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(GRUB_CR4 | (1 << 14));
    // Never the lock alone.
    cpu.expect_write_msr()
        .with(eq(0x3a), eq(expected))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    expect_read(&mut cpu, &mut seq, 0x3a, expected);
    cpu.expect_write_cr4()
        .with(eq(0x6020))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_write_cr0().never();
    cpu.expect_vmxon()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(VmxOutcome::Succeed));
    Processor::new().enter(&mut cpu, page(0x1000)).unwrap();
}

#[test]
fn unlocked_feature_control_is_locked_with_vmx_enabled_after_the_checks() {
    // CPUID.1:ECX.SMX (bit 6) set: VMX inside SMX is enabled too, so a
    // later measured launch keeps VMX.
    lock_with(1 << 6, 0x14_0007);
}

#[test]
fn the_smx_bit_of_the_lock_follows_cpuid_not_cr4_smxe() {
    // CR4.SMXE set but CPUID without SMX: setting bit 1 would be a #GP.
    lock_with(0, 0x14_0005);
}

#[test]
fn a_lock_that_does_not_read_back_enabled_is_an_error_and_changes_no_register() {
    let mut cpu = SimCpu::skylake().failing(Step::LockReadback);
    let failure = Processor::new().enter(&mut cpu, page(0x1000)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::FeatureControlNotLocked {
            written: 0x5,
            read: 0x0
        }
    );
    assert_eq!((cpu.cr0, cpu.cr4), (GRUB_CR0, GRUB_CR4));
    assert_eq!(cpu.count(Op::WriteCr4) + cpu.count(Op::WriteCr0), 0);
}

#[test]
fn entering_twice_is_refused_without_touching_the_processor() {
    let mut cpu = SimCpu::skylake();
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    let ops = cpu.ops.len();
    let failure = processor.enter(&mut cpu, page(0x2000)).unwrap_err();
    assert_eq!(failure.error, Error::AlreadyEntered);
    assert_eq!(failure.region.physical_address, 0x2000);
    assert_eq!(cpu.ops.len(), ops, "no instruction executed");
    assert!(cpu.in_vmx);
}

#[test]
fn leaving_when_not_entered_is_refused_without_vmxoff() {
    let mut cpu = SimCpu::skylake();
    let failure = Processor::<SimPage>::new().leave(&mut cpu).unwrap_err();
    assert_eq!(failure.error, Error::NotEntered);
    assert!(failure.region.is_none());
    assert!(cpu.ops.is_empty());
}

#[test]
fn cr4_vmxe_already_set_is_in_use_and_nothing_changes() {
    let mut cpu = SimCpu::skylake().failing(Step::InUse);
    let before = (cpu.cr0, cpu.cr4);
    let failure = Processor::new().enter(&mut cpu, page(0x1000)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::InUse {
            cr4: GRUB_CR4 | (1 << 13)
        }
    );
    assert_eq!((cpu.cr0, cpu.cr4), before);
    assert_eq!(cpu.count(Op::Vmxon), 0);
}

#[test]
fn region_checks_happen_before_any_change() {
    let mut cpu = SimCpu::skylake();
    let failure = Processor::new().enter(&mut cpu, page(0x1008)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::RegionMisaligned {
            physical_address: 0x1008
        }
    );
    let failure = Processor::new().enter(&mut cpu, page(1 << 39)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::RegionBeyondAddressWidth {
            physical_address: 1 << 39,
            width: 39
        }
    );
    assert_eq!(
        cpu.count(Op::WriteCr4) + cpu.count(Op::WriteCr0) + cpu.count(Op::Vmxon),
        0
    );
}

#[test]
fn leave_keeps_bits_the_system_changed_while_in_vmx_operation() {
    let mut cpu = SimCpu::skylake();
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    // The OS toggles CR4.PGE (bit 7) to flush the TLB while VMX is on.
    cpu.cr4 |= 1 << 7;
    processor.leave(&mut cpu).unwrap();
    assert_eq!(cpu.cr4, GRUB_CR4 | (1 << 7));
    assert_eq!(cpu.cr0, GRUB_CR0);
    assert!(cpu.violations.is_empty());
}

#[test]
fn vmxoff_that_fails_valid_keeps_the_processor_entered() {
    let mut cpu = MockCpu::new();
    let mut sim = SimCpu::skylake();
    let mut processor = Processor::new();
    processor.enter(&mut sim, page(0x1000)).unwrap();
    cpu.expect_vmxoff().times(1).returning(|| {
        Ok(VmxOutcome::FailValid(
            VmInstructionError::VmxoffUnderDualMonitor,
        ))
    });
    cpu.expect_write_cr4().never();
    let failure = processor.leave(&mut cpu).unwrap_err();
    assert_eq!(
        failure.error,
        Error::VmFailValid {
            instruction: Instruction::Vmxoff,
            error: VmInstructionError::VmxoffUnderDualMonitor
        }
    );
    assert!(failure.region.is_none());
    assert!(processor.is_entered());
}

#[test]
fn vmxoff_that_raises_ud_restores_registers_and_releases_the_page() {
    let mut cpu = SimCpu::skylake();
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    cpu.in_vmx = false; // someone else left VMX operation
    let failure = processor.leave(&mut cpu).unwrap_err();
    assert_eq!(
        failure.error,
        Error::Faulted {
            instruction: Instruction::Vmxoff,
            fault: Fault::InvalidOpcode
        }
    );
    assert_eq!(failure.region.map(|p| p.physical_address), Some(0x1000));
    assert_eq!((cpu.cr0, cpu.cr4), (GRUB_CR0, GRUB_CR4));
    assert!(!processor.is_entered());
}

#[test]
fn vmxoff_that_raises_gp_keeps_the_processor_entered_and_its_page() {
    // Only #UD means "not in VMX operation". A #GP (a VMXOFF at CPL > 0 in
    // a broken platform, say) leaves the processor possibly still in VMX
    // operation: CR4.VMXE must stay set and the region in use.
    let mut cpu = MockCpu::new();
    let mut seq = Sequence::new();
    expect_skylake_msrs(&mut cpu, &mut seq);
    cpu.expect_read_cr0().return_const(0x8000_0031u64);
    cpu.expect_read_cr4().return_const(GRUB_CR4);
    cpu.expect_write_cr4().times(1).return_const(());
    cpu.expect_vmxon().returning(|_| Ok(VmxOutcome::Succeed));
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    cpu.checkpoint();
    cpu.expect_vmxoff()
        .times(1)
        .returning(|| Err(Fault::GeneralProtection));
    cpu.expect_write_cr4().never();
    cpu.expect_write_cr0().never();
    let failure = processor.leave(&mut cpu).unwrap_err();
    assert_eq!(
        failure.error,
        Error::Faulted {
            instruction: Instruction::Vmxoff,
            fault: Fault::GeneralProtection
        }
    );
    assert!(failure.region.is_none(), "the region may still be in use");
    assert!(processor.is_entered());
    assert!(matches!(
        processor.status(),
        ProcessorStatus::On { region: 0x1000, .. }
    ));
}

#[test]
fn rollback_after_a_failed_vmxon_restores_only_the_bits_entering_changed() {
    // Between the write of CR4 and VMXON's failure the system toggled
    // CR4.PGE (bit 7), as an OS does to flush the TLB. Rollback must clear
    // VMXE and keep PGE as the system left it, not write the whole old CR4.
    let mut cpu = MockCpu::new();
    let mut seq = Sequence::new();
    expect_skylake_msrs(&mut cpu, &mut seq);
    cpu.expect_read_cr0()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0x8000_0031u64);
    cpu.expect_read_cr4()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0x20u64);
    cpu.expect_write_cr4()
        .with(eq(0x2020))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_vmxon()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(VmxOutcome::FailInvalid));
    cpu.expect_read_cr4()
        .times(1)
        .in_sequence(&mut seq)
        .return_const(0x20a0u64);
    cpu.expect_write_cr4()
        .with(eq(0xa0))
        .times(1)
        .in_sequence(&mut seq)
        .return_const(());
    cpu.expect_write_cr0().never();
    let failure = Processor::new().enter(&mut cpu, page(0x1000)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::VmFailInvalid {
            instruction: Instruction::Vmxon
        }
    );
}

#[test]
fn the_simulated_vmxon_in_vmx_root_is_vmfail_invalid() {
    // No current VMCS after VMXON: VMfail(15) is VMfailInvalid.
    let mut cpu = SimCpu::skylake();
    Processor::new().enter(&mut cpu, page(0x1000)).unwrap();
    assert_eq!(
        crate::Cpu::vmxon(&mut cpu, 0x2000),
        Ok(VmxOutcome::FailInvalid)
    );
}

#[test]
fn a_cr4_bit_fixed1_forbids_is_never_cleared_by_entering() {
    // A nested hypervisor narrows FIXED1 to exclude PKE and SMAP while its
    // guest runs with both: before, entering cleared them silently.
    let mut cpu = SimCpu::booted(GRUB_CR0, GRUB_CR4 | (1 << 21) | (1 << 22));
    cpu.cr4_fixed.1 &= !((1 << 21) | (1 << 22));
    let failure = Processor::new().enter(&mut cpu, page(0x1000)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::FixedBitForbidden {
            register: crate::fixed_bits::ControlRegister::Cr4,
            bit: 21,
            value: GRUB_CR4 | (1 << 21) | (1 << 22),
            fixed1: cpu.cr4_fixed.1,
        }
    );
    assert!(format!("{}", failure.error).contains("CR4.SMAP (bit 21)"));
    assert!(cpu.is_pristine());
    assert_eq!(cpu.count(Op::WriteCr4) + cpu.count(Op::WriteMsr(0x3a)), 0);
}

/// A small deterministic generator (xorshift64*), so that a failing case
/// can be reproduced from its number.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, in_eight: u64) -> bool {
        self.next() % 8 < in_eight
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// A simulated processor with random values where they matter: vendor,
/// VMX and SMX bits, IA32_FEATURE_CONTROL, IA32_VMX_BASIC, the fixed bits,
/// CR0 and CR4, and MSRs that fault.
fn random_cpu(random: &mut Random) -> SimCpu {
    let cr4_bits = [
        0x20u64,
        0x6f0,
        1 << 12,
        1 << 14,
        1 << 18,
        1 << 20,
        1 << 21,
        1 << 22,
    ];
    let mut cr4 = GRUB_CR4;
    for bit in cr4_bits {
        if random.chance(1) {
            cr4 |= bit;
        }
    }
    if random.chance(1) {
        cr4 |= 1 << 13; // VMXE: in use
    }
    let cr0 = random.pick(&[
        GRUB_CR0,
        0x8005_0033,
        0xe005_003b,
        0x11,
        0x8000_0011 | (1 << 29),
    ]);
    let mut cpu = SimCpu::booted(cr0, cr4);
    cpu.vendor = random.pick(&[
        *b"GenuineIntel",
        *b"GenuineIntel",
        *b"CentaurHauls",
        *b"  Shanghai  ",
        *b"AuthenticAMD",
        *b"HygonGenuine",
    ]);
    cpu.vmx = random.chance(7);
    cpu.smx = random.chance(4);
    // A (broken) hypervisor may report a physical-address width too small
    // for any 4 KiB-aligned region but address 0.
    cpu.physical_address_width = random.pick(&[39, 39, 39, 39, 46, 13, 12, 8]);
    cpu.feature_control = random.pick(&[0x5, 0x5, 0x7, 0x0, 0x4, 0x1, 0x3, 0x14_0000, 0x10_0005]);
    cpu.basic = random.pick(&[
        sim::BASIC,
        sim::BASIC,
        sim::BASIC,
        sim::BASIC,
        sim::BASIC & !(0x1fff << 32),
        (sim::BASIC & !(0x1fff << 32)) | (0x1001 << 32),
        (sim::BASIC & !(0x1fff << 32)) | (0x400 << 32),
        sim::BASIC & !(0xf << 50),
        sim::BASIC | (1 << 31),
    ]);
    if random.chance(2) {
        cpu.cr4_fixed.1 &= !random.pick(&[1 << 12, 1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 13]);
    }
    if random.chance(1) {
        cpu.cr0_fixed = random.pick(&[
            (0x21, 0xffff_ffff),
            (0x8000_0021, 0x9fff_ffff),
            (1 << 40, 0),
        ]);
    }
    if random.chance(1) {
        cpu.cr4_fixed.0 |= random.pick(&[1 << 5, 1 << 15, 1 << 0]);
    }
    if random.chance(1) {
        let msr = random.pick(&[0x3a, 0x480, 0x486, 0x487, 0x488, 0x489]);
        cpu.faulting_msrs.push(msr);
    }
    cpu
}

#[test]
fn the_verdict_is_ready_exactly_when_enter_succeeds_on_random_processors() {
    use crate::diagnosis::{CpuObserver, Verdict, diagnose};
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let (mut ready, mut refused) = (0, 0);
    for case in 0..20_000 {
        let cpu = random_cpu(&mut random);
        // The diagnosis sees every value (ring 0): nothing is unknown.
        let report = diagnose(&mut CpuObserver(&mut cpu.clone()));
        assert_ne!(
            report.verdict,
            Verdict::Undetermined,
            "case {case}: {cpu:?}"
        );
        let mut entering = cpu.clone();
        let result = Processor::new().enter(&mut entering, page(0x1000));
        assert_eq!(
            report.verdict == Verdict::Ready,
            result.is_ok(),
            "case {case}: {report:?} vs {:?} on {cpu:?}",
            result.as_ref().err().map(|f| f.error)
        );
        assert!(
            entering.violations.is_empty(),
            "case {case}: {:?}",
            entering.violations
        );
        if result.is_ok() {
            ready += 1;
        } else {
            refused += 1;
            assert!(entering.is_pristine() || entering.feature_control != cpu.feature_control);
        }
    }
    // The generator reaches both sides often enough to mean something.
    assert!(
        ready > 1000 && refused > 1000,
        "{ready} ready, {refused} refused"
    );
}

/// The error a failure at `step` must produce.
fn expected_error(step: Step) -> Error {
    use crate::cpuid::Vendor;
    let rdmsr = |msr| Error::Faulted {
        instruction: Instruction::Rdmsr(msr),
        fault: Fault::GeneralProtection,
    };
    match step {
        Step::Vendor => Error::NotIntel {
            vendor: Vendor::Amd,
        },
        Step::VmxBit => Error::VmxNotSupported { hypervisor: None },
        Step::FeatureControlRead => rdmsr(0x3a),
        Step::FeatureControlDisabled => Error::DisabledByFirmware { msr: 0x1 },
        Step::InUse => Error::InUse {
            cr4: GRUB_CR4 | (1 << 13),
        },
        Step::BasicRead => rdmsr(0x480),
        Step::BasicUnusable => Error::UnsupportedMemoryType {
            memory_type: 0,
            basic: sim::BASIC & !(0xf << 50),
        },
        Step::FixedBitsRead => rdmsr(0x486),
        Step::LockWrite => Error::Faulted {
            instruction: Instruction::Wrmsr(0x3a),
            fault: Fault::GeneralProtection,
        },
        Step::LockReadback => Error::FeatureControlNotLocked {
            written: 0x5,
            read: 0x0,
        },
        Step::VmxonFailInvalid => Error::VmFailInvalid {
            instruction: Instruction::Vmxon,
        },
        Step::VmxonFailValid => Error::VmFailValid {
            instruction: Instruction::Vmxon,
            error: VmInstructionError::Undefined(99),
        },
        Step::VmxonFault => Error::Faulted {
            instruction: Instruction::Vmxon,
            fault: Fault::GeneralProtection,
        },
        Step::Allocate => Error::OutOfMemory,
        Step::RunOn => Error::ProcessorUnavailable,
        Step::VmxoffFailValid => unreachable!("not a step of entering"),
    }
}

#[test]
fn a_failure_at_any_step_on_any_processor_rolls_every_processor_back() {
    let mut cases = 0;
    for count in 1..=8 {
        for failing in 0..count {
            for step in Step::ENTERING {
                let mut machine = SimMachine::new(count);
                let mut allocator = SimAllocator::default();
                step.inject(failing, &mut machine, &mut allocator);
                let before: Vec<_> = machine.cpus.iter().map(|c| (c.cr0, c.cr4)).collect();
                let mut state = slots(count);
                let error = enter_all(&mut machine, &mut allocator, &mut state).unwrap_err();
                let context = format!("{count} processors, {step:?} on {failing}");
                assert_eq!(error.processor, failing, "{context}");
                assert_eq!(error.error, expected_error(step), "{context}");
                for (index, cpu) in machine.cpus.iter().enumerate() {
                    assert!(
                        !cpu.in_vmx,
                        "{context}: processor {index} left in VMX operation"
                    );
                    assert_eq!(
                        (cpu.cr0, cpu.cr4),
                        before[index],
                        "{context}: processor {index} not restored"
                    );
                    assert!(cpu.violations.is_empty(), "{context}: {:?}", cpu.violations);
                    // Processors after the failing one were never touched.
                    if index > failing {
                        assert!(cpu.ops.is_empty(), "{context}: processor {index} touched");
                    }
                }
                assert!(allocator.outstanding.is_empty(), "{context}: pages leaked");
                assert!(state.iter().all(|s| !s.is_entered()), "{context}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 36 * Step::ENTERING.len());
}

#[test]
fn enter_all_then_leave_all_restores_every_processor_and_frees_every_page() {
    for count in 1..=8 {
        let mut machine = SimMachine::new(count);
        let mut allocator = SimAllocator::default();
        let mut state = slots(count);
        assert_eq!(
            enter_all(&mut machine, &mut allocator, &mut state),
            Ok(count)
        );
        assert!(
            machine
                .cpus
                .iter()
                .all(|c| c.in_vmx && c.cr0 == 0xe000_0031 && c.cr4 == 0x2020)
        );
        assert_eq!(allocator.outstanding.len(), count);
        // Each processor got its own page.
        let regions: std::collections::BTreeSet<_> = state
            .iter()
            .map(|s| match s.status() {
                ProcessorStatus::On { region, .. } => region,
                ProcessorStatus::Off => panic!("not entered"),
            })
            .collect();
        assert_eq!(regions.len(), count);

        let again = enter_all(&mut machine, &mut allocator, &mut state).unwrap_err();
        assert_eq!(again.error, Error::AlreadyEntered);
        assert_eq!(
            allocator.outstanding.len(),
            count,
            "a refused second entry allocates nothing"
        );

        assert_eq!(
            leave_all(&mut machine, &mut allocator, &mut state),
            Ok(count)
        );
        for cpu in &machine.cpus {
            assert!(!cpu.in_vmx);
            assert_eq!((cpu.cr0, cpu.cr4), (GRUB_CR0, GRUB_CR4));
            assert!(cpu.violations.is_empty());
        }
        assert!(allocator.outstanding.is_empty());
        let none = leave_all(&mut machine, &mut allocator, &mut state).unwrap_err();
        assert_eq!(none.error, Error::NotEntered);
    }
}

#[test]
fn enter_all_refuses_more_processors_than_slots() {
    let mut machine = SimMachine::new(4);
    let mut allocator = SimAllocator::default();
    let error = enter_all(&mut machine, &mut allocator, &mut slots(3)).unwrap_err();
    assert_eq!(
        error.error,
        Error::TooManyProcessors {
            count: 4,
            capacity: 3
        }
    );
    assert!(machine.cpus.iter().all(|c| c.ops.is_empty()));
    assert_eq!(allocator.allocations, 0);
}

#[test]
fn leave_all_continues_past_a_processor_that_cannot_leave() {
    let mut machine = SimMachine::new(3);
    let mut allocator = SimAllocator::default();
    let mut state = slots(3);
    enter_all(&mut machine, &mut allocator, &mut state).unwrap();
    machine.unreachable = Some(1);
    let error = leave_all(&mut machine, &mut allocator, &mut state).unwrap_err();
    assert_eq!(
        (error.processor, error.error),
        (1, Error::ProcessorUnavailable)
    );
    assert!(!machine.cpus[0].in_vmx && machine.cpus[1].in_vmx && !machine.cpus[2].in_vmx);
    assert_eq!(allocator.outstanding.len(), 1);
    assert!(state[1].is_entered());
    machine.unreachable = None;
    assert_eq!(leave_all(&mut machine, &mut allocator, &mut state), Ok(1));
    assert!(allocator.outstanding.is_empty());
}

#[test]
fn injected_wrong_revision_and_dropped_vmxe_reach_the_processor() {
    use crate::inject::{Injecting, Injection};
    let mut cpu = Injecting::new(SimCpu::skylake(), Injection::DropVmxe);
    let failure = Processor::new().enter(&mut cpu, page(0x1000)).unwrap_err();
    assert_eq!(
        failure.error,
        Error::Faulted {
            instruction: Instruction::Vmxon,
            fault: Fault::InvalidOpcode
        }
    );
    let sim = cpu.into_inner();
    assert_eq!((sim.cr0, sim.cr4), (GRUB_CR0, GRUB_CR4));

    let mut cpu = Injecting::new(SimCpu::skylake(), Injection::WrongRevisionId);
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    let region = processor.leave(&mut cpu).unwrap();
    assert_eq!(&region.bytes[..4], &(0x2b ^ 0x4000_0000u32).to_le_bytes());
    for name in ["none", "wrong-revision-id", "drop-vmxe"] {
        assert_eq!(Injection::from_name(name).unwrap().name(), name);
    }
}

/// The figure the docs quote: privileged operations per processor to enter
/// VMX operation on a firmware-locked processor, and to leave it.
#[test]
fn entering_costs_each_msr_read_once_and_each_control_register_read_once() {
    let mut cpu = SimCpu::skylake();
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    let mut msrs: Vec<u32> = cpu
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::ReadMsr(m) => Some(*m),
            _ => None,
        })
        .collect();
    let reads = msrs.len();
    msrs.dedup();
    assert_eq!(msrs.len(), reads, "an MSR read twice");
    assert_eq!(msrs, [0x3a, 0x480, 0x486, 0x487, 0x488, 0x489]);
    assert_eq!(cpu.count(Op::ReadCr0), 1);
    assert_eq!(cpu.count(Op::ReadCr4), 1);
    assert!(cpu.count(Op::WriteCr0) <= 1 && cpu.count(Op::WriteCr4) == 1);
    assert_eq!(cpu.count(Op::WriteMsr(0x3a)), 0);
    let cpuid = cpu
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Cpuid(_)))
        .count();
    assert_eq!(cpuid, 4);
    assert_eq!(
        cpu.ops.len(),
        4 + 6 + 2 + 2 + 1,
        "4 CPUID, 6 RDMSR, 2 CR reads, 2 CR writes, VMXON"
    );

    let entered = cpu.ops.len();
    processor.leave(&mut cpu).unwrap();
    assert_eq!(
        cpu.ops.len() - entered,
        5,
        "VMXOFF, CR4 read+write, CR0 read+write"
    );
}

/// The same figures through the reusable counting wrapper, which the e2e
/// kernel also uses on emulated processors.
#[test]
fn a_counting_cpu_measures_entering_and_leaving() {
    use crate::counting::{Counting, OperationCounts};
    let mut cpu = Counting::new(SimCpu::skylake());
    let mut processor = Processor::new();
    processor.enter(&mut cpu, page(0x1000)).unwrap();
    let entering = OperationCounts {
        cpuid: 4,
        rdmsr: 6,
        cr0_reads: 1,
        cr0_writes: 1,
        cr4_reads: 1,
        cr4_writes: 1,
        vmxon: 1,
        vmxon_succeeded: 1,
        ..OperationCounts::default()
    };
    assert_eq!(cpu.counts(), entering);
    assert_eq!(cpu.counts().total(), 15);
    assert_eq!(
        std::format!("{}", cpu.counts()),
        "15 (4 CPUID, 6 RDMSR, 0 WRMSR, CR0 1 read 1 write, CR4 1 read 1 write, 1 VMXON, 0 VMXOFF)"
    );
    processor.leave(&mut cpu).unwrap();
    assert_eq!(cpu.counts().total(), 15 + 5);
    assert_eq!(
        (cpu.counts() - entering).total(),
        5,
        "VMXOFF, CR4 read+write, CR0 read+write"
    );
    assert_eq!((cpu.counts().vmxoff, cpu.counts().vmxoff_succeeded), (1, 1));

    // An unlocked IA32_FEATURE_CONTROL adds the lock and its read-back.
    let mut sim = SimCpu::skylake();
    sim.feature_control = 0;
    let mut cpu = Counting::new(sim);
    Processor::new().enter(&mut cpu, page(0x1000)).unwrap();
    assert_eq!(
        (cpu.counts().rdmsr, cpu.counts().wrmsr, cpu.counts().total()),
        (7, 1, 17)
    );
    assert_eq!(cpu.into_inner().feature_control, 0x5);
}
