//! The binfm testbed: topology files, drivers, scenarios, captures, metrics and the CLI's
//! building blocks. The `binfm` binary is a thin layer over this library, so tests and
//! benchmarks drive exactly what users run.

pub mod apps;
pub mod attack;
pub mod calibrate;
pub mod daemon;
pub mod driver;
pub mod engine;
pub mod events;
pub mod experiment;
pub mod flood;
pub mod netns;
pub mod node;
pub mod node_roles;
pub mod procstat;
pub mod results;
pub mod timed;
pub mod topology;
pub mod vertical_app;
