//! Counters and histograms, per reactor and lock-free: each reactor increments only its own
//! atomics (Relaxed: they are statistics, not synchronisation), and the `/metrics` endpoint
//! sums them into the Prometheus text format. The registry's mutex is touched only when a
//! reactor starts and when someone scrapes.
//!
//! Responses are counted per site too, in a fixed table indexed by the site's *slot* (a
//! number the registry gives each site name once, `default` being 0): no string work per
//! request, and the `site` label takes at most `SITE_SLOTS` values, all from the
//! configuration, never from a request.
//!
//! Counters belong to a reactor *position* (0..workers), not to one thread: after a reload
//! the new reactor in position i keeps counting in the same atomics as the one it replaces
//! (both for the length of the drain), so `/metrics` does not grow by a set of series per
//! reload and the counters stay monotonic.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{TimeoutClass, CLASSES, MAX_SITES};

/// Label values of `site`: the default site and at most `MAX_SITES` names. Names are
/// never given back (a reactor still draining after a reload counts under the old
/// ones), so a process that has seen more distinct site names over its reloads counts
/// the newest under `default`.
pub const SITE_SLOTS: usize = MAX_SITES + 1;

/// Upper bounds of histogram buckets, in microseconds.
const BUCKETS_US: [u64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len()],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// A histogram family with one unlabelled series.
    pub(super) fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, "histogram", help);
        self.samples(out, name, "");
    }

    /// The bucket, sum and count lines of the series labelled `labels` (may be empty).
    fn samples(&self, out: &mut String, name: &str, labels: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let bucket = format!("{name}_bucket");
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += load(n);
            let le = format!("{labels}{sep}le=\"{}\"", *b as f64 / 1e6);
            sample(out, &bucket, &le, cumulative);
        }
        let count = load(&self.count);
        sample(out, &bucket, &format!("{labels}{sep}le=\"+Inf\""), count);
        let sum = load(&self.sum_us) as f64 / 1e6;
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, count);
    }

    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line; `labels` is `a="x",b="y"`, or empty for none.
pub(super) fn sample(out: &mut String, name: &str, labels: &str, value: impl Display) {
    let _ = match labels {
        "" => writeln!(out, "{name} {value}"),
        _ => writeln!(out, "{name}{{{labels}}} {value}"),
    };
}

type CounterOf = fn(&ReactorStats) -> &AtomicU64;
type HistogramOf = fn(&ReactorStats) -> &Histogram;
/// The counter of one label value (by index) of a labelled family.
type LabelledOf = fn(&ReactorStats, usize) -> &AtomicU64;

const H2_TRIP_NAMES: [&str; H2Trip::ALL.len()] = {
    let mut n = [""; H2Trip::ALL.len()];
    let mut i = 0;
    while i < n.len() {
        n[i] = H2Trip::ALL[i].name();
        i += 1;
    }
    n
};

/// One reactor's counters.
pub struct ReactorStats {
    /// Responses by site slot, then status class: index 0 = 1xx ... 4 = 5xx.
    pub responses: Box<[[AtomicU64; 5]]>,
    pub bytes_sent: AtomicU64,
    pub accepted: AtomicU64,
    /// Times TLS accepts paused because every handshake slot was taken.
    pub tls_accept_pauses: AtomicU64,
    pub active: AtomicU64,
    /// Indexed by `TimeoutClass as usize`.
    pub timeouts: [AtomicU64; CLASSES],
    pub log_dropped: AtomicU64,
    /// Timer queue entries, garbage included (bounded by connections, not requests).
    pub timer_entries: AtomicU64,
    /// Connections closed because handling them panicked.
    pub panics: AtomicU64,
    pub loop_time: Histogram,
    pub offload_rtt: Histogram,
    /// File windows read into the page cache on the pool before being sent, and how long
    /// each took (`send::Cold`).
    pub cold_reads: AtomicU64,
    pub cold_read_time: Histogram,
    /// Bytes of those windows the I/O threads sent themselves.
    pub cold_sent: AtomicU64,
    /// Cold windows whose I/O thread found the socket full before sending a byte.
    pub cold_empty: AtomicU64,
    /// Connections closed while an I/O thread was sending their cold window (deregistered
    /// from epoll and shut down at once, since the thread's duplicate keeps the socket).
    pub cold_shared_closes: AtomicU64,
    /// HTTP/2 connections and streams (`net::h2`).
    pub h2: H2Stats,
}

