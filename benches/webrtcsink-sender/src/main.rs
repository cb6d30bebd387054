//! The comparison sender of the link benchmarks (benches/glass_to_glass.rs,
//! `PIPE_BENCH_COMPARE=webrtcsink`): GStreamer's `webrtcsink` sending the stamped zone plate of
//! pipe's `pipelines/latency-probe.pipeline` (1280x720, 29.5 fps, the same barcode through
//! `pipe::media::stamp`), with its own encoder settings, its own congestion control and its
//! own signalling server in-process (the gst-plugin-webrtc-signalling protocol, which the
//! benchmark's page speaks).
//!
//! ```text
//! pipe-bench-webrtcsink --port 8443 --ice-ports 47000-47063 --bitrate 2000 [--audio]
//!                       [--congestion-control gcc|homegrown|disabled]
//! ```
//! Prints `ready` on stdout once the pipeline plays, then runs until stdin closes.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use gst::glib;
use gst::prelude::*;

struct Args {
    port: u16,
    ice_ports: (u32, u32),
    bitrate_kbps: u32,
    audio: bool,
    congestion_control: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        port: 8443,
        ice_ports: (47_000, 47_063),
        bitrate_kbps: 2000,
        audio: false,
        congestion_control: "gcc".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse()?,
            "--bitrate" => args.bitrate_kbps = value()?.parse()?,
            "--congestion-control" => args.congestion_control = value()?,
            "--ice-ports" => {
                let v = value()?;
                let (lo, hi) = v.split_once('-').context("--ice-ports LO-HI")?;
                args.ice_ports = (lo.parse()?, hi.parse()?);
            }
            "--audio" => args.audio = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    gst::init()?;
    gstrswebrtc::plugin_register_static()?;
    gstrsrtp::plugin_register_static()?;

    let audio = if args.audio {
        // As benches/common/latency-probe-audio.pipeline: Opus, 32 kbit/s.
        "audiotestsrc is-live=true wave=ticks volume=0.1 samplesperbuffer=480 \
         ! audio/x-raw,rate=48000 ! audioconvert ! audioresample ! sink."
    } else {
        ""
    };
    let description = format!(
        "videotestsrc is-live=true pattern=zone-plate kx2=20 ky2=20 kt=1 \
         ! video/x-raw,format=I420,width=1280,height=720,framerate=59/2 \
         ! identity name={stamp} \
         ! webrtcsink name=sink run-signalling-server=true signalling-server-host=127.0.0.1 \
           signalling-server-port={port} video-caps=video/x-h264 audio-caps=audio/x-opus \
           start-bitrate={bitrate} max-bitrate={bitrate} \
         {audio}",
        stamp = pipe::media::stamp::ELEMENT,
        port = args.port,
        bitrate = args.bitrate_kbps * 1000,
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    if !pipe::media::stamp::install(&pipeline) {
        bail!("no stamp element");
    }
    let sink = pipeline.by_name("sink").context("webrtcsink")?;
    sink.set_property_from_str("congestion-control", &args.congestion_control);
    // No STUN server (its default is a public one, unreachable on the benchmark's loopback).
    sink.set_property("stun-server", None::<String>);
    let (lo, hi) = args.ice_ports;
    sink.connect("consumer-added", false, move |values| {
        let webrtcbin = values[2].get::<gst::Element>().expect("webrtcbin");
        // Only the media ports go through the emulated link, as for pipe's device.
        let agent = webrtcbin.property::<glib::Object>("ice-agent");
        agent.set_property("min-rtp-port", lo);
        agent.set_property("max-rtp-port", hi);
        if agent.find_property("agent").is_some() {
            let nice = agent.property::<glib::Object>("agent");
            if nice.find_property("upnp").is_some() {
                nice.set_property("upnp", false);
            }
        }
        None
    });

    let bus = pipeline.bus().context("bus")?;
    pipeline.set_state(gst::State::Playing)?;
    // Errors end the process (the benchmark sees it gone), except while stopping, when the
    // signaller complains that its connection went.
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping_seen = stopping.clone();
    std::thread::spawn(move || {
        for message in bus.iter_timed(gst::ClockTime::NONE) {
            if stopping_seen.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let gst::MessageView::Error(e) = message.view() {
                eprintln!("webrtcsink sender: {} ({:?})", e.error(), e.debug());
                std::process::exit(1);
            }
        }
    });
    println!("ready");
    std::io::stdout().flush()?;
    // Until the benchmark closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}
