//! Counters sampled from the services' `/metrics` at a fixed interval and kept for the last
//! hour, so that pages can show rates and their course over time (the services keep only
//! totals since they started).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marty_config::Service;
use time::OffsetDateTime;

use crate::{Console, scrape};

/// One reading of a service's counters.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: OffsetDateTime,
    pub requests: f64,
    pub errors: f64,
    /// Passports issued (IssuePassport + ProcessPassport answered OK); engine only.
    pub issued: f64,
    /// Verifications answered; engine only.
    pub verified: f64,
}

/// An hour of samples per service.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<Vec<(Service, VecDeque<Sample>)>>,
}

const KEEP: Duration = Duration::from_secs(3600);

impl History {
    fn push(&self, service: Service, sample: Sample) {
        let mut all = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let pos = match all.iter().position(|(s, _)| *s == service) {
            Some(p) => p,
            None => {
                all.push((service, VecDeque::new()));
                all.len() - 1
            }
        };
        let list = &mut all[pos].1;
        // A restarted service starts its counters again: the history starts again with it.
        if list
            .back()
            .is_some_and(|last| sample.requests < last.requests)
        {
            list.clear();
        }
        list.push_back(sample);
        let oldest = sample.at - KEEP;
        while list.front().is_some_and(|s| s.at < oldest) {
            list.pop_front();
        }
    }

    /// The samples of the last hour (none of a service that stopped answering an hour ago).
    pub fn of(&self, service: Service) -> Vec<Sample> {
        self.of_at(service, OffsetDateTime::now_utc())
    }

    fn of_at(&self, service: Service, now: OffsetDateTime) -> Vec<Sample> {
        let all = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .find(|(s, _)| *s == service)
            .map(|(_, l)| l.iter().filter(|s| s.at >= now - KEEP).copied().collect())
            .unwrap_or_default()
    }
}

/// Per-minute rates between consecutive samples: (time, value per minute).
pub fn per_minute(
    samples: &[Sample],
    value: impl Fn(&Sample) -> f64,
) -> Vec<(OffsetDateTime, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let secs = (w[1].at - w[0].at).as_seconds_f64();
            (secs > 0.0).then(|| {
                (
                    w[1].at,
                    (value(&w[1]) - value(&w[0])).max(0.0) * 60.0 / secs,
                )
            })
        })
        .collect()
}

/// The rate per minute over the last `window` before now (None with fewer than two samples
/// in it: a service that stopped answering shows no rate, not its old one).
pub fn recent_rate(
    samples: &[Sample],
    window: time::Duration,
    value: impl Fn(&Sample) -> f64,
) -> Option<f64> {
    recent_rate_at(samples, window, value, OffsetDateTime::now_utc())
}

fn recent_rate_at(
    samples: &[Sample],
    window: time::Duration,
    value: impl Fn(&Sample) -> f64,
    now: OffsetDateTime,
) -> Option<f64> {
    let last = samples.last().filter(|s| s.at >= now - window)?;
    let first = samples.iter().find(|s| s.at >= now - window)?;
    let secs = (last.at - first.at).as_seconds_f64();
    (secs > 0.0).then(|| (value(last) - value(first)).max(0.0) * 60.0 / secs)
}

/// Samples every service every `every` for as long as the console runs.
pub fn spawn(console: Arc<Console>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for api in &console.apis {
                let service = &api.service;
                let Ok(m) = scrape::get(console.tls.as_ref(), api, "/metrics").await else {
                    continue;
                };
                let engine = |method: &str| {
                    scrape::sum(
                        &m,
                        "marty_grpc_requests_total",
                        &[
                            &format!("method=\"marty.passport.v1.PassportEngine/{method}\""),
                            "code=\"OK\"",
                        ],
                    )
                    .unwrap_or(0.0)
                };
                console.history.push(
                    *service,
                    Sample {
                        at: OffsetDateTime::now_utc(),
                        requests: scrape::sum(&m, "marty_grpc_requests_total", &[]).unwrap_or(0.0),
                        errors: scrape::sum_without(&m, "marty_grpc_requests_total", "code=\"OK\"")
                            .unwrap_or(0.0),
                        issued: engine("IssuePassport") + engine("ProcessPassport"),
                        verified: engine("VerifyPassport"),
                    },
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64, requests: f64) -> Sample {
        Sample {
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s),
            requests,
            errors: 0.0,
            issued: 0.0,
            verified: 0.0,
        }
    }

    #[test]
    fn rates_come_from_differences_and_a_restart_starts_again() {
        let t = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let five = time::Duration::minutes(5);
        let h = History::default();
        h.push(Service::Csca, at(0, 10.0));
        h.push(Service::Csca, at(30, 40.0));
        h.push(Service::Csca, at(60, 100.0));
        let s = h.of_at(Service::Csca, t(60));
        let rates: Vec<f64> = per_minute(&s, |s| s.requests).iter().map(|r| r.1).collect();
        assert_eq!(rates, [60.0, 120.0]);
        assert_eq!(recent_rate_at(&s, five, |s| s.requests, t(60)), Some(90.0));
        // Ten minutes on without a new sample: no rate, not the old one.
        assert_eq!(recent_rate_at(&s, five, |s| s.requests, t(660)), None);
        assert!(h.of_at(Service::Csca, t(7260)).is_empty());
        // The service restarted: its counter went down, its history starts again.
        h.push(Service::Csca, at(90, 3.0));
        let s = h.of_at(Service::Csca, t(90));
        assert_eq!(s.len(), 1);
        assert_eq!(recent_rate_at(&s, five, |s| s.requests, t(90)), None);
        // An hour later the oldest samples are gone.
        h.push(Service::Csca, at(90 + 3601, 5.0));
        assert_eq!(h.of_at(Service::Csca, t(90 + 3601)).len(), 1);
    }
}
