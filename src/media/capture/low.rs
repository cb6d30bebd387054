//! The low rendition: a second, smaller encoding of the same raw frames, for viewers whose
//! link cannot carry the main one (`adapt::rendition` decides who gets it).
//!
//! Built into any chain that names its encoder `pipe-encoder` (the hook adapting chains
//! already have), so pipeline files keep their format: a `tee` goes in front of the encoder's
//! sink pad, and its second branch is
//!
//! `valve drop=true ! queue leaky=downstream (1 frame) ! videoscale ! <H>p, square pixels
//!  ! <copy of pipe-encoder> ! <the caps after pipe-encoder> ! h264parse ! appsink video-low`
//!
//! - The valve is closed until a viewer is assigned to the low rendition: no frame reaches the
//!   second encoder, so it costs nothing. It opens with a key frame asked for, and reopening
//!   re-sends the caps the valve held back.
//! - The leaky one-frame queue runs the second encoder on its own thread; when it cannot keep
//!   up, raw frames are skipped before it, never encoded ones after it.
//! - The copy is the same factory with the same properties (x264's tune, preset, VBV and key
//!   frame interval; a V4L2 encoder's `extra-controls`), named `pipe-encoder-low`; its bitrate
//!   then follows its own viewers. On a Raspberry Pi 4 that is a second `v4l2h264enc`
//!   instance (the `bcm2835-codec` driver serves several); where the copy cannot be made or
//!   linked, the chain runs without a low rendition and says so.

use gst::prelude::*;

/// The second encoder's name (its bitrate is set like `pipe-encoder`'s).
pub const ENCODER: &str = "pipe-encoder-low";
/// The branch's appsink.
pub const SINK: &str = "video-low";
const MAIN_ENCODER: &str = "pipe-encoder";
/// Properties not copied to the second encoder: its identity, and what GStreamer owns.
const NOT_COPIED: [&str; 2] = ["name", "parent"];

/// The low branch's elements pipe drives.
#[derive(Clone)]
pub struct LowBranch {
    pub valve: gst::Element,
    pub sink: gst_app::AppSink,
}

/// Why a chain has no low rendition.
#[derive(Debug, thiserror::Error)]
pub enum NoLowRendition {
    #[error("the chain has no element named {MAIN_ENCODER}")]
    NoEncoder,
    #[error("{MAIN_ENCODER}'s sink pad is not linked")]
    NotLinked,
    #[error("cannot make {0}")]
    Element(String),
    #[error("cannot link the low branch: {0}")]
    Link(String),
}

/// Puts the low branch into `pipeline` (built, not yet started).
pub fn insert(pipeline: &gst::Pipeline, height: u32) -> Result<LowBranch, NoLowRendition> {
    let encoder = pipeline
        .by_name(MAIN_ENCODER)
        .ok_or(NoLowRendition::NoEncoder)?;
    let encoder_sink = encoder
        .static_pad("sink")
        .ok_or(NoLowRendition::NotLinked)?;
    let upstream = encoder_sink.peer().ok_or(NoLowRendition::NotLinked)?;
    let copy = copy_of(&encoder)?;
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| NoLowRendition::Element(factory.to_owned()))
    };
    let tee = make("tee")?;
    tee.set_property("allow-not-linked", true);
    let valve = make("valve")?;
    valve.set_property("drop", true);
    let queue = make("queue")?;
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let scale = make("videoscale")?;
    let size = make("capsfilter")?;
    size.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("height", i32::try_from(height).unwrap_or(360))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    );
    // The caps the chain puts after its encoder (profile, stream format), so the low stream
    // is what the viewers' SDP says.
    let encoded = make("capsfilter")?;
    if let Some(caps) = caps_after(&encoder) {
        encoded.set_property("caps", caps);
    }
    let parse = make("h264parse")?;
    parse.set_property("config-interval", -1i32);
    let sink = gst_app::AppSink::builder()
        .name(SINK)
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .sync(false)
        .async_(false)
        .max_buffers(2)
        .drop(false)
        .build();
    let branch = [
        &valve,
        &queue,
        &scale,
        &size,
        &copy,
        &encoded,
        &parse,
        sink.upcast_ref(),
    ];
    let link_error = |e: &dyn std::fmt::Display| NoLowRendition::Link(e.to_string());
    pipeline.add(&tee).map_err(|e| link_error(&e))?;
    pipeline.add_many(branch).map_err(|e| link_error(&e))?;
    gst::Element::link_many(branch).map_err(|e| link_error(&e))?;
    upstream.unlink(&encoder_sink).map_err(|e| link_error(&e))?;
    let relink = || -> Result<(), NoLowRendition> {
        let tee_sink = tee.static_pad("sink").ok_or(NoLowRendition::NotLinked)?;
        upstream.link(&tee_sink).map_err(|e| link_error(&e))?;
        // The main encoder first: the tee pushes to its pads in order, so the main rendition
        // is never behind the (queued, hence non-blocking) low branch.
        let main = tee
            .request_pad_simple("src_%u")
            .ok_or(NoLowRendition::NotLinked)?;
        main.link(&encoder_sink).map_err(|e| link_error(&e))?;
        tee.link(&valve).map_err(|e| link_error(&e))?;
        Ok(())
    };
    if let Err(e) = relink() {
        // Leave the chain as it was, without the branch.
        for element in branch.into_iter().chain([&tee]) {
            let _ = pipeline.remove(element);
        }
        let _ = upstream.link(&encoder_sink);
        return Err(e);
    }
    Ok(LowBranch { valve, sink })
}

