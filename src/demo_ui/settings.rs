//! The demo camera's settings as its UI shows and takes them: validation, the form, the
//! visit cookie. Pure: no sockets, no GStreamer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::media::controls::ControlValues;

/// The frame sizes the UI offers.
pub const RESOLUTIONS: [Resolution; 3] = [
    Resolution::new(640, 360),
    Resolution::new(1280, 720),
    Resolution::new(1920, 1080),
];
/// Bitrates the UI accepts, kbit/s: below 100 a picture is mush, above 20000 no viewer's link
/// keeps up.
pub const BITRATE_KBPS: std::ops::RangeInclusive<u32> = 100..=20_000;
/// Longest overlay text, in characters (it has to fit across a 640-pixel frame).
pub const MAX_OVERLAY_CHARS: usize = 64;
/// The cookie the UI counts page views with (not HttpOnly: the page's script reads it too).
pub const VISITS_COOKIE: &str = "demo_visits";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

impl Resolution {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    /// One of [`RESOLUTIONS`].
    pub fn is_offered(self) -> bool {
        RESOLUTIONS.contains(&self)
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Resolution {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, SettingsError> {
        let invalid = || SettingsError::invalid("resolution", "looks like 1280x720");
        let (w, h) = s.split_once('x').ok_or_else(invalid)?;
        Ok(Self::new(
            w.parse().map_err(|_| invalid())?,
            h.parse().map_err(|_| invalid())?,
        ))
    }
}

impl Serialize for Resolution {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

impl SettingsError {
    fn invalid(field: &'static str, reason: &str) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}

/// The settings now. A field is `None` when the running chain cannot change it (it lacks the
/// element, docs/pipelines.md); the UI disables that control.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    pub overlay_text: Option<String>,
    /// 0 to 100 percent; 50 leaves the picture as the camera gives it.
    pub brightness: Option<u8>,
    pub resolution: Option<Resolution>,
    pub bitrate_kbps: Option<u32>,
}

/// The settings' names, as the form, the JSON and the UI's `data-supported` spell them.
pub const FIELDS: [&str; 4] = ["overlay_text", "brightness", "resolution", "bitrate_kbps"];

impl Settings {
    /// What the chain's hooks hold.
    pub fn from_controls(values: &ControlValues) -> Self {
        Self {
            overlay_text: values.overlay_text.clone(),
            brightness: values.brightness.map(brightness_percent),
            resolution: values.size.map(|(w, h)| Resolution::new(w, h)),
            bitrate_kbps: values.bitrate_kbps,
        }
    }

    /// The names of the settings this chain can change, in [`FIELDS`] order.
    pub fn supported(&self) -> Vec<&'static str> {
        let has = [
            self.overlay_text.is_some(),
            self.brightness.is_some(),
            self.resolution.is_some(),
            self.bitrate_kbps.is_some(),
        ];
        FIELDS
            .into_iter()
            .zip(has)
            .filter_map(|(name, has)| has.then_some(name))
            .collect()
    }
}

/// A change: fields left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub overlay_text: Option<String>,
    pub brightness: Option<u8>,
    pub resolution: Option<Resolution>,
    pub bitrate_kbps: Option<u32>,
}

impl SettingsPatch {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(text) = &self.overlay_text {
            if text.chars().count() > MAX_OVERLAY_CHARS {
                return Err(SettingsError::invalid(
                    "overlay_text",
                    &format!("at most {MAX_OVERLAY_CHARS} characters"),
                ));
            }
            if text.chars().any(char::is_control) {
                return Err(SettingsError::invalid(
                    "overlay_text",
                    "no line breaks or control characters",
                ));
            }
        }
        if self.brightness.is_some_and(|b| b > 100) {
            return Err(SettingsError::invalid("brightness", "0 to 100 (percent)"));
        }
        if let Some(r) = self.resolution
            && !r.is_offered()
        {
            return Err(SettingsError::invalid(
                "resolution",
                "one of 640x360, 1280x720, 1920x1080",
            ));
        }
        if let Some(kbps) = self.bitrate_kbps
            && !BITRATE_KBPS.contains(&kbps)
        {
            return Err(SettingsError::invalid(
                "bitrate_kbps",
                &format!("{} to {} kbit/s", BITRATE_KBPS.start(), BITRATE_KBPS.end()),
            ));
        }
        Ok(())
    }

    /// A validated change from an `application/x-www-form-urlencoded` body. Fields a form
    /// leaves out (a disabled control is not submitted) stay; unknown fields (the submit
    /// button's) are ignored.
    pub fn from_form(body: &[u8]) -> Result<Self, SettingsError> {
        let mut patch = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            let number = |field| {
                value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| SettingsError::invalid(field, "a whole number"))
            };
            match key.as_ref() {
                "overlay_text" => patch.overlay_text = Some(value.to_string()),
                "brightness" => {
                    let b = number("brightness")?;
                    patch.brightness = Some(
                        u8::try_from(b)
                            .map_err(|_| SettingsError::invalid("brightness", "0 to 100"))?,
                    );
                }
                "resolution" => patch.resolution = Some(value.trim().parse()?),
                "bitrate_kbps" => patch.bitrate_kbps = Some(number("bitrate_kbps")?),
                _ => {}
            }
        }
        patch.validate()?;
        Ok(patch)
    }

    /// The change in the capture chain's units.
    pub fn to_controls(&self) -> ControlValues {
        ControlValues {
            overlay_text: self.overlay_text.clone(),
            brightness: self.brightness.map(balance_brightness),
            bitrate_kbps: self.bitrate_kbps,
            size: self.resolution.map(|r| (r.width, r.height)),
        }
    }
}

