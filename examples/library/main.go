// Library indexes library shares and lists their objects: disks, ISOs,
// profiles, templates and scripts, each with its replicas and what is
// wrong with it, and copies an object to another share.
//
//	go run ./examples/library [-share DIR[@SITE][,DIR[@SITE]...]] [-site NAME] [-cost SITE:SITE=N,...] [-json]
//	go run ./examples/library -share ... -replicate OBJ -to SHARE
//
// Each directory is a share named after its last element, at SITE or else
// at the -site one (default "local"). -site is also the site the nearest
// replica is shown for, by the -cost of moving data between sites (unlisted
// pairs cost more than listed ones). With no -share it builds a small demo library in
// a temporary directory (two shares at two sites holding generated VHDs,
// an ISO, profiles, a template, a script and a broken ISO, with -site
// branch and a cost of 10 between the sites unless told otherwise) and
// removes it when done.
//
// With -json it prints one JSON object per object per line:
//
//	{"name": ..., "kind": ..., "size": ..., "hash": ..., "replicas": [{"share": ..., "path": ...}], "problem": ...}
//
// -replicate copies OBJ (a name, a path, SHARE:PATH or an ID) to the share
// SHARE from the nearest sound replica, with a progress bar on a terminal.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmmkit/vmmkit/internal/termbar"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vhd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// jsonObject is the -json line of an object.
type jsonObject struct {
	Name     string        `json:"name"`
	Kind     library.Kind  `json:"kind"`
	Size     int64         `json:"size"`
	Hash     string        `json:"hash"`
	Replicas []jsonReplica `json:"replicas"`
	Problem  string        `json:"problem"`
}

type jsonReplica struct {
	Share string `json:"share"`
	Path  string `json:"path"`
}

