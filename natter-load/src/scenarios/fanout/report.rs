//! The `fanout` report: the human table and the `natter-load-result` line, and the checks that
//! make a run fail.

use super::Flow;
use super::upgrades::Upgrades;
use crate::cli::{Common, Fanout};
use crate::lineage::Lineage;
use crate::proc::Cpu;
use crate::scenarios::ms;
use crate::scenarios::servers::add_cpu;
use crate::stats::{Report, us};

impl Flow {
    /// The report of a finished run; `cpu` is what each server used while the senders ran.
    pub(super) fn report(
        &self,
        c: &Common,
        o: &Fanout,
        cpu: &[Cpu],
        servers: &[Lineage],
    ) -> Report {
        let t = &self.tally;
        let elapsed = self.last_delivery.saturating_duration_since(self.start);
        let mut r = Report::new("fanout");
        r.add_key("proto", c.proto.name());
        r.add("receivers", "receivers", o.receivers, "");
        r.add("senders", "senders", o.senders, "");
        r.add("messages", "messages per sender", o.messages, "");
        r.add_key("room", o.room.as_deref().unwrap_or("default"));
        r.add("window", "window per sender", o.window, "messages");
        r.add("expected", "deliveries expected", t.expected(), "");
        r.add("delivered", "deliveries received", t.delivered, "");
        r.add("lost", "lost", t.lost(), "");
        r.add("out_of_order", "out of order", t.out_of_order, "");
        r.add("duplicates", "duplicates", t.duplicates, "");
        r.add("garbled", "garbled", t.garbled, "");
        r.add(
            "other_lines",
            "other non-notice lines",
            self.other_lines,
            "",
        );
        let secs = format!("{:.3}", elapsed.as_secs_f64());
        r.add("secs", "duration", secs, "s");
        let rate = t.delivered as f64 / elapsed.as_secs_f64().max(1e-9);
        r.add(
            "deliveries_per_s",
            "deliveries per second",
            format!("{rate:.0}"),
            "",
        );
        let lat = self.latencies.latency();
        r.add("p50_us", "latency p50", us(lat.p50), "µs");
        r.add("p99_us", "latency p99", us(lat.p99), "µs");
        r.add("max_us", "latency max", us(lat.max), "µs");
        let last = self.last_receipt.latency();
        let label = "until the last receiver had a message, p50";
        r.add("last_delivery_us", label, us(last.p50), "µs");
        let label = "until the last receiver had a message, max";
        r.add("last_delivery_max_us", label, us(last.max), "µs");
        if !cpu.is_empty() {
            add_cpu(&mut r, "server CPU", cpu, None);
            let ns: u64 = cpu.iter().map(|c| c.ns).sum();
            let per = format!("{:.0}", ns as f64 / t.delivered.max(1) as f64);
            r.add("cpu_ns_per_delivery", "server CPU per delivery", per, "ns");
        }
        if let Some(u) = &self.upgrades {
            let gens = servers.first().map_or(0, Lineage::generations);
            self.add_upgrades(&mut r, u, gens);
        }
        self.checks(&mut r, o);
        r
    }

    fn add_upgrades(&self, r: &mut Report, u: &Upgrades, generations: usize) {
        r.add("upgrades", "upgrades done", u.done(), "");
        let label = "upgrades signalled after the last delivery";
        r.add("upgrades_after_load", label, self.signals_after_load, "");
        r.add(
            "server_generations",
            "server processes seen",
            generations,
            "",
        );
        let label = "freeze: longest wait for a delivery across an upgrade";
        r.add("freeze_max_ms", label, ms(u.freeze_max), "ms");
        r.add("unexpected_lines", "unexpected lines", self.unexpected, "");
        let label = "upgrade notices beyond one per upgrade";
        r.add("extra_notices", label, u.extra_notices, "");
    }

    fn checks(&self, r: &mut Report, o: &Fanout) {
        let t = &self.tally;
        if let Some(why) = &self.failure {
            r.fail(why.clone());
        }
        if t.lost() + t.out_of_order + t.duplicates + t.garbled > 0 {
            r.fail(format!(
                "{} lost, {} out of order, {} duplicated, {} garbled deliveries",
                t.lost(),
                t.out_of_order,
                t.duplicates,
                t.garbled
            ));
        }
        let Some(u) = &self.upgrades else {
            return;
        };
        if u.done() < o.upgrades && self.failure.is_none() {
            r.fail(format!("only {} of {} upgrades done", u.done(), o.upgrades));
        }
        if self.unexpected + u.extra_notices > 0 {
            r.fail(format!(
                "{} unexpected lines and {} extra `*** Server upgraded.` lines",
                self.unexpected, u.extra_notices
            ));
        }
        if self.signals_after_load > 0 {
            eprintln!(
                "natter-load: note: {} of {} upgrades started after the last delivery \
                 (raise -m or lower --upgrade-gap-ms to keep them all under load)",
                self.signals_after_load, o.upgrades
            );
        }
    }
}
