//! How the member and the moves steer the tail ([`super::tail`]): commands over a channel, so
//! that neither waits for the tail's thread.

use std::sync::mpsc::Sender;

/// What the tail is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// Read `partition` from `from` (`None`: the log start) on.
    Follow { partition: i32, from: Option<i64> },
    /// Stop reading `partition`.
    Stop(i32),
}

/// Tells the tail which partitions to read; cheap to clone, never blocks.
#[derive(Clone)]
pub struct TailHandle {
    commands: Sender<Command>,
}

impl TailHandle {
    /// Reads `partition` from offset `from` on (`None`: from the log start).
    pub fn follow(&self, partition: i32, from: Option<i64>) {
        let _ = self.commands.send(Command::Follow { partition, from });
    }

    /// Stops reading `partition`.
    pub fn stop(&self, partition: i32) {
        let _ = self.commands.send(Command::Stop(partition));
    }

    /// A handle whose commands go nowhere (a member without handoffs or standbys).
    pub fn detached() -> Self {
        let (commands, _) = std::sync::mpsc::channel();
        Self { commands }
    }
}

impl TailHandle {
    pub(super) fn new(commands: Sender<Command>) -> Self {
        Self { commands }
    }
}
