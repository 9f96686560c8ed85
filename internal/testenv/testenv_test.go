package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelper is run as a child process by TestMissing.
func TestHelper(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		t.Skip("runs only as a child of TestMissing")
	}
	Var(t, "TESTENV_UNSET_VARIABLE")
	t.Log("reached after Var")
}

// TestMissing checks that a missing component skips the test normally and
// fails it under VMM_TEST_REQUIRE=1.
func TestMissing(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		require  string
		wantFail bool
		wantText string
	}{
		{"", false, "SKIP"},
		{"1", true, "VMM_TEST_REQUIRE=1 but TESTENV_UNSET_VARIABLE not set"},
	} {
		cmd := exec.Command(exe, "-test.run=^TestHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", "VMM_TEST_REQUIRE="+tc.require, "TESTENV_UNSET_VARIABLE=")
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("VMM_TEST_REQUIRE=%q: failed = %v, want %v\n%s", tc.require, failed, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.wantText) {
			t.Errorf("VMM_TEST_REQUIRE=%q: output lacks %q:\n%s", tc.require, tc.wantText, out)
		}
		if strings.Contains(string(out), "reached after Var") {
			t.Errorf("VMM_TEST_REQUIRE=%q: test went on past a missing variable", tc.require)
		}
	}
}

func TestTool(t *testing.T) {
	t.Setenv("TESTENV_TOOL", "")
	if got := Tool(t, "TESTENV_TOOL", "sh"); !strings.HasSuffix(got, "/sh") {
		t.Errorf("Tool found %q, want a path ending in /sh", got)
	}
	t.Setenv("TESTENV_TOOL", "/bin/true")
	if got := Tool(t, "TESTENV_TOOL", "sh"); got != "/bin/true" {
		t.Errorf("Tool = %q, want the variable's value /bin/true", got)
	}
}
