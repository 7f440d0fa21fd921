//! OpenAI tool-call ids for Gemini's function calls, carrying the call's thought signature.
//!
//! Thinking models (Gemini 2.5, 3) attach an opaque `thoughtSignature` to the part holding a
//! function call, and Gemini 3 rejects a later request whose history replays that call without
//! it ("Function call is missing a thought_signature"). OpenAI's shape has no field for it, and
//! clients replay only what OpenAI defines, but they do replay the tool call's `id` verbatim
//! (and quote it in the tool result's `tool_call_id`). So the signature rides inside the id:
//!
//! `<base>~ts~<signature>`
//!
//! - `<base>` is Gemini's `functionCall.id` when it sent one, else `call_<n>` (n counts the
//!   candidate's calls);
//! - `<signature>` is the signature's base64 re-written in the URL-safe alphabet without
//!   padding (`+` → `-`, `/` → `_`, `=` dropped), so the id holds only `[A-Za-z0-9_~-]` and
//!   survives clients that treat ids as identifiers;
//! - `~ts~` cannot occur in a signature so written (`~` is in neither base64 alphabet), so the
//!   id splits unambiguously at its last `~ts~`.
//!
//! On the way back the signature is restored to standard padded base64, which decodes to the
//! same bytes Gemini sent. A call without a signature keeps its plain base id. Signatures on
//! text parts are not carried: Gemini only requires the ones on function calls.

/// Between the base id and the encoded signature.
pub const SEPARATOR: &str = "~ts~";

/// The OpenAI id for a function call: its base, plus the signature when there is one. A
/// signature that is not base64 text (Gemini only sends base64) cannot be carried and is left
/// out rather than producing an id that would not split back.
pub fn encode(base: &str, signature: Option<&str>) -> String {
    match signature.and_then(url_safe) {
        Some(signature) => format!("{base}{SEPARATOR}{signature}"),
        None => base.to_owned(),
    }
}

/// An id from a replayed tool call, split into its base and the thought signature (standard
/// base64, as Gemini sent it). An id without the separator is a plain id without a signature.
/// `Err` when the part after the separator is not a signature this module wrote.
pub fn decode(id: &str) -> Result<(&str, Option<String>), MalformedSignature> {
    let Some((base, signature)) = id.rsplit_once(SEPARATOR) else {
        return Ok((id, None));
    };
    standard(signature)
        .map(|signature| (base, Some(signature)))
        .ok_or(MalformedSignature)
}

/// The text after `~ts~` is not URL-safe unpadded base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedSignature;

/// Standard (or already URL-safe) base64 in the URL-safe alphabet without padding.
fn url_safe(signature: &str) -> Option<String> {
    let body = signature.trim_end_matches('=');
    if body.is_empty() || body.len() % 4 == 1 || signature.len() - body.len() > 2 {
        return None;
    }
    body.chars()
        .map(|c| match c {
            '+' | '-' => Some('-'),
            '/' | '_' => Some('_'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// URL-safe unpadded base64 back in the standard alphabet with padding.
fn standard(encoded: &str) -> Option<String> {
    if encoded.is_empty() || encoded.len() % 4 == 1 {
        return None;
    }
    let mut signature: String = encoded
        .chars()
        .map(|c| match c {
            '-' => Some('+'),
            '_' => Some('/'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect::<Option<_>>()?;
    while !signature.len().is_multiple_of(4) {
        signature.push('=');
    }
    Some(signature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signature_round_trips_through_an_id_safe_id() {
        for signature in [
            "CiQBVKhc7q+Rk/mZpWzU",
            "CiQBVKhc7q+Rk/mZpWzUuN==",
            "CiQBVKhc7q+Rk/mZpWzUuNw=",
            "Cg==",
        ] {
            let id = encode("call_0", Some(signature));
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_~-".contains(c)),
                "{id}"
            );
            assert_eq!(decode(&id).unwrap(), ("call_0", Some(signature.to_owned())));
        }
        assert_eq!(encode("call_1", Some("ab+/cd==")), "call_1~ts~ab-_cd");
    }

    #[test]
    fn gemini_ids_stay_the_base_and_plain_ids_have_no_signature() {
        let id = encode("fc_7x2", Some("AAAA"));
        assert_eq!(id, "fc_7x2~ts~AAAA");
        assert_eq!(decode(&id).unwrap(), ("fc_7x2", Some("AAAA".to_owned())));
        assert_eq!(encode("call_0", None), "call_0");
        assert_eq!(decode("call_0").unwrap(), ("call_0", None));
        assert_eq!(
            decode("toolu_01A09q90qw").unwrap(),
            ("toolu_01A09q90qw", None)
        );
        // A base that itself holds the separator still splits at the signature.
        assert_eq!(
            decode("odd~ts~base~ts~AAAA").unwrap(),
            ("odd~ts~base", Some("AAAA".to_owned()))
        );
    }

    #[test]
    fn what_is_not_base64_is_neither_carried_nor_accepted() {
        assert_eq!(encode("call_0", Some("not base64!")), "call_0");
        assert_eq!(encode("call_0", Some("")), "call_0");
        assert_eq!(encode("call_0", Some("A===")), "call_0");
        assert_eq!(encode("call_0", Some("AAAAA")), "call_0");
        for id in [
            "call_0~ts~",
            "call_0~ts~ab+c",
            "call_0~ts~abc=",
            "call_0~ts~abcde",
        ] {
            assert_eq!(decode(id), Err(MalformedSignature), "{id}");
        }
    }
}
