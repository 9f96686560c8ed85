package main

import "testing"

// TestQuickstart runs the quickstart's steps, so that the first command of
// the README keeps working.
func TestQuickstart(t *testing.T) {
	if err := run(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}
