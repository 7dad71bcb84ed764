//! Stage 1: keys become commands — quit, camera on/off, mute.

use bevy_ecs::prelude::*;
use crossbeam_channel::Receiver;

use crate::components::{Control, Local, Muted};
use crate::devices::window::KeyCommand;
use crate::devices::window_thread::WindowThread;

/// Key commands typed on standard input (`m`, `c`, `q`), for headless runs and scripts.
#[derive(Resource, Debug)]
pub struct StdinKeys(pub Receiver<KeyCommand>);

impl StdinKeys {
    /// Starts a thread that turns standard input into key commands.
    pub fn spawn() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let _ = std::thread::Builder::new()
            .name("stdin-keys".into())
            .spawn(move || {
                use std::io::Read;
                let mut byte = [0u8; 1];
                let mut stdin = std::io::stdin().lock();
                while let Ok(1) = stdin.read(&mut byte) {
                    let cmd = match byte[0] {
                        b'q' | b'Q' | 0x1b => KeyCommand::Quit,
                        b'c' => KeyCommand::ToggleCamera,
                        b'm' => KeyCommand::ToggleMute,
                        _ => continue,
                    };
                    if tx.send(cmd).is_err() {
                        break;
                    }
                }
            });
        Self(rx)
    }
}

/// Applies one key command to the world's state.
pub fn apply(
    cmd: KeyCommand,
    control: &mut Control,
    local: Entity,
    muted: bool,
    commands: &mut Commands,
) {
    match cmd {
        KeyCommand::Quit => control.quit = true,
        KeyCommand::ToggleCamera => control.camera_wanted = !control.camera_wanted,
        KeyCommand::ToggleMute => {
            if muted {
                commands.entity(local).remove::<Muted>();
            } else {
                commands.entity(local).insert(Muted);
            }
        }
    }
}

/// Reads the window's keys and standard input.
pub fn input(
    window: Option<Res<WindowThread>>,
    stdin: Option<Res<StdinKeys>>,
    mut control: ResMut<Control>,
    local: Single<(Entity, Has<Muted>), With<Local>>,
    mut commands: Commands,
) {
    let (entity, mut muted) = *local;
    let mut cmds = match window {
        Some(w) => w.commands(),
        None => Vec::new(),
    };
    if let Some(keys) = stdin {
        cmds.extend(keys.0.try_iter());
    }
    for cmd in cmds {
        apply(cmd, &mut control, entity, muted, &mut commands);
        if cmd == KeyCommand::ToggleMute {
            muted = !muted;
        }
    }
}
