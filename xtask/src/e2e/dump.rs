//! The dump cases: the kernel's `dump` scenario prints what vmx-core's
//! diagnosis read on every processor as a `vmx-dump/1` document between two
//! marker lines (`e2e-kernel/src/dump.rs`). Here the runner takes it out of
//! the serial log, names the machine in its `"source"` (the kernel cannot
//! tell which emulator, CPU model or firmware it runs on), checks its shape
//! and replays it through the checker, `vmx-check check --replay FILE
//! --json`, whose verdict must be the one the case expects.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::matrix::Machine;

/// The line before the document (`e2e-kernel/src/dump.rs`).
const BEGIN: &str = "VMX-DUMP BEGIN";
/// The line after it.
const END: &str = "VMX-DUMP END";
/// The `"source"` the kernel writes: only its own name.
const KERNEL_SOURCE: &str = "e2e-kernel dump scenario";
/// The value of `"format"`.
const FORMAT: &str = "vmx-dump/1";

/// The document between the marker lines of `serial`.
///
/// # Errors
/// When a marker is missing or appears twice.
pub fn extract(serial: &str) -> Result<String> {
    let lines: Vec<&str> = serial.lines().map(str::trim_end).collect();
    let position = |marker: &str| {
        let mut found = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| **line == marker);
        match (found.next(), found.next()) {
            (Some((index, _)), None) => Ok(index),
            (None, _) => bail!("no \"{marker}\" line in the serial output"),
            (Some(_), Some(_)) => bail!("\"{marker}\" appears more than once"),
        }
    };
    let (begin, end) = (position(BEGIN)?, position(END)?);
    ensure!(begin < end, "\"{END}\" comes before \"{BEGIN}\"");
    Ok(lines[begin + 1..end].join("\n"))
}

/// Checks that `text` is a `vmx-dump/1` document with the kernel's source
/// and processors `0..cpus` in order, each with CPUID answers, and returns
/// it pretty-printed with `source` as its `"source"`.
///
/// # Errors
/// When `text` is not JSON or not of that shape.
pub fn complete(text: &str, source: &str, cpus: u32) -> Result<String> {
    let mut document: Value = serde_json::from_str(text).context("the dump is not valid JSON")?;
    let top = document
        .as_object_mut()
        .context("the dump is not a JSON object")?;
    ensure!(
        top.get("format").and_then(Value::as_str) == Some(FORMAT),
        "the dump's \"format\" is not \"{FORMAT}\""
    );
    ensure!(
        top.get("source").and_then(Value::as_str) == Some(KERNEL_SOURCE),
        "the dump's \"source\" is not \"{KERNEL_SOURCE}\""
    );
    let listed = top
        .get("cpus")
        .and_then(Value::as_array)
        .context("the dump has no \"cpus\" list")?;
    ensure!(
        listed.len() == usize::try_from(cpus)?,
        "the dump lists {} processors, the machine has {cpus}",
        listed.len()
    );
    for (index, cpu) in listed.iter().enumerate() {
        ensure!(
            cpu.get("cpu").and_then(Value::as_u64) == Some(u64::try_from(index)?),
            "the dump's processor {index} is not numbered {index}"
        );
        ensure!(
            cpu.get("cpuid")
                .and_then(Value::as_array)
                .is_some_and(|leaves| !leaves.is_empty()),
            "the dump has no CPUID answers for processor {index}"
        );
    }
    top.insert("source".to_owned(), Value::String(source.to_owned()));
    let mut pretty = serde_json::to_string_pretty(&document)?;
    pretty.push('\n');
    Ok(pretty)
}

/// The `"source"` of a dump taken on `machine`, e.g. `Bochs 2.7
/// corei7_skylake_x, 2 processors, BIOS-bochs-latest, e2e-kernel dump
/// scenario`. `bochs_log` is Bochs' log of the run, whose first line names
/// its version.
pub fn source(machine: &Machine, bochs_log: &str) -> String {
    match machine {
        Machine::Bochs {
            model,
            cpus,
            firmware,
        } => {
            let version = bochs_log
                .lines()
                .find_map(|line| line.split("Bochs x86 Emulator ").nth(1))
                .map_or_else(String::new, |version| format!(" {}", version.trim()));
            format!(
                "Bochs{version} {model}, {cpus} processor{}, {}, {KERNEL_SOURCE}",
                if *cpus == 1 { "" } else { "s" },
                firmware.rom_name()
            )
        }
        Machine::QemuTcg { cpus } => format!(
            "QEMU TCG qemu64,vendor=GenuineIntel, {cpus} processor{}, {KERNEL_SOURCE}",
            if *cpus == 1 { "" } else { "s" }
        ),
    }
}

/// Builds the checker (`user-app`), so that the replays that follow only
/// run it.
///
/// # Errors
/// When it does not build: every dump case then fails with this reason.
pub fn build_checker(repo: &Path) -> Result<()> {
    let status = cargo(repo)
        .args(["build", "-q", "-p", "user-app"])
        .stdin(Stdio::null())
        .status()
        .context("running cargo build -p user-app")?;
    ensure!(
        status.success(),
        "the checker does not build (cargo build -p user-app: {status}); its errors are above"
    );
    Ok(())
}