// run executes the command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("library", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shareList := fs.String("share", "", "comma-separated share directories, each DIR or DIR@SITE")
	site := fs.String("site", "local", "site of shares given without one, and the site to show the nearest replica for")
	asJSON := fs.Bool("json", false, "print one JSON object per object per line")
	replicate := fs.String("replicate", "", "object to copy (name, path, SHARE:PATH or ID)")
	to := fs.String("to", "", "share to copy the object to")
	costList := fs.String("cost", "", "comma-separated site-to-site costs, each SITE:SITE=N")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (*replicate == "") != (*to == "") {
		fmt.Fprintln(stderr, "library: -replicate and -to go together, and no arguments are taken besides flags")
		fs.Usage()
		return 2
	}
	costs, err := parseCosts(*costList)
	if err != nil {
		fmt.Fprintln(stderr, "library:", err)
		return 2
	}
	if *shareList == "" {
		dir, err := os.MkdirTemp("", "vmmkit-library-")
		if err != nil {
			fmt.Fprintln(stderr, "library:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		list, err := makeDemo(dir)
		if err != nil {
			fmt.Fprintln(stderr, "library: demo:", err)
			return 1
		}
		*shareList = list
		if *costList == "" {
			costs = map[[2]string]float64{{"hq", "branch"}: 10}
		}
		if !flagSet(fs, "site") {
			*site = "branch"
		}
		fmt.Fprintf(stderr, "no -share given: a demo library in %s\n", dir)
	}
	if err := do(ctx, *shareList, *site, costs, *asJSON, *replicate, *to, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "library:", err)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseCosts reads "a:b=3,b:c=1".
func parseCosts(s string) (map[[2]string]float64, error) {
	costs := map[[2]string]float64{}
	if s == "" {
		return costs, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		pair, n, ok1 := strings.Cut(item, "=")
		from, to, ok2 := strings.Cut(pair, ":")
		c, err := strconv.ParseFloat(n, 64)
		if !ok1 || !ok2 || err != nil || c < 0 {
			return nil, fmt.Errorf("-cost %q: want SITE:SITE=N with N a number from 0", item)
		}
		costs[[2]string{from, to}] = c
	}
	return costs, nil
}

func do(ctx context.Context, shareList, site string, costs map[[2]string]float64, asJSON bool, replicate, to string, stdout, stderr io.Writer) error {
	var shares []library.Share
	for spec := range strings.SplitSeq(shareList, ",") {
		dir, shareSite, ok := strings.Cut(spec, "@")
		if !ok {
			shareSite = site
		}
		name := filepath.Base(filepath.Clean(dir))
		for i := 2; ; i++ {
			dup := false
			for _, s := range shares {
				dup = dup || s.Name() == name
			}
			if !dup {
				break
			}
			name = fmt.Sprintf("%s-%d", filepath.Base(filepath.Clean(dir)), i)
		}
		s, err := library.NewDirShare(name, shareSite, dir)
		if err != nil {
			return err
		}
		defer s.Close()
		shares = append(shares, s)
	}
	lib, err := library.New(library.Options{Shares: shares, Costs: costs})
	if err != nil {
		return err
	}
	st, err := lib.Refresh(ctx)
	if err != nil {
		return err
	}
	for name, err := range st.Failed {
		fmt.Fprintf(stderr, "share %s not scanned: %v\n", name, err)
	}
	if replicate != "" {
		return copyObject(ctx, lib, replicate, to, stdout, stderr)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for o := range lib.Objects() {
			j := jsonObject{Name: o.Name, Kind: o.Kind, Size: o.Size, Hash: o.ID, Problem: o.Problem, Replicas: []jsonReplica{}}
			for _, r := range o.Replicas {
				j.Replicas = append(j.Replicas, jsonReplica{Share: r.Share, Path: r.Path})
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	}
	for o := range lib.Objects() {
		printObject(lib, o, site, stdout)
	}
	fmt.Fprintf(stdout, "%d objects (%d with problems) on %d shares; %d files read, %d reused, %s hashed in %v\n",
		st.Objects, st.Problems, st.Shares, st.Hashed, st.Reused, termbar.Human(st.HashedBytes), st.Duration.Round(1e6))
	return nil
}

func printObject(lib *library.Library, o *library.Object, site string, w io.Writer) {
	id := o.ID
	if len(id) > 23 {
		id = id[:23] + "…"
	}
	fmt.Fprintf(w, "%-24s %-16s %10s  %s\n", o.Name, o.Kind, termbar.Human(o.Size), id)
	switch {
	case o.Disk != nil:
		fmt.Fprintf(w, "    %s %s, %s virtual", o.Disk.Type, o.Disk.Format, termbar.Human(o.Disk.VirtualSize))
		if o.Disk.ParentPath != "" {
			fmt.Fprintf(w, ", parent %s", o.Disk.ParentPath)
		}
		fmt.Fprintln(w)
	case o.ISO != nil:
		fmt.Fprintf(w, "    volume %q, %s", o.ISO.VolumeLabel, termbar.Human(o.ISO.VolumeSize))
		if o.ISO.Bootable {
			fmt.Fprint(w, ", bootable")
		}
		fmt.Fprintln(w)
	case o.HardwareProfile != nil:
		h := o.HardwareProfile
		fmt.Fprintf(w, "    %d vCPU, %d MiB, %d NICs, %d disks, boot %s\n", h.VCPU, h.MemoryMiB, len(h.NICs), len(h.Disks), strings.Join(h.BootOrder, ","))
	case o.GuestOSProfile != nil:
		fmt.Fprintf(w, "    %s\n", o.GuestOSProfile.OS)
	case o.Template != nil:
		t := o.Template
		fmt.Fprintf(w, "    hardware %s, disks %s, guest OS %s\n", t.HardwareProfile, strings.Join(t.Disks, ","), t.GuestOSProfile)
	}
	if o.Family != "" || o.Release != "" || o.Description != "" {
		fmt.Fprintf(w, "    %s %s %s\n", o.Family, o.Release, o.Description)
	}
	near, _ := lib.Nearest(o, site)
	for _, r := range o.Replicas {
		var notes []string
		if r.Offline {
			notes = append(notes, "offline")
		}
		if r.Problem != "" {
			notes = append(notes, r.Problem)
		}
		if r == near || r.Share == near.Share && r.Path == near.Path {
			notes = append(notes, "nearest to "+site)
		}
		note := ""
		if len(notes) > 0 {
			note = " (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintf(w, "    %s:%s at %s%s\n", r.Share, r.Path, r.Site, note)
	}
	if o.Problem != "" {
		fmt.Fprintf(w, "    PROBLEM: %s\n", o.Problem)
	}
}

func copyObject(ctx context.Context, lib *library.Library, ref, to string, stdout, stderr io.Writer) error {
	objs := lib.Find(ref)
	switch len(objs) {
	case 0:
		return fmt.Errorf("no object %q", ref)
	case 1:
	default:
		return fmt.Errorf("%d objects match %q: give SHARE:PATH or the ID", len(objs), ref)
	}
	bar := termbar.New(stderr)
	err := lib.Replicate(ctx, objs[0], to, &library.CopyOptions{Progress: func(done, total int64) { bar.Draw(done, total, objs[0].Name) }})
	if err != nil {
		return err
	}
	o, err := lib.Object(objs[0].ID)
	if err != nil {
		return err
	}
	for _, r := range o.Replicas {
		if r.Share == to {
			fmt.Fprintf(stdout, "replicated %s to %s:%s\n", o.Name, r.Share, r.Path)
			return nil
		}
	}
	return errors.New("the copy is not listed")
}

// makeDemo fills dir with two shares and returns their -share list.
func makeDemo(dir string) (string, error) {
	hq, branch := filepath.Join(dir, "hq"), filepath.Join(dir, "branch")
	for _, d := range []string{filepath.Join(hq, "disks"), filepath.Join(hq, "iso"), filepath.Join(hq, "defs"), filepath.Join(hq, "scripts"), filepath.Join(branch, "disks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	base := filepath.Join(hq, "disks", "win2003.vhd")
	if err := makeDisk(base, 64<<20, nil, "Windows Server 2003 system disk"); err != nil {
		return "", err
	}
	if err := makeDisk(filepath.Join(hq, "disks", "web01.vhd"), 0, &vhd.CreateOptions{Parent: base}, "web01 changes"); err != nil {
		return "", err
	}
	if err := makeDisk(filepath.Join(hq, "disks", "data.vhdx"), 256<<20, nil, "data"); err != nil {
		return "", err
	}
	data, err := os.ReadFile(base)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		filepath.Join(branch, "disks", "win2003.vhd"):       data,
		filepath.Join(hq, "disks", "win2003.vhd.meta.json"): []byte(`{"family": "Windows Server", "release": "2003 R2 SP2", "tags": ["x86"], "owner": "infra", "description": "sysprepped"}`),
		filepath.Join(hq, "iso", "w2k3-sp2.iso"):            makeISO("W2K3_SP2", 64),
		filepath.Join(hq, "iso", "broken.iso"):              makeISO("BROKEN", 64)[:20*2048],
		filepath.Join(hq, "defs", "small.json"):             []byte(`{"kind": "hardware-profile", "name": "small", "vcpu": 2, "memoryMiB": 2048, "nics": [{"network": "prod"}], "disks": [{"bus": "ide", "sizeGiB": 64}], "bootOrder": ["disk", "cdrom"]}`),
		filepath.Join(hq, "defs", "w2k3-domain.json"):       []byte(`{"kind": "guest-os-profile", "name": "w2k3-domain", "os": "Windows Server 2003", "domain": "corp.example.com", "runOnce": ["join.ps1"]}`),
		filepath.Join(hq, "defs", "win2003-std.json"):       []byte(`{"kind": "template", "name": "win2003-std", "hardwareProfile": "small.json", "disks": ["../disks/win2003.vhd"], "guestOSProfile": "w2k3-domain.json"}`),
		filepath.Join(hq, "scripts", "join.ps1"):            []byte("Add-Computer -DomainName corp.example.com\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return "", err
		}
	}
	return hq + "@hq," + branch + "@branch", nil
}

func makeDisk(name string, size int64, opts *vhd.CreateOptions, fill string) error {
	d, err := vhd.Create(name, size, opts)
	if err != nil {
		return err
	}
	if _, err := d.WriteAt([]byte(strings.Repeat(fill, 4096/len(fill)+1)[:4096]), 1<<20); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// makeISO returns a minimal ISO 9660 image of blocks 2048-byte blocks:
// system area, a primary volume descriptor naming label, and the set
// terminator.
func makeISO(label string, blocks int) []byte {
	img := make([]byte, blocks*2048)
	pvd := img[16*2048 : 17*2048]
	pvd[0], pvd[6] = 1, 1
	copy(pvd[1:6], "CD001")
	copy(pvd[8:72], strings.Repeat(" ", 64))
	copy(pvd[8:], "VMMKIT")
	copy(pvd[40:], label)
	binary.LittleEndian.PutUint32(pvd[80:], uint32(blocks))
	binary.BigEndian.PutUint32(pvd[84:], uint32(blocks))
	binary.LittleEndian.PutUint16(pvd[128:], 2048)
	binary.BigEndian.PutUint16(pvd[130:], 2048)
	term := img[17*2048 : 18*2048]
	term[0], term[6] = 255, 1
	copy(term[1:6], "CD001")
	return img
}
