//! `binfm`: run a BINFM testbed topology and watch it packet by packet.

/// `println!` that does not panic when stdout is closed (e.g. `binfm run ... | head -1`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use anyhow::Context;
use binfm_testbed::driver::{self, RunOptions};
use binfm_testbed::experiment::{self, ExperimentOptions, Parts, Progress};
use binfm_testbed::topology::compute::ComputeCosts;
use binfm_testbed::topology::{Model, Topology, parse_duration};
use clap::{Parser, Subcommand};
use rand::TryRng;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A testbed for BINFM (NAT traversal, mobility and security from one blockchain Query/Reply)
/// with real IPv4 packets.
///
/// A topology file (TOML, see docs/topology.md) describes segments, NATs, routers and hosts.
/// `binfm run` plays it in virtual time (fast, deterministic for a seed) and writes a pcapng
/// capture (open it in Wireshark), a JSON-lines event log and a results file.
#[derive(Debug, Parser)]
#[command(name = "binfm", version, propagate_version = true)]
struct Cli {
    /// More log output (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a topology and write OUT/capture.pcapng, OUT/events.jsonl, OUT/results.json and
    /// OUT/timing.json (wall time, CPU time and peak resident memory of the run).
    Run {
        /// Topology file, e.g. topologies/lan-nat.toml.
        file: PathBuf,
        /// Output folder [default: out/<topology name>/].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed for every random decision (jitter, loss, DHCP ids) [default: the file's `seed`].
        #[arg(long)]
        seed: Option<u64>,
        /// Virtual time to run, e.g. 60s or 10min [default: the file's `duration`, else 60s].
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<std::time::Duration>,
        /// Run in real time with one TUN device per segment inside a new network namespace
        /// `binfm-<name>` (needs root; see docs/live.md). Ctrl-C ends it cleanly.
        #[arg(long)]
        live: bool,
        /// With --live: derive the end nodes' keys from the seed, as a virtual run does,
        /// instead of from 32 bytes of operating-system randomness (the default), so a live
        /// run can be repeated with the same identities and key streams. Anyone who has the
        /// topology file can then recompute every key: for experiments only.
        #[arg(long, requires = "live")]
        reproducible_keys: bool,
        /// Scheme the end nodes run: `binfm` or `vertical` (the baseline) [default: the
        /// file's `model`, else binfm].
        #[arg(long)]
        model: Option<Model>,
        /// Live mode: never sleep, poll TUNs and clock in a loop (one core at 100%), which
        /// removes the occasional ms of waking from idle (docs/live.md, "Delay fidelity").
        #[arg(long, requires = "live")]
        busy_poll: bool,
        /// What the roles' computation costs in virtual time: `zero`, `measured` (the
        /// defaults in docs/topology.md) or a file with a `[compute]` table (what `binfm
        /// calibrate` prints) [default: the file's `[compute]`, else zero].
        #[arg(long, conflicts_with = "live", value_parser = parse_compute_arg)]
        compute: Option<ComputeCosts>,
    },
    /// Time the operations roles charge in virtual time (DH, ed25519, Query handling, block
    /// validation) on this machine and print a `[compute]` table of the medians.
    Calibrate,
    /// Run BINFM and the vertical model on the same topology and seeds, N runs each, and
    /// write OUT/results.json, OUT/report.md and OUT/plots/*.svg (the paper's Tables 1-3 and
    /// signalling beside the measured figures, then what the paper left out).
    ///
    /// `--only capacity` runs the capacity study (docs/scale.md, "Capacity study"): 13
    /// minutes on a quiet two-core machine, 43 on a busy one, with its default sweeps and
    /// crowds (10,000 ENs on the full fabric: about 1.9 GB), so `all` leaves it out.
    Experiment {
        /// Topology file with a `call` and (for mid-call figures) a `move` and a `rekey`.
        file: PathBuf,
        /// Runs per model (seeds: the file's seed, +1, +2, ...); sweeps use at most 10.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Output folder [default: out/<topology name>-experiment/].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parts to run: any of paper, blocks, loss, scale, capacity (comma-separated), or
        /// all (= paper, blocks, loss, scale: the capacity study is not in it).
        #[arg(long, default_value = "all", value_parser = Parts::parse)]
        only: Parts,
        /// ENs per point of the scale part.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
        scale_ens: Vec<usize>,
        /// Capacity part: crowd sizes of its EN sweep (outdated Replies, SN CPU and memory).
        #[arg(long, value_parser = parse_counts, default_value = "1000,10000,100000")]
        capacity_ens: Counts,
        /// Capacity part: crowd sizes run on the full fabric, each a child `binfm run` (10,000
        /// takes over a minute and about 1.9 GB); empty ("") to skip.
        #[arg(long, value_parser = parse_counts, default_value = "1000,3000,10000")]
        capacity_crowd: Counts,
        /// Capacity part: virtual time of each full-fabric crowd run.
        #[arg(long, value_parser = parse_duration_arg, default_value = "120s")]
        capacity_crowd_duration: std::time::Duration,
        /// Keep every run's capture and audio (default: the first run's of each model).
        #[arg(long)]
        keep_runs: bool,
        /// The paper part runs once more with this compute table (`measured`, a file with a
        /// `[compute]` table, or `zero` to skip that pass); the main pass keeps the file's.
        #[arg(long, default_value = "measured", value_parser = parse_compute_arg)]
        compute: ComputeCosts,
    },
    /// Remove every `binfm-*` network namespace left behind by a killed live run (and kill
    /// the programs still running in them).
    Clean,
    /// Run a program in a kernel host of a running live topology, like Mininet's `h1 ping
    /// h2`: `binfm exec topologies/kernel-hosts.toml k1 -- ping -c 3 198.51.100.10`.
    Exec {
        /// The topology file (or just its `name`) of the running `binfm run --live`.
        topology: String,
        /// A kernel host of it (a `[[host]]` with a `kernel` table).
        host: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run one role as a standalone daemon on a kernel UDP socket and the real clock (see
    /// docs/node.md): `binfm node super-node --config sn1.toml`. SIGTERM or Ctrl-C ends it
    /// cleanly (calls ended on this side, files flushed).
    Node {
        /// The role to run.
        role: binfm_testbed::daemon::config::RoleKind,
        /// Its configuration file (TOML; every key in docs/node.md).
        #[arg(long)]
        config: PathBuf,
        /// Check the configuration and stop.
        #[arg(long)]
        check: bool,
        /// Replaces the file's `events` (relative paths: from the current folder).
        #[arg(long)]
        events: Option<PathBuf>,
        /// Replaces the file's `control`.
        #[arg(long)]
        control: Option<PathBuf>,
        /// End node: replaces the file's `key_file`.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// End node: replaces the file's `lease_file`.
        #[arg(long)]
        lease_file: Option<PathBuf>,
        /// End node: replaces the file's `audio_out`.
        #[arg(long)]
        audio_out: Option<PathBuf>,
    },
    /// Talk to a running `binfm node` over its control socket: `call PEER`, `hangup PEER`,
    /// `rekey` (end node) or `status` (any role; prints JSON).
    Ctl {
        /// The daemon's control socket (its config's `control` key).
        socket: PathBuf,
        /// The command and its argument, e.g. `call b` or `status`.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Check a topology file and list every problem with its line.
    Check {
        /// Topology file.
        file: PathBuf,
    },
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s)
}

/// A comma-separated list of counts; empty for none.
#[derive(Debug, Clone)]
struct Counts(Vec<usize>);

fn parse_counts(s: &str) -> Result<Counts, String> {
    s.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{w}` is not a positive count"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Counts)
}

fn parse_compute_arg(s: &str) -> Result<ComputeCosts, String> {
    ComputeCosts::from_arg(s)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &std::path::Path) -> Result<Topology, ExitCode> {
    Topology::load(file).map_err(|e| {
        eprintln!("{e}");
        let n = e.diagnostics.len();
        eprintln!(
            "{}: {n} problem{} found",
            file.display(),
            if n == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    })
}

/// Loads a topology, switched to `model` if given (checked again for that model).
fn load_as(file: &std::path::Path, model: Option<Model>) -> Result<Topology, ExitCode> {
    let mut topo = load(file)?;
    if let Some(m) = model
        && let Err(e) = topo.set_model(m)
    {
        eprintln!("{}: {e}", file.display());
        return Err(ExitCode::FAILURE);
    }
    Ok(topo)
}

/// `binfm exec`: runs `command` in kernel host `host`'s namespace and returns its exit code.
fn exec_in_kernel_host(topology: &str, host: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    let path = std::path::Path::new(topology);
    let name = if path.is_file() {
        let topo = match load(path) {
            Ok(t) => t,
            Err(code) => return Ok(code),
        };
        if !topo.kernel_hosts.iter().any(|k| k.name == host) {
            let known: Vec<&str> = topo.kernel_hosts.iter().map(|k| k.name.as_str()).collect();
            anyhow::bail!(
                "{}: `{host}` is not a kernel host of topology `{}` (kernel hosts: {})",
                path.display(),
                topo.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
        topo.name
    } else {
        topology.to_owned()
    };
    let ns = binfm_testbed::driver::kernel_host_namespace(&name, host);
    if !binfm_testbed::netns::list()?.contains(&ns) {
        anyhow::bail!(
            "no live run holds kernel host `{host}` of topology `{name}` now (namespace {ns} does not exist); start one with `binfm run --live FILE`"
        );
    }
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(command)
        .status()
        .with_context(|| format!("running `ip netns exec {ns} {}`", command.join(" ")))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(128 + 9),
    })
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { file } => {
            let topo = match load(&file) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let hosts = topo.nodes.len();
            say!(
                "{}: ok: topology `{}`, {} segments, {hosts} nodes, seed {}, duration {}",
                file.display(),
                topo.name,
                topo.segments.len(),
                topo.seed,
                humantime::format_duration(topo.duration)
            );
            for k in &topo.kernel_hosts {
                say!(
                    "{}:{}: note: `{}` is a kernel host: this topology runs only live (`binfm run --live {}`)",
                    file.display(),
                    k.line,
                    k.name,
                    file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Experiment {
            file,
            runs,
            out,
            only,
            scale_ens,
            capacity_ens,
            capacity_crowd,
            capacity_crowd_duration,
            keep_runs,
            compute,
        } => {
            let topo = match load(&file) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let out_dir = out.unwrap_or_else(|| {
                std::path::Path::new("out").join(format!("{}-experiment", topo.name))
            });
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
                .context("installing the Ctrl-C handler")?;
            let opts = ExperimentOptions {
                runs,
                out_dir,
                parts: only,
                keep_runs,
                scale_ens,
                compute,
                capacity: experiment::capacity::CapacityConfig {
                    en_counts: capacity_ens.0,
                    crowd: capacity_crowd.0,
                    crowd_duration: capacity_crowd_duration,
                    ..Default::default()
                },
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} runs, ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            // Without a terminal (a log file, CI) the bar is hidden: each finished step is a
            // line on stderr instead.
            let hidden = bar.is_hidden();
            let started = std::time::Instant::now();
            let mut on_progress = |p: Progress| match p {
                Progress::Total(n) => bar.set_length(n),
                Progress::Step(s) => {
                    bar.inc(1);
                    if hidden {
                        eprintln!(
                            "[{:>7.1} s] {}/{} {s}",
                            started.elapsed().as_secs_f64(),
                            bar.position(),
                            bar.length().unwrap_or(0)
                        );
                    }
                    bar.set_message(s);
                }
                Progress::Note(s) => bar.set_message(s),
            };
            let o = experiment::run_experiment(&topo, &opts, &stop, &mut on_progress)?;
            bar.finish_and_clear();
            say!("{}", o.table);
            if o.interrupted {
                say!("Interrupted by Ctrl-C: the files cover the runs that finished.");
            }
            for f in &o.files {
                say!("  {}", f.display());
            }
            Ok(if o.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Exec {
            topology,
            host,
            command,
        } => exec_in_kernel_host(&topology, &host, &command),
        Command::Node {
            role,
            config,
            check,
            events,
            control,
            key_file,
            lease_file,
            audio_out,
        } => {
            let overrides = binfm_testbed::daemon::config::Overrides {
                events,
                control,
                key_file,
                lease_file,
                audio_out,
            };
            let cfg = match binfm_testbed::daemon::config::NodeConfig::load(&config, role)
                .and_then(|c| c.with_overrides(&overrides))
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if check {
                say!(
                    "{}: ok: {} on udp {}",
                    config.display(),
                    role.as_str(),
                    cfg.listen
                );
                return Ok(ExitCode::SUCCESS);
            }
            binfm_testbed::daemon::run(&cfg, &mut |line| eprintln!("{line}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ctl { socket, command } => {
            let answer = binfm_testbed::daemon::ctl::request(&socket, &command.join(" "))?;
            say!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(if answer["ok"] == serde_json::Value::Bool(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Calibrate => {
            let c = binfm_testbed::calibrate::calibrate(Default::default());
            say!("{}", binfm_testbed::calibrate::report(&c));
            Ok(ExitCode::SUCCESS)
        }
        Command::Clean => {
            let removed = binfm_testbed::netns::clean()?;
            if removed.is_empty() {
                say!("no binfm-* network namespace to remove");
            }
            for name in removed {
                say!("removed network namespace {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            out,
            seed,
            duration,
            live: true,
            reproducible_keys,
            model,
            busy_poll,
            compute: _,
        } => {
            let mut topo = match load_as(&file, model) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            if !reproducible_keys {
                // The run's 256-bit key master from the OS (binfm_roles::keyseed).
                let mut master = [0u8; 32];
                rand::rngs::SysRng
                    .try_fill_bytes(&mut master)
                    .map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
                topo.key_master = Some(master);
            }
            let opts = RunOptions {
                out_dir: out.unwrap_or_else(|| driver::default_out_dir(&topo)),
                seed,
                duration,
            };
            let live_opts = driver::LiveOptions { busy_poll };
            let s = driver::run_live_with(&topo, &opts, live_opts, &mut |line| say!("{line}"))?;
            let time = format!("{:.2} s live", s.wall.as_secs_f64());
            finish_run(&topo.name, &time, &s, "stopped by a signal")
        }
        Command::Run {
            file,
            out,
            seed,
            duration,
            live: false,
            reproducible_keys: _,
            model,
            busy_poll: _,
            compute,
        } => {
            let mut topo = match load_as(&file, model) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            if let Some(c) = compute {
                topo.compute = c;
            }
            let out_dir = out.unwrap_or_else(|| driver::default_out_dir(&topo));
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
                .context("installing the Ctrl-C handler")?;
            let opts = RunOptions {
                out_dir,
                seed,
                duration,
            };
            let s = driver::run_virtual(&topo, &opts, &stop)?;
            let time = format!(
                "{} of virtual time in {:.2} s of wall time",
                humantime::format_duration(s.virtual_time),
                s.wall.as_secs_f64()
            );
            finish_run(&topo.name, &time, &s, "interrupted by Ctrl-C")
        }
    }
}

/// The end of `binfm run`, virtual or live: the summary line (`time` says how long it ran,
/// `stopped` how an interrupted run was stopped), timing.json, the list of output files, and
/// the exit code (130 when interrupted).
fn finish_run(
    name: &str,
    time: &str,
    s: &driver::RunSummary,
    stopped: &str,
) -> anyhow::Result<ExitCode> {
    let note = if s.interrupted {
        format!(" ({stopped}; files are complete up to that moment)")
    } else {
        String::new()
    };
    say!(
        "{name}: {time} (seed {}), {} packets, {} events{note}",
        s.seed,
        s.packets,
        s.events
    );
    driver::write_timing(s)?;
    for f in [
        "capture.pcapng",
        "events.jsonl",
        "results.json",
        "timing.json",
    ] {
        say!("  {}", s.out_dir.join(f).display());
    }
    Ok(if s.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}
