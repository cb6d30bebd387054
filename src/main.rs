//! `pipe`: parse arguments and config, set up logging, build the runtime, run the subcommand.

use anyhow::Context;
use clap::Parser;
use pipe::cli::{Cli, Command};
use pipe::cmds;
use pipe::config::Config;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // webrtc-sdp logs each line of a remote SDP it does not know at WARN, with the line: a
    // stranger's text in the device log. Refusals are reported by pipe itself.
    let directives = if cli.log.contains("webrtc_sdp") {
        cli.log.clone()
    } else {
        format!("{},webrtc_sdp=error", cli.log)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| "info,webrtc_sdp=error".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipe: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = Config::load(cli.config.as_deref())?;
    // Blocking work (GStreamer state changes, grant writes, live settings) comes in short
    // bursts; its threads leave after 2 s idle rather than tokio's 10, so a small device goes
    // back to its steady number of threads soon after viewers come and go.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
        .context("cannot start the async runtime")?;
    match cli.command.unwrap_or(Command::Device(Box::default())) {
        Command::Device(args) => runtime.block_on(cmds::device::run(args.apply(file)?)),
        Command::Rendezvous(args) => {
            runtime.block_on(cmds::rendezvous::run(cmds::rendezvous::Options {
                listen: args.listen,
                port: args.port,
                public_url: args.public_url,
                ui_domain: args.ui_domain,
                ice: file.ice,
            }))
        }
        Command::Grants(args) => cmds::grants::run(args.command, &file),
        Command::ResetOwner(args) => cmds::grants::reset_owner(args, file),
        Command::Doctor(args) => runtime.block_on(cmds::doctor::run(*args, file)),
    }
}
