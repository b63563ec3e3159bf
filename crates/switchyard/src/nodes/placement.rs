//! Which node a new conference goes to: a pure function of the candidates' figures.
//!
//! Policy, in order:
//! 1. **Filter.** A node is rejected, with the reason recorded, when it is not `up` (connecting,
//!    degraded or down), is draining, lacks a label the caller asked for (`region = "eu"` must
//!    match exactly), is full (occupancy ≥ capacity, where occupancy = live members + placed
//!    conferences nobody has joined yet, each of which reserves one slot), reports more sessions
//!    than its `Max-Sessions`, or has less idle CPU than `min_idle_cpu` (from its HEARTBEAT).
//! 2. **Score** what is left: `max(occupancy / capacity, busy CPU share)`, lower is better.
//! 3. **Power of two choices.** Two distinct candidates are drawn at random and the lower score
//!    wins. With stale load figures (several replicas placing at once, members not joined yet)
//!    always taking the minimum sends every new conference to the same node; two random choices
//!    keep nearly the balance of the minimum without that herd (Mitzenmacher). With two
//!    candidates this is simply the less loaded one.
//!
//! Unlike `hash(name) mod N`, adding a node moves nothing (placements are recorded, not
//! computed) and a dead node is never chosen.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use serde::Serialize;

use super::health::Health;

/// What placement knows about one node.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub health: Health,
    pub draining: bool,
    pub capacity: u32,
    pub labels: &'a BTreeMap<String, String>,
    /// Live members on the node (shared live state).
    pub members: u32,
    /// Placed conferences on the node that nobody has joined yet (or any more).
    pub idle_conferences: u32,
    /// `Idle-CPU` of the last HEARTBEAT.
    pub idle_cpu: Option<f64>,
    /// `Session-Count` and `Max-Sessions` of the last HEARTBEAT.
    pub sessions: Option<(u32, u32)>,
}

impl Candidate<'_> {
    /// Members plus one reserved slot per idle placement.
    pub fn occupancy(&self) -> u32 {
        self.members.saturating_add(self.idle_conferences)
    }
}

/// Tunables of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A node whose last HEARTBEAT reported less idle CPU (percent) gets no new conference.
    pub min_idle_cpu: f64,
}

/// Why a node was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    Connecting,
    Down,
    Degraded,
    Draining,
    LabelMismatch {
        label: String,
        wanted: String,
        actual: Option<String>,
    },
    Full {
        occupancy: u32,
        capacity: u32,
    },
    Sessions {
        sessions: u32,
        max_sessions: u32,
    },
    Cpu {
        idle_cpu: f64,
        min_idle_cpu: f64,
    },
}

impl Rejection {
    /// Stable short name (metrics label, `reason` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Down => "down",
            Self::Degraded => "degraded",
            Self::Draining => "draining",
            Self::LabelMismatch { .. } => "label_mismatch",
            Self::Full { .. } => "full",
            Self::Sessions { .. } => "sessions",
            Self::Cpu { .. } => "cpu",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => f.write_str("not connected yet"),
            Self::Down => f.write_str("down"),
            Self::Degraded => f.write_str("degraded (heartbeat late or ESL slow)"),
            Self::Draining => f.write_str("draining"),
            Self::LabelMismatch {
                label,
                wanted,
                actual: Some(actual),
            } => write!(f, "label {label}={actual}, wanted {wanted}"),
            Self::LabelMismatch {
                label,
                wanted,
                actual: None,
            } => write!(f, "no label {label}, wanted {label}={wanted}"),
            Self::Full {
                occupancy,
                capacity,
            } => write!(f, "full ({occupancy} of {capacity})"),
            Self::Sessions {
                sessions,
                max_sessions,
            } => write!(f, "at its session limit ({sessions} of {max_sessions})"),
            Self::Cpu {
                idle_cpu,
                min_idle_cpu,
            } => write!(f, "CPU {idle_cpu:.1}% idle, below {min_idle_cpu:.1}%"),
        }
    }
}

/// The node chosen and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub node: String,
    pub score: f64,
}

