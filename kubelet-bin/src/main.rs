//! The `kubelet` daemon: flags and config file in, one wiring, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use kubelet_bin::flags::Flags;

fn main() -> ExitCode {
    let flags = Flags::parse();
    kubelet_bin::init_logging(flags.verbosity);

    let settings = match kubelet_bin::load_settings(&flags) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!(
                "kubelet: invalid configuration: {}",
                kubelet_bin::error_chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kubelet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubelet_bin::wiring::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubelet: {}", kubelet_bin::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
