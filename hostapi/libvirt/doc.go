// Package libvirt is a hostapi.Driver for KVM/QEMU hosts run by libvirt,
// spoken to through libvirt's RPC protocol in pure Go
// ([github.com/digitalocean/go-libvirt]; no cgo, no libvirt C library) with
// domain, volume and snapshot XML from [libvirt.org/go/libvirtxml].
//
// # Connecting
//
// Dial opens one host: a unix socket path ("/run/libvirt/libvirt-sock"), or a
// URI: qemu:///system (local socket, "?socket=" to choose it),
// qemu+unix:///system?socket=PATH, qemu+tcp://host[:port]/system,
// qemu+tls://host[:port]/system (Options.TLSConfig) and
// qemu+ssh://[user@]host[:port]/system (Options.SSHConfig; the driver opens
// an SSH session with golang.org/x/crypto/ssh and dials the remote daemon's
// unix socket, "?socket=" to choose it, through it, as libvirt's own
// netcat-less "native" mode does). Options.Dial replaces all of these with a
// caller-supplied dialer, for a jump host or an existing tunnel. test:///default
// opens libvirt's test driver through the local socket.
//
// A lost connection is re-established on the next call with exponential
// backoff (github.com/cenkalti/backoff/v4) bounded by ctx and
// Options.ReconnectTimeout. Reads and lookups are retried once the connection
// is back; a call that changes the host and was cut off is never repeated: it
// fails with hostapi.ErrHostUnreachable and the caller looks at the VM to
// learn whether it happened.
//
// # What the driver does with libvirt
//
//   - VMSpec becomes domain XML (domain type from Options.DomainType: "kvm",
//     or "qemu" for software emulation); labels live in the domain's
//     metadata. Disks of a pool are attached as volumes with their format;
//     disks by path get the format of their pool volume, or of their
//     extension (.qcow2, .vhd → vpc, .vhdx, anything else raw).
//   - Every VM CreateVM defines has a VNC console listening on
//     Options.ConsoleListen (127.0.0.1 unless set; ConsoleNone defines none),
//     its port chosen by libvirt when it starts (autoport, from 5900).
//     VMInfo.Console is read from the running domain's first VNC graphics
//     device listening on TCP: "vnc://address:port", an IPv6 address in
//     brackets. A console listening on every address (0.0.0.0, ::) is
//     reported at the host name of a qemu+tcp, qemu+tls or qemu+ssh URI, or
//     at the loopback address when the daemon is local (a socket path or a
//     unix URI, even with Options.Dial). Domains defined elsewhere without
//     VNC graphics have no Console.
//   - Host facts come from NodeGetInfo, NodeGetMemoryStats (all cells, when
//     the hypervisor has it), the capabilities' host UUID, pools and networks.
//   - Checkpoints are libvirt internal snapshots: of a running VM they hold
//     its memory as well as its disks (MemoryCheckpoints), of a stopped VM
//     its disks only. They need every disk in qcow2.
//   - Disks are storage volumes; a differencing disk is a qcow2 volume with
//     its parent as backing store.
//   - CopyImage uploads through a storage-volume upload stream, with progress.
//     VHD and VHDX images are converted on the host: the image is uploaded as
//     a vpc or vhdx volume, cloned into qcow2 by the host's qemu-img
//     (StorageVolCreateXMLFrom), and the upload removed. Supports(VHDDisks)
//     is false: QEMU cannot save, snapshot with memory or live-migrate a guest
//     whose disk is in the vpc format.
//   - Migrate is peer-to-peer: the source daemon connects to the destination
//     daemon at the destination Driver's MigrationURI, tunnelled through the
//     daemons' own connection unless storage is copied (libvirt cannot tunnel
//     a storage copy; Options.MigrationDataURI and DisksURI then name where the
//     destination's QEMU listens). Without WithStorage the caller says storage
//     is shared, and libvirt's safety check for that is waived. Progress comes
//     from the job info; ctx cancels the job (DomainAbortJob) and the VM keeps
//     running on the source.
//   - Events are libvirt domain lifecycle events.
//
// # Limits
//
// The RPC library's calls take no context: a call in flight runs to its end
// even when ctx is done, except migration and copies, which are aborted. A
// guest without an operating system ignores Shutdown (it then waits until ctx
// is done). Stats of a VM without a balloon driver report no memory use.
package libvirt
