//! `herdctl completion bash|zsh|fish|…`: the shell completion script, from clap's model of
//! the command line (`source <(herdctl completion bash)`).

use clap::CommandFactory;

use crate::args::{Cli, CompletionArgs};
use crate::failure::Failure;

pub fn run(args: CompletionArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "herdctl", &mut script);
    crate::output::write_out(&String::from_utf8_lossy(&script))
}
