//! The test scenarios, chosen on the kernel command line:
//! `scenario=NAME [expect=VERDICT] [feature-control=unlocked]`.
//!
//! Every scenario records CR0, CR4 and IA32_FEATURE_CONTROL of every
//! processor first, diagnoses every processor (vmx-core's verdict), drives
//! vmx-core's `enter_all` / `leave_all` as the scenario says (or, `dump`,
//! prints what the diagnosis read), records the registers again and
//! requires CR0 and CR4 equal to the first record, IA32_FEATURE_CONTROL
//! unchanged (or locked by vmx-core, when it was unlocked), every page
//! returned and no processor left in VMX operation. The summary names how
//! many processors entered and left (VMXON and VMXOFF that succeeded).
//!
//! The `fault-*` scenarios break the last processor (an application
//! processor whenever there are several) with one of vmx-core's injections
//! (`vmx_core::inject`), which bypasses one of vmx-core's checks so that
//! the instruction it protects really executes, and require the answer of
//! the (emulated) hardware as vmx-arch decodes it and vmx-core reports it.

use core::fmt;

use vmx_core::controls;
use vmx_core::diagnosis::Recorder;
use vmx_core::entry_checks::{self, EntryCapabilities, EntryFailure, Rule};
use vmx_core::feature_control::{FeatureControlFlags, IA32_FEATURE_CONTROL};
use vmx_core::inject::Injection;
use vmx_core::vmcs::Vmcs;
use vmx_core::{
    BasicExitReason, Cpu, CpuObserver, EntryOutcome, Error, Fault, GuestRegisters,
    Instruction, PageAllocator, Processor, ProcessorError, ProcessorStatus,
    Processors, Verdict, VmInstructionError, VmcsDescription, diagnose,
};

use crate::dump::{self, Capture};
use crate::pages::{PagePool, PoolPage};
use crate::platform::VmxProcessors;
use crate::smp::{self, MAX_PROCESSORS};
use crate::{exit, guest, println};

/// Ends the run with FAIL, formatted like `format_args!`.
macro_rules! fail {
    ($($arg:tt)*) => {
        exit::fail(format_args!($($arg)*))
    };
}

/// A test scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Enter and leave VMX operation on every processor when the diagnosis
    /// is `ready`; otherwise require the expected verdict and that entering
    /// is refused, without a fault.
    EnterLeave {
        /// The diagnosis the machine must give (`expect=`, default `ready`).
        expect: Verdict,
        /// `feature-control=unlocked`: IA32_FEATURE_CONTROL must be 0x0
        /// (unlocked) on every processor at first, and locked with VMX
        /// outside SMX (0x5) by vmx-core afterwards.
        unlocked: bool,
    },
    /// The last processor's VMXON region carries a wrong revision
    /// identifier: VMXON fails with `VMfailInvalid` there and every
    /// processor that entered leaves again.
    WrongRevisionId,
    /// The last processor executes VMXON with CR4.VMXE clear: #UD, caught
    /// and reported; every processor that entered leaves again.
    DropVmxe,
    /// The last processor's CR0 write drops NE: VMXON raises #GP (CR0
    /// outside IA32_VMX_CR0_FIXED0), caught through the exception table.
    Cr0Ne,
    /// IA32_FEATURE_CONTROL is unlocked (SeaBIOS) and reads as locked and
    /// enabled on the last processor, which VMXON finds otherwise: #GP.
    /// Then the lock there loses its bit (VMX enabled, unlocked): vmx-core's
    /// read-back catches it, and VMXON past that check raises #GP again.
    /// The MSR stays unlocked there (0x4).
    VmxonUnlocked,
    /// IA32_FEATURE_CONTROL is unlocked (SeaBIOS) and the last processor's
    /// lock keeps only the lock bit: vmx-core's read-back catches it;
    /// entering is refused from then on; VMXON past that check raises #GP,
    /// and so does a WRMSR to the locked MSR.
    LockAlone,
    /// The last processor's VMXON operand is misaligned: VMfailInvalid.
    MisalignedRegion,
    /// The last processor's VMXON operand has the first bit beyond the
    /// physical-address width set: VMfailInvalid.
    RegionBeyondWidth,
    /// Something else leaves VMX operation on the last processor first:
    /// vmx-core's VMXOFF raises #UD, the registers are put back all the
    /// same.
    VmxoffOutside,
    /// A second owner that cannot see CR4.VMXE executes VMXON on the last
    /// processor in VMX root operation, no VMCS current: VMfailInvalid.
    VmxonInRoot,
    /// With a VMCS current on the last processor, VMXON in VMX root
    /// operation fails with VMfailValid(15) and VMCLEAR of the VMXON region
    /// with VMfailValid(3), both numbers read with VMREAD; then the VMCS is
    /// cleared and every processor leaves.
    VmfailValid,
    /// Flips CR0 and CR4 bits that the VMX fixed bits leave free (and the
    /// running kernel does not depend on) on every processor, then enters
    /// and leaves: VMXON succeeds with valid but tweaked CR0 and CR4, as in
    /// kvm-unit-tests' `test_vmxon`, and leaving puts the tweaked values
    /// back.
    EnterLeaveFlexible,
    /// Entering a second time is refused, without a fault.
    EnterTwice,
    /// Leaving without having entered is refused, without a fault.
    LeaveWithoutEnter,
    /// Prints what vmx-core's diagnosis reads on every processor as a
    /// `vmx-dump/1` document ([`dump`]); enters nothing.
    Dump,
    /// Enters VMX operation everywhere, then on every processor in turn:
    /// VMCLEAR and VMPTRLD of a VMCS, vmx-core's minimal 64-bit guest
    /// written after vmx-core's VM-entry checks, VMLAUNCH of a guest that
    /// executes CPUID and VMCALL `iterations` times (`iterations=N` on the
    /// command line, [`GUEST_ITERATIONS`] by default) and then HLT;
    /// each exit handled (CPUID emulated, RIP moved past the instruction)
    /// and the guest resumed, the exits counted; VMCLEAR. Then every
    /// processor leaves.
    VmExits {
        /// How many times the guest runs CPUID and VMCALL (at least 1).
        iterations: u64,
    },
    /// On the last processor, for each rule of vmx-core's
    /// `entry_checks::BREAKABLE`: the minimal guest's VMCS passes vmx-core's
    /// checks, one VMWRITE is overridden (vmx-core's check bypassed) to
    /// break exactly that rule, and VMLAUNCH must fail as the SDM says for
    /// it (VMfailValid 7 or 8, or exit reason 33 with its qualification)
    /// while vmx-core's checker, given the broken VMCS, names that rule
    /// alone. Then "entry to SMM", which breaks a control and a guest-state
    /// rule. Where Bochs departs from the SDM, it must answer exactly as
    /// recorded (`bochs_deviation`).
    EntryChecks,
}