/// A second encoder like `encoder`: same factory, and every property in which `encoder`
/// differs from a fresh one set to `encoder`'s value. Only those: x264enc turns every property
/// set into an option applied after its tune (gstx264enc.c appends them to its option
/// string), so setting `rc-lookahead` to its default undid `tune=zerolatency` and delayed
/// every frame by 40.
fn copy_of(encoder: &gst::Element) -> Result<gst::Element, NoLowRendition> {
    let factory = encoder
        .factory()
        .ok_or_else(|| NoLowRendition::Element(MAIN_ENCODER.to_owned()))?;
    let copy = factory
        .create()
        .name(ENCODER)
        .build()
        .map_err(|_| NoLowRendition::Element(factory.name().to_string()))?;
    for pspec in encoder.list_properties() {
        let flags = pspec.flags();
        if NOT_COPIED.contains(&pspec.name())
            || !flags.contains(gst::glib::ParamFlags::READWRITE)
            || flags.contains(gst::glib::ParamFlags::CONSTRUCT_ONLY)
        {
            continue;
        }
        let value = encoder.property_value(pspec.name());
        let fresh = copy.property_value(pspec.name());
        if value.serialize().ok() != fresh.serialize().ok() {
            copy.set_property_from_value(pspec.name(), &value);
        }
    }
    Ok(copy)
}

/// The caps of the capsfilter right after `encoder`, if there is one.
fn caps_after(encoder: &gst::Element) -> Option<gst::Caps> {
    let next = encoder.static_pad("src")?.peer()?.parent_element()?;
    (next.factory()?.name() == "capsfilter")
        .then(|| next.property::<Option<gst::Caps>>("caps"))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(description: &str) -> gst::Pipeline {
        gst::init().expect("GStreamer initialises");
        gst::parse::launch(description)
            .expect("the test chain parses")
            .downcast()
            .expect("a pipeline")
    }

    #[test]
    fn the_branch_copies_the_encoder_and_its_caps() {
        let p = chain(
            "videotestsrc ! video/x-raw,width=320,height=240 \
             ! x264enc name=pipe-encoder tune=zerolatency speed-preset=ultrafast bitrate=1234 key-int-max=77 vbv-buf-capacity=250 \
             ! video/x-h264,profile=constrained-baseline ! h264parse ! appsink name=video",
        );
        insert(&p, 180).expect("the branch goes in");
        let low = p.by_name(ENCODER).expect("the copy");
        assert_eq!(low.property::<u32>("bitrate"), 1234);
        assert_eq!(low.property::<u32>("key-int-max"), 77);
        assert_eq!(low.property::<u32>("vbv-buf-capacity"), 250);
        // Nothing set that the chain did not set: x264 would apply it after the tune.
        let options = low
            .property::<Option<String>>("option-string")
            .unwrap_or_default();
        assert!(!options.contains("lookahead"), "{options}");
        let encoded = low
            .static_pad("src")
            .unwrap()
            .peer()
            .unwrap()
            .parent_element()
            .unwrap();
        let caps = encoded.property::<gst::Caps>("caps");
        assert_eq!(
            caps.structure(0).unwrap().get::<&str>("profile").unwrap(),
            "constrained-baseline"
        );
        let main = p.by_name(MAIN_ENCODER).unwrap();
        let tee = main
            .static_pad("sink")
            .unwrap()
            .peer()
            .unwrap()
            .parent_element()
            .unwrap();
        assert_eq!(tee.factory().unwrap().name(), "tee");
    }

    #[test]
    fn a_chain_without_the_encoder_hook_has_no_low_rendition() {
        let p = chain("videotestsrc ! x264enc ! h264parse ! appsink name=video");
        assert!(matches!(insert(&p, 360), Err(NoLowRendition::NoEncoder)));
    }
}
