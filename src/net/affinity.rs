//! Opt-in CPU pinning (`pin_workers`, nginx's `worker_cpu_affinity auto`): reactor `i` runs
//! on the `i`-th CPU this process may use, and its listening sockets carry that CPU in
//! SO_INCOMING_CPU, which SO_REUSEPORT selection prefers: a new connection goes to the
//! reactor on the core whose softirq received its packets, so the TCP work, the reactor and
//! the connection's memory share one core's caches.

use std::io;

/// The CPUs this process may run on, ascending (all of them if the kernel will not say).
pub fn allowed() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..num_cpus::get().max(1)).collect(),
    }
}

/// Reactor `i`'s CPU: the allowed CPUs in turn.
pub fn cpu_for(i: usize, allowed: &[usize]) -> Option<usize> {
    (!allowed.is_empty()).then(|| allowed[i % allowed.len()])
}

/// Pin the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// Ask SO_REUSEPORT selection to hand `listener` the connections received on `cpu`.
pub fn steer(listener: &std::net::TcpListener, cpu: usize) -> io::Result<()> {
    socket2::SockRef::from(listener).set_cpu_affinity(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactors_take_the_allowed_cpus_in_turn() {
        assert_eq!(cpu_for(0, &[2, 5]), Some(2));
        assert_eq!(cpu_for(1, &[2, 5]), Some(5));
        assert_eq!(cpu_for(2, &[2, 5]), Some(2));
        assert_eq!(cpu_for(0, &[]), None);
        let all = allowed();
        assert!(!all.is_empty());
        // Pinning a test thread to a CPU it may use works, and steering a listener too.
        let cpu = all[0];
        std::thread::spawn(move || pin_current_thread(cpu).expect("pin"))
            .join()
            .expect("thread");
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        steer(&l, cpu).expect("SO_INCOMING_CPU");
        assert_eq!(socket2::SockRef::from(&l).cpu_affinity().expect("get"), cpu);
    }
}
