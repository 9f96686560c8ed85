//go:build !linux

package main

import (
	"context"
	"errors"

	"github.com/vmmkit/vmmkit/p2v"
)

type noFreezer struct{}

func (noFreezer) Freeze(context.Context) (func() error, error) {
	return nil, errors.New("p2v: -freeze is supported on Linux only")
}

func freezer(string) p2v.Snapshotter { return noFreezer{} }
