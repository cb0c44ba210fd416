//! Reading the lines a participant publishes.
//!
//! Standard input is read on a plain thread of its own, not a tokio task: a blocking read cannot be
//! cancelled, and a runtime waiting for one at exit would hang until the user pressed Enter. The thread
//! hands lines over through a small bounded channel, so a user who types faster than the service accepts
//! simply waits, and it ends when input ends or when nobody listens any more.

use std::io::BufRead;

use thiserror::Error;
use tokio::sync::mpsc;

/// A line of input that is not valid UTF-8, and so cannot be a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the line is not valid UTF-8")]
pub struct NotUtf8;

/// One line of input, without its line ending.
pub type InputLine = Result<String, NotUtf8>;

/// How many read lines may wait to be published.
const BACKLOG: usize = 32;

/// Reads `reader` line by line on its own thread. The channel closes at the end of input.
pub fn spawn_reader<R: BufRead + Send + 'static>(mut reader: R) -> mpsc::Receiver<InputLine> {
    let (sender, receiver) = mpsc::channel(BACKLOG);
    std::thread::Builder::new()
        .name("chitty-chat-input".to_owned())
        .spawn(move || {
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let line = String::from_utf8(line.to_vec()).map_err(|_| NotUtf8);
                if sender.blocking_send(line).is_err() {
                    return;
                }
            }
        })
        // Spawning fails only when the system is out of threads; an empty input is the honest fallback.
        .ok();
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_arrive_in_order_without_endings_and_bad_utf8_is_flagged() {
        let input: &[u8] = b"hello\r\nworld\n\xff\xfe\nlast without newline";
        let mut lines = spawn_reader(input);
        let mut got = Vec::new();
        while let Some(line) = lines.recv().await {
            got.push(line);
        }
        assert_eq!(
            got,
            vec![
                Ok("hello".to_owned()),
                Ok("world".to_owned()),
                Err(NotUtf8),
                Ok("last without newline".to_owned()),
            ]
        );
    }
}