/// How many times the `vm-exits` guest runs CPUID and VMCALL.
pub const GUEST_ITERATIONS: u64 = 1000;

/// The command line names no known scenario or verdict.
#[derive(Debug, Clone, Copy)]
pub struct BadCommandLine<'a>(&'a str);

impl fmt::Display for BadCommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad command line {:?}: expected scenario=enter-leave [expect=VERDICT] \
             [feature-control=unlocked], scenario=enter-leave-flexible, \
             scenario=fault-wrong-revision-id, \
             scenario=fault-drop-vmxe, scenario=fault-cr0-ne, scenario=fault-vmxon-unlocked, \
             scenario=fault-lock-alone, scenario=fault-misaligned-region, \
             scenario=fault-region-beyond-width, scenario=fault-vmxoff-outside, \
             scenario=fault-vmxon-in-root, scenario=fault-vmfail-valid, \
             scenario=fault-enter-twice, scenario=fault-leave-without-enter, \
             scenario=vm-exits [iterations=N], \
             scenario=vm-entry-checks or scenario=dump",
            self.0
        )
    }
}

impl Scenario {
    /// The scenario a command line selects.
    ///
    /// # Errors
    /// [`BadCommandLine`] for a missing or unknown scenario or verdict.
    pub fn from_command_line(command_line: &str) -> Result<Self, BadCommandLine<'_>> {
        let value = |key: &str| {
            command_line
                .split_ascii_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        };
        let bad = BadCommandLine(command_line);
        let expect = match value("expect") {
            None => Verdict::Ready,
            Some(name) => Verdict::from_name(name).ok_or(bad)?,
        };
        let unlocked = match value("feature-control") {
            None => false,
            Some("unlocked") => true,
            Some(_) => return Err(bad),
        };
        match value("scenario").ok_or(bad)? {
            "enter-leave" => Ok(Self::EnterLeave { expect, unlocked }),
            "enter-leave-flexible" => Ok(Self::EnterLeaveFlexible),
            "fault-wrong-revision-id" => Ok(Self::WrongRevisionId),
            "fault-drop-vmxe" => Ok(Self::DropVmxe),
            "fault-cr0-ne" => Ok(Self::Cr0Ne),
            "fault-vmxon-unlocked" => Ok(Self::VmxonUnlocked),
            "fault-lock-alone" => Ok(Self::LockAlone),
            "fault-misaligned-region" => Ok(Self::MisalignedRegion),
            "fault-region-beyond-width" => Ok(Self::RegionBeyondWidth),
            "fault-vmxoff-outside" => Ok(Self::VmxoffOutside),
            "fault-vmxon-in-root" => Ok(Self::VmxonInRoot),
            "fault-vmfail-valid" => Ok(Self::VmfailValid),
            "fault-enter-twice" => Ok(Self::EnterTwice),
            "fault-leave-without-enter" => Ok(Self::LeaveWithoutEnter),
            "dump" => Ok(Self::Dump),
            "vm-exits" => {
                let iterations = match value("iterations") {
                    None => GUEST_ITERATIONS,
                    Some(number) => number.parse().ok().filter(|&n| n > 0).ok_or(bad)?,
                };
                Ok(Self::VmExits { iterations })
            }
            "vm-entry-checks" => Ok(Self::EntryChecks),
            _ => Err(bad),
        }
    }

    /// Runs the scenario on `processors` and ends the run with its result.
    pub fn run(self, processors: &mut smp::Processors) -> ! {
        let pool = PagePool::take().unwrap_or_else(|| fail!("the page pool was taken twice"));
        let mut test = Test {
            platform: VmxProcessors::new(processors),
            pool,
            slots: [const { Processor::new() }; MAX_PROCESSORS],
            exits: 0,
        };
        if self == Self::EnterLeaveFlexible {
            test.flip_flexible_bits();
        }
        let before = test.registers("before");
        if matches!(self, Self::VmxonUnlocked | Self::LockAlone)
            && before.feature_control[..test.count()]
                .iter()
                .any(|&value| value != Some(0))
        {
            fail!(
                "{} needs IA32_FEATURE_CONTROL unlocked (0x0) on every processor: boot SeaBIOS",
                self.name()
            );
        }
        let verdict = test.diagnose();
        if !matches!(self, Self::EnterLeave { .. } | Self::Dump) && verdict != Verdict::Ready {
            fail!(
                "{} needs a VT-x processor; the diagnosis is {verdict}",
                self.name()
            );
        }
        let target = test.count() - 1;
        let vmxon_invalid = Error::VmFailInvalid {
            instruction: Instruction::Vmxon,
        };
        let vmxon_gp = Error::Faulted {
            instruction: Instruction::Vmxon,
            fault: Fault::GeneralProtection,
        };
        let mut rule = FeatureControlRule::UnchangedOrLocked;
        match self {
            Self::EnterLeaveFlexible => test.enter_leave(verdict, Verdict::Ready),
            Self::EnterLeave { expect, unlocked } => {
                test.enter_leave(verdict, expect);
                if unlocked {
                    rule = FeatureControlRule::Locked;
                }
            }
            Self::WrongRevisionId => {
                test.injected_failure(Injection::WrongRevisionId, vmxon_invalid);
            }
            Self::DropVmxe => test.injected_failure(
                Injection::DropVmxe,
                Error::Faulted {
                    instruction: Instruction::Vmxon,
                    fault: Fault::InvalidOpcode,
                },
            ),
            Self::Cr0Ne => test.injected_failure(Injection::DropCr0Ne, vmxon_gp),
            Self::VmxonUnlocked => {
                test.injected_failure(Injection::FeatureControlReadsEnabled, vmxon_gp);
                test.injected_failure(
                    Injection::DropLock,
                    Error::FeatureControlNotLocked {
                        written: LOCKED_FOR_VMX,
                        read: FeatureControlFlags::VMX_OUTSIDE_SMX.bits(),
                    },
                );
                test.injected_failure(Injection::FeatureControlReadsEnabled, vmxon_gp);
                rule = FeatureControlRule::LockedExcept {
                    processor: target,
                    value: FeatureControlFlags::VMX_OUTSIDE_SMX.bits(),
                };
            }
            Self::LockAlone => {
                test.lock_alone();
                rule = FeatureControlRule::LockedExcept {
                    processor: target,
                    value: FeatureControlFlags::LOCK.bits(),
                };
            }
            Self::MisalignedRegion => {
                test.injected_failure(Injection::MisalignVmxon, vmxon_invalid);
            }
            Self::RegionBeyondWidth => {
                test.injected_failure(Injection::VmxonBeyondWidth, vmxon_invalid);
            }
            Self::VmxoffOutside => test.vmxoff_outside(),
            Self::VmxonInRoot => test.vmxon_in_root(),
            Self::VmfailValid => test.vmfail_valid(),
            Self::EnterTwice => test.enter_twice(),
            Self::LeaveWithoutEnter => test.leave_without_enter(),
            Self::Dump => test.dump(),
            Self::VmExits { iterations } => test.vm_exits(iterations),
            Self::EntryChecks => test.entry_checks(),
        }
        test.finish(&before, self.name(), rule)
    }

    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::EnterLeave { .. } => "enter-leave",
            Self::EnterLeaveFlexible => "enter-leave-flexible",
            Self::WrongRevisionId => "fault-wrong-revision-id",
            Self::DropVmxe => "fault-drop-vmxe",
            Self::Cr0Ne => "fault-cr0-ne",
            Self::VmxonUnlocked => "fault-vmxon-unlocked",
            Self::LockAlone => "fault-lock-alone",
            Self::MisalignedRegion => "fault-misaligned-region",
            Self::RegionBeyondWidth => "fault-region-beyond-width",
            Self::VmxoffOutside => "fault-vmxoff-outside",
            Self::VmxonInRoot => "fault-vmxon-in-root",
            Self::VmfailValid => "fault-vmfail-valid",
            Self::EnterTwice => "fault-enter-twice",
            Self::LeaveWithoutEnter => "fault-leave-without-enter",
            Self::Dump => "dump",
            Self::VmExits { .. } => "vm-exits",
            Self::EntryChecks => "vm-entry-checks",
        }
    }
}

