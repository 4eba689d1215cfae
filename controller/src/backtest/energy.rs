//! The backtest's energy model (pure): the usual linear host power model. It is a model, not a
//! measurement.
//!
//! A powered host draws `P(u) = P_idle + (P_max − P_idle) × u` at CPU utilisation `u` (0–1);
//! a host that runs no VM and takes part in no migration is taken as switched off and draws
//! nothing, in every run alike (what an operator would do with a `PowerOffCandidate`). The
//! figures are those CloudSim's PlanetLab experiments use for their two host types
//! (SPECpower_ssj2008 results): HP ProLiant ML110 G4 (2 × 1860 MIPS) 86 W idle and 117 W at
//! full load, ML110 G5 (2 × 2660 MIPS) 93.7 W and 135 W. CloudSim interpolates the measured
//! curve; here it is a straight line between its ends.

/// A host's power draw when on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerModel {
    pub idle_watts: f64,
    pub max_watts: f64,
}

/// HP ProLiant ML110 G4, SPECpower_ssj2008.
pub const ML110_G4: PowerModel = PowerModel {
    idle_watts: 86.0,
    max_watts: 117.0,
};

/// HP ProLiant ML110 G5, SPECpower_ssj2008.
pub const ML110_G5: PowerModel = PowerModel {
    idle_watts: 93.7,
    max_watts: 135.0,
};

impl PowerModel {
    /// Watts of a powered host at `utilisation` (0–1, clamped).
    pub fn watts(&self, utilisation: f64) -> f64 {
        let u = utilisation.clamp(0.0, 1.0);
        self.idle_watts + (self.max_watts - self.idle_watts) * u
    }
}

/// Joules in a kilowatt-hour.
pub const JOULES_PER_KWH: f64 = 3.6e6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_is_linear_between_idle_and_full_load() {
        assert_eq!(ML110_G5.watts(0.0), 93.7);
        assert_eq!(ML110_G5.watts(1.0), 135.0);
        assert_eq!(ML110_G4.watts(0.5), 101.5);
        assert_eq!(ML110_G4.watts(1.7), 117.0, "clamped");
    }
}
