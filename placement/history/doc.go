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
//     ReadBitbrainsTar), turned into fixed buckets by Buckets;
//   - a documented generic CSV of many machines (ReadCSV).
//
// Tar archives are read directly, gzip-compressed or not. Malformed input is
// an error naming the file, line and column (*ParseError), never a silently
// wrong number.
//
// Resample, FillGaps, Percentile, PeakToMean and DailyProfile compute what
// sizing and ranking need.
package history