/// CR0, CR4 and IA32_FEATURE_CONTROL (`None`: RDMSR faulted) of every
/// processor at one step.
#[derive(Debug, Clone, Copy)]
struct Registers {
    cr0: [u64; MAX_PROCESSORS],
    cr4: [u64; MAX_PROCESSORS],
    feature_control: [Option<u64>; MAX_PROCESSORS],
}

/// The CR0 bits `enter-leave-flexible` flips: MP (1), WP (16), AM (18).
/// Neither IA32_VMX_CR0_FIXED0 requires them nor FIXED1 forbids them on
/// Bochs' models, and this kernel does not depend on them (no x87 or SSE
/// code, every page writable, no CPL 3). kvm-unit-tests flips every free
/// bit except those that change the paging mode; this is a safe subset.
const FLEXIBLE_CR0: u64 = 1 << 1 | 1 << 16 | 1 << 18;
/// The CR4 bits `enter-leave-flexible` flips: TSD (2), DE (3), MCE (6),
/// PGE (7), PCE (8), OSXMMEXCPT (10); free in the VMX fixed bits of Bochs'
/// models and harmless to this kernel.
const FLEXIBLE_CR4: u64 = 1 << 2 | 1 << 3 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10;

/// What IA32_FEATURE_CONTROL must be after a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeatureControlRule {
    /// As before, or locked for VMX by vmx-core when it was unlocked.
    UnchangedOrLocked,
    /// 0x0 before and locked for VMX by vmx-core after, on every processor.
    Locked,
    /// Like [`FeatureControlRule::Locked`], except that `processor` must
    /// hold `value`.
    LockedExcept {
        /// The processor the scenario broke.
        processor: usize,
        /// Its IA32_FEATURE_CONTROL after.
        value: u64,
    },
}

/// IA32_FEATURE_CONTROL as vmx-core locks an unlocked one outside SMX:
/// lock and VMX outside SMX (0x5).
const LOCKED_FOR_VMX: u64 =
    FeatureControlFlags::LOCK.bits() | FeatureControlFlags::VMX_OUTSIDE_SMX.bits();

/// ` exits=N` in a summary, when there were VM exits.
struct Exits(usize);

impl fmt::Display for Exits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            exits => write!(f, " exits={exits}"),
        }
    }
}

/// A register value for a report line: hex, or `faulted`.
struct Reading(Option<u64>);

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:#x}"),
            None => f.write_str("faulted"),
        }
    }
}

/// A scenario's state: the platform, the page pool and vmx-core's
/// per-processor state.
struct Test<'a> {
    platform: VmxProcessors<'a>,
    pool: PagePool,
    slots: [Processor<PoolPage>; MAX_PROCESSORS],
    /// VM exits handled, for the summary.
    exits: usize,
}

