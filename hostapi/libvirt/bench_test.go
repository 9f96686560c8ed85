package libvirt_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// BenchmarkList1000VMs lists 1 000 running domains of libvirt's test
// driver (no QEMU: the daemon's own cost and the client's) and reads each
// one's stats: through the Driver (VMs, then Stats per VM), and through
// one virsh run doing the same ("list --all; domstats"). It prints the
// ratio of the two times per listing.
func BenchmarkList1000VMs(b *testing.B) {
	uri := testenv.Var(b, "VMM_TEST_LIBVIRT_TEST_URI")
	virsh := testenv.Tool(b, "VMM_TEST_VIRSH", "virsh")
	ctx := context.Background()
	// The test driver's state lives while a connection is open: this one
	// holds the domains for virsh too.
	d, err := libvirt.Dial(ctx, uri, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	const n = 1000
	vms, err := d.VMs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for i := len(vms); i < n; i++ {
		vm, err := d.CreateVM(ctx, hostapi.VMSpec{Name: fmt.Sprintf("bench-%04d", i), VCPUs: 1, Memory: 64 << 20})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Start(ctx, vm.ID); err != nil {
			b.Fatal(err)
		}
	}

	var perDriver, perVirsh time.Duration
	b.Run("Driver", func(b *testing.B) {
		for b.Loop() {
			vms, err := d.VMs(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(vms) < n {
				b.Fatalf("listed %d VMs, want %d", len(vms), n)
			}
			for _, vm := range vms {
				if _, err := d.Stats(ctx, vm.ID); err != nil {
					b.Fatal(err)
				}
			}
		}
		perDriver = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("Virsh", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command(virsh, "-q", "-c", uri, "list --all; domstats").CombinedOutput()
			if err != nil {
				b.Fatalf("virsh: %v\n%s", err, out)
			}
		}
		perVirsh = b.Elapsed() / time.Duration(b.N)
	})
	if perDriver > 0 && perVirsh > 0 {
		fmt.Printf("BenchmarkList1000VMs: ratio driver/virsh %.2f (%v vs %v per listing of %d VMs with stats; %v vs %v per VM)\n",
			float64(perDriver)/float64(perVirsh), perDriver, perVirsh, n, perDriver/n, perVirsh/n)
	}
}
