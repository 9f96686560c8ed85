// Package history holds utilization time series and the readers of
// published traces they come from, for sizing and placing VMs from their
// measured use.
//
// Today it reads the Bitbrains traces of the Grid Workloads Archive
// (GWA-T-12): one CSV file per VM with CPU, memory, disk and network use
// every few minutes (ReadBitbrains, ReadBitbrainsFile, ReadBitbrainsDir,
// ReadBitbrainsTar), and turns samples into fixed buckets (Buckets), such
// as the 5-minute series a placement.Profile carries.
package history
