//! Device drivers: the serial port, the PCI bus, virtio-blk.

pub mod pci;
pub mod serial;
pub mod virtio_blk;
