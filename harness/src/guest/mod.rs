//! The guest: its image (kernel + our initramfs) and the host end of its channel.

pub mod channel;
pub mod integrity;
pub mod cpio;
pub mod image;
pub mod kmod;

pub use channel::{Beat, GuestChannel};
pub use image::{GuestImage, ImageInputs};
