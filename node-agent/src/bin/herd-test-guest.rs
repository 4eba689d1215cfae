//! `herd-test-guest`: writes one of the tiny test guests (a raw boot sector) to a file, for the
//! lab and demos: `herd-test-guest spin|idle|counter|dirty DIR` prints the image's path.

use std::path::PathBuf;
use std::process::ExitCode;

use herd_agent::test_guests::TestGuest;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let guest = match args.first().map(String::as_str) {
        Some("spin") => TestGuest::Spin,
        Some("idle") => TestGuest::Idle,
        Some("counter") => TestGuest::Counter,
        Some("dirty") => TestGuest::Dirty,
        _ => {
            eprintln!("usage: herd-test-guest spin|idle|counter|dirty DIR");
            return ExitCode::from(2);
        }
    };
    let Some(dir) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: herd-test-guest spin|idle|counter|dirty DIR");
        return ExitCode::from(2);
    };
    match std::fs::create_dir_all(&dir).and_then(|()| guest.write_image(&dir)) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "herd-test-guest: cannot write to {}: {error}",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}