/// GOAWAY error codes counted one by one (RFC 9113 7: 0x0..=0xd); others share the last.
pub const GOAWAY_CODES: usize = 15;
const GOAWAY_NAMES: [&str; GOAWAY_CODES] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
    "UNKNOWN",
];

/// HTTP/2 defences (`net::h2`), each counted by name when it trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Trip {
    /// Over 100 client RST_STREAMs in a second (CVE-2023-44487).
    ResetRate,
    /// Over 50 streams reset by the client before their response started.
    EarlyResets,
    /// Over 2 x max_concurrent_streams new streams in one read.
    StreamsPerRead,
    PingFlood,
    SettingsFlood,
    EmptyDataFlood,
    WindowUpdateFlood,
    /// A header block over its bytes or CONTINUATION frames (CVE-2024-27316).
    HeaderBlock,
    /// A decoded header list over SETTINGS_MAX_HEADER_LIST_SIZE (HPACK bomb).
    HeaderList,
    /// Our SETTINGS not acknowledged in time.
    SettingsTimeout,
    /// Reading paused: the output the peer asked for is over its cap.
    OutCap,
}

impl H2Trip {
    pub const ALL: [H2Trip; 11] = [
        H2Trip::ResetRate,
        H2Trip::EarlyResets,
        H2Trip::StreamsPerRead,
        H2Trip::PingFlood,
        H2Trip::SettingsFlood,
        H2Trip::EmptyDataFlood,
        H2Trip::WindowUpdateFlood,
        H2Trip::HeaderBlock,
        H2Trip::HeaderList,
        H2Trip::SettingsTimeout,
        H2Trip::OutCap,
    ];

    /// The `defence` label of `vireo_h2_defence_trips_total`.
    pub const fn name(self) -> &'static str {
        match self {
            H2Trip::ResetRate => "reset_rate",
            H2Trip::EarlyResets => "early_resets",
            H2Trip::StreamsPerRead => "streams_per_read",
            H2Trip::PingFlood => "ping_flood",
            H2Trip::SettingsFlood => "settings_flood",
            H2Trip::EmptyDataFlood => "empty_data_flood",
            H2Trip::WindowUpdateFlood => "window_update_flood",
            H2Trip::HeaderBlock => "header_block",
            H2Trip::HeaderList => "header_list",
            H2Trip::SettingsTimeout => "settings_timeout",
            H2Trip::OutCap => "out_cap",
        }
    }
}

/// Frame types counted one by one (RFC 9113 6, and PRIORITY_UPDATE, RFC 9218 7.1); the
/// rest share the last.
const FRAME_NAMES: [&str; 12] = [
    "DATA",
    "HEADERS",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "PUSH_PROMISE",
    "PING",
    "GOAWAY",
    "WINDOW_UPDATE",
    "CONTINUATION",
    "PRIORITY_UPDATE",
    "UNKNOWN",
];

/// One reactor's HTTP/2 counters.
#[derive(Default)]
pub struct H2Stats {
    pub connections: AtomicU64,
    pub streams: AtomicU64,
    pub resets_sent: AtomicU64,
    pub resets_received: AtomicU64,
    /// Connections cut for Rapid Reset (CVE-2023-44487).
    pub rapid_resets: AtomicU64,
    /// Streams refused past max_concurrent_streams.
    pub refused: AtomicU64,
    /// GOAWAY frames sent, by error code.
    pub goaways: [AtomicU64; GOAWAY_CODES],
    /// DATA payload bytes sent with sendfile (cleartext h2c).
    pub sendfile_bytes: AtomicU64,
    /// Defence trips, by `H2Trip as usize`.
    pub trips: [AtomicU64; H2Trip::ALL.len()],
    /// Frames received, by `FRAME_NAMES` index.
    pub frames: [AtomicU64; FRAME_NAMES.len()],
    /// Flow-control stalls (DATA to send, no window): a stream's window, the connection's.
    pub stream_stalls: AtomicU64,
    pub connection_stalls: AtomicU64,
}

