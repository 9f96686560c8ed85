package consolidate

import "github.com/vmmkit/vmmkit/placement/history"

// A Machine is a physical server considered for consolidation: its size and
// its measured use.
type Machine struct {
	ID string
	// CPU is the machine's CPU capacity in MHz (or MIPS, as its trace
	// counts it); Series.CPU is in percent of it.
	CPU float64
	// Memory is the memory the machine would need as a VM, in MiB.
	Memory float64
	// Series is the machine's measured use.
	Series history.Series
}
