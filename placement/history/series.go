package history

import "time"

// A Series is one machine's measured use at a fixed interval: the common
// form every reader's output can be turned into, and what consolidation
// works on.
//
// Samples are in the resource's unit: CPU in percent of CPUCapacity (0–100),
// memory in MiB used, disk in IOPS and MB/s (10^6 bytes), network in Mb/s
// (10^6 bits). A missing
// sample is NaN. A resource that was not measured has a nil slice. All
// non-nil slices have the same length.
type Series struct {
	ID       string
	Start    time.Time
	Interval time.Duration

	// CPUCapacity is the machine's CPU in MHz (or MIPS, as the trace
	// counts it); zero when the trace does not say.
	CPUCapacity float64
	// MemoryCapacity is the machine's memory in MiB; zero when unknown.
	MemoryCapacity float64

	CPU      []float64
	Memory   []float64
	DiskIOPS []float64
	DiskMBps []float64
	Network  []float64
}

// Len returns the number of sample times.
func (s *Series) Len() int {
	for _, x := range [][]float64{s.CPU, s.Memory, s.DiskIOPS, s.DiskMBps, s.Network} {
		if x != nil {
			return len(x)
		}
	}
	return 0
}