impl Test<'_> {
    fn count(&self) -> usize {
        self.platform.count()
    }

    fn enter_all(&mut self) -> Result<usize, ProcessorError> {
        let count = self.count();
        vmx_core::enter_all(&mut self.platform, &mut self.pool, &mut self.slots[..count])
    }

    fn leave_all(&mut self) -> Result<usize, ProcessorError> {
        let count = self.count();
        vmx_core::leave_all(&mut self.platform, &mut self.pool, &mut self.slots[..count])
    }

    /// Reads and prints CR0, CR4 and IA32_FEATURE_CONTROL on every
    /// processor. (Reading the MSR here is reporting, not VMX logic: it
    /// faults harmlessly on processors without it, e.g. AMD's.)
    fn registers(&mut self, step: &str) -> Registers {
        let mut registers = Registers {
            cr0: [0; MAX_PROCESSORS],
            cr4: [0; MAX_PROCESSORS],
            feature_control: [None; MAX_PROCESSORS],
        };
        for index in 0..self.count() {
            let ran = self.platform.run_on(index, &mut |cpu| {
                registers.cr0[index] = cpu.read_cr0();
                registers.cr4[index] = cpu.read_cr4();
                registers.feature_control[index] = cpu.read_msr(IA32_FEATURE_CONTROL).ok();
            });
            if ran.is_err() {
                fail!("processor {index} is unavailable");
            }
            println!(
                "processor {index} {step}: CR0={:#x} CR4={:#x} IA32_FEATURE_CONTROL={}",
                registers.cr0[index],
                registers.cr4[index],
                Reading(registers.feature_control[index])
            );
        }
        registers
    }

    /// Diagnoses and prints every processor; returns the machine's verdict.
    fn diagnose(&mut self) -> Verdict {
        let mut overall = Verdict::Ready;
        for index in 0..self.count() {
            let mut verdict = None;
            let ran = self.platform.run_on(index, &mut |cpu| {
                let report = diagnose(&mut CpuObserver(cpu));
                println!(
                    "processor {index} diagnosis: {} ({})",
                    report.verdict,
                    report.reason()
                );
                verdict = Some(report.verdict);
            });
            match (ran, verdict) {
                (Ok(()), Some(verdict)) => overall = overall.min(verdict),
                _ => fail!("processor {index} is unavailable"),
            }
        }
        println!("machine diagnosis: {overall}");
        overall
    }

    /// Flips [`FLEXIBLE_CR0`] and [`FLEXIBLE_CR4`] on every processor: the
    /// test's own set-up, before anything is recorded.
    fn flip_flexible_bits(&mut self) {
        for index in 0..self.count() {
            let ran = self.platform.run_on(index, &mut |cpu| {
                let (cr0, cr4) = (cpu.read_cr0(), cpu.read_cr4());
                cpu.write_cr0(cr0 ^ FLEXIBLE_CR0);
                cpu.write_cr4(cr4 ^ FLEXIBLE_CR4);
                println!(
                    "processor {index}: CR0 {cr0:#x} -> {:#x}, CR4 {cr4:#x} -> {:#x} (flexible bits flipped)",
                    cr0 ^ FLEXIBLE_CR0,
                    cr4 ^ FLEXIBLE_CR4
                );
            });
            if ran.is_err() {
                fail!("processor {index} is unavailable");
            }
        }
    }

    fn enter_leave(&mut self, verdict: Verdict, expect: Verdict) {
        if verdict != expect {
            fail!("the diagnosis is {verdict}, expected {expect}");
        }
        if verdict == Verdict::Ready {
            let before = self.platform.counts();
            let entered = self
                .enter_all()
                .unwrap_or_else(|error| fail!("entering VMX operation: {error}"));
            println!("entered VMX operation on {entered} processors");
            println!(
                "privileged operations to enter, all processors: {}",
                self.platform.counts() - before
            );
            self.registers("in VMX operation");
            let before = self.platform.counts();
            let left = self
                .leave_all()
                .unwrap_or_else(|error| fail!("leaving VMX operation: {error}"));
            println!("left VMX operation on {left} processors");
            println!(
                "privileged operations to leave, all processors: {}",
                self.platform.counts() - before
            );
            return;
        }
        match self.enter_all() {
            Ok(entered) => {
                fail!("entered VMX operation on {entered} processors of a {verdict} machine")
            }
            Err(error) if refusal_matches(verdict, error.error) => {
                println!("entering refused as it must be: {error}");
            }
            Err(error) => fail!("entering failed with {error}, not a refusal for {verdict}"),
        }
    }

    /// Breaks the last processor with `injection`; entering must fail there
    /// with `expected`, and the processors before it must leave again.
    fn injected_failure(&mut self, injection: Injection, expected: Error) {
        let target = self.count() - 1;
        println!("injecting {} on processor {target}", injection.name());
        let before = self.platform.counts();
        self.platform.inject(target, injection);
        let expected = ProcessorError {
            processor: target,
            error: expected,
        };
        let result = self.enter_all();
        self.platform.uninject();
        match result {
            Err(error) if error == expected => {
                println!("entering failed as it must: {error}");
            }
            Ok(entered) => fail!(
                "entering succeeded on {entered} processors despite {}",
                injection.name()
            ),
            Err(error) => fail!("entering failed with \"{error}\", expected \"{expected}\""),
        }
        let counts = self.platform.counts() - before;
        if counts.vmxon_succeeded != target || counts.vmxoff_succeeded != target {
            fail!(
                "{} processors entered and {} left; expected the {target} before processor {target} to enter and leave",
                counts.vmxon_succeeded,
                counts.vmxoff_succeeded
            );
        }
        // A VMXON error comes from the instruction itself: it ran there.
        let vmxon_ran_there = matches!(
            expected.error,
            Error::Faulted {
                instruction: Instruction::Vmxon,
                ..
            } | Error::VmFailInvalid {
                instruction: Instruction::Vmxon
            } | Error::VmFailValid {
                instruction: Instruction::Vmxon,
                ..
            }
        );
        if counts.vmxon != target + usize::from(vmxon_ran_there) {
            fail!(
                "{} VMXON executed; expected {} (processor {target}'s {})",
                counts.vmxon,
                target + usize::from(vmxon_ran_there),
                if vmxon_ran_there {
                    "included"
                } else {
                    "refused first"
                }
            );
        }
        println!(
            "rolled back: {} processors entered and left again",
            counts.vmxoff_succeeded
        );
    }

    /// The last processor, whose IA32_FEATURE_CONTROL is unlocked, writes
    /// only the lock bit when vmx-core locks it: the read-back must catch
    /// it; entering is then refused (VMX is locked off); VMXON past that
    /// check must raise #GP, and so must a WRMSR to the locked MSR.
    fn lock_alone(&mut self) {
        let target = self.count() - 1;
        let lock = FeatureControlFlags::LOCK.bits();
        self.injected_failure(
            Injection::LockAlone,
            Error::FeatureControlNotLocked {
                written: LOCKED_FOR_VMX,
                read: lock,
            },
        );
        let expected = ProcessorError {
            processor: target,
            error: Error::DisabledByFirmware { msr: lock },
        };
        match self.enter_all() {
            Err(error) if error == expected => println!("entering refused as it must be: {error}"),
            other => {
                fail!("entering with VMX locked off returned {other:?}, expected Err({expected:?})")
            }
        }
        self.injected_failure(
            Injection::FeatureControlReadsEnabled,
            Error::Faulted {
                instruction: Instruction::Vmxon,
                fault: Fault::GeneralProtection,
            },
        );
        let mut written = None;
        let ran = self.platform.run_on(target, &mut |cpu| {
            written = Some(cpu.write_msr(IA32_FEATURE_CONTROL, LOCKED_FOR_VMX));
        });
        match (ran, written) {
            (Ok(()), Some(Err(Fault::GeneralProtection))) => println!(
                "processor {target}: WRMSR IA32_FEATURE_CONTROL {LOCKED_FOR_VMX:#x} raised #GP: locked until reset"
            ),
            (_, written) => fail!(
                "processor {target}: WRMSR to the locked IA32_FEATURE_CONTROL returned {written:?}, expected Some(Err(#GP))"
            ),
        }
    }

    /// Enters everywhere, then something else leaves VMX operation on the
    /// last processor first: vmx-core's VMXOFF there must raise #UD, and
    /// the registers and the page must come back all the same.
    fn vmxoff_outside(&mut self) {
        let target = self.count() - 1;
        let entered = self.count();
        self.enter_everywhere();
        println!(
            "injecting {} on processor {target}",
            Injection::LeaveFirst.name()
        );
        self.platform.inject(target, Injection::LeaveFirst);
        let result = self.leave_all();
        self.platform.uninject();
        let expected = ProcessorError {
            processor: target,
            error: Error::Faulted {
                instruction: Instruction::Vmxoff,
                fault: Fault::InvalidOpcode,
            },
        };
        match result {
            Err(error) if error == expected => println!("leaving failed as it must: {error}"),
            other => fail!("leaving returned {other:?}, expected Err({expected:?})"),
        }
        let counts = self.platform.counts();
        if counts.vmxoff != entered || counts.vmxoff_succeeded != target {
            fail!(
                "{} VMXOFF executed, {} succeeded; expected {entered} and {target}",
                counts.vmxoff,
                counts.vmxoff_succeeded
            );
        }
    }

    /// Makes a VMCS current on processor `index`, which is in VMX operation.
    fn load_vmcs(&mut self, index: usize) -> Vmcs<PoolPage> {
        let mut page = Some(
            self.pool
                .allocate()
                .unwrap_or_else(|_| fail!("no page for a VMCS region")),
        );
        let slot = &self.slots[index];
        let mut loaded = None;
        let ran = self.platform.run_on(index, &mut |cpu| {
            if let Some(page) = page.take() {
                loaded = Some(Vmcs::load(cpu, slot, page));
            }
        });
        match (ran, loaded) {
            (Ok(()), Some(Ok(vmcs))) => {
                println!(
                    "processor {index}: VMCLEAR and VMPTRLD of the VMCS region at {:#x}: it is current",
                    vmcs.physical_address()
                );
                vmcs
            }
            (_, Some(Err(failure))) => {
                fail!("processor {index}: loading a VMCS: {}", failure.error)
            }
            _ => fail!("processor {index} is unavailable"),
        }
    }

    /// On the last processor, in VMX operation, a second owner that cannot
    /// see CR4.VMXE (vmx-core's check that VMX is in use bypassed) enters:
    /// VMXON in VMX root operation must fail with `expected`, and the
    /// second region's page comes back.
    fn second_vmxon(&mut self, expected: Error) {
        let target = self.count() - 1;
        let mut page = Some(
            self.pool
                .allocate()
                .unwrap_or_else(|_| fail!("no page for a second VMXON region")),
        );
        println!(
            "injecting {} on processor {target}",
            Injection::HideVmxe.name()
        );
        let before = self.platform.counts();
        self.platform.inject(target, Injection::HideVmxe);
        let mut second = Processor::new();
        let mut result = None;
        let ran = self.platform.run_on(target, &mut |cpu| {
            if let Some(page) = page.take() {
                result = Some(second.enter(cpu, page));
            }
        });
        self.platform.uninject();
        match (ran, result) {
            (Ok(()), Some(Err(failure))) => {
                self.pool.free(failure.region);
                if failure.error != expected {
                    fail!(
                        "processor {target}: VMXON in VMX root operation: \"{}\", expected \"{expected}\"",
                        failure.error
                    );
                }
                println!(
                    "processor {target}: VMXON in VMX root operation failed as it must: {}",
                    failure.error
                );
            }
            (Ok(()), Some(Ok(()))) => {
                fail!("processor {target}: VMXON in VMX root operation succeeded")
            }
            _ => fail!("processor {target} is unavailable"),
        }
        let counts = self.platform.counts() - before;
        if counts.vmxon != 1 || counts.vmxon_succeeded != 0 {
            fail!(
                "{} VMXON executed, {} succeeded; expected 1 and 0",
                counts.vmxon,
                counts.vmxon_succeeded
            );
        }
    }

    fn enter_everywhere(&mut self) {
        let entered = self
            .enter_all()
            .unwrap_or_else(|error| fail!("entering VMX operation: {error}"));
        println!("entered VMX operation on {entered} processors");
    }

    fn leave_everywhere(&mut self) {
        let left = self
            .leave_all()
            .unwrap_or_else(|error| fail!("leaving VMX operation: {error}"));
        println!("left VMX operation on {left} processors");
    }

    /// VMXON in VMX root operation without a current VMCS: VMfailInvalid.
    fn vmxon_in_root(&mut self) {
        self.enter_everywhere();
        self.second_vmxon(Error::VmFailInvalid {
            instruction: Instruction::Vmxon,
        });
        self.leave_everywhere();
    }

    /// With a VMCS current on the last processor: VMXON in VMX root
    /// operation fails with VMfailValid(15), VMCLEAR of the VMXON region
    /// with VMfailValid(3); then the VMCS is cleared and every processor
    /// leaves.
    fn vmfail_valid(&mut self) {
        let target = self.count() - 1;
        self.enter_everywhere();
        let vmcs = self.load_vmcs(target);
        self.second_vmxon(Error::VmFailValid {
            instruction: Instruction::Vmxon,
            error: VmInstructionError::VmxonInVmxRoot,
        });
        let ProcessorStatus::On { region, .. } = self.slots[target].status() else {
            fail!("processor {target} is not in VMX operation")
        };
        let injection = Injection::RedirectVmclear(region);
        println!(
            "injecting {} on processor {target}: VMCLEAR of the VMXON region at {region:#x}",
            injection.name()
        );
        self.platform.inject(target, injection);
        let vmcs = self.clear_vmcs(target, vmcs, Some(VmInstructionError::VmclearVmxonPointer));
        self.platform.uninject();
        if let Some(vmcs) = vmcs {
            if let Some(vmcs) = self.clear_vmcs(target, vmcs, None) {
                fail!(
                    "processor {target}: the VMCS at {:#x} is still current",
                    vmcs.physical_address()
                );
            }
        }
        self.leave_everywhere();
    }

    /// VMCLEAR of `vmcs` on processor `index`. With `expected`, VMCLEAR
    /// must fail with VMfailValid and that error, and the VMCS comes back
    /// still current; without, it must succeed and the page is freed.
    fn clear_vmcs(
        &mut self,
        index: usize,
        vmcs: Vmcs<PoolPage>,
        expected: Option<VmInstructionError>,
    ) -> Option<Vmcs<PoolPage>> {
        let mut vmcs = Some(vmcs);
        let mut result = None;
        let ran = self.platform.run_on(index, &mut |cpu| {
            if let Some(vmcs) = vmcs.take() {
                result = Some(vmcs.clear(cpu));
            }
        });
        match (ran, result, expected) {
            (Ok(()), Some(Ok(page)), None) => {
                println!("processor {index}: VMCLEAR of the VMCS: no VMCS is current");
                self.pool.free(page);
                None
            }
            (Ok(()), Some(Err(failure)), Some(error))
                if failure.error
                    == (Error::VmFailValid {
                        instruction: Instruction::Vmclear,
                        error,
                    }) =>
            {
                println!(
                    "processor {index}: VMCLEAR failed as it must: {}",
                    failure.error
                );
                Some(failure.vmcs)
            }
            (Ok(()), Some(Err(failure)), _) => fail!(
                "processor {index}: VMCLEAR: \"{}\", expected {expected:?}",
                failure.error
            ),
            (Ok(()), Some(Ok(_)), Some(error)) => {
                fail!("processor {index}: VMCLEAR succeeded, expected VMfailValid({error})")
            }
            _ => fail!("processor {index} is unavailable"),
        }
    }

    fn enter_twice(&mut self) {
        let entered = self
            .enter_all()
            .unwrap_or_else(|error| fail!("entering VMX operation: {error}"));
        println!("entered VMX operation on {entered} processors");
        let expected = ProcessorError {
            processor: 0,
            error: Error::AlreadyEntered,
        };
        match self.enter_all() {
            Err(error) if error == expected => println!("entering again refused: {error}"),
            other => fail!("entering again returned {other:?}, expected Err({expected:?})"),
        }
        let left = self
            .leave_all()
            .unwrap_or_else(|error| fail!("leaving VMX operation: {error}"));
        println!("left VMX operation on {left} processors");
    }

    fn leave_without_enter(&mut self) {
        let expected = ProcessorError {
            processor: 0,
            error: Error::NotEntered,
        };
        match self.leave_all() {
            Err(error) if error == expected => {
                println!("leaving without entering refused: {error}");
            }
            other => {
                fail!("leaving without entering returned {other:?}, expected Err({expected:?})")
            }
        }
    }

    /// Describes the minimal guest's VMCS on processor `index` (vmx-core
    /// captures the host state and computes the controls there) and reads
    /// what the checks need.
    fn describe(&mut self, index: usize) -> (VmcsDescription, EntryCapabilities) {
        let mut described = None;
        let ran = self.platform.run_on(index, &mut |cpu| {
            described = Some(describe_minimal(cpu, index));
        });
        match (ran, described) {
            (Ok(()), Some(Ok(described))) => described,
            (_, Some(Err(error))) => fail!("processor {index}: describing the VMCS: {error}"),
            _ => fail!("processor {index} is unavailable"),
        }
    }

    /// The `vm-exits` scenario.
    fn vm_exits(&mut self, iterations: u64) {
        self.enter_everywhere();
        let expected = 2 * iterations as usize + 1;
        for index in 0..self.count() {
            let mut vmcs = self.load_vmcs(index);
            let (description, capabilities) = self.describe(index);
            let before = self.platform.counts();
            let mut result = None;
            let ran = self.platform.run_on(index, &mut |cpu| {
                result = Some(run_guest(
                    cpu,
                    &mut vmcs,
                    &description,
                    &capabilities,
                    iterations,
                ));
            });
            let exits = match (ran, result) {
                (Ok(()), Some(Ok(exits))) => exits,
                (_, Some(Err(error))) => fail!("processor {index}: {error}"),
                _ => fail!("processor {index} is unavailable"),
            };
            let counts = self.platform.counts() - before;
            println!(
                "processor {index}: {} VM exits ({} CPUID, {} VMCALL, {} HLT); {} VMLAUNCH, {} VMRESUME",
                exits.total(),
                exits.cpuid,
                exits.vmcall,
                exits.hlt,
                counts.vmlaunch,
                counts.vmresume
            );
            let iterations = iterations as usize;
            if exits.cpuid != iterations
                || exits.vmcall != iterations
                || exits.hlt != 1
                || exits.total() != expected
                || counts.vmlaunch != 1
                || counts.vmresume != expected - 1
            {
                fail!(
                    "processor {index}: expected {iterations} CPUID, {iterations} VMCALL and 1 HLT exits from 1 VMLAUNCH and {} VMRESUME",
                    expected - 1
                );
            }
            self.exits += exits.total();
            if let Some(vmcs) = self.clear_vmcs(index, vmcs, None) {
                fail!(
                    "processor {index}: the VMCS at {:#x} is still current",
                    vmcs.physical_address()
                );
            }
        }
        self.leave_everywhere();
    }

    /// The `vm-entry-checks` scenario.
    fn entry_checks(&mut self) {
        let target = self.count() - 1;
        self.enter_everywhere();
        let (description, capabilities) = self.describe(target);
        let failed = entry_checks::check(&description, &capabilities);
        if let Some(rule) = failed.first() {
            fail!("processor {target}: the minimal guest's VMCS breaks {rule}");
        }
        for &rule in &entry_checks::BREAKABLE {
            let Some(broken) = entry_checks::break_rule(rule, &description) else {
                fail!("vmx-core cannot break {}", rule.name())
            };
            self.differential(
                target,
                rule.name(),
                &description,
                &broken,
                &capabilities,
                &[rule],
            );
        }
        // "Entry to SMM" breaks a control rule and a guest-state rule: the
        // controls are checked first.
        let mut smm = description;
        smm.controls.entry |= controls::entry::ENTRY_TO_SMM;
        self.differential(
            target,
            ENTRY_TO_SMM_CASE,
            &description,
            &smm,
            &capabilities,
            &[Rule::EntryToSmmOutsideSmm, Rule::GuestSmiBlocking],
        );
        self.leave_everywhere();
    }

    /// One differential case on processor `target`: `broken` differs from
    /// `description` (which vmx-core accepts) in one field and breaks
    /// exactly `rules`. vmx-core's checker must name those rules;
    /// `description` goes through `Vmcs::configure` with that one VMWRITE
    /// overridden; VMLAUNCH must fail as the SDM says for the first of
    /// them in the processor's order, or as [`bochs_deviation`] records;
    /// and the VMCS read back from the processor (VMREAD of every field)
    /// must break the same rules.
    fn differential(
        &mut self,
        target: usize,
        case: &str,
        description: &VmcsDescription,
        broken: &VmcsDescription,
        capabilities: &EntryCapabilities,
        rules: &[Rule],
    ) {
        let named = entry_checks::check(broken, capabilities);
        if named.len() != rules.len() || !rules.iter().all(|&rule| named.contains(rule)) {
            fail!(
                "{case}: vmx-core's checker names {} rules of the broken VMCS, first {:?}; expected {rules:?}",
                named.len(),
                named.first()
            );
        }
        let Some((field, value)) = description.differing_field(broken) else {
            fail!("{case}: breaking it changes more than one field")
        };
        let sdm = match named.failure() {
            Some(EntryFailure::VmFailValid(error)) => EntryOutcome::FailValid(error),
            Some(EntryFailure::ExitReason {
                reason,
                qualification,
            }) => EntryOutcome::EntryFailure {
                reason,
                qualification,
            },
            None => fail!("{case}: no failure for a broken VMCS"),
        };
        let mut vmcs = self.load_vmcs(target);
        self.platform.inject(
            target,
            Injection::OverrideField {
                field: field.encoding(),
                value,
            },
        );
        let mut outcome = None;
        let ran = self.platform.run_on(target, &mut |cpu| {
            outcome = Some(
                vmcs.configure(cpu, description, capabilities)
                    .and_then(|()| vmcs.enter(cpu, &mut GuestRegisters::default()))
                    .and_then(|outcome| {
                        // What the processor holds, read back.
                        let held = vmcs.read_description(cpu, description)?;
                        Ok((outcome, held))
                    }),
            );
        });
        self.platform.uninject();
        let (outcome, held) = match (ran, outcome) {
            (Ok(()), Some(Ok(outcome))) => outcome,
            (_, Some(Err(error))) => fail!("{case}: {error}"),
            _ => fail!("processor {target} is unavailable"),
        };
        // Unless the guest ran (and its exit rewrote the guest-state area),
        // the processor's copy breaks exactly the same rules.
        if !matches!(outcome, EntryOutcome::Exit(_)) {
            let held_rules = entry_checks::check(&held, capabilities);
            if held_rules != named {
                fail!(
                    "{case}: the VMCS read back from the processor breaks {} rules, first {:?}; the one vmx-core broke, {} ({:?})",
                    held_rules.len(),
                    held_rules.first(),
                    named.len(),
                    named.first()
                );
            }
        }
        let first = named.iter().next().map_or("", Rule::name);
        match bochs_deviation(case) {
            None if outcome == sdm => println!(
                "{case}: {field} written as {value:#x}: VMLAUNCH gave {outcome}, as the SDM says; vmx-core names {first} ({} rule(s))",
                named.len()
            ),
            None => fail!(
                "{case}: {field} written as {value:#x}: VMLAUNCH gave {outcome}, the SDM says {sdm}"
            ),
            Some(deviation) if deviation.matches(&outcome) => println!(
                "{case}: {field} written as {value:#x}: VMLAUNCH gave {outcome}; the SDM says {sdm}: \
                 Bochs deviates, as recorded ({}); vmx-core follows the SDM and names {first} ({} rule(s))",
                deviation.why,
                named.len()
            ),
            Some(deviation) => fail!(
                "{case}: {field} written as {value:#x}: VMLAUNCH gave {outcome}; the SDM says {sdm}, \
                 and Bochs was recorded to deviate ({})",
                deviation.why
            ),
        }
        if let Some(vmcs) = self.clear_vmcs(target, vmcs, None) {
            fail!(
                "processor {target}: the VMCS at {:#x} is still current",
                vmcs.physical_address()
            );
        }
    }

    /// Runs vmx-core's diagnosis on every processor through a recorder and
    /// prints what it read as a `vmx-dump/1` document. Changes nothing.
    fn dump(&mut self) {
        let mut captures = [const { Capture::new() }; MAX_PROCESSORS];
        for (index, capture) in captures.iter_mut().enumerate().take(self.count()) {
            let ran = self.platform.run_on(index, &mut |cpu| {
                let mut recorder =
                    Recorder::new(CpuObserver(cpu), |observation| capture.record(observation));
                diagnose(&mut recorder);
            });
            if ran.is_err() {
                fail!("processor {index} is unavailable");
            }
            if capture.dropped() > 0 {
                fail!(
                    "processor {index}: {} answers did not fit in the dump's capture",
                    capture.dropped()
                );
            }
        }
        dump::print(&captures[..self.count()]);
    }

    /// Checks that the machine is as it was `before`, with
    /// IA32_FEATURE_CONTROL as `rule` says, then passes.
    fn finish(mut self, before: &Registers, name: &str, rule: FeatureControlRule) -> ! {
        let after = self.registers("after");
        for index in 0..self.count() {
            if after.cr0[index] != before.cr0[index] || after.cr4[index] != before.cr4[index] {
                fail!(
                    "processor {index}: CR0/CR4 {:#x}/{:#x} after, {:#x}/{:#x} before",
                    after.cr0[index],
                    after.cr4[index],
                    before.cr0[index],
                    before.cr4[index]
                );
            }
            let (was, is) = (before.feature_control[index], after.feature_control[index]);
            let expected = match rule {
                FeatureControlRule::LockedExcept { processor, value } if processor == index => {
                    Some(value)
                }
                FeatureControlRule::Locked | FeatureControlRule::LockedExcept { .. } => {
                    if was != Some(0) {
                        fail!(
                            "processor {index}: IA32_FEATURE_CONTROL was {} at first, expected 0x0 (unlocked)",
                            Reading(was)
                        );
                    }
                    Some(LOCKED_FOR_VMX)
                }
                FeatureControlRule::UnchangedOrLocked
                    if was.is_some_and(|value| value & FeatureControlFlags::LOCK.bits() == 0)
                        && is == Some(LOCKED_FOR_VMX) =>
                {
                    // vmx-core locks an unlocked MSR on first use.
                    is
                }
                FeatureControlRule::UnchangedOrLocked => was,
            };
            if is != expected {
                fail!(
                    "processor {index}: IA32_FEATURE_CONTROL {} after, {} before; expected {}",
                    Reading(is),
                    Reading(was),
                    Reading(expected)
                );
            }
        }
        let lock = rule == FeatureControlRule::Locked;
        if lock {
            println!(
                "IA32_FEATURE_CONTROL went from 0x0 to {LOCKED_FOR_VMX:#x} on every processor"
            );
        }
        if let Some(index) = self.slots.iter().position(Processor::is_entered) {
            fail!("processor {index} is still in VMX operation");
        }
        if self.pool.in_use() != 0 {
            fail!("{} VMXON region pages were not freed", self.pool.in_use());
        }
        let counts = self.platform.counts();
        println!(
            "CR0 and CR4 equal before and after on every processor; \
             IA32_FEATURE_CONTROL as expected; every page freed"
        );
        exit::pass(format_args!(
            "{name} processors={} entered={} left={}{}",
            self.count(),
            counts.vmxon_succeeded,
            counts.vmxoff_succeeded,
            Exits(self.exits)
        ))
    }
}

