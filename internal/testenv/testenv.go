// Package testenv finds the external tools and servers that integration tests
// use, and skips a test when one is missing, or fails it when the environment
// variable VMM_TEST_REQUIRE is set to 1 (as make test does).
//
// Variables are exported by scripts/testenv.sh start.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether missing test components are failures rather than
// reasons to skip.
func Required() bool { return os.Getenv("VMM_TEST_REQUIRE") == "1" }

// Missing skips the test, or fails it under VMM_TEST_REQUIRE=1, saying why.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("VMM_TEST_REQUIRE=1 but "+format, args...)
	}
	t.Skipf(format, args...)
}

// Var returns the value of the environment variable name, or calls Missing
// when it is unset or empty.
func Var(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, "%s not set (run: eval \"$(scripts/testenv.sh start)\")", name)
	}
	return v
}

// Tool returns the path of an external program: the value of the environment
// variable name when it is set, otherwise the program found on PATH. It calls
// Missing when neither gives an executable.
func Tool(t testing.TB, name, program string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		if _, err := exec.LookPath(v); err != nil {
			Missing(t, "%s=%s is not executable: %v", name, v, err)
		}
		return v
	}
	p, err := exec.LookPath(program)
	if err != nil {
		Missing(t, "%s not set and %s not on PATH", name, program)
	}
	return p
}
