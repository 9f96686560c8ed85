package libvirt

import (
	"context"
	"errors"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/vmmkit/vmmkit/hostapi"
)

// classify wraps a libvirt error with the hostapi error it means, keeping
// libvirt's error (and its message) in the chain; spec says whether the
// operation was about a spec, so that refusals mean ErrInvalidSpec.
func classify(err error, spec bool) error {
	var le golibvirt.Error
	if !errors.As(err, &le) {
		return err
	}
	var kind error
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoStorageVol, golibvirt.ErrNoStoragePool,
		golibvirt.ErrNoDomainSnapshot, golibvirt.ErrNoNetwork:
		kind = hostapi.ErrNotFound
	case golibvirt.ErrOperationInvalid:
		kind = hostapi.ErrInvalidState
	case golibvirt.ErrDomExist, golibvirt.ErrStorageVolExist, golibvirt.ErrNetworkExist:
		kind = hostapi.ErrExists
	case golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported, golibvirt.ErrArgumentUnsupported:
		kind = hostapi.ErrUnsupported
	case golibvirt.ErrXMLError, golibvirt.ErrXMLDetail, golibvirt.ErrXMLInvalidSchema,
		golibvirt.ErrConfigUnsupported, golibvirt.ErrInvalidArg:
		kind = hostapi.ErrInvalidSpec
	case golibvirt.ErrNoMemory:
		kind = hostapi.ErrCapacity
	case golibvirt.ErrInternalError, golibvirt.ErrOperationFailed:
		if spec {
			kind = hostapi.ErrInvalidSpec
		}
	}
	if kind == nil {
		return err
	}
	return fmt.Errorf("%w: %w", kind, err)
}

// opError makes the *hostapi.OpError a method returns; err nil gives nil.
func (d *Driver) opError(ctx context.Context, op, vm string, err error, spec bool) error {
	if err == nil {
		return nil
	}
	var oe *hostapi.OpError
	if errors.As(err, &oe) {
		return err
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) && !errors.Is(err, hostapi.ErrHostUnreachable) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return hostapi.NewOpError(op, d.t.name, vm, classify(err, spec))
}

// notFound reports whether err is libvirt's "no such domain, volume, pool,
// snapshot or network".
func notFound(err error) bool {
	var le golibvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoStorageVol, golibvirt.ErrNoStoragePool,
		golibvirt.ErrNoDomainSnapshot, golibvirt.ErrNoNetwork:
		return true
	}
	return false
}
