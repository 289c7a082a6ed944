//! Device drivers: the serial port, the PCI bus, virtio-blk, virtio-net.

pub mod pci;
pub mod serial;
pub mod virtio;
pub mod virtio_blk;
pub mod virtio_net;
