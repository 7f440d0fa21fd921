//! Incremental decoder for `text/event-stream` bodies: bytes arrive in arbitrary pieces, events
//! come out whole. Shared by every streaming adapter.

/// One server-sent event; only the fields LLM APIs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline, so a long line arriving in small
    /// pieces is scanned once, not once per piece.
    scanned: usize,
    event: Option<String>,
    data: Vec<String>,
    /// Bytes in `data`: with the unterminated line, bounded by `MAX_EVENT_BYTES`.
    data_bytes: usize,
}

/// Upper bound on one event (its data lines plus an unterminated line), so a broken or hostile
/// upstream cannot grow an edge's memory without bound.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("an SSE event exceeded {MAX_EVENT_BYTES} bytes")]
pub struct LineTooLong;

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.buffer.extend_from_slice(bytes);
        // Lines are read in place (no copy unless they are not valid UTF-8); the buffer is
        // taken out meanwhile so `line` can update the decoder's other fields.
        let buffer = std::mem::take(&mut self.buffer);
        let mut events = Vec::new();
        let mut consumed = 0;
        let mut search_from = self.scanned;
        while let Some(newline) = buffer[search_from..].iter().position(|&b| b == b'\n') {
            let end = search_from + newline;
            let line = &buffer[consumed..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line);
            consumed = end + 1;
            search_from = consumed;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            if self.data_bytes > MAX_EVENT_BYTES {
                self.buffer = buffer;
                return Err(LineTooLong);
            }
        }
        self.buffer = buffer;
        self.buffer.drain(..consumed);
        self.scanned = self.buffer.len();
        if self.buffer.len() + self.data_bytes > MAX_EVENT_BYTES {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event = None;
                return None;
            }
            self.data_bytes = 0;
            let data = if self.data.len() == 1 {
                self.data.pop().unwrap_or_default()
            } else {
                std::mem::take(&mut self.data).join("\n")
            };
            return Some(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                self.data_bytes += value.len() + 1;
                self.data.push(value.to_owned());
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_across_reads_come_out_whole() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.feed(b"data: {\"a\"").unwrap().is_empty());
        let events = decoder
            .feed(b":1}\r\n\r\n: keep-alive\n\nevent: done\ndata: [DONE]\n\n")
            .unwrap();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: Some("done".into()),
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn an_endless_event_is_refused_whether_one_line_or_many() {
        let mut decoder = SseDecoder::new();
        let piece = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_EVENT_BYTES / piece.len() + 2) {
            if decoder.feed(&piece).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "one endless line");

        let mut decoder = SseDecoder::new();
        let line = format!("data: {}\n", "y".repeat(64 * 1024));
        let mut failed = false;
        for _ in 0..(MAX_EVENT_BYTES / line.len() + 2) {
            if decoder.feed(line.as_bytes()).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "endless data lines without a blank line");

        // Many events of the same total size are fine: the bound is per event.
        let mut decoder = SseDecoder::new();
        let event = format!("data: {}\n\n", "z".repeat(64 * 1024));
        for _ in 0..(MAX_EVENT_BYTES / event.len() + 2) {
            assert_eq!(decoder.feed(event.as_bytes()).unwrap().len(), 1);
        }
    }

    #[test]
    fn a_line_split_across_many_reads_comes_out_whole() {
        let mut decoder = SseDecoder::new();
        for piece in ["da", "ta: a", "b", "c\r", "\n", "\n"] {
            let events = decoder.feed(piece.as_bytes()).unwrap();
            if piece == "\n" && !events.is_empty() {
                assert_eq!(events[0].data, "abc");
                return;
            }
        }
        panic!("no event");
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut decoder = SseDecoder::new();
        let events = decoder.feed(b"data: a\ndata: b\n\n").unwrap();
        assert_eq!(events[0].data, "a\nb");
    }
}
