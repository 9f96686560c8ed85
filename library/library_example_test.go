package library_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmmkit/vmmkit/library"
)

// A library over two shares at two sites: the same script on both is one
// object with two replicas, and a host at the branch gets the branch copy.
func ExampleLibrary() {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "library-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	files := map[string]string{
		"hq/scripts/join.ps1":     "Add-Computer -DomainName corp.example.com\n",
		"branch/tools/join.ps1":   "Add-Computer -DomainName corp.example.com\n",
		"hq/defs/small.json":      `{"kind": "hardware-profile", "name": "small", "vcpu": 2, "memoryMiB": 2048}`,
		"hq/defs/broken.json":     `{"kind": "template", "name": "broken", "hardwareProfile": "small.json", "disks": ["missing.vhd"]}`,
		"branch/readme.meta.json": `{"owner": "branch-it"}`,
		"branch/readme.txt":       "ask branch-it\n",
	}
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	hq, err := library.NewDirShare("hq", "paris", filepath.Join(root, "hq"))
	if err != nil {
		log.Fatal(err)
	}
	defer hq.Close()
	branch, err := library.NewDirShare("branch", "lyon", filepath.Join(root, "branch"))
	if err != nil {
		log.Fatal(err)
	}
	defer branch.Close()

	lib, err := library.New(library.Options{
		Shares: []library.Share{hq, branch},
		Costs:  map[[2]string]float64{{"paris", "lyon"}: 4},
	})
	if err != nil {
		log.Fatal(err)
	}
	st, err := lib.Refresh(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d objects, %d files hashed\n", st.Objects, st.Hashed)
	for o := range lib.Objects() {
		line := fmt.Sprintf("%s (%s, %d replicas) %s %s", o.Name, o.Kind, len(o.Replicas), o.Owner, o.Problem)
		fmt.Println(strings.TrimSpace(line))
	}
	script := lib.Find("join.ps1")[0]
	r, err := lib.Nearest(script, "lyon")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("for lyon:", r.Share, r.Path)
	// Output:
	// 4 objects, 5 files hashed
	// broken (template, 1 replicas)  template references missing objects: "missing.vhd" (vhd)
	// join.ps1 (script, 2 replicas)
	// readme.txt (other, 1 replicas) branch-it
	// small (hardware-profile, 1 replicas)
	// for lyon: branch tools/join.ps1
}
