//! The servers under test, one per `--addr` (e.g. the nodes of a cluster): which clients go
//! where, and their /proc figures reported per node and summed.
//!
//! With one server the report keeps its single-server keys (`rss_after_kb`, `cpu_ns`, ...).
//! With several, those keys hold the sums (per-connection figures: summed growth over all
//! clients), and `nodes=K` and `node1_...` .. `nodeK_...` give each node's share.

use crate::cli::Common;
use crate::error::Result;
use crate::proc::{Cpu, Memory, Proc};
use crate::stats::Report;

/// One handle per `--pid`, in `--addr` order (empty without `--pid`).
pub fn procs(c: &Common) -> Result<Vec<Proc>> {
    c.pids.iter().map(|&p| Proc::new(p)).collect()
}

/// Client number `global` (over all workers) connects to node `global % nodes`: how many
/// clients of `n` each node gets.
pub fn clients_per_node(n: usize, nodes: usize) -> Vec<usize> {
    (0..nodes)
        .map(|k| n / nodes + usize::from(k < n % nodes))
        .collect()
}

/// Memory before and after per node, and the growth per client.
pub fn add_memory(r: &mut Report, before: &[Memory], after: &[Memory], clients: &[usize]) {
    let per =
        |after: u64, before: u64, n: usize| (after as i64 - before as i64) * 1024 / n.max(1) as i64;
    let sum = |m: &[Memory]| {
        m.iter().fold(Memory::default(), |s, x| Memory {
            rss_kb: s.rss_kb + x.rss_kb,
            anon_kb: s.anon_kb + x.anon_kb,
        })
    };
    let (b, a, n) = (sum(before), sum(after), clients.iter().sum());
    r.add("rss_before_kb", "server VmRSS before", b.rss_kb, "KiB");
    r.add("rss_after_kb", "server VmRSS after", a.rss_kb, "KiB");
    r.add("anon_before_kb", "server RssAnon before", b.anon_kb, "KiB");
    r.add("anon_after_kb", "server RssAnon after", a.anon_kb, "KiB");
    let rss = per(a.rss_kb, b.rss_kb, n);
    r.add("rss_per_conn_b", "VmRSS per connection", rss, "B");
    let anon = per(a.anon_kb, b.anon_kb, n);
    r.add("anon_per_conn_b", "RssAnon per connection", anon, "B");
    if before.len() < 2 {
        return;
    }
    r.add("nodes", "servers (nodes)", before.len(), "");
    for (k, ((b, a), &n)) in before.iter().zip(after).zip(clients).enumerate() {
        let node = format!("node{}", k + 1);
        r.add(
            &format!("{node}_clients"),
            &format!("{node}: clients"),
            n,
            "",
        );
        let label = format!("{node}: RssAnon after");
        r.add(&format!("{node}_anon_after_kb"), &label, a.anon_kb, "KiB");
        let label = format!("{node}: RssAnon per connection");
        let v = per(a.anon_kb, b.anon_kb, n);
        r.add(&format!("{node}_anon_per_conn_b"), &label, v, "B");
        let label = format!("{node}: VmRSS per connection");
        let v = per(a.rss_kb, b.rss_kb, n);
        r.add(&format!("{node}_rss_per_conn_b"), &label, v, "B");
    }
}

/// CPU used per node over a window (`used[k]` = after minus before), summed under `cpu_ns`
/// (and `cpu_ticks` when `ticks_unit` names their unit).
pub fn add_cpu(r: &mut Report, what: &str, used: &[Cpu], ticks_unit: Option<&str>) {
    let ns: u64 = used.iter().map(|c| c.ns).sum();
    if let Some(unit) = ticks_unit {
        let ticks: u64 = used.iter().map(|c| c.ticks).sum();
        r.add("cpu_ticks", &format!("{what} (utime+stime)"), ticks, unit);
    }
    r.add("cpu_ns", &format!("{what} (schedstat)"), ns, "ns");
    if used.len() < 2 {
        return;
    }
    for (k, c) in used.iter().enumerate() {
        let node = format!("node{}", k + 1);
        r.add(
            &format!("{node}_cpu_ns"),
            &format!("{node}: CPU"),
            c.ns,
            "ns",
        );
    }
}

/// The difference `after - before` of two CPU readings.
pub fn used(before: Cpu, after: Cpu) -> Cpu {
    Cpu {
        ticks: after.ticks.saturating_sub(before.ticks),
        ns: after.ns.saturating_sub(before.ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_matches_round_robin() {
        assert_eq!(clients_per_node(10, 3), vec![4, 3, 3]);
        assert_eq!(clients_per_node(2, 6), vec![1, 1, 0, 0, 0, 0]);
        assert_eq!(clients_per_node(100_000, 6).iter().sum::<usize>(), 100_000);
    }

    fn mem(rss_kb: u64, anon_kb: u64) -> Memory {
        Memory { rss_kb, anon_kb }
    }

    #[test]
    fn one_node_keeps_the_single_server_keys() {
        let mut r = Report::new("idle");
        add_memory(&mut r, &[mem(2000, 200)], &[mem(3000, 400)], &[1024]);
        add_cpu(&mut r, "cpu", &[Cpu { ticks: 2, ns: 7 }], Some("ticks"));
        assert_eq!(
            r.result_line(),
            "natter-load-result scenario=idle rss_before_kb=2000 rss_after_kb=3000 \
             anon_before_kb=200 anon_after_kb=400 rss_per_conn_b=1000 anon_per_conn_b=200 \
             cpu_ticks=2 cpu_ns=7 ok=true"
        );
    }

    #[test]
    fn several_nodes_are_summed_and_listed() {
        let mut r = Report::new("idle");
        let before = [mem(2000, 200), mem(1000, 100)];
        let after = [mem(3000, 400), mem(1500, 150)];
        add_memory(&mut r, &before, &after, &[1024, 512]);
        let cpu = [Cpu { ticks: 0, ns: 5 }, Cpu { ticks: 1, ns: 6 }];
        add_cpu(&mut r, "cpu", &cpu, None);
        let line = r.result_line();
        for kv in [
            " rss_after_kb=4500 ",
            " anon_per_conn_b=166 ", // (250 KiB * 1024) / 1536
            " nodes=2 ",
            " node1_clients=1024 ",
            " node1_anon_per_conn_b=200 ",
            " node2_anon_per_conn_b=100 ",
            " node2_rss_per_conn_b=1000 ",
            " cpu_ns=11 ",
            " node1_cpu_ns=5 ",
            " node2_cpu_ns=6 ",
        ] {
            assert!(line.contains(kv), "{kv} missing in {line}");
        }
        assert!(!line.contains("cpu_ticks"));
    }
}
