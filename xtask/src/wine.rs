//! `cargo xtask wine`: nt-driver loaded by Wine and driven end to end.
//!
//! Builds the Wine test image (`wine-driver/`: nt-driver's own sources
//! against wdk-sys names generated from mingw-w64's headers, with the
//! test-only substitutes), the project's `vmx-check.exe` and a raw Win32
//! client for x86_64-pc-windows-gnu, and the Linux `vmx-check`; creates a
//! Wine prefix in `target/wine/prefix`; installs the image as a
//! SERVICE_KERNEL_DRIVER, starts it, runs the suite, stops it (DriverUnload)
//! and deletes the service. One line per case, `PASS <name>`,
//! `FAIL <name>` (with what was seen and the driver's DbgPrintEx lines of
//! the case) or `SKIP <name>: <reason>`, then `N passed, M failed` alone on
//! a line; the exit status is non-zero when any case failed.
//!
//! Every Wine command has a timeout: a hang fails its case instead of
//! blocking CI. No case may reach a privileged write (VMXON or WRMSR
//! crash Wine's driver host): on a host whose CPUID reports VMX, `on` is a
//! SKIP. docs/src/windows/not-compiled-here.md says what this proves.

mod session;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use session::{Run, Session, WINDOWS_DIR};

/// The service's name, and the image's file name (a test build without
/// the SDDL).
const SERVICE: &str = "nt_driver_wine";
const IMAGE: &str = "nt_driver_wine_test_no_sddl.sys";
const CLIENT: &str = "wine-client.exe";
const CHECKER: &str = "vmx-check.exe";

/// The substitutes of `wine-driver/substitutes`: the image must define
/// each, never import it.
const SUBSTITUTED: &[&str] = &[
    "WdmlibIoCreateDeviceSecure",
    "KeGetProcessorNumberFromIndex",
    "KeSetSystemGroupAffinityThread",
    "KeRevertToUserGroupAffinityThread",
    "MmAllocateContiguousMemorySpecifyCache",
    "MmAllocateContiguousNodeMemory",
    "MmFreeContiguousMemory",
    "ExAllocatePool2",
    "ExCreateCallback",
    "ExRegisterCallback",
    "ExUnregisterCallback",
    "ExNotifyCallback",
    "ObfDereferenceObject",
    "IofCompleteRequest",
];

/// A short request's time limit; longer ones say theirs.
const SHORT: Duration = Duration::from_secs(30);

/// Environment variables that would replace the config files' rustflags.
const FLAG_VARIABLES: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
];

/// What the builds produced.
#[derive(Debug)]
struct Artifacts {
    image: PathBuf,
    client: PathBuf,
    checker: PathBuf,
    prng: PathBuf,
    linux_checker: PathBuf,
}

/// How a case ended.
#[derive(Debug)]
enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

/// `$CARGO` in `dir`, with the configuration files' rustflags in force
/// and the default target folder (whose paths [`build`] knows).
pub fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(dir).env_remove("CARGO_TARGET_DIR");
    for name in FLAG_VARIABLES {
        command.env_remove(name);
    }
    command
}

fn build_step(name: &str, command: &mut Command) -> Result<()> {
    eprintln!("+ {name}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        status.success(),
        "{name} failed ({status}); its errors are above"
    );
    Ok(())
}

/// Builds the image, the two Windows programs, the Linux checker and the
/// ProcessPrng stand-in.
fn build(repo: &Path, out: &Path) -> Result<Artifacts> {
    let wine = repo.join("wine-driver");
    build_step(
        "the Wine test image (wine-driver: nt-driver for x86_64-pc-windows-msvc)",
        cargo(&wine).args([
            "build",
            "-q",
            "-p",
            "nt-driver-wine-test-no-sddl",
            "--target",
            "x86_64-pc-windows-msvc",
        ]),
    )?;
    build_step(
        "the raw Win32 client (x86_64-pc-windows-gnu)",
        cargo(&wine).args([
            "build",
            "-q",
            "-p",
            "wine-client",
            "--target",
            "x86_64-pc-windows-gnu",
        ]),
    )?;
    build_step(
        "vmx-check.exe (user-app for x86_64-pc-windows-gnu)",
        cargo(repo)
            .args([
                "build",
                "-q",
                "-p",
                "user-app",
                "--target",
                "x86_64-pc-windows-gnu",
            ])
            // Debian's mingw-w64 linker, for this build only.
            .env(
                "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER",
                "x86_64-w64-mingw32-gcc",
            ),
    )?;
    build_step(
        "the Linux vmx-check (user-app)",
        cargo(repo).args(["build", "-q", "-p", "user-app"]),
    )?;
    fs::create_dir_all(out)?;
    let prng = out.join("bcryptprimitives.dll");
    build_step(
        "the test-only bcryptprimitives.dll (wine-driver/prng)",
        Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-shared", "-o"])
            .arg(&prng)
            .arg(wine.join("prng/bcryptprimitives.c"))
            .arg("-ladvapi32"),
    )?;
    Ok(Artifacts {
        image: wine.join("target/x86_64-pc-windows-msvc/debug/nt_driver_wine_test_no_sddl.dll"),
        client: wine.join("target/x86_64-pc-windows-gnu/debug/wine-client.exe"),
        checker: repo.join("target/x86_64-pc-windows-gnu/debug/vmx-check.exe"),
        prng,
        linux_checker: repo.join("target/debug/vmx-check"),
    })
}

/// What the host's CPU says (CPUID, and Linux's /proc/cpuinfo): the cases
/// that depend on it.
#[derive(Debug)]
struct Host {
    processors: usize,
    intel: bool,
    vmx: bool,
}

