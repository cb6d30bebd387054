//! The description part of a pipeline file, in gst-launch syntax: split far enough to check
//! element names, properties, `name.` references and placeholders without GStreamer, and the
//! values that may be put into it (`launch_safe`).

use super::{AUDIO_SINK, Meta, PLACEHOLDERS, PipelineError, VIDEO_SINK};

pub(super) fn is_element_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The name of a placeholder starting right after a `{`, if the text is `name}...`. Caps lists
/// (`{ I420, NV12 }`) contain spaces or commas, so they never look like placeholders.
pub(super) fn placeholder_at(after_brace: &str) -> Option<&str> {
    let end = after_brace.find('}')?;
    let name = &after_brace[..end];
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

/// Checks the description against the header and the latency contract, line by line.
pub(super) fn check_body(
    file: &str,
    meta: &Meta,
    body: &[(usize, &str)],
) -> Result<(), PipelineError> {
    let syntax = |line, message: String| PipelineError::Syntax {
        file: file.to_string(),
        line,
        message,
    };
    if body.is_empty() {
        return Err(PipelineError::Invalid {
            file: file.to_string(),
            message: "there is no description after the header".to_string(),
        });
    }
    let (mut links_video, mut links_audio) = (false, false);
    let mut in_caps = false;
    for &(line, text) in body {
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            rest = &rest[start + 1..];
            if let Some(name) = placeholder_at(rest)
                && !PLACEHOLDERS.contains(&name)
            {
                return Err(syntax(
                    line,
                    format!(
                        "unknown placeholder {{{name}}} (known: {})",
                        PLACEHOLDERS.join(", ")
                    ),
                ));
            }
        }
        for token in launch_tokens(text, &mut in_caps).map_err(|message| syntax(line, message))? {
            match token {
                Token::Element(element) => {
                    if element == "clocksync" {
                        return Err(syntax(
                            line,
                            "clocksync holds frames until their time; \
                            pipe's latency target allows no element but live sources to sync"
                                .to_string(),
                        ));
                    }
                    if !meta.requires.iter().any(|r| r == element) {
                        return Err(syntax(
                            line,
                            format!(
                                "the description uses '{element}' but `requires:` does not list it"
                            ),
                        ));
                    }
                }
                Token::Property(key, value) => {
                    let enabled =
                        matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
                    if key == "sync" && enabled {
                        return Err(syntax(
                            line,
                            "sync=true makes an element wait for the clock; \
                            pipe's latency target allows no element but live sources to sync"
                                .to_string(),
                        ));
                    }
                    if key.starts_with("min-threshold-") && value != "0" {
                        return Err(syntax(
                            line,
                            format!(
                                "{key} holds frames in a queue; \
                            pipe's latency target allows no queue that holds frames"
                            ),
                        ));
                    }
                }
                Token::Reference(reference) => {
                    let target = reference.split('.').next().unwrap_or_default();
                    links_video |= target == VIDEO_SINK;
                    links_audio |= target == AUDIO_SINK;
                }
            }
        }
    }
    let invalid = |message: &str| {
        Err(PipelineError::Invalid {
            file: file.to_string(),
            message: message.to_string(),
        })
    };
    if !links_video {
        return invalid("the description never links its output to `video.`");
    }
    if meta.audio && !links_audio {
        return invalid("the header says `audio: yes` but the description never links to `audio.`");
    }
    if !meta.audio && links_audio {
        return invalid("the description links to `audio.` but the header says `audio: no`");
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Token<'a> {
    Element(&'a str),
    Property(&'a str, &'a str),
    Reference(&'a str),
}

/// Splits one line of gst-launch syntax far enough to see element names, properties and
/// `name.` references. Caps run up to the next `!`, possibly across lines (`in_caps` carries
/// that over), as in GStreamer's own lexer; they, quoted strings and URIs name no element.
pub(super) fn launch_tokens<'a>(
    line: &'a str,
    in_caps: &mut bool,
) -> Result<Vec<Token<'a>>, String> {
    let mut tokens = Vec::new();
    for word in launch_words(line)? {
        let mut rest = word;
        loop {
            if *in_caps {
                match rest.find('!') {
                    Some(bang) => {
                        *in_caps = false;
                        rest = &rest[bang + 1..];
                    }
                    None => break,
                }
            }
            if rest.is_empty() {
                break;
            }
            if let Some((key, value)) = rest.split_once('=')
                && is_element_name(key)
            {
                // A property value may itself contain `!` (a URL): it runs to the whitespace.
                tokens.push(Token::Property(
                    key,
                    value.trim_matches(|c| c == '"' || c == '\''),
                ));
                break;
            }
            let head = rest.split(['!', ',', '=']).next().unwrap_or_default();
            if rest.starts_with(['"', '\'']) || head.contains('/') {
                *in_caps = true;
                continue;
            }
            let (piece, next) = match rest.split_once('!') {
                Some((piece, next)) => (piece, Some(next)),
                None => (rest, None),
            };
            if piece.contains('.') {
                tokens.push(Token::Reference(piece));
            } else if is_element_name(piece) {
                tokens.push(Token::Element(piece));
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    Ok(tokens)
}

/// Whitespace-separated words; quoted strings stay whole.
pub(super) fn launch_words(line: &str) -> Result<Vec<&str>, String> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            None if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    words.push(&line[s..i]);
                }
            }
            None => {
                start.get_or_insert(i);
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed on this line".to_string());
    }
    if let Some(s) = start {
        words.push(&line[s..]);
    }
    Ok(words)
}

/// Values substituted verbatim must stay one unquoted launch-syntax word: whitespace would end
/// it, quotes would start a string, backslashes would be unescaped. The value itself is not
/// echoed because an RTSP URL can carry a password.
pub(super) fn launch_safe<'a>(
    param: &'static str,
    value: &'a str,
) -> Result<&'a str, PipelineError> {
    let bad = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
    if bad {
        return Err(PipelineError::InvalidParam {
            param,
            reason: "must be non-empty without whitespace, quotes or backslashes \
                     (percent-encode them in a URL)"
                .to_string(),
        });
    }
    Ok(value)
}

/// `rtsp://user:secret@host/x` -> `rtsp://user:***@host/x`, for logs.
pub(super) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                &url[..authority_start],
                &url[authority_start + at..]
            )
        }
        None => url.to_string(),
    }
}
