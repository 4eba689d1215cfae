//! `herdctl`: the kubectl-like command line of herd.
//!
//! This file only parses the command line and hands it to the verb's module in `commands/`.
//! Exit codes: 0 success, 1 error, 2 usage error; `diff` exits 1 when it found differences
//! and 2 on errors. See `docs/cli.md`.

mod apply;
mod args;
mod clock;
mod commands;
mod context;
mod describe;
mod diff;
mod duration;
mod edit;
mod failure;
mod fetch;
mod kinds;
mod lab;
mod output;
mod points;
mod rows;
mod selector;
mod table;
mod view;
mod wait_for;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{BalanceCommand, Cli, Command, GitopsCommand};
use crate::commands::diff as diff_cmd;
use crate::commands::vm::VmVerb;
use crate::commands::{Target, balance, completion, delete, describe as describe_cmd};
use crate::commands::{apply as apply_cmd, get, gitops, node, vm, wait};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(error) => Err(Failure::new(format!("cannot start: {error}"))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Runs the command; returns the exit code of a success (0, or 1 for `diff` with differences).
async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let target = Target {
        etcd: cli.etcd,
        prefix: cli.prefix,
    };
    let t = &target;
    let done = match cli.command {
        Command::Apply(args) => apply_cmd::run(t, args).await,
        Command::Get(args) => get::run(t, args).await,
        Command::Describe(args) => describe_cmd::run(t, args).await,
        Command::Delete(args) => delete::run(t, args).await,
        Command::Diff(args) => {
            return match diff_cmd::run(t, args).await {
                Ok(differs) => Ok(u8::from(differs)),
                Err(failure) => Err(failure.with_code(2)),
            };
        }
        Command::Wait(args) => wait::run(t, args).await,
        Command::Start(args) => vm::run_state(t, VmVerb::Start, args).await,
        Command::Stop(args) => vm::run_state(t, VmVerb::Stop, args).await,
        Command::Shutdown(args) => vm::run_state(t, VmVerb::Shutdown, args).await,
        Command::Pause(args) => vm::run_state(t, VmVerb::Pause, args).await,
        Command::Unpause(args) => vm::run_state(t, VmVerb::Unpause, args).await,
        Command::Destroy(args) => vm::run_state(t, VmVerb::Destroy, args).await,
        Command::Migrate(args) => vm::migrate(t, args).await,
        Command::Cordon(args) => node::cordon(t, args, true).await,
        Command::Uncordon(args) => node::cordon(t, args, false).await,
        Command::Drain(args) => node::drain(t, args).await,
        Command::Node(args) => node::settings(t, args).await,
        Command::Balance(args) => match args.command {
            BalanceCommand::Simulate(args) => balance::simulate(args),
        },
        Command::Gitops(args) => match args.command {
            GitopsCommand::Status(args) => gitops::status(t, args).await,
            GitopsCommand::Reconcile(args) => gitops::reconcile(t, args).await,
            GitopsCommand::Suspend(args) => gitops::suspend(t, args, true).await,
            GitopsCommand::Resume(args) => gitops::suspend(t, args, false).await,
            GitopsCommand::Diff(args) => {
                return match gitops::diff(t, args).await {
                    Ok(differs) => Ok(u8::from(differs)),
                    Err(failure) => Err(failure.with_code(2)),
                };
            }
        },
        Command::Completion(args) => completion::run(args),
        Command::Up(args) => {
            let dir = args.dir.unwrap_or_else(lab::default_dir);
            lab::up(lab::UpOptions {
                dir,
                nodes: args.nodes,
                driver: args.driver,
                netns: args.netns,
            })
            .await
        }
        Command::Down(args) => lab::down(&args.dir.unwrap_or_else(lab::default_dir), args.purge),
    };
    done.map(|()| 0)
}
