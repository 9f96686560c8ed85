package libvirt

import (
	"encoding/xml"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// labelsNS is the XML namespace of the metadata element holding a VM's labels.
const labelsNS = "https://vmmkit.github.io/xmlns/labels/1"

type labelsXML struct {
	XMLName xml.Name   `xml:"labels"`
	NS      string     `xml:"xmlns,attr"`
	Labels  []labelXML `xml:"label"`
}

type labelXML struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// diskFormat names a disk format as QEMU's driver type does.
func diskFormat(format string) string {
	switch strings.ToLower(format) {
	case "vhd", "vpc":
		return "vpc"
	case "", "qcow2":
		return "qcow2"
	default:
		return strings.ToLower(format)
	}
}

// apiFormat names a QEMU driver type as hostapi does.
func apiFormat(t string) string {
	if t == "vpc" {
		return "vhd"
	}
	return t
}

// formatOfPath guesses a disk's format from its name.
func formatOfPath(p string) string {
	switch strings.ToLower(path.Ext(p)) {
	case ".qcow2":
		return "qcow2"
	case ".vhd":
		return "vpc"
	case ".vhdx":
		return "vhdx"
	case ".iso":
		return "raw"
	default:
		return "raw"
	}
}

// resolvedDisk is a DiskRef with the format the host knows it has.
type resolvedDisk struct {
	hostapi.DiskRef
	format string
}

// domainXML turns spec into the domain XML CreateVM defines.
func (d *Driver) domainXML(spec hostapi.VMSpec, disks []resolvedDisk) (string, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/\x00") {
		return "", fmt.Errorf("%w: VM name %q", hostapi.ErrInvalidSpec, spec.Name)
	}
	if spec.VCPUs <= 0 {
		return "", fmt.Errorf("%w: %d vCPUs", hostapi.ErrInvalidSpec, spec.VCPUs)
	}
	if spec.Memory < 1<<20 {
		return "", fmt.Errorf("%w: memory %d bytes (at least 1 MiB)", hostapi.ErrInvalidSpec, spec.Memory)
	}
	dom := &libvirtxml.Domain{
		Type:   d.opts.DomainType,
		Name:   spec.Name,
		Memory: &libvirtxml.DomainMemory{Value: uint(spec.Memory >> 10), Unit: "KiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: uint(spec.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: d.opts.Machine, Type: "hvm"},
		},
		OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Serials: []libvirtxml.DomainSerial{{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}}},
		},
	}
	if d.opts.DomainType == "test" {
		dom.OS.Type.Machine = ""
		dom.Devices.Serials = nil
	} else {
		dom.Devices.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "virtio"}
	}
	if d.opts.ConsoleListen != ConsoleNone {
		dom.Devices.Graphics = []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{
			AutoPort:  "yes",
			Listeners: []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: d.opts.ConsoleListen}}},
		}}}
	}
	boot := spec.Boot
	if boot == nil {
		boot = []string{"disk", "cdrom"}
	}
	for _, b := range boot {
		dev := map[string]string{"disk": "hd", "cdrom": "cdrom", "network": "network"}[b]
		if dev == "" {
			return "", fmt.Errorf("%w: boot device %q (want disk, cdrom or network)", hostapi.ErrInvalidSpec, b)
		}
		dom.OS.BootDevices = append(dom.OS.BootDevices, libvirtxml.DomainBootDevice{Dev: dev})
	}
	for i, dk := range disks {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: dk.format},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vd" + string(rune('a'+i)), Bus: "virtio"},
		}
		if i >= 26 {
			return "", fmt.Errorf("%w: %d disks (at most 26)", hostapi.ErrInvalidSpec, len(disks))
		}
		switch {
		case dk.Path != "" && dk.Name == "":
			disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: dk.Path}}
		case dk.Name != "" && dk.Pool != "" && dk.Path == "":
			disk.Source = &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: dk.Pool, Volume: dk.Name}}
		default:
			return "", fmt.Errorf("%w: disk %d: give Pool and Name, or Path", hostapi.ErrInvalidSpec, i)
		}
		if dk.ReadOnly {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		dom.Devices.Disks = append(dom.Devices.Disks, disk)
	}
	if spec.ISO != "" {
		dom.Devices.Disks = append(dom.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "cdrom",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: spec.ISO}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	for i, n := range spec.NICs {
		if n.Network == "" {
			return "", fmt.Errorf("%w: NIC %d has no network", hostapi.ErrInvalidSpec, i)
		}
		iface := libvirtxml.DomainInterface{
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Network}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		if n.MAC != "" {
			iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: n.MAC}
		}
		dom.Devices.Interfaces = append(dom.Devices.Interfaces, iface)
	}
	if len(spec.Labels) > 0 {
		lx := labelsXML{NS: labelsNS}
		for k, v := range spec.Labels {
			lx.Labels = append(lx.Labels, labelXML{Key: k, Value: v})
		}
		b, err := xml.Marshal(lx)
		if err != nil {
			return "", fmt.Errorf("%w: labels: %w", hostapi.ErrInvalidSpec, err)
		}
		dom.Metadata = &libvirtxml.DomainMetadata{XML: string(b)}
	}
	return dom.Marshal()
}

