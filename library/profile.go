package library

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxDefinitionSize bounds the JSON definitions the library parses.
const maxDefinitionSize = 1 << 20

// A HardwareProfile is the virtual hardware of a VM, stored as a JSON
// file (any name ending in .json) whose "kind" is "hardware-profile":
//
//	{
//	  "kind": "hardware-profile",
//	  "name": "small-2cpu",
//	  "vcpu": 2,
//	  "memoryMiB": 4096,
//	  "nics": [{"network": "prod", "mac": ""}],
//	  "disks": [{"bus": "ide", "sizeGiB": 40}],
//	  "bootOrder": ["disk", "cdrom", "network"],
//	  "family": "...", "release": "...", "tags": [], "owner": "...", "description": "..."
//	}
//
// vcpu and memoryMiB must be positive. The Metadata fields are optional.
type HardwareProfile struct {
	Kind      string     `json:"kind"`
	Name      string     `json:"name,omitempty"`
	VCPU      int        `json:"vcpu"`
	MemoryMiB int64      `json:"memoryMiB"`
	NICs      []NIC      `json:"nics,omitempty"`
	Disks     []DiskSlot `json:"disks,omitempty"`
	BootOrder []string   `json:"bootOrder,omitempty"` // "disk", "cdrom", "network", "floppy"
	Metadata
}

// A NIC is a network adapter of a hardware profile.
type NIC struct {
	Network string `json:"network"`       // the network or switch it joins
	MAC     string `json:"mac,omitempty"` // empty: assigned at deployment
}

// A DiskSlot is a disk a hardware profile attaches.
type DiskSlot struct {
	Bus     string `json:"bus,omitempty"` // "ide", "scsi", "virtio"
	SizeGiB int64  `json:"sizeGiB,omitempty"`
}

// A GuestOSProfile is how a guest is set up at deployment, stored as a
// JSON file whose "kind" is "guest-os-profile":
//
//	{
//	  "kind": "guest-os-profile",
//	  "name": "w2k3-domain",
//	  "os": "Windows Server 2003",
//	  "computerName": "web*",
//	  "timeZone": "UTC",
//	  "productKey": "",
//	  "domain": "corp.example.com",
//	  "adminPasswordRef": "vault:w2k3-admin",
//	  "runOnce": ["join.ps1"]
//	}
//
// os is required. runOnce names scripts of the library (by name or ID).
type GuestOSProfile struct {
	Kind             string   `json:"kind"`
	Name             string   `json:"name,omitempty"`
	OS               string   `json:"os"`
	ComputerName     string   `json:"computerName,omitempty"`
	TimeZone         string   `json:"timeZone,omitempty"`
	ProductKey       string   `json:"productKey,omitempty"`
	Domain           string   `json:"domain,omitempty"`
	AdminPasswordRef string   `json:"adminPasswordRef,omitempty"` // a reference to a secret, never the secret
	RunOnce          []string `json:"runOnce,omitempty"`
	Metadata
}

// A Template is what a VM is made from: a hardware profile, one or more
// disks and a guest OS profile, stored as a JSON file whose "kind" is
// "template":
//
//	{
//	  "kind": "template",
//	  "name": "win2003-std",
//	  "hardwareProfile": "small-2cpu.json",
//	  "disks": ["win2003.vhd"],
//	  "guestOSProfile": "w2k3-domain.json"
//	}
//
// References name objects of the library: by ID ("blake3:..."), by path
// within a share, or by object name. hardwareProfile and at least one disk
// are required. Refresh resolves the references into the ID fields; a
// reference to a missing object, or to an object of the wrong kind, is the
// template's Problem.
type Template struct {
	Kind            string   `json:"kind"`
	Name            string   `json:"name,omitempty"`
	HardwareProfile string   `json:"hardwareProfile"`
	Disks           []string `json:"disks"`
	GuestOSProfile  string   `json:"guestOSProfile,omitempty"`
	Metadata

	// Resolved by Refresh.
	HardwareProfileID string   `json:"hardwareProfileID,omitempty"`
	DiskIDs           []string `json:"diskIDs,omitempty"`
	GuestOSProfileID  string   `json:"guestOSProfileID,omitempty"`
}

// definition is a parsed JSON definition file.
type definition struct {
	kind     Kind
	meta     Metadata
	hardware *HardwareProfile
	guestOS  *GuestOSProfile
	template *Template
}

// errNotDefinition means a JSON file has no kind the library knows; it is
// then an ordinary file of KindOther.
var errNotDefinition = errors.New("not a library definition")

// parseDefinition decodes a JSON definition. It returns errNotDefinition
// for JSON without a known "kind", and an error wrapping ErrCorrupt for
// a definition that is malformed (with a definition that has only its
// kind).
func parseDefinition(data []byte) (*definition, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		if !json.Valid(data) {
			return nil, fmt.Errorf("invalid JSON: %v: %w", err, ErrCorrupt)
		}
		return nil, errNotDefinition
	}
	bad := func(format string, args ...any) (*definition, error) {
		return &definition{kind: Kind(head.Kind)}, fmt.Errorf("%s: %s: %w", head.Kind, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	strict := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(data))
		if err := d.Decode(v); err != nil {
			return err
		}
		if _, err := d.Token(); err != io.EOF {
			return errors.New("data after the JSON object")
		}
		return nil
	}
	switch Kind(head.Kind) {
	case KindHardwareProfile:
		var p HardwareProfile
		if err := strict(&p); err != nil {
			return bad("%v", err)
		}
		if p.VCPU <= 0 || p.MemoryMiB <= 0 {
			return bad("vcpu %d and memoryMiB %d must be positive", p.VCPU, p.MemoryMiB)
		}
		return &definition{kind: KindHardwareProfile, meta: p.Metadata, hardware: &p}, nil
	case KindGuestOSProfile:
		var p GuestOSProfile
		if err := strict(&p); err != nil {
			return bad("%v", err)
		}
		if p.OS == "" {
			return bad("no os")
		}
		return &definition{kind: KindGuestOSProfile, meta: p.Metadata, guestOS: &p}, nil
	case KindTemplate:
		var p Template
		if err := strict(&p); err != nil {
			return bad("%v", err)
		}
		if p.HardwareProfile == "" || len(p.Disks) == 0 {
			return bad("a template needs a hardwareProfile and at least one disk")
		}
		p.HardwareProfileID, p.DiskIDs, p.GuestOSProfileID = "", nil, ""
		return &definition{kind: KindTemplate, meta: p.Metadata, template: &p}, nil
	}
	return nil, errNotDefinition
}

// parseSidecar decodes a NAME.meta.json file.
func parseSidecar(data []byte) (Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return Metadata{}, fmt.Errorf("metadata sidecar: invalid JSON: %v: %w", err, ErrCorrupt)
	}
	return m, nil
}