impl Host {
    fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_facts(&cpuinfo, cpuid())
    }

    /// The host from `/proc/cpuinfo`'s text and, where it can run, CPUID
    /// (vendor, leaf 1 ECX) on this processor.
    ///
    /// Whether VMX is there is CPUID's answer, as vmx-core and the Wine
    /// client read it, not /proc/cpuinfo's `vmx` flag: Linux clears that
    /// flag when firmware left VMX disabled in IA32_FEATURE_CONTROL, and
    /// then vmx-core, seeing CPUID.1:ECX.VMX set, would go on under Wine to
    /// the MSR and VMXON, which crash the driver host. The flag decides
    /// only where CPUID cannot run (not x86-64).
    fn from_facts(cpuinfo: &str, cpuid: Option<(String, u32)>) -> Self {
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        // Wine counts the online processors, as /proc/cpuinfo lists them
        // (not the affinity or the cgroup quota the Rust standard library
        // would take into account).
        let listed = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        Self {
            processors: if listed > 0 {
                listed
            } else {
                std::thread::available_parallelism().map_or(1, usize::from)
            },
            intel: cpuid.as_ref().map_or_else(
                || field("vendor_id") == "GenuineIntel",
                |(vendor, _)| vendor == "GenuineIntel",
            ),
            vmx: cpuid.as_ref().map_or_else(
                || field("flags").split_whitespace().any(|f| f == "vmx"),
                |&(_, ecx)| ecx & (1 << 5) != 0,
            ),
        }
    }

    /// The start of vmx-core's reason for refusing ENTER here.
    fn refusal(&self) -> &'static str {
        if self.intel {
            "CPUID.1:ECX.VMX[bit 5] is clear"
        } else {
            "the processor is not Intel"
        }
    }
}

