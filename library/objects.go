package library

import (
	"path"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/vhd"
)

// A Kind says what an object is.
type Kind string

// The kinds of objects a library holds. A file's kind comes from its name
// and, for definitions, from the "kind" field of its JSON (see
// HardwareProfile):
//
//	.vhd                     KindVHD
//	.vhdx                    KindVHDX
//	.iso                     KindISO
//	.img .raw                KindRaw
//	.json with "kind"        KindHardwareProfile, KindGuestOSProfile, KindTemplate
//	.ps1 .sh .cmd .bat       KindScript
//	anything else            KindOther
//
// Files named NAME.meta.json are metadata sidecars (see Metadata), not
// objects.
const (
	KindVHD             Kind = "vhd"
	KindVHDX            Kind = "vhdx"
	KindISO             Kind = "iso"
	KindRaw             Kind = "raw"
	KindHardwareProfile Kind = "hardware-profile"
	KindGuestOSProfile  Kind = "guest-os-profile"
	KindTemplate        Kind = "template"
	KindScript          Kind = "script"
	KindOther           Kind = "other"
)

// An Object is one piece of content in the library, wherever it is
// stored: files with the same content (the same Manifest ID) on any share
// are one Object with one Replica each.
//
// Objects returned by a Library are snapshots: Refresh and Replicate make
// new ones rather than change them, so they are safe to read from any
// goroutine, and must not be modified.
type Object struct {
	// ID is the content's identity, Manifest.ID(): "blake3:<hex>". A file
	// that could not be read has the ID "unread:SHARE/PATH" and a Problem.
	ID   string
	Kind Kind
	// Name is a definition's own "name" or else the base name of the
	// first replica's path (shares in the order the library was given
	// them, then paths in order).
	Name string
	Size int64 // bytes of content
	Metadata

	Replicas []Replica

	// Kind-specific detail; at most one is set.
	Disk            *DiskInfo        `json:",omitempty"` // KindVHD, KindVHDX, KindRaw
	ISO             *ISOInfo         `json:",omitempty"` // KindISO
	HardwareProfile *HardwareProfile `json:",omitempty"` // KindHardwareProfile
	GuestOSProfile  *GuestOSProfile  `json:",omitempty"` // KindGuestOSProfile
	Template        *Template        `json:",omitempty"` // KindTemplate
	Script          *ScriptInfo      `json:",omitempty"` // KindScript

	// Problem says what is wrong with the content, or is empty when the
	// object is sound: a corrupt VHD, a truncated ISO, a definition that
	// is not valid JSON, a template that references a missing object. A
	// broken object is listed like any other; it is never fatal to a scan.
	Problem string `json:",omitempty"`
}

// A Replica is where one copy of an object is stored.
type Replica struct {
	Share   string
	Site    string
	Path    string // name of the file in the share
	ModTime time.Time
	// Offline is set when the share did not answer the last Refresh; the
	// replica is what the share held when it last answered.
	Offline bool `json:",omitempty"`
	// Problem is set when a transfer found this copy's content no longer
	// matches the object's manifest. It is cleared when the file changes.
	Problem string `json:",omitempty"`
}

// Usable reports whether the replica can serve a transfer: its share
// answered and its content was not found corrupt.
func (r Replica) Usable() bool { return !r.Offline && r.Problem == "" }

// DiskInfo describes a virtual disk image, from vhd.Info.
type DiskInfo struct {
	Format      string   `json:"format"`      // "VHD", "VHDX" or "raw"
	Type        string   `json:"type"`        // "fixed", "dynamic" or "differencing"; "fixed" for raw
	VirtualSize int64    `json:"virtualSize"` // bytes the guest sees; 0 when unknown
	UUID        vhd.UUID `json:"uuid"`
	// For differencing disks: what the image records of its parent, the
	// parent's path as found in the share (relative to the share, from the
	// image's parent locators), and the parent object's ID when the library
	// holds it.
	ParentUUID vhd.UUID `json:"parentUUID"`
	ParentPath string   `json:"parentPath,omitempty"`
	ParentID   string   `json:"parentID,omitempty"`
}

// ScriptInfo describes a script.
type ScriptInfo struct {
	Language string `json:"language"` // "powershell", "sh" or "cmd", from the extension
}

// Metadata describes an object for people and for the catalog. Disks,
// ISOs, scripts and other files take it from an optional sidecar file next
// to them named NAME.meta.json, where NAME is the file's name with its
// extension (win2003.vhd.meta.json) or without it (win2003.meta.json); the
// first takes precedence. The sidecar is a JSON object:
//
//	{
//	  "family":      "Windows Server",
//	  "release":     "2003 R2 SP2",
//	  "tags":        ["x86", "sysprepped"],
//	  "owner":       "infra@example.com",
//	  "description": "Standard edition, patched 2026-11"
//	}
//
// Every field is optional; unknown fields are ignored. Profiles and
// templates carry the same fields in their own JSON.
type Metadata struct {
	Family      string   `json:"family,omitempty"`
	Release     string   `json:"release,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Owner       string   `json:"owner,omitempty"`
	Description string   `json:"description,omitempty"`
}

// sidecarSuffix ends the names of metadata sidecars.
const sidecarSuffix = ".meta.json"

// kindByName returns the kind a file's name implies; JSON definitions are
// KindOther until their content says otherwise.
func kindByName(name string) Kind {
	switch strings.ToLower(path.Ext(name)) {
	case ".vhd":
		return KindVHD
	case ".vhdx":
		return KindVHDX
	case ".iso":
		return KindISO
	case ".img", ".raw":
		return KindRaw
	case ".ps1", ".sh", ".cmd", ".bat":
		return KindScript
	}
	return KindOther
}

func scriptLanguage(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".ps1":
		return "powershell"
	case ".sh":
		return "sh"
	}
	return "cmd"
}

func isSidecar(name string) bool { return strings.HasSuffix(strings.ToLower(name), sidecarSuffix) }

// sidecarNames returns the names of the sidecars that may describe name, in
// order of precedence.
func sidecarNames(name string) []string {
	out := []string{name + sidecarSuffix}
	if ext := path.Ext(name); ext != "" {
		out = append(out, strings.TrimSuffix(name, ext)+sidecarSuffix)
	}
	return out
}
