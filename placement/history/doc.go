// Package history holds utilization time series and the readers of the
// formats they come in, for sizing, ranking and placing machines from their
// measured use.
//
// A Series is one machine's use at a fixed interval, per resource: CPU in
// percent of its capacity, memory in MiB, disk in IOPS and MB/s, network in
// Mb/s (MB and Mb are 10^6 bytes and bits), NaN where a sample is missing.
//
// Readers:
//
//   - Windows performance logs in CSV as typeperf and relog write them,
//     several hosts per file (ReadPerfmon, ReadPerfmonMemory);
//   - PlanetLab CPU traces as shipped with CloudSim, one file of 288
//     five-minute samples per VM (ReadPlanetLab, ReadPlanetLabTar);
//   - Bitbrains GWA-T-12 traces, one CSV file per VM with CPU, memory, disk
//     and network (ReadBitbrains, ReadBitbrainsFile, ReadBitbrainsDir,
//     ReadBitbrainsTar), turned into a Series by BitbrainsSeries (rows
//     that fail Sample.Check skipped and counted in Warnings, or refused)
//     or into fixed buckets by Buckets;
//   - a documented generic CSV of many machines (ReadCSV).
//
// Tar archives are read directly, gzip-compressed or not; entries that are
// not regular files, hidden files and macOS AppleDouble ("._name") files
// are skipped. Malformed input is an error naming the file, line and
// column (*ParseError), never a silently wrong number. Input that is
// well-formed but inconsistent (a Bitbrains row above its capacity, a
// negative perfmon rate) is an error too, unless the caller passes a
// *Warnings: then it is left out (NaN) and counted. No series is longer
// than MaxSeriesSamples, whatever the timestamps.
//
// Resample, Align, FillGaps, Percentile, PeakToMean and DailyProfile
// compute what sizing and ranking need. Percentiles are by the nearest
// rank (see Percentile), the one definition of the module.
package history
