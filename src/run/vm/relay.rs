//! The guest's channels, relayed: its stdin from ours, its stdout and stderr to ours, its
//! exit status, and its console (shown with `-v`, its last lines kept for a failure); and
//! qemu itself, run until it ends or a stop signal ends it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::qemu;
use crate::error::{Error, Result};
use crate::util::sys;

/// Console lines kept for the report of a failed run.
const TAIL: usize = 40;

/// The relays, started before qemu: each accepts qemu's connection on its socket.
pub struct Channels {
    /// One message per relay once qemu connected to it.
    connected: Receiver<()>,
    count: usize,
    /// One message per output relay (stdout, stderr) once it has copied everything.
    drained: Receiver<()>,
    status: Receiver<String>,
    console: Arc<Mutex<VecDeque<String>>>,
    /// The console is the terminal (qemu's standard input and output).
    interactive: bool,
}

impl Channels {
    pub fn start(dir: &Path, interactive: bool, verbose: bool) -> Result<Channels> {
        let (conn_tx, connected) = channel();
        let (drain_tx, drained) = channel();
        let (status_tx, status) = channel();
        let console = Arc::new(Mutex::new(VecDeque::new()));
        let listen = |name: &str| super::bind(dir, name);
        let (ready_tx, ready) = channel();
        accept_then(listen("stdin.sock")?, conn_tx.clone(), move |s| feed_stdin(s, interactive, ready));
        let tx = drain_tx.clone();
        accept_then(listen("stdout.sock")?, conn_tx.clone(), move |s| copy_out(s, std::io::stdout(), tx));
        accept_then(listen("stderr.sock")?, conn_tx.clone(), move |s| copy_out(s, std::io::stderr(), drain_tx));
        accept_then(listen("status.sock")?, conn_tx.clone(), move |s| read_status(s, ready_tx, status_tx));
        let mut count = 4;
        if !interactive {
            let tail = console.clone();
            accept_then(listen("console.sock")?, conn_tx, move |s| keep_console(s, verbose, &tail));
            count += 1;
        }
        Ok(Channels { connected, count, drained, status, console, interactive })
    }
}

/// On a thread: accept one connection on `l`, say so, then `f` it.
fn accept_then(l: UnixListener, connected: Sender<()>, f: impl FnOnce(UnixStream) + Send + 'static) {
    std::thread::spawn(move || {
        if let Ok((stream, _)) = l.accept() {
            let _ = connected.send(());
            f(stream);
        }
    });
}

/// Our standard input to the guest's, once the guest has opened its port; at its end the
/// connection closes, which the guest's command reads as end of file. An interactive guest
/// reads the terminal through its console.
fn feed_stdin(mut s: UnixStream, interactive: bool, ready: Receiver<()>) {
    if !interactive && ready.recv().is_ok() {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut s);
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// The status port: `ready` once the guest's ports are open, then the command's exit status.
fn read_status(s: UnixStream, ready: Sender<()>, status: Sender<String>) {
    for line in BufReader::new(s.take(256)).lines().map_while(|l| l.ok()) {
        if line == "ready" {
            let _ = ready.send(());
        } else {
            let _ = status.send(line);
        }
    }
}

fn copy_out(mut s: UnixStream, mut out: impl Write, done: Sender<()>) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    let _ = done.send(());
}

fn keep_console(s: UnixStream, verbose: bool, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(s).split(b'\n').map_while(|l| l.ok()) {
        let line = String::from_utf8_lossy(&line[..line.len().min(1024)]).trim_end_matches('\r').to_string();
        if verbose {
            eprintln!("{line}");
        }
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Run qemu with the relays in place until it exits; the command's status.
pub fn supervise(cmd: &mut Command, ch: Channels, signals: SigSet, dir: &Path) -> Result<i32> {
    let tty = || if ch.interactive { Stdio::inherit() } else { Stdio::null() };
    cmd.stdin(tty()).stdout(tty());
    cmd.stderr(Stdio::piped());
    let link = sys::die_with_this_thread(cmd).map_err(|e| Error::new(format!("run --vm: {e}")))?;
    let mut child = cmd.spawn().map_err(|e| Error::new(format!("run --vm: cannot start {}: {e}", qemu::QEMU)))?;
    let mut qemu_err = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = qemu_err.as_mut() {
            let _ = e.take(64 << 10).read_to_string(&mut text);
        }
        text
    });
    wait_connected(&ch, &mut child, dir);
    let mut stopped_by = None;
    let status = loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => continue,
                Err(e) => return Err(Error::new(format!("run --vm: waiting for qemu: {e}"))),
            },
            Ok(sig) => {
                stopped_by = Some(sig);
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
            Err(_) => {}
        }
    };
    drop(link);
    if let Some(sig) = stopped_by {
        return Ok(128 + sig as i32);
    }
    for _ in 0..2 {
        let _ = ch.drained.recv_timeout(Duration::from_secs(2));
    }
    if let Ok(text) = ch.status.recv_timeout(Duration::from_millis(500)) {
        if let Ok(code) = text.trim().parse::<i32>() {
            return Ok(code);
        }
    }
    Err(failed(&ch, status, &errors.join().unwrap_or_default()))
}

/// Until qemu has connected to every socket (or ended): then their names are removed, so
/// nothing is left in the directory should this process be killed.
fn wait_connected(ch: &Channels, child: &mut std::process::Child, dir: &Path) {
    let started = Instant::now();
    let mut n = 0;
    while n < ch.count && started.elapsed() < Duration::from_secs(30) {
        match ch.connected.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => n += 1,
            Err(_) if matches!(child.try_wait(), Ok(Some(_))) => return,
            Err(_) => {}
        }
    }
    for name in qemu::SOCKETS {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

/// The error of a guest that ended without a status, after its last console lines.
fn failed(ch: &Channels, status: std::process::ExitStatus, qemu_stderr: &str) -> Error {
    let tail = ch.console.lock().map(|t| t.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
    if !log::log_enabled!(log::Level::Info) {
        for line in &tail {
            eprintln!("  {line}");
        }
    }
    let why = qemu::explain(qemu_stderr);
    if !why.is_empty() {
        return Error::new(format!("run --vm: qemu failed ({status}): {why}"));
    }
    let last = tail.iter().rev().find(|l| l.contains("supermin") || l.contains("Kernel panic")).cloned();
    Error::new(format!(
        "run --vm: the guest stopped before the command ended ({}; its last console lines are above)",
        last.unwrap_or_else(|| format!("qemu {status}"))
    ))
}
