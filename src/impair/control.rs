//! Control-file commands that change a running relay's impairments.

use thiserror::Error;

use crate::impair::{Impairment, ParseError};

/// One command read from the control file.
#[derive(Debug, Clone, PartialEq)]
// Parsed at most ten times a second and consumed at once, so boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Control {
    /// Replace the impairment of either or both directions.
    Set {
        /// New client→peer impairment, if given.
        up: Option<Impairment>,
        /// New peer→client impairment, if given.
        down: Option<Impairment>,
    },
    /// Cut (`true`) or restore (`false`) both directions, keeping their other settings.
    Outage(bool),
}

/// Why a control line was rejected; every message says how to fix it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ControlError {
    /// Empty file.
    #[error("empty control command; write `up=SPEC;down=SPEC`, `outage=on` or `outage=off`")]
    Empty,
    /// Not a recognised command.
    #[error(
        "unknown control command `{0}`; write `up=SPEC;down=SPEC`, `outage=on` or `outage=off`"
    )]
    Unknown(String),
    /// A direction given twice.
    #[error("`{0}` given twice; give each direction once")]
    Repeated(&'static str),
    /// A spec inside the command was bad.
    #[error("bad {dir} spec: {source}")]
    Spec {
        /// Which direction.
        dir: &'static str,
        /// The spec error.
        source: ParseError,
    },
}

impl Control {
    /// Parses `up=SPEC;down=SPEC` (either part optional), `outage=on` or `outage=off`.
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ControlError::Empty);
        }
        match text.to_ascii_lowercase().replace(' ', "").as_str() {
            "outage=on" => return Ok(Self::Outage(true)),
            "outage=off" => return Ok(Self::Outage(false)),
            _ => {}
        }
        let (mut up, mut down) = (None, None);
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, spec)) = part.split_once('=') else {
                return Err(ControlError::Unknown(part.to_string()));
            };
            let (slot, dir) = match key.trim().to_ascii_lowercase().as_str() {
                "up" => (&mut up, "up"),
                "down" => (&mut down, "down"),
                _ => return Err(ControlError::Unknown(part.to_string())),
            };
            if slot.is_some() {
                return Err(ControlError::Repeated(dir));
            }
            *slot =
                Some(Impairment::parse(spec).map_err(|source| ControlError::Spec { dir, source })?);
        }
        if up.is_none() && down.is_none() {
            return Err(ControlError::Empty);
        }
        Ok(Self::Set { up, down })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_commands() {
        assert_eq!(Control::parse("outage=on\n"), Ok(Control::Outage(true)));
        assert_eq!(Control::parse(" outage = off"), Ok(Control::Outage(false)));
        let Ok(Control::Set { up, down }) = Control::parse("up=loss=5%,delay=10ms;down=clean\n")
        else {
            panic!("set");
        };
        assert_eq!(up.expect("up").delay, Duration::from_millis(10));
        assert_eq!(down, Some(Impairment::default()));
        assert!(matches!(
            Control::parse("down=delay=1ms"),
            Ok(Control::Set {
                up: None,
                down: Some(_)
            })
        ));
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(Control::parse(""), Err(ControlError::Empty));
        assert!(matches!(
            Control::parse("sideways=1"),
            Err(ControlError::Unknown(_))
        ));
        assert!(matches!(
            Control::parse("up=clean;up=clean"),
            Err(ControlError::Repeated("up"))
        ));
        let e = Control::parse("up=loss=5")
            .expect_err("bad spec")
            .to_string();
        assert!(e.contains("bad up spec") && e.contains("5%"), "{e}");
    }
}
