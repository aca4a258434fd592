//! Gates: checks made before a phase starts. A blocked gate stops the run before the
//! phase with exit 5, records an event, and changes no step.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::plan::{Choices, Gate, substitute};
use crate::state::model::StateFile;

/// Why a gate blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub gate: String,
    pub reason: String,
}

/// Checks one gate. Strings may use the plan's `${VAR}`s; relative paths and
/// commands start in the plan's folder. A command gate runs as a step does (its own
/// process group, bounded output, `hide` applied) and ends when `stop` is set; the
/// caller then looks at `stop`, not at the verdict.
pub fn check(
    gate: &Gate,
    base_dir: &Path,
    choices: &Choices,
    state: &StateFile,
    stop: &AtomicBool,
    hide: &crate::secrets::Redactor,
) -> Result<(), Blocked> {
    let sub = |t: &str| substitute(t, &choices.vars).unwrap_or_else(|_| t.to_string());
    match gate {
        Gate::Tcp {
            host,
            port,
            timeout_seconds,
        } => {
            let host = sub(host);
            crate::facts::probe(&host, *port, Duration::from_secs(*timeout_seconds)).map_err(|e| {
                Blocked {
                    gate: format!("tcp {host}:{port}"),
                    reason: format!("not reachable within {timeout_seconds}s ({e})"),
                }
            })
        }
        Gate::Command { argv } => {
            let argv: Vec<String> = argv.iter().map(|a| sub(a)).collect();
            let name = format!("command {}", argv.join(" "));
            let cmd = crate::run::runner::StepCommand {
                program: argv[0].clone().into(),
                args: argv[1..].iter().map(Into::into).collect(),
                env: Default::default(),
                cwd: Some(base_dir.to_path_buf()),
                ansible: false,
                redact: hide.clone(),
            };
            let mut last = String::new();
            let mut out = |o: crate::run::runner::Output| {
                if let crate::run::runner::Output::Line {
                    stream: crate::run::runner::Stream::Stderr,
                    line,
                } = o
                    && !line.trim().is_empty()
                {
                    let mut end = line.len().min(crate::state::bounds::LINE_BYTES);
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    last = line[..end].to_string();
                }
            };
            let finished = crate::run::runner::run(
                &cmd,
                &mut std::io::sink(),
                &mut out,
                stop,
                &mut |_| Ok(()),
            )
            .map_err(|e| Blocked {
                gate: name.clone(),
                reason: format!("could not run it: {e}"),
            })?;
            if finished.error.is_none() && !finished.stopped {
                return Ok(());
            }
            let last = Some(last)
                .filter(|l| !l.is_empty())
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            Err(Blocked {
                gate: name,
                reason: format!("it {}{last}", describe_exit(finished.exit_code)),
            })
        }
        Gate::FileExists { path } => {
            let path = sub(path);
            let full = base_dir.join(&path);
            if full.exists() {
                Ok(())
            } else {
                Err(Blocked {
                    gate: format!("file_exists {path}"),
                    reason: format!("{} does not exist", full.display()),
                })
            }
        }
        Gate::InterfaceUp { name } => {
            let name = sub(name);
            let gate = format!("interface_up {name}");
            // IFF_UP (bit 0) of the interface's flags: WireGuard interfaces report an
            // operstate of "unknown" even when up, so operstate is not used.
            let flags =
                std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).map_err(|_| {
                    Blocked {
                        gate: gate.clone(),
                        reason: format!("there is no network interface {name}"),
                    }
                })?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            if flags & 1 == 1 {
                Ok(())
            } else {
                Err(Blocked {
                    gate,
                    reason: format!("interface {name} is down"),
                })
            }
        }
        Gate::VmRunning { vms } => {
            for vm in vms {
                let vm = sub(vm);
                let fact = crate::state::fact_keys::vm(&state.facts.infrastructure, &vm);
                match fact.as_ref().and_then(|f| f.power_state.as_deref()) {
                    Some(crate::state::fact_keys::VmFact::RUNNING) => {}
                    Some(other) => {
                        return Err(Blocked {
                            gate: format!("vm_running {vm}"),
                            reason: format!("VM {vm} is {other}"),
                        });
                    }
                    None => {
                        return Err(Blocked {
                            gate: format!("vm_running {vm}"),
                            reason: format!(
                                "no power state of VM {vm} is cached; refresh the infrastructure facts first"
                            ),
                        });
                    }
                }
            }
            Ok(())
        }
    }
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited with code {c}"),
        None => "was killed by a signal".into(),
    }
}
