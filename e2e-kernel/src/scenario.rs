//! The test scenarios, chosen on the kernel command line (`scenario=NAME`).

use core::fmt;

use crate::smp::Processors;
use crate::{exit, println};

/// A test scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Boot every processor and check that `run_on` reaches the right one.
    Boot,
}

/// The command line names no known scenario.
#[derive(Debug, Clone, Copy)]
pub struct UnknownScenario<'a>(&'a str);

impl fmt::Display for UnknownScenario<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scenario {:?} (expected scenario=boot)", self.0)
    }
}

impl Scenario {
    /// The scenario a command line such as `scenario=boot` selects.
    ///
    /// # Errors
    /// [`UnknownScenario`] when there is no `scenario=` word or it names no
    /// scenario.
    pub fn from_command_line(command_line: &str) -> Result<Self, UnknownScenario<'_>> {
        let name = command_line
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix("scenario="))
            .unwrap_or("");
        match name {
            "boot" => Ok(Self::Boot),
            other => Err(UnknownScenario(other)),
        }
    }

    /// Runs the scenario and ends the run with its result.
    pub fn run(self, processors: &mut Processors) -> ! {
        match self {
            Self::Boot => boot(processors),
        }
    }
}

/// Runs a small piece of work on every processor and checks that each ran
/// where it was sent.
fn boot(processors: &mut Processors) -> ! {
    let lapic = processors.lapic();
    for index in 0..processors.count() {
        let expected = processors.apic_id(index).unwrap_or_default();
        let mut seen = None;
        if processors.run_on(index, &mut || seen = Some(lapic.id())).is_err() {
            exit::fail(format_args!("processor {index} unavailable"));
        }
        println!("processor {index}: APIC ID {seen:?}, expected {expected}");
        if seen != Some(expected) {
            exit::fail(format_args!("work for processor {index} ran on APIC ID {seen:?}"));
        }
    }
    exit::pass(format_args!("boot processors={}", processors.count()))
}
