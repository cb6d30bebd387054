//! Whether this machine's GStreamer has the elements pipe needs, reported with the package
//! that provides each missing one (`chains::plugins`).

use crate::chains::plugins::{Missing, MissingElements, missing_in};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[from] gst::glib::Error),
    #[error(transparent)]
    Missing(#[from] MissingElements),
}

/// The elements this machine's GStreamer registry lacks (initialises GStreamer if needed).
pub fn missing(elements: &[&str]) -> Result<Vec<Missing>, gst::glib::Error> {
    gst::init()?;
    Ok(missing_in(elements, |name| {
        gst::ElementFactory::find(name).is_some()
    }))
}

/// `Ok` when every element is present; for the start-up check of `CORE` plus the chain's.
pub fn check(elements: &[&str]) -> Result<(), PluginError> {
    let missing = missing(elements)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingElements(missing).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_against_this_machine() {
        assert!(check(&["identity", "capsfilter"]).is_ok());
        match check(&["identity", "pipe-no-such-element"]) {
            Err(PluginError::Missing(MissingElements(m))) => {
                assert_eq!(m.len(), 1);
                assert_eq!(m[0].element, "pipe-no-such-element");
            }
            other => panic!("expected one missing element, got {other:?}"),
        }
    }
}
