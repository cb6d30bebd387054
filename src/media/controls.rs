//! Live settings of the shared capture chain, through optional named elements ("hooks").
//!
//! A chain offers a setting by naming the element that carries it (docs/pipelines.md):
//!
//! | hook | element | setting |
//! |---|---|---|
//! | `pipe-overlay` | `textoverlay`, `clockoverlay` (any `GstBaseTextOverlay`) | overlay text |
//! | `pipe-balance` | `videobalance` | brightness, -1..1 |
//! | `pipe-encoder` | `x264enc` (kbit/s) or `openh264enc` (bit/s) | bitrate |
//! | `pipe-size` | a `capsfilter` on raw video, after a `videoscale` | frame size |
//!
//! All of them change while the chain plays, so viewers keep watching:
//! - the overlay text and brightness are element properties read on every frame;
//! - x264enc and openh264enc declare `bitrate` mutable in PLAYING and reconfigure the encoder
//!   in place. `v4l2h264enc` takes its bitrate through `extra-controls`, read when the device
//!   opens, so pipe refuses to change it live (restart with another `bitrate_kbps`);
//! - a new size on `pipe-size` makes the elements upstream renegotiate (a live `videotestsrc`
//!   produces the new size itself, otherwise `videoscale` scales to it), the encoder starts a
//!   new sequence with a key frame and new SPS/PPS in-band, and every viewer's decoder picks
//!   the new size up from them: no viewer pipeline is rebuilt.
//!
//! Every GStreamer call here runs on a blocking thread. A chain rebuilt after a failure gets
//! the settings applied so far again ([`Controls::reapply`]), not its template's values.

use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use tracing::{debug, warn};

/// The settings a chain can offer, by the element that carries each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Overlay,
    Balance,
    Encoder,
    Size,
}

impl Hook {
    pub const ALL: [Hook; 4] = [Hook::Overlay, Hook::Balance, Hook::Encoder, Hook::Size];

    /// The name the chain gives the element.
    pub fn element(self) -> &'static str {
        match self {
            Hook::Overlay => "pipe-overlay",
            Hook::Balance => "pipe-balance",
            Hook::Encoder => "pipe-encoder",
            Hook::Size => "pipe-size",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("the capture chain has no element named {0}")]
    Missing(&'static str),
    #[error("{element} ({factory}): pipe cannot change its {what} while the chain plays")]
    Unsupported {
        element: &'static str,
        factory: String,
        what: &'static str,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the capture chain is not running")]
    NotRunning,
}

/// Values of the settings. Read back: `None` where the chain has no such hook. As a change:
/// `None` leaves the setting alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlValues {
    /// Plain text (pipe escapes it for the overlay's Pango markup).
    pub overlay_text: Option<String>,
    /// `videobalance` brightness: -1 (black) to 1 (white), 0 unchanged.
    pub brightness: Option<f64>,
    pub bitrate_kbps: Option<u32>,
    /// Width and height in pixels.
    pub size: Option<(u32, u32)>,
}

impl ControlValues {
    /// Checks a change before any of it is applied.
    pub fn validate(&self) -> Result<(), ControlError> {
        let invalid = |what, reason: &str| {
            Err(ControlError::Invalid {
                what,
                reason: reason.to_string(),
            })
        };
        if let Some(text) = &self.overlay_text
            && (text.chars().count() > 256 || text.chars().any(char::is_control))
        {
            return invalid(
                "overlay text",
                "at most 256 characters, no control characters",
            );
        }
        if let Some(b) = self.brightness
            && !(-1.0..=1.0).contains(&b)
        {
            return invalid("brightness", "must be between -1 and 1");
        }
        if let Some(kbps) = self.bitrate_kbps
            && !(1..=1_000_000).contains(&kbps)
        {
            return invalid("bitrate", "must be between 1 and 1000000 kbit/s");
        }
        if let Some((w, h)) = self.size
            && !((2..=16384).contains(&w) && (2..=16384).contains(&h) && w % 2 == 0 && h % 2 == 0)
        {
            return invalid("size", "width and height must be even, 2 to 16384");
        }
        Ok(())
    }