/// Percent (0..=100, 50 neutral) to `videobalance` brightness (-1..=1, 0 neutral).
pub fn balance_brightness(percent: u8) -> f64 {
    (f64::from(percent.min(100)) - 50.0) / 50.0
}

/// `videobalance` brightness back to percent.
pub fn brightness_percent(balance: f64) -> u8 {
    // Clamped to 0..=100 first, so the cast cannot truncate.
    (balance * 50.0 + 50.0).round().clamp(0.0, 100.0) as u8
}

/// The visit count in a request's `Cookie` headers (0 without one, or with a mangled one).
pub fn visits<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> u32 {
    cookie_headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == VISITS_COOKIE)
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The `Set-Cookie` value that records `count` visits.
pub fn visits_cookie(count: u32) -> String {
    format!("{VISITS_COOKIE}={count}; Path=/; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_form_is_parsed_and_validated() {
        let body = b"overlay_text=Front+door+%26+gate&brightness=75&resolution=640x360&bitrate_kbps=800&save=";
        let patch = SettingsPatch::from_form(body).unwrap();
        assert_eq!(
            patch,
            SettingsPatch {
                overlay_text: Some("Front door & gate".into()),
                brightness: Some(75),
                resolution: Some(Resolution::new(640, 360)),
                bitrate_kbps: Some(800),
            }
        );
        let controls = patch.to_controls();
        assert_eq!(controls.brightness, Some(0.5));
        assert_eq!(controls.size, Some((640, 360)));
    }

    #[test]
    fn fields_left_out_stay_and_an_empty_text_clears() {
        let patch = SettingsPatch::from_form(b"overlay_text=").unwrap();
        assert_eq!(patch.overlay_text.as_deref(), Some(""));
        assert_eq!(patch.bitrate_kbps, None);
        assert_eq!(
            SettingsPatch::from_form(b"").unwrap(),
            SettingsPatch::default()
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |body: &[u8]| SettingsPatch::from_form(body).unwrap_err().field;
        assert_eq!(field(b"brightness=101"), "brightness");
        assert_eq!(field(b"brightness=-1"), "brightness");
        assert_eq!(field(b"brightness=999"), "brightness");
        assert_eq!(field(b"resolution=800x600"), "resolution");
        assert_eq!(field(b"resolution=big"), "resolution");
        assert_eq!(field(b"bitrate_kbps=99"), "bitrate_kbps");
        assert_eq!(field(b"bitrate_kbps=20001"), "bitrate_kbps");
        assert_eq!(field(b"bitrate_kbps=fast"), "bitrate_kbps");
        assert_eq!(field(b"overlay_text=a%0Ab"), "overlay_text");
        let long = format!("overlay_text={}", "x".repeat(MAX_OVERLAY_CHARS + 1));
        assert_eq!(field(long.as_bytes()), "overlay_text");
    }

    #[test]
    fn json_patches_are_strict() {
        let patch: SettingsPatch =
            serde_json::from_str(r#"{"resolution":"1920x1080","bitrate_kbps":4000}"#).unwrap();
        assert_eq!(patch.resolution, Some(Resolution::new(1920, 1080)));
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"contrast":3}"#).is_err());
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"resolution":"wide"}"#).is_err());
    }

    #[test]
    fn brightness_maps_to_videobalance_and_back() {
        assert_eq!(balance_brightness(0), -1.0);
        assert_eq!(balance_brightness(50), 0.0);
        assert_eq!(balance_brightness(100), 1.0);
        for p in 0..=100 {
            assert_eq!(brightness_percent(balance_brightness(p)), p);
        }
        assert_eq!(brightness_percent(7.0), 100);
    }

    #[test]
    fn settings_say_what_the_chain_supports() {
        let settings = Settings::from_controls(&ControlValues {
            overlay_text: Some("x".into()),
            bitrate_kbps: Some(2000),
            ..Default::default()
        });
        assert_eq!(settings.supported(), ["overlay_text", "bitrate_kbps"]);
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["resolution"], serde_json::Value::Null);
        assert_eq!(json["bitrate_kbps"], 2000);
        let all = Settings::from_controls(&ControlValues {
            overlay_text: Some(String::new()),
            brightness: Some(0.0),
            bitrate_kbps: Some(1),
            size: Some((320, 240)),
        });
        assert_eq!(all.supported(), FIELDS);
        assert_eq!(all.brightness, Some(50));
        assert_eq!(json_string(&all.resolution), "\"320x240\"");
    }

    fn json_string<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn the_visit_cookie_counts_up() {
        assert_eq!(visits([]), 0);
        assert_eq!(visits(["demo_visits=3"]), 3);
        assert_eq!(visits(["a=1; demo_visits=41; b=2"]), 41);
        assert_eq!(visits(["a=1", "demo_visits=7"]), 7);
        assert_eq!(visits(["demo_visits=lots"]), 0);
        assert_eq!(visits(["xdemo_visits=5"]), 0);
        assert_eq!(visits_cookie(4), "demo_visits=4; Path=/; SameSite=Lax");
    }
}