/// Chooses a node for a new conference, or says why each node was rejected.
pub fn choose(
    candidates: &[Candidate<'_>],
    wanted_labels: &BTreeMap<String, String>,
    policy: Policy,
    rng: &mut impl Rng,
) -> Result<Choice, Vec<(String, Rejection)>> {
    let mut eligible: Vec<(&Candidate<'_>, f64)> = Vec::new();
    let mut rejected = Vec::new();
    for c in candidates {
        match check(c, wanted_labels, policy) {
            Ok(score) => eligible.push((c, score)),
            Err(r) => rejected.push((c.id.to_owned(), r)),
        }
    }
    let pick = match eligible.len() {
        0 => return Err(rejected),
        1 => eligible[0],
        n => {
            let first = rng.random_range(0..n);
            let mut second = rng.random_range(0..n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (eligible[first], eligible[second]);
            if b.1 < a.1 { b } else { a }
        }
    };
    Ok(Choice {
        node: pick.0.id.to_owned(),
        score: pick.1,
    })
}

/// The score of an eligible node, or why it is not.
fn check(
    c: &Candidate<'_>,
    wanted: &BTreeMap<String, String>,
    policy: Policy,
) -> Result<f64, Rejection> {
    match c.health {
        Health::Up => {}
        Health::Connecting => return Err(Rejection::Connecting),
        Health::Down => return Err(Rejection::Down),
        Health::Degraded => return Err(Rejection::Degraded),
    }
    if c.draining {
        return Err(Rejection::Draining);
    }
    for (label, value) in wanted {
        let actual = c.labels.get(label);
        if actual != Some(value) {
            return Err(Rejection::LabelMismatch {
                label: label.clone(),
                wanted: value.clone(),
                actual: actual.cloned(),
            });
        }
    }
    let occupancy = c.occupancy();
    if occupancy >= c.capacity {
        return Err(Rejection::Full {
            occupancy,
            capacity: c.capacity,
        });
    }
    if let Some((sessions, max_sessions)) = c.sessions
        && max_sessions > 0
        && sessions >= max_sessions
    {
        return Err(Rejection::Sessions {
            sessions,
            max_sessions,
        });
    }
    let busy_cpu = match c.idle_cpu {
        Some(idle_cpu) if idle_cpu < policy.min_idle_cpu => {
            return Err(Rejection::Cpu {
                idle_cpu,
                min_idle_cpu: policy.min_idle_cpu,
            });
        }
        Some(idle_cpu) => ((100.0 - idle_cpu) / 100.0).clamp(0.0, 1.0),
        None => 0.0,
    };
    let load = f64::from(occupancy) / f64::from(c.capacity.max(1));
    Ok(load.max(busy_cpu))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const POLICY: Policy = Policy { min_idle_cpu: 10.0 };

    fn no_labels() -> &'static BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        &EMPTY
    }

    fn node(id: &'static str, members: u32) -> Candidate<'static> {
        Candidate {
            id,
            health: Health::Up,
            draining: false,
            capacity: 100,
            labels: no_labels(),
            members,
            idle_conferences: 0,
            idle_cpu: Some(90.0),
            sessions: Some((members, 1000)),
        }
    }

    #[test]
    fn every_rejection_is_reported_with_its_reason() {
        let eu: BTreeMap<String, String> = [("region".to_owned(), "eu".to_owned())].into();
        let us: BTreeMap<String, String> = [("region".to_owned(), "us".to_owned())].into();
        let mut nodes = vec![
            node("connecting", 0),
            node("down", 0),
            node("degraded", 0),
            node("draining", 0),
            node("us", 0),
            node("unlabelled", 0),
            node("full", 60),
            node("sessions", 0),
            node("hot", 0),
        ];
        nodes[0].health = Health::Connecting;
        nodes[1].health = Health::Down;
        nodes[2].health = Health::Degraded;
        nodes[3].draining = true;
        nodes[4].labels = &us;
        nodes[6].idle_conferences = 40;
        nodes[7].sessions = Some((1000, 1000));
        nodes[8].idle_cpu = Some(4.5);
        for n in &mut nodes {
            if n.id != "us" && n.id != "unlabelled" {
                n.labels = &eu;
            }
        }
        let err = choose(&nodes, &eu, POLICY, &mut StdRng::seed_from_u64(1)).unwrap_err();
        let reasons: Vec<String> = err.iter().map(|(n, r)| format!("{n}: {r}")).collect();
        assert_eq!(
            reasons,
            [
                "connecting: not connected yet",
                "down: down",
                "degraded: degraded (heartbeat late or ESL slow)",
                "draining: draining",
                "us: label region=us, wanted eu",
                "unlabelled: no label region, wanted region=eu",
                "full: full (100 of 100)",
                "sessions: at its session limit (1000 of 1000)",
                "hot: CPU 4.5% idle, below 10.0%",
            ]
        );
    }

    #[test]
    fn of_two_nodes_the_less_loaded_wins_whatever_the_draw() {
        let nodes = [node("a", 30), node("b", 10)];
        for seed in 0..50 {
            let choice = choose(
                &nodes,
                no_labels(),
                POLICY,
                &mut StdRng::seed_from_u64(seed),
            )
            .unwrap();
            assert_eq!(choice.node, "b");
        }
    }

    #[test]
    fn busy_cpu_counts_like_occupancy() {
        let mut nodes = [node("a", 10), node("b", 10)];
        nodes[1].idle_cpu = Some(20.0); // 80 % busy beats 10 % occupancy
        let choice = choose(&nodes, no_labels(), POLICY, &mut StdRng::seed_from_u64(7)).unwrap();
        assert_eq!(choice.node, "a");
        assert!((choice.score - 0.1).abs() < 1e-9);
    }

    #[test]
    fn idle_placements_reserve_a_slot() {
        let mut nodes = [node("a", 0), node("b", 2)];
        nodes[0].idle_conferences = 5;
        let choice = choose(&nodes, no_labels(), POLICY, &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(choice.node, "b");
    }

    /// Many placements against fixed figures spread over all nodes (no herd on the minimum)
    /// and never pick the most loaded of three.
    #[test]
    fn two_choices_spread_without_picking_the_worst() {
        let nodes = [node("a", 10), node("b", 11), node("c", 50)];
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = BTreeMap::new();
        for _ in 0..3000 {
            let choice = choose(&nodes, no_labels(), POLICY, &mut rng).unwrap();
            *counts.entry(choice.node).or_insert(0) += 1;
        }
        assert!(!counts.contains_key("c"), "{counts:?}");
        // a wins both of its pairs, b only its pair with c: about 2/3 and 1/3.
        assert!((1800..2200).contains(&counts["a"]), "{counts:?}");
        assert!((800..1200).contains(&counts["b"]), "{counts:?}");
    }

    #[test]
    fn a_node_without_heartbeat_figures_is_judged_by_occupancy() {
        let mut nodes = [node("a", 0)];
        nodes[0].idle_cpu = None;
        nodes[0].sessions = None;
        assert!(choose(&nodes, no_labels(), POLICY, &mut StdRng::seed_from_u64(0)).is_ok());
        nodes[0].capacity = 0;
        let err = choose(&nodes, no_labels(), POLICY, &mut StdRng::seed_from_u64(0)).unwrap_err();
        assert_eq!(err[0].1.as_str(), "full");
    }
}
