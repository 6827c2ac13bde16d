//! One Wine session: a fresh prefix under `target/wine/`, kept alive with
//! `wineserver -p` for the whole suite, and every command run with a
//! timeout and its output in a file (Wine's system processes inherit the
//! handles of the command that started them: a pipe would never close).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The Windows folder of the test files inside the prefix.
pub const WINDOWS_DIR: &str = r"C:\vmx";

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` when it timed out (and was killed) or died by
    /// a signal.
    pub code: Option<i32>,
    /// Whether it ran out of time.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything it printed, for a failure report.
    pub fn transcript(&self) -> String {
        let mut text = String::new();
        if self.timed_out {
            text.push_str("(timed out and killed)\n");
        }
        text.push_str(&format!("exit code: {:?}\n", self.code));
        for (name, stream) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !stream.trim().is_empty() {
                text.push_str(&format!("{name}:\n{}\n", stream.trim_end()));
            }
        }
        text
    }
}

/// A command running with its output in files.
#[derive(Debug)]
pub struct Running {
    child: Child,
    out_path: PathBuf,
    err_path: PathBuf,
    started: Instant,
}

impl Running {
    /// Starts `command` with its output in `logs/<name>.{out,err}`.
    ///
    /// # Errors
    /// The command cannot be started.
    pub fn spawn(command: &mut Command, logs: &Path, name: &str) -> Result<Self> {
        let out_path = logs.join(format!("{name}.out"));
        let err_path = logs.join(format!("{name}.err"));
        let child = command
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .with_context(|| format!("cannot run {command:?}"))?;
        Ok(Self {
            child,
            out_path,
            err_path,
            started: Instant::now(),
        })
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it, killing it once `timeout` has passed since its start.
    ///
    /// # Errors
    /// Waiting fails.
    pub fn finish(mut self, timeout: Duration) -> Result<Run> {
        let (code, timed_out) = loop {
            if let Some(status) = self.child.try_wait()? {
                break (status.code(), false);
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break (None, true);
            }
            thread::sleep(Duration::from_millis(5));
        };
        Ok(Run {
            code,
            timed_out,
            stdout: fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err_path).unwrap_or_default(),
        })
    }
}

/// Runs `command` with its output in `logs/<name>.{out,err}`, killing it
/// after `timeout`.
///
/// # Errors
/// The command cannot be started.
pub fn run_logged(
    command: &mut Command,
    logs: &Path,
    name: &str,
    timeout: Duration,
) -> Result<Run> {
    Running::spawn(command, logs, name)?.finish(timeout)
}

/// A line of the log as the case report shows it: from `nt-driver: ` on
/// for the driver's DbgPrintEx lines (Wine prefixes them with the thread,
/// the channel and the component and level), else the whole line.
pub fn driver_text(line: &str) -> String {
    match line.find("nt-driver: ") {
        Some(at) => line[at..].trim_end_matches("\\n").to_owned(),
        None => line.to_owned(),
    }
}

/// A prefix and its running wineserver.
#[derive(Debug)]
pub struct Session {
    prefix: PathBuf,
    logs: PathBuf,
    /// wineboot's stderr, inherited by services.exe and so by the driver
    /// host: the driver's DbgPrintEx lines land here.
    driver_log: PathBuf,
    counter: usize,
}

/// Wine's debug channels: DbgPrintEx (debugstr warnings), errors of the
/// kernel and the loader, and the kernel's unimplemented functions.
const WINEDEBUG: &str = "-all,warn+debugstr,err+ntoskrnl,err+module,fixme+ntoskrnl,err+seh";

impl Session {
    /// Creates a fresh prefix in `dir/prefix` and boots it: the services
    /// (and so the driver host) start with the debug channels above.
    ///
    /// # Errors
    /// Wine is missing, or the prefix does not come up in time.
    pub fn create(dir: &Path) -> Result<Self> {
        let prefix = dir.join("prefix");
        let logs = dir.join("logs");
        let session = Self {
            driver_log: dir.join("driver.log"),
            prefix,
            logs,
            counter: 0,
        };
        // A server left over from an earlier run of this prefix.
        let _ = session.server(&["-k"]);
        if session.prefix.exists() {
            fs::remove_dir_all(&session.prefix)
                .with_context(|| format!("removing {}", session.prefix.display()))?;
        }
        if session.logs.exists() {
            fs::remove_dir_all(&session.logs)?;
        }
        fs::create_dir_all(&session.prefix)?;
        fs::create_dir_all(&session.logs)?;
        // The prefix is made by `wineboot -i`, which updates it and then
        // restarts the session's services: a service created meanwhile is
        // lost. So: make it, end that session, and boot a fresh one that
        // lasts (`wineserver -p`), whose services (and driver hosts)
        // inherit the debug channels and the log file.
        session.boot(&["-i"], &session.logs.join("wineboot-init.log"), "-all")?;
        ensure!(
            session.server(&["-k"])?,
            "wineserver -k after the prefix's creation failed"
        );
        ensure!(
            session
                .server(&["-p"])
                .context("cannot run wineserver (cargo xtask setup installs wine)")?,
            "wineserver -p failed"
        );
        session.boot(&[], &session.driver_log, WINEDEBUG)?;
        fs::create_dir_all(session.windows_dir())?;
        Ok(session)
    }

    /// `wineboot args`, its output in `log`, within 180 s.
    fn boot(&self, args: &[&str], log: &Path, debug: &str) -> Result<()> {
        let mut boot = self.command("wineboot");
        boot.args(args).env("WINEDEBUG", debug);
        let mut child = boot
            .stdin(Stdio::null())
            .stdout(File::create(self.logs.join("wineboot.out"))?)
            .stderr(File::create(log)?)
            .spawn()
            .context("cannot run wineboot (cargo xtask setup installs wine)")?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "wineboot {args:?} failed ({status}); see {}",
                    log.display()
                );
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                bail!("wineboot {args:?} did not finish in 180 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn server(&self, args: &[&str]) -> Result<bool> {
        let mut command = self.command("wineserver");
        let run = run_logged(
            command.args(args),
            &self.logs_or_tmp(),
            &format!("wineserver{}", args.join("")),
            Duration::from_secs(30),
        )?;
        Ok(run.code == Some(0))
    }

    fn logs_or_tmp(&self) -> PathBuf {
        if self.logs.exists() {
            self.logs.clone()
        } else {
            std::env::temp_dir()
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("WINEPREFIX", &self.prefix)
            // No Mono or Gecko installer dialogs: nothing here needs them.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("WINEDEBUG", "-all");
        command
    }

    /// `C:\vmx` on the Linux side.
    pub fn windows_dir(&self) -> PathBuf {
        self.prefix.join("drive_c/vmx")
    }

    /// Runs `C:\vmx\<exe> args` under Wine, killed after `timeout`.
    ///
    /// # Errors
    /// Wine cannot be started.
    pub fn wine(&mut self, exe: &str, args: &[&str], timeout: Duration) -> Result<Run> {
        self.spawn_wine(exe, args)?.finish(timeout)
    }

    /// Starts `C:\vmx\<exe> args` under Wine.
    ///
    /// # Errors
    /// Wine cannot be started.
    pub fn spawn_wine(&mut self, exe: &str, args: &[&str]) -> Result<Running> {
        self.counter += 1;
        let name = format!("{:03}-{}", self.counter, exe.trim_end_matches(".exe"));
        let mut command = self.command("wine");
        command.arg(format!(r"{WINDOWS_DIR}\{exe}")).args(args);
        Running::spawn(&mut command, &self.logs, &name)
    }

    /// The driver log's length now: where a case's lines start.
    pub fn log_mark(&self) -> u64 {
        fs::metadata(&self.driver_log).map_or(0, |m| m.len())
    }

    /// The driver log's lines since `mark`: DbgPrintEx's text for the
    /// driver's own lines, Wine's line for the rest.
    pub fn log_since(&self, mark: u64) -> Vec<String> {
        let bytes = fs::read(&self.driver_log).unwrap_or_default();
        let start = usize::try_from(mark).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(driver_text)
            .collect()
    }

    /// The driver's own lines since `mark`.
    pub fn driver_lines_since(&self, mark: u64) -> Vec<String> {
        self.log_since(mark)
            .into_iter()
            .filter(|l| l.starts_with("nt-driver: "))
            .collect()
    }

    /// The Linux process ids of the Wine processes of this prefix that have
    /// mapped `file` (the driver host has the image mapped).
    pub fn processes_mapping(&self, file: &str) -> Vec<u32> {
        let prefix = format!("WINEPREFIX={}", self.prefix.display());
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            let ours = environ
                .split(|b| *b == 0)
                .any(|var| var == prefix.as_bytes());
            if !ours {
                continue;
            }
            let maps = fs::read_to_string(entry.path().join("maps")).unwrap_or_default();
            if maps.contains(file) {
                found.push(pid);
            }
        }
        found
    }

    /// Ends every process of the session.
    pub fn end(&self) {
        let _ = self.server(&["-k"]);
    }
}

impl Drop for Session {
    /// A persistent wineserver outlives everything else: a run that stops
    /// early (an error, a panic) must not leave it and the driver host
    /// behind.
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dbgprintex_line_is_shown_from_the_drivers_prefix() {
        // As Wine 8 printed it with WINEDEBUG=warn+debugstr.
        let line = "0128:warn:debugstr:vDbgPrintExWithPrefix 0000004d:00000001: nt-driver: \
                    loaded: 2 processors";
        assert_eq!(driver_text(line), "nt-driver: loaded: 2 processors");
        let other = "0108:fixme:ntoskrnl:ExCreateCallback (0000000001A9F718): stub";
        assert_eq!(driver_text(other), other);
    }
}
