package p2v

import "context"

// A Snapshotter gives Capture a point-in-time view of a live source.
//
// Freeze makes the source stable: from its return until thaw is called, no
// write reaches the disk, and everything written before the call is on it
// (a file system's journal and caches flushed). Capture freezes only for its
// last pass, after live passes have brought the image close to the source,
// and calls thaw within Options.MaxFreeze even when that pass is still
// running. Freeze must not block indefinitely and thaw must be safe to call
// once after any successful Freeze.
//
// Implementations:
//
//   - FSFreezer (Linux) freezes a mounted file system with the FIFREEZE and
//     FITHAW ioctls.
//   - Offline does nothing, for disks that nothing writes to (unmounted, or
//     a powered-off machine's disk attached elsewhere).
//   - On Windows, the Volume Shadow Copy Service gives the point in time
//     without a freeze: a requester calls CreateVssBackupComponents,
//     InitializeForBackup, SetBackupState, GatherWriterMetadata,
//     StartSnapshotSet, AddToSnapshotSet for each volume of the disk,
//     PrepareForBackup and DoSnapshotSet, then reads the shadow copies
//     (\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN) instead of the
//     live volumes, and releases them with BackupComplete. With that, the
//     Source is the shadow copy and the Snapshotter is Offline: one pass,
//     consistent by construction. vmmkit does not ship that requester yet:
//     it cannot be built or tested on the Linux machines vmmkit is tested
//     on, and an untested VSS client would be worse than none.
type Snapshotter interface {
	Freeze(ctx context.Context) (thaw func() error, err error)
}

// A Coverer is a Snapshotter that can tell whether a path lies on what it
// freezes. Capture refuses to write its image there: the writes would block
// until the watchdog thaws the source. FSFreezer is one.
type Coverer interface {
	Covers(path string) bool
}

// Offline is the Snapshotter of a source nothing writes to: Freeze does
// nothing, and the single pass it leads to is consistent by itself.
type Offline struct{}

// Freeze returns at once.
func (Offline) Freeze(context.Context) (func() error, error) {
	return func() error { return nil }, nil
}
