//! `pipepacer`: holds one viewer's RTP packets between the payloader and webrtcbin as
//! `adapt::pacer` decides, so a key frame leaves as a stream at twice the viewer's estimate,
//! not as one burst at line rate. It sits in the payloader's streaming thread (the viewer's
//! own appsrc thread), so holding a packet delays this viewer only; it never drops a packet.
//! With no estimate below the ceiling it pushes everything straight through, buffer lists
//! whole. Events and queries pass through untouched (the TWCC feedback and key-frame requests
//! going upstream included).
//!
//! The age of a packet is the element's running time less the buffer's PTS: the viewer
//! pipeline's appsrc stamps each frame with its capture time in running time (`viewer`).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::adapt::pacer::Pacer as Decide;

/// The factory name, for pipeline descriptions.
pub const FACTORY: &str = "pipepacer";

mod imp {
    use super::*;

    pub struct Pacer {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        pub(super) decide: Mutex<Decide>,
    }

    impl Pacer {
        fn lock(&self) -> std::sync::MutexGuard<'_, Decide> {
            self.decide.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn paced(&self) -> bool {
            self.lock().rate_bps().is_some()
        }

        /// How old `buffer` is since capture, when the clock and its PTS say.
        fn age(&self, buffer: &gst::BufferRef) -> Option<Duration> {
            let now = self.obj().current_running_time()?;
            let pts = buffer.pts()?;
            Some(Duration::from_nanos(now.saturating_sub(pts).nseconds()))
        }

        /// Holds `buffer` as long as the pacer says, then pushes it on.
        fn send(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            let age = self.age(&buffer);
            let hold = self.lock().hold(Instant::now(), buffer.size(), age);
            if !hold.is_zero() {
                // At most `adapt::pacer::MAX_DELAY` per packet, and less the older it is: a
                // pipeline going to NULL waits for one such sleep at most.
                std::thread::sleep(hold);
            }
            self.srcpad.push(buffer)
        }

        fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            self.send(buffer)
        }

        fn chain_list(&self, list: gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
            if !self.paced() {
                return self.srcpad.push_list(list);
            }
            let mut result = Ok(gst::FlowSuccess::Ok);
            for buffer in list.iter_owned() {
                result = self.send(buffer);
                if result.is_err() {
                    break;
                }
            }
            result
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for Pacer {
        const NAME: &'static str = "PipePacer";
        type Type = super::Pacer;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let proxy = gst::PadFlags::PROXY_CAPS
                | gst::PadFlags::PROXY_ALLOCATION
                | gst::PadFlags::PROXY_SCHEDULING;
            let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
                .chain_function(|_pad, parent, buffer| {
                    Pacer::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |pacer| pacer.chain(buffer),
                    )
                })
                .chain_list_function(|_pad, parent, list| {
                    Pacer::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |pacer| pacer.chain_list(list),
                    )
                })
                .flags(proxy)
                .build();
            let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
                .flags(proxy)
                .build();
            Self {
                sinkpad,
                srcpad,
                decide: Mutex::new(Decide::new()),
            }
        }
    }

    impl ObjectImpl for Pacer {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.add_pad(&self.sinkpad).expect("a new pad");
            obj.add_pad(&self.srcpad).expect("a new pad");
        }
    }

    impl GstObjectImpl for Pacer {}

    impl ElementImpl for Pacer {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: OnceLock<gst::subclass::ElementMetadata> = OnceLock::new();
            Some(METADATA.get_or_init(|| {
                gst::subclass::ElementMetadata::new(
                    "pipe pacer",
                    "Filter/Network/RTP",
                    "Spreads a viewer's RTP packets over time at twice its link estimate",
                    "pipe",
                )
            }))
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: OnceLock<Vec<gst::PadTemplate>> = OnceLock::new();
            TEMPLATES.get_or_init(|| {
                let caps = gst::Caps::builder("application/x-rtp").build();
                [
                    ("sink", gst::PadDirection::Sink),
                    ("src", gst::PadDirection::Src),
                ]
                .into_iter()
                .map(|(name, direction)| {
                    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                        .expect("a valid template")
                })
                .collect()
            })
        }
    }
}

glib::wrapper! {
    pub struct Pacer(ObjectSubclass<imp::Pacer>) @extends gst::Element, gst::Object;
}

impl Pacer {
    /// The viewer's estimate and its ceiling (`adapt::pacer::Pacer::set_estimate`).
    pub fn set_estimate(&self, estimate_bps: u32, ceiling_bps: u32) {
        self.imp()
            .decide
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_estimate(estimate_bps, ceiling_bps);
    }
}

/// Makes `pipepacer` known to GStreamer (once per process) so descriptions can name it.
pub fn register() -> Result<(), glib::BoolError> {
    static REGISTERED: OnceLock<Result<(), glib::BoolError>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            gst::Element::register(None, FACTORY, gst::Rank::NONE, Pacer::static_type())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_app::{AppSink, AppSrc};

    /// appsrc ! pipepacer ! appsink, playing; the pacer is set to `estimate` (of a 3 Mbit/s
    /// ceiling). Pushes `packets` RTP-sized buffers as one list and returns when each reached
    /// the sink, relative to the push.
    fn run(estimate_bps: u32, packets: usize) -> Vec<Duration> {
        gst::init().unwrap();
        register().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src is-live=true format=time caps=application/x-rtp \
             ! {FACTORY} name=pacer ! appsink name=sink sync=false emit-signals=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let pacer = pipeline
            .by_name("pacer")
            .unwrap()
            .downcast::<Pacer>()
            .unwrap();
        pacer.set_estimate(estimate_bps, 3_000_000);
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<AppSrc>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut list = gst::BufferList::new();
        for _ in 0..packets {
            // No PTS: the age is unknown, so only the 100 ms budget per packet holds.
            list.get_mut()
                .unwrap()
                .add(gst::Buffer::with_size(1250).unwrap());
        }
        let start = Instant::now();
        src.push_buffer_list(list).unwrap();
        let arrivals = (0..packets)
            .map(|_| {
                sink.pull_sample().expect("a packet");
                start.elapsed()
            })
            .collect();
        pipeline.set_state(gst::State::Null).unwrap();
        arrivals
    }

    #[test]
    fn a_burst_is_spread_at_twice_the_estimate() {
        // 16 packets of 10 kbit at 2 Mbit/s: one every 5 ms, the last after ~75 ms.
        let arrivals = run(1_000_000, 16);
        let last = *arrivals.last().unwrap();
        assert!(
            last >= Duration::from_millis(65),
            "the burst left in {last:?}"
        );
        assert!(last < Duration::from_millis(400), "the burst took {last:?}");
    }

    #[test]
    fn at_the_ceiling_a_burst_passes_straight_through() {
        let arrivals = run(3_000_000, 16);
        let last = *arrivals.last().unwrap();
        assert!(last < Duration::from_millis(30), "the burst took {last:?}");
    }
}
