//! Network namespaces a test makes for itself: hosts joined by veth links with
//! the MTU the test wants, so traffic crosses a real link without touching the
//! machine's own interfaces. Needs root and `ip` (iproute2).
//!
//! Code runs inside a namespace on a thread of its own ([`NetNs::spawn`]) that
//! joined it with `setns(2)`: every socket that thread and the threads it starts
//! open belongs to the namespace. [`NetNs::run`] gives such a thread a
//! current-thread tokio runtime, so a node, a client and their tasks all live
//! inside the namespace.

use std::{
    fs::File,
    future::Future,
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};

/// A network namespace, deleted on drop (with the veth ends inside it).
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// `ip netns add` a namespace unique to this process, with `lo` up. Also
    /// deletes namespaces left by test processes that died before their
    /// `Drop` ran (`mq-*-<pid>-*` of a pid that is gone).
    pub fn create(tag: &str) -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mq-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        {
            // iproute2 makes /run/netns a shared mount on first use; two first
            // users at once can race there, so this process adds one at a time.
            let _one_at_a_time = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            remove_stale();
            ip(&["netns", "add", &name])
                .context("creating a network namespace (root and iproute2 needed)")?;
        }
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a new thread inside this namespace.
    pub fn spawn<T, F>(&self, f: F) -> Result<InNs<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let handle = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening namespace {}", self.name))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                // SAFETY: setns(2) takes a file descriptor and a flag and touches no
                // memory of ours; `handle` keeps the descriptor open for the call. It
                // moves only this thread into the namespace.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                let result = if rc == 0 {
                    drop(handle);
                    f()
                } else {
                    Err(std::io::Error::last_os_error()).context("setns")
                };
                let _ = tx.send(result);
            })?;
        Ok(InNs { rx })
    }

    /// Runs `f()` to completion on a current-thread runtime inside this namespace.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<InNs<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>>,
    {
        self.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(f())
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _one_at_a_time = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Serialises `ip netns add` / `delete` within this process.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Deletes `mq-<tag>-<pid>-<n>` namespaces whose process no longer exists.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '-');
        let (Some(_n), Some(pid), Some(prefix)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if prefix.starts_with("mq-")
            && pid.parse::<u32>().is_ok()
            && !std::path::Path::new("/proc").join(pid).exists()
        {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// The result of a thread started in a namespace.
pub struct InNs<T> {
    rx: mpsc::Receiver<Result<T>>,
}

impl<T> InNs<T> {
    /// Waits at most `limit` for the thread's result.
    pub fn join(self, limit: Duration) -> Result<T> {
        match self.rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("no result within {limit:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the thread panicked"),
        }
    }
}

/// A veth link between `a` (address `addr_a`, CIDR form, IPv4 or IPv6) and `b`
/// (`addr_b`), both ends with `mtu`, up.
pub fn veth(a: &NetNs, addr_a: &str, b: &NetNs, addr_b: &str, mtu: u32) -> Result<()> {
    veth_named((a, "veth0", addr_a), (b, "veth0", addr_b), mtu)
}

/// A veth link between `(namespace, device name, address)` ends, for a
/// namespace with more than one link.
pub fn veth_named(a: (&NetNs, &str, &str), b: (&NetNs, &str, &str), mtu: u32) -> Result<()> {
    let mtu = mtu.to_string();
    a.0.ip(&[
        "link",
        "add",
        a.1,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        b.1,
        "netns",
        b.0.name(),
        "mtu",
        &mtu,
    ])?;
    for (ns, dev, addr) in [a, b] {
        if addr.contains(':') {
            // Usable at once: no duplicate address detection on a private link.
            ns.ip(&["addr", "add", addr, "dev", dev, "nodad"])?;
        } else {
            ns.ip(&["addr", "add", addr, "dev", dev])?;
        }
        ns.ip(&["link", "set", dev, "up"])?;
    }
    Ok(())
}

/// Runs `cmd args…` inside `ns` (`ip netns exec`), e.g. `sysctl` or `ping`,
/// and returns its output (bounded by the command's own limits).
pub fn exec(ns: &NetNs, cmd: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), cmd])
        .args(args)
        .output()
        .with_context(|| format!("ip netns exec {} {cmd}", ns.name()))
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