/// Replays the dump `file` through the checker (`cargo run -q -p user-app
/// -- check --replay FILE --json`) and requires the verdict `expect`.
///
/// # Errors
/// When the checker cannot run, refuses the dump, or gives another verdict.
pub fn replay(repo: &Path, file: &Path, expect: &str) -> Result<()> {
    let output = cargo(repo)
        .args(["run", "-q", "-p", "user-app", "--", "check", "--replay"])
        .arg(file)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .context("running the checker (cargo run -p user-app)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "the checker printed no JSON report ({}): {}",
            output.status,
            stderr.trim()
        )
    })?;
    let verdict = report
        .get("verdict")
        .and_then(Value::as_str)
        .context("the checker's report has no \"verdict\"")?;
    ensure!(
        verdict == expect,
        "the checker's verdict for the dump is {verdict}, expected {expect}"
    );
    // Its exit status 0 means `ready`, anything else another verdict.
    ensure!(
        output.status.success() == (verdict == "ready"),
        "the checker's verdict {verdict} disagrees with its exit status ({})",
        output.status
    );
    Ok(())
}

fn cargo(repo: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command.current_dir(repo);
    command
}

#[cfg(test)]
mod tests {
    use super::super::matrix::Firmware;
    use super::*;

    const DOCUMENT: &str = r#"{
  "format": "vmx-dump/1",
  "source": "e2e-kernel dump scenario",
  "cpus": [
    {
      "cpu": 0,
      "cpuid": [
        { "leaf": "0x1", "subleaf": "0x0", "eax": "0x50654", "ebx": "0x0", "ecx": "0x77faf3bf", "edx": "0xbfebfbff" }
      ],
      "msrs": {
        "0x3a": "0x5",
        "0x48c": null
      },
      "cr0": "0x80000031",
      "cr4": "0x2020"
    }
  ]
}"#;

    fn serial(document: &str) -> String {
        format!("booted\r\n{BEGIN}\r\n{document}\r\n{END}\r\nE2E RESULT: PASS dump\r\n")
    }

    #[test]
    fn extract_takes_the_lines_between_the_markers() {
        assert_eq!(extract(&serial(DOCUMENT)).unwrap(), DOCUMENT);
    }

    #[test]
    fn extract_needs_both_markers_once() {
        assert!(extract("booted\nE2E RESULT: FAIL x\n").is_err());
        assert!(extract(&format!("{BEGIN}\n{{}}\n")).is_err());
        assert!(extract(&format!("{BEGIN}\n{BEGIN}\n{{}}\n{END}\n")).is_err());
        assert!(extract(&format!("{END}\n{{}}\n{BEGIN}\n")).is_err());
    }

    #[test]
    fn complete_names_the_machine_and_keeps_the_values() {
        let text = complete(DOCUMENT, "Bochs 2.7 x, e2e-kernel dump scenario", 1).unwrap();
        let document: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(document["source"], "Bochs 2.7 x, e2e-kernel dump scenario");
        assert_eq!(document["cpus"][0]["msrs"]["0x3a"], "0x5");
        assert_eq!(document["cpus"][0]["msrs"]["0x48c"], Value::Null);
        // The kernel's key order is kept: "format" first.
        assert!(text.trim_start().starts_with("{\n  \"format\""));
    }

    #[test]
    fn complete_refuses_a_wrong_processor_count_or_bad_json() {
        assert!(complete(DOCUMENT, "x", 2).is_err());
        assert!(complete(&DOCUMENT.replace("\"cpu\": 0", "\"cpu\": 1"), "x", 1).is_err());
        assert!(
            complete(
                &DOCUMENT.replace("},\n      \"cr0\"", "}\n      \"cr0\""),
                "x",
                1
            )
            .is_err()
        );
        assert!(complete(&DOCUMENT.replace("vmx-dump/1", "vmx-dump/2"), "x", 1).is_err());
    }

    #[test]
    fn source_names_emulator_model_processors_and_firmware() {
        let machine = Machine::Bochs {
            model: "corei7_skylake_x".into(),
            cpus: 2,
            firmware: Firmware::BochsBios,
        };
        let log =
            "00000000000i[      ] Bochs x86 Emulator 2.7\n00000000000i[      ]   Built from SVN";
        assert_eq!(
            source(&machine, log),
            "Bochs 2.7 corei7_skylake_x, 2 processors, BIOS-bochs-latest, e2e-kernel dump scenario"
        );
        let unlocked = Machine::Bochs {
            model: "tigerlake".into(),
            cpus: 1,
            firmware: Firmware::SeaBios,
        };
        assert_eq!(
            source(&unlocked, ""),
            "Bochs tigerlake, 1 processor, SeaBIOS bios.bin, e2e-kernel dump scenario"
        );
    }
}