/// CPUID on the processor this runs on: the vendor string (leaf 0) and
/// leaf 1's ECX; `None` off x86-64.
fn cpuid() -> Option<(String, u32)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        let leaf0 = __cpuid(0);
        let vendor: Vec<u8> = [leaf0.ebx, leaf0.edx, leaf0.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        Some((
            String::from_utf8_lossy(&vendor).into_owned(),
            __cpuid(1).ecx,
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The suite's state between cases.
struct Suite {
    session: Session,
    artifacts: Artifacts,
    host: Host,
    out: PathBuf,
    /// `vmx-check.exe --json`'s verdict, for the dump comparison.
    json_verdict: Option<String>,
}

impl Suite {
    fn client(&mut self, args: &[&str], timeout: Duration) -> Result<Run> {
        self.session.wine(CLIENT, args, timeout)
    }

    fn checker(&mut self, args: &[&str]) -> Result<Run> {
        self.session.wine(CHECKER, args, SHORT)
    }

    /// A client command that must end `ok: ...`.
    fn client_ok(&mut self, args: &[&str], timeout: Duration) -> Result<Verdict> {
        let run = self.client(args, timeout)?;
        let last = run.stdout.lines().last().unwrap_or_default().to_owned();
        Ok(match (run.code, last.strip_prefix("ok: ")) {
            (Some(0), Some(summary)) => Verdict::Pass(summary.to_owned()),
            _ => Verdict::Fail(run.transcript()),
        })
    }

    /// A raw case, then the driver host must still answer.
    fn raw(&mut self, case: &str, timeout: Duration) -> Result<Verdict> {
        let verdict = self.client_ok(&["case", case], timeout)?;
        if !matches!(verdict, Verdict::Pass(_)) {
            return Ok(verdict);
        }
        match self.client_ok(&["case", "alive"], SHORT)? {
            Verdict::Pass(_) => Ok(verdict),
            Verdict::Fail(why) => Ok(Verdict::Fail(format!(
                "the case passed but the driver host does not answer afterwards:\n{why}"
            ))),
            skip @ Verdict::Skip(_) => Ok(skip),
        }
    }
}

/// Fails with `message` unless `condition`.
fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

fn verdict_of(result: Result<String, String>) -> Verdict {
    match result {
        Ok(summary) => Verdict::Pass(summary),
        Err(why) => Verdict::Fail(why),
    }
}

/// The DLLs and the functions an image imports, from `objdump -p`'s
/// import tables (`\tDLL Name: x.exe`, then `\t<hint-rva> <hint> <name>`
/// per function, up to the export or function tables).
fn import_table(objdump: &str) -> (Vec<&str>, Vec<&str>) {
    let dlls = objdump
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name: "))
        .collect();
    let imports = objdump
        .lines()
        .skip_while(|l| !l.contains("DLL Name:"))
        .take_while(|l| !l.contains("Export") && !l.contains("The Function Table"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() == 3
                && u64::from_str_radix(fields[0], 16).is_ok()
                && fields[1].parse::<u32>().is_ok())
            .then(|| fields[2])
        })
        .collect();
    (dlls, imports)
}

/// The image: the PE of a native driver whose imports are all Wine's
/// ntoskrnl.exe, none of them a substituted function.
fn image(suite: &mut Suite) -> Result<Verdict> {
    let output = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(&suite.artifacts.image)
        .output()
        .context("x86_64-w64-mingw32-objdump (binutils-mingw-w64)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (dlls, imports) = import_table(&text);
    Ok(verdict_of((|| {
        check(text.contains("(NT native)"), || {
            "the image's subsystem is not NT native".into()
        })?;
        check(dlls == ["ntoskrnl.exe"], || {
            format!("the image imports from {dlls:?}")
        })?;
        let substituted: Vec<&&str> = imports.iter().filter(|i| SUBSTITUTED.contains(i)).collect();
        check(substituted.is_empty(), || {
            format!("the image imports substituted functions {substituted:?}")
        })?;
        check(!imports.is_empty(), || {
            "no imports found in objdump's output".into()
        })?;
        Ok(format!(
            "NT native image, {} imports, all from ntoskrnl.exe, no substitute among them",
            imports.len()
        ))
    })()))
}

/// Install and start: DriverEntry announces the test build, creates the
/// device and the link, and says so; the device opens.
fn load(suite: &mut Suite) -> Result<Verdict> {
    let mark = suite.session.log_mark();
    let path = format!(r"{WINDOWS_DIR}\{IMAGE}");
    let install = suite.client_ok(&["install", SERVICE, &path], SHORT)?;
    if let Verdict::Fail(why) = install {
        return Ok(Verdict::Fail(format!("install: {why}")));
    }
    if let Verdict::Fail(why) = suite.client_ok(&["start", SERVICE], SHORT)? {
        return Ok(Verdict::Fail(format!("start: {why}")));
    }
    let alive = suite.client_ok(&["case", "alive"], SHORT)?;
    let lines = suite.session.driver_lines_since(mark);
    let processors = suite.host.processors;
    Ok(verdict_of((|| {
        check(
            lines
                .iter()
                .any(|l| l.contains("TEST BUILD") && l.contains("NO SDDL")),
            || "no test-build announcement in the driver log".into(),
        )?;
        let loaded = format!(
            "nt-driver: loaded: {processors} processors; \\\\.\\MyHypervisorDevice is ready"
        );
        check(lines.iter().any(|l| l.starts_with(&loaded)), || {
            format!("no `{loaded}` line in the driver log")
        })?;
        match alive {
            Verdict::Pass(_) => Ok(format!("announced the test build; {}", &loaded[11..])),
            Verdict::Fail(why) | Verdict::Skip(why) => {
                Err(format!("the device does not answer: {why}"))
            }
        }
    })()))
}

/// `vmx-check.exe check`: through the driver (its source line says so).
fn checker_check(suite: &mut Suite) -> Result<Verdict> {
    let run = suite.checker(&["check"])?;
    Ok(verdict_of((|| {
        check(run.code.is_some_and(|c| c <= 2), || run.transcript())?;
        check(run.stdout.contains("nt-driver QUERY"), || {
            format!(
                "the report does not come through the driver:\n{}",
                run.transcript()
            )
        })?;
        Ok(format!(
            "exit {} with the report through nt-driver's QUERY",
            run.code.unwrap_or(-1)
        ))
    })()))
}

/// `vmx-check.exe --json`: a vmx-report/1 object whose source is the
/// driver, with one entry per processor.
fn checker_json(suite: &mut Suite) -> Result<Verdict> {
    let run = suite.checker(&["--json"])?;
    let report: Result<Value, _> = serde_json::from_str(&run.stdout);
    let processors = suite.host.processors;
    let verdict = (|| {
        let report = report.map_err(|e| format!("not JSON ({e}):\n{}", run.transcript()))?;
        let source = report
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        check(source.contains("nt-driver QUERY"), || {
            format!("source is {source:?}")
        })?;
        let verdict = report
            .get("verdict")
            .and_then(Value::as_str)
            .ok_or("no verdict")?
            .to_owned();
        let cpus = report
            .get("cpus")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        check(cpus == processors, || {
            format!("{cpus} processors in the report, {processors} here")
        })?;
        Ok(verdict)
    })();
    Ok(match verdict {
        Ok(verdict) => {
            let summary = format!("verdict {verdict}, {processors} processors, through the driver");
            suite.json_verdict = Some(verdict);
            Verdict::Pass(summary)
        }
        Err(why) => Verdict::Fail(why),
    })
}

/// `vmx-check.exe dump`, replayed by the Linux vmx-check: the same
/// verdict as `--json` through the driver.
fn dump_replay(suite: &mut Suite) -> Result<Verdict> {
    let windows_file = format!(r"{WINDOWS_DIR}\dump.json");
    let run = suite.checker(&["dump", "-o", &windows_file])?;
    if run.code != Some(0) {
        return Ok(Verdict::Fail(format!(
            "vmx-check.exe dump:\n{}",
            run.transcript()
        )));
    }
    let file = suite.session.windows_dir().join("dump.json");
    let kept = suite.out.join("dump.json");
    fs::copy(&file, &kept).with_context(|| format!("the dump {}", file.display()))?;
    let replay = Command::new(&suite.artifacts.linux_checker)
        .args(["check", "--json", "--replay"])
        .arg(&kept)
        .stdin(Stdio::null())
        .output()
        .context("running the Linux vmx-check")?;
    let report: Value = match serde_json::from_slice(&replay.stdout) {
        Ok(report) => report,
        Err(e) => {
            return Ok(Verdict::Fail(format!(
                "the Linux replay printed no report ({e}): {}",
                String::from_utf8_lossy(&replay.stderr)
            )));
        }
    };
    let dump: Value = match fs::read(&kept).map(|bytes| serde_json::from_slice(&bytes)) {
        Ok(Ok(dump)) => dump,
        Ok(Err(e)) => return Ok(Verdict::Fail(format!("the dump is not JSON: {e}"))),
        Err(e) => return Ok(Verdict::Fail(format!("reading the dump: {e}"))),
    };
    Ok(verdict_of(
        judge_replay(
            &dump,
            &report,
            suite.json_verdict.as_deref(),
            suite.host.processors,
        )
        .map(|summary| format!("{summary} ({})", kept.display())),
    ))
}

/// The dump-replay case's judgement: `dump` (what `vmx-check.exe dump`
/// wrote) came through the driver for every processor, and `replay` (the
/// Linux `vmx-check check --json --replay` of it) has `live`'s verdict,
/// the one `vmx-check.exe --json` gave through the driver.
fn judge_replay(
    dump: &Value,
    replay: &Value,
    live: Option<&str>,
    processors: usize,
) -> Result<String, String> {
    // vmx-check.exe falls back to CPUID alone when it cannot use the
    // driver, and on a host without VMX such a dump replays to the same
    // verdict: the dump must say it came through the driver.
    let source = dump
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check(source.contains("nt-driver QUERY"), || {
        format!("the dump does not come through the driver: its source is {source:?}")
    })?;
    let cpus = dump
        .get("cpus")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    check(cpus == processors, || {
        format!("{cpus} processors in the dump, {processors} here")
    })?;
    let replayed = replay
        .get("verdict")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(live) = live else {
        return Err("no verdict from vmx-check.exe --json to compare with".into());
    };
    check(live == replayed, || {
        format!("vmx-check.exe said {live}, the Linux replay of its dump says {replayed}")
    })?;
    Ok(format!(
        "a dump of {cpus} processors through nt-driver's QUERY; the Linux replay says \
         {replayed}, as vmx-check.exe did"
    ))
}

/// `vmx-check.exe status`: every processor off.
fn status(suite: &mut Suite) -> Result<Verdict> {
    let run = suite.checker(&["status"])?;
    let processors = suite.host.processors;
    Ok(verdict_of((|| {
        check(run.code == Some(0), || run.transcript())?;
        for index in 0..processors {
            let line = format!("processor {index}: off");
            check(run.stdout.lines().any(|l| l == line), || {
                format!("no `{line}`:\n{}", run.transcript())
            })?;
        }
        Ok(format!("{processors} processors, all off"))
    })()))
}

/// `vmx-check.exe on` on a host without VMX: refused with vmx-core's
/// reason, nothing entered (STATUS, and no "in VMX operation" line).
fn on_refused(suite: &mut Suite) -> Result<Verdict> {
    if suite.host.vmx {
        return Ok(Verdict::Skip(
            "this host's CPUID reports VMX: ENTER would reach VMXON, which crashes Wine's driver \
             host (a ring-0 instruction in a user-mode process)"
                .into(),
        ));
    }
    let mark = suite.session.log_mark();
    let run = suite.checker(&["on"])?;
    let lines = suite.session.driver_lines_since(mark);
    let reason = suite.host.refusal();
    let after = suite.client_ok(&["case", "alive"], SHORT)?;
    Ok(verdict_of((|| {
        check(run.code == Some(1), || {
            format!("`on` was not refused:\n{}", run.transcript())
        })?;
        check(
            run.stderr.contains("ENTER failed on processor 0") && run.stderr.contains(reason),
            || {
                format!(
                    "`on` does not give vmx-core's reason ({reason}):\n{}",
                    run.transcript()
                )
            },
        )?;
        check(
            lines
                .iter()
                .any(|l| l.contains("ENTER failed") && l.contains(reason)),
            || format!("no `ENTER failed: {reason}...` in the driver log"),
        )?;
        check(
            lines
                .iter()
                .all(|l| !l.contains("in VMX operation, VMXON region")),
            || "the driver log says a processor entered VMX operation".into(),
        )?;
        check(
            lines
                .iter()
                .any(|l| l.contains("0 processors in VMX operation")),
            || "the driver log does not say 0 processors are in VMX operation".into(),
        )?;
        let memory = nothing_left_allocated(&lines)?;
        match after {
            Verdict::Pass(s) => Ok(format!("refused: {reason}; {memory}; {s}")),
            Verdict::Fail(why) | Verdict::Skip(why) => Err(why),
        }
    })()))
}

/// The test image's contiguous-memory substitute logs every block it
/// allocates or frees with the count outstanding after: among `lines`, the
/// last such count must be 0 (no line: nothing was allocated).
fn nothing_left_allocated(lines: &[String]) -> Result<String, String> {
    const PREFIX: &str = "nt-driver: TEST BUILD: contiguous memory ";
    let memory: Vec<&String> = lines.iter().filter(|l| l.starts_with(PREFIX)).collect();
    let Some(last) = memory.last() else {
        return Ok("no VMXON region allocated".into());
    };
    check(last.ends_with(": 0 blocks outstanding"), || {
        format!("a VMXON region is left allocated: {last}")
    })?;
    Ok(format!(
        "{} VMXON region allocations and frees, none left",
        memory.len()
    ))
}

/// `vmx-check.exe off` with nothing entered: refused.
fn off_refused(suite: &mut Suite) -> Result<Verdict> {
    let run = suite.checker(&["off"])?;
    Ok(verdict_of((|| {
        check(run.code == Some(1), || {
            format!("`off` was not refused:\n{}", run.transcript())
        })?;
        check(run.stderr.contains("not in VMX operation"), || {
            format!("`off` does not say why:\n{}", run.transcript())
        })?;
        Ok("refused: not in VMX operation".into())
    })()))
}

/// `\\.\MyHypervisorDevice\extra`: ERROR_FILE_NOT_FOUND, and which layer
/// refused it. Wine's object manager refuses the name itself, before the
/// driver's CREATE: the summary says so rather than let the PASS read as
/// the driver's refusal (host-tested in nt-driver).
fn open_extra_name(suite: &mut Suite) -> Result<Verdict> {
    let mark = suite.session.log_mark();
    let verdict = suite.raw("extra-name", SHORT)?;
    let by_driver = suite
        .session
        .driver_lines_since(mark)
        .iter()
        .any(|l| l.contains("refused an open of a name below the device"));
    Ok(match verdict {
        Verdict::Pass(summary) if by_driver => {
            Verdict::Pass(format!("{summary}, refused by the driver's CREATE"))
        }
        Verdict::Pass(summary) => Verdict::Pass(format!(
            "{summary}, refused before the driver (Wine's object manager); the driver's own \
             refusal is host-tested"
        )),
        other => other,
    })
}

/// QUERY of every processor 1000 times: the round trip (a figure).
fn round_trip(suite: &mut Suite) -> Result<Verdict> {
    suite.client_ok(&["round-trip", "1000"], Duration::from_secs(120))
}

/// A sleep and a resume, delivered to the driver's `\Callback\PowerState`
/// callback by the test image's power hook (Wine has no power manager):
/// between them, a request that changes VMX state (LEAVE: it is refused
/// before any privileged instruction on any host) is refused because the
/// system is changing its power state, while STATUS is still answered;
/// after the resume LEAVE is back to "not in VMX operation". A driver
/// without a power callback fails: nt-driver always registers one.
fn sleep_and_resume(suite: &mut Suite) -> Result<Verdict> {
    if let Some(missing) = registration_missing(&suite.session.driver_lines_since(0)) {
        return Ok(missing);
    }
    let mark = suite.session.log_mark();
    if let Verdict::Fail(why) = suite.client_ok(&["power", "suspend"], SHORT)? {
        return Ok(Verdict::Fail(format!("the sleep notification: {why}")));
    }
    let asleep_off = suite.checker(&["off"])?;
    let asleep_status = suite.checker(&["status"])?;
    let asleep = suite.session.driver_lines_since(mark);
    let mark = suite.session.log_mark();
    if let Verdict::Fail(why) = suite.client_ok(&["power", "resume"], SHORT)? {
        return Ok(Verdict::Fail(format!("the resume notification: {why}")));
    }
    let awake_off = suite.checker(&["off"])?;
    let awake = suite.session.driver_lines_since(mark);
    const REFUSAL: &str = "LEAVE: the system is changing its power state";
    Ok(verdict_of((|| {
        check(asleep_off.code == Some(1), || {
            format!(
                "`off` while asleep was not refused:\n{}",
                asleep_off.transcript()
            )
        })?;
        check(asleep.iter().any(|l| l.contains(REFUSAL)), || {
            format!("no `{REFUSAL}` in the driver log while asleep")
        })?;
        check(asleep_status.code == Some(0), || {
            format!("STATUS while asleep:\n{}", asleep_status.transcript())
        })?;
        check(
            awake_off.code == Some(1) && awake_off.stderr.contains("not in VMX operation"),
            || format!("`off` after the resume:\n{}", awake_off.transcript()),
        )?;
        check(!awake.iter().any(|l| l.contains(REFUSAL)), || {
            "LEAVE is still refused for a power transition after the resume".into()
        })?;
        Ok(
            "asleep: LEAVE refused for the transition, STATUS answered; resumed: LEAVE \
            answered (not in VMX operation)"
                .into(),
        )
    })()))
}

/// Stop with a handle open, then close it; then start again.
fn unload_with_handle(suite: &mut Suite) -> Result<Verdict> {
    let mark = suite.session.log_mark();
    let verdict = suite.client_ok(&["unload-with-handle", SERVICE], SHORT)?;
    let unloaded = suite
        .session
        .driver_lines_since(mark)
        .iter()
        .filter(|l| l.as_str() == "nt-driver: unloaded")
        .count();
    let Verdict::Pass(summary) = verdict else {
        return Ok(verdict);
    };
    if unloaded != 1 {
        return Ok(Verdict::Fail(format!(
            "{unloaded} `unloaded` lines in the driver log, expected 1"
        )));
    }
    Ok(match suite.client_ok(&["start", SERVICE], SHORT)? {
        Verdict::Pass(_) => Verdict::Pass(format!("{summary}; DriverUnload ran once; loads again")),
        other => other,
    })
}

/// 20 loads and unloads in this session, each logged.
fn load_unload_20(suite: &mut Suite) -> Result<Verdict> {
    if let Verdict::Fail(why) = suite.client_ok(&["stop", SERVICE], SHORT)? {
        return Ok(Verdict::Fail(format!("stop: {why}")));
    }
    let mark = suite.session.log_mark();
    let verdict = suite.client_ok(&["cycle", SERVICE, "20"], Duration::from_secs(300))?;
    let lines = suite.session.driver_lines_since(mark);
    let loaded = lines
        .iter()
        .filter(|l| l.starts_with("nt-driver: loaded: "))
        .count();
    let unloaded = lines
        .iter()
        .filter(|l| l.as_str() == "nt-driver: unloaded")
        .count();
    let Verdict::Pass(summary) = verdict else {
        return Ok(verdict);
    };
    Ok(if loaded == 20 && unloaded == 20 {
        Verdict::Pass(format!("{summary}; 20 `loaded` and 20 `unloaded` lines"))
    } else {
        Verdict::Fail(format!(
            "{loaded} `loaded` and {unloaded} `unloaded` lines, expected 20 each"
        ))
    })
}

/// Start, stop (DriverUnload) and delete the service: the end of the
/// suite's driver.
fn unload_and_delete(suite: &mut Suite) -> Result<Verdict> {
    if let Verdict::Fail(why) = suite.client_ok(&["start", SERVICE], SHORT)? {
        return Ok(Verdict::Fail(format!("start: {why}")));
    }
    let mark = suite.session.log_mark();
    if let Verdict::Fail(why) = suite.client_ok(&["stop", SERVICE], SHORT)? {
        return Ok(Verdict::Fail(format!("stop: {why}")));
    }
    let unloaded = suite
        .session
        .driver_lines_since(mark)
        .iter()
        .any(|l| l == "nt-driver: unloaded");
    if !unloaded {
        return Ok(Verdict::Fail("no `unloaded` line after the stop".into()));
    }
    Ok(match suite.client_ok(&["delete", SERVICE], SHORT)? {
        Verdict::Pass(_) => Verdict::Pass("DriverUnload ran; the service is deleted".into()),
        other => other,
    })
}

/// Over the whole session so far (23 loads, 23 unloads): each load that
/// registered a `\Callback\PowerState` callback (the substitute logs
/// every open, registration, unregistration and dereference with the
/// object's counts) had it undone by its unload, and after the last unload
/// nothing is registered or referenced. A driver without a power callback
/// fails: nt-driver always registers one.
fn power_callback_balanced(suite: &mut Suite) -> Result<Verdict> {
    Ok(power_balance(&suite.session.driver_lines_since(0)))
}

/// [`power_callback_balanced`]'s judgement of the session's driver lines.
fn power_balance(lines: &[String]) -> Verdict {
    const PREFIX: &str = "nt-driver: TEST BUILD: \\Callback\\PowerState ";
    let power: Vec<&String> = lines.iter().filter(|l| l.starts_with(PREFIX)).collect();
    let Some(last) = power.last() else {
        return Verdict::Fail(
            "the driver opened no \\Callback\\PowerState callback object: nt-driver's \
             DriverEntry registers one on every load"
                .into(),
        );
    };
    let count = |what: &str| lines.iter().filter(|l| l.starts_with(what)).count();
    let event = |name: &str| {
        power
            .iter()
            .filter(|l| l[PREFIX.len()..].starts_with(name))
            .count()
    };
    let (loads, unloads) = (count("nt-driver: loaded: "), count("nt-driver: unloaded"));
    let (registered, unregistered) = (event("ExRegisterCallback:"), event("ExUnregisterCallback:"));
    verdict_of((|| {
        check(registered == loads, || {
            format!("{registered} registrations for {loads} loads")
        })?;
        check(unregistered == unloads, || {
            format!("{unregistered} unregistrations for {unloads} unloads")
        })?;
        check(last.ends_with(": 0 registrations, 0 references"), || {
            format!("after the last unload: {last}")
        })?;
        Ok(format!(
            "{loads} loads registered it, {unloads} unloads unregistered it; nothing left \
             registered or referenced"
        ))
    })())
}

/// A failure unless the driver's log shows a `\\Callback\\PowerState`
/// registration: nt-driver's DriverEntry fails without one, and the Wine
/// image always has the callback-object substitute that logs it, so a log
/// without one means the power handling is gone (never a SKIP, which
/// would let the suite exit 0 without it).
fn registration_missing(lines: &[String]) -> Option<Verdict> {
    let registered = lines
        .iter()
        .any(|l| l.contains("\\Callback\\PowerState ExRegisterCallback"));
    (!registered).then(|| {
        Verdict::Fail(
            "the driver registered no \\Callback\\PowerState callback: nt-driver's DriverEntry \
             registers one on every load"
                .into(),
        )
    })
}

/// The driver host dies while vmx-check.exe has the device open and a
/// request outstanding (as when the host crashes under a request): the
/// host is frozen (SIGSTOP), `vmx-check.exe status` is started and blocks
/// on it, then the host is killed. vmx-check.exe must name that cause, not
/// "run as Administrator" (Wine fails the request with
/// ERROR_ACCESS_DENIED).
fn driver_host_died(suite: &mut Suite) -> Result<Verdict> {
    const CRASH: &str = "nt_driver_wine_crash";
    /// A STATUS takes milliseconds: still running after this, it waits
    /// for the frozen host.
    const BLOCKED: Duration = Duration::from_millis(1500);
    let path = format!(r"{WINDOWS_DIR}\{IMAGE}");
    for args in [vec!["install", CRASH, path.as_str()], vec!["start", CRASH]] {
        if let Verdict::Fail(why) = suite.client_ok(&args, SHORT)? {
            return Ok(Verdict::Fail(format!("{}: {why}", args[0])));
        }
    }
    let hosts = suite.session.processes_mapping(IMAGE);
    let [host] = hosts.as_slice() else {
        return Ok(Verdict::Fail(format!(
            "expected one process with the image mapped, found {hosts:?}"
        )));
    };
    let host = host.to_string();
    let signal = |name: &str| -> Result<()> {
        let status = Command::new("kill").args([name, &host]).status()?;
        ensure!(status.success(), "kill {name} {host} failed");
        Ok(())
    };
    signal("-STOP")?;
    let mut checker = suite.session.spawn_wine(CHECKER, &["status"])?;
    std::thread::sleep(BLOCKED);
    let blocked = checker.running();
    signal("-KILL")?;
    let run = checker.finish(SHORT)?;
    let said = format!("{}{}", run.stdout, run.stderr);
    Ok(verdict_of((|| {
        check(blocked, || {
            format!(
                "vmx-check.exe did not wait for the frozen driver host:\n{}",
                run.transcript()
            )
        })?;
        check(run.code == Some(1), || {
            format!("status did not fail:\n{}", run.transcript())
        })?;
        check(!said.contains("run as Administrator"), || {
            format!("vmx-check.exe blames the rights:\n{}", run.transcript())
        })?;
        check(said.contains("stopped responding"), || {
            format!(
                "vmx-check.exe does not say the driver stopped responding:\n{}",
                run.transcript()
            )
        })?;
        Ok(format!(
            "driver host (pid {host}) killed under a request; vmx-check.exe: {}",
            said.trim().lines().last().unwrap_or_default()
        ))
    })()))
}

type Case = (&'static str, fn(&mut Suite) -> Result<Verdict>);

/// The suite, in order: the image, the load, the checker through the
/// driver, the driver commands, raw requests, unloads, the host's death.
const CASES: &[Case] = &[
    ("image-imports", image),
    ("load", load),
    ("check", checker_check),
    ("check-json", checker_json),
    ("dump-replay", dump_replay),
    ("two-call", |s| s.raw("two-call", SHORT)),
    ("status", status),
    ("on-refused", on_refused),
    ("off-refused", off_refused),
    ("unknown-codes", |s| s.raw("unknown-codes", SHORT)),
    ("other-methods", |s| s.raw("methods", SHORT)),
    ("sizes", |s| s.raw("sizes", Duration::from_secs(120))),
    ("read-write", |s| s.raw("read-write", SHORT)),
    ("open-extra-name", open_extra_name),
    ("handles-64", |s| s.raw("handles", SHORT)),
    ("threads-8", |s| s.raw("threads", Duration::from_secs(120))),
    ("round-trip-1000", round_trip),
    ("sleep-and-resume", sleep_and_resume),
    ("unload-with-handle-open", unload_with_handle),
    ("load-unload-20", load_unload_20),
    ("unload-and-delete", unload_and_delete),
    ("power-callback-balanced", power_callback_balanced),
    ("driver-host-died", driver_host_died),
];

/// Runs `cargo xtask wine`.
///
/// # Errors
/// A build or Wine itself fails, or any case fails.
pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask wine (no options)");
    }
    let repo = crate::ci::workspace_root();
    let out = repo.join("target/wine");
    let builds = Instant::now();
    let artifacts = build(&repo, &out)?;
    let built_in = builds.elapsed();

    let cold = Instant::now();
    let session = Session::create(&out)?;
    let dir = session.windows_dir();
    for (from, name) in [
        (&artifacts.image, IMAGE),
        (&artifacts.client, CLIENT),
        (&artifacts.checker, CHECKER),
        (&artifacts.prng, "bcryptprimitives.dll"),
    ] {
        fs::copy(from, dir.join(name)).with_context(|| format!("copying {}", from.display()))?;
    }
    let mut suite = Suite {
        session,
        artifacts,
        host: Host::read(),
        out,
        json_verdict: None,
    };
    let (mut passed, mut failed) = (0, 0);
    let mut unloaded_at = None;
    for (name, case) in CASES {
        let mark = suite.session.log_mark();
        let started = Instant::now();
        let verdict = case(&mut suite).unwrap_or_else(|e| Verdict::Fail(format!("{e:#}")));
        let took = started.elapsed();
        match verdict {
            Verdict::Pass(summary) => {
                passed += 1;
                println!("PASS {name}");
                println!("     {summary} ({took:.1?})");
            }
            Verdict::Skip(reason) => println!("SKIP {name}: {reason}"),
            Verdict::Fail(why) => {
                failed += 1;
                println!("FAIL {name}");
                for line in why.lines() {
                    println!("     {line}");
                }
                println!("     driver log during the case:");
                for line in suite.session.log_since(mark) {
                    println!("     | {line}");
                }
            }
        }
        if *name == "unload-and-delete" {
            unloaded_at = Some(cold.elapsed());
        }
    }
    suite.session.end();
    println!("wine: builds in {:.1} s", built_in.as_secs_f64());
    if let Some(at) = unloaded_at {
        println!(
            "wine: cold start (new prefix) to the last unload in {:.1} s",
            at.as_secs_f64()
        );
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} Wine cases failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `x86_64-w64-mingw32-objdump -p` (binutils 2.40) on the
    /// test image, cut down.
    const OBJDUMP: &str = "Subsystem\t\t00000001\t(NT native)
The Import Tables (interpreted .idata section contents)
 vma:            Hint    Time      Forward  DLL       First
                 Table   Stamp     Chain    Name      Thunk
 000246e0\t00024708 00000000 00000000 00024840 000247a8

\tDLL Name: ntoskrnl.exe
\tvma:  Hint/Ord Member-Name Bound-To
\t24848\t   67  DbgPrintEx
\t24856\t  119  ExAllocatePoolWithTag
\t249aa\t 2085  strlen

There is an export table in .edata at 0x18002452a

The Export Tables (interpreted .edata section contents)
Export Flags \t\t\t0
[Ordinal/Name Pointer] Table
\t[   0] DriverEntry
";

    #[test]
    fn the_import_table_lists_each_dll_and_function() {
        let (dlls, imports) = import_table(OBJDUMP);
        assert_eq!(dlls, ["ntoskrnl.exe"]);
        assert_eq!(imports, ["DbgPrintEx", "ExAllocatePoolWithTag", "strlen"]);
    }

    #[test]
    fn an_image_without_imports_has_an_empty_table() {
        let (dlls, imports) = import_table("Subsystem\t\t00000001\t(NT native)\n");
        assert!(dlls.is_empty() && imports.is_empty());
    }

    fn dump(source: &str, cpus: usize) -> Value {
        serde_json::json!({
            "format": "vmx-dump/1",
            "source": source,
            "cpus": (0..cpus).map(|cpu| serde_json::json!({ "cpu": cpu })).collect::<Vec<_>>(),
        })
    }

    const THROUGH_THE_DRIVER: &str = "vmx-check 0.1.0 dump, this machine (Windows): nt-driver \
                                      QUERY, CPUID, MSRs, CR0 and CR4 read at ring 0 on each \
                                      processor";

    #[test]
    fn a_replay_with_the_live_verdict_of_a_dump_through_the_driver_passes() {
        let replay = serde_json::json!({ "verdict": "vmx-unsupported" });
        let judged = judge_replay(
            &dump(THROUGH_THE_DRIVER, 2),
            &replay,
            Some("vmx-unsupported"),
            2,
        );
        assert!(judged.is_ok(), "{judged:?}");
        assert!(
            judge_replay(&dump(THROUGH_THE_DRIVER, 2), &replay, Some("ready"), 2).is_err(),
            "another verdict"
        );
        assert!(
            judge_replay(&dump(THROUGH_THE_DRIVER, 2), &replay, None, 2).is_err(),
            "no live verdict"
        );
    }

    #[test]
    fn a_dump_that_did_not_come_through_the_driver_fails_the_replay() {
        // vmx-check.exe falls back to CPUID alone when the driver cannot be
        // used; on a host without VMX that dump replays to the same verdict.
        let replay = serde_json::json!({ "verdict": "vmx-unsupported" });
        let cpuid_only = dump(
            "vmx-check 0.1.0 dump, this machine (Windows): driver not used: CPUID only, on each \
             processor (thread pinned)",
            2,
        );
        let judged = judge_replay(&cpuid_only, &replay, Some("vmx-unsupported"), 2);
        assert!(judged.is_err(), "{judged:?}");
        let one_processor = dump(THROUGH_THE_DRIVER, 1);
        let judged = judge_replay(&one_processor, &replay, Some("vmx-unsupported"), 2);
        assert!(judged.is_err(), "{judged:?}");
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn a_session_without_a_power_registration_fails_the_power_cases() {
        // nt-driver's DriverEntry always registers the callback and the
        // Wine image always has the callback-object substitute: no
        // registration in the log is a regression, never a SKIP.
        let loaded = lines(&[
            "nt-driver: loaded: 2 processors; \\\\.\\MyHypervisorDevice is ready",
            "nt-driver: unloaded",
        ]);
        assert!(matches!(
            registration_missing(&loaded),
            Some(Verdict::Fail(_))
        ));
        assert!(matches!(power_balance(&loaded), Verdict::Fail(_)));
    }

    #[test]
    fn a_balanced_power_registration_passes() {
        let session = lines(&[
            "nt-driver: TEST BUILD: \\Callback\\PowerState ExCreateCallback: 0 registrations, 1 references",
            "nt-driver: TEST BUILD: \\Callback\\PowerState ExRegisterCallback: 1 registrations, 1 references",
            "nt-driver: loaded: 2 processors; \\\\.\\MyHypervisorDevice is ready",
            "nt-driver: TEST BUILD: \\Callback\\PowerState ExUnregisterCallback: 0 registrations, 1 references",
            "nt-driver: TEST BUILD: \\Callback\\PowerState ObfDereferenceObject: 0 registrations, 0 references",
            "nt-driver: unloaded",
        ]);
        assert!(registration_missing(&session).is_none());
        assert!(matches!(power_balance(&session), Verdict::Pass(_)));
        // The unload that does not unregister.
        assert!(matches!(power_balance(&session[..3]), Verdict::Fail(_)));
    }

    #[test]
    fn vmx_is_what_cpuid_reports_even_when_linux_hides_the_flag() {
        // Linux clears the `vmx` flag of /proc/cpuinfo when firmware leaves
        // VMX disabled (IA32_FEATURE_CONTROL): CPUID still reports it, and
        // vmx-core, under Wine, would go on to the MSR and VMXON.
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2\n\
                       processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2\n";
        let vmx_set = Some(("GenuineIntel".to_owned(), 1 << 5));
        let host = Host::from_facts(cpuinfo, vmx_set);
        assert!(host.vmx && host.intel);
        assert_eq!(host.processors, 2);
        let host = Host::from_facts(cpuinfo, Some(("GenuineIntel".to_owned(), 0)));
        assert!(!host.vmx && host.intel);
        let host = Host::from_facts(cpuinfo, Some(("AuthenticAMD".to_owned(), 0)));
        assert!(!host.vmx && !host.intel);
        // Without CPUID (not x86-64), /proc/cpuinfo decides.
        let flagged = cpuinfo.replace("sse2", "sse2 vmx");
        assert!(Host::from_facts(&flagged, None).vmx);
    }

    #[test]
    fn a_refused_enter_must_leave_no_region_allocated() {
        assert!(nothing_left_allocated(&lines(&["nt-driver: ENTER failed"])).is_ok());
        let balanced = lines(&[
            "nt-driver: TEST BUILD: contiguous memory allocated: 1 blocks outstanding",
            "nt-driver: ENTER failed on processor 0",
            "nt-driver: TEST BUILD: contiguous memory freed: 0 blocks outstanding",
        ]);
        assert!(nothing_left_allocated(&balanced).is_ok());
        let judged = nothing_left_allocated(&balanced[..2]);
        assert!(judged.is_err(), "{judged:?}");
    }

    #[test]
    fn the_refusal_follows_the_vendor() {
        let host = |intel| Host {
            processors: 2,
            intel,
            vmx: false,
        };
        assert_eq!(host(true).refusal(), "CPUID.1:ECX.VMX[bit 5] is clear");
        assert_eq!(host(false).refusal(), "the processor is not Intel");
    }
}