/// The differential case with "entry to SMM" set.
const ENTRY_TO_SMM_CASE: &str = "entry-to-smm";

/// How Bochs 2.7 answers a differential case where it departs from the
/// SDM (`docs/src/vmcs.md` records each): the test requires exactly this
/// answer, so that a Bochs that changes shows.
#[derive(Debug, Clone, Copy)]
struct Deviation {
    /// Bochs' answer: VM entry fails this way, or succeeds and the guest
    /// exits for this reason.
    bochs: BochsAnswer,
    /// Why, from Bochs' own checks.
    why: &'static str,
}

#[derive(Debug, Clone, Copy)]
enum BochsAnswer {
    Fails(EntryOutcome),
    EntersAndExits(BasicExitReason),
}

impl Deviation {
    fn matches(&self, outcome: &EntryOutcome) -> bool {
        match (self.bochs, outcome) {
            (BochsAnswer::Fails(expected), outcome) => expected == *outcome,
            (BochsAnswer::EntersAndExits(reason), EntryOutcome::Exit(exit)) => {
                exit.reason == reason
            }
            (BochsAnswer::EntersAndExits(_), _) => false,
        }
    }
}

/// The differential cases in which Bochs 2.7 departs from the SDM.
fn bochs_deviation(case: &str) -> Option<Deviation> {
    match case {
        "guest-rip" => Some(Deviation {
            bochs: BochsAnswer::EntersAndExits(BasicExitReason::ExceptionOrNmi),
            why: "Bochs checks the guest RIP only outside 64-bit code (bits 63:32 zero), not that \
                  bits 63:N are identical in 64-bit code: it enters the guest, whose first \
                  instruction fetch raises #GP, a VM exit",
        }),
        ENTRY_TO_SMM_CASE => Some(Deviation {
            bochs: BochsAnswer::Fails(EntryOutcome::EntryFailure {
                reason: BasicExitReason::InvalidGuestState,
                qualification: 0,
            }),
            why: "Bochs does not check \"entry to SMM\" among the VM-entry controls; it fails \
                  the guest-state check that blocking by SMI must then be 1",
        }),
        _ => None,
    }
}

