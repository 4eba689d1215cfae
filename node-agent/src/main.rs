//! `herd-agent` binary: parses its flags and runs the node agent.

fn main() {
    eprintln!("herd-agent: the node agent loop is not built yet (see issue 4)");
    std::process::exit(2);
}
