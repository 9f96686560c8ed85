// Quickstart shows the main job of vmmkit, managing a fleet of
// virtualization hosts, with no set-up: everything it needs is simulated or
// generated in a temporary directory, which it removes when done.
//
// In a few seconds it:
//
//  1. simulates a fleet of 36 hosts of mixed sizes in three sites, with
//     some VMs already running on them;
//  2. generates an image library with a "web-small" template (a hardware
//     profile and a VHD);
//  3. opens a manager (package vmm) on an embedded SQLite store;
//  4. creates a host group per site and adds the hosts to it, with the VMs
//     found on them;
//  5. creates VMs from the template, each on the host placement rates best,
//     and shows the star ratings of the best hosts;
//  6. captures a generated "physical" disk (an MBR disk with a FAT32 file
//     system) into a VHDX image with P2V, reading only the blocks in use, and
//     puts the image in the library;
//  7. deploys that image as a VM;
//  8. ranks physical servers as consolidation candidates from a bundled day of
//     CPU history (a sample of the PlanetLab traces that ship with CloudSim;
//     see testdata/README.md);
//  9. migrates a VM live to the best other host of its group;
//
// and prints a line or a few for each step, with the time it took. It exits
// with status 1 and the reason on the first step that fails.
//
//	go run ./examples/quickstart [-keep]
//
// -keep keeps the working directory (the store, the library and the
// captured image) and prints its path.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/placement/history"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// planetlab is 20 VM traces of one day of the PlanetLab workload (see
// testdata/README.md for the source and attribution).
//
//go:embed testdata/planetlab-20110303-sample.tar.gz
var planetlab []byte

