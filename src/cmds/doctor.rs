//! `pipe doctor`: gather the facts, print the report, fail when pipe cannot stream here.
//! `pipe doctor --health` is the container's health check: one GET of the device's /healthz.

use anyhow::{Context, bail};

use crate::cli::DoctorArgs;
use crate::config::Config;
use crate::doctor::{Report, facts};

pub async fn run(args: DoctorArgs, file: Config) -> anyhow::Result<()> {
    let DoctorArgs {
        json,
        health,
        device,
    } = args;
    let config = device.apply(file)?;
    if let Some(url) = health {
        let url = match url.as_str() {
            "" if config.device.port == 0 => {
                bail!("with port 0 there is no known port to check: give --health URL")
            }
            "" => facts::local_health_url(config.device.listen, config.device.port),
            _ => url,
        };
        facts::health(&url).await?;
        println!("healthy: {url}");
        return Ok(());
    }
    let facts = facts::gather(&config).await?;
    let report = Report::build(&facts);
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
        text.push('\n');
        text
    } else {
        report.to_text()
    };
    print!("{text}");
    if !report.can_stream {
        bail!(
            "pipe cannot stream on this machine: {} problem(s)",
            report.problems.len()
        );
    }
    Ok(())
}
