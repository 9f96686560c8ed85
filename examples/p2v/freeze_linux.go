package main

import "github.com/vmmkit/vmmkit/p2v"

func freezer(mountpoint string) p2v.Snapshotter { return p2v.FSFreezer{Mountpoint: mountpoint} }