    /// `other`'s set values over these.
    fn merge(&mut self, other: &ControlValues) {
        if other.overlay_text.is_some() {
            self.overlay_text.clone_from(&other.overlay_text);
        }
        self.brightness = other.brightness.or(self.brightness);
        self.bitrate_kbps = other.bitrate_kbps.or(self.bitrate_kbps);
        self.size = other.size.or(self.size);
    }
}

/// The unit of an encoder's `bitrate` property, for the encoders whose bitrate pipe changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitrateUnit {
    KbitPerSecond,
    BitPerSecond,
}

impl BitrateUnit {
    /// By element factory. Both are verified mutable in PLAYING (gst-inspect: "changeable in
    /// ... PLAYING state"); `v4l2h264enc` has no `bitrate` property at all.
    pub fn of(factory: &str) -> Option<BitrateUnit> {
        match factory {
            "x264enc" => Some(BitrateUnit::KbitPerSecond),
            "openh264enc" => Some(BitrateUnit::BitPerSecond),
            _ => None,
        }
    }

    pub fn to_property(self, kbps: u32) -> u32 {
        match self {
            BitrateUnit::KbitPerSecond => kbps,
            BitrateUnit::BitPerSecond => kbps.saturating_mul(1000),
        }
    }

    pub fn to_kbps(self, value: u32) -> u32 {
        match self {
            BitrateUnit::KbitPerSecond => value,
            BitrateUnit::BitPerSecond => value / 1000,
        }
    }
}

