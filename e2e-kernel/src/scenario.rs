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

use core::fmt;

use vmx_core::diagnosis::Recorder;
use vmx_core::feature_control::{FeatureControlFlags, IA32_FEATURE_CONTROL};
use vmx_core::inject::Injection;
use vmx_core::{
    Cpu, CpuObserver, Error, Fault, Instruction, Processor, ProcessorError, Processors, Verdict,
    diagnose,
};

use crate::dump::{self, Capture};
use crate::pages::{PagePool, PoolPage};
use crate::platform::VmxProcessors;
use crate::smp::{self, MAX_PROCESSORS};
use crate::{exit, println};

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
    /// Entering a second time is refused, without a fault.
    EnterTwice,
    /// Leaving without having entered is refused, without a fault.
    LeaveWithoutEnter,
    /// Prints what vmx-core's diagnosis reads on every processor as a
    /// `vmx-dump/1` document ([`dump`]); enters nothing.
    Dump,
}

/// The command line names no known scenario or verdict.
#[derive(Debug, Clone, Copy)]
pub struct BadCommandLine<'a>(&'a str);

impl fmt::Display for BadCommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad command line {:?}: expected scenario=enter-leave [expect=VERDICT] \
             [feature-control=unlocked], scenario=fault-wrong-revision-id, \
             scenario=fault-drop-vmxe, scenario=fault-enter-twice, \
             scenario=fault-leave-without-enter or scenario=dump",
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
            "fault-wrong-revision-id" => Ok(Self::WrongRevisionId),
            "fault-drop-vmxe" => Ok(Self::DropVmxe),
            "fault-enter-twice" => Ok(Self::EnterTwice),
            "fault-leave-without-enter" => Ok(Self::LeaveWithoutEnter),
            "dump" => Ok(Self::Dump),
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
        };
        let before = test.registers("before");
        let verdict = test.diagnose();
        if !matches!(self, Self::EnterLeave { .. } | Self::Dump) && verdict != Verdict::Ready {
            fail!(
                "{} needs a VT-x processor; the diagnosis is {verdict}",
                self.name()
            );
        }
        match self {
            Self::EnterLeave { expect, .. } => test.enter_leave(verdict, expect),
            Self::WrongRevisionId => test.injected_failure(
                Injection::WrongRevisionId,
                Error::VmFailInvalid {
                    instruction: Instruction::Vmxon,
                },
            ),
            Self::DropVmxe => test.injected_failure(
                Injection::DropVmxe,
                Error::Faulted {
                    instruction: Instruction::Vmxon,
                    fault: Fault::InvalidOpcode,
                },
            ),
            Self::EnterTwice => test.enter_twice(),
            Self::LeaveWithoutEnter => test.leave_without_enter(),
            Self::Dump => test.dump(),
        }
        let lock = matches!(self, Self::EnterLeave { unlocked: true, .. });
        test.finish(&before, self.name(), lock)
    }

    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::EnterLeave { .. } => "enter-leave",
            Self::WrongRevisionId => "fault-wrong-revision-id",
            Self::DropVmxe => "fault-drop-vmxe",
            Self::EnterTwice => "fault-enter-twice",
            Self::LeaveWithoutEnter => "fault-leave-without-enter",
            Self::Dump => "dump",
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

/// IA32_FEATURE_CONTROL as vmx-core locks an unlocked one outside SMX:
/// lock and VMX outside SMX (0x5).
const LOCKED_FOR_VMX: u64 =
    FeatureControlFlags::LOCK.bits() | FeatureControlFlags::VMX_OUTSIDE_SMX.bits();

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
        self.platform.inject(target, injection);
        let expected = ProcessorError {
            processor: target,
            error: expected,
        };
        match self.enter_all() {
            Err(error) if error == expected => {
                println!("entering failed as it must: {error}");
            }
            Ok(entered) => fail!(
                "entering succeeded on {entered} processors despite {}",
                injection.name()
            ),
            Err(error) => fail!("entering failed with \"{error}\", expected \"{expected}\""),
        }
        let counts = self.platform.counts();
        if counts.vmxon_succeeded != target || counts.vmxoff_succeeded != target {
            fail!(
                "{} processors entered and {} left; expected the {target} before processor {target} to enter and leave",
                counts.vmxon_succeeded,
                counts.vmxoff_succeeded
            );
        }
        println!(
            "rolled back: {} processors entered and left again",
            counts.vmxoff_succeeded
        );
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

    /// Checks that the machine is as it was `before` (with `lock`,
    /// IA32_FEATURE_CONTROL must have gone from unlocked to locked for VMX),
    /// then passes.
    fn finish(mut self, before: &Registers, name: &str, lock: bool) -> ! {
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
            let expected = if lock {
                if was != Some(0) {
                    fail!(
                        "processor {index}: IA32_FEATURE_CONTROL was {} at first, expected 0x0 (unlocked)",
                        Reading(was)
                    );
                }
                Some(LOCKED_FOR_VMX)
            } else if was.is_some_and(|value| value & FeatureControlFlags::LOCK.bits() == 0)
                && is == Some(LOCKED_FOR_VMX)
            {
                // vmx-core locks an unlocked MSR on first use.
                is
            } else {
                was
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
            "{name} processors={} entered={} left={}",
            self.count(),
            counts.vmxon_succeeded,
            counts.vmxoff_succeeded
        ))
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
