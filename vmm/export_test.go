package vmm

// SetTestHookProgress makes f see every progress report of every job (a
// child process of the crash tests stalls there to be killed).
func SetTestHookProgress(f func(job, step string, frac float64)) { testHookProgress = f }