func main() {
	keep := flag.Bool("keep", false, "keep the working directory and print its path")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "quickstart: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := os.MkdirTemp("", "vmmkit-quickstart-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
	err = run(ctx, dir, os.Stdout)
	if *keep {
		fmt.Println("working directory:", dir)
	} else {
		os.RemoveAll(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// site is one site of the simulated fleet: a host group of its own.
type site struct {
	name, prefix string
	hosts        int
	// shapes are the host models of the site, used in turn.
	shapes []sim.HostConfig
}

var sites = []site{
	{"paris", "par", 12, []sim.HostConfig{
		{Cores: 64, MHz: 2900, Memory: 512 << 30},
		{Cores: 32, MHz: 2600, Memory: 256 << 30},
		{Cores: 48, MHz: 2400, Memory: 384 << 30},
	}},
	{"lyon", "lyo", 12, []sim.HostConfig{
		{Cores: 32, MHz: 2600, Memory: 256 << 30},
		{Cores: 24, MHz: 2200, Memory: 192 << 30},
	}},
	{"edge", "edge", 12, []sim.HostConfig{
		{Cores: 16, MHz: 2100, Memory: 64 << 30},
		{Cores: 8, MHz: 2000, Memory: 32 << 30},
	}},
}

// timer prints the steps of the quickstart.
type timer struct {
	w     io.Writer
	n     int
	start time.Time
}

// step prints the summary line of a step begun at start.
func (t *timer) step(name string, start time.Time, format string, args ...any) {
	t.n++
	fmt.Fprintf(t.w, "%d. %-12s %s (%s)\n", t.n, name+":", fmt.Sprintf(format, args...), since(start))
}

// detail prints an indented line under the last step.
func (t *timer) detail(format string, args ...any) {
	fmt.Fprintf(t.w, "     "+format+"\n", args...)
}

func since(start time.Time) string { return dur(time.Since(start)) }

// dur shows a duration in the unit that suits it.
func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// run runs the quickstart in dir, an empty directory, printing to w.
func run(ctx context.Context, dir string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t := &timer{w: w, start: time.Now()}

	// 1. The fleet.
	start := time.Now()
	var hosts []sim.HostConfig
	siteOf := map[string]string{}
	for _, s := range sites {
		for i := range s.hosts {
			h := s.shapes[i%len(s.shapes)]
			h.Name = fmt.Sprintf("%s-%02d", s.prefix, i+1)
			hosts = append(hosts, h)
			siteOf[h.Name] = s.name
		}
	}
	fleet, err := sim.New(sim.Config{Hosts: hosts}) // TimeScale 0: instant
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	existing, err := seedVMs(ctx, fleet)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	var cores int
	var mem int64
	for _, h := range hosts {
		cores += h.Cores
		mem += h.Memory
	}
	t.step("fleet", start, "%d sites, %d simulated hosts (%d cores, %.1f TiB), %d VMs already running",
		len(sites), len(hosts), cores, float64(mem)/(1<<40), existing)

	// 2. The library.
	start = time.Now()
	libDir := filepath.Join(dir, "library")
	if err := demolib.Build(libDir, demolib.Options{}); err != nil {
		return fmt.Errorf("library: %w", err)
	}
	share, err := library.NewDirShare("central", "paris", libDir)
	if err != nil {
		return fmt.Errorf("library: %w", err)
	}
	lib, err := library.New(library.Options{Shares: []library.Share{share}})
	if err != nil {
		return fmt.Errorf("library: %w", err)
	}
	if _, err := lib.Refresh(ctx); err != nil {
		return fmt.Errorf("library: %w", err)
	}
	var kinds []string
	for o := range lib.Objects() {
		if o.Problem != "" {
			return fmt.Errorf("library: %s: %s", o.Name, o.Problem)
		}
		kinds = append(kinds, fmt.Sprintf("%s %s", o.Kind, o.Name))
	}
	t.step("library", start, "share %q at site paris: %s", "central", strings.Join(kinds, ", "))

	// 3. The manager and its store.
	start = time.Now()
	mgr, err := vmm.New(vmm.Config{
		StorePath: filepath.Join(dir, "vmm.db"),
		Sim:       fleet,
		Library:   lib,
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	defer mgr.Close()
	t.step("manager", start, "inventory and job store in an embedded SQLite file")

	// 4. Host groups and hosts.
	start = time.Now()
	groups := map[string]string{} // site -> group ID
	for _, s := range sites {
		g, err := mgr.CreateGroup(ctx, store.HostGroup{Name: s.name})
		if err != nil {
			return fmt.Errorf("add hosts: %w", err)
		}
		groups[s.name] = g.ID
	}
	hostName := map[string]string{} // host ID -> name
	for _, name := range fleet.Names() {
		h, err := mgr.AddHost(ctx, groups[siteOf[name]], vmm.SimURI(name), &vmm.HostOptions{Site: siteOf[name]})
		if err != nil {
			return fmt.Errorf("add host %s: %w", name, err)
		}
		hostName[h.ID] = h.Name
	}
	found, err := mgr.VMs(ctx, store.VMFilter{})
	if err != nil {
		return fmt.Errorf("add hosts: %w", err)
	}
	t.step("add hosts", start, "%d hosts in %d groups; %d VMs found on them joined the inventory",
		len(hostName), len(groups), len(found))

	// 5. VMs from the template.
	start = time.Now()
	// The template's hardware profile sizes the VMs (2 vCPUs, 2 GiB); the
	// spec can size them up.
	type request struct {
		name, site string
		vcpus      int
		memGiB     int64
	}
	reqs := []request{
		{"web-01", "paris", 8, 64},
		{"web-02", "paris", 8, 64},
		{"web-03", "paris", 8, 64},
		{"web-04", "lyon", 4, 32},
		{"web-05", "lyon", 4, 32},
		{"web-06", "edge", 0, 0},
	}
	// One after the other, so that each placement sees the VMs placed
	// before it.
	var created []vmm.CreateResult
	for _, r := range reqs {
		j, err := mgr.CreateVM(ctx, vmm.VMSpec{Name: r.name, Group: groups[r.site], Template: "web-small",
			VCPUs: r.vcpus, MemoryMiB: r.memGiB << 10, Owner: "alice"})
		if err != nil {
			return fmt.Errorf("create %s: %w", r.name, err)
		}
		res, err := waitCreate(ctx, mgr, j.ID)
		if err != nil {
			return fmt.Errorf("create %s: %w", r.name, err)
		}
		created = append(created, res)
	}
	t.step("create VMs", start, "%d VMs from template web-small, each on the best rated host of its group", len(created))
	for i, res := range created {
		var next []string
		for _, r := range res.Ratings {
			if r.HostID != res.HostID && len(next) < 2 {
				next = append(next, fmt.Sprintf("%s %s", r.Name, stars(r.Stars)))
			}
		}
		r := reqs[i]
		size := "2 vCPU, 2 GiB"
		if r.vcpus > 0 {
			size = fmt.Sprintf("%d vCPU, %d GiB", r.vcpus, r.memGiB)
		}
		t.detail("%-6s %-15s %-5s on %-7s %-5s %s; next best %s", r.name, size, r.site, res.HostName, stars(res.Stars), res.State, strings.Join(next, ", "))
	}

	// 6. P2V: capture a physical disk into the library, then deploy it:
	// one job of the manager.
	start = time.Now()
	raw := filepath.Join(dir, "legacy-srv.img")
	if err := writePhysicalDisk(raw); err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	j, err := mgr.ConvertPhysical(ctx, vmm.ConvertSpec{Source: raw, Name: "legacy-srv", Share: "central",
		Deploy: &vmm.VMSpec{Name: "legacy-srv", Group: groups["paris"], VCPUs: 2, MemoryMiB: 2048, Owner: "alice"}})
	if err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	if j, err = mgr.Wait(ctx, j.ID); err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	var cres vmm.ConvertResult
	if err := json.Unmarshal(j.Result, &cres); err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	t.step("p2v", start, "%s disk (%s, %s) captured into the library as %s: read %s of %s, image %s",
		mib(cres.DiskSize), cres.Scheme, strings.Join(cres.FileSystems, ", "), cres.Path,
		mib(cres.Read), mib(cres.DiskSize), mib(cres.Size))

	// 7. The VM the conversion queued from the image.
	start = time.Now()
	dres, err := waitCreate(ctx, mgr, cres.DeployJob)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	t.step("deploy", start, "legacy-srv from %s on %s %s, %s", cres.Path, dres.HostName, stars(dres.Stars), dres.State)

	// 8. Consolidation candidates from a day of history.
	start = time.Now()
	ranked, err := rankSample(ctx)
	if err != nil {
		return fmt.Errorf("consolidation: %w", err)
	}
	nCand := 0
	for _, c := range ranked {
		if c.Consolidate {
			nCand++
		}
	}
	t.step("consolidate", start, "%d servers ranked on a day of CPU history: %d candidates, %d to keep physical",
		len(ranked), nCand, len(ranked)-nCand)
	shown := ranked[:min(3, len(ranked))]
	if nCand < len(ranked) {
		shown = append(shown[:len(shown):len(shown)], ranked[len(ranked)-1])
	}
	for _, c := range shown {
		verdict := "consolidate"
		if !c.Consolidate {
			verdict = "keep"
		}
		t.detail("%-28s %.2f %-11s %s", short(c.Machine.ID, 28), c.Score, verdict, c.Reasons[0])
	}

	// 9. Migrate the first VM to the best other host of its group.
	start = time.Now()
	first := created[0]
	j, err = mgr.MigrateVM(ctx, vmm.MigrateSpec{VM: first.VMID, User: "alice"})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	j, err = mgr.Wait(ctx, j.ID)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var mres vmm.MigrateResult
	if err := json.Unmarshal(j.Result, &mres); err != nil {
		return fmt.Errorf("migrate: result: %w", err)
	}
	rec, err := mgr.Store().VM(ctx, first.VMID)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if rec.HostID != mres.To || mres.To == mres.From {
		return fmt.Errorf("migrate: %s is on host %s, not on the destination %s", reqs[0].name, hostName[rec.HostID], hostName[mres.To])
	}
	how := "offline"
	if mres.Live {
		how = "live"
	}
	t.step("migrate", start, "%s from %s to %s %s, %s; it is %s", reqs[0].name, hostName[mres.From], hostName[mres.To],
		stars(mres.Stars), how, rec.State)

	fmt.Fprintf(w, "done in %s\n", since(t.start))
	return nil
}

// seedVMs starts VMs on the hosts of the fleet, filling each to a memory
// use of its own between 5 and 80 %, so that the hosts are not equally
// loaded, and returns how many it started.
func seedVMs(ctx context.Context, fleet *sim.Fleet) (int, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	for i, h := range fleet.Hosts() {
		info, err := h.Host(ctx)
		if err != nil {
			return 0, err
		}
		target := int64((0.05 + 0.75*rng.Float64()) * float64(info.MemoryTotal))
		for k := 1; ; k++ {
			cpus := []int{2, 4, 8}[rng.IntN(3)]
			mem := int64(cpus) * int64(4+rng.IntN(5)) << 30
			if used := info.MemoryTotal - info.MemoryFree; used+mem > target || cpus > info.CPUCores {
				break
			}
			v, err := h.CreateVM(ctx, hostapi.VMSpec{Name: fmt.Sprintf("app-%02d-%02d", i+1, k), VCPUs: cpus, Memory: mem})
			if err != nil {
				return 0, err
			}
			if err := h.Start(ctx, v.ID); err != nil {
				return 0, err
			}
			if info, err = h.Host(ctx); err != nil {
				return 0, err
			}
			n++
		}
	}
	return n, nil
}

// waitCreate waits for a create-vm job and returns its result.
func waitCreate(ctx context.Context, mgr *vmm.Manager, id string) (vmm.CreateResult, error) {
	var res vmm.CreateResult
	j, err := mgr.Wait(ctx, id)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(j.Result, &res); err != nil {
		return res, fmt.Errorf("job %s: result: %w", id, err)
	}
	if res.HostName == "" || len(res.Ratings) == 0 {
		return res, fmt.Errorf("job %s: result names no host or no ratings", id)
	}
	return res, nil
}

// rankSample ranks the machines of the embedded PlanetLab day as
// consolidation candidates. The traces give CPU use in percent of each VM's
// CPU; the VMs are given the four sizes of the CloudSim experiments, in
// blocks over the traces in order, as examples/consolidate does.
func rankSample(ctx context.Context) ([]consolidate.Candidate, error) {
	var series []history.Series
	for s, err := range history.ReadPlanetLabTar(bytes.NewReader(planetlab)) {
		if err != nil {
			return nil, err
		}
		series = append(series, s)
	}
	if len(series) == 0 {
		return nil, errors.New("no trace in the sample")
	}
	mips := [4]float64{2500, 2000, 1000, 500}
	block := (len(series) + 3) / 4
	machines := make([]consolidate.Machine, len(series))
	for i, s := range series {
		machines[i] = consolidate.Machine{ID: s.ID, CPU: mips[i/block], Series: s}
	}
	return consolidate.Rank(ctx, machines, nil)
}

// stars shows a rating of 0 to 5 in half stars.
func stars(s float64) string {
	if !(s > 0) {
		return "-"
	}
	s = math.Round(s*2) / 2
	out := strings.Repeat("★", int(s))
	if s != math.Trunc(s) {
		out += "½"
	}
	return out
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func short(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// The generated physical disk: 1 GiB with an MBR and one FAT32 partition
// from 1 MiB to the end, 4 KiB clusters, and a few files in it.
const (
	diskSize    = 1 << 30
	partStart   = 1 << 20
	sector      = 512
	spc         = 8  // sectors per cluster
	reserved    = 32 // reserved sectors of the volume
	numFATs     = 2
	clusterSize = spc * sector
)

// diskFile is a file of the generated disk: its 8.3 name, its first
// cluster and its size.
type diskFile struct {
	name  string // 11 bytes, as the directory entry holds it
	first uint32
	size  int64
}

// writePhysicalDisk writes a raw disk image to path: an MBR, a FAT32 volume
// whose allocation table and root directory list a few files, and the files'
// data, pseudo-random. The rest of the disk is never written (it reads as
// zeros, and the file is sparse).
func writePhysicalDisk(path string) error {
	le := binary.LittleEndian
	totSec := uint32((diskSize - partStart) / sector)
	// Sectors per FAT: enough entries for every cluster the volume could
	// have before the FATs are taken out.
	fatSz := ((totSec-reserved)/spc + 2) * 4
	fatSz = (fatSz + sector - 1) / sector

	files := []diskFile{
		{"BOOTMGR    ", 3, 512 << 10},
		{"SYSTEM  DAT", 1000, 12 << 20},
		{"APP     BIN", 40000, 6 << 20},
		{"DATA    DB ", 150000, 20 << 20},
		{"EVENTS  LOG", 250000, 3 << 20},
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(diskSize); err != nil {
		return err
	}

	// The MBR: one partition of type 0x0C (FAT32, LBA).
	mbr := make([]byte, sector)
	le.PutUint32(mbr[440:], 0x7a6b5c4d) // disk signature
	e := mbr[446:]
	e[4] = 0x0C
	le.PutUint32(e[8:], partStart/sector)
	le.PutUint32(e[12:], totSec)
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}

	// The boot sector, and its backup at sector 6.
	bs := make([]byte, sector)
	copy(bs, []byte{0xEB, 0x58, 0x90})
	copy(bs[3:], "MSWIN4.1")
	le.PutUint16(bs[11:], sector)
	bs[13] = spc
	le.PutUint16(bs[14:], reserved)
	bs[16] = numFATs
	bs[21] = 0xF8
	le.PutUint16(bs[24:], 63)  // sectors per track
	le.PutUint16(bs[26:], 255) // heads
	le.PutUint32(bs[28:], partStart/sector)
	le.PutUint32(bs[32:], totSec)
	le.PutUint32(bs[36:], fatSz)
	le.PutUint32(bs[44:], 2) // root directory cluster
	le.PutUint16(bs[48:], 1) // FSInfo sector
	le.PutUint16(bs[50:], 6) // backup boot sector
	bs[64] = 0x80
	bs[66] = 0x29
	le.PutUint32(bs[67:], 0x20110303)
	copy(bs[71:], "LEGACY-SRV ")
	copy(bs[82:], "FAT32   ")
	bs[510], bs[511] = 0x55, 0xAA
	for _, s := range []int64{0, 6} {
		if _, err := f.WriteAt(bs, partStart+s*sector); err != nil {
			return err
		}
	}

	// The FAT: the two reserved entries, the root directory in cluster 2,
	// and each file as one chain of contiguous clusters.
	fat := make([]byte, int64(fatSz)*sector)
	const eoc = 0x0FFFFFFF
	le.PutUint32(fat[0:], 0x0FFFFFF8)
	le.PutUint32(fat[4:], eoc)
	le.PutUint32(fat[8:], eoc)
	root := make([]byte, clusterSize)
	copy(root, "LEGACY-SRV ")
	root[11] = 0x08 // volume label
	for i, fl := range files {
		n := uint32((fl.size + clusterSize - 1) / clusterSize)
		for c := fl.first; c < fl.first+n-1; c++ {
			le.PutUint32(fat[c*4:], c+1)
		}
		le.PutUint32(fat[(fl.first+n-1)*4:], eoc)
		d := root[32*(i+1):]
		copy(d, fl.name)
		d[11] = 0x20 // archive
		le.PutUint16(d[20:], uint16(fl.first>>16))
		le.PutUint16(d[26:], uint16(fl.first))
		le.PutUint32(d[28:], uint32(fl.size))
	}
	fatOff := int64(partStart + reserved*sector)
	for k := range int64(numFATs) {
		if _, err := f.WriteAt(fat, fatOff+k*int64(len(fat))); err != nil {
			return err
		}
	}
	dataOff := fatOff + numFATs*int64(len(fat))
	clusterOff := func(c uint32) int64 { return dataOff + int64(c-2)*clusterSize }
	if _, err := f.WriteAt(root, clusterOff(2)); err != nil {
		return err
	}

	// The files' data.
	rng := rand.New(rand.NewChaCha8([32]byte{'v', 'm', 'm', 'k', 'i', 't'}))
	for _, fl := range files {
		buf := make([]byte, fl.size)
		for i := 0; i < len(buf); i += 8 {
			le.PutUint64(buf[i:], rng.Uint64())
		}
		if _, err := f.WriteAt(buf, clusterOff(fl.first)); err != nil {
			return err
		}
	}
	return f.Close()
}