/// The text overlays render their `text` as Pango markup: what a user typed is escaped.
pub fn overlay_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The plain text of an overlay's markup as [`overlay_markup`] writes it (other markup, from a
/// chain's own `text=`, is returned as it is).
pub fn overlay_plain(markup: &str) -> String {
    markup
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The settings of the running capture chain. Cheap to clone.
#[derive(Clone)]
pub struct Controls {
    /// The current chain's video appsink (swapped when the chain is rebuilt); its parent is
    /// the chain.
    sink: Arc<Mutex<gst::Element>>,
    /// Everything set so far, applied again to a rebuilt chain.
    applied: Arc<Mutex<ControlValues>>,
    /// The low rendition's bitrate last set, likewise.
    low_bitrate: Arc<Mutex<Option<u32>>>,
}

impl Controls {
    pub(super) fn new(sink: Arc<Mutex<gst::Element>>) -> Self {
        Self {
            sink,
            applied: Arc::default(),
            low_bitrate: Arc::default(),
        }
    }

    fn chain(&self) -> Result<gst::Bin, ControlError> {
        let sink = self.sink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sink.parent()
            .and_then(|p| p.downcast::<gst::Bin>().ok())
            .ok_or(ControlError::NotRunning)
    }

    /// The hooks the chain has.
    pub async fn hooks(&self) -> Result<Vec<Hook>, ControlError> {
        let chain = self.chain()?;
        blocking(move || {
            Hook::ALL
                .into_iter()
                .filter(|h| chain.by_name(h.element()).is_some())
                .collect()
        })
        .await
    }

    /// What the chain's hooks hold now.
    pub async fn read(&self) -> Result<ControlValues, ControlError> {
        let chain = self.chain()?;
        blocking(move || read(&chain)).await
    }

    /// Applies each set value of `change`, in order overlay, brightness, bitrate, size; stops
    /// at the first that fails (the ones before it stay applied).
    pub async fn set(&self, change: ControlValues) -> Result<(), ControlError> {
        change.validate()?;
        let chain = self.chain()?;
        let applied = self.applied.clone();
        blocking(move || {
            let done = apply(&chain, &change);
            applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(&done.0);
            done.1
        })
        .await?
    }

    pub async fn set_overlay_text(&self, text: &str) -> Result<(), ControlError> {
        self.set(ControlValues {
            overlay_text: Some(text.to_string()),
            ..Default::default()
        })
        .await
    }

    /// The overlay's text, read back from the element.
    pub async fn overlay_text(&self) -> Result<String, ControlError> {
        self.read()
            .await?
            .overlay_text
            .ok_or(ControlError::Missing(Hook::Overlay.element()))
    }

    pub async fn set_brightness(&self, brightness: f64) -> Result<(), ControlError> {
        self.set(ControlValues {
            brightness: Some(brightness),
            ..Default::default()
        })
        .await
    }

    pub async fn set_bitrate_kbps(&self, kbps: u32) -> Result<(), ControlError> {
        self.set(ControlValues {
            bitrate_kbps: Some(kbps),
            ..Default::default()
        })
        .await
    }

    /// The low rendition's encoder bitrate (`capture::low`), set as `pipe-encoder`'s is. Not
    /// kept for a rebuilt chain: the adaptation sets it again with its next decision.
    pub async fn set_low_bitrate_kbps(&self, kbps: u32) -> Result<(), ControlError> {
        let chain = self.chain()?;
        let applied = self.low_bitrate.clone();
        blocking(move || {
            let e = chain
                .by_name(super::capture::LOW_ENCODER)
                .ok_or(ControlError::Missing(super::capture::LOW_ENCODER))?;
            set_bitrate(&e, Hook::Encoder, kbps)?;
            *applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(kbps);
            Ok(())
        })
        .await?
    }

    pub async fn set_size(&self, width: u32, height: u32) -> Result<(), ControlError> {
        self.set(ControlValues {
            size: Some((width, height)),
            ..Default::default()
        })
        .await
    }

    /// Applies everything set so far to a rebuilt chain (on a blocking thread).
    pub(super) fn reapply(&self, chain: &gst::Pipeline) {
        let low = *self.low_bitrate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kbps) = low
            && let Some(e) = chain.by_name(super::capture::LOW_ENCODER)
            && let Err(error) = set_bitrate(&e, Hook::Encoder, kbps)
        {
            warn!(%error, "cannot set the rebuilt chain's low rendition bitrate again");
        }
        let applied = self
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if applied == ControlValues::default() {
            return;
        }
        if let (_, Err(error)) = apply(chain.upcast_ref(), &applied) {
            warn!(%error, "cannot apply the settings again to the rebuilt capture chain");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ControlError::NotRunning)
}

fn element(chain: &gst::Bin, hook: Hook) -> Result<gst::Element, ControlError> {
    chain
        .by_name(hook.element())
        .ok_or(ControlError::Missing(hook.element()))
}

fn factory(element: &gst::Element) -> String {
    element
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default()
}

/// The element, if it has `property` of type `T` that may change while playing.
fn live_property<T: glib::types::StaticType>(
    element: &gst::Element,
    hook: Hook,
    property: &str,
    what: &'static str,
) -> Result<(), ControlError> {
    let ok = element.find_property(property).is_some_and(|p| {
        p.value_type().is_a(T::static_type())
            && p.flags().contains(glib::ParamFlags::WRITABLE)
            && (p.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
                // Controllable properties (text, brightness) are read on every frame.
                || p.flags().contains(gst::PARAM_FLAG_CONTROLLABLE))
    });
    if ok {
        Ok(())
    } else {
        Err(ControlError::Unsupported {
            element: hook.element(),
            factory: factory(element),
            what,
        })
    }
}

/// A property's value, if the element has it with that type (never panics on an integrator's
/// element that happens to carry a hook's name).
fn get<T: for<'a> glib::value::FromValue<'a> + 'static>(
    element: &gst::Element,
    property: &str,
) -> Option<T> {
    element.find_property(property)?;
    element.property_value(property).get::<T>().ok()
}

fn read(chain: &gst::Bin) -> ControlValues {
    let hook = |h: Hook| chain.by_name(h.element());
    ControlValues {
        overlay_text: hook(Hook::Overlay)
            .and_then(|e| get::<Option<String>>(&e, "text"))
            .map(|text| overlay_plain(&text.unwrap_or_default())),
        brightness: hook(Hook::Balance).and_then(|e| get::<f64>(&e, "brightness")),
        bitrate_kbps: hook(Hook::Encoder).and_then(|e| match BitrateUnit::of(&factory(&e)) {
            Some(unit) => Some(unit.to_kbps(get::<u32>(&e, "bitrate")?)),
            None => v4l2_bitrate_kbps(&e),
        }),
        size: hook(Hook::Size)
            .filter(|e| factory(e) == "capsfilter")
            .and_then(|e| get::<Option<gst::Caps>>(&e, "caps").flatten())
            .and_then(|caps| {
                let s = caps.structure(0)?;
                let (w, h) = (s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?);
                Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
            }),
    }
}

