//! The `kubelet` daemon: flags and config file in, one wiring, run until SIGINT/SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kubelet_bin::flags::Flags;

fn main() -> ExitCode {
    let flags = Flags::parse();
    kubelet_bin::init_logging(flags.verbosity);

    let settings = match kubelet_bin::load_settings(&flags) {
        Ok(settings) => settings,
        Err(e) => {
            report(format_args!(
                "kubelet: invalid configuration: {}",
                kubelet_bin::error_chain(&e)
            ));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            report(format_args!("kubelet: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubelet_bin::wiring::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(format_args!("kubelet: {}", kubelet_bin::error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// A last word on stderr; unlike `eprintln!`, no panic when stderr is gone.
fn report(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{message}");
}
