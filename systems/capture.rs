//! Stage 2: the newest camera picture becomes the local participant's video.

use bevy_ecs::prelude::*;

use crate::components::{CameraOff, Clock, Control, Local, VideoStream};
use crate::devices::camera::{Camera, CameraStatus};
use crate::stats::CallStats;

/// The camera thread.
#[derive(Resource, Debug)]
pub struct CameraDevice(pub Camera);

/// Takes the newest picture; keeps the `CameraOff` marker true to what is delivered.
pub fn capture(
    camera: Res<CameraDevice>,
    control: Res<Control>,
    clock: Res<Clock>,
    mut local: Single<(Entity, &mut VideoStream, Has<CameraOff>), With<Local>>,
    mut stats: ResMut<CallStats>,
    mut commands: Commands,
) {
    let (entity, ref mut stream, was_off) = *local;
    camera.0.set_enabled(control.camera_wanted);
    let delivering = control.camera_wanted && camera.0.status() != CameraStatus::Failed;
    if delivering == was_off {
        if delivering {
            commands.entity(entity).remove::<CameraOff>();
        } else {
            commands.entity(entity).insert(CameraOff);
            stream.clear();
        }
    }
    if !control.camera_wanted {
        return;
    }
    if let Some(frame) = camera.0.take_latest() {
        stats.frames_captured += 1;
        stream.set(frame, clock.now);
    }
}