/// V4L2 encoders (`v4l2h264enc`, the Raspberry Pi's `bcm2835-codec`) have no `bitrate`
/// property: the bitrate is the `video_bitrate` control (bit/s) in their `extra-controls`
/// structure. Setting that property while the device is open applies the whole structure
/// again (gstv4l2object.c: `gst_v4l2_set_controls` on every set), so pipe writes it back
/// whole with only `video_bitrate` changed; the property is not flagged changeable in
/// PLAYING, which is why this path does not ask for the flag.
const EXTRA_CONTROLS: &str = "extra-controls";
const V4L2_BITRATE: &str = "video_bitrate";

/// The element's `extra-controls`, if it has that property and it names a `video_bitrate`.
fn v4l2_controls(e: &gst::Element) -> Option<gst::Structure> {
    let pspec = e.find_property(EXTRA_CONTROLS)?;
    if pspec.value_type() != gst::Structure::static_type()
        || !pspec.flags().contains(glib::ParamFlags::WRITABLE)
    {
        return None;
    }
    get::<Option<gst::Structure>>(e, EXTRA_CONTROLS)
        .flatten()
        .filter(|s| s.has_field(V4L2_BITRATE))
}

fn v4l2_bitrate_kbps(e: &gst::Element) -> Option<u32> {
    let controls = v4l2_controls(e)?;
    let bps = controls.get::<i32>(V4L2_BITRATE).ok()?;
    u32::try_from(bps).ok().map(|bps| bps / 1000)
}

/// The element's `extra-controls` with `video_bitrate` set to `kbps`, every other control kept;
/// `None` where the element has no such structure (then the bitrate cannot change live).
fn v4l2_controls_with_bitrate(e: &gst::Element, kbps: u32) -> Option<gst::Structure> {
    let mut controls = v4l2_controls(e)?;
    let bps = i32::try_from(u64::from(kbps) * 1000).unwrap_or(i32::MAX);
    controls.set(V4L2_BITRATE, bps);
    Some(controls)
}

/// Sets an encoder's bitrate while it plays (`hook` names it in errors).
fn set_bitrate(e: &gst::Element, hook: Hook, kbps: u32) -> Result<(), ControlError> {
    if let Some(unit) = BitrateUnit::of(&factory(e)) {
        live_property::<u32>(e, hook, "bitrate", "bitrate")?;
        e.set_property("bitrate", unit.to_property(kbps));
    } else {
        let controls =
            v4l2_controls_with_bitrate(e, kbps).ok_or_else(|| ControlError::Unsupported {
                element: hook.element(),
                factory: factory(e),
                what: "bitrate",
            })?;
        e.set_property(EXTRA_CONTROLS, &controls);
    }
    Ok(())
}

/// Applies each set value; returns what was applied and the first error.
fn apply(chain: &gst::Bin, change: &ControlValues) -> (ControlValues, Result<(), ControlError>) {
    let mut done = ControlValues::default();
    let result = (|| {
        if let Some(text) = &change.overlay_text {
            let e = element(chain, Hook::Overlay)?;
            live_property::<String>(&e, Hook::Overlay, "text", "text")?;
            e.set_property("text", overlay_markup(text));
            done.overlay_text = Some(text.clone());
        }
        if let Some(b) = change.brightness {
            let e = element(chain, Hook::Balance)?;
            live_property::<f64>(&e, Hook::Balance, "brightness", "brightness")?;
            e.set_property("brightness", b);
            done.brightness = Some(b);
        }
        if let Some(kbps) = change.bitrate_kbps {
            set_bitrate(&element(chain, Hook::Encoder)?, Hook::Encoder, kbps)?;
            done.bitrate_kbps = Some(kbps);
        }
        if let Some((w, h)) = change.size {
            let e = element(chain, Hook::Size)?;
            if factory(&e) != "capsfilter" {
                return Err(ControlError::Unsupported {
                    element: Hook::Size.element(),
                    factory: factory(&e),
                    what: "caps (it must be a capsfilter)",
                });
            }
            let caps = e
                .property::<Option<gst::Caps>>("caps")
                .filter(|c| c.size() == 1)
                .unwrap_or_else(|| gst::Caps::new_empty_simple("video/x-raw"));
            let caps = resized(caps, w, h);
            debug!(%caps, "new frame size");
            e.set_property("caps", &caps);
            done.size = Some((w, h));
        }
        Ok(())
    })();
    (done, result)
}

