package sim

import (
	"context"
	"fmt"
	"slices"

	"github.com/vmmkit/vmmkit/hostapi"
)

var checkpointStates = states(hostapi.StateStopped, hostapi.StateRunning, hostapi.StatePaused)

// CreateCheckpoint records VM id's state under name; the checkpoint holds
// its memory when it runs or is paused (and MemoryCheckpoints is not in
// HostConfig.Unsupported). hostapi.ErrExists when the VM has a checkpoint
// of that name, hostapi.ErrInvalidSpec for an empty name.
func (c *Host) CreateCheckpoint(ctx context.Context, id, name string) (*hostapi.Checkpoint, error) {
	const op = "create checkpoint"
	if err := c.need(ctx, hostapi.Checkpoints); err != nil {
		return nil, c.err(op, id, err)
	}
	if name == "" {
		return nil, c.err(op, id, fmt.Errorf("%w: no checkpoint name", hostapi.ErrInvalidSpec))
	}
	var cp checkpoint
	err := c.change(ctx, op, id, durCheckpoint, checkpointStates, func(h *host, v *vm) error {
		if v.findCheckpoint(name) >= 0 {
			return fmt.Errorf("%w: checkpoint %s", hostapi.ErrExists, name)
		}
		cp = checkpoint{
			Checkpoint: hostapi.Checkpoint{
				Name:    name,
				Created: h.now(),
				Memory:  v.active() && h.supports(hostapi.MemoryCheckpoints),
			},
			state: v.info.State,
		}
		v.checkpoints = append(v.checkpoints, cp)
		h.emit(v, hostapi.EventCheckpoint)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &cp.Checkpoint, nil
}

func (v *vm) findCheckpoint(name string) int {
	return slices.IndexFunc(v.checkpoints, func(cp checkpoint) bool { return cp.Name == name })
}

// Checkpoints lists VM id's checkpoints, oldest first.
func (c *Host) Checkpoints(ctx context.Context, id string) ([]hostapi.Checkpoint, error) {
	const op = "list checkpoints"
	if err := c.enter(ctx); err != nil {
		return nil, c.err(op, id, err)
	}
	h := c.h
	if !h.supports(hostapi.Checkpoints) {
		return nil, c.err(op, id, h.unsupported(hostapi.Checkpoints))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.lookup(id)
	if err != nil {
		return nil, c.err(op, id, err)
	}
	out := make([]hostapi.Checkpoint, len(v.checkpoints))
	for i, cp := range v.checkpoints {
		out[i] = cp.Checkpoint
	}
	return out, nil
}

// RevertCheckpoint returns VM id to checkpoint name: running or paused as
// it was when the checkpoint holds memory (hostapi.ErrCapacity when the
// host's free memory cannot hold it), stopped otherwise.
func (c *Host) RevertCheckpoint(ctx context.Context, id, name string) error {
	const op = "revert checkpoint"
	if err := c.need(ctx, hostapi.Checkpoints); err != nil {
		return c.err(op, id, err)
	}
	return c.change(ctx, op, id, durCheckpoint, checkpointStates, func(h *host, v *vm) error {
		i := v.findCheckpoint(name)
		if i < 0 {
			return fmt.Errorf("%w: checkpoint %s", hostapi.ErrNotFound, name)
		}
		to := hostapi.StateStopped
		if cp := v.checkpoints[i]; cp.Memory {
			to = cp.state
		}
		if to != hostapi.StateStopped && !v.active() {
			if free := h.memory - h.memUsed(); v.info.Memory > free {
				return fmt.Errorf("%w: VM needs %d bytes of memory, host has %d free", hostapi.ErrCapacity, v.info.Memory, free)
			}
		}
		h.setState(v, to, h.now())
		h.emit(v, hostapi.EventCheckpoint)
		return nil
	})
}

// DeleteCheckpoint removes checkpoint name of VM id; the VM stays as it is.
func (c *Host) DeleteCheckpoint(ctx context.Context, id, name string) error {
	const op = "delete checkpoint"
	if err := c.need(ctx, hostapi.Checkpoints); err != nil {
		return c.err(op, id, err)
	}
	return c.change(ctx, op, id, durDelete, checkpointStates, func(h *host, v *vm) error {
		i := v.findCheckpoint(name)
		if i < 0 {
			return fmt.Errorf("%w: checkpoint %s", hostapi.ErrNotFound, name)
		}
		v.checkpoints = slices.Delete(v.checkpoints, i, i+1)
		h.emit(v, hostapi.EventCheckpoint)
		return nil
	})
}