/// The minimal guest's VMCS for processor `index`, on that processor.
fn describe_minimal<C: Cpu>(
    cpu: &mut C,
    index: usize,
) -> Result<(VmcsDescription, EntryCapabilities), Error> {
    VmcsDescription::minimal_64bit(cpu, guest::entry(), guest::stack_top(index))
}

/// R15 of the guest, which it never touches: it must survive every exit.
const GUEST_R15: u64 = 0x0123_4567_89ab_cdef;

/// The VM exits of one guest run, by reason.
#[derive(Debug, Clone, Copy, Default)]
struct ExitCounts {
    cpuid: usize,
    vmcall: usize,
    hlt: usize,
}

impl ExitCounts {
    fn total(&self) -> usize {
        self.cpuid + self.vmcall + self.hlt
    }
}

/// Writes `description` (after vmx-core's checks) to the current `vmcs`
/// and runs the guest (`iterations` CPUID and VMCALL) until its HLT, where
/// its registers must show every CPUID answer received and R15 intact: each CPUID exit is emulated with the
/// host's CPUID, each CPUID and VMCALL skipped, and the guest resumed.
fn run_guest<C: Cpu>(
    cpu: &mut C,
    vmcs: &mut Vmcs<PoolPage>,
    description: &VmcsDescription,
    capabilities: &EntryCapabilities,
    iterations: u64,
) -> Result<ExitCounts, Error> {
    vmcs.configure(cpu, description, capabilities)?;
    let mut registers = GuestRegisters {
        r12: iterations,
        r13: 0,
        r15: GUEST_R15,
        ..GuestRegisters::default()
    };
    let vendor_ebx = u64::from(cpu.cpuid(0, 0).ebx);
    let mut counts = ExitCounts::default();
    loop {
        let exit = match vmcs.enter(cpu, &mut registers)? {
            EntryOutcome::Exit(exit) => exit,
            other => fail!("VM entry: {other}"),
        };
        match exit.reason {
            BasicExitReason::Cpuid => {
                counts.cpuid += 1;
                let result = cpu.cpuid(registers.rax as u32, registers.rcx as u32);
                registers.rax = u64::from(result.eax);
                registers.rbx = u64::from(result.ebx);
                registers.rcx = u64::from(result.ecx);
                registers.rdx = u64::from(result.edx);
            }
            BasicExitReason::Vmcall => counts.vmcall += 1,
            BasicExitReason::Hlt => {
                counts.hlt += 1;
                let sum = vendor_ebx.wrapping_mul(iterations);
                if (registers.r12, registers.r13, registers.r15) != (0, sum, GUEST_R15) {
                    fail!(
                        "at the guest's HLT: R12 {:#x}, R13 {:#x}, R15 {:#x}; expected 0, {sum:#x} \
                         ({iterations} times CPUID.0:EBX {vendor_ebx:#x}) and {GUEST_R15:#x}",
                        registers.r12,
                        registers.r13,
                        registers.r15
                    );
                }
                return Ok(counts);
            }
            other => fail!(
                "unexpected VM exit: {other} at guest RIP {:#x}",
                exit.guest_rip
            ),
        }
        vmcs.skip_instruction(cpu, &exit)?;
    }
}

/// Whether `error` is how vmx-core must refuse to enter on a machine with
/// diagnosis `verdict`: vmx-core's own mapping decides (the kernel holds
/// no VMX knowledge). Without a processor identity at hand, a refusal for
/// a clear VMX bit maps to `no-vmx`, which stands for `nested-unavailable`
/// too.
fn refusal_matches(verdict: Verdict, error: Error) -> bool {
    let refused = Verdict::of(&vmx_core::Decision::Refuse(error), None);
    refused == verdict || (verdict == Verdict::NestedUnavailable && refused == Verdict::NoVmx)
}
