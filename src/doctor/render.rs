//! The report as text for a person: short lines, the verdict last.

use std::fmt::Write as _;

use super::Report;

pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("pipe {} doctor", r.pipe_version));
    line(format!("{} on {}", r.gstreamer, r.board));

    line(String::new());
    line("GStreamer elements (Debian package; Yocto and Buildroot shown when missing, all in --json):".into());
    for e in &r.elements {
        let status = if e.present { "ok     " } else { "MISSING" };
        let needed = if e.needed_by.is_empty() {
            "(no builtin chain)".to_string()
        } else {
            e.needed_by.join(", ")
        };
        line(format!(
            "  {status} {:<14} {:<28} for {needed}",
            e.element, e.debian
        ));
        if !e.present {
            line(format!("          {}", e.what));
            line(format!("          Yocto: {}", e.yocto));
            line(format!("          Buildroot: {}", e.buildroot));
        }
    }

    line(String::new());
    line("Cameras".into());
    let c = &r.cameras;
    if c.v4l2.is_empty() {
        line("  V4L2 (GStreamer's v4l2 device provider): none".into());
    } else {
        line("  V4L2 (GStreamer's v4l2 device provider):".into());
        for cam in &c.v4l2 {
            let mut text = format!(
                "    {} ({})",
                cam.path.as_deref().unwrap_or("no node"),
                cam.name
            );
            if let Some(driver) = &cam.driver {
                let _ = write!(text, ", driver {driver}");
            }
            let formats = match cam.formats.is_empty() {
                true => "no formats".to_string(),
                false => cam.formats.join(", "),
            };
            let _ = write!(text, ": {formats}");
            line(text);
        }
    }
    let lc = &c.libcamera;
    line(format!(
        "  libcamera, searched with: {}",
        lc.searched_with.join("; ")
    ));
    if lc.searched_with.iter().any(|s| s.starts_with("GStreamer")) {
        match lc.cameras.is_empty() {
            true => line("    libcamerasrc: no camera".into()),
            false => line(format!("    libcamerasrc: {}", lc.cameras.join(", "))),
        }
    }
    if let Some(list) = &lc.cam_list {
        match list.is_empty() {
            true => line("    cam -l: no camera".into()),
            false => line(format!("    cam -l: {}", list.join(", "))),
        }
    }
    for cam in &c.other {
        line(format!(
            "  {}: {} ({})",
            cam.provider,
            cam.name,
            cam.formats.join(", ")
        ));
    }
    for note in &c.notes {
        line(format!("  note: {note}"));
    }

    line(String::new());
    line("Capture chain".into());
    let p = &r.pipeline;
    match &p.auto_selected {
        Some(name) => line(format!("  auto-selection chooses: {name}")),
        None => line("  auto-selection chooses: nothing".into()),
    }
    // The reason ends with the rejections as one sentence; here they get a line each.
    let why = match p.rejected.is_empty() {
        true => p.reason.as_str(),
        false => p.reason.split(" Not chosen: ").next().unwrap_or_default(),
    };
    line(format!("  why: {why}"));
    for rejected in &p.rejected {
        line(format!(
            "  not chosen: {}: {}",
            rejected.pipeline, rejected.why
        ));
    }
    if p.configured != "auto" {
        line(format!(
            "  configured (device.pipeline): {} -> {}",
            p.configured,
            p.will_run.as_deref().unwrap_or("cannot run")
        ));
    }
    for ignored in &p.not_cameras {
        line(format!("  not a camera: {ignored}"));
    }

    line(String::new());
    let s = &r.state_dir;
    line(format!("State directory {}", s.facts.path.display()));
    line(format!("  {}", s.summary));
    let identity = match s.identity {
        "present" => "present".to_string(),
        "absent" => "absent (created on first start)".to_string(),
        other => other.to_string(),
    };
    match &s.key_mode {
        Some(mode) => line(format!("  identity: {identity}, private key mode {mode}")),
        None => line(format!("  identity: {identity}")),
    }

    line(String::new());
    let z = &r.rendezvous;
    line(format!("Rendezvous ({}): {}", z.mode, z.target));
    line(format!("  {}", z.detail));

    line(String::new());
    for warning in &r.warnings {
        line(format!("warning: {warning}"));
    }
    for problem in &r.problems {
        line(format!("PROBLEM: {problem}"));
    }
    if r.can_stream {
        line(format!(
            "OK: pipe can stream here ({}).",
            p.will_run.as_deref().unwrap_or("no chain")
        ));
    } else {
        line(format!(
            "NOT OK: pipe cannot stream here ({} problem(s) above).",
            r.problems.len()
        ));
    }
    out
}
