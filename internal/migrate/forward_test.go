package migrate

import (
	"slices"
	"testing"
)

// TestForwardSteps: the step table runs every journal step after
// StepPlanned, once, in the journal's order.
func TestForwardSteps(t *testing.T) {
	var got []string
	for _, s := range forwardSteps {
		got = append(got, s.step)
	}
	if want := steps[1:]; !slices.Equal(got, want) {
		t.Errorf("got forward steps %v, want %v", got, want)
	}
}