/// `caps` (one structure) with its width and height replaced.
fn resized(mut caps: gst::Caps, width: u32, height: u32) -> gst::Caps {
    let caps_mut = caps.make_mut();
    if let Some(s) = caps_mut.structure_mut(0) {
        // Validated: at most 16384, so they fit an i32.
        s.set("width", width as i32);
        s.set("height", height as i32);
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_named_elements() {
        let names: Vec<_> = Hook::ALL.iter().map(|h| h.element()).collect();
        assert_eq!(
            names,
            ["pipe-overlay", "pipe-balance", "pipe-encoder", "pipe-size"]
        );
        assert_eq!(
            ControlError::Missing(Hook::Overlay.element()).to_string(),
            "the capture chain has no element named pipe-overlay"
        );
    }

    #[test]
    fn overlay_text_is_escaped_for_pango_and_read_back_plain() {
        let text = "Tom & <Jerry> \"1\" 'a'";
        let markup = overlay_markup(text);
        assert_eq!(
            markup,
            "Tom &amp; &lt;Jerry&gt; &quot;1&quot; &apos;a&apos;"
        );
        assert_eq!(overlay_plain(&markup), text);
        assert_eq!(overlay_plain("&amp;lt;"), "&lt;", "unescaped once");
    }

    #[test]
    fn bitrate_units_by_encoder() {
        assert_eq!(BitrateUnit::of("x264enc").unwrap().to_property(2000), 2000);
        let openh264 = BitrateUnit::of("openh264enc").unwrap();
        assert_eq!(openh264.to_property(2000), 2_000_000);
        assert_eq!(openh264.to_kbps(1_500_000), 1500);
        assert_eq!(BitrateUnit::of("v4l2h264enc"), None);
    }

    /// Stands in for `v4l2h264enc` (which this machine lacks): an element with the same
    /// `extra-controls` property (a structure, writable, not flagged changeable in PLAYING),
    /// remembering every structure it was given. Not registered under the hardware name, so
    /// no other test takes it for the real element.
    mod v4l2_stand_in {
        use gst::glib;
        use gst::prelude::*;
        use gst::subclass::prelude::*;
        use std::sync::{LazyLock, Mutex};

        glib::wrapper! {
            pub struct V4l2Enc(ObjectSubclass<imp::V4l2Enc>) @extends gst::Element, gst::Object;
        }

        impl V4l2Enc {
            pub fn sets(&self) -> Vec<gst::Structure> {
                self.imp().sets.lock().unwrap().clone()
            }
        }

        mod imp {
            use super::*;

            #[derive(Default)]
            pub struct V4l2Enc {
                pub sets: Mutex<Vec<gst::Structure>>,
            }

            #[glib::object_subclass]
            impl ObjectSubclass for V4l2Enc {
                const NAME: &'static str = "PipeTestV4l2Enc";
                type Type = super::V4l2Enc;
                type ParentType = gst::Element;
            }

            impl ObjectImpl for V4l2Enc {
                fn properties() -> &'static [glib::ParamSpec] {
                    static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                        vec![
                            glib::ParamSpecBoxed::builder::<gst::Structure>("extra-controls")
                                .build(),
                        ]
                    });
                    &PROPS
                }

                fn set_property(&self, _id: usize, value: &glib::Value, _pspec: &glib::ParamSpec) {
                    if let Ok(Some(s)) = value.get::<Option<gst::Structure>>() {
                        self.sets.lock().unwrap().push(s);
                    }
                }

                fn property(&self, _id: usize, _pspec: &glib::ParamSpec) -> glib::Value {
                    self.sets.lock().unwrap().last().cloned().to_value()
                }
            }

            impl GstObjectImpl for V4l2Enc {}
            impl ElementImpl for V4l2Enc {}
        }
    }

    #[test]
    fn a_v4l2_encoder_gets_its_whole_controls_back_with_only_the_bitrate_changed() {
        gst::init().unwrap();
        let chain = gst::Bin::new();
        let encoder: v4l2_stand_in::V4l2Enc = glib::Object::builder()
            .property("name", Hook::Encoder.element())
            .build();
        // As the rpi-v4l2h264enc chain writes it.
        let controls: gst::Structure = "controls,video_bitrate=2000000,h264_i_frame_period=60,\
             h264_profile=1,h264_level=11,repeat_sequence_header=1"
            .parse()
            .unwrap();
        encoder.set_property(EXTRA_CONTROLS, &controls);
        chain.add(&encoder).unwrap();
        assert_eq!(read(&chain).bitrate_kbps, Some(2000));

        let (done, result) = apply(
            &chain,
            &ControlValues {
                bitrate_kbps: Some(800),
                ..Default::default()
            },
        );
        result.unwrap();
        assert_eq!(done.bitrate_kbps, Some(800));
        let sets = encoder.sets();
        assert_eq!(sets.len(), 2, "one set for the change: {sets:?}");
        let mut expected = controls.clone();
        expected.set("video_bitrate", 800_000i32);
        assert_eq!(sets[1], expected, "every other control is passed again");
        assert_eq!(read(&chain).bitrate_kbps, Some(800));

        // Without a video_bitrate in its controls there is nothing pipe can change.
        let bare = gst::Bin::new();
        let other: v4l2_stand_in::V4l2Enc = glib::Object::builder()
            .property("name", Hook::Encoder.element())
            .build();
        other.set_property(
            EXTRA_CONTROLS,
            "controls,h264_profile=1".parse::<gst::Structure>().unwrap(),
        );
        bare.add(&other).unwrap();
        let (_, result) = apply(
            &bare,
            &ControlValues {
                bitrate_kbps: Some(800),
                ..Default::default()
            },
        );
        assert!(matches!(
            result,
            Err(ControlError::Unsupported {
                what: "bitrate",
                ..
            })
        ));
    }

    #[test]
    fn changes_are_validated_whole() {
        let ok = ControlValues {
            overlay_text: Some("Lobby".into()),
            brightness: Some(-0.5),
            bitrate_kbps: Some(800),
            size: Some((1280, 720)),
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = [
            ControlValues {
                brightness: Some(1.5),
                ..Default::default()
            },
            ControlValues {
                brightness: Some(f64::NAN),
                ..Default::default()
            },
            ControlValues {
                bitrate_kbps: Some(0),
                ..Default::default()
            },
            ControlValues {
                size: Some((641, 360)),
                ..Default::default()
            },
            ControlValues {
                overlay_text: Some("a\nb".into()),
                ..Default::default()
            },
        ];
        for change in bad {
            assert!(change.validate().is_err(), "{change:?}");
        }
    }

    #[test]
    fn merged_changes_keep_earlier_values() {
        let mut applied = ControlValues {
            overlay_text: Some("a".into()),
            bitrate_kbps: Some(500),
            ..Default::default()
        };
        applied.merge(&ControlValues {
            bitrate_kbps: Some(900),
            size: Some((640, 360)),
            ..Default::default()
        });
        assert_eq!(applied.overlay_text.as_deref(), Some("a"));
        assert_eq!(applied.bitrate_kbps, Some(900));
        assert_eq!(applied.size, Some((640, 360)));
    }

    /// A chain without hooks, or with an element of the wrong kind under a hook's name, is
    /// refused with the element's name, never a panic.
    #[tokio::test]
    async fn a_chain_without_hooks_says_which_element_it_lacks() {
        gst::init().expect("GStreamer initialises");
        let chain = gst::parse::launch(
            "videotestsrc ! identity name=pipe-encoder ! videobalance name=pipe-size ! fakesink name=video",
        )
        .expect("launches")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let sink = chain.by_name("video").expect("named");
        let controls = Controls::new(Arc::new(Mutex::new(sink)));
        assert_eq!(controls.hooks().await.unwrap(), [Hook::Encoder, Hook::Size]);
        assert_eq!(controls.read().await.unwrap(), ControlValues::default());
        assert_eq!(
            controls.set_overlay_text("x").await,
            Err(ControlError::Missing("pipe-overlay"))
        );
        assert_eq!(
            controls
                .set_bitrate_kbps(500)
                .await
                .unwrap_err()
                .to_string(),
            "pipe-encoder (identity): pipe cannot change its bitrate while the chain plays"
        );
        assert!(controls.set_size(640, 360).await.is_err());
        assert!(matches!(
            controls.set_brightness(2.0).await,
            Err(ControlError::Invalid { .. })
        ));
    }

    /// The size of the next encoded frame out of `appsink`, if one comes within 500 ms.
    fn next_size(appsink: &gst_app::AppSink) -> Option<(u32, u32)> {
        let sample = appsink.try_pull_sample(gst::ClockTime::from_mseconds(500))?;
        let s = sample.caps()?.structure(0)?;
        Some((
            s.get::<i32>("width").ok()? as u32,
            s.get::<i32>("height").ok()? as u32,
        ))
    }

    /// Pulls frames until one has `size`; false after 10 s.
    fn wait_for_size(appsink: &gst_app::AppSink, size: (u32, u32)) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if next_size(appsink) == Some(size) {
                return true;
            }
        }
        false
    }

    /// The builtin test chain offers every hook, and each changes while it plays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_virtual_webcam_changes_live() {
        use crate::chains::pipeline::{self, Params};
        gst::init().expect("GStreamer initialises");
        let template = pipeline::resolve("virtual-webcam", None).expect("builtin");
        let params = Params {
            width: 320,
            height: 180,
            bitrate_kbps: 700,
            ..Params::default()
        };
        let description = template.full_description(&params).expect("renders");
        let chain = gst::parse::launch(&description)
            .expect("launches")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        chain.set_state(gst::State::Playing).expect("plays");
        let sink = chain.by_name("video").expect("video appsink");
        let appsink = sink.clone().downcast::<gst_app::AppSink>().unwrap();
        // Frames flow at the template's size before anything changes.
        let pulled = appsink.clone();
        let first = tokio::task::spawn_blocking(move || wait_for_size(&pulled, (320, 180)));
        assert!(first.await.unwrap(), "the chain plays at 320x180");
        // The appsink holds two frames and then blocks the chain: keep pulling meanwhile.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pulled, stopping) = (appsink.clone(), stop.clone());
        let drain = std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                next_size(&pulled);
            }
        });

        let controls = Controls::new(Arc::new(Mutex::new(sink.clone())));
        assert_eq!(controls.hooks().await.unwrap(), Hook::ALL);
        let before = controls.read().await.unwrap();
        assert_eq!(before.size, Some((320, 180)));
        assert_eq!(before.bitrate_kbps, Some(700));
        assert_eq!(before.brightness, Some(0.0));

        controls.set_overlay_text("Tom & Jerry").await.unwrap();
        controls.set_brightness(0.25).await.unwrap();
        controls.set_bitrate_kbps(300).await.unwrap();
        controls.set_size(256, 144).await.unwrap();
        let after = controls.read().await.unwrap();
        assert_eq!(
            after,
            ControlValues {
                overlay_text: Some("Tom & Jerry".into()),
                brightness: Some(0.25),
                bitrate_kbps: Some(300),
                size: Some((256, 144)),
            }
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drain.join().unwrap();
        let pulled = appsink.clone();
        let resized = tokio::task::spawn_blocking(move || wait_for_size(&pulled, (256, 144)));
        assert!(
            resized.await.unwrap(),
            "the encoded stream takes the new size"
        );
        // videotestsrc renegotiates to the new size itself, so videoscale passes frames
        // through; the reconfiguration reaches the source a little after the first scaled
        // frames, so give it a moment.
        let source = chain
            .iterate_elements()
            .into_iter()
            .flatten()
            .find(|e| factory(e) == "videotestsrc")
            .expect("the chain has a videotestsrc");
        let size = || {
            let caps = source.static_pad("src").and_then(|p| p.current_caps());
            let s = caps
                .as_ref()
                .and_then(|c| c.structure(0))
                .map(|s| s.to_owned());
            s.map(|s| (s.get::<i32>("width").ok(), s.get::<i32>("height").ok()))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while size() != Some((Some(256), Some(144))) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(size(), Some((Some(256), Some(144))));
        let result = tokio::task::spawn_blocking(move || chain.set_state(gst::State::Null));
        result.await.unwrap().expect("stops");
    }
}