// vmInfo reads a VM's record from its domain XML; remote is the daemon's
// host name for a remote connection ("" for a local one), which stands
// for a console listening on every address.
func vmInfo(doc string, state hostapi.State, remote string) (*hostapi.VMInfo, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	vm := &hostapi.VMInfo{ID: dom.UUID, Name: dom.Name, State: state}
	if dom.VCPU != nil {
		vm.VCPUs = int(dom.VCPU.Value)
	}
	if dom.Memory != nil {
		vm.Memory = memBytes(dom.Memory.Value, dom.Memory.Unit)
	}
	if dom.Devices != nil {
		for _, dk := range dom.Devices.Disks {
			if dk.Device != "" && dk.Device != "disk" || dk.Source == nil {
				continue
			}
			ref := hostapi.DiskRef{ReadOnly: dk.ReadOnly != nil}
			switch {
			case dk.Source.Volume != nil:
				ref.Pool, ref.Name = dk.Source.Volume.Pool, dk.Source.Volume.Volume
			case dk.Source.File != nil:
				ref.Path = dk.Source.File.File
			case dk.Source.Block != nil:
				ref.Path = dk.Source.Block.Dev
			default:
				continue
			}
			vm.Disks = append(vm.Disks, ref)
		}
		for _, n := range dom.Devices.Interfaces {
			var nic hostapi.NIC
			if n.Source != nil && n.Source.Network != nil {
				nic.Network = n.Source.Network.Network
			}
			if n.MAC != nil {
				nic.MAC = n.MAC.Address
			}
			vm.NICs = append(vm.NICs, nic)
		}
		switch state {
		case hostapi.StateRunning, hostapi.StatePaused, hostapi.StateShutdown:
			vm.Console = consoleURL(dom.Devices.Graphics, remote)
		}
	}
	if dom.Metadata != nil && strings.Contains(dom.Metadata.XML, labelsNS) {
		// The metadata holds other applications' elements too; find ours.
		dec := xml.NewDecoder(strings.NewReader(dom.Metadata.XML))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Space != labelsNS || se.Name.Local != "labels" {
				continue
			}
			var lx labelsXML
			if dec.DecodeElement(&lx, &se) == nil {
				vm.Labels = make(map[string]string, len(lx.Labels))
				for _, l := range lx.Labels {
					vm.Labels[l.Key] = l.Value
				}
			}
			break
		}
	}
	return vm, nil
}

// consoleURL returns the address of a running domain's first VNC console
// listening on TCP, "vnc://host:port", from the port libvirt gave it and the
// address it listens on; "" when it has none. A console listening on every
// address (0.0.0.0, ::) is reported at remote, the daemon's host name, or
// at the loopback address of a local daemon.
func consoleURL(graphics []libvirtxml.DomainGraphic, remote string) string {
	for _, g := range graphics {
		v := g.VNC
		if v == nil || v.Socket != "" || v.Port <= 0 {
			continue
		}
		addr := v.Listen
		if len(v.Listeners) > 0 {
			switch l := v.Listeners[0]; {
			case l.Address != nil && l.Address.Address != "":
				addr = l.Address.Address
			case l.Network != nil && l.Network.Address != "":
				addr = l.Network.Address
			case l.Socket != nil:
				continue // a unix socket on the host, no address
			}
		}
		switch ip := net.ParseIP(addr); {
		case addr == "":
			addr = "127.0.0.1" // QEMU's vnc_listen default
		case ip == nil || !ip.IsUnspecified():
		case remote != "":
			addr = remote
		case ip.To4() != nil:
			addr = "127.0.0.1"
		default:
			addr = "::1"
		}
		return "vnc://" + net.JoinHostPort(addr, strconv.Itoa(v.Port))
	}
	return ""
}

func memBytes(v uint, unit string) int64 {
	n := int64(v)
	switch strings.ToLower(unit) {
	case "b", "bytes":
		return n
	case "", "k", "kib":
		return n << 10
	case "kb":
		return n * 1000
	case "m", "mib":
		return n << 20
	case "mb":
		return n * 1000 * 1000
	case "g", "gib":
		return n << 30
	case "gb":
		return n * 1000 * 1000 * 1000
	default:
		return n << 10
	}
}
