package selfservice

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTurns(t *testing.T) {
	tr := turns{n: 2}
	r1, err := tr.acquire(t.Context(), "k")
	require.NoError(t, err)
	r2, err := tr.acquire(t.Context(), "k")
	require.NoError(t, err)
	other, err := tr.acquire(t.Context(), "other")
	require.NoError(t, err, "another key has its own turns")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = tr.acquire(ctx, "k")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a third waits")
	got := make(chan func(), 1)
	go func() {
		r3, err := tr.acquire(t.Context(), "k")
		assert.NoError(t, err)
		got <- r3
	}()
	r1()
	r3 := <-got
	r2()
	r3()
	other()
	assert.Empty(t, tr.m, "nothing kept for keys no longer in use")
}