impl H2Stats {
    pub fn goaway(&self, code: u32) {
        let i = (code as usize).min(GOAWAY_CODES - 1);
        self.goaways[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn trip(&self, t: H2Trip) {
        self.trips[t as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A frame of wire type `kind` arrived.
    pub fn frame(&self, kind: u8) {
        let i = match kind {
            0..=9 => kind as usize,
            0x10 => 10,
            _ => 11,
        };
        self.frames[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A flow-control stall began: of a stream's window (`stream`) or the connection's.
    pub fn stall(&self, stream: bool) {
        let c = match stream {
            true => &self.stream_stalls,
            false => &self.connection_stalls,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for ReactorStats {
    fn default() -> Self {
        ReactorStats {
            responses: (0..SITE_SLOTS).map(|_| Default::default()).collect(),
            bytes_sent: Default::default(),
            accepted: Default::default(),
            tls_accept_pauses: Default::default(),
            active: Default::default(),
            timeouts: Default::default(),
            log_dropped: Default::default(),
            timer_entries: Default::default(),
            panics: Default::default(),
            loop_time: Default::default(),
            offload_rtt: Default::default(),
            cold_reads: Default::default(),
            cold_read_time: Default::default(),
            cold_sent: Default::default(),
            cold_empty: Default::default(),
            cold_shared_closes: Default::default(),
            h2: Default::default(),
        }
    }
}

impl ReactorStats {
    /// A response of the site in metrics slot `site` (`Registry::site_slot`).
    pub fn response(&self, site: usize, status: u16, body_bytes: u64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        let by_class = self.responses.get(site).unwrap_or(&self.responses[0]);
        by_class[class].fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(body_bytes, Ordering::Relaxed);
    }
}

/// Process-wide offload figures, filled in by the offload module: one set per kind of job
/// that is enabled.
pub struct OffloadFigures {
    pub compression: Option<JobFigures>,
    /// Directory listings (`autoindex`).
    pub listing: Option<JobFigures>,
    /// Password checks (`[[auth]]`, bcrypt).
    pub auth: Option<JobFigures>,
}

pub struct JobFigures {
    pub started: u64,
    pub completed: u64,
    pub rejected: u64,
    pub pending: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
}

type OffloadSource = Arc<dyn Fn() -> OffloadFigures + Send + Sync>;
/// Appends more families to a scrape (the upstream servers' counters, which belong to a
/// configuration generation).
pub type ExtraSource = Arc<dyn Fn(&mut String) + Send + Sync>;

pub struct Registry {
    reactors: Mutex<Vec<(usize, Arc<ReactorStats>)>>,
    /// The `site` label of each slot, in slot order; `[0]` is `default`.
    sites: Mutex<Vec<String>>,
    offload: Mutex<Option<OffloadSource>>,
    extra: Mutex<Option<ExtraSource>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            reactors: Mutex::default(),
            sites: Mutex::new(vec!["default".to_string()]),
            offload: Mutex::default(),
            extra: Mutex::default(),
            reloads: AtomicU64::default(),
            reload_failures: AtomicU64::default(),
        }
    }
}

impl Registry {
    /// The counter slot of the site labelled `name` (its first host name): the same slot
    /// for the same name across reloads; `default` (0) once every slot is taken.
    pub fn site_slot(&self, name: &str) -> usize {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = sites.iter().position(|n| n == name) {
            return i;
        }
        if sites.len() == SITE_SLOTS {
            log::warn!("metrics: {SITE_SLOTS} site names seen; {name} is counted as default");
            return 0;
        }
        sites.push(name.to_string());
        sites.len() - 1
    }

    /// The counters of reactor position `id`, shared with earlier reactors in that position.
    pub fn reactor(&self, id: usize) -> Arc<ReactorStats> {
        let mut r = self.reactors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = r.iter().find(|(i, _)| *i == id) {
            return s.clone();
        }
        let stats = Arc::new(ReactorStats::default());
        r.push((id, stats.clone()));
        r.sort_by_key(|(i, _)| *i);
        stats
    }

    /// Where the compression figures come from; None when compression is off (the source
    /// holds the pool and its cache alive, so it must go with them).
    pub fn set_offload(&self, f: Option<OffloadSource>) {
        *self.offload.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// What else a scrape shows (the current generation's upstream servers).
    pub fn set_extra(&self, f: Option<ExtraSource>) {
        *self.extra.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// A SIGHUP was handled: applied, or refused/failed (the running config kept).
    pub fn reloaded(&self, ok: bool) {
        let c = if ok {
            &self.reloads
        } else {
            &self.reload_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let reactors = self
            .reactors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::with_capacity(8192);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        family(
            &mut out,
            "vireo_responses_total",
            "counter",
            "Responses sent, by site and status class.",
        );
        for (id, s) in &reactors {
            for (slot, site) in sites.iter().enumerate() {
                let counts = &s.responses[slot];
                // A site's series appear once it has answered on this reactor (the
                // default site's always), so many quiet sites do not bloat a scrape.
                if slot > 0 && counts.iter().all(|c| load(c) == 0) {
                    continue;
                }
                for (i, c) in counts.iter().enumerate() {
                    let labels = format!("reactor=\"{id}\",site=\"{site}\",class=\"{}xx\"", i + 1);
                    sample(&mut out, "vireo_responses_total", &labels, load(c));
                }
            }
        }
        family(
            &mut out,
            "vireo_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP), by result.",
        );
        for (result, c) in [("ok", &self.reloads), ("failed", &self.reload_failures)] {
            let labels = format!("result=\"{result}\"");
            sample(&mut out, "vireo_reloads_total", &labels, load(c));
        }
        let simple: [(&str, &str, &str, CounterOf); 18] = [
            (
                "vireo_h2_connections_total",
                "counter",
                "HTTP/2 connections (ALPN h2 or cleartext prior knowledge).",
                |s| &s.h2.connections,
            ),
            (
                "vireo_h2_streams_total",
                "counter",
                "HTTP/2 streams opened by clients.",
                |s| &s.h2.streams,
            ),
            (
                "vireo_h2_resets_sent_total",
                "counter",
                "HTTP/2 RST_STREAM frames sent.",
                |s| &s.h2.resets_sent,
            ),
            (
                "vireo_h2_resets_received_total",
                "counter",
                "HTTP/2 RST_STREAM frames received.",
                |s| &s.h2.resets_received,
            ),
            (
                "vireo_h2_rapid_reset_total",
                "counter",
                "HTTP/2 connections closed for resetting streams too fast (CVE-2023-44487).",
                |s| &s.h2.rapid_resets,
            ),
            (
                "vireo_h2_refused_streams_total",
                "counter",
                "HTTP/2 streams refused past max_concurrent_streams.",
                |s| &s.h2.refused,
            ),
            (
                "vireo_h2_sendfile_bytes_total",
                "counter",
                "HTTP/2 DATA payload bytes sent with sendfile (cleartext h2c).",
                |s| &s.h2.sendfile_bytes,
            ),
            (
                "vireo_response_body_bytes_total",
                "counter",
                "Response body bytes queued for sending.",
                |s| &s.bytes_sent,
            ),
            (
                "vireo_connections_accepted_total",
                "counter",
                "Connections accepted.",
                |s| &s.accepted,
            ),
            (
                "vireo_tls_accept_pauses_total",
                "counter",
                "Times TLS accepts paused because every handshake slot was taken.",
                |s| &s.tls_accept_pauses,
            ),
            (
                "vireo_cold_reads_total",
                "counter",
                "File windows not in the page cache, read in on the offload pool before being sent.",
                |s| &s.cold_reads,
            ),
            (
                "vireo_cold_sent_bytes_total",
                "counter",
                "Bytes of cold file windows sent by the I/O threads themselves (aio threads).",
                |s| &s.cold_sent,
            ),
            (
                "vireo_cold_empty_handoffs_total",
                "counter",
                "Cold windows whose I/O thread found the socket full before sending a byte.",
                |s| &s.cold_empty,
            ),
            (
                "vireo_cold_shared_closes_total",
                "counter",
                "Connections closed while an I/O thread was sending their cold window.",
                |s| &s.cold_shared_closes,
            ),
            (
                "vireo_connections_active",
                "gauge",
                "Connections open now.",
                |s| &s.active,
            ),
            (
                "vireo_access_log_dropped_lines_total",
                "counter",
                "Access log lines dropped because the writer fell behind.",
                |s| &s.log_dropped,
            ),
            (
                "vireo_timer_entries",
                "gauge",
                "Deadlines queued in the reactors' timers (stale ones included).",
                |s| &s.timer_entries,
            ),
            (
                "vireo_panics_total",
                "counter",
                "Connections closed because handling them panicked.",
                |s| &s.panics,
            ),
        ];
        for (name, kind, help, get) in simple {
            family(&mut out, name, kind, help);
            for (id, s) in &reactors {
                sample(&mut out, name, &format!("reactor=\"{id}\""), load(get(s)));
            }
        }
        // Counter families with one label besides the reactor: (name, help, label, its
        // values, the counter of the value at an index).
        let kinds = TimeoutClass::ALL.map(TimeoutClass::name);
        let labelled: [(&str, &str, &str, &[&str], LabelledOf); 5] = [
            (
                "vireo_timeouts_total",
                "Connections closed by a timeout, by kind.",
                "kind",
                &kinds,
                |s, i| &s.timeouts[i],
            ),
            (
                "vireo_h2_goaway_total",
                "HTTP/2 GOAWAY frames sent, by error code.",
                "code",
                &GOAWAY_NAMES,
                |s, i| &s.h2.goaways[i],
            ),
            (
                "vireo_h2_defence_trips_total",
                "HTTP/2 defences tripped (budgets spent, bounds hit), by defence.",
                "defence",
                &H2_TRIP_NAMES,
                |s, i| &s.h2.trips[i],
            ),
            (
                "vireo_h2_frames_received_total",
                "HTTP/2 frames received, by type.",
                "type",
                &FRAME_NAMES,
                |s, i| &s.h2.frames[i],
            ),
            (
                "vireo_h2_flow_control_stalls_total",
                "Times HTTP/2 DATA waited for window, by whose window was shut.",
                "window",
                &["stream", "connection"],
                |s, i| match i {
                    0 => &s.h2.stream_stalls,
                    _ => &s.h2.connection_stalls,
                },
            ),
        ];
        for (name, help, label, values, get) in labelled {
            family(&mut out, name, "counter", help);
            for (id, s) in &reactors {
                for (i, v) in values.iter().enumerate() {
                    let labels = format!("reactor=\"{id}\",{label}=\"{v}\"");
                    sample(&mut out, name, &labels, load(get(s, i)));
                }
            }
        }
        let hists: [(&str, &str, HistogramOf); 3] = [
            (
                "vireo_loop_iteration_seconds",
                "Time a reactor spends handling one batch of events.",
                |s| &s.loop_time,
            ),
            (
                "vireo_offload_roundtrip_seconds",
                "From handing an offload job (compression, listing) to the pool to resuming the connection.",
                |s| &s.offload_rtt,
            ),
            (
                "vireo_cold_read_seconds",
                "From finding a file window outside the page cache to resuming the send with it read in.",
                |s| &s.cold_read_time,
            ),
        ];
        for (name, help, get) in hists {
            family(&mut out, name, "histogram", help);
            for (id, s) in &reactors {
                get(s).samples(&mut out, name, &format!("reactor=\"{id}\""));
            }
        }
        super::tls_metrics::render(&mut out);
        let offload = self
            .offload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(f) = offload else {
            return out;
        };
        let figures = f();
        for (kind, what, o) in [
            ("compression", "Compression", figures.compression),
            ("listing", "Directory listing", figures.listing),
            ("auth", "Password check", figures.auth),
        ] {
            let Some(o) = o else { continue };
            let jobs = format!("vireo_{kind}_jobs_total");
            family(
                &mut out,
                &jobs,
                "counter",
                &format!("{what} jobs, by outcome."),
            );
            for (state, v) in [
                ("started", o.started),
                ("completed", o.completed),
                ("rejected", o.rejected),
            ] {
                sample(&mut out, &jobs, &format!("state=\"{state}\""), v);
            }
            for (name, type_, help, v) in [
                ("jobs_pending", "gauge", "jobs in flight.", o.pending),
                ("cache_hits_total", "counter", "cache hits.", o.cache_hits),
                (
                    "cache_misses_total",
                    "counter",
                    "cache misses.",
                    o.cache_misses,
                ),
                (
                    "cache_bytes",
                    "gauge",
                    "bytes held in the offload cache.",
                    o.cache_bytes,
                ),
            ] {
                let name = format!("vireo_{kind}_{name}");
                family(&mut out, &name, type_, &format!("{what} {help}"));
                sample(&mut out, &name, "", v);
            }
        }
        let extra = self.extra.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(f) = extra {
            f(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sums_what_reactors_count() {
        let r = Registry::default();
        let a = r.reactor(0);
        a.response(0, 200, 10);
        a.response(0, 404, 5);
        a.loop_time.observe(Duration::from_micros(70));
        let text = r.render();
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"default\",class=\"2xx\"} 1")
        );
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"default\",class=\"4xx\"} 1")
        );
        assert!(text.contains("vireo_response_body_bytes_total{reactor=\"0\"} 15"));
        assert!(text.contains("vireo_loop_iteration_seconds_bucket{reactor=\"0\",le=\"0.0001\"} 1"));
        assert!(
            text.contains("vireo_loop_iteration_seconds_bucket{reactor=\"0\",le=\"0.00005\"} 0")
        );
    }

    #[test]
    fn responses_are_labelled_by_site_slot_and_slots_are_bounded() {
        let r = Registry::default();
        assert_eq!(r.site_slot("default"), 0);
        let a = r.site_slot("a.org");
        assert_eq!((a, r.site_slot("b.org"), r.site_slot("a.org")), (1, 2, 1));
        let s = r.reactor(0);
        s.response(a, 200, 1);
        s.response(a, 503, 1);
        s.response(0, 404, 1);
        let text = r.render();
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"a.org\",class=\"2xx\"} 1")
        );
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"a.org\",class=\"5xx\"} 1")
        );
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"default\",class=\"4xx\"} 1")
        );
        // b.org has not answered: no series yet.
        assert!(!text.contains("b.org"), "{text}");
        for i in 3..SITE_SLOTS {
            assert_eq!(r.site_slot(&format!("s{i}.org")), i);
        }
        assert_eq!(r.site_slot("one-too-many.org"), 0);
        assert_eq!(r.site_slot("s5.org"), 5);
    }

    #[test]
    fn a_position_keeps_its_counters_across_generations() {
        let r = Registry::default();
        r.reactor(0).response(0, 200, 1);
        r.reactor(1).response(0, 200, 1);
        let lines = r.render().lines().count();
        // A reload: new reactors in the same positions.
        r.reactor(1).response(0, 200, 1);
        r.reactor(0).response(0, 200, 1);
        let text = r.render();
        assert_eq!(text.lines().count(), lines);
        assert!(
            text.contains("vireo_responses_total{reactor=\"0\",site=\"default\",class=\"2xx\"} 2")
        );
        assert!(
            text.contains("vireo_responses_total{reactor=\"1\",site=\"default\",class=\"2xx\"} 2")
        );
    }
}
